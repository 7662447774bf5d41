"""Commands that are not built yet say so and exit non-zero: never fake output."""

from __future__ import annotations

import typer

from phitools.runtime import console


def not_built(app: typer.Typer, name: str, summary: str, issue: str) -> None:
    """Register a placeholder command that explains it is not built yet (exit 1)."""

    def cmd(args: list[str] | None = typer.Argument(None, hidden=True)) -> None:
        console.error(f"phitools {name}: not built yet ({issue}); this command produces no output")
        raise typer.Exit(1)

    cmd.__doc__ = f"{summary}\n\nNot built yet: {issue}."
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(cmd)
