"""`results.jsonl` of `phitools eval -o DIR`: written as checks finish, and resumed by a re-run.

While a run is in progress (or after it was killed) `results.jsonl` holds one record per finished check, in the
order they finished, and the directory has no `summary.json` or `manifest.json`. At the end the file is
rewritten in task / completion order (tmp + fsync + rename) and the summary and manifest are written: only then does
the directory describe a finished run.

A re-run of the same command into the same directory reads the file back and checks only what is not in it.
A check is identified by its `check_id` (see `check_id`): a hash of everything its verdict depends on. A record
whose id does not match a sample of the new run (another completion, other limits, another benchmark file) is
not used, and is not in the final file. A line cut short by a kill is dropped, and that check runs again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from phitools.errors import UsageError
from phitools.records import RecordParseError, dumps_record, loads_record
from phitools.runtime.files import atomic_file

RESULTS = "results.jsonl"
# Bump when a verdict of the same program under the same test could change (the judge's rules, the wire).
CHECK_ID_VERSION = 1
# What a result record adds to the sample's own fields. These names belong to eval: a sample that carries them
# (say, a results.jsonl scored again) has them replaced, never mixed with the new verdict.
RESULT_FIELDS = (
    "check_id",
    "completion_id",
    "passed",
    "status",
    "result",
    "reason",
    "limit",
    "isolation",
    "cpu_s",
    "wall_s",
    "retried",
    "output",
)
VERDICT_FIELDS = RESULT_FIELDS[2:]
STATUSES = ("passed", "failed", "timed_out", "error")


def _h(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8", "surrogatepass")  # completions may hold lone surrogates
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def run_fingerprint(benchmark: str, data_sha256: str, limits: dict, seed: int, mode: str) -> str:
    """What every check of a run shares and its verdict depends on."""
    return _h(str(CHECK_ID_VERSION), benchmark, data_sha256, json.dumps(limits, sort_keys=True), str(seed), mode)


def task_fingerprint(job) -> str:
    """The trusted half of a check: the test the judge runs and what it binds (computed once per task)."""
    return _h(
        job.test, job.judge_prelude, json.dumps(list(job.remote)), job.inprocess_prelude, str(job.allow_inprocess)
    )


def check_id(run_fp: str, task_id: str, task_fp: str, program: str) -> str:
    """The identity of one check: run, task, its test, and the exact program (prompt + completion)."""
    return _h(run_fp, task_id, task_fp, program)[:32]


class ResultsLog:
    """The results file of an output directory during a run. Opening it takes an exclusive lock on the directory
    (a second eval into it is refused), reads back the previous run's records, and removes the previous
    summary.json and manifest.json."""

    def __init__(self, out_dir: Path, *, warn: Callable[[str], None] | None = None):
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise UsageError(
                f"-o {self.dir}: another phitools eval is writing there",
                hint="wait for it to finish, or choose another output directory",
            ) from None
        self.previous: list[dict] = []
        self.dropped_lines = 0
        if self.path.exists():
            self.previous, self.dropped_lines = read_previous(self.path)
            if self.dropped_lines and warn:
                warn(
                    f"{self.path}: dropped {self.dropped_lines} incomplete or unreadable line(s) (an interrupted "
                    "run); those checks run again"
                )
        for name in ("manifest.json", "summary.json"):
            (self.dir / name).unlink(missing_ok=True)
        # start from a clean journal: the previous records, whole lines only
        self._replace(self.previous)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def done(self) -> dict[str, list[dict]]:
        """Previous verdicts by check_id (a list: the same program may be checked more than once)."""
        out: dict[str, list[dict]] = {}
        for rec in self.previous:
            out.setdefault(rec["check_id"], []).append(rec)
        return out

    def append(self, rec: dict) -> None:
        """Add one finished check (one write of one whole line)."""
        assert self._fd is not None
        data = memoryview(dumps_record(rec))
        while data:
            n = os.write(self._fd, data)
            data = data[n:]

    def finish(self, records: Iterable[dict]) -> None:
        """Replace the journal by the final results, in order."""
        self._close_fd()
        self._replace(records)

    def _replace(self, records: Iterable[dict]) -> None:
        with atomic_file(self.path) as f:
            for rec in records:
                f.write(dumps_record(rec))

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Release the directory (the journal stays, for a later run to resume from)."""
        self._close_fd()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None  # type: ignore[assignment]

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_previous(path: Path) -> tuple[list[dict], int]:
    """The records of a results file that name their check and verdict, and how many lines were cut short (a
    kill mid-write) or unreadable. Records without a check_id (another tool, an older phitools) are skipped."""
    records: list[dict] = []
    dropped = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                dropped += 1  # the last line, cut short mid-write
                continue
            try:
                rec = loads_record(line)
            except RecordParseError:
                dropped += 1
                continue
            if isinstance(rec.get("check_id"), str) and rec.get("status") in STATUSES:
                records.append(rec)
    return records, dropped
