"""HumanEval+ / MBPP+ are judged as evalplus judges them (eval/plus.py): per-task input conversion, special
oracles, float tolerance, so canonical solutions pass and the numbers are comparable with evalplus's."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.eval import benchmarks as bm
from phitools.eval import plus
from phitools.eval.sandbox import Limits, Sandbox, run_checks

LIM = Limits(cpu=10.0, wall=60.0)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2) as s:
        yield s


def mbpp_plus(number: int, entry_point: str, canonical: str, base, plus_inputs, atol=0.0) -> bm.Problem:
    rec = {
        "task_id": f"Mbpp/{number}",
        "prompt": '"""\nA task.\n"""\n',
        "entry_point": entry_point,
        "canonical_solution": textwrap.dedent(canonical),
        "base_input": base,
        "plus_input": plus_inputs,
        "atol": atol,
        "assertion": "assert False  # not run: evalplus does not run it\n",
    }
    return bm._evalplus_problem(rec, "test", "mbpp+")


def verdicts(sb, problem, completions):
    return [v.status for v in run_checks(sb, [problem.job(textwrap.dedent(c), LIM) for c in completions], workers=2)]


def test_mbpp_plus_inputs_are_converted_per_task(sb):
    # Mbpp/106: the second argument is a tuple in evalplus (JSON only has lists); the canonical solution needs it
    canonical = """
        def add_lists(test_list, test_tup):
            return test_tup + tuple(test_list)
    """
    p = mbpp_plus(106, "add_lists", canonical, [[[5, 6, 7], [9, 10]]], [[[1], [2, 3]], [[], []]])
    assert "tuple(inp[1])" in p.test_code()
    assert verdicts(
        sb,
        p,
        [
            canonical,
            """
        def add_lists(l, t):
            return list(t) + l
    """,
        ],
    ) == ["passed", "failed"]
    # an unlisted task number keeps the JSON values: the same canonical solution then fails
    q = mbpp_plus(9106, "add_lists", canonical, [[[5, 6, 7], [9, 10]]], [])
    assert verdicts(sb, q, [canonical]) == ["failed"]


def test_not_none_oracle_compares_only_whether_there_is_a_match(sb):
    canonical = """
        import re
        def check_str(string):
            return re.search('^[aeiou]', string)
    """
    p = mbpp_plus(737, "check_str", canonical, [["annie"], ["dawood"]], [["else"], ["x"]])
    assert verdicts(
        sb,
        p,
        [
            canonical,
            """
        def check_str(s):
            return s[:1] in 'aeiou' and s != ''
    """,
            """
        import re
        def check_str(s):
            return re.search('.', s)
    """,
        ],
    ) == ["passed", "passed", "failed"]


def test_set_oracle_ignores_order(sb):
    canonical = """
        def similar_elements(a, b):
            return tuple(set(a) & set(b))
    """
    p = mbpp_plus(2, "similar_elements", canonical, [[[3, 4, 5, 6], [5, 7, 4, 10]]], [[[1, 2], [2, 1]]])
    assert verdicts(
        sb,
        p,
        [
            """
        def similar_elements(a, b):
            return sorted(set(a) & set(b), reverse=True)
    """,
            """
        def similar_elements(a, b):
            return tuple(set(a) | set(b))
    """,
        ],
    ) == ["passed", "failed"]


def test_floats_get_evalplus_tolerance_and_infinities_compare_equal(sb):
    canonical = """
        def minimum(a, b):
            return min(a, b)
    """
    p = mbpp_plus(404, "minimum", canonical, [[1.5, 2.0], [-5, -4]], [[float("-inf"), float("inf")], [0.1, 0.2]])
    assert verdicts(
        sb,
        p,
        [
            canonical,
            """
        def minimum(a, b):
            return min(a, b) + (4e-7 if isinstance(a, float) and abs(a) < 10 else 0)
    """,
            """
        def minimum(a, b):
            return min(a, b) + (1e-5 if isinstance(a, float) and abs(a) < 10 else 0)
    """,
            """
        def minimum(a, b):
            return [min(a, b)]
    """,
        ],
    ) == ["passed", "passed", "failed", "failed"]


def test_find_zero_accepts_any_root():
    p = bm._evalplus_problem(
        {
            "task_id": "HumanEval/32",
            "entry_point": "find_zero",
            "atol": 1e-4,
            "prompt": "import math\n\ndef poly(xs, x):\n"
            "    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n"
            'def find_zero(xs):\n    """a zero of the polynomial"""\n',
            "canonical_solution": "    lo, hi = 0.0, 1.5\n    for _ in range(100):\n        mid = (lo + hi) / 2\n"
            "        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n"
            "        else:\n            lo = mid\n    return lo\n",
            "test": "def check(candidate):\n    pass\n",
            "base_input": [[[-6, 11, -6, 1]]],
            "plus_input": [[[-2, 1]]],
        },
        "test",
        "humaneval+",
    )
    with Sandbox(workers=1) as sb:
        got = [
            sb.check(p.job(c, LIM)).status
            for c in (
                "    return 3.0 if len(xs) == 4 else 2.0\n",  # another root than the canonical solution's 1.0
                "    return 1.5\n",
            )
        ]
    assert got == ["passed", "failed"]


# ---- numpy.allclose as evalplus calls it -------------------------------------------------------------------
_NS: dict = {}
exec(plus._HELPERS, _NS)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-(10**6), 10**6), st.booleans()
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(numbers, numbers), min_size=0, max_size=5),
    st.sampled_from([0.0, 1e-6, 1e-4, 0.5]),
    st.booleans(),
)
def test_allclose_matches_numpy(pairs, atol, nudge):
    a = [x for x, _ in pairs]
    b = [(x + 1e-7 if nudge and isinstance(x, float) and math.isfinite(x) else y) for x, y in pairs]
    expected = (
        bool(np.allclose(np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-07, atol=atol)) if pairs else True
    )
    assert _NS["_plus_allclose"](a, b, atol) == expected
    if pairs:
        x, y = a[0], b[0]
        assert _NS["_plus_allclose"](x, y, atol) == bool(np.allclose(float(x), float(y), rtol=1e-07, atol=atol))


def test_allclose_refuses_what_numpy_refuses():
    f = _NS["_plus_allclose"]
    assert not f("a", "a", 1e-6) and not f([1.0, None], [1.0, None], 1e-6)
    assert not f(10**30, 10**30 + 1, 1e-6)  # numpy holds such ints as objects: allclose raises
    assert not f([1.0, 2.0], [1.0], 1e-6) and f((1.0, 2.0), [1.0, 2.0000000001], 1e-6)
    assert f(complex(1, 1), complex(1, 1.0000001), 1e-6)


# ---- the real data ---------------------------------------------------------------------------------------
# The 14 MBPP+ canonical solutions that failed before (docs/eval.md, "Exactness"), less 255 (an answer too big
# for the sandbox to carry) and 599 (15 CPU-s, measured separately): all pass at the default limit.
FORMERLY_FAILING = [106, 120, 124, 137, 252, 300, 404, 580, 720, 737, 787, 794]


@pytest.mark.slow
def test_formerly_failing_mbpp_plus_canonical_solutions_pass(sb):
    bench = bm.load_benchmark("mbpp+", allow_download=False).by_id()
    probs = [bench[f"Mbpp/{t}"] for t in FORMERLY_FAILING]
    lim = Limits(cpu=bm.default_cpu_limit("mbpp+"))
    vs = run_checks(sb, [p.job(p.reference, lim) for p in probs], workers=2)
    assert [(p.task_id, v.status, v.reason[:200]) for p, v in zip(probs, vs) if not v.passed] == []
    # and the oracle/conversion is what makes them pass: a wrong answer still fails
    p = bench["Mbpp/106"]
    assert sb.check(p.job(p.reference.replace("test_tup + tuple(test_list)", "test_tup"), lim)).status == "failed"


@pytest.mark.slow
def test_humaneval_plus_million_digit_and_root_tasks_pass(sb):
    bench = bm.load_benchmark("humaneval+", allow_download=False).by_id()
    probs = [bench[t] for t in ("HumanEval/83", "HumanEval/32", "HumanEval/130")]
    lim = Limits(cpu=bm.default_cpu_limit("humaneval+"))
    vs = run_checks(sb, [p.job(p.reference, lim) for p in probs], workers=2)
    assert [(p.task_id, v.status, v.reason[:200]) for p, v in zip(probs, vs) if not v.passed] == []
