"""The HTTP backend: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp's server, Ollama, TGI).

One `send` is one POST to {api_base}/chat/completions or {api_base}/completions, never streamed (llama.cpp
cuts concurrent streams off) and never with n > 1 (llama.cpp answers with one choice): samples are
separate requests. Structured output is negotiated once per run: `response_format` of type json_schema,
then json_object with the schema inside (what llama.cpp's server accepts; json_schema is a 500 there),
then plain text for the tolerant parser. The mode that works is remembered.

The API key lives only in the Authorization header of the client; it is scrubbed from every error text
and is not part of `identity()`/`describe()` (so never in a cache, manifest or log).
"""

from __future__ import annotations

import collections
import importlib.util
import sys
from typing import Any

import httpx
import orjson

# httpcore runs `import sniffio` on every lock it takes (several per request). Recent anyio no longer
# installs sniffio, and a failed import is not cached: each one searches sys.path again, which cost ~2 ms
# of CPU per request here (more than all the rest of the client). Remember the miss once.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]  # `import sniffio` now fails at once

from phitools.errors import EndpointError
from phitools.llm.client import Answer, Backend, LLMRequest, RequestFailed, TransientError, attempt_seed
from phitools.llm.ratelimit import parse_retry_after

#: structured-output modes, best first
STRUCTURED_MODES = ("json_schema", "json_object", "text")
POOL_SIZE = 8  # connections per httpx client (see _http)
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529}


class OpenAIBackend(Backend):
    """OpenAI-compatible HTTP endpoint. `api_base` includes the version path, e.g. http://localhost:8000/v1."""

    kind = "openai"

    def __init__(
        self,
        api_base: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        structured: str = "auto",
        user_agent: str | None = None,
    ):
        self.api_base = api_base.rstrip("/")
        self.model = model
        self._key = api_key or None
        self._concurrency = concurrency
        self._clients: list[httpx.AsyncClient] = []
        self._busy: list[int] = []
        self.structured_mode = "json_schema" if structured == "auto" else structured
        if self.structured_mode not in STRUCTURED_MODES:
            raise ValueError(f"structured mode must be one of {STRUCTURED_MODES}")
        self._negotiate = structured == "auto"
        self._mode_ok: set[str] = set()
        self._mode_failures: collections.Counter = collections.Counter()
        self.posts = 0
        self.fallbacks: list[str] = []
        self._ua = user_agent

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(api_base={self.api_base!r}, model={self.model!r})"

    def identity(self) -> dict:
        return {"kind": self.kind, "api_base": self.api_base, "model": self.model}

    def describe(self) -> dict:
        d = self.identity()
        d["structured_mode"] = self.structured_mode
        d["http_posts"] = self.posts
        if self.fallbacks:
            d["structured_fallbacks"] = list(self.fallbacks)
        return d

    def _http(self) -> tuple[int, httpx.AsyncClient]:
        """The least busy of a few pooled clients (and its index; call _release(index) when done).

        httpx's pool costs CPU per request in proportion to its connections (14 ms/request at 64
        connections here, which caps a 64-wide run at ~10% of its ideal rate); several small pools of
        <= 8 connections keep it near 1.5 ms.
        """
        if not self._clients:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self._ua:
                headers["User-Agent"] = self._ua
            if self._key:
                headers["Authorization"] = f"Bearer {self._key}"
            n = max(1, self._concurrency)
            k = -(-n // POOL_SIZE)
            per = -(-n // k)
            self._clients = [
                httpx.AsyncClient(
                    headers=headers,
                    timeout=None,  # per request below
                    limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
                )
                for _ in range(k)
            ]
            self._busy = [0] * k
        i = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[i] += 1
        return i, self._clients[i]

    def _release(self, i: int) -> None:
        self._busy[i] -= 1

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            await c.aclose()

    def _scrub(self, text: str) -> str:
        if self._key and self._key in text:
            text = text.replace(self._key, "<redacted>")
        return text

    # -- request body -----------------------------------------------------------------------------------
    def body(self, req: LLMRequest, *, mode: str, variant: int = 0) -> dict:
        """The JSON body for `req` in structured `mode`."""
        b: dict[str, Any] = {
            "model": req.model or self.model,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
        }
        if req.top_p is not None:
            b["top_p"] = req.top_p
        if req.stop:
            b["stop"] = list(req.stop)
        seed = attempt_seed(req, variant)
        if seed is not None:
            b["seed"] = seed
        if req.messages is not None:
            b["messages"] = list(req.messages)
            if req.json_schema is not None and mode == "json_schema":
                b["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": req.json_schema},
                }
            elif req.json_schema is not None and mode == "json_object":
                b["response_format"] = {"type": "json_object", "schema": req.json_schema}
        else:
            b["prompt"] = req.prompt
        if req.extra:
            b.update(req.extra)
        b.pop("n", None)
        b.pop("stream", None)
        return b

    # -- one attempt ------------------------------------------------------------------------------------
    async def send(self, req: LLMRequest, *, timeout: float, variant: int = 0) -> Answer:
        structured = req.json_schema is not None and req.messages is not None
        if not structured or not self._negotiate or self.structured_mode == "text":
            return await self._post(req, self.structured_mode if structured else "text", timeout, variant)
        mode = self.structured_mode
        try:
            ans = await self._post(req, mode, timeout, variant)
        except (TransientError, RequestFailed) as e:
            status = getattr(e, "status", None)
            if isinstance(e, TransientError) and (status is None or status == 429 or status < 500):
                raise  # not a rejection of the structured mode
            if mode in self._mode_ok:
                raise  # this mode has worked before: a real server error, retried as usual
            first: Exception = e
        else:
            self._mode_ok.add(mode)
            return ans
        # The server may not support this mode (llama.cpp: json_schema -> 500). Answer this request with the
        # next mode that works; adopt that mode for the run once the better one has failed twice and never
        # worked, so one unlucky 503 does not downgrade a whole run.
        for nxt in STRUCTURED_MODES[STRUCTURED_MODES.index(mode) + 1 :]:
            try:
                ans = await self._post(req, nxt, timeout, variant)
            except (TransientError, RequestFailed):
                continue
            self._mode_ok.add(nxt)
            self._mode_failures[mode] += 1
            if self._mode_failures[mode] >= 2 and self.structured_mode == mode:
                self.fallbacks.append(f"{mode}->{nxt}")
                self.structured_mode = nxt
            return ans
        raise first

    async def _post(self, req: LLMRequest, mode: str, timeout: float, variant: int) -> Answer:
        url = f"{self.api_base}/{req.endpoint}"
        body = orjson.dumps(self.body(req, mode=mode, variant=variant))
        self.posts += 1
        ci, client = self._http()
        try:
            r = await client.post(url, content=body, timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)))
        except httpx.TimeoutException:
            raise TransientError(f"timeout after {timeout:g}s", kind="timeout") from None
        except httpx.ConnectError as e:
            raise TransientError(
                self._scrub(f"connection failed: {e or type(e).__name__}"), kind="connection"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise TransientError(
                self._scrub(f"connection dropped: {e or type(e).__name__}"), kind="connection"
            ) from None
        except httpx.TransportError as e:
            raise TransientError(self._scrub(f"transport error: {type(e).__name__}: {e}"), kind="connection") from None
        finally:
            self._release(ci)
        headers = {k.lower(): v for k, v in r.headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))}
        if r.status_code != 200:
            self._raise_for_status(r, headers, url, mode)
        return self._parse(r, req, headers)

    def _raise_for_status(self, r: httpx.Response, headers: dict, url: str, mode: str) -> None:
        status = r.status_code
        detail = self._scrub(_error_detail(r))
        if status in _RETRY_STATUS or status >= 500:
            retry_after = parse_retry_after(r.headers.get("retry-after"))
            if retry_after is None and r.headers.get("retry-after-ms"):
                try:
                    retry_after = float(r.headers["retry-after-ms"]) / 1000
                except ValueError:
                    pass
            raise TransientError(
                f"HTTP {status}: {detail}" if detail else f"HTTP {status}",
                status=status,
                retry_after=retry_after,
                headers=headers,
                rate_limited=status == 429,
            )
        if status in (401, 403):
            raise EndpointError(
                f"HTTP {status} from {url}: {detail or 'not authorised'}",
                hint="check the API key in the environment variable named by --api-key-env (default OPENAI_API_KEY)",
            )
        if status == 404:
            hint = "check --api-base (it usually ends in /v1) and --model"
            if not self.api_base.endswith("/v1"):
                hint = f"did you mean --api-base {self.api_base}/v1 ? Also check --model"
            raise EndpointError(f"HTTP 404 from {url}: {detail or 'not found'}", hint=hint)
        raise RequestFailed(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")

    def _parse(self, r: httpx.Response, req: LLMRequest, headers: dict) -> Answer:
        try:
            data = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            raise TransientError("malformed response: body is not JSON", headers=headers, kind="malformed") from None
        try:
            choice = data["choices"][0]
            if req.messages is not None:
                msg = choice["message"]
                text = msg.get("content")
                if text is None:
                    text = msg.get("reasoning_content")
            else:
                text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("no text")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransientError("malformed response: no choices[0] text", headers=headers, kind="malformed") from None
        usage = data.get("usage") or {}
        return Answer(
            text=text,
            finish_reason=choice.get("finish_reason"),
            model=data.get("model") or self.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            headers=headers,
        )


def _error_detail(r: httpx.Response) -> str:
    """A short, single-line reason from an error body (OpenAI {"error": {"message"}}, TGI {"error": "..."})."""
    try:
        data = orjson.loads(r.content)
    except orjson.JSONDecodeError:
        text = r.text.strip().replace("\n", " ")
        return text[:200]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or ""
    elif isinstance(err, str):
        msg = err
    elif isinstance(data, dict) and "detail" in data:
        msg = str(data["detail"])
    else:
        msg = str(data)
    return str(msg).replace("\n", " ")[:200]
