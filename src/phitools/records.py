"""The record: one JSON object per line, the one thing on every pipe.

`id` and `text` are the conventional fields; any other field passes through every tool untouched.
JSON goes through orjson (fast, strict UTF-8); what orjson refuses falls back to the standard library so
nothing the user gave us is lost: integers wider than 64 bits, NaN, lone surrogates ("\\ud800", which Python's
own json.dumps writes; written back as \\udXXX escapes with ensure_ascii) and nesting deeper than orjson
writes (255 levels). Nesting deeper than orjson reads (1024 levels) is refused with a clean error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

SCHEMA_VERSION = 1
MAX_DEPTH = 1024  # orjson's read limit: every record read is written back

Record = dict[str, Any]

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
    if "depth limit" in str(first_error):
        raise RecordParseError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    try:
        # orjson refuses some valid-ish JSON the stdlib accepts (big integers, NaN, lone surrogates); the stdlib
        # parser recurses: given room for MAX_DEPTH levels, anything deeper ends in RecursionError, caught here
        _deep_enough()
        return json.loads(text)
    except RecursionError:
        raise RecordParseError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError:
        msg = str(first_error).split(":")[0] if str(first_error) else "malformed JSON"
        raise RecordParseError(f"malformed JSON ({msg})") from None


def dumps_record(rec: Record) -> bytes:
    """Serialise a record to one JSONL line (with the trailing newline)."""
    try:
        return orjson.dumps(rec, option=_OPTS)
    except TypeError:
        # an int beyond 64 bits or a lone surrogate that arrived through the stdlib fallback, or nesting deeper
        # than orjson writes: ensure_ascii turns surrogates into \\udXXX escapes, valid JSON that reads back
        _deep_enough()
        return (json.dumps(rec, ensure_ascii=True, allow_nan=True) + "\n").encode("ascii")


def _deep_enough() -> None:
    # the stdlib encoder counts each level against the recursion limit: make room for MAX_DEPTH levels
    need = MAX_DEPTH * 2 + 200
    if sys.getrecursionlimit() < need:
        sys.setrecursionlimit(need)
