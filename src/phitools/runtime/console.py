"""The one stderr console. stdout carries only data; progress and logs go here.

Progress is a rich bar on a terminal, a periodic one-line report (runtime/progress.py) when stderr is a file
or a pipe, and nothing with --quiet. This is the only module (with cli/) that uses rich.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from phitools.runtime.progress import DEFAULT_EVERY, LogReporter, NullReporter, Reporter, format_rate

_state: dict = {"quiet": False, "progress_every": DEFAULT_EVERY, "tool": ""}
console = Console(stderr=True, highlight=False, soft_wrap=True)


def set_quiet(quiet: bool) -> None:
    """Silence progress and info logs (errors and warnings still print)."""
    _state["quiet"] = quiet


def set_progress_every(seconds: float) -> None:
    """How often a log-style progress line is written when stderr is not a terminal (0: never)."""
    _state["progress_every"] = seconds


def set_tool(name: str) -> None:
    """The command's name, for log lines (`phitools classify apply: ...`)."""
    _state["tool"] = name


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


class _RichReporter:
    """The terminal bar behind the reporter interface (advance / update)."""

    def __init__(self, progress: Progress, task) -> None:
        self._p = progress
        self._t = task

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, **kwargs) -> None:
        self._p.update(self._t, **kwargs)


class _RateColumn(ProgressColumn):
    """Units per second, from rich's own moving estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{format_rate(speed)} {self.unit}/s", style="cyan")


class _StatsColumn(ProgressColumn):
    """Records in/out (and dropped) read from the step's counters at each refresh: nothing on the hot path."""

    def __init__(self, stats) -> None:
        super().__init__()
        self.stats = stats

    def render(self, task) -> Text:
        st = self.stats
        try:
            dropped = sum(st.dropped.values()) + sum(st.skipped_bad.values())
        except RuntimeError:
            dropped = 0
        text = f"in {st.records_in:,} out {st.records_out:,}" + (f" dropped {dropped:,}" if dropped else "")
        return Text(text, style="dim")


@contextmanager
def progress(
    description: str, total: int | None = None, unit: str = "records", *, stats=None, initial: int = 0
) -> Iterator[Reporter]:
    """Progress on stderr: a rich bar (count, rate, ETA) on a terminal, a one-line report every
    --progress-every seconds when stderr is a file or pipe, nothing with --quiet.

    `stats` (a shards.Stats) adds records in/out; `initial` is work already done (a resumed run).
    """
    if _state["quiet"] or os.environ.get("PHITOOLS_NO_PROGRESS") == "1":
        yield NullReporter()
        return
    if not sys.stderr.isatty():
        every = float(_state["progress_every"])
        if every <= 0:
            yield NullReporter()
            return
        with LogReporter(
            _state["tool"] or description,
            description,
            total=total,
            unit=unit,
            every=every,
            stats=stats,
            initial=initial,
        ) as rep:
            yield rep
        return
    cols: list = [TextColumn("[bold]{task.description}"), BarColumn()]
    cols += [MofNCompleteColumn(), TaskProgressColumn()] if total else [TextColumn("{task.completed:,.0f} " + unit)]
    if stats is not None:
        cols.append(_StatsColumn(stats))
    cols += [_RateColumn(unit), TimeElapsedColumn()]
    if total:
        cols.append(TimeRemainingColumn())
    with Progress(*cols, console=console, transient=False, refresh_per_second=4) as p:
        task = p.add_task(description, total=total, completed=initial)
        yield _RichReporter(p, task)
