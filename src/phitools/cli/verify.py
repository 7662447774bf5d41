"""`phitools verify`: is a stage output complete? Which --shard parts are missing, which files are wrong?"""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from phitools.cli.common import handle_errors
from phitools.errors import UsageError


@handle_errors("verify")
def verify(
    dirs: Annotated[
        list[str],
        typer.Argument(
            metavar="DIR", help="Output directories written by -o DIR (records or token shards).", show_default=False
        ),
    ],
    json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (one object per DIR, one per line).")
    ] = False,
    parts: Annotated[
        int | None,
        typer.Option(
            "--parts",
            metavar="N",
            min=1,
            help="The number of --shard K/N parts expected (e.g. a Slurm array's size); default: what the manifests say.",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Check sizes only, not sha256.")] = False,
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
    from phitools.shards.complete import inspect_output

    if not dirs:
        raise UsageError("give at least one DIR")
    ok = True
    out = []
    for d in dirs:
        rep = inspect_output(d, sha256=not quick, parts=parts)
        ok = ok and rep.complete
        if json:
            out.append(orjson.dumps(rep.to_dict()).decode())
        else:
            lines = [f"{d}: {rep.summary()}"]
            for p in rep.problems[:20]:
                lines.append(f"  {p.kind}: {p.message}")
            if len(rep.problems) > 20:
                lines.append(f"  ... {len(rep.problems) - 20} more")
            if rep.running:
                lines.append(f"  running now: --shard K = {', '.join(map(str, rep.running))}")
            stale = [t for t in rep.temps if t.stale()]
            if rep.temps:
                lines.append(
                    f"  temp files: {len(rep.temps)} ({len(stale)} provably stale, removed by the next run of that part)"
                )
            if not rep.complete and rep.kind not in ("plain", "empty", "missing"):
                lines.append(f"  hint: {rep.hint()}")
            out.append("\n".join(lines))
    typer.echo("\n".join(out))
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
