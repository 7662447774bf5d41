"""The terminal frontend: rich bars (count, rate, ETA, records in/out), coloured warnings and tables.

The only module that uses rich. `install()` hands it to runtime/console.py, which library code talks to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
from rich.table import Table
from rich.text import Text

from phitools.runtime import console as runtime_console
from phitools.runtime.progress import format_rate

console = Console(stderr=True, highlight=False, soft_wrap=True)


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


class RichFrontend:
    """runtime.console's frontend on a terminal."""

    def info(self, msg: str) -> None:
        console.print(msg, markup=False)

    def warn(self, msg: str) -> None:
        console.print(Text.assemble(("warning:", "yellow"), " ", msg))

    @contextmanager
    def bar(self, description: str, total: int | None, unit: str, stats: Any, initial: int) -> Iterator[Any]:
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


def install() -> None:
    """Make the rich frontend the one runtime.console draws with on a terminal."""
    runtime_console.set_frontend(RichFrontend())


def table(
    title: str | None,
    columns: list[str],
    rows: list[list[Any]],
    *,
    justify_right_from: int = 1,
    justify: list[str] | None = None,
) -> None:
    """A table on stderr (a terminal draws boxes; a log gets the same text). Columns from `justify_right_from`
    on are right-aligned, or each as `justify` says ("left"/"right")."""
    t = Table(title=title, show_header=True, header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify=justify[i] if justify else "right" if i >= justify_right_from else "left")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    console.print(t)


progress = runtime_console.progress
info = runtime_console.info
warn = runtime_console.warn
error = runtime_console.error
interactive = runtime_console.interactive
set_quiet = runtime_console.set_quiet
set_progress_every = runtime_console.set_progress_every
set_tool = runtime_console.set_tool
