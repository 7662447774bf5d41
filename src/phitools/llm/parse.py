"""Tolerant parsing of model answers: JSON when the server honoured the schema, free text otherwise.

`parse_score("... Educational score: 3")`, `parse_score('{"score": 4, "rationale": "..."}')`,
`parse_score("```json\\n{...}\\n```")`, `parse_score("4/5")` and a bare `"3"` all work; anything else
raises ValueError with a short reason (the runner then retries, and finally records the failure).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
# a fenced code block in Markdown: an opening fence (with an optional language) at the start of a line, up to
# a closing fence on a line of its own or the end of the text (a model cut off by max_tokens leaves it open)
CODE_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M)
_SCORE_LINE = re.compile(
    r"(?:educational\s+)?(?:score|rating|points|total|grade)\s*(?:is|of|=|:|-)?\s*[*_`\"']*\s*(-?\d+(?:\.\d+)?)\s*[*_`\"']*"
    r"(?:\s*(?:/|out\s+of)\s*(\d+))?",
    re.I,
)
_FRACTION = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(\d+)(?!\w|\.\d)", re.I)
_VALUE_IS = re.compile(
    r"educational\s+value[^.\d\n]{0,40}?\b(?:is|of|at|as|=|:)\s*(-?\d+(?:\.\d+)?)(?!\w|\.\d|\s*%)", re.I
)
_BARE = re.compile(r"^\s*[*_`\"']*(-?\d+(?:\.\d+)?)[*_`\"']*\s*\.?\s*$")
_SCORE_ONLY = re.compile(
    r"^\s*[*_#>`\"']*\s*(?:educational\s+)?score\s*[:=]?\s*[*_`\"']*\s*-?\d+(?:\.\d+)?\s*(?:/\s*\d+)?[*_`\"'.]*\s*$",
    re.I,
)
SCORE_KEYS = ("score", "educational_score", "educational score", "rating", "points", "total")


def find_json_object(text: str) -> dict | None:
    """The first JSON object in `text` (whole text, a ``` fence, or the outermost {...}), else None."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    i, j = text.find("{"), text.rfind("}")
    if 0 <= i < j:
        candidates.append(text[i : j + 1])
    for c in candidates:
        if not c.startswith("{"):
            continue
        try:
            obj = orjson.loads(c)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*", v)
        return float(m.group(1)) if m else None
    return None


def _check(v: float, lo: float, hi: float, scale: str | None = None) -> int | float:
    if scale is not None and float(scale) != hi:
        raise ValueError(f"score given out of {scale}, expected out of {hi:g}")
    if not lo <= v <= hi:
        raise ValueError(f"score {v:g} outside {lo:g}-{hi:g}")
    return int(v) if v == int(v) else v


def parse_score(text: str, lo: float = 0, hi: float = 5) -> tuple[int | float, str]:
    """(score, rationale) from a model answer. Raises ValueError when no score in range can be found."""
    if text is None or not text.strip():
        raise ValueError("empty answer")
    obj = find_json_object(text)
    if obj is not None:
        for k in SCORE_KEYS:
            if k in obj:
                v = _number(obj[k])
                if v is None:
                    raise ValueError(f"JSON field {k!r} is not a number")
                rationale = (
                    obj.get("rationale")
                    or obj.get("reason")
                    or obj.get("justification")
                    or obj.get("explanation")
                    or ""
                )
                return _check(v, lo, hi), str(rationale).strip()
    matches = list(_SCORE_LINE.finditer(text))
    if matches:
        m = matches[-1]  # the final verdict, after any reasoning that mentions numbers
        return _check(float(m.group(1)), lo, hi, m.group(2)), _rationale(text, m)
    fr = list(_FRACTION.finditer(text))
    if fr:
        m = fr[-1]
        return _check(float(m.group(1)), lo, hi, m.group(2)), _rationale(text, m)
    vi = list(_VALUE_IS.finditer(text))
    if vi:
        return _check(float(vi[-1].group(1)), lo, hi), _rationale(text, vi[-1])
    m = _BARE.match(text)
    if m:
        return _check(float(m.group(1)), lo, hi), ""
    snippet = " ".join(text.split())[:60]
    raise ValueError(f"no score found in {snippet!r}")


def _rationale(text: str, m: re.Match) -> str:
    """The answer without the line that holds the score (nor any other bare score line)."""
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    end = len(text) if end < 0 else end
    rest = (text[:start] + text[end:]).splitlines()
    keep = [ln for ln in rest if not _SCORE_ONLY.match(ln)]
    return "\n".join(keep).strip()[:2000]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) for each fenced block in Markdown text (an unclosed last block runs to the end)."""
    return [(m.group(1).lower(), m.group(2)) for m in CODE_FENCE.finditer(text)]
