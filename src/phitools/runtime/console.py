"""The one stderr console. stdout carries only data; progress and logs go here and stay quiet
when stderr is not a terminal or with --quiet."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

_state = {"quiet": False}
console = Console(stderr=True, highlight=False, soft_wrap=True)


def set_quiet(quiet: bool) -> None:
    """Silence progress and info logs (errors and warnings still print)."""
    _state["quiet"] = quiet


def interactive() -> bool:
    """True when progress bars should draw: stderr is a terminal and not --quiet."""
    return not _state["quiet"] and sys.stderr.isatty() and os.environ.get("PHITOOLS_NO_PROGRESS") != "1"


def info(msg: str) -> None:
    """An informational line on stderr (only on a terminal, never with --quiet)."""
    if interactive() or os.environ.get("PHITOOLS_VERBOSE") == "1":
        console.print(msg)


def warn(msg: str) -> None:
    """A warning on stderr; printed even when not a terminal (but not with --quiet)."""
    if not _state["quiet"]:
        console.print(f"[yellow]warning:[/yellow] {msg}", markup=True)


def error(msg: str) -> None:
    """An error line on stderr: always printed, plain text, one line."""
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.stderr.flush()


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **kwargs) -> None:
        pass


class _RichProgress:
    def __init__(self, progress: Progress, task) -> None:
        self._p = progress
        self._t = task

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, **kwargs) -> None:
        self._p.update(self._t, **kwargs)


@contextmanager
def progress(description: str, total: int | None = None, unit: str = "records") -> Iterator[_NullProgress | _RichProgress]:
    """A rich progress bar (count, rate, ETA) on stderr when interactive, else a no-op."""
    if not interactive():
        yield _NullProgress()
        return
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn() if total else TextColumn("{task.completed:,.0f} " + unit),
            TaskProgressColumn() if total else TextColumn(""), TextColumn("{task.speed:,.1f}/s" if False else "[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, console=console, transient=False, refresh_per_second=4) as p:
        task = p.add_task(description, total=total, rate="")
        start = time.monotonic()
        rp = _RichProgress(p, task)
        orig = rp.advance

        def advance(n: int = 1) -> None:
            orig(n)
            el = time.monotonic() - start
            if el > 0:
                p.update(task, rate=f"{p.tasks[0].completed / el:,.0f} {unit}/s")

        rp.advance = advance  # type: ignore[method-assign]
        yield rp
