"""RPM/TPM token buckets, server rate-limit headers, Retry-After parsing."""

from __future__ import annotations

import asyncio
import time

import pytest

from phitools.llm.ratelimit import RateLimiter, parse_duration, parse_retry_after


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("20ms", 0.02),
        ("1s", 1),
        ("6m0s", 360),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("7", 7),
        ("", None),
        ("soon", None),
        ("5x", None),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_retry_after_http_date_and_epoch():
    from email.utils import formatdate

    assert 8 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10.5
    assert 4 <= parse_duration(str(time.time() + 5)) <= 5.1
    assert parse_retry_after("3") == 3


def _timed(limiter: RateLimiter, n: int, tokens: int = 0) -> float:
    async def go():
        t = time.monotonic()
        await asyncio.gather(*(limiter.acquire(tokens) for _ in range(n)))
        return time.monotonic() - t

    return asyncio.run(go())


def test_rpm_spreads_requests_after_a_one_second_burst():
    # 3000 rpm = 50/s with a 50-request bucket: 100 requests need ~1 s, not 0 and not 2
    assert 0.8 <= _timed(RateLimiter(rpm=3000), 100) <= 1.6


def test_tpm_counts_tokens_and_settle_returns_unused_budget():
    lim = RateLimiter(tpm=60_000)  # 1000 tokens/s
    assert 0.8 <= _timed(lim, 4, tokens=500) <= 1.6
    lim = RateLimiter(tpm=60_000)
    asyncio.run(lim.acquire(1000))
    lim.settle(1000, 10)  # only 10 were used: the rest comes back
    assert _timed(lim, 1, tokens=900) < 0.2


def test_oversized_request_is_not_blocked_forever():
    assert _timed(RateLimiter(tpm=600), 1, tokens=5000) < 0.2  # waits for a full bucket (it is), then goes


def test_server_headers_and_pause():
    lim = RateLimiter()
    lim.observe({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "300ms"})
    assert _timed(lim, 1) < 0.1  # one left
    assert 0.2 <= _timed(lim, 1) <= 0.6  # none left: wait for the reset
    lim.observe({"x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "0.3s"})
    assert 0.2 <= _timed(lim, 1, tokens=100) <= 0.6
    lim = RateLimiter()
    lim.pause(0.3)
    assert 0.25 <= _timed(lim, 1) <= 0.7
