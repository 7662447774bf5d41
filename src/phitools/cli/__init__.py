"""The `phitools` command line: a thin typer layer over the library. One module per command."""

from __future__ import annotations

import importlib

import typer

from phitools import __version__

app = typer.Typer(
    name="phitools",
    help="Make small language models the Phi way: label -> classify -> synth -> tokenize -> train -> grow -> eval.\n\n"
    "Every tool reads and writes JSONL / zstd-JSONL records and pipes into the next:\n\n"
    "    phitools ingest \"$STDLIB\" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Order is the recipe's order; each module has register(app).
COMMAND_MODULES = ["ingest", "label", "classify", "synth", "decontam", "tokenize", "train", "grow", "export", "eval", "cat", "stats"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phitools {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """phitools: Phi-style small language models from the command line."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"phitools.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="phitools")
