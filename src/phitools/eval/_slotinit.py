"""The slot init (I): the process every candidate of a slot is forked from. Stdlib only.

I is forked by its supervisor before the supervisor has read anything from the parent, so neither I nor any
candidate forked from it has ever held a test, an expected value, a reference solution or another sample's
program: it receives only pipe ends and numeric limits. It is the first process of the slot's pid namespace
(where the kernel allows one). It answers two requests from its supervisor, in order:

  spawn  fork a candidate P with the pipe ends passed along (after the previous check is fully reaped);
         reply with P's pid once forked.
  kill   kill every process of the check (`kill(-1)` from the namespace's init, and the slot's cgroup) and
         reply. Where the slot's cgroup counts CPU time and a pid namespace holds the check, the reply comes
         as soon as everything is signalled (with P's exit status if asked for) and the reaping goes on
         here, in the background; otherwise everything is reaped first, and the reply carries the CPU time
         of every process collected.

Between checks, orphans are collected as they exit (they do not pile up as zombies against the process
limit), and after each check the pid numbering restarts, so that pid numbers tell a check nothing about the
checks before it.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import struct

from phitools.eval import _linux as lx
from phitools.eval import _process as pr


class SlotInit:
    """I: serves spawn/kill requests from its supervisor over a SOCK_SEQPACKET socket until it closes."""

    def __init__(self, sock: socket.socket, caps: dict, cand_uid: int, cg):
        self.sock = sock
        self.caps = caps
        self.cand_uid = cand_uid
        self.cg = cg
        self.is_init = os.getpid() == 1
        # background reaping: only where a pid namespace holds the check and a cgroup counts its CPU time
        self.background = self.is_init and cg is not None and "cpu" in cg.features
        self.tmp: str | None = None  # a per-check /tmp this process made (when candidates cannot make one)
        self.tmp_mounted = False
        self.child: int | None = None
        self.child_status: tuple | None = None  # (wait status, rusage) once collected
        self.collected0 = 0.0  # CPU time collected from children before this check's candidate started
        self.reaping = False  # a check was killed; its processes are still being collected
        self.queued: tuple | None = None  # a spawn request waiting for the reaping to end

    def serve(self) -> None:
        pr.name("init")
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
                lx.mount(
                    "tmpfs", "/run/phitools", "tmpfs", lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV, "size=4k,mode=555"
                )
            except OSError:
                pass
        pr.not_dumpable()
        # A namespace's init gets only the signals it handles: Python handles SIGINT (KeyboardInterrupt), so
        # a candidate could end its slot with it; ignore it (SIGCHLD's handler below only collects children)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below when anything exits
        while True:
            try:
                ready, _, _ = select.select([self.sock, wake_r], [], [], 0.002 if self.reaping else None)
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self._collect()
            if self.reaping:
                self._reap_step()
            if self.sock not in ready:
                continue
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
                if self.reaping:
                    self.queued = (req, fds)
                else:
                    self._spawn(req, fds)
            elif req["op"] == "kill":
                for f in fds:
                    os.close(f)
                self.sock.send(json.dumps(self._kill(bool(req.get("status")), bool(req.get("sync")))).encode())
        if self.queued is not None:
            for f in self.queued[1]:
                os.close(f)
        self._kill(status=False, sync=True)
        os._exit(0)

    def _collect(self) -> None:
        """Reap whatever has exited (P's status is kept for the report)."""
        while True:
            try:
                pid, st, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = (st, ru)

    def _spawn(self, req: dict, fds: list[int]) -> None:
        from phitools.eval import _candidate

        lim = req["limits"]
        self.child_status = None
        self.collected0 = _collected_cpu()
        work = None
        if not self.caps["ns_per_check"]:
            work = self._shared_tmp(int(req.get("tmp_size", 64 << 20)))
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            signal.set_wakeup_fd(-1)
            _candidate.start(self.caps, self.cand_uid, fds, lim, self.cg, work)
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

    def _shared_tmp(self, size: int) -> str:
        """A fresh /tmp made here, for when a candidate cannot mount its own (no per-check mount namespace)."""
        if self.caps["fs_hidden"]:
            opts = f"size={size},mode=700"
            if self.caps["uid_drop"]:
                opts += f",uid={self.cand_uid},gid={self.cand_uid}"
            try:
                lx.mount("tmpfs", "/tmp", "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, opts)
                self.tmp_mounted = True
                return "/tmp"
            except OSError:
                pass
        import tempfile

        self.tmp = tempfile.mkdtemp(prefix="phitools-sandbox-")
        if self.caps["uid_drop"]:
            os.chown(self.tmp, self.cand_uid, self.cand_uid)
        return self.tmp

    def _signal_all(self) -> None:
        if self.is_init:
            try:
                os.kill(-1, signal.SIGKILL)  # from a namespace's init: every process in it but this one
            except ProcessLookupError:
                pass
        if self.cg is not None:
            self.cg.kill(wait=False)

    def _kill(self, status: bool, sync: bool) -> dict:
        """Kill every process of the check; report P's exit status (waiting for it if `status`), and, when
        `sync` or reaping cannot be left to the background, reap everything first."""
        if self.reaping:
            self._reap_all()
        pid = self.child
        info: dict = {"op": "killed"}
        alive = False  # still running when signalled here: its end is ours, not its own
        if pid is not None and self.child_status is None:
            try:
                got, st, ru = os.wait4(pid, os.WNOHANG)
                if got:
                    self.child_status = (st, ru)
                else:
                    alive = True
            except ChildProcessError:
                pass
        self._signal_all()
        if alive and (status or sync or not self.background):
            try:
                _, st, ru = os.wait4(pid, 0)
                self.child_status = (st, ru)
            except ChildProcessError:
                pass
        if pid is not None and self.child_status is not None:
            st, ru = self.child_status
            info["p_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 4)
            if os.WIFSIGNALED(st) and not alive:
                info["signal"] = os.WTERMSIG(st)
            elif os.WIFEXITED(st):
                info["exit_code"] = os.WEXITSTATUS(st)
        if sync or not self.background:
            self._reap_all()
            if pid is not None:
                info["collected_cpu_s"] = round(_collected_cpu() - self.collected0, 4)
        else:
            self.reaping = True  # the rest goes on in serve(); a spawn request waits for it
        self.child = None
        return info

    def _reap_all(self) -> None:
        """Kill and reap until nothing of the check is left (new forks included), then tidy up."""
        for _ in range(1000):
            if self.is_init:
                self._signal_all()
            else:
                if self.cg is not None:
                    self.cg.kill()
                if self.caps["uid_drop"]:
                    pr.kill_uid(self.cand_uid)
                kids = pr.descendants(os.getpid())
                for k in kids:
                    pr.kill(k, signal.SIGSTOP)
                for k in kids:
                    pr.kill(k)
            try:
                while os.waitpid(-1, 0 if self.is_init else os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                break
        self._tidy()

    def _reap_step(self) -> None:
        """Background reaping: collect what has exited, signal anything forked since, finish when none is left."""
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            self._tidy()
            return
        self._signal_all()

    def _tidy(self) -> None:
        """After a check: nothing of it is left. Reset what the next check would otherwise inherit."""
        self.reaping = False
        if self.cg is not None and self.cg.procs():
            self.cg.kill()  # a process of the check outside this pid namespace (none is expected)
        if self.tmp_mounted:
            try:
                lx.umount2("/tmp", lx.MNT_DETACH)
            except OSError:
                pass
            self.tmp_mounted = False
        if self.tmp:
            pr.rmtree(self.tmp)
            self.tmp = None
        if self.is_init:
            _reset_pids()
        if self.queued is not None:
            req, fds = self.queued
            self.queued = None
            self._spawn(req, fds)


def _collected_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _reset_pids() -> None:
    """Restart the namespace's pid numbering (the next process is pid 2 again): pid numbers must not tell a
    check how many processes the checks before it started."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write("1")
    except OSError:
        pass
