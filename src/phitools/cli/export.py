"""`phitools export`: convert a checkpoint between phitools and Hugging Face Phi formats."""

from __future__ import annotations

from typing import Annotated

import typer

from phitools.cli.common import Quiet, handle_errors, setup

_DTYPES = ("float32", "bfloat16", "float16")


@handle_errors("export")
def export(
    src: Annotated[
        str, typer.Argument(help="Source: a phitools checkpoint or a Hugging Face Phi directory.", show_default=False)
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="Output directory.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="'hf' (config.json + model.safetensors for transformers' PhiForCausalLM) or 'phitools'."
        ),
    ] = "hf",
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype", help="Store weights as float32, bfloat16 or float16 (default: as stored).", show_default=False
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing checkpoint at -o.")] = False,
    quiet: Quiet = False,
) -> None:
    """Convert a checkpoint between phitools and Hugging Face Phi formats, without loss.

    Tensors are renamed, never recomputed (bit-identical unless --dtype is given); tokenizer files next
    to the weights are copied; provenance is recorded. Nothing is written to stdout.

    Examples:

        phitools export runs/a/final -o phi-hf/ --format hf     # then PhiForCausalLM.from_pretrained("phi-hf")
        phitools export ~/models/phi-1 -o phi1/ --format phitools
    """
    setup(quiet)
    from phitools.errors import UsageError

    if dtype is not None and dtype not in _DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}", hint=f"use one of {', '.join(_DTYPES)}")
    import torch

    from phitools.cli import console
    from phitools.model.hf import export_checkpoint

    export_checkpoint(src, output, fmt=fmt, dtype=getattr(torch, dtype) if dtype else None, overwrite=overwrite)
    console.info(f"wrote {fmt} checkpoint {output}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
