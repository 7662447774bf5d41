"""`phitools export`: convert a checkpoint between phitools and Hugging Face Phi formats."""

from __future__ import annotations

import typer

from phitools.cli import console
from phitools.cli.common import Quiet, setup
from phitools.cli.declare import command
from phitools.model.options import ExportOptions


@command("export")
def export(opts: ExportOptions, quiet: Quiet = False) -> None:
    """Convert a checkpoint between phitools and Hugging Face Phi formats, without loss.

    Tensors are renamed, never recomputed (bit-identical unless --dtype is given); tokenizer files next
    to the weights are copied; provenance is recorded. Nothing is written to stdout.

    Examples:

        phitools export runs/a/final -o phi-hf/ --format hf     # then PhiForCausalLM.from_pretrained("phi-hf")
        phitools export ~/models/phi-1 -o phi1/ --format phitools
    """
    setup(quiet)
    from phitools.model.export import export as run_export

    run_export(opts)
    console.info(f"wrote {opts.format} checkpoint {opts.output}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
