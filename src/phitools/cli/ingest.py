"""`phitools ingest`: files and directories -> records."""

from __future__ import annotations

import typer

from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.steps.ingest import IngestOptions
from phitools.steps.ingest import ingest as run_ingest


@command("ingest")
def ingest(opts: IngestOptions, run: RunOptions) -> None:
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
    """  # noqa: E501 - an example command line reads best unbroken
    run_ingest(opts, progress=console.progress)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
