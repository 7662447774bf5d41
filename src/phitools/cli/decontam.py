"""`phitools decontam`: flag or drop records that overlap a benchmark's prompts or solutions."""

from __future__ import annotations

import typer

from phitools import pipeline
from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.pipeline import IOOptions
from phitools.steps.decontam import Decontam, DecontamOptions


@command("decontam")
def decontam(opts: DecontamOptions, io: IOOptions, run: RunOptions) -> None:
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
    """  # noqa: E501 - an example command line reads best unbroken
    step = Decontam(opts)
    pipeline.run(step, io, progress=console.progress)
    counts = step.counts
    n = counts["contaminated"]
    msg = f"phitools decontam: {n} of {counts['checked']} records overlap {', '.join(opts.benchmarks)}"
    if n:
        how = f"{counts['by_ngram']} by {opts.ngram}-gram, {counts['by_ast']} by AST"
        console.warn(f"{msg} ({how}){'; dropped' if opts.drop else '; flagged'}")
    else:
        console.info(msg)


def register(app: typer.Typer) -> None:
    app.command("decontam")(decontam)
