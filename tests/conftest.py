"""Shared test fixtures: real data (the standard library, ../shared/data), and real subprocess CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _shared_data() -> Path | None:
    env = os.environ.get("PHITOOLS_TEST_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if (cand / "humaneval" / "HumanEval.jsonl").exists():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data folder (HumanEval, MBPP, evalplus) laid out like ../shared/data."""
    p = _shared_data()
    if p is None:
        pytest.skip("benchmark data not found (set PHITOOLS_TEST_DATA)")
    return p


@pytest.fixture(scope="session")
def stdlib() -> Path:
    """The running Python's standard library: real code no one here wrote."""
    return STDLIB


@pytest.fixture(scope="session")
def stdlib_small(tmp_path_factory) -> Path:
    """A small, fixed slice of the standard library (a few dozen modules) copied into a temp dir."""
    dst = tmp_path_factory.mktemp("stdlib_small") / "lib"
    dst.mkdir()
    names = sorted(p for p in STDLIB.glob("*.py"))[:60]
    for p in names:
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def run_phitools(*args: str, input: bytes | None = None, cwd: str | os.PathLike | None = None, env: dict | None = None,
                 timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m phitools ARGS` as a real subprocess; returns CompletedProcess with bytes stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop("PHITOOLS_VERBOSE", None)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "phitools", *map(str, args)], input=input, cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"phitools {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return proc


@pytest.fixture
def phitools():
    """Fixture form of run_phitools."""
    return run_phitools
