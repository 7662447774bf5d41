"""The runner + OpenAI-compatible backend against a real HTTP server on loopback that injects faults."""

from __future__ import annotations

import socket
import time

import pytest

from phitools.errors import EndpointError
from phitools.llm import LLMRequest, LLMRunner, RateLimiter, RequestCache
from phitools.llm.openai_compat import OpenAIBackend
from phitools.llm.parse import parse_score
from phitools.llm.testing import FakeLLMServer, request_text

SECRET = "sk-test-SECRET-0123456789abcdef"


def chat(text: str, **kw) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": text}], **kw)


def runner(srv: FakeLLMServer, **kw) -> LLMRunner:
    backend = OpenAIBackend(srv.url, "fake", api_key=SECRET, concurrency=kw.get("concurrency", 4))
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5)
    return LLMRunner(backend, **kw)


def echo(body: dict) -> str:
    return "echo:" + request_text(body)


def test_results_come_back_in_input_order_with_bounded_concurrency():
    with FakeLLMServer(latency=0.02, answer=echo) as srv, runner(srv, concurrency=8) as r:
        out = list(r.run(chat(f"q{i}") for i in range(60)))
    assert [o.text for o in out] == [f"echo:q{i}" for i in range(60)]
    assert all(o.ok and o.attempts == 1 for o in out)
    assert 2 <= srv.max_in_flight <= 8
    assert r.usage.requests == 60 and r.usage.sent == 60 and r.usage.failures == 0
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_completions_endpoint_and_no_n_no_stream():
    with FakeLLMServer(answer=echo) as srv, runner(srv) as r:
        res = r.complete(LLMRequest(prompt="def f(x):", max_tokens=8, seed=3, sample=2, stop=["\n\n"]))
    assert res.ok and res.text == "echo:def f(x):"
    body = srv.bodies[0]
    assert body["prompt"] == "def f(x):" and body["seed"] == 5 and body["stop"] == ["\n\n"]
    assert "n" not in body and "stream" not in body


@pytest.mark.parametrize("fault", ["500", "503", "drop", "malformed", "no_choices"])
def test_transient_faults_are_retried(fault):
    with FakeLLMServer(faults=[fault], answer=echo, retry_after=0) as srv, runner(srv, concurrency=1) as r:
        res = r.complete(chat("hello"))
    assert res.ok and res.text == "echo:hello" and res.attempts == 2
    assert r.usage.retries == 1 and sum(r.usage.errors.values()) == 1


def test_429_retry_after_is_honoured():
    with FakeLLMServer(faults=["429"], retry_after=0.4) as srv, runner(srv, concurrency=1, limiter=RateLimiter()) as r:
        res = r.complete(chat("x"))
    assert res.ok and res.attempts == 2 and r.usage.rate_limited == 1
    assert srv.arrivals[1] - srv.arrivals[0] >= 0.38


def test_slow_answer_times_out_and_is_retried():
    with FakeLLMServer(faults=["slow"], slow_s=5) as srv, runner(srv, concurrency=1, timeout=0.3) as r:
        t = time.monotonic()
        res = r.complete(chat("x"))
    assert res.ok and res.attempts == 2 and time.monotonic() - t < 3
    assert r.usage.errors["timeout"] == 1


def test_bounded_attempts_give_a_failure_with_the_reason_never_a_default():
    with (
        FakeLLMServer(faults=["500"] * 3 + ["503"] * 10, retry_after=0) as srv,
        runner(srv, concurrency=1, max_attempts=3) as r,
    ):
        res = r.complete(chat("x", parse=lambda t: parse_score(t)))
    assert not res.ok and res.text is None and res.parsed is None
    assert "HTTP 500" in res.error and "after 3 attempts" in res.error
    assert srv.n == 3 and r.usage.failures == 1


def test_unparseable_answer_is_retried_with_a_shifted_seed_then_fails():
    with FakeLLMServer(faults=["wrong_schema"]) as srv, runner(srv, concurrency=1) as r:
        res = r.complete(chat("rate me", seed=7, parse=lambda t: parse_score(t)))
    assert res.ok and res.attempts == 2 and 0 <= res.parsed[0] <= 5
    assert srv.bodies[0]["seed"] == 7 and srv.bodies[1]["seed"] != 7  # a greedy server would repeat itself
    with FakeLLMServer(answer="I cannot rate this.") as srv, runner(srv, concurrency=1, max_attempts=2) as r:
        res = r.complete(chat("rate me", parse=lambda t: parse_score(t)))
    assert not res.ok and res.error.startswith("unparseable answer") and res.text == "I cannot rate this."
    assert r.usage.unparseable == 2


def test_request_errors_fail_at_once_and_auth_errors_stop_the_run():
    with FakeLLMServer() as srv:
        r = runner(srv, concurrency=1)
        # 400: this request cannot succeed; no retry

        async def bad_request(fault, route, body, writer):
            await srv._send(writer, 400, b'{"error": {"message": "prompt is too long"}}')
            return True

        srv._serve = bad_request
        with r:
            res = r.complete(chat("x"))
            assert not res.ok and "HTTP 400" in res.error and "too long" in res.error and res.attempts == 1

            async def unauthorised(fault, route, body, writer):
                await srv._send(writer, 401, ('{"error": {"message": "bad key %s"}}' % SECRET).encode())  # noqa: UP031
                return True

            srv._serve = unauthorised
            with pytest.raises(EndpointError) as ei:
                r.complete(chat("y"))
    assert "401" in str(ei.value) and SECRET not in str(ei.value) and "<redacted>" in str(ei.value)
    assert srv.authorization[f"Bearer {SECRET}"] >= 1


def test_llama_cpp_quirks_json_schema_500_falls_back_and_serial_server():
    with FakeLLMServer(reject_json_schema=True, serial=True, latency=0.01) as srv, runner(srv, concurrency=4) as r:
        schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
        out = list(r.run(chat(f"d{i}", json_schema=schema, parse=lambda t: parse_score(t)) for i in range(12)))
    assert all(o.ok for o in out)
    assert r.backend.structured_mode == "json_object" and r.backend.fallbacks == ["json_schema->json_object"]
    kinds = [b.get("response_format", {}).get("type") for b in srv.bodies]
    assert kinds[-1] == "json_object" and kinds.count("json_schema") <= 5  # the negotiation, then never again
    assert srv.max_in_flight >= 1 and all("n" not in b and "stream" not in b for b in srv.bodies)


def test_a_mode_that_worked_is_not_dropped_for_one_server_error():
    schema = {"type": "object"}
    with FakeLLMServer() as srv, runner(srv, concurrency=1) as r:
        assert r.complete(chat("a", json_schema=schema)).ok
        srv.add_faults("500")
        res = r.complete(chat("b", json_schema=schema))
    assert res.ok and res.attempts == 2 and r.backend.structured_mode == "json_schema"


def test_rate_limit_headers_make_the_client_wait():
    def headers(n):
        return {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "400ms"} if n == 1 else {}

    with FakeLLMServer(rate_headers=headers) as srv, runner(srv, concurrency=1, limiter=RateLimiter()) as r:
        out = list(r.run(chat(f"q{i}") for i in range(2)))
    assert all(o.ok for o in out)
    assert srv.arrivals[1] - srv.arrivals[0] >= 0.35


def test_cache_answers_rerun_without_sending_and_keeps_no_key(tmp_path):
    path = tmp_path / "c.sqlite"
    reqs = [chat(f"q{i}", parse=lambda t: parse_score(t)) for i in range(5)] + [chat("q0", sample=1)]
    with FakeLLMServer() as srv:
        with runner(srv, cache=RequestCache(path)) as r:
            first = list(r.run(reqs))
        assert srv.n == 6 and r.usage.cached == 0
        with runner(srv, cache=RequestCache(path)) as r:
            again = list(r.run(reqs))
        assert srv.n == 6 and r.usage.cached == 6 and r.usage.sent == 0
    assert [a.text for a in again] == [f.text for f in first]
    assert [a.parsed for a in again[:5]] == [f.parsed for f in first[:5]]
    assert all(a.cached for a in again)
    for p in tmp_path.iterdir():
        assert SECRET.encode() not in p.read_bytes()


def test_unparseable_final_answers_are_cached_but_transport_failures_are_not(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    with FakeLLMServer(answer="no idea") as srv, runner(srv, cache=cache, max_attempts=2) as r:
        assert not r.complete(chat("a", parse=lambda t: parse_score(t))).ok
        n = srv.n
        res = r.complete(chat("a", parse=lambda t: parse_score(t)))
        assert not res.ok and res.cached and srv.n == n  # answered: not sent again
    with FakeLLMServer(faults=["500"] * 2, retry_after=0) as srv, runner(srv, cache=cache, max_attempts=2) as r:
        assert not r.complete(chat("b")).ok
        assert r.complete(chat("b")).ok and srv.n == 3  # failed for transport reasons: sent again


def test_circuit_breaker_stops_a_run_against_a_dead_endpoint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m")
    with LLMRunner(backend, concurrency=2, max_attempts=2, backoff_base=0.001, abort_after=3) as r:
        with pytest.raises(EndpointError, match="in a row"):
            list(r.run(chat(f"q{i}") for i in range(50)))


def test_run_groups_and_errors_from_the_input_propagate():
    with FakeLLMServer(answer=echo) as srv, runner(srv) as r:
        groups = list(r.run_groups((i, [chat(f"{i}-{k}", sample=k) for k in range(i % 3)]) for i in range(7)))
        assert [g[0] for g in groups] == list(range(7))
        assert [[x.text for x in g[1]] for g in groups][:3] == [[], ["echo:1-0"], ["echo:2-0", "echo:2-1"]]

        def bad():
            yield chat("ok")
            raise ValueError("input broke")

        with pytest.raises(ValueError, match="input broke"):
            list(r.run(bad()))
