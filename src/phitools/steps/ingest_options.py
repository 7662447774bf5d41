"""What `phitools ingest` reads: its options (`IngestOptions`, the command's flags), the --format choices, and
the path rules a walk of the inputs follows (directories skipped, include/exclude patterns). Shared by the
file walk (steps/ingest.py) and the parquet planner (steps/ingest_parquet.py)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from phitools.errors import UsageError
from phitools.options import check, option
from phitools.pipeline import io_option
from phitools.shards.spec import ShardSpec, parse_shard

# directories no walk of an input tree enters
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox", ".venv", "node_modules"}


def matches(rel: str, patterns: Sequence[str]) -> bool:
    """gitignore-like: a pattern matches the relative path at any depth, or the file name."""
    name = rel.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, "*/" + p.lstrip("/")) or fnmatch.fnmatch(name, p)
        for p in patterns
    )


FORMATS = ("auto", "files", "parquet")


def check_format(fmt: str) -> None:
    """--format is one of FORMATS."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


@dataclass
class IngestOptions:
    """What `phitools ingest` reads and how (the command's flags, one field each)."""

    paths: list[str] = option(
        argument=True,
        metavar="PATH",
        show_default=False,
        help="Files and directories to read; parquet files, folders of them, or hf://datasets/ORG/NAME/PATH.",
    )
    output: str | None = io_option("output")
    include: list[str] | None = option(
        None, "--include", help="Glob(s) on the relative path or name; replaces the default extension list."
    )
    exclude: list[str] | None = option(
        None, "--exclude", help="Glob(s) on the relative path or name to skip (e.g. '*/test/*')."
    )
    ext: list[str] | None = option(None, "--ext", help="Extensions to read (default: common code and text types).")
    max_bytes: int = option(1_000_000, "--max-bytes", help="Skip files (parquet: texts) larger than this many bytes.")
    dedup: bool = option(
        False,
        "--dedup/--no-dedup",
        help="Drop exact duplicates (same content hash), keeping the first. With --shard, files are split by size "
        "so copies meet in one part: the union of the parts equals the unsharded run (parquet: per part).",
    )
    format: str = option(
        "auto",
        "--format",
        metavar="auto|files|parquet",
        help="auto: parquet for *.parquet, hf:// and folders holding parquet, else files; files: every file is a "
        "record; parquet: every row is a record.",
    )
    text_field: str | None = option(
        None,
        "--text-field",
        show_default=False,
        help="parquet: the column holding the text (default: content, else text).",
    )
    id_field: str | None = option(
        None,
        "--id-field",
        show_default=False,
        help="parquet: the column holding the id (default: FILE:ROW, FILE relative to the root's parent).",
    )
    meta_fields: list[str] | None = option(
        None,
        "--meta-fields",
        metavar="A,B,...",
        show_default=False,
        help="parquet: columns copied into meta (e.g. max_stars_repo_path,lang,size,licenses); only these and the "
        "text/id columns are read.",
    )
    skip_bad: bool = option(
        False, "--skip-bad", help="parquet: count and skip a damaged row group instead of stopping."
    )
    shard: str | None = io_option("shard")
    shard_size: str = io_option("shard_size")
    seed: int = io_option("seed")
    limit: int | None = io_option("limit")

    def __post_init__(self) -> None:
        check(self)
        check_format(self.format)
        self.shard_spec: ShardSpec | None = parse_shard(self.shard)


__all__ = ["IngestOptions", "FORMATS", "SKIP_DIRS", "check_format", "matches"]
