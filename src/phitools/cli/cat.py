"""`phitools cat`: concatenate, convert, sample and re-shard records."""

from __future__ import annotations

import typer

from phitools.cli.common import AllowPartial, Inputs, Limit, Output, Quiet, Seed, Shard, ShardSize, SkipBad, ToolIO, handle_errors, setup


@handle_errors("cat")
def cat(
    inputs: Inputs = None,
    output: Output = None,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
) -> None:
    """Read records from anywhere and write them out: decompress, convert, re-shard, validate.

    Examples:

        phitools cat corpus/ | head -n 3
        phitools cat corpus/ --shard 0/4 -o part0/
        cat data.jsonl | phitools cat -o data.jsonl.zst
    """
    setup(quiet)
    with ToolIO("cat", inputs, output, shard=shard, skip_bad=skip_bad, required=(), seed=seed, limit=limit, shard_size=shard_size,
                allow_partial=allow_partial) as io:
        write = io.writer.write
        for rec in io.records():
            write(rec)


def register(app: typer.Typer) -> None:
    app.command("cat")(cat)
