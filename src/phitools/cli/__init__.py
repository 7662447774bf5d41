"""The `phitools` command line: a thin typer layer over the library. One module per command."""

from __future__ import annotations

import importlib
import inspect

import typer

from phitools import __version__

app = typer.Typer(
    name="phitools",
    help="Make small language models the Phi way: label -> classify -> synth -> tokenize -> train -> grow -> eval.\n\n"
    "Every tool reads and writes JSONL / zstd-JSONL records and pipes into the next:\n\n"
    '    phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/',
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Order is the recipe's order; each module has register(app).
COMMAND_MODULES = [
    "ingest",
    "label",
    "classify",
    "synth",
    "decontam",
    "tokenize",
    "train",
    "grow",
    "export",
    "eval",
    "cat",
    "stats",
    "verify",
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phitools {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """phitools: Phi-style small language models from the command line."""


def _keep_examples(doc: str | None) -> str | None:
    """Mark indented blocks (examples) so click prints them as written instead of re-wrapping them."""
    if not doc:
        return doc
    paras = inspect.cleandoc(doc).split("\n\n")
    out = []
    for p in paras:
        lines = [ln for ln in p.splitlines() if ln.strip()]
        if lines and all(ln.startswith("    ") for ln in lines) and not p.startswith("\b"):
            p = "\b\n" + p
        out.append(p)
    return "\n\n".join(out)


def _fix_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.callback is not None and info.help is None:
            info.callback.__doc__ = _keep_examples(info.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _fix_help(group.typer_instance)


for _name in COMMAND_MODULES:
    importlib.import_module(f"phitools.cli.{_name}").register(app)
_fix_help(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="phitools")
