"""Progress for logs: when stderr is not a terminal (Slurm, nohup, a file), one plain line every N seconds.

    [2026-05-01T12:00:30+00:00] phitools label: 1,200/10,000 records (12.0%) | in 1,200 | out 1,150 \
| 40.0 records/s | elapsed 0:00:30 | ETA 0:03:40

Library code sees only a reporter with `advance(n)` and `update(total=, description=)`; it never knows whether
a terminal bar (runtime/console.py, the only place rich is used), a log line or nothing is behind it. The log
reporter prints from a daemon thread, so a job that is stuck still says so (the counts stop moving) and the hot
loop pays one integer addition per `advance`. A run shorter than one interval prints nothing; one that printed
a line ends with a `done` line.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

DEFAULT_EVERY = 30.0


class Reporter(Protocol):
    """What a step reports progress through."""

    def advance(self, n: int = 1) -> None: ...

    def update(self, **kwargs: Any) -> None: ...


class NullReporter:
    """Reports nothing (--quiet, or no console)."""

    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


def format_count(n: float) -> str:
    """12345 -> '12,345'."""
    return f"{int(n):,}"


def format_rate(r: float) -> str:
    """A rate with as many decimals as make it readable: 12,345 / 40.0 / 0.42."""
    if r >= 100:
        return f"{r:,.0f}"
    if r >= 1:
        return f"{r:.1f}"
    return f"{r:.2g}"


def format_duration(s: float) -> str:
    """Seconds -> H:MM:SS (with a day count past 24 hours)."""
    s = max(0, int(round(s)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{s:02d}"


def timestamp() -> str:
    """Local time with its UTC offset, to the second (what a log reader can line up with other logs)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


class LogReporter:
    """Counts progress and, from a daemon thread, writes a one-line report every `every` seconds.

    `tool` is the command (`label`, `classify apply`); `label` names the phase when it is not the tool itself
    (`training tokenizer`). `stats` (a shards.Stats) adds records in/out; `initial` is work done before this run
    (a resumed training run) and does not count towards the rate.
    """

    def __init__(
        self,
        tool: str,
        label: str,
        *,
        total: int | None = None,
        unit: str = "records",
        every: float = DEFAULT_EVERY,
        stats: Any = None,
        initial: int = 0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = timestamp,
    ):
        self.tool = tool
        self.label = label
        self.detail = ""
        self.total = total
        self.unit = unit
        self.every = every
        self.stats = stats
        self.completed = initial
        self._initial = initial
        self._stream = stream
        self._clock = clock
        self._now = now
        self._start = clock()
        self.lines = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the step calls ------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        self.completed += n

    def update(
        self, *, total: int | None = None, description: str | None = None, completed: int | None = None, **_: Any
    ) -> None:
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
        if description is not None:
            # a step that updates its description (train: "train loss 2.31 lr 3e-4") keeps the label in front
            self.detail = description[len(self.label) :].strip() if description.startswith(self.label) else description

    # ---- the report --------------------------------------------------------------------------------
    def line(self, *, final: bool = False) -> str:
        """The report as it stands now (without the trailing newline)."""
        elapsed = max(self._clock() - self._start, 0.0)
        done = self.completed
        # "classify" under "classify apply" is the tool itself; "eval humaneval" under "eval" reads "eval: humaneval"
        name = self.tool if self.tool.startswith(self.label) else f"{self.tool}: {self._phase()}"
        head = f"[{self._now()}] phitools {name}:"
        if final:
            head += " done,"
        if self.total:
            parts = [f"{format_count(done)}/{format_count(self.total)} {self.unit} ({100.0 * done / self.total:.1f}%)"]
        elif self.stats is not None and self.unit == "records":
            parts = []  # "in N" says it
        else:
            parts = [f"{format_count(done)} {self.unit}"]
        if self.stats is not None:
            parts += self._counts()
        rate = (done - self._initial) / elapsed if elapsed > 0 else 0.0
        parts.append(f"{format_rate(rate)} {self.unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if not final and self.total and rate > 0 and done < self.total:
            parts.append(f"ETA {format_duration((self.total - done) / rate)}")
        if self.detail:
            parts.append(self.detail)
        return head + " " + " | ".join(parts)

    def _phase(self) -> str:
        return self.label[len(self.tool) :].strip() if self.label.startswith(self.tool + " ") else self.label

    def _counts(self) -> list[str]:
        st = self.stats
        out = [f"in {format_count(st.records_in)}", f"out {format_count(st.records_out)}"]
        try:  # the step may be adding a reason while this thread reads
            dropped = sum(st.dropped.values()) + sum(st.skipped_bad.values())
        except RuntimeError:
            dropped = 0
        if dropped:
            out.append(f"dropped {format_count(dropped)}")
        return out

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError, AttributeError):  # stderr closed (or None): nothing to report to
            self._stop.set()

    def report(self, *, final: bool = False) -> None:
        """Write one line now."""
        self._write(self.line(final=final))
        self.lines += 1

    # ---- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.report()

    def start(self) -> LogReporter:
        if self.every > 0:
            self._thread = threading.Thread(target=self._run, name="phitools-progress", daemon=True)
            self._thread.start()
        return self

    def close(self, *, ok: bool = True) -> None:
        """Stop the thread; a run that reported at least once ends with a `done` line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if ok and self.lines:
            self.report(final=True)

    def __enter__(self) -> LogReporter:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)
