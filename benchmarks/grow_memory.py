"""Peak memory of `phitools grow` at real sizes: phi-1-small -> phi-1 shapes (350M -> 1.4B parameters).

    .venv/bin/python benchmarks/grow_memory.py [--check] [--workdir DIR]

Makes a random-init phi-1-small checkpoint (fp32, ~1.4 GB) in one subprocess, then runs
`phitools grow SRC -o DST --d-model 2048 --layers 24 --depth identity` in another and reports that
process's peak RSS (os.wait4) against the target's fp32 size (~5.7 GB). The target is < 3x by the
issue's bar. With --check it also runs the grow with --check (loads both models and compares logits).
Needs ~15 GB free disk in --workdir; deletes what it wrote.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE_SOURCE = """
import sys, torch
from phitools.model.phi import Phi, preset_config
from phitools.model.checkpoint import save_checkpoint
torch.manual_seed(0)
save_checkpoint(sys.argv[1], Phi(preset_config("phi-1-small")), \
meta={"note": "random init for benchmarks/grow_memory.py"})
"""


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Run cmd; (wall seconds, peak RSS in GB of that process, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if err.strip():
        sys.stderr.write(err)
    return time.perf_counter() - t0, ru.ru_maxrss * 1024 / 1e9, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--check", action="store_true", help="also measure grow --check")
    args = ap.parse_args()
    from phitools.model.phi import param_shapes, preset_config

    n_src = sum(math.prod(s) for s in param_shapes(preset_config("phi-1-small")).values())
    n_dst = sum(math.prod(s) for s in param_shapes(preset_config("phi-1")).values())
    target_gb = 4 * n_dst / 1e9
    work = Path(tempfile.mkdtemp(prefix="grow_memory-", dir=args.workdir))
    py = sys.executable
    try:
        src, dst = work / "phi-1-small", work / "phi-1"
        t, rss, rc = run([py, "-c", MAKE_SOURCE, str(src)])
        assert rc == 0, "making the source failed"
        print(
            f"source: phi-1-small random init, {n_src / 1e6:.0f}M params, "
            f"{4 * n_src / 1e9:.2f} GB fp32 (made in {t:.0f} s)"
        )
        print(
            f"target: phi-1 shapes, {n_dst / 1e6:.0f}M params, {target_gb:.2f} GB fp32; 3x bar = {3 * target_gb:.1f} GB"
        )
        grow = [
            py,
            "-m",
            "phitools",
            "grow",
            str(src),
            "-o",
            str(dst),
            "--d-model",
            "2048",
            "--layers",
            "24",
            "--depth",
            "identity",
        ]
        t, rss, rc = run(grow)
        assert rc == 0, "grow failed"
        print(
            f"grow:         peak RSS {rss:.2f} GB = {rss / target_gb:.2f}x target fp32, {t:.0f} s, "
            f"output {sum(f.stat().st_size for f in dst.iterdir()) / 1e9:.2f} GB"
        )
        if args.check:
            shutil.rmtree(dst)
            t, rss, rc = run(grow + ["--check"])
            assert rc == 0, "grow --check failed"
            print(f"grow --check: peak RSS {rss:.2f} GB = {rss / target_gb:.2f}x target fp32, {t:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
