"""`phitools ingest`: files and directories -> records."""

from __future__ import annotations

import itertools
from typing import Annotated

import typer

from phitools.cli.common import Limit, Output, ProgressEvery, Quiet, Seed, Shard, ShardSize, handle_errors, setup
from phitools.errors import DataError, UsageError
from phitools.runtime.console import progress, warn
from phitools.shards import RecordWriter, Stats, parse_shard
from phitools.steps.ingest import ingest_files, list_files, select_shard


@handle_errors("ingest")
def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Files and directories to read; parquet files, folders of them, or hf://datasets/ORG/NAME/PATH.",
            show_default=False,
        ),
    ],
    output: Output = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Glob(s) on the relative path or name; replaces the default extension list."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Glob(s) on the relative path or name to skip (e.g. '*/test/*')."),
    ] = None,
    ext: Annotated[
        list[str] | None, typer.Option("--ext", help="Extensions to read (default: common code and text types).")
    ] = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Skip files (parquet: texts) larger than this many bytes.")
    ] = 1_000_000,
    dedup: Annotated[
        bool,
        typer.Option(
            "--dedup/--no-dedup",
            help="Drop exact duplicates (same content hash), keeping the first. With --shard, files are split by size so copies meet in one part: the union of the parts equals the unsharded run (parquet: per part).",
        ),
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="auto|files|parquet",
            help="auto: parquet for *.parquet, hf:// and folders holding parquet, else files; files: every file is a record; parquet: every row is a record.",
        ),
    ] = "auto",
    text_field: Annotated[
        str | None,
        typer.Option(
            "--text-field",
            help="parquet: the column holding the text (default: content, else text).",
            show_default=False,
        ),
    ] = None,
    id_field: Annotated[
        str | None,
        typer.Option(
            "--id-field",
            help="parquet: the column holding the id (default: FILE:ROW, FILE relative to the root's parent).",
            show_default=False,
        ),
    ] = None,
    meta_fields: Annotated[
        list[str] | None,
        typer.Option(
            "--meta-fields",
            metavar="A,B,...",
            help="parquet: columns copied into meta (e.g. max_stars_repo_path,lang,size,licenses); only these and the text/id columns are read.",
            show_default=False,
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="parquet: count and skip a damaged row group instead of stopping.")
    ] = False,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Read files and directories into records {id, text, meta: {path, bytes, lang}}, or parquet rows into
    records {id, text, meta: {--meta-fields}}.

    Binary, non-UTF-8, empty and oversized files are skipped and counted in the manifest. Parquet (The Stack,
    StarCoderData, most Hub datasets) is streamed row group by row group, reading only the columns named;
    null, empty and oversized texts are skipped and counted. --shard K/N splits parquet by file, or by row
    group when there are fewer than N files.

    Examples (the embedded default corpus: the running Python's standard library; The Stack):

        STDLIB=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/
        phitools ingest stack/ --text-field content --meta-fields max_stars_repo_path,lang -o corpus/
        phitools ingest hf://datasets/bigcode/the-stack-dedup/data/python --meta-fields max_stars_repo_path --shard 0/64 -o corpus/
    """
    setup(quiet, progress_every)
    from phitools.steps.ingest_parquet import Fields, input_format  # pyarrow: imported only by ingest

    stats = Stats()
    spec = parse_shard(shard)
    mode = input_format(paths, fmt)
    if mode == "parquet":
        if ext:
            raise UsageError(
                "--ext chooses files by extension; these inputs are parquet",
                hint="use --include/--exclude to pick parquet files",
            )
        _ingest_parquet(
            paths,
            output=output,
            include=include or (),
            exclude=exclude or (),
            max_bytes=max_bytes,
            dedup=dedup,
            fields=Fields(text=text_field, id=id_field, meta=Fields.parse_meta(meta_fields)),
            skip_bad=skip_bad,
            spec=spec,
            stats=stats,
            shard_size=shard_size,
            seed=seed,
            limit=limit,
        )
        return
    given = [
        flag
        for flag, v in (
            ("--text-field", text_field),
            ("--id-field", id_field),
            ("--meta-fields", meta_fields),
            ("--skip-bad", skip_bad),
        )
        if v
    ]
    if given:
        raise UsageError(
            f"{given[0]} applies to parquet inputs, and {', '.join(paths)} holds none",
            hint="point at *.parquet files or a folder of them (or pass --format parquet)",
        )
    # with --dedup, copies of a file must meet in one process: split by file size (identical files, same size)
    by_size = bool(dedup and spec and spec.count > 1)
    files = select_shard(
        list_files(paths, include=include or (), exclude=exclude or (), extensions=ext, stats=stats),
        spec,
        by_size=by_size,
    )
    if not files and not spec:
        raise DataError("no matching files", source=", ".join(paths), hint="check the path and --include/--ext")
    info = {"format": "files", "max_bytes": max_bytes, "dedup": dedup, "files_listed": len(files)}
    if spec and spec.count > 1:
        info["shard_by"] = (
            "file size (copies meet in one part: the union equals the unsharded run)" if by_size else "file index"
        )
    with RecordWriter(
        output,
        tool="ingest",
        shard_size=shard_size,
        shard=spec,
        stats=stats,
        seed=seed,
        inputs=list(paths),
        manifest_extra={"ingest": info},
    ) as w:
        with progress("ingest", total=len(files), unit="files", stats=stats) as bar:

            def counted(items):
                for item in items:
                    yield item
                    bar.advance()

            recs = ingest_files(counted(files), max_bytes=max_bytes, dedup=dedup, stats=stats)
            if limit is not None:
                recs = itertools.islice(recs, limit)
            for rec in recs:
                w.write(rec)


def _ingest_parquet(
    paths, *, output, include, exclude, max_bytes, dedup, fields, skip_bad, spec, stats, shard_size, seed, limit
) -> None:
    from phitools.steps.ingest_parquet import check_local, ingest_parquet, list_parquet, plan

    sources = list_parquet(paths, include=include, exclude=exclude, stats=stats)
    if not sources:
        raise DataError("no parquet files", source=", ".join(paths), hint="check the path and --include/--exclude")
    units = plan(sources, spec)
    total_rows = check_local(units, fields)
    info = {
        "format": "parquet",
        **fields.describe(),
        "max_bytes": max_bytes,
        "dedup": dedup,
        "files_listed": len(sources),
        "files": len(units),
        "split": "row_group" if any(u.row_groups is not None for u in units) else "file",
    }
    if dedup and spec and spec.count > 1:
        # rows are split by file or row group, so copies of a text may land in different parts
        warn(
            f"--dedup with --shard {spec}: exact duplicates are dropped within this part only (the parts' union may "
            "still hold copies; run ingest --dedup without --shard for the global answer)"
        )
        info["dedup_scope"] = f"per shard: part {spec} only"
    inputs = [u.source.display for u in units] if spec else list(paths)
    with RecordWriter(
        output,
        tool="ingest",
        shard_size=shard_size,
        shard=spec,
        stats=stats,
        seed=seed,
        inputs=inputs,
        manifest_extra={"ingest": info},
    ) as w:
        with progress("ingest", total=total_rows, unit="rows", stats=stats) as bar:
            recs = ingest_parquet(
                units, fields, max_bytes=max_bytes, dedup=dedup, skip_bad=skip_bad, stats=stats, progress=bar
            )
            if limit is not None:
                recs = itertools.islice(recs, limit)
            write = w.write
            for rec in recs:
                write(rec)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
