"""Labels for training: the labeller's score of each record, read from a dotted field (default `label.score`).

`phitools label` writes `label: {score, rationale, model, rubric, attempts}`, and when labelling failed
`score: null` plus `label.error`. A null score is a failed label: skipped and counted, never read as 0.
A record with no label field at all is unlabelled: skipped and counted. Anything else that is not a number in
the score range is a data error.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from phitools.errors import DataError
from phitools.records import Record

MISSING = object()


def get_path(rec: Record, path: str) -> Any:
    """rec['a']['b'] for path 'a.b'; MISSING when any step is absent."""
    cur: Any = rec
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return MISSING
        cur = cur[key]
    return cur


@dataclass
class LabelCounts:
    """What the label reader saw: used, failed (null score), unlabelled; and where labels came from."""

    used: int = 0
    failed: int = 0
    unlabelled: int = 0
    models: Counter = field(default_factory=Counter)
    rubrics: Counter = field(default_factory=Counter)
    backends: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "used": self.used,
            "skipped_failed_label": self.failed,
            "skipped_unlabelled": self.unlabelled,
            "label_models": dict(self.models.most_common(10)),
            "rubrics": dict(self.rubrics.most_common(10)),
            **({"backends": dict(self.backends.most_common(10))} if self.backends else {}),
        }


def read_label(rec: Record, index: int, *, field_path: str, lo: float, hi: float, counts: LabelCounts) -> float | None:
    """The record's score, or None (counted) when it has none; DataError when it is not a number in [lo, hi]."""
    v = get_path(rec, field_path)
    where = f"record {index + 1}" + (f" (id {rec['id']!r})" if "id" in rec else "")
    if v is MISSING:
        counts.unlabelled += 1
        return None
    if v is None:
        counts.failed += 1
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(
            f"{where}: {field_path} is {v!r}, not a number", hint="point --label-field at the numeric score"
        )
    x = float(v)
    if math.isnan(x) or x < lo or x > hi:
        raise DataError(
            f"{where}: {field_path} = {v!r} is outside the score range {lo:g}..{hi:g}",
            hint="fix the label, or pass --score-range LO,HI matching the labeller's scale",
        )
    counts.used += 1
    top = field_path.split(".")[0]
    lab = rec.get(top) if isinstance(rec.get(top), dict) else {}
    for key, ctr in (("model", counts.models), ("rubric", counts.rubrics), ("backend", counts.backends)):
        val = lab.get(key)
        if isinstance(val, str):
            ctr[val] += 1
        elif isinstance(val, dict) and isinstance(val.get("name"), str):
            ctr[val["name"]] += 1
    return x
