"""Generate docs/cli.md from the commands' --help (a test fails when the file is stale).

python -m phitools.cli.docgen > docs/cli.md
"""

from __future__ import annotations

import click
import typer

WIDTH = 100


def _help(cmd: click.Command, path: list[str], parent: click.Context | None) -> str:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    return cmd.get_help(ctx)


def render() -> str:
    """The CLI reference as markdown."""
    from phitools.cli import app

    root = typer.main.get_command(app)
    out = [
        "# phitools command-line reference",
        "",
        "Generated from `--help` by `python -m phitools.cli.docgen > docs/cli.md` (`make docs`); "
        "a test keeps it current.",
        "",
    ]
    root_ctx = click.Context(root, info_name="phitools", terminal_width=WIDTH, max_content_width=WIDTH)
    out += ["## phitools", "", "```", root.get_help(root_ctx), "```", ""]

    def walk(group: click.Group, path: list[str], ctx: click.Context) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            p = path + [name]
            out.extend([f"## {' '.join(p)}", "", "```", _help(cmd, p, ctx), "```", ""])
            if isinstance(cmd, click.Group):
                walk(
                    cmd,
                    p,
                    click.Context(cmd, info_name=name, parent=ctx, terminal_width=WIDTH, max_content_width=WIDTH),
                )

    walk(root, ["phitools"], root_ctx)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
