"""The deletion check (.ci/safety_mutations.py) stays in step with the code it mutates.

Each mutation names a snippet of a safety check; a refactor or reformat that changes the snippet would make
the check silently test nothing ("BAD-PATTERN"). Running the whole deletion check takes minutes; this only
asserts that every snippet still occurs exactly once where it says.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mutations():
    spec = importlib.util.spec_from_file_location("phitools_safety_mutations", REPO / ".ci" / "safety_mutations.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod.MUTATIONS


def test_every_mutation_names_one_place_in_the_source():
    muts = _mutations()
    assert len(muts) >= 50
    wrong = []
    for m in muts:
        n = (REPO / "src" / "phitools" / m.file).read_text().count(m.old)
        if n != 1:
            wrong.append(f"{m.name} ({m.file}): snippet found {n} times")
    assert wrong == []


def test_every_mutation_names_tests_that_exist():
    for m in _mutations():
        for t in m.tests:
            path = t.split("::")[0]
            assert (REPO / path).exists(), f"{m.name}: {path}"
