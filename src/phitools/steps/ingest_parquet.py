"""ingest from parquet: every row a record {id, text, meta}, read row group by row group.

The Stack, StarCoderData and most Hub datasets ship as parquet. A row's text comes from --text-field
(default `content`, else `text`); its id from --id-field, else `<file relative to the root's parent>:<row>`
(stable: the same for any --shard split); meta holds the --meta-fields columns as they are (lists, structs
and nulls included). Only those columns are read.

`--shard K/N` splits by file when there are at least N files, else by row group, so the union of the N shards
is exactly the unsharded output.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

from phitools.errors import DataError, UsageError
from phitools.records import Record
from phitools.runtime.console import warn
from phitools.runtime.prefetch import prefetch
from phitools.runtime.progress import NullReporter, Reporter
from phitools.shards.manifest import Stats
from phitools.shards.parquet import (
    PARQUET_SUFFIX,
    CorruptRowGroup,
    ParquetInput,
    ParquetSource,
    column_values,
    is_url,
    list_remote,
)
from phitools.shards.spec import ShardSpec
from phitools.steps.ingest_options import SKIP_DIRS, check_format, matches

if TYPE_CHECKING:
    import pyarrow as pa

    from phitools.steps.ingest_options import IngestOptions

DEFAULT_TEXT_FIELDS = ("content", "text")


def _is_parquet(name: str) -> bool:
    return name.lower().endswith(PARQUET_SUFFIX)


def _local_parquet(root: Path) -> Iterator[Path]:
    """*.parquet under root in sorted order (hidden and tool folders skipped), or root itself."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for f in sorted(filenames):
            if _is_parquet(f) and not f.startswith("."):
                yield Path(dirpath) / f


def input_format(paths: Sequence[str], fmt: str = "auto") -> str:
    """'files' or 'parquet' for these inputs. auto: parquet for URLs, *.parquet files and folders holding any."""
    check_format(fmt)
    if fmt != "auto":
        if fmt == "files" and any(is_url(p) for p in paths):
            raise UsageError("--format files reads local files; URLs are read as parquet", hint="drop --format files")
        return fmt
    kinds = {}
    for raw in map(os.fspath, paths):
        p = Path(raw)
        if is_url(raw) or (p.is_file() and _is_parquet(p.name)):
            kinds[raw] = "parquet"
        elif p.is_dir():
            kinds[raw] = "parquet" if next(_local_parquet(p), None) is not None else "files"
        else:
            kinds[raw] = "files"  # the files reader reports a missing path
    if len(set(kinds.values())) > 1:
        pq_ = [k for k, v in kinds.items() if v == "parquet"]
        files = [k for k, v in kinds.items() if v == "files"]
        raise UsageError(
            f"ingest reads either parquet ({', '.join(pq_)}) or files ({', '.join(files)}) in one run",
            hint="run ingest once for each and combine the outputs with `phitools cat`; "
            "--format files reads every file in a folder that also holds parquet",
        )
    return next(iter(kinds.values()), "files")


def list_parquet(
    paths: Sequence[str], *, include: Sequence[str] = (), exclude: Sequence[str] = (), stats: Stats | None = None
) -> list[ParquetSource]:
    """The parquet files under paths, in a deterministic order; --include/--exclude match the relative path."""
    stats = stats if stats is not None else Stats()

    def keep(rel: str) -> bool:
        if include and not matches(rel, include):
            return False
        if exclude and matches(rel, exclude):
            stats.drop("excluded")
            return False
        return True

    out: list[ParquetSource] = []
    for raw in map(os.fspath, paths):
        if is_url(raw):
            out.extend(list_remote(raw, keep))
            continue
        root = Path(raw)
        if not root.exists():
            raise DataError("no such file or directory", source=str(raw), hint="check the path")
        base = root.parent
        for p in _local_parquet(root):
            rel = p.relative_to(base).as_posix()
            if keep(rel):
                out.append(ParquetSource(path=str(p), rel=rel, display=str(p)))
    return out


@dataclass
class Fields:
    """Which columns make a record: text (None: content, else text), id (None: file:row), meta."""

    text: str | None = None
    id: str | None = None
    meta: tuple[str, ...] = ()

    @staticmethod
    def parse_meta(values: Iterable[str] | None) -> tuple[str, ...]:
        """--meta-fields a,b --meta-fields c -> ('a', 'b', 'c'), order kept, duplicates dropped."""
        out: list[str] = []
        for v in values or ():
            for name in v.split(","):
                name = name.strip()
                if name and name not in out:
                    out.append(name)
        return tuple(out)

    def resolve(self, columns: Sequence[str], source: str) -> tuple[str, list[str]]:
        """(the text column, the columns to read) for a file with these columns; a one-line error otherwise."""
        have = set(columns)
        listing = ", ".join(columns) or "none"
        text = self.text
        if text is None:
            text = next((c for c in DEFAULT_TEXT_FIELDS if c in have), None)
            if text is None:
                raise UsageError(
                    f"{source}: no text column (looked for {' or '.join(DEFAULT_TEXT_FIELDS)}); its columns: {listing}",
                    hint="name the text column with --text-field",
                )
        elif text not in have:
            raise UsageError(
                f"{source}: no column {text!r} for --text-field; its columns: {listing}", hint="pick one of them"
            )
        for flag, names in (("--id-field", [self.id] if self.id else []), ("--meta-fields", list(self.meta))):
            missing = [n for n in names if n not in have]
            if missing:
                raise UsageError(
                    f"{source}: no column {missing[0]!r} for {flag}; its columns: {listing}", hint="pick among them"
                )
        wanted = [text] + [c for c in ([self.id] if self.id else []) + list(self.meta) if c != text]
        return text, list(dict.fromkeys(wanted))

    def describe(self) -> dict:
        return {"text_field": self.text or "content|text", "id_field": self.id, "meta_fields": list(self.meta)}


@dataclass
class Unit:
    """A piece of work: a file, and the row groups of it this shard reads (None: all)."""

    source: ParquetSource
    row_groups: list[int] | None = None


def plan(sources: list[ParquetSource], shard: ShardSpec | None) -> list[Unit]:
    """This shard's work: file i when there are at least N files (i mod N == K), else row group j over all files."""
    if not shard or shard.count == 1:
        return [Unit(s) for s in sources]
    if len(sources) >= shard.count:
        return [Unit(s) for i, s in enumerate(sources) if i % shard.count == shard.index]
    units, j = [], 0
    for s in sources:
        with ParquetInput(s) as f:
            n = f.num_row_groups
        mine = [g for g in range(n) if (j + g) % shard.count == shard.index]
        j += n
        if mine:
            units.append(Unit(s, mine))
    return units


def check_local(units: list[Unit], fields: Fields) -> int | None:
    """Open every local file's footer before any output: schema errors surface first. Returns the rows to
    read (None when some files are remote and their size is not known yet)."""
    total = 0
    for u in units:
        if u.source.fs is not None:
            return None
        with ParquetInput(u.source) as f:
            fields.resolve(f.columns, u.source.display)
            total += f.num_rows if u.row_groups is None else sum(f.group_rows[g] for g in u.row_groups)
    return total


def plan_parquet(opts: IngestOptions, stats: Stats) -> tuple[Fields, list[Unit], int | None, dict]:
    """This --shard part's parquet work for `opts`: (fields, units, rows to read or None, the manifest's
    `ingest` section). Every local file's schema is checked here, before any output."""
    spec = opts.shard_spec
    fields = Fields(text=opts.text_field, id=opts.id_field, meta=Fields.parse_meta(opts.meta_fields))
    sources = list_parquet(opts.paths, include=opts.include or (), exclude=opts.exclude or (), stats=stats)
    if not sources:
        raise DataError("no parquet files", source=", ".join(opts.paths), hint="check the path and --include/--exclude")
    units = plan(sources, spec)
    total_rows = check_local(units, fields)
    info = {
        "format": "parquet",
        **fields.describe(),
        "max_bytes": opts.max_bytes,
        "dedup": opts.dedup,
        "files_listed": len(sources),
        "files": len(units),
        "split": "row_group" if any(u.row_groups is not None for u in units) else "file",
    }
    if opts.dedup and spec and spec.count > 1:
        # rows are split by file or row group, so copies of a text may land in different parts
        warn(
            f"--dedup with --shard {spec}: exact duplicates are dropped within this part only (the parts' union may "
            "still hold copies; run ingest --dedup without --shard for the global answer)"
        )
        info["dedup_scope"] = f"per shard: part {spec} only"
    return fields, units, total_rows, info


def _textual(t: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _textual(t.value_type)
    return any(
        f(t)
        for f in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_string_view,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_binary_view,
        )
    )


def check_text_type(t: pa.DataType, name: str, source: str) -> None:
    """The text column must hold strings (or bytes, decoded as UTF-8)."""
    if not _textual(t):
        raise UsageError(f"{source}: column {name!r} is {t}, not text", hint="name a string column with --text-field")


def _texts(arr: pa.Array) -> list:
    """A batch's text column as str: None for null, False for bytes that are not UTF-8."""
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        try:
            return arr.to_pylist()
        except UnicodeDecodeError:  # a writer that did not validate UTF-8: decode row by row below
            arr = arr.cast(pa.large_binary())
    texts: list = []
    for b in arr.to_pylist():
        if b is None:
            texts.append(None)
            continue
        try:
            texts.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(False)
    return texts


def _too_large(text: str, max_bytes: int) -> bool:
    """UTF-8 size > max_bytes, encoding only texts whose length in characters leaves it in doubt."""
    n = len(text)
    if n > max_bytes:
        return True
    if 4 * n <= max_bytes:
        return False
    return len(text.encode("utf-8")) > max_bytes


def _decoded(
    f: ParquetInput, columns: list[str], groups: Sequence[int], text: str, id_name: str | None, meta: Sequence[str]
) -> Iterator[tuple[int, list, list | None, list]]:
    """(first row, texts, ids, meta columns) per batch: the Arrow side, run ahead in a thread."""
    for g in groups:
        for first, batch in f.batches(columns, g):
            ids = batch.column(id_name).to_pylist() if id_name else None
            yield first, _texts(batch.column(text)), ids, [column_values(batch.column(m)) for m in meta]


def ingest_parquet(
    units: Iterable[Unit],
    fields: Fields,
    *,
    max_bytes: int = 1_000_000,
    dedup: bool = False,
    skip_bad: bool = False,
    stats: Stats | None = None,
    progress: Reporter | None = None,
) -> Iterator[Record]:
    """Rows -> records. Null text, empty, oversized, non-UTF-8 and (with dedup) duplicate texts are counted and skipped;
    a damaged row group stops with an error naming file and row group, or with skip_bad is counted and skipped.

    Decoding (Arrow, which releases the GIL) runs a few batches ahead in a thread while this one builds and
    the caller writes records: faster than reading and writing in turn (benchmarks/parquet_ingest.py).
    """
    stats = stats if stats is not None else Stats()
    progress = progress if progress is not None else NullReporter()
    seen: set[bytes] = set()
    drop = stats.dropped
    meta_names = fields.meta
    id_name = fields.id
    for unit in units:
        src = unit.source
        with ParquetInput(src) as f:
            text_name, columns = fields.resolve(f.columns, src.display)
            check_text_type(f.schema.field(text_name).type, text_name, src.display)
            prefix = src.rel + ":"
            todo = list(unit.row_groups if unit.row_groups is not None else range(f.num_row_groups))
            while todo:
                try:
                    for first, texts, ids, metas in prefetch(
                        _decoded(f, columns, todo, text_name, id_name, meta_names), depth=2
                    ):
                        n = len(texts)
                        stats.records_in += n
                        rows = zip(
                            texts, ids if ids is not None else repeat(None), zip(*metas) if metas else repeat(())
                        )
                        for i, (text, rid, mv) in enumerate(rows):
                            if text is None:
                                drop["null_text"] += 1
                            elif text is False:
                                drop["not_utf8"] += 1
                            elif _too_large(text, max_bytes):
                                drop["too_large"] += 1
                            elif not text or text.isspace():
                                drop["empty"] += 1
                            else:
                                if dedup:
                                    h = hashlib.sha1(text.encode("utf-8")).digest()
                                    if h in seen:
                                        drop["duplicate"] += 1
                                        continue
                                    seen.add(h)
                                yield {
                                    "id": prefix + str(first + i) if rid is None else str(rid),
                                    "text": text,
                                    "meta": dict(zip(meta_names, mv)),
                                }
                        progress.advance(n)
                    todo = []
                except CorruptRowGroup as e:
                    if not skip_bad:
                        raise
                    stats.skipped_bad["corrupt_row_group"] += 1
                    todo = todo[todo.index(e.group) + 1 :]
