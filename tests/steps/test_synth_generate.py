"""synth end to end against a loopback OpenAI-compatible server: records, provenance, retries, shards, resume."""

from __future__ import annotations

import hashlib

import pytest

from phitools.llm.backends import make_backend
from phitools.llm.cache import RequestCache
from phitools.llm.client import LLMRunner
from phitools.llm.testing import FakeLLMServer, request_text
from phitools.shards import parse_shard
from phitools.steps.synth import SynthCounters, SynthPlan, synthesize
from phitools.steps.synth_prompts import builtin_template, default_dimensions
from phitools.steps.synth_spec import merge_dimensions, spec_from_dict


def exercise_answer(body: dict) -> str:
    """A valid exercise whose function name depends on the prompt and the sampling seed; the prompt
    about "broken" never gets a parseable answer."""
    text = request_text(body)
    seed = body.get("seed")
    tag = hashlib.sha256(f"{text}|{seed}".encode()).hexdigest()[:8]
    if '"broken"' in text:
        return "Sorry, I cannot write code today."
    return (
        f'Here it is.\n```python\ndef f_{tag}(n: int) -> int:\n    """Return n squared.\n\n'
        f'    >>> f_{tag}(3)\n    9\n    """\n    return n * n\n```\n'
    )


def make_plan(topics, n=12, shard=None, seed=3, kind="exercise"):
    spec = spec_from_dict({"dimensions": {"topic": topics, "tone": ["dry", "warm"]}})
    tpl = builtin_template(kind)
    spec = merge_dimensions(spec, default_dimensions(kind, tpl, list(spec.dimensions)))
    return SynthPlan(
        kind=kind,
        spec=spec,
        template=tpl,
        n=n,
        seed=seed,
        shard=parse_shard(shard) if shard else None,
        model="fake-model",
        temperature=0.8,
        max_tokens=256,
    )


def run(plan, srv, cache=None, check=None):
    backend = make_backend("openai", api_base=srv.url, model="fake-model")
    counters = SynthCounters()
    failed = []
    with LLMRunner(backend, concurrency=4, max_attempts=3, timeout=10, cache=cache, backoff_base=0.01) as runner:
        recs = list(synthesize(plan, runner, counters=counters, on_failed=failed.append, check=check))
    return recs, failed, counters


def test_exercise_records_carry_text_and_provenance():
    with FakeLLMServer(answer=exercise_answer) as srv:
        plan = make_plan(["loops", "sets"])
        recs, failed, counters = run(plan, srv)
        assert srv.n == 12
        sent_seeds = sorted(b["seed"] for b in srv.bodies)
    assert failed == [] and counters.written == 12 and counters.attempted == 12
    assert [r["synth"]["index"] for r in recs] == list(range(12))
    r = recs[0]
    assert r["id"] == "synth-exercise-s3-0000000"
    assert r["text"] == r["prompt"] + r["solution"]
    assert r["prompt"].startswith("def f_") and r["prompt"].rstrip().endswith('"""')
    assert r["solution"] == "    return n * n\n" and r["entry_point"].startswith("f_")
    s = r["synth"]
    assert s["draw"] == plan.spec.draw(3, 0) and set(s["draw"]) == {"topic", "tone", "difficulty", "requirement"}
    assert s["seed"] == 3 and s["model"] == "fake-model" and s["attempts"] == 1 and s["doctests"] == 1
    assert s["sampling"] == {"temperature": 0.8, "max_tokens": 256, "top_p": 0.95, "seed": plan.sampling_seed(0)}
    assert s["template"] == {"id": "builtin:exercise", "sha256": plan.template.sha256}
    assert sent_seeds == sorted(plan.sampling_seed(i) for i in range(12))


def test_unparseable_answers_are_retried_then_failed_and_counted():
    calls = {}

    def answer(body):
        text = request_text(body)
        calls[text] = calls.get(text, 0) + 1
        if '"flaky"' in text and calls[text] == 1:
            return "```python\ndef oops(:\n```"  # first try does not parse
        return exercise_answer(body)

    with FakeLLMServer(answer=answer) as srv:
        plan = make_plan(["flaky", "broken"], n=10)
        recs, failed, counters = run(plan, srv)
        draws = [plan.spec.draw(3, i)["topic"] for i in range(10)]
        seeds = [b["seed"] for b in srv.bodies]
    n_broken = draws.count("broken")
    assert 0 < n_broken < 10
    assert counters.written == 10 - n_broken and counters.failed == {"unparseable": n_broken}
    assert all(r["synth"]["attempts"] == 2 for r in recs)  # flaky: one retry, with a shifted seed
    assert len(seeds) == len(set(seeds))  # every attempt was a different request
    assert len(failed) == n_broken
    f = failed[0]
    assert "text" not in f and f["raw"] == "Sorry, I cannot write code today."
    assert (
        f["synth"]["attempts"] == 3 and "unparseable" in f["synth"]["error"] and "does not parse" in f["synth"]["error"]
    )


def test_shards_together_make_exactly_the_unsharded_records():
    with FakeLLMServer(answer=exercise_answer) as srv:
        whole, _, _ = run(make_plan(["a", "b", "c"], n=11), srv)
        parts = [run(make_plan(["a", "b", "c"], n=11, shard=f"{k}/3"), srv)[0] for k in range(3)]
    merged = sorted((r for p in parts for r in p), key=lambda r: r["synth"]["index"])
    assert merged == whole


def test_rerun_with_the_cache_sends_nothing_and_writes_the_same(tmp_path):
    with FakeLLMServer(answer=exercise_answer) as srv:
        cache = RequestCache(tmp_path / "c.sqlite")
        first, _, _ = run(make_plan(["a", "b"], n=8), srv, cache=cache)
        sent = srv.n
        second, _, _ = run(make_plan(["a", "b"], n=8), srv, cache=cache)
        assert srv.n == sent == 8
        # a longer run re-uses the first 8 answers and asks only for the new ones
        third, _, _ = run(make_plan(["a", "b"], n=10), srv, cache=cache)
        assert srv.n == 10
        cache.close()
    assert first == second == third[:8]


def test_check_failures_become_failed_records():
    with FakeLLMServer(answer=exercise_answer) as srv:
        recs, failed, counters = run(
            make_plan(["a"], n=4), srv, check=lambda r: "doctest failed" if r["synth"]["index"] % 2 else None
        )
    assert [r["synth"]["index"] for r in recs] == [0, 2]
    assert counters.check == {"passed": 2, "failed": 2} and counters.failed == {"check_failed": 2}
    assert failed[0]["synth"]["error"] == "check failed: doctest failed" and failed[0]["raw"].startswith("def f_")


@pytest.mark.parametrize("kind", ["textbook", "story"])
def test_prose_kinds(kind):
    with FakeLLMServer(answer=lambda b: "  # Loops\n\nA loop repeats.\n  ") as srv:
        recs, _, counters = run(make_plan(["loops"], n=3, kind=kind), srv)
        user = srv.bodies[0]["messages"][-1]["content"]
    assert [r["text"] for r in recs] == ["# Loops\n\nA loop repeats."] * 3
    assert "prompt" not in recs[0] and counters.written == 3
    assert '"loops"' in user and "- tone: " in user  # the extra dimension reaches the prompt via {constraints}
