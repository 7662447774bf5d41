"""A fault-injecting OpenAI-compatible server on loopback, for tests and benchmarks (real HTTP/1.1).

    from phitools.llm.testing import FakeLLMServer

    with FakeLLMServer(latency=0.05, faults=["429", "500", "drop"]) as srv:
        ...  # point a client at srv.url  (http://127.0.0.1:PORT/v1)
        srv.answered      # Counter: request-body hash -> times answered with 200
        srv.statuses      # Counter: status (or 'drop'/'hang') -> count

It serves POST /v1/chat/completions and /v1/completions (and GET /v1/models) from its own asyncio loop in a
daemon thread (or its own process: `python -m phitools.llm.testing --latency 0.1`). Faults are taken per
request, in arrival order, from `faults` (then `fault_fn(n, body)` if given), by name:

    ok            a normal answer
    429           Too Many Requests with Retry-After: `retry_after` seconds
    500, 503      server errors (JSON error body)
    slow          answer after `slow_s` seconds (longer than a client timeout in tests)
    drop          close the connection without answering
    malformed     200 with a body that is not JSON
    no_choices    200 with {"choices": []}
    wrong_schema  200 with an answer that is not what the prompt asked for ("I cannot rate this.")
    hang          never answer (until the server stops)

Quirks of llama.cpp's server can be switched on: `reject_json_schema` (response_format json_schema -> 500,
json_object + schema accepted) and `serial` (one request served at a time). `hang_after=N` answers the
first N requests and hangs every later one (for kill -9 tests).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Sequence

import orjson

FAULTS = ("ok", "429", "500", "503", "slow", "drop", "malformed", "no_choices", "wrong_schema", "hang")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def body_key(body: dict) -> str:
    """The identity of a request body (what `answered` counts by)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def request_text(body: dict) -> str:
    """The user-visible text of a request: the last message's content or the prompt."""
    if "messages" in body and body["messages"]:
        return str(body["messages"][-1].get("content", ""))
    return str(body.get("prompt", ""))


def default_answer(body: dict) -> str:
    """A deterministic answer: a score 0-5 derived from the request text, in the format asked for."""
    text = request_text(body)
    score = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 6
    rf = body.get("response_format") or {}
    if rf.get("type") in ("json_schema", "json_object"):
        return orjson.dumps({"rationale": "fake server rationale", "score": score}).decode()
    return f"The text is somewhat instructive.\nEducational score: {score}"


class FakeLLMServer:
    """See the module docstring."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        answer: Callable[[dict], str] | str = default_answer,
        faults: Sequence[str] | None = None,
        fault_fn: Callable[[int, dict], str | None] | None = None,
        retry_after: float = 1.0,
        slow_s: float = 30.0,
        serial: bool = False,
        reject_json_schema: bool = False,
        rate_headers: Callable[[int], dict] | None = None,
        hang_after: int | None = None,
        model: str = "fake-model",
        port: int = 0,
    ):
        for f in faults or ():
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; one of {FAULTS}")
        self.latency = latency
        self.answer = answer
        self.faults = collections.deque(faults or ())
        self.fault_fn = fault_fn
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.serial = serial
        self.reject_json_schema = reject_json_schema
        self.rate_headers = rate_headers
        self.hang_after = hang_after
        self.model = model
        self.port = port
        # counters (read them from the test thread; written only by the server loop)
        self.n = 0
        self.statuses: collections.Counter = collections.Counter()
        self.answered: collections.Counter = collections.Counter()
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.authorization: collections.Counter = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._serial_lock: asyncio.Lock | None = None
        self._tasks: set = set()

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        ready = threading.Event()
        err: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as e:  # pragma: no cover
                err.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-llm-server", daemon=True)
        self._thread.start()
        ready.wait()
        if err:
            raise err[0]
        return self

    async def _start(self) -> None:
        self._serial_lock = asyncio.Lock()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_faults(self, *faults: str) -> None:
        """Queue more faults (thread-safe enough: the deque append is atomic)."""
        self.faults.extend(faults)

    # -- HTTP -----------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(n) if n else b""
                keep = await self._respond(method, path, headers, raw, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _send(
        self, writer, status: int, payload: bytes, extra: dict | None = None, ctype: str = "application/json"
    ) -> None:
        hdr = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(payload)}",
        ]
        for k, v in (extra or {}).items():
            hdr.append(f"{k}: {v}")
        writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    async def _respond(self, method: str, path: str, headers: dict, raw: bytes, writer) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            await self._send(
                writer, 200, orjson.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]})
            )
            return True
        route = path.split("?")[0].rstrip("/")
        if method != "POST" or not (route.endswith("/chat/completions") or route.endswith("/completions")):
            await self._send(writer, 404, orjson.dumps({"error": {"message": f"no route {method} {path}"}}))
            return True
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self._send(writer, 400, orjson.dumps({"error": {"message": "body is not JSON"}}))
            return True
        self.n += 1
        idx = self.n
        self.bodies.append(body)
        self.arrivals.append(time.monotonic())
        self.authorization[headers.get("authorization", "")] += 1
        fault = self.faults.popleft() if self.faults else None
        if fault is None and self.fault_fn is not None:
            fault = self.fault_fn(idx, body)
        if fault is None and self.hang_after is not None and idx > self.hang_after:
            fault = "hang"
        fault = fault or "ok"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.serial:
                assert self._serial_lock is not None
                async with self._serial_lock:
                    return await self._serve(fault, route, body, writer)
            return await self._serve(fault, route, body, writer)
        finally:
            self.in_flight -= 1

    async def _serve(self, fault: str, route: str, body: dict, writer) -> bool:
        if fault == "hang":
            self.statuses["hang"] += 1
            await asyncio.sleep(3600)
            return False
        if fault == "drop":
            self.statuses["drop"] += 1
            writer.transport.abort()
            return False
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault in ("429", "500", "503"):
            status = int(fault)
            self.statuses[status] += 1
            extra = {"Retry-After": f"{self.retry_after:g}"} if status in (429, 503) else {}
            await self._send(
                writer, status, orjson.dumps({"error": {"message": f"injected {status}", "type": "fault"}}), extra
            )
            return True
        if fault == "malformed":
            self.statuses["malformed"] += 1
            await self._send(writer, 200, b'{"choices": [{"message": {"content": "trunc', ctype="application/json")
            return True
        rf = body.get("response_format") or {}
        if self.reject_json_schema and rf.get("type") == "json_schema":
            self.statuses[500] += 1
            await self._send(
                writer,
                500,
                orjson.dumps(
                    {"error": {"code": 500, "message": "JSON schema conversion failed", "type": "server_error"}}
                ),
            )
            return True
        if fault == "no_choices":
            self.statuses["no_choices"] += 1
            await self._send(writer, 200, orjson.dumps({"id": "x", "object": "chat.completion", "choices": []}))
            return True
        text = (
            "I cannot rate this."
            if fault == "wrong_schema"
            else (self.answer(body) if callable(self.answer) else str(self.answer))
        )
        prompt = request_text(body)
        usage = {"prompt_tokens": len(prompt.split()) + 1, "completion_tokens": len(text.split()) + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if route.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            obj = "text_completion"
        payload = orjson.dumps(
            {
                "id": f"fake-{self.n}",
                "object": obj,
                "created": int(time.time()),
                "model": body.get("model") or self.model,
                "choices": [choice],
                "usage": usage,
            }
        )
        extra = self.rate_headers(self.n) if self.rate_headers else None
        self.statuses[200] += 1
        self.answered[body_key(body)] += 1
        await self._send(writer, 200, payload, extra)
        return True


def main(argv: list[str] | None = None) -> None:
    """Run the fake server in the foreground (for benchmarks): prints its URL on stdout, then serves."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--serial", action="store_true")
    args = ap.parse_args(argv)
    srv = FakeLLMServer(latency=args.latency, port=args.port, serial=args.serial).start()
    print(srv.url, flush=True)
    try:
        sys.stdin.read()  # serve until stdin closes
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":
    main()
