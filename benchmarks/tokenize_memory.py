"""Peak memory of `phitools tokenize` on one huge record, as a multiple of the record's size, with and without
encoding it in pieces (steps/tokenize.py: PIECE_CHARS), in the same run.

    python benchmarks/tokenize_memory.py [--mb 50]

The record is the running Python's standard library repeated to --mb megabytes of text, as one JSONL line.
Each measurement is a fresh subprocess; its peak RSS (ru_maxrss) minus that of the same command on a tiny
record is the cost of the huge one. "whole" turns the pieces off (split_safe -> False) to show what one
encode call of the whole text costs. The token bytes of both runs are compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

RUN = r"""
import resource, sys
from phitools.steps import tokenize as T
if sys.argv[1] == "whole":
    T.split_safe = lambda tok: False
from phitools.cli import app
try:
    app(sys.argv[2:], prog_name="phitools")
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
"""


def peak(mode: str, src: Path, out: Path) -> int:
    p = subprocess.run(
        [sys.executable, "-c", RUN, mode, "tokenize", str(src), "-o", str(out), "--workers", "1", "-q"],
        capture_output=True,
        check=True,
    )
    return int(p.stderr.decode().strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50)
    args = ap.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = "".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py")))
    size = int(args.mb * 1_000_000)
    text = (corpus * (size // len(corpus) + 1))[:size]
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        (d / "big.jsonl").write_text(json.dumps({"id": "big", "text": text}) + "\n")
        (d / "small.jsonl").write_text(json.dumps({"id": "small", "text": corpus[:1000]}) + "\n")
        base = peak("pieces", d / "small.jsonl", d / "t0")
        rows = []
        for mode in ("pieces", "whole"):
            rss = peak(mode, d / "big.jsonl", d / f"t-{mode}")
            digest = hashlib.sha256((d / f"t-{mode}" / "tokens-00000.bin").read_bytes()).hexdigest()[:12]
            rows.append((mode, rss, digest))
    print(f"record: {size / 1e6:.0f} MB of text; baseline peak (tiny record) {base / 2**20:.0f} MiB")
    for mode, rss, digest in rows:
        print(
            f"{mode:>7}: peak {rss / 2**20:7.0f} MiB, above baseline {(rss - base) / size:5.1f}x the record  "
            f"tokens sha256 {digest}"
        )


if __name__ == "__main__":
    main()
