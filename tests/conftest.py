"""Shared test fixtures: real data (the standard library, the benchmark files shipped in the package), and real
subprocess CLI runs. The suite needs nothing beside the checkout."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
#: the user's cache folder, taken before the suite points XDG_CACHE_HOME at a private one (real_server.py keeps
#: its converted model there between runs); passed down in the environment, since xdist workers inherit the
#: controller's private XDG_CACHE_HOME
os.environ.setdefault("PHITOOLS_TEST_USER_CACHE", os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"))
USER_CACHE = Path(os.environ["PHITOOLS_TEST_USER_CACHE"])


def _hermetic_env() -> None:
    """Tests see the package's own benchmark data, never a user's $PHITOOLS_DATA or ~/.cache/phitools (which
    win over the shipped copies by design), and write no cache into the user's home. Set at import, so every
    subprocess a test starts inherits it."""
    for name in ("PHITOOLS_DATA", "PHITOOLS_DATA_MIRROR"):
        os.environ.pop(name, None)
    cache = tempfile.mkdtemp(prefix="phitools-test-cache-")  # one per test process (each xdist worker too)
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = cache


_hermetic_env()


def benchmark_rows(key: str) -> list:
    """The raw problems of a named benchmark ('humaneval', 'mbpp', ...), read from the copy shipped in phitools."""
    import json

    from phitools.eval import benchmarks as bm

    _, content, pinned = bm.locate(key, allow_download=False)
    assert pinned
    if key == "mbpp-sanitized":
        return json.loads(content)
    return [json.loads(line) for line in content.splitlines() if line.strip()]


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


def run_phitools(
    *args: str,
    input: bytes | None = None,
    cwd: str | os.PathLike | None = None,
    env: dict | None = None,
    timeout: float = 300,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run `python -m phitools ARGS` as a real subprocess; returns CompletedProcess with bytes stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop("PHITOOLS_VERBOSE", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "phitools", *map(str, args)],
        input=input,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"phitools {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


@pytest.fixture
def phitools():
    """Fixture form of run_phitools."""
    return run_phitools


@pytest.fixture(scope="session")
def transformers_server(tmp_path_factory):
    """A real OpenAI-compatible server (`transformers serve`) on SmolLM2-135M-Instruct, one per test session;
    see tests/real_server.py. Yields a TransformersServe: `.url` (the /v1 base) and `.model` (its name)."""
    from real_server import TransformersServe, smollm2_model_dir

    model_dir = smollm2_model_dir(USER_CACHE)
    with TransformersServe(model_dir, tmp_path_factory.mktemp("transformers-serve") / "server.log") as srv:
        yield srv
