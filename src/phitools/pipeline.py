"""One contract for every records-in, records-out step, and the one place that reads, shards, limits and writes.

A step is an object with

    name: str                        the tool's name (manifests, progress lines, messages)
    required: tuple[str, ...]        record fields it needs, checked while reading (e.g. ("text",))
    __call__(records, ctx) -> Iterator[Record]
    manifest() -> dict               its entries in the output manifest, asked for after the last record

and optionally `total` (records it will emit, for an ETA) and `whole_input = True` when it reads every part
of a sharded input itself (label's exact sharded sample): such a step gets `(record, mine)` pairs for every
input record, `mine` saying whether the record is in this --shard part (all are without --shard; `ctx.shard`
names the part, and the counters count this part's records only).
A step that needs a second pass over its input (classify apply's exact --keep-top) calls `ctx.reopen()`: the
same records again (same slice, limit and checks; the counters start over), or None when the input cannot be
read twice (stdin). A step with a second output (classify apply's --rejects) writes it with `ctx.shard_size`.

`run(step, io)` reads `io.inputs` (files, directories, globs, stdin; `--shard K/N`, `--skip-bad`,
`--allow-partial`), stops after `io.limit` records, feeds them through the step, writes `io.output` (stdout, a
file, or rolling shards + manifest.json) with the step's manifest entries, and returns the counters. Counters
live in `ctx.stats` (records in and out, dropped by reason): a step counts what it drops; `run` counts the rest.

From Python a step also applies to any iterable of dicts, with no files at all:

    from phitools.steps.decontam import Decontam, DecontamOptions
    step = Decontam(DecontamOptions(benchmarks=["humaneval"], drop=True))
    clean = list(step(records, Context()))
    print(step.manifest())
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from phitools.options import check, option
from phitools.records import Record
from phitools.runtime.progress import NullReporter, Reporter
from phitools.shards import RecordReader, RecordWriter, ShardSpec, Stats, parse_shard

# ---- the options every record tool shares: the same name means the same thing in every tool --------------
_INPUTS_HELP = "Input files, directories or globs; '-' or nothing reads stdin. .jsonl, .jsonl.zst, .jsonl.gz."
_OUTPUT_HELP = (
    "Output: a directory of rolling shards + manifest.json, a file ending .jsonl[.zst|.gz], or '-' for stdout "
    "(default)."
)
_SHARD_HELP = (
    "Process only slice K/N (K from 0) of the input: by file when there are >= N files, else by record. For "
    "Slurm arrays and parallel jobs."
)
_PARTIAL_HELP = (
    "Read an incomplete output directory anyway (missing --shard parts, unlisted or damaged files): what checks "
    "out is read, and the gaps are noted in the manifest (stats.partial_inputs)."
)


@dataclass
class IOOptions:
    """Where records come from and go to, and which slice of them a run handles."""

    inputs: list[str] | None = option(None, argument=True, metavar="[INPUT]", show_default=False, help=_INPUTS_HELP)
    output: str | None = option(None, "-o", "--output", metavar="DIR|FILE|-", show_default=False, help=_OUTPUT_HELP)
    shard: str | None = option(None, "--shard", metavar="K/N", show_default=False, help=_SHARD_HELP)
    shard_size: str = option(
        "100000",
        "--shard-size",
        metavar="N|SIZE",
        help="Rotate output shards after N records, or after a size with a unit (e.g. 256M uncompressed).",
    )
    skip_bad: bool = option(
        False,
        "--skip-bad",
        help="Count and skip malformed records instead of stopping (the count goes into the manifest).",
    )
    allow_partial: bool = option(False, "--allow-partial", help=_PARTIAL_HELP)
    seed: int = option(0, "--seed", metavar="INT", help="Random seed; the same seed gives the same output.")
    limit: int | None = option(
        None, "--limit", metavar="N", min=0, show_default=False, help="Stop after N input records."
    )

    def __post_init__(self) -> None:
        check(self)
        self.shard_spec: ShardSpec | None = parse_shard(self.shard)


def io_option(name: str) -> Any:
    """IOOptions' declaration of field `name` (flags, default, help), for a tool with its own options dataclass
    that shares some of these flags (ingest reads paths, not records; stats' -o is its report): declared once.

        @dataclass
        class IngestOptions:
            shard: str | None = io_option("shard")
    """
    f = next(f for f in dataclasses.fields(IOOptions) if f.name == name)
    return dataclasses.field(default=f.default, metadata=f.metadata)


@dataclass
class Context:
    """What a step sees of its run besides the records: counters, the slice, the seed, progress."""

    stats: Stats = field(default_factory=Stats)
    shard: ShardSpec | None = None
    seed: int = 0
    progress: Reporter = field(default_factory=NullReporter)
    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    shard_size: str | int | None = None  # the run's --shard-size, for a step's second output (None: the default)
    reopen: Callable[[], Iterable[Record]] | None = None  # the same input again, for a second pass; None: stdin


class Step(Protocol):
    """A records-in, records-out step (see the module docstring)."""

    name: str
    required: tuple[str, ...]

    def __call__(self, records: Iterable[Record], ctx: Context) -> Iterator[Record]: ...

    def manifest(self) -> dict: ...


def read(
    io: IOOptions, *, required: tuple[str, ...] = (), stats: Stats | None = None, whole: bool = False
) -> RecordReader:
    """A reader over `io.inputs` honouring --shard (unless `whole`), --skip-bad and --allow-partial."""
    text_fields = tuple(f for f in required if f == "text")  # a tool that needs text needs it as valid Unicode
    return RecordReader(
        io.inputs,
        shard=None if whole else io.shard_spec,
        skip_bad=io.skip_bad,
        required=required,
        str_fields=text_fields,
        stats=stats if stats is not None else Stats(),
        allow_partial=io.allow_partial,
    )


def limited(records: Iterable[Record], limit: int | None) -> Iterator[Record]:
    """The first `limit` records (all with None)."""
    it = iter(records)
    return it if limit is None else itertools.islice(it, limit)


def run(
    step: Step,
    io: IOOptions,
    *,
    progress: Callable[..., Any] | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> Stats:
    """Read, apply `step`, write; returns the counters (also written to the manifest).

    `progress(name, total=, stats=)` is a context manager yielding a reporter (the CLI passes its bar or log
    line; default: none). `on_record` sees every record written (e.g. for statistics)."""
    stats = Stats()
    whole = bool(getattr(step, "whole_input", False))
    # a whole-input step still gets a sharded reader: its tagged() reads every part and says which is ours
    reader = read(io, required=tuple(step.required), stats=stats)
    with RecordWriter(
        io.output,
        tool=step.name,
        shard_size=io.shard_size,
        shard=io.shard_spec,
        stats=stats,
        seed=io.seed,
        inputs=reader.inputs,
    ) as writer:
        records: Iterable[Record] = reader.tagged() if whole else reader
        records = limited(records, io.limit)

        def reopen() -> Iterable[Record]:
            stats.records_in = 0  # the counters are those of the last pass
            stats.skipped_bad.clear()
            again = read(io, required=tuple(step.required), stats=stats, whole=whole)
            return limited(again.tagged() if whole else again, io.limit)

        with (progress or _no_progress)(step.name, total=getattr(step, "total", None), stats=stats) as bar:
            ctx = Context(
                stats=stats,
                shard=io.shard_spec,
                seed=io.seed,
                progress=bar,
                inputs=reader.inputs,
                output=io.output,
                shard_size=io.shard_size,
                reopen=None if "-" in (reader.all_files if whole else reader.files) else reopen,
            )
            write = writer.write
            advance = bar.advance
            for rec in step(records, ctx):
                write(rec)
                if on_record is not None:
                    on_record(rec)
                advance()
        writer.manifest_extra.update(step.manifest())
    return stats


class _no_progress:
    def __init__(self, *a, **kw) -> None:
        pass

    def __enter__(self) -> Reporter:
        return NullReporter()

    def __exit__(self, *exc) -> None:
        return None


no_progress = _no_progress  # the default progress for a tool that writes its records itself (ingest, stats)


def replace(opts: Any, **changes: Any) -> Any:
    """A copy of an options dataclass with some fields changed (validated again)."""
    return dataclasses.replace(opts, **changes)


__all__ = ["IOOptions", "Context", "Step", "run", "read", "limited", "replace", "io_option", "no_progress"]
