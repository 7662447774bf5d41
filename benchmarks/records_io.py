"""Record I/O throughput: phitools' reader/writer (orjson + streaming zstd) against the obvious
standard-library loop (json + zstandard stream_reader) on the same shards, in the same run.

    python benchmarks/records_io.py [--repeats 3]

Reads the standard-library corpus (site-packages excluded) as zstd JSONL; reports MB/s of uncompressed JSONL
for reading (parse every record) and for writing (serialise + compress into rolling shards). A third line
prices the integrity check: reading the output directory (every shard's size and sha256 checked against the
manifest as it streams) against the same shards copied where no manifest describes them (nothing to check).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import zstandard

from phitools.shards import RecordReader, RecordWriter


def stdlib_read(paths):
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
                json.loads(line)
                n += 1
    return n


def stdlib_write(recs, out: Path):
    with open(out, "wb") as f, zstandard.ZstdCompressor(level=3).stream_writer(f) as w:
        for r in recs:
            w.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))


def best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "phitools",
                "ingest",
                sysconfig.get_paths()["stdlib"],
                "--exclude",
                "site-packages/*",
                "-o",
                d / "c",
            ],
            check=True,
        )
        shards = sorted(d.joinpath("c").glob("*.jsonl.zst"))
        recs = list(RecordReader(shards))
        mb = sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in recs) / 1e6
        r_ours = best(lambda: sum(1 for _ in RecordReader(shards)), args.repeats)
        r_base = best(lambda: stdlib_read(shards), args.repeats)

        def ours_write():
            with RecordWriter(d / "w", tool="bench") as w:
                w.write_many(recs)

        w_ours = best(ours_write, args.repeats)
        w_base = best(lambda: stdlib_write(recs, d / "base.jsonl.zst"), args.repeats)
        (d / "bare").mkdir()
        for s in shards:
            shutil.copy(s, d / "bare" / s.name)
        bare = sorted((d / "bare").glob("*.jsonl.zst"))
        r_checked = r_bare = float("inf")
        for _ in range(args.repeats):  # interleaved: the machine's load moves between runs
            r_checked = min(r_checked, best(lambda: sum(1 for _ in RecordReader([d / "c"])), 1))
            r_bare = min(r_bare, best(lambda: sum(1 for _ in RecordReader(bare)), 1))
        print(f"{len(recs):,} records, {mb:.1f} MB JSONL (standard library), best of {args.repeats}")
        print(
            f"read : phitools {mb / r_ours:7.1f} MB/s   "
            f"json+zstandard {mb / r_base:7.1f} MB/s   ratio {r_base / r_ours:.2f}x"
        )
        print(
            f"write: phitools {mb / w_ours:7.1f} MB/s   "
            f"json+zstandard {mb / w_base:7.1f} MB/s   ratio {w_base / w_ours:.2f}x"
        )
        print(
            f"read, sha256 checked {mb / r_checked:7.1f} MB/s   "
            f"unchecked {mb / r_bare:7.1f} MB/s   ratio {r_bare / r_checked:.2f}x"
        )


if __name__ == "__main__":
    main()
