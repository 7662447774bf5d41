"""The one stderr console. stdout carries only data; progress and logs go here.

Library code calls `info`, `warn`, `error` and `progress` and never knows what is behind them: a one-line
report every --progress-every seconds when stderr is a file or a pipe (runtime/progress.py), plain lines by
default, nothing with --quiet. On a terminal the command line installs a richer frontend (cli/console.py: a
rich bar with rate and ETA, coloured warnings) with `set_frontend`; this module itself uses no rich.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from phitools.runtime.progress import DEFAULT_EVERY, LogReporter, NullReporter, Reporter

_state: dict = {"quiet": False, "progress_every": DEFAULT_EVERY, "tool": "", "frontend": None}


class Frontend(Protocol):
    """What draws on a terminal (installed by the command line)."""

    def info(self, msg: str) -> None: ...

    def warn(self, msg: str) -> None: ...

    def bar(self, description: str, total: int | None, unit: str, stats: Any, initial: int) -> Any:
        """A context manager yielding a Reporter."""


def set_quiet(quiet: bool) -> None:
    """Silence progress and info logs (errors and warnings still print)."""
    _state["quiet"] = quiet


def set_progress_every(seconds: float) -> None:
    """How often a log-style progress line is written when stderr is not a terminal (0: never)."""
    _state["progress_every"] = seconds


def set_tool(name: str) -> None:
    """The command's name, for log lines (`phitools classify apply: ...`)."""
    _state["tool"] = name


def set_frontend(frontend: Frontend | None) -> None:
    """Install (or, with None, remove) the terminal frontend."""
    _state["frontend"] = frontend


def quiet() -> bool:
    """Whether --quiet is in force."""
    return bool(_state["quiet"])


def interactive() -> bool:
    """True when progress bars should draw: stderr is a terminal and not --quiet."""
    return not _state["quiet"] and sys.stderr.isatty() and os.environ.get("PHITOOLS_NO_PROGRESS") != "1"


def _write(line: str) -> None:
    try:
        sys.stderr.write(line.rstrip("\n") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr is not worth failing a run for
        pass


def info(msg: str) -> None:
    """An informational line on stderr (only on a terminal or with PHITOOLS_VERBOSE=1, never with --quiet)."""
    if not (interactive() or os.environ.get("PHITOOLS_VERBOSE") == "1"):
        return
    fe = _state["frontend"]
    fe.info(msg) if fe is not None and sys.stderr.isatty() else _write(msg)


def warn(msg: str) -> None:
    """A warning on stderr; printed even when not a terminal (but not with --quiet)."""
    if _state["quiet"]:
        return
    fe = _state["frontend"]
    fe.warn(msg) if fe is not None and sys.stderr.isatty() else _write(f"warning: {msg}")


def error(msg: str) -> None:
    """An error line on stderr: always printed, plain text, one line."""
    _write(msg)


@contextmanager
def progress(
    description: str, total: int | None = None, unit: str = "records", *, stats=None, initial: int = 0
) -> Iterator[Reporter]:
    """Progress on stderr: the frontend's bar on a terminal, a one-line report every --progress-every seconds
    when stderr is a file or pipe, nothing with --quiet.

    `stats` (a shards.Stats) adds records in/out; `initial` is work already done (a resumed run).
    """
    if _state["quiet"] or os.environ.get("PHITOOLS_NO_PROGRESS") == "1":
        yield NullReporter()
        return
    fe = _state["frontend"]
    if sys.stderr.isatty() and fe is not None:
        with fe.bar(description, total, unit, stats, initial) as rep:
            yield rep
        return
    every = float(_state["progress_every"])
    if every <= 0:
        yield NullReporter()
        return
    with LogReporter(
        _state["tool"] or description, description, total=total, unit=unit, every=every, stats=stats, initial=initial
    ) as rep:
        yield rep
