"""Who is writing here: temporary names that carry their writer, proof that a temp file is stale, and locks.

Every file a writer creates starts under a hidden temporary name

    .<final name>.tmp-<host>-<pidns>-<pid>

(`pidns` is the inode of the writer's pid namespace, 0 where there is none), so a later writer can tell whose
it is. A temp file is *provably stale* only when it was written on this host, in this pid namespace, by a pid
that no longer runs: a file from another node (or another container) never looks dead, because there is no
way to see that node's processes from here.

Locks are `flock` locks on small hidden files (`.lock…`), removed by their holder when it is done. The kernel
drops a lock when its holder dies (kill -9 included), so a lock file left by a killed process is simply taken
over by the next writer; on NFS, Linux maps `flock` onto POSIX byte-range locks, which lockd shares between
nodes. On a file system without locks (some Lustre mounts) the writer
warns once and carries on unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from phitools.errors import BusyError, UsageError

_TMP_RE = re.compile(r"^\.(?P<final>.+)\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<ns>\d+)-(?P<pid>\d+)$")
_LEGACY_TMP_RE = re.compile(r"^\.(?P<final>.+)\.tmp-(?P<pid>\d+)$")  # before host and namespace were recorded
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
_held: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) of lock files this process holds -> what for
_warned_unlocked = False


def hostname() -> str:
    """This host's name as it goes into temp names (letters, digits, '_' and '.')."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "localhost")[:64] or "localhost"


def pid_namespace() -> int:
    """Inode of this process's pid namespace (0 where /proc/self/ns/pid does not exist)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner_tag() -> str:
    """`<host>-<pidns>-<pid>`: who this process is, as written into its temp names."""
    return f"{hostname()}-{pid_namespace()}-{os.getpid()}"


def tmp_path(final: str | os.PathLike) -> Path:
    """The temporary name this process writes `final` under (same directory, hidden)."""
    p = Path(final)
    return p.with_name(f".{p.name}.tmp-{owner_tag()}")


@dataclass(frozen=True)
class TempFile:
    """A parsed temporary name."""

    path: Path
    final: str
    host: str | None  # None: a legacy name without host (pid only)
    pidns: int | None
    pid: int

    def mine(self) -> bool:
        return self.host == hostname() and self.pidns == pid_namespace() and self.pid == os.getpid()

    def stale(self) -> bool:
        """True only when provably dead: this host, this pid namespace, and no process with that pid."""
        if self.host != hostname() or self.pidns != pid_namespace() or self.pid == os.getpid():
            return False
        return not _pid_alive(self.pid)


def parse_tmp(path: str | os.PathLike) -> TempFile | None:
    """Parse a temp name written by a phitools writer (None for anything else)."""
    p = Path(path)
    m = _TMP_RE.match(p.name)
    if m:
        return TempFile(p, m["final"], m["host"], int(m["ns"]), int(m["pid"]))
    m = _LEGACY_TMP_RE.match(p.name)
    if m:
        return TempFile(p, m["final"], None, None, int(m["pid"]))
    return None


def temp_files(directory: str | os.PathLike) -> list[TempFile]:
    """Every phitools temp file directly in `directory`, sorted by name."""
    d = Path(directory)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    return [t for t in (parse_tmp(d / n) for n in names if n.startswith(".")) if t is not None]


def remove_stale_temps(directory: str | os.PathLike, finals: re.Pattern) -> list[Path]:
    """Remove temp files whose final name matches `finals` and that are provably stale; returns what went."""
    gone = []
    for t in temp_files(directory):
        if finals.match(t.final) and t.stale():
            try:
                if t.path.is_dir() and not t.path.is_symlink():
                    shutil.rmtree(t.path)
                else:
                    t.path.unlink()
            except FileNotFoundError:
                continue
            gone.append(t.path)
    return gone


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Lock:
    """An exclusive lock on `path` (created if needed), held until `release()`.

    Without `wait`, raises BusyError naming the holder when another process holds it, and UsageError when this
    process does, for another purpose (on NFS flock becomes a POSIX lock, which does not exclude its own process).
    """

    def __init__(self, path: str | os.PathLike, *, what: str, wait: bool = False):
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None
        self.key: tuple[int, int] | None = None
        while self.fd is None:
            self._acquire(wait)

    def _acquire(self, wait: bool) -> None:
        global _warned_unlocked
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        locked = False
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key in _held:
                raise UsageError(
                    f"{self.what}: this command already writes there (as {_held[key]})",
                    hint="give each output its own path",
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                locked = True
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) and not wait:
                    holder = _read_holder(fd)
                    raise BusyError(
                        f"{self.what}: another phitools process is writing it now{holder}",
                        hint="wait for it to finish, or write to another -o; a killed process "
                        "releases its lock by itself",
                    ) from None
                if e.errno not in _UNSUPPORTED:
                    raise
                if not _warned_unlocked:
                    from phitools.runtime.console import warn

                    warn(
                        f"{self.path.parent}: file locks are not supported here; concurrent writers into one "
                        "output are not detected"
                    )
                    _warned_unlocked = True
            if locked:
                # the holder before us removes the file when it releases: a lock on a removed file is no lock
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != key:
                    os.close(fd)
                    return  # try again on the file that is there now
                os.ftruncate(fd, 0)
                os.write(fd, f"{hostname()} {os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.key = fd, key
        _held[key] = self.what

    def release(self) -> None:
        """Drop the lock and remove its file (still holding it, so no one can be waiting on the removed file)."""
        if self.fd is None:
            return
        _held.pop(self.key, None)  # type: ignore[arg-type]
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        try:
            os.close(self.fd)  # closing drops the flock
        finally:
            self.fd = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    if len(text) >= 2:
        return f" (pid {text[1]} on {text[0]})"
    return ""


def lock_held(path: str | os.PathLike) -> bool:
    """Whether some process holds the lock at `path` now (False when it does not exist or cannot be tested)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in _held:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with a writer's exclusive lock only
        except OSError as e:
            return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
