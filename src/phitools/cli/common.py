"""What every command shares: the common options, error handling, and reader/writer setup.

Library code raises typed errors; `handle_errors` is the one place they become a one-line message and an
exit code (1 data/runtime, 2 usage). A closed stdout (`| head`) exits 0 quietly.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated

import typer

from phitools.cli import console
from phitools.errors import PhitoolsError
from phitools.records import Record
from phitools.shards import RecordReader, RecordWriter, Stats, parse_shard

# ---- the common options: the same name means the same thing in every tool ------------------------------
Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[INPUT]",
        help="Input files, directories or globs; '-' or nothing reads stdin. .jsonl, .jsonl.zst, .jsonl.gz.",
        show_default=False,
    ),
]
Output = Annotated[
    str | None,
    typer.Option(
        "-o",
        "--output",
        metavar="DIR|FILE|-",
        help="Output: a directory of rolling shards + manifest.json, a file ending .jsonl[.zst|.gz], or '-' for stdout (default).",
        show_default=False,
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Process only slice K/N (K from 0) of the input: by file when there are >= N files, else by record. For Slurm arrays and parallel jobs.",
        show_default=False,
    ),
]
Seed = Annotated[int, typer.Option("--seed", metavar="INT", help="Random seed; the same seed gives the same output.")]
Limit = Annotated[
    int | None, typer.Option("--limit", metavar="N", help="Stop after N input records.", show_default=False, min=0)
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr (errors still print).")]
ProgressEvery = Annotated[
    float,
    typer.Option(
        "--progress-every",
        metavar="SECONDS",
        envvar="PHITOOLS_PROGRESS_EVERY",
        min=0,
        help="When stderr is not a terminal (Slurm, nohup, a log file): one progress line every SECONDS (timestamp, counts, rate, ETA); 0 for none. On a terminal a progress bar shows instead.",
    ),
]
SkipBad = Annotated[
    bool,
    typer.Option(
        "--skip-bad", help="Count and skip malformed records instead of stopping (the count goes into the manifest)."
    ),
]
AllowPartial = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Read an incomplete output directory anyway (missing --shard parts, unlisted or damaged files): what checks out is read, and the gaps are noted in the manifest (stats.partial_inputs).",
    ),
]
ShardSize = Annotated[
    str,
    typer.Option(
        "--shard-size",
        metavar="N|SIZE",
        help="Rotate output shards after N records, or after a size with a unit (e.g. 256M uncompressed).",
    ),
]


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


class ToolIO:
    """Reader + writer + counters for a records-in, records-out tool."""

    def __init__(
        self,
        tool: str,
        inputs: Sequence[str] | None,
        output: str | None,
        *,
        shard: str | None = None,
        skip_bad: bool = False,
        required: Sequence[str] = ("text",),
        seed: int | None = None,
        limit: int | None = None,
        shard_size: str = "100000",
        manifest_extra: dict | None = None,
        allow_partial: bool = False,
    ):
        self.tool = tool
        self.stats = Stats()
        self.shard = parse_shard(shard)
        self.limit = limit
        text_fields = tuple(f for f in required if f == "text")  # a tool that needs text needs it as valid Unicode
        self.reader = RecordReader(
            inputs,
            shard=self.shard,
            skip_bad=skip_bad,
            required=required,
            str_fields=text_fields,
            stats=self.stats,
            allow_partial=allow_partial,
        )
        self.writer = RecordWriter(
            output,
            tool=tool,
            shard_size=shard_size,
            shard=self.shard,
            stats=self.stats,
            seed=seed,
            inputs=self.reader.inputs,
            manifest_extra=manifest_extra,
        )

    def records(self) -> Iterator[Record]:
        """Input records, stopping after --limit."""
        it: Iterator[Record] = iter(self.reader)
        if self.limit is not None:
            it = itertools.islice(it, self.limit)
        return it

    def __enter__(self) -> ToolIO:
        self.writer.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.__exit__(exc_type, exc, tb)


def setup(quiet: bool, progress_every: float = 30.0) -> None:
    """Per-command process setup: how stderr talks (the rich frontend draws on a terminal)."""
    from phitools.cli.console import install

    install()
    console.set_quiet(quiet)
    console.set_progress_every(progress_every)
