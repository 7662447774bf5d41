"""cli/declare.py: a command's flags come from the library's options dataclasses, written once."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from typer.testing import CliRunner

from phitools.cli.declare import RunOptions, command
from phitools.options import check, option
from phitools.pipeline import IOOptions


@dataclass
class GreetOptions:
    name: str = option("world", "--name", "-n", help="Who to greet.")
    times: int = option(1, min=1, help="How often.")

    def __post_init__(self) -> None:
        if self.name == "nobody":
            from phitools.errors import UsageError

            raise UsageError("--name nobody: there is no one to greet", hint="give a name")
        check(self)


def _app(fn) -> typer.Typer:
    app = typer.Typer()
    app.command("greet")(fn)
    app.command("other")(lambda: None)  # two commands, so typer keeps the subcommand name
    return app


def test_flags_defaults_and_help_come_from_the_dataclass():
    seen = {}

    @command("greet")
    def greet(opts: GreetOptions, run: RunOptions) -> None:
        """Greet someone."""
        seen["opts"], seen["run"] = opts, run

    runner = CliRunner()
    r = runner.invoke(_app(greet), ["greet", "-n", "Ada", "--times", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert seen["opts"] == GreetOptions(name="Ada", times=2) and seen["run"].quiet
    h = runner.invoke(_app(greet), ["greet", "--help"])
    assert "Who to greet." in h.output and "--progress-every" in h.output and "Greet someone." in h.output
    assert runner.invoke(_app(greet), ["greet", "--times", "0"]).exit_code == 2  # min= reaches click


def test_validation_in_the_dataclass_is_a_one_line_usage_error():
    @command("greet")
    def greet(opts: GreetOptions) -> None:
        """Greet someone."""

    r = CliRunner().invoke(_app(greet), ["greet", "--name", "nobody"])
    assert r.exit_code == 2
    assert "phitools greet: error: --name nobody: there is no one to greet (give a name)" in r.output


def test_io_options_declare_the_shared_flags_once():
    got = {}

    @command("greet")
    def greet(io: IOOptions) -> None:
        """Greet someone."""
        got["io"] = io

    r = CliRunner().invoke(_app(greet), ["greet", "a.jsonl", "b.jsonl", "-o", "out/", "--shard", "1/4", "--limit", "3"])
    assert r.exit_code == 0, r.output
    io = got["io"]
    assert io.inputs == ["a.jsonl", "b.jsonl"] and io.output == "out/" and io.limit == 3
    assert (io.shard_spec.index, io.shard_spec.count) == (1, 4)
