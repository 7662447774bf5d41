"""Files written whole or not at all, file digests, and phitools' cache directory: one helper per concern.

- `atomic_write(path, data)` / `atomic_file(path)`: a temporary file beside `path` (named after this process
  and host, see shards/ownership.py), fsync'ed, renamed over `path`; on error the temporary file is removed and
  `path` is as it was.
- `atomic_dir(path)`: a temporary directory beside `path` that becomes `path` when the block finishes (an
  atomic exchange when it replaces one, on Linux), so a crash never leaves a directory that looks whole.
- `file_digest(path)` / `sha256_file(path)`: sha256 (and size) of a file, streamed.
- `cache_dir(*parts)`: `$XDG_CACHE_HOME/phitools/...` (default `~/.cache/phitools/...`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from phitools.errors import PhitoolsError

_CHUNK = 1 << 20


def _tmp_name(path: Path) -> Path:
    host = socket.gethostname().replace("/", "_").replace("-", "_")[:40]
    return path.with_name(f".{path.name}.tmp-{host}-{os.getpid()}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable (best effort: not every filesystem lets a directory be fsync'ed)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, *, tmp: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` when the block ends without error (fsync'ed first).

    `tmp` names the temporary file (default: `.NAME.tmp-HOST-PID` beside `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes, *, tmp: Path | None = None) -> dict:
    """Write `data` to `path` whole or not at all; returns {bytes, sha256} of what was written."""
    with atomic_file(path, tmp=tmp) as f:
        f.write(data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    replace: bool = False,
    may_replace: Callable[[Path], bool] | None = None,
    error: type[PhitoolsError] = PhitoolsError,
    what: str = "directory",
) -> Iterator[Path]:
    """Yield a fresh temp dir beside `path`; on success it becomes `path`, on error it is removed.

    replace: an existing `path` is swapped out (atomically on Linux) and deleted, but only if
    `may_replace(path)` says it is safe (e.g. it is a checkpoint); otherwise `error` is raised.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not replace:
            raise error(f"{path} already exists", hint="choose another output or pass --overwrite")
        if not path.is_dir() or (may_replace is not None and not may_replace(path)):
            raise error(
                f"{path} exists and is not a plain {what} (other files in it would be lost); refusing to replace it",
                hint="choose another output",
            )
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        yield tmp
        fsync_dir(tmp)
        if path.exists():
            if _exchange(tmp, path):
                shutil.rmtree(tmp)  # tmp now holds the old directory
            else:  # portable fallback: a crash between the two renames leaves both dirs under hidden names
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
                os.rmdir(old)
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digest(path: str | os.PathLike, chunk: int = _CHUNK) -> dict:
    """{bytes, sha256} of a file, streamed."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
            n += len(b)
    return {"bytes": n, "sha256": h.hexdigest()}


def sha256_file(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    """sha256 hex digest of a file, streamed."""
    return file_digest(path, chunk)["sha256"]


def cache_dir(*parts: str) -> Path:
    """phitools' user cache: `$XDG_CACHE_HOME/phitools/PARTS` (default `~/.cache/phitools/PARTS`); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "phitools", *parts)


__all__ = ["atomic_file", "atomic_write", "atomic_dir", "file_digest", "sha256_file", "cache_dir", "fsync_dir"]
