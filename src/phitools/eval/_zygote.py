"""The sandbox's process side: the zygote (Z) and the per-check supervisor (C), which is also the judge.
Stdlib only; see docs/eval.md for the design and its guarantees.

    parent (phitools eval) --unix socket--> Z: a clean interpreter, started once; network/mount namespaces
        and the read-only sandbox root are set up here; forks one C per parallel slot; never holds a test.
      C (slot supervisor and judge; never runs candidate code): per check, asks I for a fresh P, sends it the
        program, then as the judge uid runs the benchmark's test code with the candidate's names as proxies,
        polling P's CPU time and the wall clock while it waits for answers; has everything killed; reports.
        I (the slot's init: first process of its own pid and mount namespaces, forked before any test
          existed, never sent one): forks P; afterwards kills every process in the namespace and reaps it.
          P (candidate: its own uid, no network, fresh /tmp, a /proc showing only its namespace):
            runs the program, then answers calls with plain values.
"""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import secrets
import select
import signal
import socket
import struct
import sys
import time

from phitools.eval import _linux as lx
from phitools.eval import _wire as wire

# Modules candidates commonly import: imported once here so a forked check finds them ready.
PRELOAD = ("math", "re", "string", "collections", "itertools", "functools", "heapq", "bisect", "typing", "random",
           "hashlib", "copy", "operator", "statistics", "fractions", "decimal", "datetime", "json", "array",
           "cmath", "textwrap", "unicodedata", "struct", "time", "numbers", "dataclasses", "enum", "ast",
           "symtable", "base64", "traceback", "io", "importlib", "contextlib", "types", "queue", "string",
           "collections.abc", "difflib", "calendar", "pprint", "copyreg", "weakref", "locale", "glob")

SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# fd layout inside the candidate process
P_CTL, P_STATUS, P_REQ, P_RESP = 3, 4, 5, 6


# ======================================================================================================
# Zygote
# ======================================================================================================
def main(fd: int) -> None:
    """Zygote entry point: `python -c 'from phitools.eval._zygote import main; main(FD)'`."""
    sock = socket.socket(fileno=fd)
    parent = os.getppid()
    try:
        lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent:
        os._exit(0)
    cfg = json.loads(sock.recv(1 << 20))
    caps = setup_zygote(cfg)
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    from phitools.eval import _candidate, _judge  # noqa: F401  (pre-imported before the root changes)
    import gc
    gc.collect()
    gc.freeze()  # forked children never traverse (and so never copy-on-write) what the zygote holds
    sock.send(json.dumps(caps).encode())
    children: set[int] = set()
    while True:
        for c in list(children):  # reap finished supervisors
            try:
                if os.waitpid(c, os.WNOHANG)[0]:
                    children.discard(c)
            except ChildProcessError:
                children.discard(c)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 1)
        except InterruptedError:
            continue
        except OSError:
            break
        if not msg:
            break
        req = json.loads(msg)
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                Supervisor(fds[0], req, cfg, caps).run()
            except BaseException:  # noqa: BLE001 - a supervisor must never return into the zygote loop
                import traceback
                traceback.print_exc()  # to the zygote's stderr: shown with PHITOOLS_SANDBOX_DEBUG=1
                code = 1
            finally:
                os._exit(code)
        children.add(pid)
        for f in fds:
            os.close(f)
    # The parent is done: give the supervisors (which see their connections close) time to clean up.
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        for c in list(children):
            try:
                if os.waitpid(c, os.WNOHANG)[0]:
                    children.discard(c)
            except ChildProcessError:
                children.discard(c)
        time.sleep(0.01)
    os._exit(0)


def setup_zygote(cfg: dict) -> dict:
    """Enter namespaces and build the sandbox root once. Returns what is in force and warnings for the rest.

    Whatever the mode, candidate code never runs as root: as root, every candidate gets a dedicated
    unprivileged uid (`uid_drop`); without root, it runs in a user namespace with no capabilities.
    """
    caps = {"mode": "none", "uid_drop": False, "user_ns": False, "net_ns": False, "pid_ns": False,
            "mount_ns": False, "fs_hidden": False, "ipc_ns": False, "warnings": []}
    warn = caps["warnings"].append
    want = cfg.get("mode", "auto")
    if not lx.available():
        warn("not Linux: only resource limits and a temporary directory isolate candidate code")
        return caps
    root = os.geteuid() == 0
    if root:
        caps["uid_drop"] = True  # never negotiable
    if want == "none":
        warn("sandbox namespaces disabled (--sandbox-mode none): only resource limits" +
             (" and a dedicated uid" if root else "") + " isolate candidate code")
        return caps
    if root:
        caps["mode"] = "root"
        for flag, key, what in ((lx.CLONE_NEWNET, "net_ns", "candidate code can reach the network"),
                                (lx.CLONE_NEWNS, "mount_ns", "the filesystem is not hidden from candidate code"),
                                (lx.CLONE_NEWIPC | lx.CLONE_NEWUTS, "ipc_ns", None)):
            try:
                lx.unshare(flag)
                caps[key] = True
            except OSError as e:
                if what:
                    warn(f"no {key.replace('_ns', '')} namespace ({e}): {what}")
    else:
        uid, gid = os.geteuid(), os.getegid()
        try:
            lx.unshare(lx.CLONE_NEWUSER | lx.CLONE_NEWNET | lx.CLONE_NEWNS | lx.CLONE_NEWIPC | lx.CLONE_NEWUTS)
            lx.write_id_maps(uid, gid)
            caps.update(mode="userns", user_ns=True, net_ns=True, mount_ns=True, ipc_ns=True)
        except OSError as e:
            warn(f"unprivileged user namespaces refused ({e}): candidate code runs as you, with network access, "
                 "can see your files and signal your processes; only resource limits, a private session and "
                 "a temporary directory isolate it (run as root, or allow user namespaces, for the full sandbox)")
            return caps
    if caps["mount_ns"]:
        try:
            _build_root(cfg.get("hide", []))
            caps["fs_hidden"] = True
        except OSError as e:
            warn(f"could not build the sandbox root ({e}): the filesystem is not hidden from candidate code")
    if root and want == "userns":
        # The unprivileged path, exercised as root: from here on everything runs in a user namespace whose
        # root is an unprivileged host uid (never host root, whose uid alone opens root-owned files).
        outside = int(cfg.get("uid_base", 0x5A000000)) - 2
        if caps["fs_hidden"]:
            os.chown("/run/phitools", outside, outside)
        _enter_userns_mapped_to(outside)
        caps.update(mode="userns", user_ns=True, uid_drop=False)
    # Can this process create pid namespaces (tested in a throwaway child)?
    caps["pid_ns"] = _probe_pid_ns()
    if not caps["pid_ns"]:
        warn("no pid namespaces: leftover processes are found by walking /proc instead")
    return caps


def _enter_userns_mapped_to(outside: int) -> None:
    """Enter a new user namespace whose root is host uid/gid `outside`. Only a process still in the parent
    namespace may map another uid, so a helper child (still root out there) writes the maps."""
    me = os.getpid()
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.close(w)
            os.read(r, 1)
            with open(f"/proc/{me}/setgroups", "w") as f:
                f.write("deny")
            with open(f"/proc/{me}/uid_map", "w") as f:
                f.write(f"0 {outside} 1\n")
            with open(f"/proc/{me}/gid_map", "w") as f:
                f.write(f"0 {outside} 1\n")
            code = 0
        finally:
            os._exit(code)
    os.close(r)
    os.setgroups([])  # no supplementary groups (root's group 0 least of all) survive into the namespace
    try:
        lx.unshare(lx.CLONE_NEWUSER)
    finally:
        os.write(w, b"x")
        os.close(w)
        _, st = os.waitpid(helper, 0)
    if os.waitstatus_to_exitcode(st) != 0:
        raise OSError(1, "could not map the user namespace")
    # unshare keeps our host uid (root, unmapped in here); becoming the namespace's root makes it `outside`
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _probe_pid_ns() -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            lx.unshare(lx.CLONE_NEWPID)
            child = os.fork()
            if child == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, st = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(st))
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


_ST_TO_MS = ((1, lx.MS_RDONLY), (2, lx.MS_NOSUID), (4, lx.MS_NODEV), (8, lx.MS_NOEXEC), (1024, 1024), (2048, 2048),
             (4096, 1 << 21))


def _mount_flags(path: str) -> int:
    """The per-mount flags of the mount holding `path` (a read-only remount must keep locked ones)."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def _bind_sources() -> list[str]:
    srcs = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
    for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]:
        if p and os.path.isdir(p):
            srcs.append(os.path.realpath(p))
    out: list[str] = []
    for s in srcs:
        if not os.path.lexists(s) or s == "/" or s.split("/")[1] in ("tmp", "proc", "dev", "run", "sys"):
            continue
        if any(s == o or s.startswith(o.rstrip("/") + "/") for o in out):
            continue
        out = [o for o in out if not o.startswith(s.rstrip("/") + "/")]
        out.append(s)
    return out


def _build_root(hide: list[str]) -> None:
    """A read-only root holding only the system and Python directories; pivot into it."""
    lx.mount(None, "/", None, lx.MS_REC | lx.MS_PRIVATE)
    lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, "size=1m,mode=755")
    new = "/tmp/root"
    os.mkdir(new, 0o755)
    lx.mount("tmpfs", new, "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, "size=4m,mode=755")
    for src in _bind_sources():
        dst = new + src
        if os.path.islink(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
            continue
        if not os.path.isdir(src):
            continue
        os.makedirs(dst, exist_ok=True)
        lx.mount(src, dst, None, lx.MS_BIND | lx.MS_REC)
        lx.mount(None, dst, None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV
                 | _mount_flags(src))
    os.makedirs(new + "/dev", exist_ok=True)
    lx.mount("tmpfs", new + "/dev", "tmpfs", lx.MS_NOSUID, "size=64k,mode=755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + dev):
            open(new + "/dev/" + dev, "w").close()
            lx.mount("/dev/" + dev, new + "/dev/" + dev, None, lx.MS_BIND)
    os.symlink("/tmp", new + "/dev/shm")  # POSIX shared memory lands in the candidate's private /tmp
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, new + "/dev/" + name)
    os.makedirs(new + "/proc", exist_ok=True)
    lx.mount("/proc", new + "/proc", None, lx.MS_BIND | lx.MS_REC)
    os.mkdir(new + "/tmp", 0o1777)
    os.makedirs(new + "/run/phitools", exist_ok=True)  # the judges' working directories (one per slot)
    lx.mount("tmpfs", new + "/run/phitools", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV | lx.MS_NOEXEC, "size=256m,mode=711")
    os.makedirs(new + "/var", exist_ok=True)
    os.symlink("/tmp", new + "/var/tmp")
    for h in hide:
        real = os.path.realpath(h)
        dst = new + real
        if not os.path.lexists(dst):
            continue
        if os.path.isdir(dst):
            lx.mount("tmpfs", dst, "tmpfs", lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV, "size=4k,mode=555")
        else:
            lx.mount("/dev/null", dst, None, lx.MS_BIND)
    os.chdir(new)
    lx.pivot_root(".", ".")
    lx.umount2(".", lx.MNT_DETACH)
    os.chdir("/")
    lx.mount(None, "/", None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV)


# ======================================================================================================
# Process setup shared by the judge and the candidate
# ======================================================================================================
def _arrange_fds(mapping: dict[int, int]) -> None:
    """Make the process's fds exactly {target: source} plus 0-2 as set; close everything else."""
    high = {t: os.dup(s) if s >= 0 else -1 for t, s in mapping.items()}
    moved = {}
    for t, s in high.items():
        moved[t] = os.dup2(s, 100 + t) if s >= 0 else -1
    for t, s in moved.items():
        if s >= 0:
            os.dup2(s, t, inheritable=True)
    top = max(mapping) + 1
    os.closerange(top, 1 << 16)


def _set_limits(lim: dict, *, candidate: bool) -> None:
    cpu = int(math.ceil(lim["cpu"])) + 1
    if not candidate:
        cpu = cpu * 4 + 30
    pairs = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (lim["memory"], lim["memory"])),
        (resource.RLIMIT_FSIZE, (lim["fsize"], lim["fsize"])),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (256, 256)),
    ]
    if candidate:
        pairs.append((resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"])))
    for what, val in pairs:
        try:
            soft, hard = resource.getrlimit(what)
            v0 = val[0] if hard == resource.RLIM_INFINITY else min(val[0], hard)
            v1 = val[1] if hard == resource.RLIM_INFINITY else min(val[1], hard)
            resource.setrlimit(what, (v0, v1))
        except (ValueError, OSError):
            pass


def _drop_privileges(caps: dict, uid: int) -> None:
    if caps["uid_drop"]:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif caps["mode"] == "userns":
        lx.drop_all_capabilities()
    try:
        lx.prctl(lx.PR_SET_NO_NEW_PRIVS, 1)
    except OSError:
        pass


def _reset_signals() -> None:
    for s in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXFSZ,
              signal.SIGXCPU):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    # Python ignores SIGPIPE by default; a candidate writing to a closed pipe then gets BrokenPipeError, as usual.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


# ======================================================================================================
# Supervisor (one per check)
# ======================================================================================================
class SlotInit:
    """I: the first process of a slot's pid namespace, with its own mount namespace. It never sees a test:
    on request it forks the candidate P (with pipe ends the supervisor passes over), and afterwards kills
    every process in the namespace but itself, reaps them, and gives P's exit status and CPU time back."""

    def __init__(self, sock: socket.socket, caps: dict, cand_uid: int):
        self.sock = sock
        self.caps = caps
        self.cand_uid = cand_uid
        self.is_init = os.getpid() == 1
        self.tmp_mounted = False
        self.tmpdir: str | None = None
        self.child: int | None = None

    def serve(self) -> None:
        if not self.is_init:
            try:
                lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
            except OSError:
                pass
        if self.caps["fs_hidden"]:
            if self.is_init:
                try:  # a /proc that shows only this slot's processes
                    lx.mount("proc", "/proc", "proc", lx.MS_NOSUID | lx.MS_NODEV | lx.MS_NOEXEC)
                except OSError:
                    pass
            try:  # the judges' working directories are none of the candidate's business
                lx.mount("tmpfs", "/run/phitools", "tmpfs", lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV, "size=4k,mode=555")
            except OSError:
                pass
        try:
            lx.prctl(lx.PR_SET_DUMPABLE, 0)
        except OSError:
            pass
        while True:
            try:
                msg, fds, _f, _a = socket.recv_fds(self.sock, 1 << 16, 8)
            except InterruptedError:
                continue
            except OSError:
                break
            if not msg:
                break
            req = json.loads(msg)
            if req["op"] == "spawn":
                self._spawn(req, fds)
            elif req["op"] == "kill":
                for f in fds:
                    os.close(f)
                self.sock.send(json.dumps(self._kill_all()).encode())
        self._kill_all()
        os._exit(0)

    def _spawn(self, req: dict, fds: list[int]) -> None:
        ctl_r, st_w, req_r, resp_w, out = fds
        size = int(req.get("tmp_size", 64 << 20))
        work = None
        if self.caps["fs_hidden"]:
            opts = f"size={size},mode=700"
            if self.caps["uid_drop"]:
                opts += f",uid={self.cand_uid},gid={self.cand_uid}"
            try:  # a fresh, empty /tmp for every check
                lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, opts)
                self.tmp_mounted = True
                work = "/tmp"
            except OSError:
                work = None
        if work is None:
            import tempfile
            self.tmpdir = work = tempfile.mkdtemp(prefix="phitools-sandbox-")
            if self.caps["uid_drop"]:
                os.chown(work, self.cand_uid, self.cand_uid)
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            _candidate_child(self.caps, self.cand_uid, ctl_r, st_w, req_r, resp_w, out, work)
        for f in fds:
            os.close(f)
        self.child = pid
        body = json.dumps({"op": "spawned", "ns_pid": pid}).encode()
        try:
            # SCM_CREDENTIALS: the kernel rewrites the pid into the supervisor's pid namespace
            creds = struct.pack("3i", pid, os.getuid(), os.getgid())
            self.sock.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
        except OSError:
            self.sock.send(body)

    def _kill_all(self) -> dict:
        info: dict = {"op": "killed"}
        pid = self.child
        if pid is not None:
            try:
                got, st, ru = os.wait4(pid, os.WNOHANG)
                killed = got == 0
                if killed:
                    _kill(pid)
                    got, st, ru = os.wait4(pid, 0)
                info["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 4)
                if os.WIFSIGNALED(st) and not killed:
                    info["signal"] = os.WTERMSIG(st)
                elif os.WIFEXITED(st):
                    info["exit_code"] = os.WEXITSTATUS(st)
            except ChildProcessError:
                pass
            self.child = None
        for _ in range(1000):
            if self.is_init:
                try:
                    os.kill(-1, signal.SIGKILL)  # from a namespace's init: every process in it but this one
                except ProcessLookupError:
                    pass
            else:
                if self.caps["uid_drop"]:
                    _kill_uid(self.cand_uid)
                kids = _descendants(os.getpid())
                for k in kids:
                    _kill(k, signal.SIGSTOP)
                for k in kids:
                    _kill(k)
            try:
                while os.waitpid(-1, 0 if self.is_init else os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                break
            time.sleep(0.001)
        if self.tmp_mounted:
            try:
                lx.umount2("/tmp", lx.MNT_DETACH)
            except OSError:
                pass
            self.tmp_mounted = False
        if self.tmpdir:
            _rmtree(self.tmpdir)
            self.tmpdir = None
        return info


def _candidate_child(caps, cand_uid, ctl_r, st_w, req_r, resp_w, out, work) -> None:
    """P: set up the process, report, then load the program and serve the judge. Never returns."""
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        _arrange_fds({0: null, 1: out, 2: out, P_CTL: ctl_r, P_STATUS: st_w, P_REQ: req_r, P_RESP: resp_w})
        _reset_signals()
        os.setsid()
        try:
            _drop_privileges(caps, cand_uid)
            if caps["mode"] != "userns" and (os.geteuid() == 0 or os.getuid() == 0):
                raise PermissionError("refusing to run candidate code as root")
            os.chdir(work)
            os.environ.clear()
            os.environ.update(SANDBOX_ENV)
            os.environ["HOME"] = os.environ["TMPDIR"] = work
        except BaseException as e:  # noqa: BLE001
            wire.send(P_STATUS, {"setup_error": f"{type(e).__name__}: {e}"})
            os._exit(1)
        wire.send(P_STATUS, {"setup": "ok"})
        from phitools.eval import _candidate
        _candidate.main(P_CTL, P_STATUS, P_REQ, P_RESP, _set_limits)
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


class Supervisor:
    """C: one per parallel slot, for the whole run. For each check it asks the slot's init for a fresh
    candidate process, sends it the program, then — as the judge uid — runs the benchmark's test code with
    the candidate's names as proxies, polling the candidate's CPU time and the wall clock while it waits
    for answers; then has everything killed and reports the verdict."""

    def __init__(self, chan: int, req: dict, cfg: dict, caps: dict):
        self.chan = chan
        self.cfg = cfg
        self.caps = caps
        self.slot = int(req.get("slot", 0))
        base = int(cfg.get("uid_base", 0x5A000000))
        self.cand_uid = base + 2 * self.slot
        self.judge_uid = base + 2 * self.slot + 1
        self.init_sock: socket.socket | None = None
        self.init_pid: int | None = None
        self.killed_for_cpu = False
        self._last_scan = 0.0

    # -- the slot's init ---------------------------------------------------------------------------------
    def _start_init(self) -> None:
        """Fork I0 -> I: I0 enters new pid and mount namespaces in one unshare(2); I is the namespace's first
        process. (A nested user namespace per slot would make RLIMIT_NPROC exact without root, but the kernel
        refuses new user namespaces after the pivot into the sandbox root.)"""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        r, w = os.pipe()
        x = os.fork()
        if x == 0:
            try:
                mine.close()
                os.close(r)
                flags = (lx.CLONE_NEWPID if self.caps["pid_ns"] else 0) | (lx.CLONE_NEWNS if self.caps["fs_hidden"] else 0)
                if self.caps["ipc_ns"]:
                    flags |= lx.CLONE_NEWIPC  # SysV IPC objects a candidate leaves are seen by its slot only
                if flags:
                    lx.unshare(flags)
                pid = os.fork()
                if pid == 0:
                    os.close(w)
                    try:
                        SlotInit(theirs, self.caps, self.cand_uid).serve()
                    finally:
                        os._exit(0)
                os.write(w, str(pid).encode())
            except BaseException:  # noqa: BLE001
                import traceback
                traceback.print_exc()
            os._exit(0)
        theirs.close()
        os.close(w)
        data = os.read(r, 64)
        os.close(r)
        os.waitpid(x, 0)  # I is reparented to us (a subreaper)
        if not data:
            mine.close()
            raise RuntimeError("could not start the slot's init process")
        self.init_sock = mine
        self.init_pid = int(data)

    def _stop_init(self) -> None:
        """Close the slot's init: it kills what is left and cleans up on its own; SIGKILL if it dawdles."""
        if self.init_sock is not None:
            self.init_sock.close()
            self.init_sock = None
        if self.init_pid is not None:
            deadline = time.monotonic() + 5
            while True:
                try:
                    if os.waitpid(self.init_pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                if time.monotonic() > deadline:
                    _kill(self.init_pid)
                    deadline = float("inf")
                time.sleep(0.002)
            self.init_pid = None

    def _spawn(self, fsize: int):
        """A fresh candidate process. Returns (host pid, ctl w, status r, req w, resp r, output memfd)."""
        if self.init_sock is None:
            self._start_init()
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        out = os.memfd_create("candidate-out")
        child = [ctl_r, st_w, req_r, resp_w, out]
        try:
            socket.send_fds(self.init_sock, [json.dumps({"op": "spawn", "tmp_size": fsize * 2 + (8 << 20)}).encode()],
                            child)
            msg, anc, _flags, _addr = self.init_sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except OSError:
            msg, anc = b"", []
        finally:
            for f in (ctl_r, st_w, req_r, resp_w):
                os.close(f)
        if not msg:
            for f in (ctl_w, st_r, req_w, resp_r, out):
                os.close(f)
            self._stop_init()
            raise RuntimeError("the slot's init process is gone")
        pid = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
                pid = struct.unpack("3i", data[:12])[0]
        if not pid:
            pid = json.loads(msg)["ns_pid"]
        return pid, ctl_w, st_r, req_w, resp_r, out

    def _kill_candidate(self) -> dict:
        """Have the slot's init kill and reap everything; returns the candidate's exit status and CPU time."""
        try:
            self.init_sock.send(b'{"op": "kill"}')
            msg = self.init_sock.recv(1 << 16)
            if msg:
                return json.loads(msg)
        except (OSError, AttributeError):
            pass
        self._stop_init()
        return {}

    # -- the judge ---------------------------------------------------------------------------------------
    def _judge_dir(self) -> str:
        if self.caps["fs_hidden"]:
            d = f"/run/phitools/j{self.slot}-{os.getpid()}"
            _rmtree(d)
            os.mkdir(d, 0o700)
        else:
            import tempfile
            d = tempfile.mkdtemp(prefix="phitools-judge-")
        if self.caps["uid_drop"]:
            os.chown(d, self.judge_uid, self.judge_uid)
        return d

    def _become_judge(self) -> None:
        """Run the test as the judge uid (the candidate's uid can neither signal nor trace it); the saved uid
        stays root so the supervisor can go on afterwards (test code is trusted benchmark data)."""
        if self.caps["uid_drop"]:
            os.setresgid(self.judge_uid, self.judge_uid, 0)
            os.setresuid(self.judge_uid, self.judge_uid, 0)
        try:
            lx.prctl(lx.PR_SET_DUMPABLE, 0)
        except OSError:
            pass

    def _back_to_root(self) -> None:
        if self.caps["uid_drop"]:
            os.setresuid(0, 0, 0)
            os.setresgid(0, 0, 0)

    def _watch(self, ppid: int, st_r: int, lim: dict, t0: float, status_msgs: list):
        """The judge's wait for an answer: poll the candidate's CPU time, enforce the wall deadline."""
        from phitools.eval._judge import LimitExceeded
        deadline = t0 + lim["wall"]
        extra = [st_r]

        def wait(fd: int) -> None:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise LimitExceeded("wall")
                try:
                    ready, _, _ = select.select([fd, *extra], [], [], min(0.05, deadline - now))
                except InterruptedError:
                    continue
                if extra and extra[0] in ready:
                    try:
                        status_msgs.append(wire.recv(extra[0]))
                    except (EOFError, wire.WireError, OSError):
                        pass
                    extra.clear()  # only the first message (written before candidate code ran) counts
                if self._cpu_exceeded(ppid, lim["cpu"], t0):
                    self.killed_for_cpu = True
                    _kill(ppid)
                    raise LimitExceeded("cpu")
                if fd in ready:
                    return
        return wait

    def _cpu_exceeded(self, ppid: int, limit: float, t0: float) -> bool:
        """The candidate's CPU time: its own every poll; every 0.5 s (after the first), summed over all its
        descendants too, so that forked children cannot multiply the budget."""
        own = _proc_cpu(ppid)
        if own > limit:
            return True
        now = time.monotonic()
        if now - t0 > 0.5 and now - self._last_scan > 0.5:
            self._last_scan = now
            total = max(own, 0.0) + sum(max(_proc_cpu(k), 0.0) for k in _descendants(ppid))
            return total > limit
        return False

    # -- the checks --------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
            lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote gone -> this slot gone
        except OSError:
            pass
        self.workdir = self._judge_dir()
        try:
            while True:
                try:
                    spec = wire.recv(self.chan)
                except (EOFError, wire.WireError, OSError):
                    break
                result = self.check(spec)
                try:
                    wire.send(self.chan, result)
                except OSError:
                    break
        finally:
            self._stop_init()
            _rmtree(self.workdir)

    def check(self, spec: dict) -> dict:
        lim = spec["limits"]
        self.killed_for_cpu = False
        self._last_scan = 0.0
        t0 = time.monotonic()
        try:
            p = self._spawn(lim["fsize"])
        except RuntimeError as e:
            return {"status": "error", "reason": f"sandbox: {e}", "wall_s": round(time.monotonic() - t0, 4)}
        if spec.get("inprocess"):
            # the parent's second try, after the judge found the test cannot run out of process
            result = self._run_inprocess(spec, lim, *p, t0)
        else:
            result = self._run_rpc(spec, lim, *p, t0)
        result["wall_s"] = round(time.monotonic() - t0, 4)
        return result

    def _candidate_limits(self, lim: dict) -> dict:
        """As root each candidate has its own uid, so RLIMIT_NPROC counts exactly its processes. In a user
        namespace every sandbox process shares one uid: allow for those running now (approximate)."""
        if self.caps["uid_drop"]:
            return lim
        return dict(lim, nproc=lim["nproc"] + len(_descendants(os.getppid())) + 1)

    def _close(self, *fds: int) -> None:
        for f in fds:
            try:
                os.close(f)
            except OSError:
                pass

    def _run_rpc(self, spec, lim, ppid, p_ctl, p_st, p_req, p_resp, p_out, t0) -> dict:
        from phitools.eval import _judge
        status_msgs: list = []
        res: dict = {"isolation": "rpc"}
        try:
            try:
                wire.send(p_ctl, {"program": spec["program"], "limits": self._candidate_limits(lim),
                                  "seed": spec.get("seed", 0), "mode": "rpc"})
            except OSError:
                pass  # the candidate died during setup: the judge's first call says so
            ch = _judge.Channel(p_req, p_resp, wait=self._watch(ppid, p_st, lim, t0, status_msgs))
            os.chdir(self.workdir)
            self._become_judge()

            def on_alarm(signum, frame):
                raise _judge.LimitExceeded("wall")

            old = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, max(0.001, lim["wall"] - (time.monotonic() - t0)))
            try:
                verdict = _judge.run(spec, ch)
            except _judge.LimitExceeded as e:
                verdict = {"status": "limit", "limit": e.kind}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                self._back_to_root()
            p_info = self._kill_candidate()
            if not status_msgs:
                try:  # the setup report, if the judge never had to wait for an answer
                    r, _, _ = select.select([p_st], [], [], 0)
                    if r:
                        status_msgs.append(wire.recv(p_st))
                except (EOFError, wire.WireError, OSError):
                    pass
            res["cpu_s"] = p_info.get("cpu_s")
            res["candidate_output"] = _read_memfd(p_out, lim.get("output", 1 << 16))
        finally:
            self._close(p_ctl, p_st, p_req, p_resp, p_out)
        for k in ("asserts", "calls"):
            if k in verdict:
                res[k] = verdict[k]
        setup = status_msgs[0] if status_msgs else None
        if isinstance(setup, dict) and "setup_error" in setup:
            res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
            return res
        st = verdict.get("status")
        if self.killed_for_cpu or (st == "limit" and verdict.get("limit") == "cpu"):
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
        elif st == "limit":
            res.update(status="timed_out", limit="wall", reason=f"wall-clock limit ({lim['wall']:g} s) exceeded "
                                                                f"(CPU used {p_info.get('cpu_s') or 0:.2f} s)")
        elif st == "passed":
            res.update(status="passed", reason="")
        elif st == "needs_inprocess":
            res.update(status="needs_inprocess", reason=verdict.get("reason", ""))
        elif st == "candidate_gone":
            res.update(self._explain_death(p_info, lim, verdict.get("reason", "")))
        elif st == "failed":
            res.update(status="failed", reason=verdict.get("reason", "failed"))
        else:
            res.update(status="error", reason=verdict.get("reason", "judge error"))
        return res

    def _explain_death(self, p_info: dict, lim: dict, reason: str) -> dict:
        sig = p_info.get("signal")
        cpu = p_info.get("cpu_s") or 0.0
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu >= lim["cpu"] * 0.95:
            return {"status": "timed_out", "reason": f"CPU time limit ({lim['cpu']:g} s) exceeded", "limit": "cpu"}
        if sig is not None and sig != signal.SIGKILL:
            return {"status": "failed", "reason": f"the candidate's process was killed by {signal.Signals(sig).name}"
                                                  + (" (file size limit)" if sig == signal.SIGXFSZ else "")}
        code = p_info.get("exit_code")
        if code is not None:
            return {"status": "failed", "reason": f"the candidate's process exited (status {code}) before the test "
                                                  "finished"}
        return {"status": "failed", "reason": reason or "the candidate's process ended before the test finished"}

    def _run_inprocess(self, spec, lim, ppid, p_ctl, p_st, p_req, p_resp, p_out, t0) -> dict:
        """Fallback: the test runs inside the candidate's process (weaker guarantee; see docs/eval.md)."""
        from phitools.eval._judge import rewrite_for_inprocess
        nonce = secrets.token_hex(16)
        res: dict = {"isolation": "inprocess"}
        self._close(p_req, p_resp)
        try:
            test_src, _n_sites = rewrite_for_inprocess(spec.get("prelude_inprocess", "") + "\n" + spec["test"])
        except SyntaxError as e:
            self._kill_candidate()
            self._close(p_ctl, p_st, p_out)
            res.update(status="error", reason=f"test code does not parse: {e}")
            return res
        try:
            wire.send(p_ctl, {"program": spec["program"], "limits": self._candidate_limits(lim),
                              "seed": spec.get("seed", 0), "mode": "inprocess"})
        except OSError:
            pass
        deadline = t0 + lim["wall"]
        buf = b""
        got_setup = loaded = done = False
        oks = 0
        count = None
        why = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                why = "wall"
                break
            try:
                ready, _, _ = select.select([p_st], [], [], min(0.05, deadline - now))
            except InterruptedError:
                continue
            if self._cpu_exceeded(ppid, lim["cpu"], t0):
                self.killed_for_cpu = True
                why = "cpu"
                break
            if not ready:
                continue
            b = os.read(p_st, 1 << 16)
            if not b:
                break
            buf += b
            if not got_setup:
                # the first message is the length-prefixed setup report, written before candidate code ran
                if len(buf) < 4:
                    continue
                n = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + n:
                    continue
                setup = json.loads(buf[4:4 + n])
                buf = buf[4 + n:]
                got_setup = True
                if "setup_error" in setup:
                    self._kill_candidate()
                    self._close(p_ctl, p_st, p_out)
                    res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
                    return res
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.decode("ascii", "replace").split()
                if parts[:1] == ["loaded"] and not loaded:
                    loaded = True
                    try:
                        wire.send(p_ctl, {"test": test_src, "nonce": nonce})
                    except OSError:
                        pass
                elif len(parts) == 3 and parts[0] == "ok" and parts[1] == nonce:
                    oks += 1
                elif len(parts) == 3 and parts[0] == "done" and parts[1] == nonce:
                    done = True
                    count = int(parts[2]) if parts[2].isdigit() else -1
                elif parts[:1] == ["fail"] and len(parts) >= 2 and parts[1] == nonce:
                    res["reason"] = " ".join(parts[2:])[:2000].replace("\\n", "\n")
            if done or "reason" in res:
                break
        p_info = self._kill_candidate()
        res["cpu_s"] = p_info.get("cpu_s")
        res["candidate_output"] = _read_memfd(p_out, lim.get("output", 1 << 16))
        self._close(p_ctl, p_st, p_out)
        if why == "cpu" or self.killed_for_cpu:
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
        elif why == "wall":
            res.update(status="timed_out", reason=f"wall-clock limit ({lim['wall']:g} s) exceeded", limit="wall")
        elif done and count == oks and oks >= 1:
            res.update(status="passed", reason="", asserts=oks)
        elif done and oks == 0:
            res.update(status="error", reason="the test ran no assertions")
        elif "reason" in res:
            res["status"] = "failed"
        elif not loaded:
            res.update(self._explain_death(p_info, lim, "the candidate's program did not finish loading"))
        else:
            res.update(self._explain_death(p_info, lim, "the test did not complete"))
        return res


# ---- helpers -------------------------------------------------------------------------------------------
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read_proc(rel: str) -> bytes:
    fd = os.open("/proc/" + rel, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _proc_cpu(pid: int) -> float:
    """utime+stime (+ reaped children) of a process, in seconds; -1 if gone."""
    try:
        data = _read_proc(f"{pid}/stat")
    except OSError:
        return -1.0
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z":
        return -1.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _CLK


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
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


def _descendants(root: int) -> list[int]:
    parent_of = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for n in names:
        if not n.isdigit():
            continue
        try:
            data = _read_proc(f"{n}/stat")
            parent_of[int(n)] = int(data[data.rfind(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    kids: dict[int, list[int]] = {}
    for p, pp in parent_of.items():
        kids.setdefault(pp, []).append(p)
    out, stack = [], [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def _read_memfd(fd: int, cap: int) -> str:
    try:
        data = os.pread(fd, cap + 1, 0)
        size = os.fstat(fd).st_size
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", "replace")
    if size > cap:
        text += f"\n... [{size - cap} more bytes not kept]"
    return text


def _rmtree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["main", "Supervisor", "setup_zygote", "PRELOAD", "SANDBOX_ENV", "errno"]
