"""Compare two runs of examples/slurm_label_classify_tokenize.sh (the self-test's verdicts).

    python compare_outputs.py same WORK_A WORK_B       # same N: every part file holds the same records, in order;
                                                       # token files byte-identical; the same classifier model
    python compare_outputs.py union WORK_A WORK_C      # any N: the same records and token documents, as multisets

Records are read through `phitools cat` (the shard layer's own reader, which refuses an incomplete directory).
One field is set aside: the classifier id in `quality.classifier`, a hash of classifier.json, which names the
training files, and these lie in each run's own WORK; the scores next to it are compared, and so are the
classifiers' model files. Exit 0 when equal, 1 with the first difference.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RECORD_STAGES = ("labeled", "filtered", "clean")


def records(path: Path) -> list[str]:
    """The records of a file or directory as canonical JSON lines, via `phitools cat`."""
    out = subprocess.run([sys.executable, "-m", "phitools", "cat", str(path)], check=True, capture_output=True).stdout
    lines = []
    for line in out.splitlines():
        r = json.loads(line)
        if isinstance(r.get("quality"), dict):
            r["quality"].pop("classifier", None)
        lines.append(json.dumps(r, sort_keys=True))
    return lines


def token_documents(tok: Path) -> collections.Counter:
    """Every document of a token directory (ids up to its end-of-text id), counted."""
    docs: collections.Counter = collections.Counter()
    for m in sorted(tok.glob("manifest*.json")):
        man = json.loads(m.read_text())
        if man.get("packed"):
            raise SystemExit(
                f"{m}: packed tokens drop each part's tail; compare runs made with TOKENIZE_ARGS=--no-pack"
            )
        for shard in man["shards"]:
            ids = np.fromfile(tok / shard["path"], dtype=np.dtype(man["dtype"]).newbyteorder("<")).astype(np.uint32)
            ends = np.flatnonzero(ids == man["eot_id"])
            start = 0
            for e in ends:
                docs[ids[start:e].tobytes()] += 1
                start = e + 1
            if start != len(ids):
                raise SystemExit(f"{tok / shard['path']}: does not end with the end-of-text id")
    return docs


def differ(what: str, a, b) -> None:
    raise SystemExit(f"{what} differ: {a!r} vs {b!r}")


def same(a: Path, b: Path) -> None:
    for stage in RECORD_STAGES:
        fa = sorted(p.name for p in (a / stage).glob("part-*"))
        fb = sorted(p.name for p in (b / stage).glob("part-*"))
        if fa != fb:
            differ(f"{stage}/ file names", fa, fb)
        for name in fa:
            ra, rb = records(a / stage / name), records(b / stage / name)
            if ra != rb:
                differ(f"{stage}/{name} ({len(ra)} vs {len(rb)} records)", ra[:1], rb[:1])
    for name in ("model.txt", "features.safetensors"):
        if (a / "clf" / name).read_bytes() != (b / "clf" / name).read_bytes():
            differ(f"clf/{name}", "bytes", "bytes")
    ta = sorted(p.name for p in (a / "tok").glob("tokens-*.bin"))
    tb = sorted(p.name for p in (b / "tok").glob("tokens-*.bin"))
    if ta != tb:
        differ("tok/ file names", ta, tb)
    for name in ta:
        if (a / "tok" / name).read_bytes() != (b / "tok" / name).read_bytes():
            differ(f"tok/{name}", "bytes", "bytes")
    print(
        f"same: {a} and {b}: {', '.join(RECORD_STAGES)} record for record, clf, {len(ta)} token file(s) byte for byte"
    )


def union(a: Path, c: Path) -> None:
    counts = []
    for stage in RECORD_STAGES:
        ra, rc = collections.Counter(records(a / stage)), collections.Counter(records(c / stage))
        if ra != rc:
            differ(f"{stage}/ records ({sum(ra.values())} vs {sum(rc.values())})", len(ra - rc), len(rc - ra))
        counts.append(f"{stage} {sum(ra.values())}")
    if (a / "clf" / "model.txt").read_bytes() != (c / "clf" / "model.txt").read_bytes():
        differ("clf/model.txt", "bytes", "bytes")
    da, dc = token_documents(a / "tok"), token_documents(c / "tok")
    if da != dc:
        differ(f"token documents ({sum(da.values())} vs {sum(dc.values())})", len(da - dc), len(dc - da))
    ntok = sum(len(d) // 4 * n for d, n in da.items())
    print(
        f"union: {a} and {c}: the same records ({', '.join(counts)}), classifier, and {sum(da.values())} "
        f"token documents ({ntok:,} tokens)"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("same", "union"):
        raise SystemExit(__doc__)
    {"same": same, "union": union}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
