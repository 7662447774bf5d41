"""ingest: files and directories -> records {id, text, meta: {path, bytes, lang}}."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from phitools.errors import DataError
from phitools.records import Record
from phitools.shards.manifest import Stats
from phitools.shards.spec import ShardSpec

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
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox", ".venv", "node_modules"}
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


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    """gitignore-like: a pattern matches the relative path at any depth, or the file name."""
    name = rel.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, "*/" + p.lstrip("/")) or fnmatch.fnmatch(name, p)
        for p in patterns
    )


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
                if not _matches(rel, include):
                    continue
            elif p.suffix.lower() not in exts:
                continue
            if exclude and _matches(rel, exclude):
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
