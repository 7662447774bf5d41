"""End-to-end MB/s of `phitools tokenize` (read zstd shards -> encode -> pack -> write) against raw
`tokenizers.Tokenizer.encode_batch` on the same texts, in the same run, with 1 and N threads.

    python benchmarks/tokenize_throughput.py [--repeats 3] [--max-mb 32]

The corpus is the running Python's standard library (site-packages excluded). Each measurement runs in a
fresh subprocess so the Rayon thread count (RAYON_NUM_THREADS) applies; the best of --repeats is kept
because this machine is shared and noisy. The raw baseline does not read, parse, pack or write anything:
its texts are already in memory before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

RAW = r"""
import json, sys, time, zstandard, io
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = []
for p in sys.argv[2:]:
    with open(p, 'rb') as f:
        for line in io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(f)):
            texts.append(json.loads(line)['text'])
t0 = time.perf_counter()
n = 0
for i in range(0, len(texts), 1024):
    for e in tok.encode_batch_fast(texts[i:i+1024], add_special_tokens=False):
        n += len(e.ids)
print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": n}))
"""


def run(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), RAYON_RS_NUM_CPUS=str(threads))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return json.loads(out.stdout)["seconds"] if out.stdout.strip().startswith("{") else wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    args = ap.parse_args()
    py = sys.executable
    stdlib = sysconfig.get_paths()["stdlib"]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        subprocess.run(
            [py, "-m", "phitools", "ingest", stdlib, "--exclude", "site-packages/*", "-o", d / "corpus"], check=True
        )
        shards = sorted(str(p) for p in (d / "corpus").glob("*.jsonl.zst"))
        subprocess.run(
            [
                py,
                "-m",
                "phitools",
                "tokenize",
                d / "corpus",
                "--train-tokenizer",
                "--vocab-size",
                "8192",
                "--limit",
                "300",
                "-o",
                d / "tok",
            ],
            check=True,
        )
        tok = str(d / "tok" / "tokenizer.json")
        mb = json.loads((d / "corpus" / "manifest.json").read_text())["outputs"]
        text_mb = sum(o["uncompressed_bytes"] for o in mb) / 1e6
        rows = []
        for threads in [int(x) for x in args.threads.split(",")]:
            raws, ourss = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                raws.append(run([py, "-c", RAW, tok, *shards], threads))
                ourss.append(
                    run(
                        [
                            py,
                            "-m",
                            "phitools",
                            "tokenize",
                            str(d / "corpus"),
                            "--tokenizer",
                            tok,
                            "--workers",
                            str(threads),
                            "-o",
                            str(d / f"out{threads}"),
                        ],
                        threads,
                    )
                )
            raw, ours = min(raws), min(ourss)
            rows.append((threads, text_mb / raw, text_mb / ours, raw / ours))
        print(f"corpus: standard library, {text_mb:.1f} MB of JSONL text, tokenizer vocab 8192, best of {args.repeats}")
        print(f"{'threads':>7} {'raw encode_batch MB/s':>22} {'phitools tokenize MB/s':>23} {'ratio':>6}")
        for t, r, o, ratio in rows:
            print(f"{t:>7} {r:>22.2f} {o:>23.2f} {ratio:>6.2f}")
        if len(rows) > 1:
            print(
                f"scaling 1 -> {rows[-1][0]} threads: raw {rows[-1][1] / rows[0][1]:.2f}x, "
                f"phitools {rows[-1][2] / rows[0][2]:.2f}x"
            )


if __name__ == "__main__":
    main()
