"""The one LLM client: requests in, results out, in input order, with retries, rate limits and a cache.

Every tool that talks to a language model (label, synth, eval) goes through `LLMRunner`:

    from phitools.llm import LLMRequest, LLMRunner
    from phitools.llm.options import LLMOptions   # or build a backend yourself

    with LLMRunner(backend, concurrency=16, cache=RequestCache("out/llm-cache.sqlite")) as runner:
        for res in runner.run(LLMRequest(messages=[{"role": "user", "content": q}]) for q in questions):
            print(res.text if res.ok else res.error)

`run` is called from ordinary synchronous code. It pulls requests lazily from the iterable (so a reader
over a huge corpus is never loaded whole), keeps at most `concurrency` of them in flight on a private event
loop in a background thread, and yields one `LLMResult` per request *in input order*. Memory is bounded by
the look-ahead window (a few times `concurrency`).

A result is never invented: after `max_attempts` tries a request comes back with `ok == False` and
`error` saying why (the last HTTP status, the timeout, the unparseable answer...). Callers record that
failure; they must not substitute a default.

The backend does one attempt (`Backend.send`); this module owns everything around it: the cache lookup,
the rate limiter, retries with exponential backoff and full jitter (honouring Retry-After), validation of
the answer through `LLMRequest.parse`, usage accounting and a circuit breaker that stops a run when the
endpoint is plainly down instead of writing a whole corpus of failures.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from phitools.errors import EndpointError

T = TypeVar("T")


# ---- requests and results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LLMRequest:
    """One generation request: chat `messages` (chat/completions) or a raw `prompt` (completions).

    Everything that changes the answer is part of the cache key: endpoint, model, messages/prompt, the
    sampling parameters, `json_schema`, `extra` and `sample`. `parse` and `tag` are not: they are local.

    - model: None means the backend's default model.
    - sample: the sample index. Several samples of one prompt are sent as separate requests (never `n`>1,
      which llama.cpp's server silently ignores); with a `seed`, sample i is sent with seed + i.
    - json_schema: ask for a JSON answer matching this schema. The client uses `response_format`
      json_schema, falls back to json_object + schema (llama.cpp), then to plain text, remembering what
      the server accepts; `parse` must therefore also cope with free text.
    - parse: validates the answer text and returns the parsed value (kept in `LLMResult.parsed`); raising
      ValueError marks the answer unparseable, which is retried like a transport error and, when attempts
      run out, recorded as a failure with the reason.
    - extra: additional body fields passed to the server verbatim (e.g. {"repeat_penalty": 1.1}).
    - tag: anything the caller wants back on the result (not sent).
    """

    messages: Sequence[dict] | None = None
    prompt: str | None = None
    model: str | None = None
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 256
    stop: Sequence[str] | None = None
    seed: int | None = None
    json_schema: dict | None = None
    sample: int = 0
    extra: dict | None = None
    parse: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)
    tag: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("LLMRequest needs exactly one of messages= (chat) or prompt= (completion)")

    @property
    def endpoint(self) -> str:
        """'chat/completions' or 'completions'."""
        return "chat/completions" if self.messages is not None else "completions"

    @property
    def effective_seed(self) -> int | None:
        """The seed for this sample: seed + sample index (so samples differ but stay reproducible)."""
        return None if self.seed is None else self.seed + self.sample

    def sampling(self) -> dict:
        """The sampling parameters as a plain dict (recorded in provenance and hashed into the cache key)."""
        d: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.top_p is not None:
            d["top_p"] = self.top_p
        if self.stop:
            d["stop"] = list(self.stop)
        if self.seed is not None:
            d["seed"] = self.effective_seed
        return d

    def cache_key(self, identity: dict) -> str:
        """sha256 over the endpoint identity (base URL + model, never the API key) and everything sent."""
        material = {
            "v": 1,
            "identity": identity,
            "model": self.model,
            "endpoint": self.endpoint,
            "messages": list(self.messages) if self.messages is not None else None,
            "prompt": self.prompt,
            "sampling": self.sampling(),
            "json_schema": self.json_schema,
            "extra": self.extra,
            "sample": self.sample,
        }
        blob = orjson.dumps(material, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        return hashlib.sha256(blob).hexdigest()

    def approx_prompt_tokens(self) -> int:
        """A cheap upper-ish estimate of prompt tokens (~4 chars/token) for the TPM limiter."""
        if self.prompt is not None:
            n = len(self.prompt)
        else:
            n = sum(len(str(m.get("content", ""))) + 8 for m in self.messages or ())
        return n // 4 + 1


def attempt_seed(req: LLMRequest, variant: int) -> int | None:
    """The seed to send: the sample's seed, shifted after each unparseable answer so a retry can differ."""
    s = req.effective_seed
    return None if s is None else s + 7919 * variant


@dataclass
class LLMResult:
    """The outcome of one request. `ok` is False when all attempts failed; `error` then says why."""

    request: LLMRequest
    text: str | None = None
    parsed: Any = None
    finish_reason: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None
    cached: bool = False
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tag(self) -> Any:
        return self.request.tag


# ---- what a backend returns or raises for one attempt -----------------------------------------------------
@dataclass
class Answer:
    """A backend's answer to one attempt."""

    text: str
    finish_reason: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    headers: dict = field(default_factory=dict)  # response headers, lower-cased (rate-limit info)


class TransientError(Exception):
    """One attempt failed in a way worth retrying (429, 5xx, timeout, dropped connection, malformed body)."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        headers: dict | None = None,
        rate_limited: bool = False,
        kind: str | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        #: a short category for the usage counters: http_<status>, timeout, connection, malformed, ...
        self.kind = kind or (f"http_{status}" if status is not None else "transient")
        self.retry_after = retry_after
        self.status = status
        self.headers = headers or {}
        self.rate_limited = rate_limited


class RequestFailed(Exception):
    """This request cannot succeed as sent (e.g. 400: prompt too long). No retry; the record fails."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Backend:
    """One attempt at one request. Subclasses: OpenAIBackend (HTTP), LocalBackend (in-process), ...

    Raise TransientError to have the runner retry, RequestFailed to fail this request at once, and
    phitools.errors.EndpointError to stop the whole run (bad key, unknown model, wrong URL).
    """

    kind: str = "base"
    model: str = ""
    #: whether the runner should enforce its per-request timeout around send() (False for in-process models)
    uses_timeout: bool = True
    #: in-flight requests this backend can use well (None: no opinion; the runner's --concurrency rules)
    preferred_concurrency: int | None = None

    def identity(self) -> dict:
        """What identifies the endpoint for the cache key and the manifest: never the API key."""
        return {"kind": self.kind, "model": self.model}

    def describe(self) -> dict:
        """Manifest entry for this backend (no secrets)."""
        return self.identity()

    async def send(self, req: LLMRequest, *, timeout: float, variant: int = 0) -> Answer:  # pragma: no cover
        """One attempt. `variant` counts earlier unparseable answers: send seed `attempt_seed(req, variant)`."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections / threads."""


# ---- usage accounting -------------------------------------------------------------------------------------
@dataclass
class Usage:
    """Counters for one run; `to_dict()` goes into the manifest, `summary()` to stderr."""

    requests: int = 0  # results handed back (one per LLMRequest)
    sent: int = 0  # attempts actually sent to the backend
    retries: int = 0  # attempts beyond the first
    failures: int = 0  # requests that failed after all attempts
    unparseable: int = 0  # answers rejected by LLMRequest.parse (each one retried or failed)
    cached: int = 0  # answered from the request cache
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limited: int = 0  # 429 answers
    errors: collections.Counter = field(default_factory=collections.Counter)  # reason kind -> count
    price_in_per_1k: float | None = None
    price_out_per_1k: float | None = None
    wall_s: float = 0.0

    @property
    def cost(self) -> float | None:
        """Cost of the tokens actually billed this run (cache hits are free)."""
        if self.price_in_per_1k is None:
            return None
        pout = self.price_out_per_1k if self.price_out_per_1k is not None else self.price_in_per_1k
        return self.prompt_tokens / 1000 * self.price_in_per_1k + self.completion_tokens / 1000 * pout

    def to_dict(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in (
                "requests",
                "sent",
                "retries",
                "failures",
                "unparseable",
                "cached",
                "prompt_tokens",
                "completion_tokens",
                "rate_limited",
            )
        }
        d["errors"] = dict(sorted(self.errors.items()))
        d["wall_s"] = round(self.wall_s, 3)
        if self.cost is not None:
            d["price_per_1k"] = {
                "prompt": self.price_in_per_1k,
                "completion": self.price_out_per_1k if self.price_out_per_1k is not None else self.price_in_per_1k,
            }
            d["cost"] = round(self.cost, 6)
        return d

    def summary(self) -> str:
        s = (
            f"{self.requests} requests ({self.cached} cached, {self.sent} sent, {self.retries} retries, "
            f"{self.failures} failed), {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens"
        )
        if self.cost is not None:
            s += f", cost {self.cost:.4f}"
        return s


def parse_price(value: str | None) -> tuple[float | None, float | None]:
    """--price-per-1k: 'P' (all tokens) or 'PROMPT,COMPLETION' (per 1000 tokens)."""
    if value is None or value == "":
        return None, None
    parts = [p.strip() for p in str(value).split(",")]
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--price-per-1k {value!r}: expected a number or two numbers 'PROMPT,COMPLETION'") from None
    if len(nums) == 1:
        return nums[0], nums[0]
    if len(nums) == 2:
        return nums[0], nums[1]
    raise ValueError(f"--price-per-1k {value!r}: expected a number or two numbers 'PROMPT,COMPLETION'")


# ---- the runner -------------------------------------------------------------------------------------------
class LLMRunner:
    """Run requests against a backend: bounded concurrency, rate limits, retries, cache; ordered results.

    Use as a context manager (it owns a background event-loop thread). Parameters:
    - concurrency: requests in flight at once.
    - max_attempts: tries per request (transport errors and unparseable answers both count).
    - timeout: seconds per attempt.
    - limiter: a phitools.llm.ratelimit.RateLimiter (RPM/TPM + server headers), or None.
    - cache: a phitools.llm.cache.RequestCache, or None.
    - backoff_base / backoff_max: exponential backoff with full jitter: sleep U(0, min(max, base*2^k)).
    - abort_after: stop the run with EndpointError after this many requests in a row failed for transport
      reasons (the endpoint is down); None disables.
    - on_result: optional callback(LLMResult) called in the caller's thread as results are yielded.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        concurrency: int = 8,
        max_attempts: int = 5,
        timeout: float = 60.0,
        limiter=None,
        cache=None,
        usage: Usage | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 300.0,
        abort_after: int | None = 32,
        seed: int | None = None,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.backend = backend
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.limiter = limiter
        self.cache = cache
        self.usage = usage if usage is not None else Usage()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.abort_after = abort_after
        self._rng = random.Random(seed)
        self._identity = backend.identity()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sem: asyncio.Semaphore | None = None
        self._consecutive_transport_failures = 0
        self._last_transport_error: str | None = None
        self._t0: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> LLMRunner:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def start(self) -> None:
        """Start the background event loop (idempotent)."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=main, name="phitools-llm", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        self._sem = self._call(self._make_semaphore())
        self._t0 = time.monotonic()

    async def _make_semaphore(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.concurrency)

    def _call(self, coro):
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the backend and stop the loop thread; safe to call twice."""
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        if self._t0 is not None:
            self.usage.wall_s += time.monotonic() - self._t0
            self._t0 = None
        try:
            asyncio.run_coroutine_threadsafe(self.backend.aclose(), loop).result(timeout=30)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        loop.close()

    # -- public API -----------------------------------------------------------------------------------------
    def run(self, requests: Iterable[LLMRequest], *, window: int | None = None) -> Iterator[LLMResult]:
        """Yield one LLMResult per request, in input order, keeping up to `concurrency` in flight.

        `window` bounds the look-ahead (requests pulled but not yet yielded); default max(4*concurrency, 64).
        Exceptions from the request iterable propagate unchanged; pending requests are cancelled.
        """
        self.start()
        assert self._loop is not None
        window = window or max(4 * self.concurrency, 64)
        pending: collections.deque[concurrent.futures.Future] = collections.deque()
        it = iter(requests)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        req = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(asyncio.run_coroutine_threadsafe(self._one(req), self._loop))
                    if pending[0].done():
                        break
                if not pending:
                    return
                res = pending.popleft().result()
                self._after(res)
                yield res
        finally:
            for f in pending:
                f.cancel()

    def run_groups(
        self, groups: Iterable[tuple[T, Sequence[LLMRequest]]], *, window: int | None = None
    ) -> Iterator[tuple[T, list[LLMResult]]]:
        """Like run(), for items that each need several requests (votes, samples): yields (item, results)."""
        sizes: collections.deque[tuple[T, int]] = collections.deque()

        def flat() -> Iterator[LLMRequest]:
            for item, reqs in groups:
                reqs = list(reqs)
                sizes.append((item, len(reqs)))
                yield from reqs

        buf: list[LLMResult] = []
        for res in self.run(flat(), window=window):
            while sizes and sizes[0][1] == len(buf):  # groups with no requests ahead of this result
                item, _ = sizes.popleft()
                yield item, []
            buf.append(res)
            if sizes and sizes[0][1] == len(buf):
                item, _ = sizes.popleft()
                out, buf = buf, []
                yield item, out
        while sizes and sizes[0][1] == len(buf):  # trailing groups with no requests
            item, _ = sizes.popleft()
            out, buf = buf, []
            yield item, out

    def complete(self, req: LLMRequest) -> LLMResult:
        """One request, synchronously."""
        return next(iter(self.run([req])))

    # -- internals ------------------------------------------------------------------------------------------
    def _after(self, res: LLMResult) -> None:
        """Caller-thread bookkeeping: the circuit breaker."""
        if self.abort_after is None:
            return
        if res.ok or res.cached or not getattr(res, "_transport", False):
            self._consecutive_transport_failures = 0
            return
        self._consecutive_transport_failures += 1
        if self._consecutive_transport_failures >= self.abort_after:
            where = self._identity.get("api_base") or self._identity.get("kind")
            raise EndpointError(
                f"{self._consecutive_transport_failures} requests in a row failed "
                f"after {self.max_attempts} attempts each "
                f"(last: {res.error}) at {where}",
                hint="is the server up and the URL right? answered requests are cached; "
                "re-run the same command to resume",
            )

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1))))

    async def _one(self, req: LLMRequest) -> LLMResult:
        usage = self.usage
        key = req.cache_key(self._identity) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                res = self._from_cache(req, hit)
                if res is not None:
                    usage.requests += 1
                    usage.cached += 1
                    if not res.ok:
                        usage.failures += 1
                    return res
        assert self._sem is not None
        async with self._sem:
            res = await self._attempts(req)
        usage.requests += 1
        if not res.ok:
            usage.failures += 1
        if key is not None and res.text is not None:
            # Answered (valid, or unparseable after every attempt): never send it again.
            self.cache.put(key, res)
        return res

    def _from_cache(self, req: LLMRequest, hit: LLMResult) -> LLMResult | None:
        res = dataclasses.replace(hit, request=req, cached=True, parsed=None)
        if res.ok and req.parse is not None:
            try:
                res.parsed = req.parse(res.text or "")
            except ValueError as e:
                res.error = f"unparseable answer: {e}"
        return res

    async def _attempts(self, req: LLMRequest) -> LLMResult:
        usage = self.usage
        backend = self.backend
        limiter = self.limiter
        last_error = "no attempt made"
        last_answer: Answer | None = None
        transport_only = True
        variant = 0
        t_start = time.monotonic()
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                usage.retries += 1
            est = req.approx_prompt_tokens() + req.max_tokens
            if limiter is not None:
                await limiter.acquire(est)
            usage.sent += 1
            try:
                if backend.uses_timeout:
                    ans = await asyncio.wait_for(
                        backend.send(req, timeout=self.timeout, variant=variant), timeout=self.timeout + 5.0
                    )
                else:
                    ans = await backend.send(req, timeout=self.timeout, variant=variant)
            except TransientError as e:
                last_error = e.reason
                usage.errors[e.kind] += 1
                if e.rate_limited:
                    usage.rate_limited += 1
                delay = self._backoff(attempt)
                if e.retry_after is not None:
                    ra = min(max(e.retry_after, 0.0), self.max_retry_after)
                    delay = max(delay, ra)
                    if limiter is not None and e.rate_limited:
                        limiter.pause(ra)  # a 429 is about the account, not this request: everyone waits
                if limiter is not None and e.headers:
                    limiter.observe(e.headers)
                if attempt < self.max_attempts:
                    await asyncio.sleep(delay)
                continue
            except asyncio.TimeoutError:
                last_error = f"timeout after {self.timeout:g}s"
                usage.errors["timeout"] += 1
                if attempt < self.max_attempts:
                    await asyncio.sleep(self._backoff(attempt))
                continue
            except RequestFailed as e:
                usage.errors["request_failed"] += 1
                return LLMResult(request=req, attempts=attempt, error=e.reason, latency_s=time.monotonic() - t_start)
            # an answer
            usage.prompt_tokens += ans.prompt_tokens
            usage.completion_tokens += ans.completion_tokens
            if limiter is not None:
                limiter.settle(
                    est,
                    ans.prompt_tokens + ans.completion_tokens if ans.prompt_tokens or ans.completion_tokens else est,
                )
                if ans.headers:
                    limiter.observe(ans.headers)
            last_answer = ans
            transport_only = False
            parsed = None
            if req.parse is not None:
                try:
                    parsed = req.parse(ans.text)
                except ValueError as e:
                    usage.unparseable += 1
                    usage.errors["unparseable"] += 1
                    last_error = f"unparseable answer: {e}"
                    variant += 1
                    continue  # the server is fine; ask again at once (with a shifted seed if one was set)
            return LLMResult(
                request=req,
                text=ans.text,
                parsed=parsed,
                finish_reason=ans.finish_reason,
                model=ans.model,
                prompt_tokens=ans.prompt_tokens,
                completion_tokens=ans.completion_tokens,
                attempts=attempt,
                latency_s=time.monotonic() - t_start,
            )
        res = LLMResult(
            request=req,
            attempts=attempt,
            error=f"{last_error} (after {attempt} attempts)",
            latency_s=time.monotonic() - t_start,
        )
        if last_answer is not None:
            res.text = last_answer.text
            res.finish_reason = last_answer.finish_reason
            res.model = last_answer.model
        res._transport = transport_only  # type: ignore[attr-defined]
        return res
