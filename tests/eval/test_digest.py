"""Answers too large to be a message are compared by digest (eval/_wire.py `digest`): the candidate's process
hashes its answer, the judge hashes its expected value, and the judge compares. Equal digests must mean
`==`-equal values, and `==`-equal values must give equal digests, whatever path the encoder takes."""

from __future__ import annotations

import hashlib
import marshal
import textwrap
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.eval import _wire as wire
from phitools.eval import benchmarks as bm
from phitools.eval.sandbox import Limits, Sandbox, run_checks


def dig(x) -> str:
    return wire.digest(x, coerce=True)[0]


# ---- the encoding: equal digests exactly when `==` ---------------------------------------------------------
# numbers chosen so that many are equal across types (True, 1, 1.0, Fraction(1), Decimal("1.0"), 1+0j, ...)
NUMBERS = [
    0,
    1,
    2,
    -1,
    True,
    False,
    0.0,
    -0.0,
    1.0,
    2.0,
    0.5,
    -0.5,
    0.1,
    1e300,
    10**300,
    2**53,
    2**53 + 1,
    float(2**53),
    2**80,
    -(2**80),
    float("inf"),
    float("-inf"),
    Fraction(1, 2),
    Fraction(1, 3),
    Fraction(4, 2),
    Fraction(-1, 2),
    Decimal("0.5"),
    Decimal("0.1"),
    Decimal("1.0"),
    Decimal("-0"),
    Decimal("Infinity"),
    Decimal("1E+300"),
    complex(1, 0),
    complex(0.5, 0),
    complex(-0.0, 2),
    complex(0, 2),
    complex(1, -1),
]
atoms = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(["", "a", "é\ud800", "ab"]),
    st.sampled_from([b"", b"a", bytearray(b"a")]),
    st.none(),
    st.sampled_from(
        [int, str, range(0), range(3, 3), range(2), range(0, 2, 1), range(0, 4, 2), range(1, 2, 5), range(1, 3, 7)]
    ),
)
hashable = st.recursive(
    atoms.filter(lambda v: not isinstance(v, bytearray)),
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)
values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.sets(hashable, max_size=4),
        st.frozensets(hashable, max_size=3),
        st.dictionaries(hashable, inner, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None)
@given(values, values)
def test_digests_are_equal_exactly_when_values_are(a, b):
    assert (dig(a) == dig(b)) == (a == b)
    assert dig(a) == dig(a)


# numbers `==` another number of another type
ALIKE = {
    1: [True, 1.0, Fraction(1), Decimal("1.0"), complex(1, 0)],
    0: [False, 0.0, -0.0, Decimal("-0"), 0j],
    0.5: [Fraction(1, 2), Decimal("0.5"), complex(0.5, 0)],
    2: [2.0, Fraction(4, 2), Decimal("2")],
    float("inf"): [Decimal("Infinity")],
    10**300: [Decimal("1E+300")],
}


def _alike(x, rnd, hashable_only=False):
    """A value equal to x, of other types and in other orders."""
    t = type(x)
    if t in (int, float, bool) and x in ALIKE and not (t is float and x != x):
        return rnd.choice(ALIKE[x] + [x])
    if t is list:
        return [_alike(v, rnd) for v in x]
    if t is tuple:
        return tuple(_alike(v, rnd, hashable_only) for v in x)
    if t in (set, frozenset):
        items = [_alike(v, rnd, True) for v in x]
        rnd.shuffle(items)
        return frozenset(items) if hashable_only or rnd.random() < 0.5 else set(items)
    if t is dict:
        items = [(_alike(k, rnd, True), _alike(v, rnd)) for k, v in x.items()]
        rnd.shuffle(items)
        return dict(items)
    if t is bytes and not hashable_only:
        return bytearray(x)
    return x


@settings(max_examples=800, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_equal_values_of_other_types_and_orders_have_the_same_digest(a, rnd):
    b = _alike(a, rnd)
    assert a == b
    assert dig(a) == dig(b)


def test_equal_values_of_other_types_and_orders_have_one_digest():
    assert dig(1) == dig(True) == dig(1.0) == dig(Fraction(1)) == dig(Decimal("1.0")) == dig(complex(1, 0))
    assert dig(0.5) == dig(Fraction(1, 2)) == dig(Decimal("0.5")) != dig(Decimal("0.1"))
    assert dig(-0.0) == dig(0) and dig(Decimal("Infinity")) == dig(float("inf")) != dig(float("-inf"))
    assert dig({1, 2, 3}) == dig(frozenset([3, 2, 1])) and dig({"a": 1, "b": (2,)}) == dig({"b": (2,), "a": 1})
    assert dig([1]) != dig((1,)) and dig("a") != dig(b"a") and dig(b"a") == dig(bytearray(b"a"))
    assert dig(range(0)) == dig(range(5, 5)) and dig(range(3)) != dig([0, 1, 2])
    assert dig(2**53 + 1) != dig(float(2**53)) and dig(10**400) != dig(10**400 + 1)
    # objects, not identity: one string object many times, or as many equal ones (interned or not)
    import sys

    shared, big = "word", 10**30
    assert dig([(shared, big)] * 3 + [shared]) == dig(
        [("".join(["wo", "rd"]), 10**29 * 10) for _ in range(3)] + [sys.intern("wo" + "rd")]
    )


def test_nan_is_flagged_and_never_compared_by_digest():
    nan = float("nan")
    for v in ([nan], {"a": (1, complex(nan, 1))}, {Decimal("NaN")}, [Decimal("sNaN")]):
        assert wire.digest(v)[2] is True
    assert wire.digest([1.5, float("inf")])[2] is False


class Node:
    pass


def test_only_plain_data_has_a_digest():
    for odd in (Node(), [1, Node()], {"k": Node()}, {Node()}, memoryview(b"ab"), iter([1]), print):
        with pytest.raises(wire.Unencodable):
            wire.digest(odd, coerce=True)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(wire.Unencodable):
        wire.digest(cyclic)
    # with `coerce`, what `==` takes as plain data is that data (as on the wire)
    import collections
    import enum

    class Color(enum.IntEnum):
        RED = 1

    Pair = collections.namedtuple("Pair", "a b")
    assert dig([Color.RED, Pair(1, "x"), collections.UserList([2])]) == dig([1, (1, "x"), [2]])
    with pytest.raises(wire.Unencodable):
        wire.digest(Pair(1, 2))  # without coerce a subclass is not plain


big_values = st.lists(
    st.one_of(
        st.lists(st.sampled_from(["Dog", "Cat", "é", ""]), max_size=90).map(tuple),
        st.lists(st.sampled_from([0.25, 1.5, -2.75, float("inf")]), max_size=90).map(tuple),
        st.lists(st.sampled_from([1.0, 0.25, -0.0]), max_size=5),
        st.lists(st.integers(-(2**70), 2**70), max_size=90),
        st.lists(st.sampled_from([True, None, b"x", 3]), max_size=90).map(tuple),
        st.sampled_from(["s", 7, 0.5, (), []]),
    ),
    max_size=3000,
)


@settings(max_examples=60, deadline=None)
@given(big_values)
def test_marshal_fast_path_writes_what_the_item_by_item_path_writes(monkeypatch_values):
    # runs of simple items go to marshal in one call; the result must not depend on that
    fast = wire.digest(monkeypatch_values)
    saved = wire._marshalled_as_is
    wire._marshalled_as_is = lambda part, types: False
    try:
        slow = wire.digest(monkeypatch_values)
    finally:
        wire._marshalled_as_is = saved
    assert fast == slow


def test_lists_of_simple_items_are_their_marshal_bytes():
    x = [(1, "a", None, b"x"), [2.5, -3.25], ("é\ud800", 2**100), list(range(5000))]
    assert dig(x) == hashlib.sha256(marshal.dumps(x, 2)).hexdigest()


# ---- in the sandbox ----------------------------------------------------------------------------------------
LIM = Limits(cpu=20.0, wall=90.0)
N = 2_000_000  # a list of N small ints: ~10 MB canonical, over wire.DIGEST_MIN


def large(value) -> bool:
    return wire.digest(value)[1] >= wire.DIGEST_MIN


def mbpp_plus(entry_point: str, canonical: str, plus_inputs, base=([3],)) -> bm.Problem:
    rec = {
        "task_id": "Mbpp/9901",
        "prompt": '"""\nA task.\n"""\n',
        "entry_point": entry_point,
        "canonical_solution": textwrap.dedent(canonical),
        "base_input": list(base),
        "plus_input": plus_inputs,
        "atol": 0,
        "assertion": "",
    }
    return bm._evalplus_problem(rec, "test", "mbpp+")


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2) as s:
        yield s


def verdicts(sb, problem, completions):
    return run_checks(sb, [problem.job(textwrap.dedent(c), LIM) for c in completions], workers=2)


def test_large_answers_are_compared_by_digest(sb):
    n = N // 4
    assert large([(i, str(i)) for i in range(n)]) and not large([(i, str(i)) for i in range(5)])
    canonical = """
        def pairs(n):
            return [(i, str(i)) for i in range(n)]
    """
    p = mbpp_plus("pairs", canonical, [[n], [5]])
    vs = verdicts(
        sb,
        p,
        [
            canonical,
            """
        def pairs(n):
            out = []
            for i in range(n):
                out.append((float(i), "%d" % i))    # 1.0 == 1: equal, as `==` sees it
            return out
    """,
            """
        import collections
        P = collections.namedtuple("P", "a b")
        class L(list):
            pass
        def pairs(n):
            return L(P(i, str(i)) for i in range(n))  # subclasses: compared as their plain data
    """,
            """
        def pairs(n):
            out = [(i, str(i)) for i in range(n)]
            if n > 1000:
                out[n // 2] = (n // 2, "x")             # one item wrong
            return out
    """,
            """
        def pairs(n):
            return [(i, str(i)) for i in range(n)][:-1] if n > 1000 else [(i, str(i)) for i in range(n)]
    """,
        ],
    )
    assert [v.status for v in vs] == ["passed", "passed", "passed", "failed", "failed"], vs
    assert all("compared by digest" in v.reason and "plus input 0" in v.reason for v in vs[3:]), vs


def test_a_non_plain_or_forged_answer_to_a_large_expected_value_fails(sb):
    canonical = """
        def numbers(n):
            return list(range(n))
    """
    assert large(list(range(N)))
    p = mbpp_plus("numbers", canonical, [[N]])
    vs = verdicts(
        sb,
        p,
        [
            """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def numbers(n):
            return AlwaysEqual() if n > 1000 else list(range(n))
    """,
            """
        class AlwaysEqual(object):
            def __eq__(self, other):
                return True
        def numbers(n):
            out = list(range(n))
            if n > 1000:
                out[-1] = AlwaysEqual()      # one odd object among plain items
            return out
    """,
            """
        import sys
        wire = sys.modules["phitools.eval._wire"]   # the candidate's own copy: it can make it say anything
        import hashlib, marshal
        wire.digest = lambda value, coerce=False: (hashlib.sha256(marshal.dumps(value, 2)).hexdigest(), 0, False)
        def numbers(n):
            return list(range(n - 1 if n > 1000 else n))  # a wrong answer, and a digest of its choosing
    """,
            """
        import sys
        sys.modules["phitools.eval._wire"].digest = lambda value, coerce=False: ("not a digest", 0, False)
        def numbers(n):
            return list(range(n))
    """,
        ],
    )
    assert [v.status for v in vs] == ["failed"] * 4, vs
    assert "not plain data" in vs[0].reason and "AlwaysEqual" in vs[0].reason, vs[0]
    assert "not plain data" in vs[1].reason, vs[1]
    assert "compared by digest" in vs[2].reason, vs[2]
    assert "malformed" in vs[3].reason, vs[3]


def test_large_sets_and_dicts_compare_whatever_their_order(sb):
    canonical = """
        def index(n):
            return {i: (i * 7) % n for i in range(n)}, frozenset(range(0, n, 2))
    """
    n = 300_000
    assert large({i: (i * 7) % n for i in range(n)})
    p = mbpp_plus("index", canonical, [[n]])
    vs = verdicts(
        sb,
        p,
        [
            canonical,
            """
        def index(n):
            d = {}
            for i in reversed(range(n)):           # another insertion order
                d[i] = (i * 7) % n
            return d, {i for i in reversed(range(n)) if i % 2 == 0}   # a set equals a frozenset
    """,
            """
        def index(n):
            d = {i: (i * 7) % n for i in range(n)}
            if n > 1000:
                d[3] = -1
            return d, frozenset(range(0, n, 2))
    """,
        ],
    )
    assert [v.status for v in vs] == ["passed", "passed", "failed"], vs
    assert "compared by digest" in vs[2].reason


def test_large_float_answers_keep_evalplus_tolerance(sb):
    # an expected list of floats sets atol for the round: compared as values (numpy.allclose), never by digest
    canonical = """
        def halves(n):
            return [i + 0.5 for i in range(n)]
    """
    p = mbpp_plus("halves", canonical, [[N // 2]])
    assert wire.digest([i + 0.5 for i in range(N // 2)])[1] >= wire.DIGEST_MIN
    vs = verdicts(
        sb,
        p,
        [
            """
        def halves(n):
            return [i + 0.5 + 1e-7 for i in range(n)]
    """,
            """
        def halves(n):
            return [i + 0.5 + 1e-3 for i in range(n)]
    """,
        ],
    )
    assert [v.status for v in vs] == ["passed", "failed"], vs
    assert "digest" not in vs[1].reason


def test_a_large_expected_value_with_a_nan_is_compared_as_a_value(sb):
    # NaN equals nothing, not even the same answer (evalplus's `out == exp` fails): a digest would say equal
    canonical = """
        def with_nan(n):
            return [float("nan")] + list(range(n)) if n > 1000 else list(range(n))
    """
    p = mbpp_plus("with_nan", canonical, [[N]])
    assert wire.digest([float("nan")] + list(range(N)))[1:] >= (wire.DIGEST_MIN, True)
    vs = verdicts(sb, p, [canonical])
    assert [v.status for v in vs] == ["failed"], vs
    assert "digest" not in vs[0].reason and "plus input 0" in vs[0].reason, vs


def test_large_answers_to_tasks_with_their_own_oracle_are_compared_as_values(sb):
    # similar_elements (Mbpp/2) compares as sets: the order of a large answer must not matter
    canonical = """
        def similar_elements(a, b):
            return tuple(sorted(set(range(a)) & set(range(b))))
    """
    p = mbpp_plus("similar_elements", canonical, [[N, N]], base=[[3, 4]])
    assert large(tuple(range(N)))
    vs = verdicts(
        sb,
        p,
        [
            """
        def similar_elements(a, b):
            return tuple(reversed(range(min(a, b))))
    """
        ],
    )
    assert [v.status for v in vs] == ["passed"], vs


@pytest.mark.slow
def test_mbpp_255_canonical_solution_passes_with_the_default_limits():
    # one plus input's answer is 1,663,740 tuples of 77 strings: ~1.2 GB canonical, ~1 GB as JSON. One slot:
    # its judge computes the expected answers once, and one check holds such an answer at a time.
    p = bm.load_benchmark("mbpp+").by_id()["Mbpp/255"]
    lim = Limits(cpu=bm.default_cpu_limit("mbpp+"))
    wrong = p.reference + textwrap.dedent("""
        _all = combinations_colors
        def combinations_colors(l, n):
            out = _all(l, n)
            return out[::-1] if len(out) > 1000000 else out
    """)
    with Sandbox(workers=1) as sb:
        right, reversed_ = run_checks(sb, [p.job(p.reference, lim), p.job(wrong, lim)], workers=1)
    assert right.status == "passed", right
    assert reversed_.status == "failed" and "compared by digest" in reversed_.reason, reversed_
