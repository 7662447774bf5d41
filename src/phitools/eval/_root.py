"""The sandbox's filesystem: a read-only root holding only the system and Python directories. Stdlib only.

Built once by the zygote, in its own mount namespace, then entered with pivot_root. Python's directories
(the interpreter, the standard library, the virtual environment) are bound wherever they are — /usr, $HOME,
/opt, or /tmp (CI runners put checkouts and virtual environments there): every source is opened before
anything is mounted over it, and bound through that handle. Each check later gets a fresh /tmp (see
_candidate.fresh_tmp), and the Python directories that live under /tmp are bound again inside it.
"""

from __future__ import annotations

import os
import sys

from phitools.eval import _linux as lx

STAGE = "/tmp/phitools-root"
# Directories the root never takes from the host: made fresh below, or none of a candidate's business.
_NEVER = ("proc", "dev", "run", "sys")

_ST_TO_MS = (
    (1, lx.MS_RDONLY),
    (2, lx.MS_NOSUID),
    (4, lx.MS_NODEV),
    (8, lx.MS_NOEXEC),
    (1024, 1024),
    (2048, 2048),
    (4096, 1 << 21),
)


def _mount_flags(path: str) -> int:
    """The per-mount flags of the mount holding `path` (a read-only remount must keep locked ones)."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def bind_sources() -> list[str]:
    """The host directories the sandbox root shows (read-only): the system's, and Python's wherever they are."""
    srcs = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
    for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]:
        if p and os.path.isdir(p):
            srcs.append(os.path.realpath(p))
    out: list[str] = []
    for s in srcs:
        if not os.path.lexists(s) or s in ("/", "/tmp") or s.split("/")[1] in _NEVER:
            continue
        if any(s == o or s.startswith(o.rstrip("/") + "/") for o in out):
            continue
        out = [o for o in out if not o.startswith(s.rstrip("/") + "/")]
        out.append(s)
    return out


def _bind_ro(src: str, dst: str, flags_of: str) -> None:
    lx.mount(src, dst, None, lx.MS_BIND | lx.MS_REC)
    lx.mount(
        None, dst, None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV | _mount_flags(flags_of)
    )


def under_tmp(sources: list[str]) -> list[str]:
    """The bound directories that live under /tmp."""
    return [s for s in sources if s.startswith("/tmp/") and os.path.isdir(s) and not os.path.islink(s)]


def build(hide: list[str]) -> list[str]:
    """Build the root and pivot into it (the caller is alone in a private mount namespace). Returns the bound
    directories that live under /tmp (each check's fresh /tmp must show them again)."""
    lx.mount(None, "/", None, lx.MS_REC | lx.MS_PRIVATE)
    sources = bind_sources()
    # Open every source before /tmp is covered by the staging area: bound through /proc/self/fd, a source
    # under /tmp stays reachable.
    handles = {}
    for src in sources:
        if os.path.isdir(src) and not os.path.islink(src):
            handles[src] = os.open(src, os.O_PATH | os.O_DIRECTORY)
    hidden = {}
    for h in hide:
        real = os.path.realpath(h)
        if os.path.lexists(real):
            hidden[real] = os.path.isdir(real)
    lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, "size=1m,mode=755")
    new = STAGE
    os.mkdir(new, 0o755)
    lx.mount("tmpfs", new, "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, "size=4m,mode=755")
    for src in sources:
        dst = new + src
        if os.path.islink(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
            continue
        if src not in handles:
            continue
        os.makedirs(dst, exist_ok=True)
        via = f"/proc/self/fd/{handles[src]}"
        _bind_ro(via, dst, via)
    for fd in handles.values():
        os.close(fd)
    os.makedirs(new + "/dev", exist_ok=True)
    lx.mount("tmpfs", new + "/dev", "tmpfs", lx.MS_NOSUID, "size=64k,mode=755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + dev):
            open(new + "/dev/" + dev, "w").close()
            lx.mount("/dev/" + dev, new + "/dev/" + dev, None, lx.MS_BIND)
    os.symlink("/tmp", new + "/dev/shm")  # POSIX shared memory lands in the check's private /tmp
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, new + "/dev/" + name)
    os.makedirs(new + "/proc", exist_ok=True)
    lx.mount("/proc", new + "/proc", None, lx.MS_BIND | lx.MS_REC)
    os.makedirs(new + "/tmp", mode=0o1777, exist_ok=True)
    os.chmod(new + "/tmp", 0o1777)
    os.makedirs(new + "/run/phitools", exist_ok=True)  # the judges' working directories (one per slot)
    lx.mount("tmpfs", new + "/run/phitools", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV | lx.MS_NOEXEC, "size=256m,mode=711")
    os.makedirs(new + "/var", exist_ok=True)
    os.symlink("/tmp", new + "/var/tmp")
    for real, is_dir in hidden.items():
        dst = new + real
        if not os.path.lexists(dst):
            continue  # not inside anything bound: invisible anyway
        if is_dir:
            lx.mount("tmpfs", dst, "tmpfs", lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV, "size=4k,mode=555")
        else:
            lx.mount("/dev/null", dst, None, lx.MS_BIND)
    os.chdir(new)
    lx.pivot_root(".", ".")
    lx.umount2(".", lx.MNT_DETACH)
    os.chdir("/")
    lx.mount(None, "/", None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV)
    return under_tmp(sources)
