"""The Slurm recipe on a real one-node Slurm cluster (Debian's slurm-wlm and munge): tests/slurm/selftest.sh.

Skipped, with the reason, where it cannot run (not root, slurm-wlm/munge not installed: `.ci/run` installs them
when it can) or when PHITOOLS_SKIP_SLURM=1. About 2-3 minutes on 2 cores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SELFTEST = Path(__file__).resolve().parent / "selftest.sh"


@pytest.mark.slow
def test_recipe_on_a_real_one_node_slurm() -> None:
    if os.environ.get("PHITOOLS_SKIP_SLURM") == "1":
        pytest.skip("PHITOOLS_SKIP_SLURM=1")
    if os.geteuid() != 0:
        pytest.skip("a private Slurm cluster needs root (slurmd starts jobs as their user)")
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install -y slurm-wlm munge)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # (its own temp dir under $TMPDIR, removed when it passes: pytest's basetemp may be pruned by other
    # pytest sessions during the minutes this takes)
    r = subprocess.run(["bash", str(SELFTEST)], env=env, capture_output=True, text=True, timeout=1200)
    if r.returncode == 3:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-6000:]
    assert "selftest: passed" in r.stderr
