"""Parquet ingest throughput against a bare pyarrow read of the same columns to JSONL, in the same run;
and ingest's peak memory on a file many row groups long.

    python benchmarks/parquet_ingest.py [--repeats 3] [--copies 2] [--row-group 512]

Writes a Stack-shaped parquet file (snappy, like the Hub's) from the running Python's standard library: real
code in `content`, plus max_stars_repo_path, lang, size, licenses (a list) and columns ingest is not asked to
read. Then, best of --repeats, interleaved:

  bare pyarrow   ParquetFile.iter_batches(columns) -> to_pylist per column -> orjson -> one buffered file,
                 in this process and as a fresh process (start-up included)
  library        steps.ingest_parquet.ingest_parquet -> RecordWriter(FILE.jsonl): the code `ingest` runs
  CLI            `phitools ingest FILE --meta-fields ... -o FILE.jsonl` as a fresh process
  CLI, shards    the same with -o DIR (rolling zstd shards + sha256 + manifest: the default output)

MB/s are of the text column (UTF-8). The ratio is bare time / phitools time (1.0 = as fast as bare pyarrow):
in-process against in-process, processes against the bare process. Peak RSS is each process's (os.wait4).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

META = ["max_stars_repo_path", "lang", "size", "max_stars_repo_licenses"]


def build(path: Path, copies: int, row_group: int) -> tuple[int, float]:
    """The Stack-shaped file; returns (rows, MB of text)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    texts, paths = [], []
    for p in files:
        try:
            texts.append(p.read_text(encoding="utf-8"))
            paths.append(p.relative_to(root).as_posix())
        except (UnicodeDecodeError, OSError):
            continue
    texts, paths = texts * copies, paths * copies
    n = len(texts)
    table = pa.table(
        {
            "hexsha": [f"{i:040x}" for i in range(n)],
            "size": [len(t.encode()) for t in texts],
            "ext": ["py"] * n,
            "lang": ["Python"] * n,
            "max_stars_repo_path": paths,
            "max_stars_repo_name": [f"org/repo{i % 97}" for i in range(n)],
            "max_stars_repo_licenses": [["MIT"] if i % 3 else ["Apache-2.0", "MIT"] for i in range(n)],
            "max_stars_count": [None if i % 4 else i for i in range(n)],
            "content": texts,
            "avg_line_length": [len(t) / max(1, t.count("\n")) for t in texts],
        }
    )
    pq.write_table(table, path, row_group_size=row_group, compression="snappy")
    return n, sum(table.column("size").to_pylist()) / 1e6


def bare(path: Path, out: Path) -> None:
    """What one would write by hand: read the columns, make a JSON object per row, write lines."""
    cols = ["content", *META]
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with open(out, "wb", buffering=1 << 20) as f:
        write = f.write
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, columns=cols):
            values = [batch.column(c).to_pylist() for c in cols]
            for row in zip(*values):
                write(dumps(dict(zip(cols, row)), option=opt))


def library(path: Path, out: Path) -> None:
    """The code `phitools ingest` runs, in this process."""
    from phitools.shards import RecordWriter, Stats
    from phitools.steps.ingest_parquet import Fields, ingest_parquet, list_parquet, plan

    stats = Stats()
    with RecordWriter(out, tool="ingest", stats=stats) as w:
        write = w.write
        for rec in ingest_parquet(
            plan(list_parquet([path]), None), Fields(text="content", meta=tuple(META)), stats=stats
        ):
            write(rec)


# a small parent that runs one command and prints its peak RSS: measured from this (large) process, a forked
# child's maxrss can include the parent's pages
_MEASURE = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE); "
    "_, st, ru = os.wait4(p.pid, 0); code = os.waitstatus_to_exitcode(st); "
    "sys.exit(p.stderr.read().decode()) if code else print(ru.ru_maxrss)"
)


def process(args: list) -> int:
    """Run a command in a fresh process; returns its peak RSS in KB."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return int(out.stdout)


def bare_process(path: Path, out: Path) -> int:
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import parquet_ingest as b; "
        "from pathlib import Path; b.bare(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    return process([sys.executable, "-c", script, path, out])


def cli(path: Path, out: Path) -> int:
    return process(
        [
            sys.executable,
            "-m",
            "phitools",
            "ingest",
            path,
            "--text-field",
            "content",
            "--meta-fields",
            ",".join(META),
            "-o",
            out,
            "--quiet",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=6, help="how many times the standard library goes into the file")
    ap.add_argument("--row-group", type=int, default=512, help="rows per row group")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = d / "stack.parquet"
        rows, mb = build(src, args.copies, args.row_group)
        groups = pq.ParquetFile(src).metadata.num_row_groups
        steps = {
            "bare": ("bare pyarrow -> JSONL, in-process", lambda: bare(src, d / "bare.jsonl")),
            "library": ("phitools library -> JSONL, in-process", lambda: library(src, d / "lib.jsonl")),
            "bare_proc": ("bare pyarrow -> JSONL, a process", lambda: bare_process(src, d / "bare2.jsonl")),
            "cli": ("phitools ingest -o FILE.jsonl", lambda: cli(src, d / "cli.jsonl")),
            "cli_dir": ("phitools ingest -o DIR (zstd shards)", lambda: cli(src, d / "shards")),
        }
        times: dict[str, list[float]] = {k: [] for k in steps}
        rss: dict[str, list[int]] = {k: [] for k in steps}
        for _ in range(args.repeats):
            for key, (_, fn) in steps.items():
                t0 = time.perf_counter()
                peak = fn()
                times[key].append(time.perf_counter() - t0)
                if peak:
                    rss[key].append(peak)
        assert (d / "lib.jsonl").stat().st_size == (d / "cli.jsonl").stat().st_size
        best = {k: min(v) for k, v in times.items()}
        size = src.stat().st_size
        print(
            f"{rows:,} rows, {mb:.1f} MB of text, {groups} row groups of {args.row_group} rows, "
            f"file {size / 1e6:.1f} MB (snappy); best of {args.repeats}, interleaved"
        )
        for key, (label, _) in steps.items():
            base = best["bare_proc"] if key in ("bare_proc", "cli", "cli_dir") else best["bare"]
            peak = f"   peak RSS {min(rss[key]) / 1024:.0f} MB" if rss[key] else ""
            print(f"{label:40s} {mb / best[key]:7.1f} MB/s   ratio {base / best[key]:.2f}x{peak}")
        print(
            f"(one row group ~{size / groups / 1e6:.1f} MB compressed, ~{mb / groups:.1f} MB of text; "
            "ratios of processes are against the bare process)"
        )


if __name__ == "__main__":
    main()
