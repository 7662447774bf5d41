"""Manifests: the JSON sidecar every output gets, and the counters that go into it."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from phitools import __version__
from phitools.records import SCHEMA_VERSION
from phitools.runtime.files import atomic_file

# a flag whose last word names a secret (--api-key, --hf-token, --password); not --tokenizer or --max-tokens
_SECRET_FLAG = re.compile(r"^--(?:[\w-]*[-_])?(?:key|token|secret|password|passwd|auth|credentials?)(?:=.*)?$", re.I)
_SECRET_VALUE = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+\S+)")


@dataclass
class Stats:
    """Per-tool counters: records in/out, dropped by reason, and anything tool-specific."""

    records_in: int = 0
    records_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    skipped_bad: Counter = field(default_factory=Counter)
    extra: dict = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "dropped": dict(sorted(self.dropped.items())),
            "skipped_bad": dict(sorted(self.skipped_bad.items())),
        }
        d.update(self.extra)
        return d


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Copy argv with secrets replaced: values of --*key*/--*token* flags and anything that looks like a key."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append("<redacted>")
            redact_next = False
            continue
        if arg.startswith("--") and _SECRET_FLAG.match(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=<redacted>")
            else:
                out.append(arg)
                redact_next = True
            continue
        out.append(_SECRET_VALUE.sub("<redacted>", arg))
    return out


def write_manifest(
    path: str | os.PathLike,
    *,
    tool: str,
    argv: list[str] | None = None,
    seed: int | None = None,
    inputs: list[str] | None = None,
    stats: Stats | dict | None = None,
    outputs: list[dict] | None = None,
    shard: str | None = None,
    extra: dict | None = None,
) -> dict:
    """Write a manifest atomically (tmp + rename) and return it."""
    if isinstance(stats, Stats):
        stats = stats.to_dict()
    manifest: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "tool": tool,
        "version": __version__,
        "argv": redact_argv(argv if argv is not None else sys.argv),
        "seed": seed,
        "shard": shard,
        "inputs": list(inputs or []),
        "stats": stats or {},
        "outputs": list(outputs or []),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    if extra:
        manifest.update(extra)
    from phitools.shards.ownership import tmp_path

    path = Path(path)
    tmp = tmp_path(path)
    try:
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE, default=str)
    except TypeError:
        # a lone surrogate (a file name that is not UTF-8 reaches argv that way): kept as an ASCII escape
        data = (json.dumps(manifest, indent=2, ensure_ascii=True, default=str) + "\n").encode("ascii")
    with atomic_file(path, tmp=tmp) as f:
        f.write(data)
    return manifest
