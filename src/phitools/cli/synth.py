"""`phitools synth`: synthetic textbooks, exercises and stories with injected randomness."""

from __future__ import annotations

import typer

from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.llm.options import usage_summary
from phitools.steps.synth import Synth, SynthIO, SynthLLMOptions, SynthOptions, template_text, write


@command("synth")
def synth(opts: SynthOptions, llm: SynthLLMOptions, io: SynthIO, run: RunOptions) -> None:
    """Write synthetic textbooks, exercises or stories with an LLM, made diverse by seeded random draws.

    Each record i draws one value per dimension (topic, audience, style, ... from --topics/--spec, plus
    the kind's defaults) from an RNG seeded by (--seed, i), fills the prompt template and asks the model.
    Records carry text plus provenance: synth.{draw, seed, index, model, sampling, template}. Exercises
    also hold `prompt` (signature + docstring) and `solution`; solutions must parse, unparseable answers
    are retried then counted as failed. The manifest holds coverage (counts per dimension value), usage
    and failures. --shard K/N makes records i = K mod N; answers are cached, so a re-run after a crash
    sends only unanswered requests. Without --api-base the embedded SmolLM2-135M runs on CPU (slow; the
    default --max-tokens is 192 there, 1024/512/512 for textbook/exercise/story on a server).

    Examples:

        phitools synth --topics examples/topics.txt | phitools tokenize -o tok/
        phitools synth --spec examples/spec.toml --n 1000 --api-base http://localhost:8000/v1 \\
            --model Qwen/Qwen2.5-7B-Instruct --concurrency 32 --check --stats -o exercises/
        phitools synth --topics examples/topics.txt --kind story --n 100 --dry-run | head -n 2
    """
    if opts.show_template:
        typer.echo(template_text(opts), nl=False)
        return
    job = Synth(opts, llm, io)
    write(job, progress=console.progress)
    if job.runner is None:  # --dry-run
        return
    console.info(usage_summary(job.runner, "synth"))
    for warning in job.warnings():
        console.warn(warning)
    if job.diversity is not None and not run.quiet:
        from phitools.cli.stats import print_table

        print_table(job.diversity.report(), force=True)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
