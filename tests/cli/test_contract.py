"""The CLI contract shared by every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import typer
from typer.testing import CliRunner

from phitools.cli import app
from phitools.cli.docgen import render

REPO = Path(__file__).resolve().parents[2]
TOOLS = ["ingest", "label", "classify", "synth", "tokenize", "train", "grow", "eval"]


def _commands():
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    out = []
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            sub = click.Context(cmd, parent=ctx)
            out += [(f"{name} {s}", cmd.get_command(sub, s)) for s in cmd.list_commands(sub)]
        else:
            out.append((name, cmd))
    return out


def test_help_lists_the_eight_tools():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for t in TOOLS:
        assert f"  {t} " in res.output


def test_every_command_is_documented_with_an_example():
    for name, cmd in _commands():
        assert cmd.help and len(cmd.help.strip()) > 20, f"{name} has no docstring"
        if "Not built yet" not in cmd.help:
            assert "phitools " in cmd.help, f"{name}'s --help shows no usage example"


def test_docs_cli_md_is_current():
    current = (REPO / "docs" / "cli.md").read_text()
    assert current == render(), "docs/cli.md is stale: run `make docs` (python -m phitools.cli.docgen > docs/cli.md)"


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "phitools", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("phitools ")


def test_usage_error_exits_2():
    out = subprocess.run([sys.executable, "-m", "phitools", "ingest", "--no-such-flag"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
