"""The record: one JSON object per line, the one thing on every pipe.

`id` and `text` are the conventional fields; any other field passes through every tool untouched.
JSON goes through orjson (fast, strict UTF-8); values orjson cannot represent (integers wider than
64 bits, NaN, strings holding lone surrogates) fall back to the standard library so nothing the user gave us
is lost: a lone surrogate is written as a JSON escape (backslash-u) and read back as the same string.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import orjson

SCHEMA_VERSION = 1

Record = Dict[str, Any]

_OPTS = orjson.OPT_APPEND_NEWLINE


class RecordParseError(ValueError):
    """Raised by `loads_record` with a short reason (the caller adds file and line)."""


def loads_record(line: bytes) -> Record:
    """Parse one JSONL line into a record (a dict). Raises RecordParseError with a short reason."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        obj = _slow_loads(line, e)
    if not isinstance(obj, dict):
        raise RecordParseError(f"record is a JSON {type(obj).__name__}, not an object")
    return obj


def _slow_loads(line: bytes, first_error: Exception) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordParseError(f"invalid UTF-8 at byte {e.start}") from None
    try:
        # orjson refuses some valid-ish JSON the stdlib accepts (big integers, NaN, very deep nesting)
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        msg = str(first_error).split(":")[0] if str(first_error) else "malformed JSON"
        raise RecordParseError(f"malformed JSON ({msg})") from None


def dumps_record(rec: Record) -> bytes:
    """Serialise a record to one JSONL line (with the trailing newline)."""
    try:
        return orjson.dumps(rec, option=_OPTS)
    except TypeError:
        # e.g. an int beyond 64 bits that arrived through the stdlib fallback, or a lone surrogate (half an
        # emoji, as models emit): ASCII output keeps it as an escape, which reads back to the same string
        return (json.dumps(rec, ensure_ascii=True, allow_nan=True) + "\n").encode("ascii")
