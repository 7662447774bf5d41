"""The candidate's side of a check (P, the sandboxed process). Stdlib only.

`start` turns a fresh fork of the slot init into the candidate's process: the slot's cgroup (and network
namespace), its own IPC and mount namespaces with an empty /tmp, an unprivileged uid (or no capabilities in a user
namespace), a seccomp filter, resource limits. `main` then runs the program (prompt + completion, or the
MBPP code) once and answers the judge's requests: describe a name, call a function with plain arguments,
read or set an attribute, index a value, or call a function and send the digest of its answer (an answer
too large to send). Every answer is plain data (see _wire); anything else — a module included — stays here
behind a handle. Nothing P sends is trusted: it is the candidate's answer, and the
judge compares it with values P never sees.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import sys
import traceback

from phitools.eval import _linux as lx
from phitools.eval import _process as pr
from phitools.eval import _wire as wire

ENV = {
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


_FILTERS: dict = {}


def seccomp_filter(deny_memfd: bool):
    """What the candidate may not do, whatever its privileges: use kernel keyrings (they are per uid, not per
    check, and outlive processes), create or enter namespaces (a user namespace of its own would give it
    mounts, and so memory no limit counts), or — when no memory cgroup bounds the check — create memfd files.
    Built once (in the zygote) and inherited."""
    if deny_memfd not in _FILTERS:
        deny = {
            "add_key": errno.ENOSYS,
            "request_key": errno.ENOSYS,
            "keyctl": errno.ENOSYS,
            "unshare": errno.EPERM,
            "setns": errno.EPERM,
            "clone3": errno.ENOSYS,
            "memfd_secret": errno.ENOSYS,
        }
        if deny_memfd:
            deny["memfd_create"] = errno.ENOSYS
        _FILTERS[deny_memfd] = lx.seccomp_fprog(lx.seccomp_program(deny, clone_namespaces_errno=errno.EPERM))
    return _FILTERS[deny_memfd]


def _fresh_tmp(caps: dict, cand_uid: int, size: int) -> str:
    """An empty tmpfs on /tmp in this process's new mount namespace (gone with the check's last process),
    with the Python directories that live under /tmp bound in again, read-only."""
    held = {src: os.open(src, os.O_PATH | os.O_DIRECTORY) for src in caps.get("tmp_sources", [])}
    opts = f"size={size},nr_inodes=16384,mode=700"
    if caps["uid_drop"]:
        opts += f",uid={cand_uid},gid={cand_uid}"
    lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, opts)
    for src, fd in held.items():
        os.makedirs(src, mode=0o755, exist_ok=True)
        via = f"/proc/self/fd/{fd}"
        lx.mount(via, src, None, lx.MS_BIND | lx.MS_REC)
        lx.mount(None, src, None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV)
        os.close(fd)
    return "/tmp"


def _bound_ipc(memory: int) -> None:
    """In the check's own IPC namespace: SysV shared memory at most `memory` bytes, few message queues
    (without a memory cgroup nothing else bounds what they pin)."""
    page = os.sysconf("SC_PAGE_SIZE")
    for name, value in (("shmmax", memory), ("shmall", max(1, memory // page)), ("shmmni", 64), ("msgmni", 16)):
        with open(f"/proc/sys/kernel/{name}", "w") as f:
            f.write(str(value))


def start(caps: dict, cand_uid: int, fds: list[int], lim: dict, cg, work: str | None) -> None:
    """P: set up the process, report on the status pipe, then run the program. Never returns."""
    ctl_r, st_w, req_r, resp_w, out_w = fds
    status = st_w
    try:
        try:
            pr.name("cand")
            if cg is not None:
                cg.attach(0)  # 0: this process; every process it starts is born in the slot's cgroup
            null = os.open(os.devnull, os.O_RDONLY)
            pr.arrange_fds({0: null, 1: out_w, 2: out_w, P_CTL: ctl_r, P_STATUS: st_w, P_REQ: req_r, P_RESP: resp_w})
            status = P_STATUS
            pr.reset_signals()
            os.setsid()
            memory_cgroup = cg is not None and "memory" in cg.features
            if caps["ns_per_check"]:
                lx.unshare(lx.CLONE_NEWIPC | lx.CLONE_NEWNS)  # the network namespace is the slot's
                if not memory_cgroup:
                    _bound_ipc(lim["memory"])
                work = _fresh_tmp(caps, cand_uid, lim["fsize"] * 2 + (8 << 20))
            pr.become(cand_uid if caps["uid_drop"] else None)
            if caps["mode"] != "userns" and (os.geteuid() == 0 or os.getuid() == 0):
                raise PermissionError("refusing to run candidate code as root")
            if caps["seccomp"]:
                lx.install_seccomp(seccomp_filter(deny_memfd=not memory_cgroup))
            pr.set_limits(pr.candidate_rlimits(lim))
            os.chdir(work)
            os.environ.clear()
            os.environ.update(ENV)
            os.environ["HOME"] = os.environ["TMPDIR"] = work
        except BaseException as e:  # noqa: BLE001
            wire.send(status, {"setup_error": f"{type(e).__name__}: {e}"})
            os._exit(1)
        wire.send(P_STATUS, {"setup": "ok"})
        main(P_CTL, P_STATUS, P_REQ, P_RESP)
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


def _safe_str(e: BaseException, cap: int = 2000) -> str:
    try:
        s = str(e)
    except BaseException:  # noqa: BLE001 - str() is candidate code too
        s = "<unprintable>"
    return s if len(s) <= cap else s[:cap] + "..."


def _where(e: BaseException) -> str:
    try:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<candidate>"]
        return f"program line {frames[-1].lineno}" if frames else ""
    except BaseException:  # noqa: BLE001
        return ""


def _exc(e: BaseException) -> dict:
    t = type(e)
    return {
        "type": getattr(t, "__name__", "Exception"),
        "builtin": getattr(t, "__module__", "") == "builtins",
        "msg": _safe_str(e),
        "where": _where(e),
    }


def main(ctl: int, status: int, req: int, resp: int) -> None:
    """Load the program, then serve the judge (or, in-process mode, run the test here)."""
    wire.allow_big_ints()
    load = wire.recv(ctl)
    random.seed(load.get("seed", 0))
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:  # noqa: BLE001
        pass
    program = load["program"]
    mode = load.get("mode", "rpc")
    del load
    # Like the reference harnesses: exec in a fresh dict, so __name__ is not "__main__" and
    # `if __name__ == "__main__":` blocks do not run.
    G: dict = {}
    load_error = None
    try:
        code = compile(program, "<candidate>", "exec")
        exec(code, G)
    except BaseException as e:  # noqa: BLE001 - SystemExit at load is a failure, as in the reference
        load_error = _exc(e)
    if mode == "inprocess":
        _inprocess(G, load_error, ctl, status)
    else:
        _serve(G, load_error, req, resp)
    os._exit(0)


def _serve(G: dict, load_error, req: int, resp: int) -> None:
    handles: dict = {}
    counter = itertools.count(1)

    def mk(obj):
        h = next(counter)
        handles[h] = obj
        return {"$h": h, "t": wire.type_name(obj), "c": bool(callable(obj))}

    def lookup(d):
        h = d.get("$h")
        if type(h) is not int or h not in handles:
            raise wire.WireError("unknown handle")
        return handles[h]

    def enc(v):
        return wire.encode(v, handles=mk, coerce=True)

    def dec(j):
        return wire.decode(j, handle=lookup)

    def handle(msg: dict) -> dict:
        op = msg.get("op")
        if load_error is not None:
            return {"load_error": load_error}
        if op == "describe":
            # a module is an object like any other: it stays here behind a handle (the judge takes its own
            # modules from its own imports, never from what the candidate names)
            return {
                "names": {name: {"value": enc(G[name])} if name in G else {"missing": True} for name in msg["names"]}
            }
        if op == "call":
            f = lookup({"$h": msg["f"]})
            raw_args, raw_kw = msg.get("args", []), msg.get("kwargs", {})
            args = [dec(a) for a in raw_args]
            kwargs = {k: dec(v) for k, v in raw_kw.items()}
            r = f(*args, **kwargs)
            out = {"ok": enc(r)}
            # Arguments the candidate changed in place go back, so tests that inspect them see the change.
            mut = {}
            for i, a in enumerate(args):
                if type(a) in (list, dict, set, bytearray):
                    e = enc(a)
                    if e != raw_args[i]:
                        mut[str(i)] = e
            for k, a in kwargs.items():
                if type(a) in (list, dict, set, bytearray):
                    e = enc(a)
                    if e != raw_kw[k]:
                        mut["k:" + k] = e
            if mut:
                out["mut"] = mut
            return out
        if op == "digest":
            # an answer too large to send: its digest (_wire.digest), for the judge to compare with the digest
            # of the expected value, which stays there. Only plain data has one.
            f = lookup({"$h": msg["f"]})
            r = f(*[dec(a) for a in msg.get("args", [])], **{k: dec(v) for k, v in msg.get("kwargs", {}).items()})
            try:
                return {"digest": wire.digest(r, coerce=True)[0]}
            except wire.Unencodable as e:
                return {"unplain": _safe_str(e, 300)}
        obj = lookup({"$h": msg.get("h")})
        if op == "getattr":
            return {"ok": enc(getattr(obj, msg["name"]))}
        if op == "setattr":
            setattr(obj, msg["name"], dec(msg["value"]))
            return {"ok": None}
        if op == "getitem":
            return {"ok": enc(obj[dec(msg["key"])])}
        if op == "setitem":
            obj[dec(msg["key"])] = dec(msg["value"])
            return {"ok": None}
        if op == "len":
            return {"ok": len(obj)}
        if op == "list":
            return {"ok": enc(list(obj))}
        raise wire.WireError(f"unknown op {op!r}")

    while True:
        try:
            msg = wire.recv(req)
        except (EOFError, OSError):
            return
        try:
            out = handle(msg)
        except BaseException as e:  # noqa: BLE001 - the candidate's exception is its answer
            out = {"raise": _exc(e)}
        try:
            wire.send(resp, out)
        except wire.WireError:
            wire.send(
                resp,
                {
                    "raise": {
                        "type": "OverflowError",
                        "builtin": True,
                        "where": "",
                        "msg": "the answer is larger than the 64 MiB message limit",
                    }
                },
            )
        except OSError:
            return


def _inprocess(G: dict, load_error, ctl: int, status: int) -> None:
    write = os.write
    if load_error is not None:
        write(status, b"loaded\n")
        msg = wire.recv(ctl)
        reason = f"the program raised {load_error['type']}: {load_error['msg']}".replace("\n", "\\n")
        write(status, f"fail {msg['nonce']} {reason}\n".encode("utf-8", "replace"))
        return
    write(status, b"loaded\n")
    msg = wire.recv(ctl)
    nonce = msg["nonce"]
    n = [0]

    def ok(k):
        n[0] += 1
        write(status, f"ok {nonce} {k}\n".encode())

    def eq(a, b):
        try:
            return wire.decode(wire.encode(a, coerce=True)) == wire.decode(wire.encode(b, coerce=True))
        except (wire.Unencodable, wire.WireError, RecursionError):
            return False

    G["__phitools_ok__"] = ok
    G["__phitools_eq__"] = eq
    try:
        exec(compile(msg["test"], "<test>", "exec"), G)
    except BaseException as e:  # noqa: BLE001
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<test>"]
        where = f" (test line {frames[-1].lineno})" if frames else ""
        reason = f"{type(e).__name__}{where}: {_safe_str(e)}".replace("\n", "\\n")
        write(status, f"fail {nonce} {reason}\n".encode("utf-8", "replace"))
        return
    write(status, f"done {nonce} {n[0]}\n".encode())
