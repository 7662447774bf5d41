"""The persistent request cache: one SQLite row per answered request, committed as it arrives.

Keyed by `LLMRequest.cache_key` (a sha256 over endpoint, model, messages/prompt, sampling parameters,
schema and sample index; never the API key). WAL journal mode and a commit per answer mean a `kill -9`
loses at most the answers still in flight: a re-run of the same command finds every committed answer
here and sends only the rest. Answers that stayed unparseable after every attempt are cached too (with
their error) so a re-run does not pay for them again; transport failures are not cached, so they are
retried. Only answers are stored: no headers, no key.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from phitools.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    model TEXT,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT
)
"""

CACHE_NAME = "llm-cache.sqlite"


class RequestCache:
    """A thread-safe SQLite cache of answers. `get(key)` -> LLMResult-like or None; `put(key, result)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL with WAL survives a killed process (only a power cut can lose the last commits)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"cannot open the request cache {self.path}: {e}", hint="pass --cache PATH elsewhere, or --cache off"
            ) from None
        self._lock = threading.Lock()
        self.hits = 0
        self.writes = 0

    def get(self, key: str):
        """The cached answer for `key` as an LLMResult (request unset), or None."""
        from phitools.llm.client import LLMResult

        with self._lock:
            row = self._db.execute(
                "SELECT model, text, finish_reason, prompt_tokens, completion_tokens, attempts, error "
                "FROM answers WHERE key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        self.hits += 1
        model, text, finish, pt, ct, attempts, error = row
        return LLMResult(
            request=None,
            text=text,
            model=model,
            finish_reason=finish,
            prompt_tokens=pt,  # type: ignore[arg-type]
            completion_tokens=ct,
            attempts=attempts,
            error=error,
            cached=True,
        )

    def put(self, key: str, res) -> None:
        """Store (or replace) the answer for `key` and commit at once."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers "
                "(key, created, model, text, finish_reason, prompt_tokens, completion_tokens, attempts, error)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    time.time(),
                    res.model,
                    res.text,
                    res.finish_reason,
                    res.prompt_tokens,
                    res.completion_tokens,
                    res.attempts,
                    res.error,
                ),
            )
            self.writes += 1

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def describe(self) -> dict:
        return {"path": str(self.path), "hits": self.hits, "writes": self.writes}


def default_cache_path(output: str | None) -> Path | None:
    """Where the cache lives by default: inside an output directory, next to an output file, else the
    user cache dir (XDG_CACHE_HOME or ~/.cache)/phitools/ for stdout output."""
    from phitools.shards.write import output_kind

    kind = output_kind(output)
    if kind == "dir":
        return Path(output) / CACHE_NAME  # type: ignore[arg-type]
    if kind == "file":
        p = Path(output)  # type: ignore[arg-type]
        return p.with_name(p.name + "." + CACHE_NAME)
    from phitools.runtime.files import cache_dir

    return cache_dir(CACHE_NAME)
