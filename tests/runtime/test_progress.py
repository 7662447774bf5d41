"""runtime/progress.py: the log line's content and format, its thread, and when it stays silent."""

from __future__ import annotations

import io
import re
import time

from phitools.runtime.progress import LogReporter, format_duration, format_rate
from phitools.shards import Stats

NOW = "2026-05-01T12:00:30+00:00"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _reporter(**kw) -> tuple[LogReporter, Clock]:
    clock = Clock()
    kw.setdefault("tool", "label")
    kw.setdefault("label", kw["tool"])
    return LogReporter(kw.pop("tool"), kw.pop("label"), clock=clock, now=lambda: NOW, every=30, **kw), clock


def test_counts_rate_and_eta_when_the_total_is_known():
    stats = Stats()
    rep, clock = _reporter(total=10_000, stats=stats)
    rep.advance(1_000)
    rep.advance(200)
    stats.records_in, stats.records_out = 1_200, 1_150
    stats.drop("too_large", 50)
    clock.t += 30
    assert rep.line() == (
        f"[{NOW}] phitools label: 1,200/10,000 records (12.0%) | in 1,200 | out 1,150 | dropped 50 "
        "| 40.0 records/s | elapsed 0:00:30 | ETA 0:03:40"
    )
    assert rep.line(final=True) == (
        f"[{NOW}] phitools label: done, 1,200/10,000 records (12.0%) | in 1,200 | out 1,150 "
        "| dropped 50 | 40.0 records/s | elapsed 0:00:30"
    )


def test_no_total_no_eta_and_the_phase_and_detail():
    rep, clock = _reporter(tool="tokenize", label="training tokenizer", unit="docs")
    rep.advance(5)
    clock.t += 10
    assert rep.line() == f"[{NOW}] phitools tokenize: training tokenizer: 5 docs | 0.5 docs/s | elapsed 0:00:10"
    rep, clock = _reporter(tool="eval", label="eval humaneval", total=164, unit="checks")
    rep.advance(82)
    clock.t += 41
    assert rep.line().endswith(
        "phitools eval: humaneval: 82/164 checks (50.0%) | 2.0 checks/s | elapsed 0:00:41 | ETA 0:00:41"
    )


def test_resumed_work_does_not_count_towards_the_rate_and_detail_follows():
    rep, clock = _reporter(tool="train", total=1_000, unit="steps", initial=400)
    rep.advance(100)
    rep.update(description="train loss 2.3100 lr 3.00e-04")
    clock.t += 50
    line = rep.line()
    assert "500/1,000 steps (50.0%) | 2.0 steps/s | elapsed 0:00:50 | ETA 0:04:10 | loss 2.3100 lr 3.00e-04" in line


def test_formats():
    assert format_duration(0) == "0:00:00" and format_duration(3725) == "1:02:05"
    assert format_duration(2 * 86400 + 61) == "2d 0:01:01"
    assert format_rate(12345.6) == "12,346" and format_rate(40) == "40.0" and format_rate(0.4242) == "0.42"


def test_the_thread_reports_periodically_then_done():
    out = io.StringIO()
    stats = Stats()
    with LogReporter("cat", "cat", every=0.05, stream=out, stats=stats) as rep:
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 3 and time.monotonic() < deadline:
            rep.advance()
            stats.records_in += 1
            stats.records_out += 1
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4 and "done," in lines[-1] and all("done," not in x for x in lines[:-1])
    pattern = re.compile(
        r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\] phitools cat: (done, )?in \d+ \| out \d+ \| "
        r"[\d.,]+ records/s \| elapsed \d+:\d\d:\d\d$"
    )
    assert all(pattern.match(x) for x in lines), lines
    ins = [int(re.search(r"in (\d+)", x).group(1)) for x in lines]
    assert ins == sorted(ins) and ins[-1] == stats.records_in


def test_a_short_run_prints_nothing_and_a_failed_one_no_done():
    out = io.StringIO()
    with LogReporter("cat", "cat", every=30, stream=out) as rep:
        rep.advance(10)
    assert out.getvalue() == ""
    out = io.StringIO()
    try:
        with LogReporter("cat", "cat", every=0.02, stream=out) as rep:
            time.sleep(0.15)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert out.getvalue() and "done," not in out.getvalue()
