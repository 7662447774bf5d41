"""Client-side rate limiting: requests and tokens per minute, plus what the server says in its headers.

Two token buckets refill continuously (RPM and TPM). Each holds at most one second's worth of budget (but
always room for one request), so a run starts smoothly instead of spending a minute's budget in a burst
that per-second enforcement on the server would reject. A request larger than a second's tokens is let
through when the bucket is full and leaves it in debt, which later requests wait out.

Servers that send `x-ratelimit-remaining-requests` / `-tokens` and `x-ratelimit-reset-requests` / `-tokens`
(OpenAI, Azure, many proxies) are obeyed as well: when the remaining budget is used up the limiter waits
until the reported reset. A 429's Retry-After pauses every request, not just the one that got it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Parse a reset/retry duration: '20ms', '1s', '6m0s', '1h2m3.5s', '0.5' (seconds), or an epoch time."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        pass
    else:
        if x > 1e9:  # an absolute unix time
            return max(0.0, x - time.time())
        return max(0.0, x)
    total = 0.0
    pos = 0
    for m in _DURATION.finditer(v):
        if m.start() != pos:
            return None
        n = float(m.group(1))
        total += {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[m.group(2)]
        pos = m.end()
    return total if pos == len(v) and pos > 0 else None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After: delta-seconds or an HTTP date (RFC 9110); also accepts '1s'-style durations."""
    if value is None:
        return None
    d = parse_duration(value)
    if d is not None:
        return d
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class RateLimiter:
    """RPM/TPM limiter for one asyncio loop. `acquire(tokens)` before a request; `settle` and `observe` after."""

    def __init__(
        self, rpm: float | None = None, tpm: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ):
        if rpm is not None and rpm <= 0:
            raise ValueError("rpm must be > 0")
        if tpm is not None and tpm <= 0:
            raise ValueError("tpm must be > 0")
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        now = clock()
        self._r_rate = rpm / 60.0 if rpm else None
        self._t_rate = tpm / 60.0 if tpm else None
        self._r_cap = max(1.0, self._r_rate) if self._r_rate else 0.0
        self._t_cap = max(1.0, self._t_rate) if self._t_rate else 0.0
        self._r = self._r_cap
        self._t = self._t_cap
        self._last = now
        self._pause_until = 0.0
        # server-reported budgets: remaining count and when it resets (monotonic clock)
        self._srv_req: int | None = None
        self._srv_req_reset = 0.0
        self._srv_tok: int | None = None
        self._srv_tok_reset = 0.0
        self._lock: asyncio.Lock | None = None
        self.waited_s = 0.0

    def _refill(self, now: float) -> None:
        dt = max(0.0, now - self._last)
        self._last = now
        if self._r_rate:
            self._r = min(self._r_cap, self._r + dt * self._r_rate)
        if self._t_rate:
            self._t = min(self._t_cap, self._t + dt * self._t_rate)

    def _wait_needed(self, tokens: int, now: float) -> float:
        wait = self._pause_until - now
        if self._r_rate and self._r < 1.0:
            wait = max(wait, (1.0 - self._r) / self._r_rate)
        if self._t_rate:
            need = min(float(tokens), self._t_cap)  # an oversized request waits for a full bucket, then goes
            if self._t < need:
                wait = max(wait, (need - self._t) / self._t_rate)
        if self._srv_req is not None and self._srv_req <= 0 and now < self._srv_req_reset:
            wait = max(wait, self._srv_req_reset - now)
        if self._srv_tok is not None and self._srv_tok < tokens and now < self._srv_tok_reset:
            wait = max(wait, self._srv_tok_reset - now)
        return wait

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of about `tokens` tokens may be sent (FIFO among waiters)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self.clock()
                self._refill(now)
                wait = self._wait_needed(tokens, now)
                if wait <= 0:
                    break
                self.waited_s += wait
                await asyncio.sleep(wait)
            if self._r_rate:
                self._r -= 1.0
            if self._t_rate:
                self._t -= float(tokens)
            if self._srv_req is not None:
                self._srv_req -= 1
            if self._srv_tok is not None:
                self._srv_tok -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real usage is known."""
        if self._t_rate:
            self._t = min(self._t_cap, self._t + float(estimated - actual))

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (a 429 with Retry-After)."""
        self._pause_until = max(self._pause_until, self.clock() + max(0.0, seconds))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's view of the remaining budget (x-ratelimit-* headers, lower-cased keys)."""
        now = self.clock()
        rr = _int(headers.get("x-ratelimit-remaining-requests"))
        if rr is not None:
            reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
            self._srv_req = rr
            self._srv_req_reset = now + (reset if reset is not None else 1.0)
        rt = _int(headers.get("x-ratelimit-remaining-tokens"))
        if rt is not None:
            reset = parse_duration(headers.get("x-ratelimit-reset-tokens"))
            self._srv_tok = rt
            self._srv_tok_reset = now + (reset if reset is not None else 1.0)

    def describe(self) -> dict:
        return {"rpm": self.rpm, "tpm": self.tpm, "waited_s": round(self.waited_s, 3)}
