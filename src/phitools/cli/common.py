"""What every command shares: error handling and stderr setup (options are declared from the library's
options dataclasses: cli/declare.py).

Library code raises typed errors; `handle_errors` is the one place they become a one-line message and an
exit code (1 data/runtime, 2 usage). A closed stdout (`| head`) exits 0 quietly.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from phitools.cli import console
from phitools.errors import PhitoolsError

# --quiet for the commands that do not take the record tools' options (grow, export)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr (errors still print).")]


def _stdout_gone() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def handle_errors(tool: str) -> Callable:
    """Decorator for a command: typed errors -> one line on stderr + exit code; broken pipe -> exit 0."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            console.set_tool(tool)
            try:
                return fn(*args, **kwargs)
            except PhitoolsError as e:
                console.error(f"phitools {tool}: error: {e}")
                raise typer.Exit(e.exit_code) from None
            except BrokenPipeError:
                _stdout_gone()
                raise typer.Exit(0) from None
            except OSError as e:
                if e.errno == errno.EPIPE:
                    _stdout_gone()
                    raise typer.Exit(0) from None
                console.error(f"phitools {tool}: error: {e}")
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                console.error(f"phitools {tool}: interrupted")
                raise typer.Exit(130) from None

        return wrapper

    return deco


def setup(quiet: bool, progress_every: float = 30.0) -> None:
    """Per-command process setup: how stderr talks (the rich frontend draws on a terminal)."""
    from phitools.cli.console import install

    install()
    console.set_quiet(quiet)
    console.set_progress_every(progress_every)
