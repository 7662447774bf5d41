"""The sandbox against the attacks of issue 10, one test per class. Each test runs its hostile samples among
honest ones and asserts the hostile verdicts, that every honest sample still gets its right verdict, and that
no process of a check or of the run is left (found from outside by uid and namespace).

docs/eval.md ("What is guaranteed") names the test that shows each guarantee.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO
from sandbox_trace import WHERE, RunTrace, check_leftovers, report_of

from phitools.eval.benchmarks import Problem
from phitools.eval.sandbox import Job, Limits, Sandbox

ADD = Problem(
    task_id="t/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    style="humaneval",
    entry_point="add",
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(10, 5) == 15\n",
)
LIMITS = Limits(cpu=1.0, wall=6.0, memory=768 << 20, nproc=32, fsize=1 << 20)
HONEST = "    return a + b\n"


def body(src: str) -> str:
    """Indent a function body."""
    return textwrap.indent(textwrap.dedent(src).strip("\n"), "    ") + "\n"


def reporting(src: str) -> str:
    """A function body that does `src`, then raises its report: what it saw (`seen`) and where it ran."""
    return body(
        WHERE
        + textwrap.dedent(src)
        + '\nimport json\nraise ValueError("REPORT " + json.dumps(dict(seen=seen, **_where())))\n'
    )


def among_honest(sb: Sandbox, jobs: list[Job], workers: int = 2, honest: int = 2) -> list:
    """Run `jobs` between honest samples; assert every honest one passed and that no process of any check is
    left; return the hostile verdicts."""
    good = [ADD.job(HONEST, LIMITS) for _ in range(honest)]
    allj = good[: honest // 2] + list(jobs) + good[honest // 2 :]
    out = {id(j): v for j, v in sb.map(allj, workers=workers)}
    assert [out[id(j)].status for j in good] == ["passed"] * honest, [out[id(j)] for j in good]
    assert check_leftovers(sb) == []
    return [out[id(j)] for j in jobs]


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, seed=0, limits=LIMITS) as s:
        yield s


# ---- 1. no candidate process ever held a test, an expected value, a reference or another sample ---------
MARK = "QZX7"  # every secret below is MARK + a word; the scanner holds the halves apart
SECRETS = {"test": "TESTBODY9401", "expected": "EXPECTED5516", "canonical": "CANONICAL3329", "other": "OTHERSAMPLE8824"}
PROBE = Problem(
    task_id="t/probe",
    prompt='def probe(x):\n    """Return the secret of x."""\n',
    style="humaneval",
    entry_point="probe",
    test=(
        f"# {MARK}{SECRETS['test']}: this comment is test text\n"
        f"def _canonical(x):\n    return '{MARK}{SECRETS['canonical']}'\n"
        f"def check(candidate):\n    assert candidate(1) == '{MARK}{SECRETS['expected']}'\n"
        f"    assert _canonical(1) != candidate(2)\n"
    ),
)

SCANNER = """
import gc, os, sys

HALVES = {halves!r}
CONTROL = ("{mark}", "CONTROL4417")
_keep = "".join(CONTROL)  # built at run time: the scan must find this one (it proves the scan works)


def _hits_in(buf, first, second):
    n, i = 0, buf.find(first)
    while i >= 0:
        if buf[i + len(first):i + len(first) + len(second)] == second:
            n += 1
        i = buf.find(first, i + 1)
    return n


def _scan():
    names = dict(HALVES, control=CONTROL[1])
    objects, texts = [], []
    for f in sys._current_frames().values():  # every frame of every thread, up each stack
        while f is not None:
            objects += [f.f_locals, f.f_globals, f.f_code.co_consts]
            f = f.f_back
    gc.unfreeze()  # the frozen generation too
    objects += gc.get_objects()  # every gc-tracked container
    for o in objects:
        try:
            items = [*o.keys(), *o.values()] if type(o) is dict else \
(list(o) if isinstance(o, (list, tuple, set, frozenset)) else [])
        except Exception:
            continue
        texts += [x for x in items if type(x) in (str, bytes)]
    found = {{}}
    for k, second in names.items():
        n = 0
        for t in texts:
            if type(t) is str:
                n += _hits_in(t, CONTROL[0], second)
            else:
                n += _hits_in(t, CONTROL[0].encode(), second.encode())
        found["objects:" + k] = n
    # and every byte of the process's readable memory, in each encoding CPython stores text in
    mem = {{k: 0 for k in names}}
    import ctypes
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: a process may make its own memory readable to itself
    with open("/proc/self/maps") as m, open("/proc/self/mem", "rb", buffering=0) as f:
        for line in m:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            a, b = (int(x, 16) for x in span.split("-"))
            try:
                f.seek(a)
                data = f.read(b - a)
            except (OSError, OverflowError, ValueError):
                continue
            for k, second in names.items():
                for enc in ("latin-1", "utf-16-le", "utf-32-le"):
                    mem[k] += _hits_in(data, CONTROL[0].encode(enc), second.encode(enc))
            del data
    for k, n in mem.items():
        found["memory:" + k] = n
    return found


def probe(x):
    import json
    raise ValueError("REPORT " + json.dumps(dict(seen=_scan())))
"""


def test_no_candidate_process_ever_held_test_data():
    # The scanner runs as the first check of a fresh sandbox (the slot's first spec was what leaked before),
    # and again after other samples (one carrying its own secret) went through the same slots.
    halves = {k: v for k, v in SECRETS.items()}
    scanner = SCANNER.format(halves=halves, mark=MARK)
    other = f"    # {MARK}{SECRETS['other']}: another sample's completion\n    return None\n"
    lim = Limits(cpu=3.0, wall=20.0, memory=1 << 30)
    with Sandbox(workers=2, limits=lim) as sb:
        tr = RunTrace(sb)
        first = [
            sb.check(
                Job(program=scanner, test=PROBE.test_code(), judge_prelude=PROBE.prompt, remote=["probe"], limits=lim)
            )
        ]
        later = among_honest(
            sb,
            [PROBE.job(other, lim) for _ in range(4)]
            + [
                Job(program=scanner, test=PROBE.test_code(), judge_prelude=PROBE.prompt, remote=["probe"], limits=lim)
                for _ in range(4)
            ],
        )
        tr.note(None)
    for v in first + later[4:]:
        assert v.status == "failed", v
        seen = report_of(v.reason)["seen"]
        assert seen["objects:control"] >= 1 and seen["memory:control"] >= 1, seen  # the scan works
        leaked = {k: n for k, n in seen.items() if n and not k.endswith("control")}
        assert leaked == {}, f"candidate process held {leaked}"
    assert [v.status for v in later[:4]] == ["failed"] * 4
    tr.assert_gone()


# ---- 2. the judge binds only what it defines --------------------------------------------------------------
MBPP_MATH = Problem(
    task_id="t/sphere",
    prompt="",
    style="mbpp",
    test_imports="",
    reference="import math\ndef volume(r):\n    return 4 / 3 * math.pi * r ** 3\n",
    test="assert math.isclose(volume(10), 4188.790204786391, rel_tol=0.001)\nassert abs(volume(1) - 4.18879) < 1e-4\n",
)


def test_judge_binds_only_what_it_defines(sb):
    fake_math = (
        "import types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True, pi=0)\n"
        "import builtins\nabs = lambda x: 0\nbuiltins.abs = abs\n"
        "def volume(r):\n    return -1.0\n"
    )
    jobs = [MBPP_MATH.job(fake_math, LIMITS), MBPP_MATH.job(MBPP_MATH.reference, LIMITS)]
    # An entry point bound to a module object named after modules whose import has effects in the judge
    for name in ("unittest.__main__", "antigravity", "this", "__main__", "os"):
        jobs.append(ADD.job(f"    pass\nimport types\nadd = types.ModuleType({name!r})\n", LIMITS))
    vs = among_honest(sb, jobs)
    assert vs[0].status == "failed" and "math.isclose(volume(10)" in vs[0].reason, vs[0]
    assert vs[1].status == "passed", vs[1]  # the reference (which imports math itself) still passes
    for v in vs[2:]:
        assert v.status == "failed" and "'module' object is not callable" in v.reason, v


# ---- 3. the judge is bounded: size, digits, parse time, memory, CPU; killed from outside when it stalls -----
def raw_answer(payload: str) -> str:
    """A body that answers the judge's call with raw protocol bytes (as a candidate can: the pipe is fd 6)."""
    return body(f"""
        import os, struct, time
        msg = {payload}
        os.write(6, struct.pack(">I", len(msg)) + msg)
        time.sleep(100)
    """)


SORTS = Problem(
    task_id="t/sorted",
    prompt="def rev(xs):\n",
    style="humaneval",
    entry_point="rev",
    test="def check(candidate):\n    assert sorted(candidate([1, 2, 3])) == [1, 2, 3]\n",
)


def test_judge_is_bounded_and_replaced_when_it_stalls(sb):
    lim = Limits(cpu=1.0, wall=4.0, memory=512 << 20)
    n = 200_000  # a set of 200,000 integers with one hash takes the judge ~n**2/2 probes to rebuild: minutes
    cases = {
        "8-million-digit int, hex": ADD.job(body("return 1 << 26_000_000"), lim),
        "8-million-digit int, decimal": ADD.job(raw_answer('b\'{"ok":\' + b"9" * 8_000_000 + b"}"'), lim),
        "hash-colliding set": ADD.job(
            raw_answer(
                f'(\'{{"ok":{{"$s":[\' + ",".join(str((2**61 - 1) * k) for k in range(1, {n})) + "]}}}}").encode()'
            ),
            Limits(cpu=1.0, wall=8.0, memory=512 << 20),
        ),
        "huge lazy range": SORTS.job(body("return range(3 * 10 ** 8)"), lim),
        "60 MB string": ADD.job(body('return "x" * (60 << 20)'), lim),
        "over the message limit": ADD.job(body('return "x" * (70 << 20)'), lim),
        "deep nesting": ADD.job(raw_answer('b\'{"ok":\' + b"[" * 100_000 + b"]" * 100_000 + b"}"'), lim),
    }
    t = time.monotonic()
    vs = among_honest(sb, list(cases.values()))
    took = time.monotonic() - t
    got = dict(zip(cases, vs))
    for name, v in got.items():
        assert v.status in ("failed", "timed_out"), (name, v)
    assert got["hash-colliding set"].status == "timed_out" and "judge" in got["hash-colliding set"].reason
    assert "out of memory" in got["huge lazy range"].reason
    # every case ends within its wall limit plus the judge's grace (two at a time)
    assert took < len(cases) * (lim.wall + 2 + 3) / 2 + 20, took
    assert sb.check(ADD.job(HONEST, LIMITS)).passed  # the replaced judge works


# ---- 4. every process of a check is counted for CPU and killed; nothing of a run survives it -------------
def test_orphans_are_counted_and_killed_and_nothing_survives_the_run():
    lim = Limits(cpu=1.0, wall=40.0, memory=512 << 20, nproc=32)
    burners = body("""
        import os, time
        for _ in range(3):
            if os.fork() == 0:          # double fork: the burners are orphans, reparented away from this process
                os.setsid()
                if os.fork() == 0:
                    while True:
                        pass
                os._exit(0)
        time.sleep(30)                  # would answer right after 30 s, while the orphans burn CPU
        return a + b
    """)
    daemons = reporting("""
        import os, subprocess, threading, time
        threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        for _ in range(2):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    while True:
                        time.sleep(0.01)
                os._exit(0)
        seen = "daemons started"
    """)
    with Sandbox(workers=2, limits=lim) as s:
        tr = RunTrace(s)
        v_burn, v_daemon = among_honest(s, [ADD.job(burners, lim), ADD.job(daemons, lim)])
        rep = report_of(v_daemon.reason)
        tr.note(rep)
        assert check_leftovers(s, rep) == []  # gone at the end of its check, not only at the end of the run
    assert v_burn.status == "timed_out" and v_burn.limit == "cpu", v_burn
    assert v_burn.cpu_s >= lim.cpu, v_burn
    assert v_daemon.status == "failed" and rep["seen"] == "daemons started"
    tr.assert_gone()


KILLED_RUN = """
import json, sys, threading, time
sys.path[:0] = sys.argv[1:3]
from phitools.eval.sandbox import Job, Limits, Sandbox
from sandbox_trace import RunTrace
lim = Limits(cpu=30, wall=60)
sb = Sandbox(workers=2, limits=lim)
prog = ("import os, time\\ndef f():\\n    if os.fork() == 0:\\n        os.setsid()\\n        time.sleep(1000)\\n"
        "    while True:\\n        pass\\n")
for _ in range(2):
    threading.Thread(target=sb.check, args=(Job(program=prog, test="assert f() == 1", remote=["f"]),), \
daemon=True).start()
deadline = time.monotonic() + 60
while True:  # until both checks run: zygote, 2 x (supervisor, slot init, judge, candidate, its child) at least
    tr = RunTrace(sb)
    if len(tr.pids) >= 11 or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(tr.to_json(), flush=True)
time.sleep(1000)
"""


def test_a_killed_run_leaves_nothing(tmp_path):
    # `phitools eval` killed with SIGKILL mid-run, checks in flight: its zygote dies with it, and with the
    # zygote every supervisor, judge, slot init and candidate; the next run removes the cgroups left behind
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(REPO / "src"), str(REPO / "tests")], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        tr = RunTrace.from_json(line)
        assert len(tr.pids) >= 11, tr.pids
    finally:
        proc.kill()
        proc.wait()
    stale = list(tr.cgroup_paths)
    tr.cgroup_paths = []
    tr.assert_gone(timeout=10)
    with Sandbox(workers=1) as s:
        assert s.check(ADD.job(HONEST, LIMITS)).passed
    assert [p for p in stale if os.path.exists(p)] == []


# ---- 5. nothing crosses checks ------------------------------------------------------------------------------
SYSV = """
import ctypes, ctypes.util, errno, os
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY = 0x5EED0A1
def sysv(write):
    out = {}
    flags = 0o1666 if write else 0
    for name, call in (("shm", lambda: libc.shmget(KEY, 4096 if write else 0, flags)),
                       ("sem", lambda: libc.semget(KEY, 1, flags)),
                       ("msg", lambda: libc.msgget(KEY, flags))):
        r = call()
        out[name] = "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    mq = libc.mq_open(b"/phitools-leak", (0o100 | 0o1) if write else 0, 0o600, None)
    out["mq"] = "ok" if mq >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    if write:
        key = libc.syscall(248, b"user", b"phitools-leak", b"secret", 6, -4)  # add_key to the user keyring
    else:
        key = libc.syscall(249, b"user", b"phitools-leak", None, 0)          # request_key
    out["keyring"] = "ok" if key >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    for path in ("/tmp/phitools-leak", "/dev/shm/phitools-leak"):
        if write:
            try:
                open(path, "w").write("secret")
                out[path] = "ok"
            except OSError as e:
                out[path] = errno.errorcode.get(e.errno, "?")
        else:
            out[path] = "ok" if os.path.exists(path) else "ENOENT"
    # pid numbers: the writer starts 40 processes; the pids a reader sees must not show it
    for _ in range(40 if write else 1):
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
    out["pids"] = [os.getpid(), child]
    return out
"""


def test_nothing_crosses_checks():
    if os.uname().machine != "x86_64":
        pytest.skip("the keyring calls below use x86_64 system call numbers")
    lim = Limits(cpu=2.0, wall=8.0, memory=512 << 20)
    writer = reporting(SYSV + "seen = sysv(True)")
    reader = reporting(SYSV + "seen = sysv(False)")
    listener = reporting("""
        import socket, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\\0phitools-leak")
        s.listen(5)
        s.settimeout(4)
        try:
            c, _ = s.accept()
            seen = "somebody connected: " + c.recv(100).decode()
        except OSError:
            seen = "nobody connected"
    """)
    dialer = reporting("""
        import socket, time
        seen = "could not connect"
        t = time.time()
        while time.time() - t < 3:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect("\\0phitools-leak")
                s.sendall(b"hello from another check")
                seen = "connected"
                break
            except OSError:
                time.sleep(0.05)
    """)
    holder = reporting("""
        import os, socket, time
        if os.fork() == 0:  # a daemon that keeps the name bound after the check's own process is done
            os.setsid()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind("\\0phitools-leak")
            s.listen(5)
            time.sleep(60)
            os._exit(0)
        seen, t = "no listener", time.time()
        while time.time() - t < 3:  # report only once the daemon's name answers
            try:
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect("\\0phitools-leak")
                seen = "left a listener"
                break
            except OSError:
                time.sleep(0.02)
    """)
    # one slot: writer, then reader, in the same slot (they used to share its IPC namespace)
    with Sandbox(workers=1, limits=lim) as one:
        tr1 = RunTrace(one)
        vr0, vw, vr = among_honest(one, [ADD.job(reader, lim), ADD.job(writer, lim), ADD.job(reader, lim)], workers=1)
        for v in (vr0, vw, vr):
            tr1.note(report_of(v.reason))
    r0, w, r = report_of(vr0.reason), report_of(vw.reason), report_of(vr.reason)
    assert w["seen"]["shm"] == w["seen"]["sem"] == w["seen"]["msg"] == w["seen"]["mq"] == "ok", w
    assert w["seen"]["/tmp/phitools-leak"] == "ok" and w["seen"]["/dev/shm/phitools-leak"] == "ok", w
    assert w["seen"]["keyring"] in ("ENOSYS", "EPERM"), w  # no keyring at all: it is not per check
    assert r["seen"].pop("pids") == r0["seen"].pop("pids"), (r0, w, r)  # as if the writer had never run
    assert r["seen"] == {
        "shm": "ENOENT",
        "sem": "ENOENT",
        "msg": "ENOENT",
        "mq": "ENOENT",
        "keyring": w["seen"]["keyring"],
        "/tmp/phitools-leak": "ENOENT",
        "/dev/shm/phitools-leak": "ENOENT",
    }, r
    tr1.assert_gone()
    # one slot, one network namespace for all its checks: a name a check left bound goes with its processes
    with Sandbox(workers=1, limits=lim) as one:
        tr1 = RunTrace(one)
        vh, vd = among_honest(one, [ADD.job(holder, lim), ADD.job(dialer, lim)], workers=1, honest=0)
        for v in (vh, vd):
            tr1.note(report_of(v.reason))
    assert report_of(vh.reason)["seen"] == "left a listener", vh
    assert report_of(vd.reason)["seen"] == "could not connect", vd
    tr1.assert_gone()
    # two slots at once: an abstract unix socket bound in one check is not reachable from another
    with Sandbox(workers=2, limits=lim) as two:
        tr2 = RunTrace(two)
        vl, vd = among_honest(two, [ADD.job(listener, lim), ADD.job(dialer, lim)], honest=0)
        for v in (vl, vd):
            tr2.note(report_of(v.reason))
    assert report_of(vl.reason)["seen"] == "nobody connected", vl
    assert report_of(vd.reason)["seen"] == "could not connect", vd
    tr2.assert_gone()


# ---- 6. --memory bounds what a check can pin ------------------------------------------------------------------
PIN = """
import ctypes, ctypes.util, fcntl, os, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.shmat.restype = ctypes.c_void_p
CHUNK = 16 << 20
held = []

def pinned(n):
    print(f"pinned {{n}}", flush=True)

def pin(kind):
    total = 0
    while total < (2 << 30):
        if kind == "memfd":
            fd = os.memfd_create("pin")
            os.write(fd, b"x" * CHUNK)
            held.append(fd)
        elif kind == "sysv":
            sid = libc.shmget(0, CHUNK, 0o1600)
            if sid < 0:
                raise OSError(ctypes.get_errno(), "shmget")
            addr = libc.shmat(sid, None, 0)
            ctypes.memset(addr, 1, CHUNK)
            libc.shmdt(ctypes.c_void_p(addr))
        elif kind == "pipes":
            for _ in range(16):
                r, w = os.pipe()
                fcntl.fcntl(w, 1031, 1 << 20)
                os.set_blocking(w, False)
                try:
                    while True:
                        os.write(w, b"y" * 65536)
                except BlockingIOError:
                    pass
                held.append((r, w))
        elif kind == "tmpfs":
            with open(f"/tmp/pin{{total}}", "wb") as f:
                f.write(b"z" * CHUNK)
        elif kind == "children":
            if os.fork() == 0:
                b = bytearray(CHUNK * 8)
                for i in range(0, len(b), 4096):
                    b[i] = 1
                print(f"child pinned {{len(b)}}", flush=True)
                import time
                time.sleep(100)
            total += CHUNK * 7
        total += CHUNK
        pinned(total)
"""


@pytest.mark.parametrize("kind", ["memfd", "sysv", "pipes", "tmpfs", "children"])
def test_memory_bounds_what_a_check_can_pin(kind):
    memory = 256 << 20
    lim = Limits(cpu=5.0, wall=20.0, memory=memory, fsize=16 << 20, nproc=32)
    prog = body(PIN.format() + f"\npin({kind!r})\nreturn a + b")
    with Sandbox(workers=2, limits=lim) as s:
        tr = RunTrace(s)
        cgroup_memory = "memory" in s.caps.get("cgroup", {})
        (v,) = among_honest(s, [ADD.job(prog, lim)])
        tr.note(None)
    tr.assert_gone()
    assert v.status in ("failed", "timed_out"), v
    lines = [ln.split() for ln in v.candidate_output.splitlines() if ln.startswith(("pinned", "child pinned"))]
    reached = max([int(x[-1]) for x in lines if x[0] == "pinned"] or [0])
    if kind == "children":  # what the children really hold (the parent only counts the ones it started)
        reached = sum(int(x[-1]) for x in lines if x[0] == "child")
    slack = 48 << 20
    if kind == "tmpfs":
        assert reached <= lim.fsize * 2 + (8 << 20), v  # the check's /tmp is a tmpfs of that size
    elif cgroup_memory:
        assert reached <= memory + slack, (reached, v)
    elif kind == "memfd":
        assert reached == 0 and "Function not implemented" in v.reason, v  # refused without a memory cgroup
    elif kind == "sysv":
        assert reached <= memory, v  # the check's IPC namespace allows that much shared memory
    else:
        pytest.skip(f"without a memory cgroup, {kind} is bounded per process only (docs/eval.md)")


# ---- 8. any location: a checkout and a virtual environment under /tmp, or /opt -------------------------------
LOCATED = r'''
import ctypes, os, shutil, subprocess, sys
base, src, where = sys.argv[1:4]
if where == "opt":  # a private mount namespace with a tmpfs on /opt: nothing changes on the host
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.unshare(0x00020000) == 0 and libc.mount(None, b"/", None, 16384 | (1 << 18), None) == 0
    assert libc.mount(b"tmpfs", b"/opt", b"tmpfs", 0, b"mode=755") == 0
os.makedirs(base, exist_ok=True)
checkout = os.path.join(base, "checkout", "src")
shutil.copytree(os.path.join(src, "phitools"), os.path.join(checkout, "phitools"),
                ignore=shutil.ignore_patterns("__pycache__"))
venv = os.path.join(base, "venv")
subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
py = os.path.join(venv, "bin", "python")
site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                      capture_output=True, text=True).stdout.strip()
open(os.path.join(site, "phitools_located.py"), "w").write("WHERE = 'a module of the venv'\n")
check = """
import os, phitools, sys
assert phitools.__file__.startswith(sys.argv[1]), phitools.__file__
from phitools.eval.sandbox import Job, Sandbox
with Sandbox(workers=1) as sb:
    v = sb.check(Job(program="import phitools_located\\ndef f():\\n    return phitools_located.WHERE\\n",
                     test="assert f() == 'a module of the venv'", remote=["f"]))
    print(v.status, v.reason, sb.caps.get("tmp_sources"))
    assert v.passed
    w = sb.check(Job(program="def f():\\n    open('/tmp/x', 'w').write('mine')\\n    return open('/tmp/x').read()\\n",
                     test="assert f() == 'mine'", remote=["f"]))
    print(w.status, w.reason)
    assert w.passed
"""
os.execve(py, [py, "-c", check, checkout], {"PATH": os.environ["PATH"], "PYTHONPATH": checkout})
'''


@pytest.mark.parametrize("where", ["tmp", "opt"])
def test_checkout_and_venv_anywhere(tmp_path, where):
    # the sandbox's own modules, Python's directories and a virtual environment wherever they are (CI runners
    # put checkouts and virtual environments under /tmp, which each check gets fresh)
    if where == "tmp":
        if not str(tmp_path.resolve()).startswith("/tmp/"):
            pytest.skip("the temporary directory is not under /tmp here")
        base = str(tmp_path / "located")
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root for a private mount namespace with a tmpfs on /opt")
        base = "/opt/phitools/located"
    script = tmp_path / "located.py"
    script.write_text(LOCATED)
    proc = subprocess.run(
        [sys.executable, str(script), base, str(REPO / "src"), where],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("passed"), proc.stdout


# ---- 9. output beyond the cap is discarded, not fatal --------------------------------------------------------
def test_output_beyond_the_cap_is_discarded(sb):
    flood = body("""
        import os, sys
        for _ in range(320):
            sys.stdout.write("x" * 65536)
        os.write(2, b"y" * (4 << 20))
        return a + b
    """)
    (v,) = among_honest(sb, [ADD.job(flood, Limits(cpu=3.0, wall=20.0, memory=LIMITS.memory, fsize=1 << 20))])
    assert v.status == "passed", v  # 24 MiB of output, more than the file-size limit: kept 16 KiB, dropped the rest
    assert len(v.candidate_output) < LIMITS.output + 100 and "more bytes not kept" in v.candidate_output


# ---- 10. the unprivileged path, exercised by an unprivileged user -------------------------------------------
NOBODY = textwrap.dedent('''
    """Run pytest as `nobody` in a private mount namespace where only the interpreter, the virtual environment and
    the checkout are reachable through directories nobody may not enter (such as /root): a tmpfs covers each
    such directory and the needed paths are bound back. Nothing on the host changes."""
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    def check(r, what):
        if r != 0:
            raise OSError(ctypes.get_errno(), what)
    need = [os.path.realpath(p) for p in sys.argv[1].split(":")]
    check(libc.unshare(0x00020000), "unshare")
    check(libc.mount(None, b"/", None, 16384 | (1 << 18), None), "private")
    def blocked(path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if not os.stat(d).st_mode & 0o001:
                return d
        return None
    covers = {}
    for p in need:
        d = blocked(p)
        while d is not None:
            covers.setdefault(d, []).append(p)
            break
    for top, paths in sorted(covers.items(), key=lambda kv: len(kv[0])):
        fds = {p: os.open(p, os.O_PATH) for p in paths}
        check(libc.mount(b"tmpfs", top.encode(), b"tmpfs", 0, b"mode=755,size=1m"), "tmpfs " + top)
        for p, fd in fds.items():
            os.makedirs(p, exist_ok=True) if os.path.isdir(f"/proc/self/fd/{fd}") else None
            check(libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, 4096 | 16384, None), "bind " + p)
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    os.environ.update(HOME="/tmp", USER="nobody")
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
''')


@pytest.mark.slow
def test_sandbox_suite_passes_as_an_unprivileged_user(tmp_path):
    if os.environ.get("PHITOOLS_UNPRIVILEGED_RUN"):
        pytest.skip("this is the unprivileged run")
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user (it is one already: this suite ran as one)")
    import sysconfig
    import tempfile

    need = [sys.base_prefix, sys.prefix, str(REPO), sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    helper = tmp_path / "as_nobody.py"
    helper.write_text(NOBODY)
    base = tempfile.mkdtemp(prefix="phitools-nobody-")  # pytest's own temporary folder is closed to others
    os.chown(base, 65534, 65534)
    env = {"PATH": os.environ.get("PATH", ""), "PHITOOLS_UNPRIVILEGED_RUN": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    tests = [str(REPO / "tests" / "eval" / f) for f in ("test_sandbox_adversarial.py", "test_sandbox_hostile.py")]
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(helper),
                ":".join(need),
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                "-o",
                "addopts=-ra --import-mode=importlib",
                "--basetemp",
                base + "/t",
                *tests,
            ],
            cwd=str(REPO),
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and " failed" not in summary, summary
    # the unprivileged run really took the user-namespace path, and ran the battery, not only skips
    assert int(summary.split(" passed")[0].split()[-1]) >= 20, summary


def test_report_pattern():
    # (the helper the tests above read candidates' reports with)
    assert report_of('the candidate raised ValueError: REPORT {"seen": 1} [program line 3]') == {"seen": 1}
    assert json.dumps({"a": 1})
