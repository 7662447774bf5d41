"""`phitools cat`: concatenate, convert, sample and re-shard records."""

from __future__ import annotations

import typer

from phitools import pipeline
from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.pipeline import IOOptions
from phitools.steps.cat import Cat


@command("cat")
def cat(io: IOOptions, run: RunOptions) -> None:
    """Read records from anywhere and write them out: decompress, convert, re-shard, validate.

    Examples:

        phitools cat corpus/ | head -n 3
        phitools cat corpus/ --shard 0/4 -o part0/
        cat data.jsonl | phitools cat -o data.jsonl.zst
    """
    pipeline.run(Cat(), io, progress=console.progress)


def register(app: typer.Typer) -> None:
    app.command("cat")(cat)
