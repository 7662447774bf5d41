"""ingest: files and directories -> records {id, text, meta: {path, bytes, lang}}; parquet rows -> records
(steps/ingest_parquet.py). `IngestOptions` are the command's options, `Ingest` the records it makes and its
manifest entries, `ingest(opts)` the whole command (read, write opts.output, manifest):

    from phitools.steps.ingest import Ingest, IngestOptions, ingest
    source = Ingest(IngestOptions(paths=["src/"], dedup=True))
    for rec in source.records(): ...
    source.stats, source.manifest()                       # counters, {"ingest": {...}}
    ingest(IngestOptions(paths=["src/"], output="corpus/"))  # what `phitools ingest src/ -o corpus/` does
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from phitools.errors import DataError, UsageError
from phitools.pipeline import no_progress
from phitools.records import Record
from phitools.runtime.progress import NullReporter, Reporter
from phitools.shards import RecordWriter
from phitools.shards.manifest import Stats
from phitools.shards.spec import ShardSpec
from phitools.steps.ingest_options import SKIP_DIRS, IngestOptions, matches

# extension -> language; the default set of text/code files ingest picks up
LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".pyx": "cython",
    ".ipynb": "jupyter",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cxx": "cpp",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".swift": "swift",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".jsx": "javascript",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".hs": "haskell",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".html": "html",
    ".css": "css",
    ".md": "markdown",
    ".rst": "restructuredtext",
    ".txt": "text",
    ".tex": "latex",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".cfg": "ini",
    ".ini": "ini",
}
_SNIFF = 8192


def _walk(root: Path) -> Iterator[Path]:
    """Files under root in a deterministic (sorted) order; directory symlinks are not followed."""
    if not root.is_dir():  # a file, or a special file named directly (counted and skipped later)
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for f in sorted(filenames):
            yield Path(dirpath) / f


def list_files(
    paths: Sequence[str | os.PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extensions: Sequence[str] | None = None,
    stats: Stats | None = None,
) -> list[tuple[Path, str]]:
    """The files ingest would read, as (path, id) pairs, in a deterministic order.

    The id is the path relative to the given root, prefixed by the root's own name.
    """
    stats = stats if stats is not None else Stats()
    exts = {e if e.startswith(".") else "." + e for e in extensions} if extensions else set(LANGUAGES)
    out: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise DataError("no such file or directory", source=str(raw), hint="check the path")
        base = root.parent if root.is_dir() else root.parent
        for p in _walk(root):
            rel = p.relative_to(base).as_posix()
            if include:
                if not matches(rel, include):
                    continue
            elif p.suffix.lower() not in exts:
                continue
            if exclude and matches(rel, exclude):
                stats.drop("excluded")
                continue
            out.append((p, rel))
    return out


def ingest_files(
    files: Iterable[tuple[Path, str]],
    *,
    max_bytes: int = 1_000_000,
    dedup: bool = False,
    stats: Stats | None = None,
) -> Iterator[Record]:
    """Read files into records; special (FIFOs, devices), binary, non-UTF-8, empty, oversized and (with dedup) duplicate
    files are counted and skipped."""
    stats = stats if stats is not None else Stats()
    seen: set[bytes] = set()
    for path, rel in files:
        data = _read_regular(path, max_bytes)
        if isinstance(data, str):
            stats.drop(data)
            continue
        stats.records_in += 1
        if not data.strip():
            stats.drop("empty")
            continue
        if b"\x00" in data[:_SNIFF]:
            stats.drop("binary")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            stats.drop("not_utf8")
            continue
        if dedup:
            h = hashlib.sha1(data).digest()
            if h in seen:
                stats.drop("duplicate")
                continue
            seen.add(h)
        yield {
            "id": rel,
            "text": text,
            "meta": {"path": str(path), "bytes": len(data), "lang": LANGUAGES.get(path.suffix.lower(), "text")},
        }


def _read_regular(path: Path, max_bytes: int) -> bytes | str:
    """The bytes of a regular file of at most max_bytes, or why not: special_file (FIFO, device, socket, also
    through a symlink: a FIFO would block forever, /dev/zero never ends), too_large, unreadable."""
    try:
        st = os.stat(path)  # follows symlinks: what would be read
    except OSError:
        return "unreadable"
    if not stat.S_ISREG(st.st_mode):
        return "special_file"
    if st.st_size > max_bytes:
        return "too_large"
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return "unreadable"
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "special_file"
            data = f.read(max_bytes + 1)  # bounded even if the file grows while it is read
        except OSError:
            return "unreadable"
    return "too_large" if len(data) > max_bytes else data


def select_shard(files: list, shard: ShardSpec | None, *, by_size: bool = False) -> list:
    """File i goes to process i mod N; with `by_size`, a file goes to the process its size hashes to.

    By size is what `--dedup` needs: identical files have identical sizes, so every copy lands in the same
    process, which keeps the first copy in input order exactly as an unsharded run does (the union of the N
    outputs equals the unsharded output). Files that cannot be stat'ed go by index; they are skipped anyway.
    """
    if not shard or shard.count == 1:
        return files
    if not by_size:
        return [f for i, f in enumerate(files) if i % shard.count == shard.index]
    out = []
    for i, f in enumerate(files):
        try:
            key = int.from_bytes(hashlib.blake2b(str(os.stat(f[0]).st_size).encode(), digest_size=8).digest(), "little")
        except OSError:
            key = i
        if key % shard.count == shard.index:
            out.append(f)
    return out


# ---- the command: options, the records it makes, and the run ---------------------------------------------
class Ingest:
    """The records `phitools ingest` makes from `opts.paths`, its counters (`stats`) and its manifest entries.

    Building it finds the inputs and checks them (no such path, no matching files, parquet columns that do not
    exist, flags that do not apply to these inputs): every such error comes before any output is opened.
    `records()` then reads this --shard part, stopping after --limit records. `total` and `unit` size a
    progress bar (files, or parquet rows when known).
    """

    name = "ingest"

    def __init__(self, opts: IngestOptions, *, stats: Stats | None = None) -> None:
        from phitools.steps.ingest_parquet import input_format  # pyarrow only for parquet inputs

        self.opts = opts
        self.stats = stats if stats is not None else Stats()
        self.format = input_format(opts.paths, opts.format)
        self.total: int | None = None
        self.unit = "files"
        self.inputs: list[str] = list(opts.paths)
        if self.format == "parquet":
            self._plan_parquet()
        else:
            self._plan_files()

    def _plan_files(self) -> None:
        opts, spec = self.opts, self.opts.shard_spec
        given = [
            flag
            for flag, v in (
                ("--text-field", opts.text_field),
                ("--id-field", opts.id_field),
                ("--meta-fields", opts.meta_fields),
                ("--skip-bad", opts.skip_bad),
            )
            if v
        ]
        if given:
            raise UsageError(
                f"{given[0]} applies to parquet inputs, and {', '.join(opts.paths)} holds none",
                hint="point at *.parquet files or a folder of them (or pass --format parquet)",
            )
        # with --dedup, copies of a file must meet in one process: split by file size (identical files, same size)
        by_size = bool(opts.dedup and spec and spec.count > 1)
        listed = list_files(
            opts.paths, include=opts.include or (), exclude=opts.exclude or (), extensions=opts.ext, stats=self.stats
        )
        self.files = select_shard(listed, spec, by_size=by_size)
        if not self.files and not spec:
            raise DataError(
                "no matching files", source=", ".join(opts.paths), hint="check the path and --include/--ext"
            )
        self.total = len(self.files)
        self.info: dict[str, Any] = {
            "format": "files",
            "max_bytes": opts.max_bytes,
            "dedup": opts.dedup,
            "files_listed": len(self.files),
        }
        if spec and spec.count > 1:
            self.info["shard_by"] = (
                "file size (copies meet in one part: the union equals the unsharded run)" if by_size else "file index"
            )

    def _plan_parquet(self) -> None:
        from phitools.steps.ingest_parquet import plan_parquet

        if self.opts.ext:
            raise UsageError(
                "--ext chooses files by extension; these inputs are parquet",
                hint="use --include/--exclude to pick parquet files",
            )
        self.fields, self.units, self.total, self.info = plan_parquet(self.opts, self.stats)
        self.unit = "rows"
        if self.opts.shard_spec:
            self.inputs = [u.source.display for u in self.units]

    def records(self, progress: Reporter | None = None) -> Iterator[Record]:
        """The records, in order (the first --limit of them); `progress` advances per file or parquet row."""
        opts = self.opts
        bar = progress if progress is not None else NullReporter()
        if self.format == "parquet":
            from phitools.steps.ingest_parquet import ingest_parquet

            recs = ingest_parquet(
                self.units,
                self.fields,
                max_bytes=opts.max_bytes,
                dedup=opts.dedup,
                skip_bad=opts.skip_bad,
                stats=self.stats,
                progress=bar,
            )
        else:

            def counted(items: Iterable[tuple[Path, str]]) -> Iterator[tuple[Path, str]]:
                for item in items:
                    yield item
                    bar.advance()

            recs = ingest_files(counted(self.files), max_bytes=opts.max_bytes, dedup=opts.dedup, stats=self.stats)
        return recs if opts.limit is None else itertools.islice(recs, opts.limit)

    def manifest(self) -> dict:
        """The manifest's `ingest` section: format, limits, dedup, files listed, how --shard split the work."""
        return {"ingest": self.info}


def ingest(opts: IngestOptions, *, progress: Callable[..., Any] | None = None) -> Stats:
    """What `phitools ingest` does: read `opts.paths`, write `opts.output` (stdout when None; a directory gets
    rolling shards) with its manifest. Returns the counters. `progress` is as for `pipeline.run`."""
    source = Ingest(opts)
    with RecordWriter(
        opts.output,
        tool="ingest",
        shard_size=opts.shard_size,
        shard=opts.shard_spec,
        stats=source.stats,
        seed=opts.seed,
        inputs=source.inputs,
        manifest_extra=source.manifest(),
    ) as w:
        with (progress or no_progress)("ingest", total=source.total, unit=source.unit, stats=source.stats) as bar:
            write = w.write
            for rec in source.records(bar):
                write(rec)
    return source.stats
