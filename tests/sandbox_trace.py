"""Helpers for the sandbox suites (tests/eval): what is left of a check or of a run, found from outside by uid and
namespace, and the reports hostile candidates raise."""

from __future__ import annotations

import json
import os
import re
import time

from phitools.eval.sandbox import UID_BLOCK, Sandbox


def _ns(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _cmd(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _starttime(pid: int | str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _zygotes() -> list[int]:
    """Live sandbox zygotes (of any run)."""
    out = []
    for n in os.listdir("/proc"):
        try:
            if n.isdigit() and open(f"/proc/{n}/comm").read().strip() == "phitools-zygote":
                out.append(int(n))
        except OSError:
            pass
    return out


def _descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open(f"/proc/{n}/stat", "rb") as f:
                    data = f.read()
                kids.setdefault(int(data[data.rfind(b")") + 2 :].split()[1]), []).append(int(n))
            except (OSError, ValueError, IndexError):
                pass
    out, stack = [], [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


class RunTrace:
    """What identifies a run's processes from outside, captured while its sandbox is open: the zygote and its
    descendants (pid + start time), the zygote's namespaces (user, network, mount: every supervisor, judge and
    slot init shares them), the namespaces its candidates reported (pid, network), and, as root, its uid block.
    After the sandbox closed, none of them may have a process left, nor the run a cgroup."""

    def __init__(self, sb: Sandbox):
        self.root = os.geteuid() == 0
        self.uid_base = sb.uid_base
        z = sb.zygote_pid
        self.zygote_ns = {}
        for kind, cap in (("user", "user_ns"), ("net", "net_ns"), ("mnt", "mount_ns")):
            if sb.caps.get(cap):
                self.zygote_ns[kind] = _ns(z, kind)
        self.pids = {(p, _starttime(p)) for p in [z, *_descendants(z)]}
        self.cgroup_paths = list(sb.caps.get("cgroup", {}).get("paths", []))
        self.reported: list[dict] = []
        self.zygote = z

    def to_json(self) -> str:
        """The trace as JSON (a process that is about to be killed hands it over)."""
        return json.dumps({k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(self).items()})

    @classmethod
    def from_json(cls, text: str) -> RunTrace:
        tr = cls.__new__(cls)
        vars(tr).update(json.loads(text))
        tr.pids = {tuple(x) for x in tr.pids}
        return tr

    def note(self, report: dict | None) -> None:
        """Remember the namespaces a candidate reported (and the run's processes as they are now)."""
        if report:
            self.reported.append(report)
        self.pids |= {(p, _starttime(p)) for p in _descendants(self.zygote)}

    def processes(self) -> list[tuple[int, str]]:
        """Processes of the run still alive."""
        ns = {k: {v} for k, v in self.zygote_ns.items() if v}
        for r in self.reported:
            for k in ("pid", "net"):
                if r.get(k + "_ns"):
                    ns.setdefault(k, set()).add(r[k + "_ns"])
        # processes of other sandboxes still open (say, a module's) are below their own, live, zygote
        others = {p for z in _zygotes() for p in [z, *_descendants(z)]}
        found = []
        for n in os.listdir("/proc"):
            if not n.isdigit() or int(n) == os.getpid():
                continue
            try:
                uid = os.stat(f"/proc/{n}").st_uid
            except OSError:
                continue
            hit = (int(n), _starttime(n)) in self.pids
            hit = hit or (self.root and self.uid_base <= uid < self.uid_base + UID_BLOCK)
            hit = hit or any(_ns(n, k) in v for k, v in ns.items())
            # Without root the namespaces of the sandbox's non-dumpable processes cannot be read; every
            # process of ours inside a nested pid namespace (but its init) is then what a candidate left
            nspid = _nspid(n)
            hit = hit or (
                not self.root and uid == os.getuid() and len(nspid) >= 2 and nspid[-1] != 1 and int(n) not in others
            )
            if hit:
                found.append((int(n), _cmd(n)))
        return found

    def assert_gone(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.processes()
        assert left == [], f"processes of the run outlived it: {left}"
        stale = [p for p in self.cgroup_paths if os.path.exists(p)]
        assert stale == [], f"cgroups of the run outlived it: {stale}"


def _nspid(pid: int | str) -> list[int]:
    """The process's pid in each pid namespace it is in, outermost first (/proc/PID/status is readable by all)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def check_leftovers(sb: Sandbox, report: dict | None = None, timeout: float = 3.0) -> list[tuple[int, str]]:
    """Processes of a finished check still alive: anything below a slot's init (in a pid namespace every process
    descends from its init; found through parent links, which anyone may read) but the fresh candidate each slot
    keeps waiting for its next check; and, where readable, processes in the network namespace the candidate
    reported (the slot's: only the slot's init may stay in it) or, as root, running as its uid.
    Waits up to `timeout` for them to go."""
    deadline = time.monotonic() + timeout
    while True:
        nspids = {p: _nspid(p) for p in _descendants(sb.zygote_pid)}  # read once: a process may exit meanwhile
        inits = [p for p, ns in nspids.items() if len(ns) >= 2 and ns[-1] == 1]
        left = {p for i in inits for p in _descendants(i)} - sb.waiting_candidates
        if report:
            for n in os.listdir("/proc"):
                if not n.isdigit() or int(n) == os.getpid() or int(n) in inits:
                    continue
                try:
                    uid = os.stat(f"/proc/{n}").st_uid
                except OSError:
                    continue
                if (report.get("net_ns") and _ns(n, "net") == report["net_ns"]) or (
                    os.geteuid() == 0 and report.get("uid") and uid == report["uid"]
                ):
                    left.add(int(n))
        out = [(p, _cmd(p)) for p in sorted(left - sb.waiting_candidates)]
        if not out or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


REPORT = re.compile(r"REPORT (\{.*?\})(?: \[|$|\s\(test line)", re.S)


def report_of(reason: str) -> dict | None:
    """The JSON a hostile candidate put in its exception (`raise ValueError("REPORT " + json.dumps(...))`)."""
    m = REPORT.search(reason or "")
    return json.loads(m.group(1)) if m else None


# Candidate code that ends by reporting where it ran: its uid and namespaces (for the leftover checks)
WHERE = """
def _where():
    import os
    out = {"uid": os.getuid()}
    for k in ("pid", "net", "ipc", "mnt", "user"):
        try:
            out[k + "_ns"] = os.stat(f"/proc/self/ns/{k}").st_ino
        except OSError:
            pass
    return out
"""
