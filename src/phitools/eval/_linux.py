"""Thin ctypes wrappers for the Linux calls the sandbox needs that Python 3.11's `os` lacks.

Stdlib only: imported inside the sandbox zygote. Every call raises OSError(errno) on failure so the
caller can degrade with a clear warning.
"""

from __future__ import annotations

import ctypes
import os
import platform

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_ANY = (
    CLONE_NEWTIME
    | CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# pivot_root has no glibc wrapper; syscall numbers by architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc = None


def libc():
    """The C library, loaded once (errno captured)."""
    global _libc
    if _libc is None:
        # the running interpreter's own symbols include the C library's (ctypes.util.find_library would run
        # ldconfig in a subprocess: tens of milliseconds of the sandbox's start)
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def available() -> bool:
    """True on Linux with a loadable libc."""
    if platform.system() != "Linux":
        return False
    try:
        libc()
        return True
    except OSError:
        return False


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(libc().umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) through syscall(2)."""
    nr = _SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(libc().syscall(ctypes.c_long(nr), new_root.encode(), put_old.encode()), "pivot_root")


def set_name(name: str) -> None:
    """The process's name as `ps` and `top` show it (PR_SET_NAME; at most 15 bytes)."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _check(
        libc().prctl(ctypes.c_int(PR_SET_NAME), buf, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl"
    )


def prctl(option: int, arg2: int = 0) -> None:
    """prctl(2) with one argument."""
    _check(
        libc().prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        ),
        "prctl",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_all_capabilities() -> None:
    """Clear the effective, permitted and inheritable capability sets of this thread (capset(2))."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc().capset(ctypes.byref(hdr), data), "capset")


def write_id_maps(uid: int, gid: int) -> None:
    """In a fresh user namespace: map ns root to our outside uid/gid (setgroups denied first)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1\n")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")


# ---- seccomp ---------------------------------------------------------------------------------------------
# Audit architecture and the numbers of the system calls the filter names, per machine.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "arm64": 0xC00000B7}
_SYSCALLS = {
    "x86_64": {
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "unshare": 272,
        "setns": 308,
        "clone": 56,
        "clone3": 435,
        "memfd_create": 319,
        "memfd_secret": 447,
    },
    "aarch64": {
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "unshare": 97,
        "setns": 268,
        "clone": 220,
        "clone3": 435,
        "memfd_create": 279,
        "memfd_secret": 447,
    },
}
_SYSCALLS["arm64"] = _SYSCALLS["aarch64"]
_X32_BIT = 0x40000000


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(deny: dict[str, int], clone_namespaces_errno: int | None, machine: str | None = None) -> list:
    """A classic-BPF seccomp filter as (code, jt, jf, k) tuples: calls named in `deny` fail with their errno,
    clone(2) asking for a new namespace fails with `clone_namespaces_errno`, everything else is allowed.
    System calls through another ABI (32-bit x86 `int 0x80`, x32) fail with ENOSYS: their numbers differ,
    so a filter that only knows the native ones would let them through."""
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        raise OSError(38, f"seccomp: no system call table for {machine}")
    nrs = _SYSCALLS[machine]
    LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    prog = [
        (LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (JEQ, 1, 0, _AUDIT_ARCH[machine]),
        (RET, 0, 0, ERRNO | 38),  # another ABI: ENOSYS
        (LD_W_ABS, 0, 0, 0),
    ]  # seccomp_data.nr
    if machine == "x86_64":
        prog += [(JGE, 0, 1, _X32_BIT), (RET, 0, 0, ERRNO | 38)]
    for name, err in deny.items():
        prog += [(JEQ, 0, 1, nrs[name]), (RET, 0, 0, ERRNO | err)]
    if clone_namespaces_errno is not None:
        # clone's flags are its first argument; the namespace bits are in its low 32 bits (little-endian)
        prog += [
            (JEQ, 0, 3, nrs["clone"]),
            (LD_W_ABS, 0, 0, 16),
            (JSET, 0, 1, CLONE_NEW_ANY),
            (RET, 0, 0, ERRNO | clone_namespaces_errno),
        ]
    prog.append((RET, 0, 0, ALLOW))
    return prog


def seccomp_fprog(prog: list) -> _SockFprog:
    """The filter in the kernel's form (build it once; installing it is then one prctl)."""
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), arr)
    fprog._keep = arr  # the array must live as long as the struct that points at it
    return fprog


def install_seccomp(fprog: _SockFprog) -> None:
    """Install a seccomp filter on this thread (inherited by every child; no_new_privs must be set)."""
    _check(
        libc().prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(fprog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "seccomp",
    )
