"""Scoring samples: validation, per-sample records, summary, and the wall-clock retry policy."""

from __future__ import annotations

import pytest

from phitools.errors import DataError
from phitools.eval.benchmarks import Benchmark, Problem
from phitools.eval.sandbox import Limits, Sandbox, run_checks
from phitools.eval.score import collect_samples, score

P1 = Problem(
    task_id="t/0",
    prompt="def inc(x):\n",
    test="def check(candidate):\n    assert candidate(1) == 2\n",
    style="humaneval",
    entry_point="inc",
    reference="    return x + 1\n",
)
P2 = Problem(
    task_id="t/1",
    prompt="def dbl(x):\n",
    test="def check(candidate):\n    assert candidate(2) == 4\n",
    style="humaneval",
    entry_point="dbl",
    reference="    return 2 * x\n",
)
BENCH = Benchmark("toy", [P1, P2], "toy", "0" * 64, False)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2) as s:
        yield s


def test_collect_samples_numbers_per_task_and_validates():
    recs = [
        {"task_id": "t/0", "completion": "a", "model": "m"},
        {"task_id": "t/1", "completion": "b"},
        {"task_id": "t/0", "completion": "c"},
    ]
    s = collect_samples(recs, BENCH)
    assert [(x.task_id, x.completion_id) for x in s] == [("t/0", 0), ("t/1", 0), ("t/0", 1)]
    with pytest.raises(DataError, match="sample 2: task_id 't/9'"):
        collect_samples([recs[0], {"task_id": "t/9", "completion": ""}], BENCH, source="s.jsonl")
    with pytest.raises(DataError, match="no 'completion'"):
        collect_samples([{"task_id": "t/0"}], BENCH)
    from collections import Counter

    dropped = Counter()
    s = collect_samples(recs, BENCH, problems={"t/1": P2}, dropped=dropped)
    assert len(s) == 1 and dropped["outside_limit"] == 2


def test_mbpp_task_ids_are_normalised():
    from phitools.eval.score import normalise_task_id

    b = Benchmark("mbpp", [], "", "", True)
    assert normalise_task_id(11, b) == normalise_task_id("11", b) == normalise_task_id("Mbpp/11", b) == "Mbpp/11"


def test_score_records_and_summary(sb):
    recs = [
        {"task_id": "t/0", "completion": "    return x + 1\n", "extra": [1, 2]},
        {"task_id": "t/0", "completion": "    return x\n"},
        {"task_id": "t/1", "completion": "    return 2 * x\n"},
        {"task_id": "t/1", "completion": "    return 2 * x\n"},
    ]
    samples = collect_samples(recs, BENCH)
    results, summary = score(samples, BENCH.by_id(), sb, limits=Limits(cpu=2), workers=2, ks=[1, 2, 3])
    assert [(r["task_id"], r["completion_id"], r["passed"]) for r in results] == [
        ("t/0", 0, True),
        ("t/0", 1, False),
        ("t/1", 0, True),
        ("t/1", 1, True),
    ]
    assert results[0]["extra"] == [1, 2] and results[0]["result"] == "passed"  # unknown fields pass through
    assert results[1]["status"] == "failed" and results[1]["result"].startswith("failed: assertion failed")
    assert summary["pass_at_k"] == {"pass@1": pytest.approx(0.75), "pass@2": pytest.approx(1.0)}
    assert summary["status"] == {"passed": 3, "failed": 1, "timed_out": 0, "error": 0}
    assert summary["per_task"] == {"t/0": {"n": 2, "c": 1}, "t/1": {"n": 2, "c": 2}}


def test_wall_timeouts_are_retried_once_alone(sb):
    # Sleeping uses no CPU: the first run hits the (tight) wall limit, the retry with 3x the wall passes.
    slow = P1.job("    import time\n    time.sleep(1.2)\n    return x + 1\n", Limits(cpu=1.0, wall=0.8))
    hog = P1.job("    while True:\n        pass\n", Limits(cpu=0.3, wall=5))
    v_slow, v_hog = run_checks(sb, [slow, hog], workers=2)
    assert v_slow.status == "passed" and v_slow.retried, v_slow
    assert v_hog.status == "timed_out" and v_hog.limit == "cpu" and not v_hog.retried


def test_evalplus_solution_field_is_the_whole_program(sb):
    # evalplus's samples may carry `solution` (prompt included) instead of `completion`
    recs = [
        {"task_id": "t/0", "solution": "def inc(x):\n    return x + 1\n"},
        {"task_id": "t/0", "solution": "    return x + 1\n"},  # not a whole program: fails to load
        {"task_id": "t/1", "completion": "    return 2 * x\n", "solution": "ignored when completion is given"},
    ]
    samples = collect_samples(recs, BENCH)
    assert [s.whole for s in samples] == [True, True, False]
    results, _ = score(samples, BENCH.by_id(), sb, limits=Limits(cpu=2), workers=2, ks=[1])
    assert [r["passed"] for r in results] == [True, False, True]
    assert results[0]["solution"] == recs[0]["solution"] and "completion" not in results[0]
    with pytest.raises(DataError, match="solution is not a string"):
        collect_samples([{"task_id": "t/0", "solution": 3}], BENCH)
