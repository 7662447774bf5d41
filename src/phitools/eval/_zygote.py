"""The sandbox's process side: the zygote (Z), the per-check supervisor (C), and process setup for the
judge (J) and the candidate (P). Stdlib only; see docs/eval.md for the design and its guarantees.

    parent (phitools eval) --unix socket--> Z: a clean interpreter, started once; namespaces and the
        sandbox root set up here; forks one C per check and never holds a test.
      C (root/ns-root, subreaper, never runs untrusted code): forks J and P *before* it reads the check, so
        neither inherits a test; enforces CPU and wall limits from outside; kills everything; reports.
        J (judge, its own uid): runs the benchmark's test code; the candidate's names are proxies.
        X -> P (candidate, pid 1 of a fresh pid namespace, its own uid, no network, private /tmp):
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
# fd layout inside the judge process
J_CTL, J_VERDICT, J_REQ, J_RESP = 3, 4, 5, 6


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
    sock.send(json.dumps(caps).encode())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # Z never waits; the kernel reaps its C children
    while True:
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
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                Supervisor(fds[0], req, cfg, caps).run()
            except BaseException:  # noqa: BLE001 - a supervisor must never return into the zygote loop
                code = 1
            finally:
                os._exit(code)
        for f in fds:
            os.close(f)
    os._exit(0)


def setup_zygote(cfg: dict) -> dict:
    """Enter namespaces and build the sandbox root once. Returns what is in force and warnings for the rest."""
    caps = {"mode": "none", "uid_drop": False, "user_ns": False, "net_ns": False, "pid_ns": False,
            "mount_ns": False, "fs_hidden": False, "ipc_ns": False, "warnings": []}
    warn = caps["warnings"].append
    want = cfg.get("mode", "auto")
    if not lx.available():
        warn("not Linux: only resource limits and a temporary directory isolate candidate code")
        return caps
    root = os.geteuid() == 0
    if want in ("auto", "root") and root:
        caps["mode"] = "root"
        caps["uid_drop"] = True
        try:
            lx.unshare(lx.CLONE_NEWNET)
            caps["net_ns"] = True
        except OSError as e:
            warn(f"no network namespace ({e}): candidate code can reach the network")
        try:
            lx.unshare(lx.CLONE_NEWNS)
            caps["mount_ns"] = True
        except OSError as e:
            warn(f"no mount namespace ({e}): the filesystem is not hidden from candidate code")
        try:
            lx.unshare(lx.CLONE_NEWIPC | lx.CLONE_NEWUTS)
            caps["ipc_ns"] = True
        except OSError:
            pass
    elif want in ("auto", "userns"):
        uid, gid = os.geteuid(), os.getegid()
        try:
            lx.unshare(lx.CLONE_NEWUSER | lx.CLONE_NEWNET | lx.CLONE_NEWNS | lx.CLONE_NEWIPC | lx.CLONE_NEWUTS)
            lx.write_id_maps(uid, gid)
            caps.update(mode="userns", user_ns=True, net_ns=True, mount_ns=True, ipc_ns=True)
        except OSError as e:
            warn(f"unprivileged user namespaces refused ({e}): candidate code runs as you, with network access, "
                 "can see your files and signal your processes; only resource limits, a private session and "
                 "a temporary directory isolate it (run as root, or allow user namespaces, for the full sandbox)")
    else:
        warn("sandbox namespaces disabled (--sandbox-mode none): only resource limits isolate candidate code")
    if caps["mode"] != "none":
        # Can this process create pid namespaces (tested in a throwaway child)?
        caps["pid_ns"] = _probe_pid_ns()
        if not caps["pid_ns"]:
            warn("no pid namespaces: leftover processes are found by walking /proc instead")
    if caps["mount_ns"]:
        try:
            _build_root(cfg.get("hide", []))
            caps["fs_hidden"] = True
        except OSError as e:
            warn(f"could not build the sandbox root ({e}): the filesystem is not hidden from candidate code")
    return caps


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
        if not os.path.lexists(s) or s == "/":
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
    os.mkdir(new + "/dev/shm", 0o1777)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, new + "/dev/" + name)
    os.makedirs(new + "/proc", exist_ok=True)
    lx.mount("/proc", new + "/proc", None, lx.MS_BIND | lx.MS_REC)
    os.mkdir(new + "/tmp", 0o1777)
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


def _private_tmp(caps: dict, uid: int, size: int) -> str:
    """A fresh tmpfs on /tmp (and /dev/shm), owned by `uid`; returns the working directory."""
    lx.unshare(lx.CLONE_NEWNS)
    opts = f"size={size},mode=700,uid={uid},gid={uid}" if caps["mode"] == "root" else f"size={size},mode=700"
    lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, opts)
    try:
        lx.mount("tmpfs", "/dev/shm", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, opts)
    except OSError:
        pass
    return "/tmp"


def _drop_privileges(caps: dict, uid: int) -> None:
    if caps["mode"] == "root":
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
class Supervisor:
    """Runs one check: forks judge and candidate, feeds them, enforces limits, kills everything, reports."""

    def __init__(self, chan: int, req: dict, cfg: dict, caps: dict):
        self.chan = chan
        self.req = req
        self.cfg = cfg
        self.caps = caps
        slot = int(req.get("slot", 0))
        base = int(cfg.get("uid_base", 0x5A000000))
        self.cand_uid = base + 2 * slot
        self.judge_uid = base + 2 * slot + 1
        self.killed_for_cpu = False
        self.tmpdirs: list[str] = []
        # the file-size limit is known before the check arrives (it sizes the private /tmp)
        self.fsize = int(req.get("fsize", 16 << 20))

    # -- children ---------------------------------------------------------------------------------------
    def _fork_judge(self):
        ctl_r, ctl_w = os.pipe()
        ver_r, ver_w = os.pipe()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        out = os.memfd_create("judge-out")
        tmpdir = self._new_tmpdir()
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                _arrange_fds({0: null, 1: out, 2: out, J_CTL: ctl_r, J_VERDICT: ver_w, J_REQ: req_w, J_RESP: resp_r})
                _reset_signals()
                work = self._workdir(self.judge_uid, tmpdir)
                _drop_privileges(self.caps, self.judge_uid)
                try:
                    lx.prctl(lx.PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/PID/mem for same-uid processes
                except OSError:
                    pass
                os.chdir(work)
                from phitools.eval import _judge
                _judge.main(J_CTL, J_VERDICT, J_REQ, J_RESP, _set_limits)
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        for f in (ctl_r, ver_w, req_w, resp_r):
            os.close(f)
        return pid, ctl_w, ver_r, req_r, resp_w, out

    def _new_tmpdir(self) -> str | None:
        """Without a private root, a host temp dir per process (created here so the supervisor removes it)."""
        if self.caps["fs_hidden"]:
            return None
        import tempfile
        d = tempfile.mkdtemp(prefix="phitools-sandbox-")
        self.tmpdirs.append(d)
        return d

    def _workdir(self, uid: int, tmpdir: str | None) -> str:
        if tmpdir is None:
            return _private_tmp(self.caps, uid, self.fsize * 2 + (8 << 20))
        if self.caps["mode"] == "root":
            os.chown(tmpdir, uid, uid)
        return tmpdir

    def _fork_candidate(self, req_r: int, resp_w: int):
        """X: (new pid namespace) -> P. Returns (P's pid, ctl write end, status read end, output memfd)."""
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        x_r, x_w = os.pipe()
        out = os.memfd_create("candidate-out")
        tmpdir = self._new_tmpdir()
        xpid = os.fork()
        if xpid == 0:
            try:
                os.close(x_r)
                if self.caps["pid_ns"]:
                    lx.unshare(lx.CLONE_NEWPID)
                pid = os.fork()
                if pid == 0:
                    os.close(x_w)
                    self._candidate_child(ctl_r, st_w, req_r, resp_w, out, tmpdir)
                    os._exit(0)
                os.write(x_w, str(pid).encode())
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        os.close(x_w)
        ppid_b = b""
        while True:
            b = os.read(x_r, 64)
            if not b:
                break
            ppid_b += b
        os.close(x_r)
        os.waitpid(xpid, 0)
        for f in (ctl_r, st_w):
            os.close(f)
        if not ppid_b:
            raise RuntimeError("could not start the candidate process")
        return int(ppid_b), ctl_w, st_r, out

    def _candidate_child(self, ctl_r, st_w, req_r, resp_w, out, tmpdir):
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            _arrange_fds({0: null, 1: out, 2: out, P_CTL: ctl_r, P_STATUS: st_w, P_REQ: req_r, P_RESP: resp_w})
            _reset_signals()
            os.setsid()
            try:
                work = self._workdir(self.cand_uid, tmpdir)
                if self.caps["pid_ns"] and self.caps["fs_hidden"]:
                    try:
                        lx.mount("proc", "/proc", "proc", lx.MS_NOSUID | lx.MS_NODEV | lx.MS_NOEXEC)
                    except OSError:
                        pass
                if self.caps["mode"] == "userns":
                    # A nested user namespace: process counts (RLIMIT_NPROC) are per namespace, so this
                    # candidate's limit counts only its own processes; and mounts become locked.
                    lx.unshare(lx.CLONE_NEWUSER)
                    lx.write_id_maps(0, 0)
                _drop_privileges(self.caps, self.cand_uid)
                os.chdir(work)
                os.environ.clear()
                os.environ.update(SANDBOX_ENV)
            except BaseException as e:  # noqa: BLE001
                wire.send(P_STATUS, {"setup_error": f"{type(e).__name__}: {e}"})
                os._exit(1)
            wire.send(P_STATUS, {"setup": "ok", "uid": os.getuid(), "pid": os.getpid()})
            from phitools.eval import _candidate
            _candidate.main(P_CTL, P_STATUS, P_REQ, P_RESP, _set_limits)
        except BaseException:  # noqa: BLE001
            pass
        os._exit(0)

    # -- the check --------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
        except OSError:
            pass
        jpid, j_ctl, j_ver, req_r, resp_w, j_out = self._fork_judge()
        ppid, p_ctl, p_st, p_out = self._fork_candidate(req_r, resp_w)
        os.close(req_r)
        os.close(resp_w)
        # Only now does the check itself enter this process: neither child has seen it.
        try:
            spec = wire.recv(self.chan)
        except (EOFError, wire.WireError):
            self._kill_all([ppid, jpid])
            return
        lim = spec["limits"]
        nonce = secrets.token_hex(16)
        t0 = time.monotonic()
        result = self._run_rpc(spec, lim, nonce, jpid, j_ctl, j_ver, ppid, p_ctl, p_st, t0)
        if result.get("status") == "needs_inprocess":
            if spec.get("allow_inprocess", True):
                result = self._run_inprocess(spec, lim, nonce, req_reason=result.get("reason", ""))
            else:
                result = {"status": "error", "reason": "the test passes values that cannot leave the judge "
                                                         "and in-process checking is disabled"}
                result.setdefault("isolation", "rpc")
        result["wall_s"] = round(time.monotonic() - t0, 4)
        result["judge_output"] = _read_memfd(j_out, 4096)
        result.setdefault("candidate_output", _read_memfd(p_out, lim.get("output", 1 << 16)))
        try:
            wire.send(self.chan, result)
        except OSError:
            pass
        for d in self.tmpdirs:
            _rmtree(d)

    def _run_rpc(self, spec, lim, nonce, jpid, j_ctl, j_ver, ppid, p_ctl, p_st, t0) -> dict:
        status_msgs: list = []
        try:
            wire.send(j_ctl, {"nonce": nonce, "prelude": spec.get("prelude", ""), "test": spec["test"],
                              "remote": spec.get("remote", []), "limits": lim, "seed": spec.get("seed", 0)})
            wire.send(p_ctl, {"program": spec["program"], "limits": lim, "seed": spec.get("seed", 0),
                              "mode": "rpc"})
        except OSError as e:
            self._kill_all([ppid, jpid])
            return {"status": "error", "reason": f"could not start the check ({e})", "isolation": "rpc"}
        verdict, why = self._wait(j_ver, p_st, status_msgs, ppid, lim, t0)
        p_info = self._kill_all([ppid, jpid], primary=ppid)
        setup = status_msgs[0] if status_msgs else None
        res = {"isolation": "rpc", "cpu_s": p_info.get("cpu_s")}
        if isinstance(setup, dict) and "setup_error" in setup:
            res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
            return res
        if why == "cpu" or self.killed_for_cpu:
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
            return res
        if verdict is None:
            if why == "wall":
                res.update(status="timed_out", reason=f"wall-clock limit ({lim['wall']:g} s) exceeded "
                                                      f"(CPU used {p_info.get('cpu_s', 0):.2f} s)", limit="wall")
            else:
                res.update(status="error", reason="the judge ended without a verdict")
            return res
        if not isinstance(verdict, dict) or verdict.get("nonce") != nonce:
            res.update(status="error", reason="the judge's verdict is malformed")
            return res
        st = verdict.get("status")
        for k in ("asserts", "calls"):
            if k in verdict:
                res[k] = verdict[k]
        if st == "passed":
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

    def _wait(self, j_ver, p_st, status_msgs, ppid, lim, t0):
        """Wait for the judge's verdict, polling the candidate's CPU time. Returns (verdict|None, why)."""
        deadline = t0 + lim["wall"]
        cpu_limit = lim["cpu"]
        fds = [j_ver, p_st]
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None, "wall"
            try:
                ready, _, _ = select.select(fds, [], [], min(0.05, deadline - now))
            except InterruptedError:
                continue
            if p_st in ready:
                try:
                    status_msgs.append(wire.recv(p_st))
                except (EOFError, wire.WireError, OSError):
                    fds.remove(p_st)
            if j_ver in ready:
                try:
                    return wire.recv(j_ver), "verdict"
                except (EOFError, wire.WireError, OSError):
                    return None, "judge_died"
            if self._cpu_exceeded(ppid, cpu_limit, t0):
                self.killed_for_cpu = True
                _kill(ppid)
                return None, "cpu"

    def _cpu_exceeded(self, ppid: int, limit: float, t0: float) -> bool:
        """The candidate's CPU time: its own every poll; every 0.5 s (after the first), summed over all its
        descendants too, so that forked children cannot multiply the budget."""
        own = _proc_cpu(ppid)
        if own > limit:
            return True
        now = time.monotonic()
        if now - t0 > 0.5 and now - getattr(self, "_last_scan", 0.0) > 0.5:
            self._last_scan = now
            total = max(own, 0.0) + sum(max(_proc_cpu(k), 0.0) for k in _descendants(ppid))
            return total > limit
        return False

    def _kill_all(self, pids: list[int], primary: int | None = None) -> dict:
        """SIGKILL the given processes (the candidate is its pid namespace's init: its death ends the namespace),
        reap them, then anything else that is left below this supervisor."""
        info: dict = {}
        if primary is not None:
            try:
                # Already dead? Keep its status and CPU time before killing.
                cpu_before = _proc_cpu(primary)
                info["cpu_s"] = round(cpu_before, 4) if cpu_before >= 0 else None
            except Exception:
                pass
        for p in pids:
            if p != primary:
                _kill(p)
        if primary is not None:
            st = None
            try:
                got, st, ru = os.wait4(primary, os.WNOHANG)
                if got == 0:
                    _kill(primary)
                    got, st, ru = os.wait4(primary, 0)
                    info["killed_by_supervisor"] = True
                info["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 4)
            except ChildProcessError:
                st = None
            if st is not None:
                if os.WIFSIGNALED(st):
                    info["signal"] = os.WTERMSIG(st) if not info.get("killed_by_supervisor") else None
                elif os.WIFEXITED(st):
                    info["exit_code"] = os.WEXITSTATUS(st)
        for p in pids:
            if p != primary:
                try:
                    os.waitpid(p, 0)
                except ChildProcessError:
                    pass
        self._sweep()
        return info

    def _sweep(self) -> None:
        """Kill and reap every remaining descendant (orphans are reparented here: we are a subreaper)."""
        for _ in range(200):
            try:
                while True:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
            except ChildProcessError:
                break
            kids = _descendants(os.getpid())
            if self.caps["mode"] == "root" and not self.caps["pid_ns"]:
                for uid in (self.cand_uid, self.judge_uid):
                    _kill_uid(uid)
            for k in kids:
                _kill(k, signal.SIGSTOP)
            for k in kids:
                _kill(k)
            time.sleep(0.001)

    def _run_inprocess(self, spec, lim, nonce, req_reason: str) -> dict:
        """Fallback: the test runs inside the candidate's process (weaker guarantee; see docs/eval.md)."""
        from phitools.eval._judge import rewrite_for_inprocess
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        ppid, p_ctl, p_st, p_out = self._fork_candidate(req_r, resp_w)
        for f in (req_r, resp_w, req_w, resp_r):
            os.close(f)
        t0 = time.monotonic()
        try:
            test_src, n_sites = rewrite_for_inprocess(spec.get("prelude_inprocess", "") + "\n" + spec["test"])
        except SyntaxError as e:
            self._kill_all([ppid], primary=ppid)
            return {"status": "error", "reason": f"test code does not parse: {e}", "isolation": "inprocess"}
        res = {"isolation": "inprocess", "inprocess_reason": req_reason}
        try:
            wire.send(p_ctl, {"program": spec["program"], "limits": lim, "seed": spec.get("seed", 0),
                              "mode": "inprocess"})
        except OSError as e:
            self._kill_all([ppid], primary=ppid)
            res.update(status="error", reason=f"could not start the check ({e})")
            return res
        deadline = t0 + lim["wall"]
        buf = b""
        got_setup = loaded = done = False
        oks = 0
        count = None
        why = None
        sent_test = False
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
                    self._kill_all([ppid], primary=ppid)
                    res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
                    return res
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.decode("ascii", "replace").split()
                if parts[:1] == ["loaded"] and not sent_test:
                    loaded = sent_test = True
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
            if done:
                break
        p_info = self._kill_all([ppid], primary=ppid)
        res["cpu_s"] = p_info.get("cpu_s")
        res["candidate_output"] = _read_memfd(p_out, lim.get("output", 1 << 16))
        if why == "cpu" or self.killed_for_cpu:
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
        elif why == "wall":
            res.update(status="timed_out", reason=f"wall-clock limit ({lim['wall']:g} s) exceeded", limit="wall")
        elif done and count == oks and oks >= 1:
            res.update(status="passed", reason="", asserts=oks)
        elif done and oks == 0:
            res.update(status="error", reason="the test has no assertions")
        elif "reason" in res:
            res["status"] = "failed"
        elif not loaded:
            res.update(self._explain_death(p_info, lim, "the candidate's program did not finish loading"))
        else:
            res.update(self._explain_death(p_info, lim, "the test did not complete"))
        return res


# ---- helpers -------------------------------------------------------------------------------------------
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """utime+stime (+ reaped children) of a process, in seconds; -1 if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
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
            with open(f"/proc/{n}/stat", "rb") as f:
                data = f.read()
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
