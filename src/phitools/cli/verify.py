"""`phitools verify`: is a stage output complete? Which --shard parts are missing, which files are wrong?"""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from phitools.cli.declare import command
from phitools.shards.complete import VerifyOptions
from phitools.shards.complete import verify as inspect_outputs


@command("verify")
def verify(
    opts: VerifyOptions,
    json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (one object per DIR, one per line).")
    ] = False,
) -> None:
    """Check that DIR holds one complete output: every --shard part, every listed file with its size and sha256,
    nothing unlisted. Exit 0 when complete, 1 when not (the report says what is missing and what to do).

    The JSON report's fields (stable; docs/formats.md): path, kind (records, tokens, plain, empty, missing),
    complete, parts (N), present and missing (the K of N with and without a manifest), running (K whose
    writer holds the lock now), checked (sha256 or size), files, records, tokens, problems [{kind, message,
    path, part}], temp_files [{path, host, pid, stale}], summary, hint.

    Examples:

        phitools verify corpus/
        phitools verify labeled/ --parts 8 --json | jq -c .missing        # [3, 5]: re-run --shard 3/8 and 5/8
    """
    reports = inspect_outputs(opts)
    if json:
        typer.echo("\n".join(orjson.dumps(rep.to_dict()).decode() for rep in reports))
    else:
        typer.echo("\n".join(rep.text() for rep in reports))
    if not all(rep.complete for rep in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
