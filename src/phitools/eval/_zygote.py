"""The sandbox's zygote (Z): started once per run as a fresh interpreter; forks one supervisor per slot. Stdlib only.

    parent (phitools eval) --unix socket--> Z   never holds a test, a program or a result
      C  supervisor, one per slot (_supervisor.py): holds the checks' specs, never runs test or candidate code
        I  slot init (_slotinit.py): forked by C before C has read anything; first process of the slot's pid
           namespace and of the slot's network namespace; never holds a spec or a program
          P  candidate, one per check (_candidate.py): forked by I; fresh IPC and mount namespaces
        J  judge (_judge.py): forked by C; runs the benchmark's test against P's answers, as its own uid

Z enters the network/IPC/mount namespaces (or, without root, a user namespace holding them), builds the
read-only root (_root.py), creates the run's cgroups (_cgroup.py) and imports everything the other roles
need, all before it reads its first slot request. See docs/eval.md for the guarantees and their tests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from phitools.eval import _linux as lx
from phitools.eval import _process as pr

# Modules candidates commonly import: imported once here so a forked check finds them ready.
PRELOAD = (
    "math",
    "re",
    "string",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "typing",
    "random",
    "hashlib",
    "copy",
    "operator",
    "statistics",
    "fractions",
    "decimal",
    "datetime",
    "json",
    "array",
    "cmath",
    "textwrap",
    "unicodedata",
    "struct",
    "time",
    "numbers",
    "dataclasses",
    "enum",
    "ast",
    "symtable",
    "base64",
    "traceback",
    "io",
    "importlib",
    "contextlib",
    "types",
    "queue",
    "collections.abc",
    "difflib",
    "calendar",
    "pprint",
    "copyreg",
    "weakref",
    "locale",
    "glob",
    "shutil",
    "tempfile",
    "secrets",
)


def main(fd: int) -> None:
    """Zygote entry point: `python -c 'from phitools.eval._zygote import main; main(FD)'`."""
    sock = socket.socket(fileno=fd)
    parent = os.getppid()
    pr.die_with_parent()
    pr.name("zygote")
    if os.getppid() != parent:
        os._exit(0)
    cfg = json.loads(sock.recv(1 << 20))
    # Every module a role needs, imported before the root changes (the checkout may be anywhere, /tmp included)
    from phitools.eval import _candidate, _judge, _slotinit, _supervisor  # noqa: F401

    # phitools' modules came from (or went to) the cache named by PYTHONPYCACHEPREFIX; from here on, imports
    # look for bytecode where Python usually does and write none
    sys.pycache_prefix = None
    sys.dont_write_bytecode = True
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001
            pass

    caps, cgroups = setup(cfg)
    import gc

    gc.collect()
    gc.freeze()  # forked children never traverse (and so never copy-on-write) what the zygote holds
    sock.send(json.dumps(caps).encode())
    try:
        lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass
    children: set[int] = set()
    while True:
        _reap(children)
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
                _supervisor.Supervisor(fds[0], int(req.get("slot", 0)), cfg, caps, cgroups).run()
            except BaseException:  # noqa: BLE001 - a supervisor must never return into the zygote loop
                import traceback

                traceback.print_exc()  # to the zygote's stderr: shown with PHITOOLS_SANDBOX_DEBUG=1
                code = 1
            finally:
                os._exit(code)
        children.add(pid)
        for f in fds:
            os.close(f)
    # The parent is done: supervisors see their connections close and clean up; then the run's cgroups go.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _reap(children, adopted=True):
        time.sleep(0.002)
    for c in children:
        pr.kill(c)
    _reap(children, adopted=True)
    if cgroups is not None:
        cgroups.remove()
    os._exit(0)


def _reap(children: set[int], adopted: bool = False) -> bool:
    """Collect finished supervisors (and, at the end, anything reparented here). True while any is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return False
        if pid == 0:
            return bool(children) or adopted
        children.discard(pid)


def setup(cfg: dict) -> tuple[dict, object]:
    """Enter namespaces, build the sandbox root and the run's cgroups. Returns what is in force (with warnings
    for the rest) and the cgroups (None without).

    Whatever the mode, candidate code never runs as root: as root, every candidate gets a dedicated
    unprivileged uid (`uid_drop`); without root, it runs in a user namespace with no capabilities.
    """
    caps = {
        "mode": "none",
        "uid_drop": False,
        "user_ns": False,
        "net_ns": False,
        "pid_ns": False,
        "mount_ns": False,
        "fs_hidden": False,
        "ipc_ns": False,
        "ns_per_check": False,
        "seccomp": False,
        "cgroup": {},
        "tmp_sources": [],
        "warnings": [],
    }
    warn = caps["warnings"].append
    want = cfg.get("mode", "auto")
    if not lx.available():
        warn("not Linux: only resource limits and a temporary directory isolate candidate code")
        return caps, None
    root = os.geteuid() == 0
    if root:
        caps["uid_drop"] = True  # never negotiable
    outside = int(cfg["uid_base"]) if root and want == "userns" else None
    cgroups = _cgroups(caps, owner=outside)
    caps["seccomp"] = _seccomp_works()
    if not caps["seccomp"]:
        warn(
            "seccomp filters unavailable: candidate code can use kernel keyrings (shared by every process of its "
            "uid), create namespaces of its own and memfd files"
        )
    if want == "none":
        warn(
            "sandbox namespaces disabled (--sandbox-mode none): only resource limits"
            + (" and a dedicated uid" if root else "")
            + " isolate candidate code"
        )
        return caps, cgroups
    if root:
        caps["mode"] = "root"
        for flag, key, what in (
            (lx.CLONE_NEWNET, "net_ns", "candidate code can reach the network"),
            (lx.CLONE_NEWNS, "mount_ns", "the filesystem is not hidden from candidate code"),
            (lx.CLONE_NEWIPC | lx.CLONE_NEWUTS, "ipc_ns", None),
        ):
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
            warn(
                f"unprivileged user namespaces refused ({e}): candidate code runs as you, with network access, "
                "can see your files and signal your processes; only resource limits, a private session and "
                "a temporary directory isolate it (run as root, or allow user namespaces, for the full sandbox)"
            )
            return caps, cgroups
    if caps["mount_ns"]:
        from phitools.eval import _root

        caps["tmp_sources"] = _root.under_tmp(_root.bind_sources())
        try:
            caps["tmp_sources"] = _root.build(cfg.get("hide", []))
            caps["fs_hidden"] = True
        except OSError as e:
            warn(f"could not build the sandbox root ({e}): the filesystem is not hidden from candidate code")
    if outside is not None:
        # The unprivileged path, exercised as root: from here on everything runs in a user namespace whose
        # root is an unprivileged host uid (never host root, whose uid alone opens root-owned files).
        if caps["fs_hidden"]:
            os.chown("/run/phitools", outside, outside)
        _enter_userns_mapped_to(outside)
        caps.update(mode="userns", user_ns=True, uid_drop=False)
    caps["pid_ns"] = _probe(lx.CLONE_NEWPID, pid_one=True)
    if not caps["pid_ns"]:
        warn("no pid namespaces: leftover processes are found through the slot's cgroup or by walking /proc")
    caps["ns_per_check"] = (
        caps["ipc_ns"]
        and caps["net_ns"]
        and caps["mount_ns"]
        and _probe(lx.CLONE_NEWIPC | lx.CLONE_NEWNET | lx.CLONE_NEWNS)
    )
    if not caps["ns_per_check"]:
        warn(
            "no fresh IPC/network namespaces per check: SysV IPC objects, POSIX message queues and abstract "
            "unix sockets a check leaves can be seen by later checks of the same slot"
        )
    return caps, cgroups


def _cgroups(caps: dict, owner: int | None):
    """The run's cgroups, and a warning for each bound that falls back to a weaker one."""
    from phitools.eval._cgroup import RunCgroups

    try:
        cg = RunCgroups(owner=owner)
    except OSError as e:
        caps["warnings"].append(f"no cgroups ({e}): see below")
        cg = None
    feats = cg.features if cg is not None else {}
    caps["cgroup"] = cg.describe() if cg is not None else {}
    warn = caps["warnings"].append
    if cg is not None:
        for p in cg.problems:
            warn(p)
    if "memory" not in feats:
        warn(
            "no memory cgroup (needs root or a delegated cgroup with the memory controller): --memory bounds "
            "each process's address space, the check's /tmp and SysV shared memory; memfd files are refused"
        )
    if "cpu" not in feats:
        warn(
            "no cgroup CPU accounting: a check's CPU time is summed over its live processes and those already "
            "collected by a parent; children of a process that ignores SIGCHLD are not counted once they exit"
        )
    if not feats:
        return None
    return cg


def _seccomp_works() -> bool:
    """Can this process install the sandbox's seccomp filter? (Tried in a throwaway child; both variants are
    built here, once, for every candidate to inherit.)"""
    from phitools.eval._candidate import seccomp_filter

    try:
        seccomp_filter(deny_memfd=False)
        seccomp_filter(deny_memfd=True)
    except OSError:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            lx.prctl(lx.PR_SET_NO_NEW_PRIVS, 1)
            lx.install_seccomp(seccomp_filter(deny_memfd=True))
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


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


def _probe(flags: int, pid_one: bool = False) -> bool:
    """Can a child of this process unshare `flags`? (With pid_one: and is its child pid 1 of the new namespace?)"""
    pid = os.fork()
    if pid == 0:
        try:
            lx.unshare(flags)
            if not pid_one:
                os._exit(0)
            child = os.fork()
            if child == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, st = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(st))
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


__all__ = ["main", "setup", "PRELOAD"]
