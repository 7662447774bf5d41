"""Control groups for the sandbox: what the kernel lets this run use, one directory per run, one per slot. Stdlib only.

A slot's cgroup holds every process of the slot's current check (the candidate, its children, orphans and
double-forked daemons: a process cannot leave a cgroup without write access to cgroup files it cannot even
see). That gives, where available:

  memory  the check's total memory (memfd, shared memory, pipe buffers, tmpfs pages included):
          cgroup v2 memory.max (+ memory.swap.max 0), or v1 memory.limit_in_bytes (+ memsw);
  pids    the check's processes and threads: v2 or v1 pids.max;
  cpu     the check's CPU time, every process counted: v2 cpu.stat (always there), or v1 cpuacct.usage;
  kill    every process at once: v2 cgroup.kill (Linux 5.14+), else each pid listed in cgroup.procs.

Directories are made next to where this process already is in each hierarchy (so whatever limits the caller
runs under still apply), named `phitools-<pid>-<random>` (two runs never share one), and removed when the run
ends. They are opened before the sandbox root hides /sys: every later access goes through directory fds.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import time

_V1_WANTED = ("memory", "pids", "cpuacct")


def _mountinfo() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
                    point = fields[4].replace("\\040", " ")
                    out.append((point, rest[0], set(rest[2].split(","))))
    except OSError:
        pass
    return out


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy: {"": v2 path, "memory": v1 path, ...}."""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for c in parts[1].split(",") if parts[1] else [""]:
                        out[c] = parts[2]
    except OSError:
        pass
    return out


def _read(dirfd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _write(dirfd: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY, dir_fd=dirfd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _exists(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd)
        return True
    except OSError:
        return False


class _Dir:
    """One cgroup directory in one hierarchy (held as a directory fd)."""

    def __init__(self, kind: str, path: str, fd: int):
        self.kind = kind  # "v2" or a v1 controller name
        self.path = path
        self.fd = fd

    def child(self, name: str) -> _Dir:
        try:
            os.mkdir(name, 0o755, dir_fd=self.fd)
        except FileExistsError:
            pass
        return _Dir(self.kind, f"{self.path}/{name}", os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.fd))

    def remove(self, name: str) -> None:
        for _ in range(250):  # a killed process leaves its cgroup a moment after it dies
            try:
                os.rmdir(name, dir_fd=self.fd)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    return
                time.sleep(0.002)

    def procs(self) -> list[int]:
        try:
            return [int(x) for x in _read(self.fd, "cgroup.procs").split()]
        except (OSError, ValueError):
            return []


class RunCgroups:
    """The run's cgroup directories, one per usable hierarchy, and which features they give (`features`)."""

    def __init__(self, owner: int | None = None):
        """Create the run's directories (as root, or inside a delegated subtree). `owner`: a uid to hand them to
        (the unprivileged uid a user namespace will map its root to)."""
        self.name = f"phitools-{os.getpid()}-{secrets.token_hex(4)}"
        self.dirs: dict[str, _Dir] = {}
        self.features: dict[str, str] = {}
        self.problems: list[str] = []
        own = _own_paths()
        for point, fstype, opts in _mountinfo():
            if fstype == "cgroup2":
                if "v2" not in self.dirs and "" in own:
                    self._make_v2(point, own[""], owner)
            else:
                for c in _V1_WANTED:
                    if c in opts and c not in self.dirs and c in own:
                        self._make(c, point + own[c].rstrip("/"), owner)
        v2 = self.dirs.get("v2")
        if v2 is not None:
            for c in ("memory", "pids"):
                if c in _safe_read(v2.fd, "cgroup.subtree_control").split():
                    self.features[c] = "v2"
            self.features["cpu"] = "v2"
            if _exists(v2.fd, "cgroup.kill"):
                self.features["kill"] = "v2"
        for c, feat in (("memory", "memory"), ("pids", "pids"), ("cpuacct", "cpu")):
            if feat not in self.features and c in self.dirs:
                self.features[feat] = "v1"
        for kind in list(self.dirs):  # keep only hierarchies that give something
            used = kind == "v2" or self.features.get({"cpuacct": "cpu"}.get(kind, kind)) == "v1"
            if not used:
                self._drop(kind)
        if owner is not None:
            self._move_in(owner)

    def _move_in(self, owner: int) -> None:
        """Move this process into a `zygote` leaf of the run's cgroups. Moving a process between two cgroups
        takes write access to the cgroup.procs of their closest common ancestor: for an unprivileged owner
        to move candidates into slot cgroups, they must start inside the run's own directory."""
        for kind, d in list(self.dirs.items()):
            leaf = d.child("zygote")
            try:
                os.chown(leaf.fd, owner, owner)
                for f in ("cgroup.procs", "cgroup.threads", "tasks"):
                    if _exists(leaf.fd, f):
                        os.chown(f, owner, owner, dir_fd=leaf.fd)
                _write(leaf.fd, "cgroup.procs", str(os.getpid()))
            except OSError as e:
                self.problems.append(f"cgroup {kind}: could not enter the run's cgroup ({e.strerror})")
                self._drop(kind)
            finally:
                os.close(leaf.fd)

    def _make_v2(self, point: str, own: str, owner: int | None) -> None:
        """Under this process's own v2 cgroup if the memory controller can be had there; else, as root, under
        the hierarchy's root, where service managers enable memory and pids for their own children (a cgroup
        that holds processes, like our own, cannot pass controllers down); else our own, for cpu and kill."""
        for base in dict.fromkeys([own.rstrip("/"), ""]):
            self._make("v2", point + base, owner)
            d = self.dirs.get("v2")
            if d is None:
                continue
            ctl = set(_safe_read(d.fd, "cgroup.controllers").split())
            want = [c for c in ("memory", "pids") if c in ctl]
            if want:
                try:
                    _write(d.fd, "cgroup.subtree_control", " ".join("+" + c for c in want))
                except OSError as e:
                    self.problems.append(f"cgroup v2: could not enable {', '.join(want)} ({e.strerror})")
            if "memory" in _safe_read(d.fd, "cgroup.subtree_control").split():
                return
            self._drop("v2")
        self._make("v2", point + own.rstrip("/"), owner)

    def _make(self, kind: str, base: str, owner: int | None) -> None:
        try:
            bfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            _clean_stale(bfd)
            os.mkdir(self.name, 0o755, dir_fd=bfd)
            fd = os.open(self.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=bfd)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                self.problems.append(f"cgroup {kind} at {base}: {e.strerror}")
            return
        finally:
            os.close(bfd)
        if owner is not None:
            try:
                os.chown(fd, owner, owner)
                for f in os.listdir(fd):
                    if f in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks"):
                        os.chown(f, owner, owner, dir_fd=fd)
            except OSError:
                pass
        self.dirs[kind] = _Dir(kind, f"{base}/{self.name}", fd)

    def _drop(self, kind: str) -> None:
        d = self.dirs.pop(kind)
        os.close(d.fd)
        try:
            os.rmdir(d.path)
        except OSError:
            pass

    def describe(self) -> dict:
        """Features in force, and the run's directories (for the summary and for tests)."""
        return {**self.features, "paths": sorted(d.path for d in self.dirs.values())}

    def slot(self, n: int) -> SlotCgroup:
        """The cgroup of slot `n` (created on first use)."""
        return SlotCgroup({k: d.child(f"slot-{n}") for k, d in self.dirs.items()}, self.features)

    def remove(self) -> None:
        """Remove the slot directories and the run's (all processes must be gone)."""
        for kind in list(self.dirs):
            d = self.dirs[kind]
            try:
                names = [n for n in os.listdir(d.fd) if n.startswith("slot-") or n == "zygote"]
            except OSError:
                names = []
            for n in names:
                try:
                    sub = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d.fd)
                except OSError:
                    continue
                if n != "zygote":  # (which holds the caller itself: its parent removes it afterwards)
                    _kill_listed(_Dir(kind, n, sub))
                os.close(sub)
                d.remove(n)
            self._drop(kind)


def _safe_read(fd: int, name: str) -> str:
    try:
        return _read(fd, name)
    except OSError:
        return ""


def _clean_stale(bfd: int) -> None:
    """Remove empty `phitools-<pid>-*` directories whose run is gone (a run killed with SIGKILL leaves them)."""
    try:
        names = os.listdir(bfd)
    except OSError:
        return
    for n in names:
        parts = n.split("-")
        if len(parts) != 3 or parts[0] != "phitools" or not parts[1].isdigit() or os.path.exists(f"/proc/{parts[1]}"):
            continue
        try:
            sub = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=bfd)
        except OSError:
            continue
        try:
            for s in os.listdir(sub):
                if s.startswith("slot-") or s == "zygote":
                    try:
                        os.rmdir(s, dir_fd=sub)
                    except OSError:
                        pass
        finally:
            os.close(sub)
        try:
            os.rmdir(n, dir_fd=bfd)
        except OSError:
            pass


def _kill_listed(d: _Dir) -> None:
    for _ in range(100):
        pids = d.procs()
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)


class SlotCgroup:
    """One slot's cgroup in every usable hierarchy."""

    def __init__(self, dirs: dict[str, _Dir], features: dict[str, str]):
        self.dirs = dirs
        self.features = features
        self._set: dict[str, int] = {}

    def attach(self, pid: int) -> None:
        """Move a process (and so everything it will start) into this slot's cgroups."""
        for d in self.dirs.values():
            _write(d.fd, "cgroup.procs", str(pid))

    def limit(self, memory: int, nproc: int) -> None:
        """Set the memory and process limits for the next check (only what changed is written)."""
        want = {}
        if self.features.get("memory") == "v2":
            want.update({("v2", "memory.max"): memory, ("v2", "memory.swap.max"): 0})
        elif self.features.get("memory") == "v1":
            want[("memory", "memory.limit_in_bytes")] = memory
            if _exists(self.dirs["memory"].fd, "memory.memsw.limit_in_bytes"):
                want[("memory", "memory.memsw.limit_in_bytes")] = memory
        pk = "v2" if self.features.get("pids") == "v2" else "pids"
        if self.features.get("pids"):
            want[(pk, "pids.max")] = nproc
        if self.features.get("memory") == "v1" and ("memory", "memory.memsw.limit_in_bytes") in want:
            # v1 requires memory <= memsw at every moment: raise memsw first when growing, last when shrinking
            order = ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
            if memory < self._set.get("memory.limit_in_bytes", 1 << 62):
                order.reverse()
            items = [(("memory", n), want.pop(("memory", n))) for n in order] + list(want.items())
        else:
            items = list(want.items())
        for (kind, name), value in items:
            if self._set.get(name) == value:
                continue
            try:
                _write(self.dirs[kind].fd, name, str(value))
                self._set[name] = value
            except OSError:
                pass

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process that has been in this cgroup (a running total)."""
        try:
            if self.features.get("cpu") == "v2":
                for line in _read(self.dirs["v2"].fd, "cpu.stat").splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
            elif self.features.get("cpu") == "v1":
                return int(_read(self.dirs["cpuacct"].fd, "cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            pass
        return None

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for going over the memory limit (a running total)."""
        try:
            if self.features.get("memory") == "v2":
                name = "memory.events"
                fd = self.dirs["v2"].fd
            elif self.features.get("memory") == "v1":
                name, fd = "memory.oom_control", self.dirs["memory"].fd
            else:
                return 0
            for line in _read(fd, name).splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def procs(self) -> list[int]:
        """Processes in this slot's cgroup (pids as this process sees them)."""
        seen: set[int] = set()
        for d in self.dirs.values():
            seen.update(d.procs())
        return sorted(seen)

    def kill(self, wait: bool = True) -> None:
        """Kill every process in the slot's cgroup (cgroup.kill also gets processes forked meanwhile) and,
        with `wait`, until none is left."""
        if self.features.get("kill") == "v2":
            try:
                _write(self.dirs["v2"].fd, "cgroup.kill", "1")
            except OSError:
                pass
            if not wait:
                return
        for _ in range(500):
            if not self.procs():
                return
            for d in self.dirs.values():
                _kill_listed(d)
            time.sleep(0.001)
