"""Compare what a tool did from Python with what its command did: records, and manifests apart from what
names the run (argv, time, paths of this run's own files) and wall-clock figures."""

from __future__ import annotations

import json
from pathlib import Path

#: keys that differ between two runs of the same work
VOLATILE = {"argv", "created", "wall_s", "waited_s"}


def comparable(manifest: dict | Path, *roots: Path) -> dict:
    """A manifest without its volatile keys, with the given output roots replaced by '<out>'."""
    if isinstance(manifest, Path):
        manifest = json.loads(manifest.read_text())

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, str):
            for r in roots:
                x = x.replace(str(r), "<out>")
        return x

    return clean(manifest)


def files(root: Path) -> dict[str, bytes]:
    """The bytes of every file under `root` (or of `root` itself), by relative name; no caches, no manifests."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        str(p.relative_to(root if root.is_dir() else root.parent)): p.read_bytes()
        for p in paths
        if "manifest" not in p.name and not p.name.endswith(".sqlite")
    }


def jsonl(blob: bytes) -> list[dict]:
    return [json.loads(line) for line in blob.splitlines() if line.strip()]
