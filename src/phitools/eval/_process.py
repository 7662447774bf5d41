"""Process plumbing shared by the sandbox's roles (zygote, supervisor, slot init, judge, candidate). Stdlib only.

Reading /proc (CPU time, parents), killing, file-descriptor layout, resource limits and privilege drops: the
small operations every role needs, in one place so each role's file says only what that role does.
"""

from __future__ import annotations

import math
import os
import resource
import signal

from phitools.eval import _linux as lx

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_proc(rel: str, size: int = 4096) -> bytes:
    """One read of /proc/REL (no Python file object: this runs on hot paths)."""
    fd = os.open("/proc/" + rel, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        data = read_proc(f"{pid}/stat")
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process: its own (all threads) plus what it collected from children it waited for.
    A zombie still counts (its parent has not collected it yet); -1 if the process is gone."""
    f = _stat_fields(pid)
    if f is None or len(f) < 15:
        return -1.0
    return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK


def proc_children_cpu(pid: int) -> float:
    """CPU seconds a process has collected from children it reaped (cutime + cstime); -1 if gone."""
    f = _stat_fields(pid)
    if f is None or len(f) < 15:
        return -1.0
    return (int(f[13]) + int(f[14])) / CLK_TCK


def parents() -> dict[int, int]:
    """{pid: parent pid} for every process visible in /proc."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit():
            continue
        f = _stat_fields(int(n))
        if f is not None and len(f) > 1:
            out[int(n)] = int(f[1])
    return out


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, grandchildren, ...), zombies included."""
    kids: dict[int, list[int]] = {}
    for p, pp in parents().items():
        kids.setdefault(pp, []).append(p)
    out, stack = [], [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process we started; a process already gone is fine."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_uid(uid: int) -> None:
    """Kill every process of `uid` (a dedicated sandbox uid): a child takes that uid and kills -1."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:  # noqa: BLE001
            pass
        os._exit(0)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def arrange_fds(mapping: dict[int, int]) -> None:
    """Make the process's fds exactly {target: source} (inheritable); close everything else."""
    high = {t: os.dup(s) for t, s in mapping.items()}
    moved = {t: os.dup2(s, 100 + t) for t, s in high.items()}
    for t, s in moved.items():
        os.dup2(s, t, inheritable=True)
    top = max(mapping) + 1
    os.closerange(top, 1 << 16)


def set_limits(pairs: list[tuple[int, int]]) -> None:
    """setrlimit(what, (v, v)) for each pair, never above an existing hard limit."""
    for what, v in pairs:
        try:
            _soft, hard = resource.getrlimit(what)
            v = v if hard == resource.RLIM_INFINITY else min(v, hard)
            resource.setrlimit(what, (v, v))
        except (ValueError, OSError):
            pass


def candidate_rlimits(lim: dict) -> list[tuple[int, int]]:
    """The candidate's per-process limits: address space, file size, open files, processes, no core dumps, and a
    CPU-time backstop a little above the check's CPU budget (the supervisor enforces the budget itself)."""
    cpu = int(math.ceil(lim["cpu"])) + 1
    out = [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, lim["memory"]),
        (resource.RLIMIT_FSIZE, lim["fsize"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_NPROC, lim["nproc"]),
    ]
    if hasattr(resource, "RLIMIT_MSGQUEUE"):
        out.append((resource.RLIMIT_MSGQUEUE, 1 << 20))
    return out


def reset_signals() -> None:
    """Default dispositions for a process that will run someone else's code."""
    for s in (
        signal.SIGCHLD,
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGXFSZ,
        signal.SIGXCPU,
        signal.SIGALRM,
    ):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    # Python ignores SIGPIPE by default; a candidate writing to a closed pipe then gets BrokenPipeError, as usual.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def become(uid: int | None) -> None:
    """Switch to `uid` for good (its own group, no supplementary groups); None: stay, but drop every capability
    (in a user namespace). Then no_new_privs, so nothing exec'd later can gain privileges."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        lx.drop_all_capabilities()
    try:
        lx.prctl(lx.PR_SET_NO_NEW_PRIVS, 1)
    except OSError:
        pass


def name(role: str) -> None:
    """Name this process after its role (`ps -e` shows phitools-zygote, -super, -init, -judge, -cand)."""
    try:
        lx.set_name("phitools-" + role)
    except OSError:
        pass


def not_dumpable() -> None:
    """Nobody without CAP_SYS_PTRACE may trace this process or read its memory or fds through /proc."""
    try:
        lx.prctl(lx.PR_SET_DUMPABLE, 0)
    except OSError:
        pass


def die_with_parent() -> None:
    """SIGKILL this process when the thread that forked it ends."""
    try:
        lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
