"""`--shard K/N` and `--shard-size` parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from phitools.errors import UsageError


@dataclass(frozen=True)
class ShardSpec:
    """Process K of N (0-based K): a deterministic 1/N slice of the input."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: str | None) -> ShardSpec | None:
    """Parse 'K/N' (0 <= K < N). None or '' means no sharding."""
    if not value:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not m:
        raise UsageError(
            f"--shard {value!r} is not K/N", hint="e.g. --shard 0/8 for the first of 8 processes; K counts from 0"
        )
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or k >= n:
        raise UsageError(
            f"--shard {value}: need 0 <= K < N",
            hint="with a Slurm array use --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT and --array=0-(N-1)",
        )
    return ShardSpec(k, n)


_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
}


def parse_size(value: str) -> tuple[int | None, int | None]:
    """Parse --shard-size: a plain integer is a record count, a size with a unit (64M, 1GB) is uncompressed bytes.

    Returns (max_records, max_bytes); exactly one is set.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m:
        raise UsageError(
            f"--shard-size {value!r} is not a number", hint="give records (100000) or bytes with a unit (256M)"
        )
    num, unit = m.group(1), m.group(2).upper()
    if unit == "":
        n = int(float(num))
        if n < 1:
            raise UsageError("--shard-size must be at least 1")
        return n, None
    if unit not in _UNITS:
        raise UsageError(f"--shard-size {value!r}: unknown unit {m.group(2)!r}", hint="use K, M or G")
    n = int(float(num) * _UNITS[unit])
    if n < 1:
        raise UsageError("--shard-size must be at least 1 byte")
    return None, n
