"""`synth --check`: run an exercise's doctests in the evaluation sandbox (phitools.eval.sandbox).

The exercise (model-written code) runs only in the sandbox's candidate process, together with a small
doctest driver; the judge side merely calls that driver and checks the two numbers it returns (examples
failed, examples attempted). An exercise passes when it has at least one example and none fails.
This is a quality filter for synthetic data, not an adversarial evaluation: the code under test is the
model's own and could report anything it likes, but it can touch nothing outside the sandbox.
"""

from __future__ import annotations

import re

from phitools.records import Record

DRIVER = "_phitools_synth_doctests"

_DRIVER_SRC = f"""

def {DRIVER}():
    import doctest as _doctest
    _finder = _doctest.DocTestFinder(recurse=False)
    _runner = _doctest.DocTestRunner(optionflags=_doctest.ELLIPSIS | _doctest.NORMALIZE_WHITESPACE)
    for _test in _finder.find(globals()[{{entry!r}}], {{entry!r}}, globs=dict(globals())):
        _runner.run(_test, out=lambda _s: None)
    _r = _runner.summarize(verbose=False)
    return [_r.failed, _r.attempted]
"""

_TEST_SRC = f"""
_result = {DRIVER}()
assert _result[1] > 0, "the docstring has no doctest examples"
assert _result[0] == 0, "%d of %d doctest examples failed" % (_result[0], _result[1])
"""


def doctest_job(rec: Record, limits=None):
    """The sandbox Job for one exercise record."""
    from phitools.eval.sandbox import Job

    program = rec["text"] + _DRIVER_SRC.replace("{entry!r}", repr(rec["entry_point"]))
    return Job(program=program, test=_TEST_SRC, remote=(DRIVER,), allow_inprocess=False, limits=limits)


class DoctestChecker:
    """check(record) -> None when its doctests pass in the sandbox, else the reason. Use as a context manager."""

    def __init__(self, *, seed: int = 0, cpu_seconds: float = 3.0):
        from phitools.eval.sandbox import Limits, Sandbox

        self.sandbox = Sandbox(workers=1, seed=seed, limits=Limits(cpu=cpu_seconds))
        self.verdicts: dict = {}

    def __call__(self, rec: Record) -> str | None:
        v = self.sandbox.check(doctest_job(rec))
        self.verdicts[v.status] = self.verdicts.get(v.status, 0) + 1
        if v.passed:
            return None
        reason = v.reason or ""
        m = re.search(r"\(([^()]*)\)\s*$", reason)  # our assertion's own message, when that is what failed
        if v.status == "failed" and m and "doctest" in m.group(1):
            reason = m.group(1)
        return f"{v.status}: {reason}".strip().rstrip(":")[:300]

    def describe(self) -> dict:
        return {"sandbox": "phitools.eval.sandbox", "warnings": self.sandbox.warnings, "verdicts": dict(self.verdicts)}

    def close(self) -> None:
        self.sandbox.close()

    def __enter__(self) -> DoctestChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
