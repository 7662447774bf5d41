"""`phitools ingest`: files and directories -> records."""

from __future__ import annotations

import itertools
from typing import List, Optional

import typer
from typing_extensions import Annotated

from phitools.cli.common import Limit, Output, Quiet, Seed, Shard, ShardSize, handle_errors, setup
from phitools.errors import DataError
from phitools.runtime.console import progress
from phitools.shards import RecordWriter, Stats, parse_shard
from phitools.steps.ingest import ingest_files, list_files, select_shard


@handle_errors("ingest")
def ingest(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", help="Files and directories to read.", show_default=False)],
    output: Output = None,
    include: Annotated[Optional[List[str]], typer.Option("--include", help="Glob(s) on the relative path or name; replaces the default extension list.")] = None,
    exclude: Annotated[Optional[List[str]], typer.Option("--exclude", help="Glob(s) on the relative path or name to skip (e.g. '*/test/*').")] = None,
    ext: Annotated[Optional[List[str]], typer.Option("--ext", help="Extensions to read (default: common code and text types).")] = None,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Skip files larger than this many bytes.")] = 1_000_000,
    dedup: Annotated[bool, typer.Option("--dedup/--no-dedup", help="Drop exact duplicates (same content hash), keeping the first. With --shard, files are split by size so copies meet in one part: the union of the parts equals the unsharded run.")] = False,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
) -> None:
    """Read files and directories into records {id, text, meta: {path, bytes, lang}}.

    Binary, non-UTF-8, empty and oversized files are skipped and counted in the manifest.

    Example (the embedded default corpus: the running Python's standard library):

        STDLIB=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/
    """
    setup(quiet)
    stats = Stats()
    spec = parse_shard(shard)
    # with --dedup, copies of a file must meet in one process: split by file size (identical files, same size)
    by_size = bool(dedup and spec and spec.count > 1)
    files = select_shard(list_files(paths, include=include or (), exclude=exclude or (), extensions=ext, stats=stats), spec,
                         by_size=by_size)
    if not files and not spec:
        raise DataError("no matching files", source=", ".join(paths), hint="check the path and --include/--ext")
    info = {"max_bytes": max_bytes, "dedup": dedup, "files_listed": len(files)}
    if spec and spec.count > 1:
        info["shard_by"] = "file size (copies meet in one part: the union equals the unsharded run)" if by_size else "file index"
    with RecordWriter(output, tool="ingest", shard_size=shard_size, shard=spec, stats=stats, seed=seed, inputs=list(paths),
                      manifest_extra={"ingest": info}) as w:
        recs = ingest_files(files, max_bytes=max_bytes, dedup=dedup, stats=stats)
        if limit is not None:
            recs = itertools.islice(recs, limit)
        with progress("ingest", total=len(files), unit="files") as bar:
            for rec in recs:
                w.write(rec)
                bar.advance()


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
