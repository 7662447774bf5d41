"""The judge (J): runs the benchmark's test against the candidate's answers, in its own process. Stdlib only.

J is forked by its slot's supervisor, runs as the slot's judge uid (in a user namespace: without
capabilities), is not dumpable and not in the candidate's pid namespace, has an address-space limit and a
CPU-time limit per check, and is killed by the supervisor when a check's wall-clock time runs out while it
is still busy (then a new J takes its place). It never runs candidate code.

J executes the benchmark's own test code — the HumanEval `check` function, MBPP's setup and asserts — with
the names the test takes from the program (the entry point, MBPP's functions; decided by the problem, never
by the candidate) bound to proxies. Everything else the test uses is the judge's own: builtins, the trusted
prelude (HumanEval's prompt; MBPP's test imports and the reference solution's imports) and standard-library
modules the test names. Calling a proxy sends plain arguments to the candidate's process and gets a plain
value back (or a handle for anything else); test code can instead ask for the digest of the answer
(`__phitools_digest_call__`) and compare it with the digest of its expected value (`__phitools_digest__`),
for answers too large to send. Expected values, their digests, helper functions and comparisons all stay
here, so:

* the candidate never sees what it is compared with (beyond what the prompt itself shows);
* `==` is Python's own on rebuilt plain data: an object with an always-true `__eq__` cannot get here, and a
  handle refuses to be compared, hashed or tested for truth;
* nothing the candidate sends makes this process import or execute code: a module the candidate binds is
  a handle like any other object;
* the candidate cannot reach this process's memory, frames, or verdict channel, and its exit, however
  clean, is a failed call here, never a pass.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import random
import resource
import socket
import symtable
import sys
import traceback

from phitools.eval import _process as pr
from phitools.eval import _wire as wire

# Standard-library modules a test may name that the judge will not import for it (side effects on import).
_NEVER_IMPORT = frozenset(
    {
        "antigravity",
        "this",
        "__hello__",
        "__phello__",
        "idlelib",
        "turtledemo",
        "turtle",
        "tkinter",
        "__main__",
        "webbrowser",
        "pydoc",
        "sitecustomize",
        "usercustomize",
    }
)
# str <-> int conversions in test code (e.g. a failing assertion's message): bounded, not quadratic-unbounded
JUDGE_INT_DIGITS = 100_000


class CandidateGone(BaseException):
    """The candidate's process ended or broke the protocol mid-test. BaseException: tests cannot catch it."""


class CandidateBrokeProtocol(CandidateGone):
    """The candidate's process sent something that is not an answer (its own reason, whether or not it then
    exits: the supervisor keeps this reason rather than the exit status)."""


class NeedsInProcess(BaseException):
    """The test passes a value that cannot leave this process (a function, an object of a test class)."""


class Uncomparable(BaseException):
    """A handle (a non-plain object from the candidate) was compared, hashed or tested for truth."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a Python builtin one."""


_BUILTIN_EXC = {
    n: getattr(builtins, n)
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), Exception)
}


class Channel:
    """The judge's end of the request/answer pipes to the candidate."""

    def __init__(self, req: int, resp: int):
        self.req = req
        self.resp = resp
        self.calls = 0

    def rpc(self, msg: dict) -> dict:
        """One request and its answer. The supervisor enforces the limits: when it kills the candidate, the
        pipes close and this raises CandidateGone."""
        try:
            wire.send(self.req, msg)
            r = wire.recv(self.resp)
        except (EOFError, BrokenPipeError):
            raise CandidateGone("the candidate's process ended before answering") from None
        except OSError as e:
            raise CandidateGone(f"the candidate's process is unreachable ({e})") from None
        except wire.WireError as e:
            raise CandidateBrokeProtocol(f"the candidate's process sent a malformed answer ({e})") from None
        if not isinstance(r, dict):
            raise CandidateBrokeProtocol("the candidate's process sent a malformed answer")
        return r

    def value(self, r: dict):
        if "raise" in r:
            raise self._exception(r["raise"])
        if "ok" not in r:
            raise CandidateBrokeProtocol("the candidate's process sent a malformed answer")
        try:
            return wire.decode(r["ok"], handle=self.ref)
        except wire.WireError as e:
            raise CandidateBrokeProtocol(f"the candidate's process sent a malformed value ({e})") from None

    def ref(self, d: dict) -> RemoteRef:
        h = d.get("$h")
        if type(h) is not int:
            raise wire.WireError("malformed handle")
        return RemoteRef(self, h, str(d.get("t", "object"))[:200], bool(d.get("c")))

    @staticmethod
    def _exception(info) -> BaseException:
        if not isinstance(info, dict):
            return CandidateError("the candidate raised an exception")
        name = str(info.get("type", "Exception"))[:100]
        msg = str(info.get("msg", ""))
        where = str(info.get("where", ""))
        text = msg + (f" [{where}]" if where else "")
        cls = _BUILTIN_EXC.get(name) if info.get("builtin") else None
        exc: BaseException = CandidateError(f"{name}: {text}")
        if cls is not None:
            try:
                exc = cls(text)
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError wants 5 arguments
                pass
        exc.phitools_from_candidate = True  # type: ignore[attr-defined]
        return exc

    def encode_arg(self, x):
        def handle(obj):
            if type(obj) is RemoteRef:
                return {"$h": object.__getattribute__(obj, "_h")}
            raise NeedsInProcess(f"the test passes a {wire.type_name(obj)} to the candidate")

        return wire.encode(x, handles=handle, coerce=True)

    def call(self, ref: RemoteRef, args: tuple, kwargs: dict):
        enc_args = [self.encode_arg(a) for a in args]
        enc_kw = {k: self.encode_arg(v) for k, v in kwargs.items()}
        self.calls += 1
        r = self.rpc({"op": "call", "f": object.__getattribute__(ref, "_h"), "args": enc_args, "kwargs": enc_kw})
        out = self.value(r)
        mut = r.get("mut")
        if isinstance(mut, dict):
            for key, enc in mut.items():
                target = (
                    kwargs.get(key[2:])
                    if key.startswith("k:")
                    else (args[int(key)] if key.isdigit() and int(key) < len(args) else None)
                )
                try:
                    _apply_mutation(target, wire.decode(enc, handle=self.ref))
                except wire.WireError as e:
                    raise CandidateBrokeProtocol(f"the candidate's process sent a malformed value ({e})") from None
        return out

    def call_digest(self, ref: RemoteRef, args: tuple, kwargs: dict) -> str:
        """Call a function in the candidate's process and get the digest of its answer (_wire.digest), not the
        answer. A non-plain answer has none: it cannot be compared, as a handle cannot."""
        enc_args = [self.encode_arg(a) for a in args]
        enc_kw = {k: self.encode_arg(v) for k, v in kwargs.items()}
        self.calls += 1
        r = self.rpc({"op": "digest", "f": object.__getattribute__(ref, "_h"), "args": enc_args, "kwargs": enc_kw})
        if "raise" in r:
            raise self._exception(r["raise"])
        if "unplain" in r:
            raise Uncomparable(
                f"the candidate's answer is not plain data ({str(r['unplain'])[:300]}); only plain "
                "values (numbers, strings, lists, tuples, dicts, sets, ...) can be compared"
            )
        d = r.get("digest")
        if type(d) is not str or len(d) != 64 or d.strip("0123456789abcdef"):
            raise CandidateBrokeProtocol("the candidate's process sent a malformed answer")
        return d

    def op(self, op: str, ref: RemoteRef, **kw):
        msg = {"op": op, "h": object.__getattribute__(ref, "_h")}
        for k, v in kw.items():
            msg[k] = self.encode_arg(v) if k in ("key", "value") else v
        return self.value(self.rpc(msg))


def _apply_mutation(target, new) -> None:
    if type(target) is list and type(new) is list:
        target[:] = new
    elif type(target) is dict and type(new) is dict:
        target.clear()
        target.update(new)
    elif type(target) is set and type(new) is set:
        target.clear()
        target.update(new)
    elif type(target) is bytearray and type(new) is bytearray:
        target[:] = new


def _refuse(self, *a):
    t = object.__getattribute__(self, "_t")
    raise Uncomparable(
        f"the candidate produced an object of type {t}; only plain values (numbers, strings, "
        "lists, tuples, dicts, sets, ...) can be compared, hashed or tested for truth"
    )


class RemoteRef:
    """Stands for a non-plain object living in the candidate's process: callable, attributes and items
    readable and settable, never compared."""

    __slots__ = ("_ch", "_h", "_t", "_c")

    def __init__(self, ch: Channel, h: int, t: str, c: bool):
        object.__setattr__(self, "_ch", ch)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_t", t)
        object.__setattr__(self, "_c", c)

    def __call__(self, *args, **kwargs):
        return object.__getattribute__(self, "_ch").call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return object.__getattribute__(self, "_ch").op("getattr", self, name=name)

    def __setattr__(self, name, value):
        object.__getattribute__(self, "_ch").op("setattr", self, name=name, value=value)

    def __getitem__(self, key):
        return object.__getattribute__(self, "_ch").op("getitem", self, key=key)

    def __setitem__(self, key, value):
        object.__getattribute__(self, "_ch").op("setitem", self, key=key, value=value)

    def __len__(self):
        n = object.__getattribute__(self, "_ch").op("len", self)
        if type(n) is not int or n < 0:
            raise TypeError("__len__ returned a non-integer")
        return n

    def __iter__(self):
        v = object.__getattribute__(self, "_ch").op("list", self)
        return iter(v if type(v) is list else [])

    def __repr__(self):
        return f"<{object.__getattribute__(self, '_t')} object in the candidate's process>"

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = __contains__ = _refuse


# ---- test code -------------------------------------------------------------------------------------------
class _CountAsserts(ast.NodeTransformer):
    """After every `assert`, call __phitools_ok__(site): a pass is counted only when assertions ran."""

    def __init__(self):
        self.sites = 0

    def visit_Assert(self, node: ast.Assert):
        self.generic_visit(node)
        k = self.sites
        self.sites += 1
        ok = ast.Expr(ast.Call(func=ast.Name("__phitools_ok__", ast.Load()), args=[ast.Constant(k)], keywords=[]))
        return [node, ok]


def _is_eq_compare(test) -> bool:
    return isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)


class _CountAssertsEq(_CountAsserts):
    def visit_Assert(self, node: ast.Assert):
        self.generic_visit(node)
        k = self.sites
        self.sites += 1
        if _is_eq_compare(node.test):
            node.test = ast.Call(
                func=ast.Name("__phitools_eq__", ast.Load()),
                args=[node.test.left, node.test.comparators[0]],
                keywords=[],
            )
        ok = ast.Expr(ast.Call(func=ast.Name("__phitools_ok__", ast.Load()), args=[ast.Constant(k)], keywords=[]))
        return [node, ok]


def instrument(src: str, rewrite_eq: bool = False) -> tuple[ast.Module, int]:
    """Parse test code and insert assertion counters (and, for in-process runs, plain-value `==`)."""
    tree = ast.parse(src, "<test>")
    t = _CountAssertsEq() if rewrite_eq else _CountAsserts()
    tree = t.visit(tree)
    ast.fix_missing_locations(tree)
    return tree, t.sites


def rewrite_for_inprocess(src: str) -> tuple[str, int]:
    """Test source for the in-process fallback: counted assertions, `a == b` compared as plain values."""
    tree, n = instrument(src, rewrite_eq=True)
    return ast.unparse(tree), n


def free_names(src: str) -> set[str]:
    """Global names the code reads but never binds at module level (approximate where code is dynamic)."""
    top = symtable.symtable(src, "<test>", "exec")
    refs: set[str] = set()
    bound: set[str] = set()

    def walk(t) -> None:
        is_module = t.get_type() == "module"
        for s in t.get_symbols():
            name = s.get_name()
            if is_module:
                if s.is_assigned() or s.is_imported() or s.is_namespace():
                    bound.add(name)
                if s.is_referenced():
                    refs.add(name)
            else:
                if s.is_global() and s.is_referenced():
                    refs.add(name)
                if s.is_declared_global() and s.is_assigned():
                    bound.add(name)
        for c in t.get_children():
            walk(c)

    walk(top)
    return refs - bound


def _assert_reason(e: BaseException, lines: list[str]) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<test>"]
    where = ""
    if frames:
        n = frames[-1].lineno or 0
        text = lines[n - 1].strip() if 0 < n <= len(lines) else ""
        where = f" at test line {n}" + (f": {text[:300]}" if text else "")
    msg = str(e)
    return f"assertion failed{where}" + (f" ({msg[:500]})" if msg else "")


def _error_reason(e: BaseException, lines: list[str]) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<test>"]
    where = f" (test line {frames[-1].lineno})" if frames else ""
    if isinstance(e, CandidateError):
        return f"the candidate raised {e}{where}"
    if getattr(e, "phitools_from_candidate", False):
        return f"the candidate raised {type(e).__name__}: {str(e)[:1000]}{where}"
    return f"{type(e).__name__}: {str(e)[:1000]}{where}"


# Kept by a slot's judge across checks, for test code's own use (HumanEval+ caches expected outputs here).
_CACHE: dict = {}


def expected_digest(value) -> str | None:
    """For test code: the digest of a trusted expected value when it is large enough (wire.DIGEST_MIN) to be
    compared by digest and its digest decides `==` (plain data without NaN); None: compare the value itself."""
    try:
        hexd, size, nan = wire.digest(value, coerce=True)
    except (wire.Unencodable, RecursionError):
        return None
    return hexd if size >= wire.DIGEST_MIN and not nan else None


def _digest_call(ch: Channel):
    def digest_call(f, *args, **kwargs) -> str:
        """For test code: the digest of what `f(*args, **kwargs)` returns, computed where it runs."""
        if type(f) is RemoteRef:
            return ch.call_digest(f, args, kwargs)
        out = f(*args, **kwargs)  # not the candidate's function (a builtin it bound, say): it ran here
        try:
            return wire.digest(out, coerce=True)[0]
        except wire.Unencodable as e:
            raise Uncomparable(f"the answer is not plain data ({e})") from None

    return digest_call


# Compiled test code and preludes, by source (a run checks many samples per task): trusted code only.
_COMPILED: dict = {}


def _compiled_test(test: str) -> tuple:
    """(code, assertion sites, free names) of a test, instrumented and compiled once per judge."""
    key = ("test", test)
    if key not in _COMPILED:
        tree, n_sites = instrument(test)
        _remember(key, (compile(tree, "<test>", "exec"), n_sites, frozenset(free_names(test))))
    return _COMPILED[key]


def _compiled(src: str, filename: str):
    key = (filename, src)
    if key not in _COMPILED:
        _remember(key, compile(src, filename, "exec"))
    return _COMPILED[key]


def _remember(key, value) -> None:
    if len(_COMPILED) >= 256:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = value


def _own_module(name: str):
    """A standard-library module the test names, imported by the judge itself (None if not one)."""
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    if name not in stdlib or name in _NEVER_IMPORT:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def judge(spec: dict, ch: Channel) -> dict:
    """Run one test against the candidate's process; returns {status, reason, asserts, calls}.

    status: passed, failed, error, candidate_gone (the candidate's process ended or broke the protocol; the
    supervisor explains why) or needs_inprocess.
    """
    random.seed(spec.get("seed", 0))
    test = spec["test"]
    lines = test.splitlines()
    try:
        code, n_sites, free = _compiled_test(test)
    except SyntaxError as e:
        return {"status": "error", "reason": f"the test code does not parse: {e}"}
    G: dict = {}
    prelude = spec.get("prelude") or ""
    if prelude:
        try:
            exec(_compiled(prelude, "<prompt>"), G)
        except BaseException:  # noqa: BLE001 - a prompt is a stub; what it defines before failing still counts
            pass
    forced = list(spec.get("remote") or [])
    for n in forced:
        G.pop(n, None)
    wanted = (set(free) - set(G) - set(dir(builtins))) | set(forced)
    # Names the test uses that the problem does not say come from the program: the judge's own modules
    for name in sorted(wanted - set(forced)):
        mod = _own_module(name)
        if mod is not None:
            G[name] = mod
            wanted.discard(name)
    names = sorted(wanted)
    r = ch.rpc({"op": "describe", "names": names})
    if "load_error" in r:
        le = r["load_error"] if isinstance(r["load_error"], dict) else {}
        where = f" ({le.get('where')})" if le.get("where") else ""
        return {
            "status": "failed",
            "reason": f"the program raised {le.get('type', 'an exception')}{where}: {str(le.get('msg', ''))[:1000]}",
        }
    described = r.get("names")
    if not isinstance(described, dict):
        return {
            "status": "candidate_gone",
            "reason": "the candidate's process sent a malformed answer",
            "protocol": True,
        }
    for name in names:
        d = described.get(name)
        if not isinstance(d, dict) or "value" not in d:
            continue  # unbound there too: the test gets the NameError the reference harness would
        try:
            G[name] = wire.decode(d["value"], handle=ch.ref)
        except wire.WireError as e:
            return {
                "status": "candidate_gone",
                "reason": f"the candidate's process sent a malformed value ({e})",
                "protocol": True,
            }
    asserts = [0]

    def ok(_site) -> None:
        asserts[0] += 1

    G["__phitools_ok__"] = ok
    G["__phitools_cache__"] = _CACHE
    G["__phitools_digest__"] = expected_digest
    G["__phitools_digest_call__"] = _digest_call(ch)
    counts = lambda: {"asserts": asserts[0], "calls": ch.calls}  # noqa: E731
    try:
        exec(code, G)
    except AssertionError as e:
        return {"status": "failed", "reason": _assert_reason(e, lines), **counts()}
    except (CandidateGone, NeedsInProcess):
        raise
    except Uncomparable as e:
        return {"status": "failed", "reason": str(e), **counts()}
    except MemoryError:
        return {
            "status": "failed",
            "reason": "the judge ran out of memory handling the candidate's answers (MemoryError)",
            **counts(),
        }
    except BaseException as e:  # noqa: BLE001 - any other exception fails the test, as in the reference
        return {"status": "failed", "reason": _error_reason(e, lines), **counts()}
    if ch.calls == 0:
        return {"status": "error", "reason": "the test never called the candidate's code", **counts()}
    if asserts[0] == 0:
        return {"status": "error", "reason": "the test ran no assertions", **counts()}
    return {"status": "passed", "reason": "", "sites": n_sites, **counts()}


def run(spec: dict, ch: Channel) -> dict:
    """judge() with the process-ending outcomes turned into results."""
    try:
        return judge(spec, ch)
    except CandidateGone as e:
        protocol = isinstance(e, CandidateBrokeProtocol)
        return {"status": "candidate_gone", "reason": str(e), "calls": ch.calls, "protocol": protocol}
    except NeedsInProcess as e:
        return {"status": "needs_inprocess", "reason": str(e)}
    except MemoryError:
        return {
            "status": "failed",
            "reason": "the judge ran out of memory handling the candidate's answers (MemoryError)",
            "calls": ch.calls,
        }


# ---- the judge process -----------------------------------------------------------------------------------
J_SOCK = 3


def serve(sock_fd: int, uid: int | None, workdir: str, memory: int) -> None:
    """J's main loop: for each check, the candidate's request/answer pipes and the spec arrive on the socket
    from the supervisor; the result goes back on it. Never returns."""
    try:
        pr.die_with_parent()
        pr.name("judge")
        pr.arrange_fds({J_SOCK: sock_fd})
        os.chdir(workdir)
        pr.set_limits([(resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0)])
        pr.become(uid)
        pr.not_dumpable()
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(JUDGE_INT_DIGITS)
        sock = socket.socket(fileno=J_SOCK)
        while True:
            msg, fds, _f, _a = socket.recv_fds(sock, 16, 2)
            if not msg or len(fds) != 2:
                break
            spec = wire.recv(J_SOCK)
            _cpu_budget(float(spec["limits"]["wall"]))
            try:
                result = run(spec, Channel(fds[0], fds[1]))
            finally:
                for f in fds:
                    os.close(f)
            wire.send(J_SOCK, result)
    except BaseException:  # noqa: BLE001 - the supervisor sees the socket close and starts another judge
        pass
    os._exit(0)


def _cpu_budget(seconds: float) -> None:
    """The kernel ends this process if this check's judging takes more CPU time than `seconds`."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(ru.ru_utime + ru.ru_stime + seconds) + 1
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    except (ValueError, OSError):
        pass
