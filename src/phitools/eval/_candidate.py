"""The candidate's side of a check (runs in P, the sandboxed process). Stdlib only.

P runs the program (prompt + completion, or the MBPP code) once, then answers the judge's requests: describe
a name, call a function with plain arguments, read or set an attribute, index a value. Every answer is plain
data (see _wire); anything else stays here behind a handle. Nothing P sends is trusted: it is the candidate's
answer, and the judge compares it with values P never sees.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import traceback

from phitools.eval import _wire as wire


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
    return {"type": getattr(t, "__name__", "Exception"), "builtin": getattr(t, "__module__", "") == "builtins",
            "msg": _safe_str(e), "where": _where(e)}


def main(ctl: int, status: int, req: int, resp: int, set_limits) -> None:
    """Load the program, then serve the judge (or, in-process mode, run the test here)."""
    wire.allow_big_ints()
    load = wire.recv(ctl)
    set_limits(load["limits"], candidate=True)
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

    stdlib = getattr(sys, "stdlib_module_names", frozenset())

    def handle(msg: dict) -> dict:
        op = msg.get("op")
        if load_error is not None:
            return {"load_error": load_error}
        if op == "describe":
            out = {}
            for name in msg["names"]:
                if name not in G:
                    out[name] = {"missing": True}
                    continue
                obj = G[name]
                mod = getattr(obj, "__name__", None) if type(obj).__name__ == "module" else None
                if isinstance(mod, str) and mod.split(".")[0] in stdlib:
                    out[name] = {"module": mod}
                else:
                    out[name] = {"value": enc(obj)}
            return {"names": out}
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
            wire.send(resp, {"raise": {"type": "OverflowError", "builtin": True, "where": "",
                                       "msg": "the answer is larger than the 64 MiB message limit"}})
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
