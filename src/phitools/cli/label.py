"""`phitools label`: rate records for educational value with an LLM; adds `label: {score, rationale, ...}`."""

from __future__ import annotations

import typer

from phitools import pipeline
from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.llm.options import LLMOptions, usage_summary
from phitools.pipeline import IOOptions
from phitools.steps.label import Label, LabelOptions


@command("label")
def label(opts: LabelOptions, llm: LLMOptions, io: IOOptions, run: RunOptions) -> None:
    """Rate the educational value of records with an LLM: each record gets label: {score, rationale, model,
    rubric, attempts}.

    phi-1 asked GPT-4 for the "educational value for a student whose goal is to learn basic coding
    concepts" of ~100k files and trained a classifier on the answers (`phitools classify`). Without
    --api-base the embedded SmolLM2-135M runs offline: it proves the pipeline, not the judgement.
    --backend heuristic is a transparent non-LLM scorer (label.heuristic = true). A label that cannot be
    obtained or parsed after --max-attempts is written with score null and label.error. Answers are
    cached (SQLite) so a re-run after a crash sends only what was not answered.

    Examples:

        phitools label corpus.jsonl --sample 20
        phitools label corpus/ --sample 200 -o labeled/
        phitools label corpus/ --fraction 0.01 --api-base http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \\
            --concurrency 32 -o labeled/
        phitools label web.jsonl --rubric web --votes 3 --api-base https://api.openai.com/v1 --model gpt-4o-mini \\
            --price-per-1k 0.00015,0.0006 -o web-labeled.jsonl.zst
    """
    step = Label(opts, llm)
    pipeline.run(step, io, progress=console.progress)
    for line in step.diagnostics.summary_lines():
        console.info(f"phitools label: {line}")
    if step.runner is not None:
        console.info(usage_summary(step.runner, "label"))
    for warning in step.diagnostics.warnings():
        console.warn(warning)


def register(app: typer.Typer) -> None:
    app.command("label")(label)
