"""HumanEval+ / MBPP+ judged as evalplus judges them, so the numbers are comparable with evalplus's.

What evalplus (v0.1.10 HumanEval+, v0.2.0 MBPP+ data; `evalplus.evaluate`) does, and phitools does too:

* The test is differential: each of the task's `base_input`s, then each of its `plus_input`s, is given to the
  candidate and to the canonical solution; the outputs must agree. The `test` / `assertion` fields of the
  data are not run. The base inputs and the plus inputs are two separate rounds (a sample passes when both
  pass), and a round stops at its first failing input.
* MBPP+ inputs are stored as JSON, so some tasks' inputs are converted before the call (lists into tuples,
  sets or complex numbers; `MBPP_INPUTS` below lists them by task), for the canonical solution and the
  candidate alike.
* Outputs agree when `out == exp`, except for a few tasks with their own oracle (`ORACLES`): find_zero
  (HumanEval/32) passes when the polynomial is within atol of zero at the returned point; eight MBPP+ tasks
  compare as sets; three (whose answer is a `re.Match` or None) compare whether the answer is None; four
  accept an alternative reading of the task. When they are not exactly equal and the task has a tolerance
  (or the expected value is a float or a non-empty sequence of floats, which sets the tolerance to 1e-6 for
  the rest of the round, as evalplus's loop does), the output must have the expected type and length and be
  within numpy.allclose(out, exp, rtol=1e-07, atol) of it.

The expected outputs are computed in the judge by the canonical solution (trusted code from the data file),
once per task and judge; the candidate's process never sees them. One that is large (8 MiB or more in
_wire.digest's canonical encoding: five of Mbpp/255's, up to ~1 GB as JSON, where a message is at most
64 MiB) and compared exactly (`out == exp` decides: the default oracle, no tolerance, no NaN) is kept as its
digest, and the candidate's process is asked for the digest of its answer instead of the answer. What is not
the same: evalplus limits each input's wall time (at least 4 s, 4x the canonical solution's time); phitools
limits the whole check's CPU time (docs/eval.md, "Timeouts").
"""

from __future__ import annotations

import hashlib
import json

# MBPP+ input conversions (evalplus.data.mbpp.mbpp_deserialize_inputs): an expression over `inp`, the JSON list
# of one call's arguments, that gives the arguments the call receives.
_MBPP_GROUPS = {
    "[tuple(a) for a in inp]": (
        2,
        116,
        132,
        143,
        222,
        261,
        273,
        394,
        399,
        421,
        424,
        429,
        470,
        560,
        579,
        596,
        616,
        630,
        726,
        740,
        744,
        809,
    ),
    "[[tuple(x) for x in a] for a in inp]": (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780),
    "[[tuple(x) for x in inp[0]], inp[1]]": (75, 413, 444, 753),
    "[inp[0], tuple(inp[1])]": (106, 750),
    "[[set(x) if isinstance(x, list) and len(x) else {} for x in inp[0]]]": (115,),
    "(float(inp[0]), complex(inp[1]))": (124,),
    "[tuple(inp[0]), inp[1]]": (250, 405, 446, 617, 720, 763, 808),
    "[tuple(tuple(x) for x in a) for a in inp]": (259, 401, 445),
    "[tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])]": (278,),
    "[tuple(inp[0]), inp[1], inp[2]]": (307,),
    "[{k: tuple(v) for k, v in inp[0].items()}, *inp[1:]]": (722,),
    "[complex(inp[0])]": (252,),
    "_plus_tuples(inp)": (580, 615, 791),
}
MBPP_INPUTS: dict[int, str] = {t: expr for expr, tasks in _MBPP_GROUPS.items() for t in tasks}

# Oracles by entry point (evalplus.eval._special_oracle and evalplus.eval.unsafe_execute): an expression over
# `out`, `exp` and `inp` that replaces `out == exp`. MBPP+ ones apply to MBPP+ only, HumanEval+ ones to HumanEval+.
MBPP_ORACLES: dict[str, str] = {
    "are_equivalent": "True",  # Mbpp/164
    "sum_div": "out == exp or out == 0",  # Mbpp/295
    "surface_Area": "out == exp or abs(out - _plus_surface_area(*inp)) <= atol",  # Mbpp/581
    "digit_distance_nums": "out == exp or out == _plus_digit_distance(*inp)",  # Mbpp/558
    **{
        name: "set(out) == set(exp)"
        for name in (
            "similar_elements",
            "find_char_long",
            "common_in_nested_lists",
            "extract_singly",
            "larg_nnum",
            "intersection_array",
            "find_dissimilar",
            "Diff",
        )
    },
    # the canonical answer is a re.Match or None: only whether it is None is compared (exp holds that bool)
    **{
        name: "(out == exp) if type(out) is bool else (exp == (out is not None))"
        for name in ("check_str", "text_match_three", "text_starta_endb")
    },
}
NOT_NONE = ("check_str", "text_match_three", "text_starta_endb")
HUMANEVAL_ROOT_ORACLE = "find_zero"  # HumanEval/32: any root within atol passes

# Judge-side helpers, stdlib only. Written for phitools from evalplus's documented behaviour.
_HELPERS = """
import cmath as _plus_cmath, copy as _plus_copy, json as _plus_json, math as _plus_math

def _plus_tuples(x):
    return tuple(_plus_tuples(v) for v in x) if isinstance(x, list) else x

def _plus_surface_area(base_edge, height):
    # a square pyramid's total surface with `height` read as the apex height (the slant height derived from it)
    slant = _plus_math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)

def _plus_digit_distance(a, b):
    # the numbers padded with zeros to the same length, then digit by digit
    sa, sb = str(a), str(b)
    width = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(width), sb.zfill(width)))

def _plus_poly(xs, x):
    return sum(c * _plus_math.pow(x, i) for i, c in enumerate(xs))

def _plus_is_floats(x):
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, float) for v in x)

_PLUS_NUM = (bool, int, float, complex)

def _plus_allclose(a, b, atol, rtol=1e-07):
    # numpy.allclose(a, b, rtol, atol) for numbers and equally shaped (nested) lists / tuples of numbers:
    # |a - b| <= atol + rtol * |b| where both are finite, equality otherwise (inf == inf, nan never);
    # anything else (strings, None, integers beyond 64 bits, which numpy holds as objects) is not close
    seq = (list, tuple)
    if isinstance(a, seq) or isinstance(b, seq):
        return (isinstance(a, seq) and isinstance(b, seq) and len(a) == len(b)
                and all(_plus_allclose(x, y, atol, rtol) for x, y in zip(a, b)))
    if not (isinstance(a, _PLUS_NUM) and isinstance(b, _PLUS_NUM)):
        return False
    if any(isinstance(v, int) and not -2 ** 63 <= v < 2 ** 64 for v in (a, b)):
        return False
    if isinstance(a, complex) or isinstance(b, complex):
        a, b, finite = complex(a), complex(b), _plus_cmath.isfinite
    else:
        a, b, finite = float(a), float(b), _plus_math.isfinite
    if finite(a) and finite(b):
        return abs(a - b) <= atol + rtol * abs(b)
    return a == b
"""


def _round_check(oracle: str, root_oracle: bool) -> str:
    """Source of `_plus_agree(out, exp, inp, atol) -> (agrees, atol for the rest of the round)`."""
    if root_oracle:
        return "def _plus_agree(out, exp, inp, atol):\n    return abs(_plus_poly(*inp, out)) <= atol, atol\n"
    return f"""def _plus_agree(out, exp, inp, atol):
    exact = {oracle}
    if atol == 0 and _plus_is_floats(exp):
        atol = 1e-06
    if exact or atol == 0:
        return bool(exact), atol
    if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
        return False, atol
    return _plus_allclose(out, exp, atol), atol
"""


def plus_test(
    task_id: str, entry_point: str, reference: str, base_input, plus_input, atol: float, benchmark: str
) -> str:
    """Judge-side test code for one HumanEval+ / MBPP+ task (see the module docstring)."""
    mbpp = benchmark == "mbpp+"
    prep = MBPP_INPUTS.get(_task_number(task_id), "inp") if mbpp else "inp"
    oracle = MBPP_ORACLES.get(entry_point, "out == exp") if mbpp else "out == exp"
    root = not mbpp and entry_point == HUMANEVAL_ROOT_ORACLE
    not_none = mbpp and entry_point in NOT_NONE
    exact = oracle == "out == exp" and not root  # `out == exp` decides, unless a tolerance applies
    rounds = [("base", list(base_input or [])), ("plus", list(plus_input or []))]
    data = json.dumps(rounds)
    key = "plus:" + hashlib.sha256((reference + prep + str(not_none) + data).encode()).hexdigest()
    return f"""{_HELPERS}
_plus_ns = {{}}
exec(compile({reference!r}, "<canonical>", "exec"), _plus_ns)
_plus_ref = _plus_ns[{entry_point!r}]

def _plus_prep(inp):
    return {prep}

{_round_check(oracle, root)}
_plus_rounds = [(kind, [_plus_prep(inp) for inp in inputs]) for kind, inputs in _plus_json.loads({data!r})]
# expected outputs, computed once per task and judge (the judge keeps a cache across checks), each as
# (value, None) or, when it is large and compared exactly, (None, its digest): the candidate is then asked
# for the digest of its answer, not the answer (see docs/eval.md, "Large answers")
_plus_exps = __phitools_cache__.get({key!r})
if _plus_exps is None:
    _plus_exps = []
    for _, _plus_inputs in _plus_rounds:
        _plus_atol, _plus_round = {float(atol or 0)!r}, []
        for _plus_inp in _plus_inputs:
            _plus_exp = _plus_ref(*_plus_copy.deepcopy(_plus_inp))
            if {not_none!r}:
                _plus_exp = _plus_exp is not None
            _plus_dig = None
            if {exact!r}:
                if _plus_atol == 0 and _plus_is_floats(_plus_exp):
                    _plus_atol = 1e-06
                if _plus_atol == 0:
                    _plus_dig = __phitools_digest__(_plus_exp)
            _plus_round.append((_plus_exp, None) if _plus_dig is None else (None, _plus_dig))
            del _plus_exp
        _plus_exps.append(_plus_round)
    __phitools_cache__[{key!r}] = _plus_exps
for (_plus_kind, _plus_inputs), _plus_round_exps in zip(_plus_rounds, _plus_exps):
    _plus_atol = {float(atol or 0)!r}
    for _plus_i, (_plus_inp, (_plus_exp, _plus_dig)) in enumerate(zip(_plus_inputs, _plus_round_exps)):
        if _plus_dig is not None:
            # exact comparison (no tolerance applies to it), so equal digests are equal answers
            _plus_ok = __phitools_digest_call__({entry_point}, *_plus_copy.deepcopy(_plus_inp)) == _plus_dig
            assert _plus_ok, (_plus_kind + " input " + str(_plus_i) + " (a large answer, compared by digest): "
                              + repr(_plus_inp)[:200])
            continue
        _plus_out = {entry_point}(*_plus_copy.deepcopy(_plus_inp))
        _plus_ok, _plus_atol = _plus_agree(_plus_out, _plus_exp, _plus_inp, _plus_atol)
        assert _plus_ok, _plus_kind + " input " + str(_plus_i) + ": " + repr(_plus_inp)[:200]
"""


def _task_number(task_id: str) -> int:
    tail = task_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else -1
