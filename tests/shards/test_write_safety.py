"""Writers never destroy what they read or what others write (issue 11, item 2)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_phitools

from phitools.errors import BusyError, DataError, UsageError
from phitools.shards import RecordReader, RecordWriter, parse_shard
from phitools.shards import commit as commit_mod
from phitools.shards.complete import inspect_output
from phitools.shards.ownership import hostname, pid_namespace, temp_files


def _write(out, ids, shard=None, shard_size="3"):
    with RecordWriter(out, tool="t", shard_size=shard_size, shard=parse_shard(shard)) as w:
        for i in ids:
            w.write({"id": i, "text": f"t{i}"})


def _ids(path, **kw):
    return [r["id"] for r in RecordReader([path], **kw)]


def _visible(d):
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


def test_output_overlapping_its_input_is_swapped_in_at_the_end(tmp_path):
    c = tmp_path / "c"
    _write(c, range(10))
    # cat c -o c, re-sharded: the reader reads the old shards while the writer writes hidden temps
    with RecordWriter(c, tool="cat", shard_size="4") as w:
        for r in RecordReader([c]):
            w.write(r)
    assert _ids(c) == list(range(10))
    assert _visible(c) == ["manifest.json", "part-00000.jsonl.zst", "part-00001.jsonl.zst", "part-00002.jsonl.zst"]
    assert json.loads((c / "manifest.json").read_text())["stats"]["records_out"] == 10
    assert inspect_output(c).complete


def test_cli_cat_and_label_in_place(tmp_path):
    c = tmp_path / "c"
    _write(c, range(7))
    r = run_phitools("cat", c, "-o", c, "--shard-size", "2", "-q")
    assert r.returncode == 0, r.stderr
    assert _ids(c) == list(range(7))
    r = run_phitools("label", c, "-o", c, "--backend", "heuristic", "-q")
    assert r.returncode == 0, r.stderr
    recs = list(RecordReader([c]))
    assert [x["id"] for x in recs] == list(range(7)) and all("label" in x for x in recs)


def test_failure_before_commit_keeps_the_previous_output(tmp_path):
    c = tmp_path / "c"
    _write(c, range(10))
    before = {p.name: p.read_bytes() for p in c.iterdir()}
    with pytest.raises(RuntimeError):
        with RecordWriter(c, tool="t", shard_size="2") as w:
            for i in range(7):
                w.write({"id": 100 + i})
            raise RuntimeError("boom")
    assert {p.name: p.read_bytes() for p in c.iterdir()} == before  # no temp left either
    assert _ids(c) == list(range(10))


def test_failure_while_writing_the_manifest_leaves_nothing(tmp_path, monkeypatch):
    c = tmp_path / "c"
    _write(c, range(10))

    def disk_full(path, **kw):
        open(commit_mod.ownership.tmp_path(path), "wb").write(b"{")  # a half-written manifest temp
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("phitools.shards.write.write_manifest", disk_full)
    with pytest.raises(OSError):
        with RecordWriter(c, tool="t", shard_size="4") as w:
            for i in range(6):
                w.write({"id": 100 + i})
    assert list(c.iterdir()) == []  # no shard, no temp file, no manifest: nothing a later stage could read
    with pytest.raises(DataError, match="no record shards"):
        RecordReader([c])


def test_failure_while_writing_a_file_manifest_leaves_no_file(tmp_path, monkeypatch):
    f = tmp_path / "x.jsonl.zst"
    monkeypatch.setattr(
        "phitools.shards.write.write_manifest",
        lambda path, **kw: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
    )
    with pytest.raises(OSError):
        with RecordWriter(f, tool="t") as w:
            w.write({"id": 1})
    assert list(tmp_path.iterdir()) == []


def test_second_writer_of_one_slice_is_refused(tmp_path):
    c = tmp_path / "c"
    w1 = RecordWriter(c, tool="t")
    with pytest.raises(UsageError, match="already writes there"):
        RecordWriter(c, tool="t")
    with pytest.raises(UsageError, match="already writes there"):
        RecordWriter(c, tool="t", shard=parse_shard("0/1"))  # --shard 0/1 is the unsharded slice: same lock
    w1.write({"id": 1})
    w1.close()


def test_concurrent_writer_in_another_process_is_refused(tmp_path):
    c = tmp_path / "c"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from phitools.shards import RecordWriter; "
            f"w = RecordWriter({str(c)!r}, tool='t'); w.write({{'id': 1}}); "
            "print('ready', flush=True); sys.stdin.read(); w.close()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"ready"
        with pytest.raises(BusyError, match=rf"another phitools process is writing it now \(pid {holder.pid} on"):
            RecordWriter(c, tool="t")
        r = run_phitools("cat", "-", "-o", c, input=b'{"id": 2}\n')
        assert r.returncode == 1 and b"another phitools process is writing it now" in r.stderr
    finally:
        holder.communicate(b"", timeout=60)
    assert holder.returncode == 0 and _ids(c) == [1]


def test_killed_writer_releases_its_lock_and_its_temps_are_cleaned(tmp_path):
    c = tmp_path / "c"
    _write(c, range(5))
    proc = subprocess.Popen(
        [sys.executable, "-m", "phitools", "cat", "-", "-o", str(c), "--shard-size", "2", "-q"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"".join(b'{"id": %d}\n' % i for i in range(100, 105)))
    proc.stdin.flush()
    for _ in range(600):
        if len(temp_files(c)) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    left = temp_files(c)
    assert left and all(t.stale() for t in left)
    assert _ids(c) == list(range(5))  # the killed run never touched the previous output
    fresh = tmp_path / "fresh"  # a first run killed: nothing but its temps, and a reader says so
    fresh.mkdir()
    for t in left:
        (fresh / t.path.name).write_bytes(b"x")
    with pytest.raises(DataError, match=rf"no finished output yet: only {len(left)} temporary file"):
        RecordReader([fresh])
    _write(c, range(20, 23))  # the next writer of the slice takes the lock and removes the dead writer's temps
    assert temp_files(c) == [] and _ids(c) == [20, 21, 22]


@pytest.mark.parametrize(
    "who,removed",
    [
        (lambda: f"{hostname()}-{pid_namespace()}-999999999", True),  # this host, pid gone: stale
        (lambda: f"{hostname()}-{pid_namespace()}-{os.getppid()}", False),  # alive
        (lambda: f"othernode-{pid_namespace()}-999999999", False),  # another node never looks dead
        (lambda: f"{hostname()}-{pid_namespace() + 1}-999999999", False),  # another pid namespace neither
    ],
)
def test_only_provably_stale_temps_are_removed(tmp_path, who, removed):
    c = tmp_path / "c"
    c.mkdir()
    t = c / f".part-00000.jsonl.zst.tmp-{who()}"
    t.write_bytes(b"x")
    other_slice = c / f".part-00001-of-00002-00000.jsonl.zst.tmp-{hostname()}-{pid_namespace()}-999999999"
    other_slice.write_bytes(b"x")
    _write(c, [1])
    assert t.exists() is not removed
    assert other_slice.exists()  # another slice's temps are that slice's business


def test_other_n_is_refused_at_start_and_at_commit(tmp_path):
    c = tmp_path / "c"
    _write(c, range(4))
    with pytest.raises(UsageError, match="another --shard N"):
        RecordWriter(c, tool="t", shard=parse_shard("0/2"))
    d = tmp_path / "d"
    w = RecordWriter(d, tool="t", shard=parse_shard("0/2"))
    w.write({"id": 1})
    _write(d, [9])  # an unsharded run committed meanwhile
    with pytest.raises(UsageError, match="another --shard N"):
        w.close()
    assert _ids(d) == [9] and temp_files(d) == []


def test_rerun_removes_shards_a_killed_commit_left(tmp_path):
    c = tmp_path / "c"
    _write(c, range(9))
    (c / "part-00007.jsonl.zst").write_bytes((c / "part-00000.jsonl.zst").read_bytes())  # this slice's name, unlisted
    (c / "notes.txt").write_text("mine")
    _write(c, range(2))
    assert _visible(c) == ["manifest.json", "notes.txt", "part-00000.jsonl.zst"]


def test_a_lock_on_a_file_its_previous_holder_removed_is_taken_again(tmp_path, monkeypatch):
    from phitools.shards import ownership

    path = tmp_path / ".lock"
    real_open = os.open
    calls = []

    def open_then_holder_releases(p, flags, *a):
        fd = real_open(p, flags, *a)
        if not calls:  # between our open and our flock the previous holder removed the file and let go
            os.unlink(p)
        calls.append(p)
        return fd

    monkeypatch.setattr(ownership.os, "open", open_then_holder_releases)
    lock = ownership.Lock(path, what="t")
    try:
        assert len(calls) == 2  # it noticed, and locked the file that is there now
        assert os.fstat(lock.fd).st_ino == os.stat(path).st_ino
    finally:
        lock.release()


def test_kill_during_the_commit_leaves_the_slice_unfinished_not_mixed(tmp_path):
    c = tmp_path / "c"
    _write(c, range(9), shard_size="3")
    code = f"""
import os
from phitools.shards import RecordWriter, commit
real, n = os.replace, []
def dying_replace(a, b):
    n.append(a)
    if len(n) == 2:
        os._exit(9)  # like kill -9 halfway through the swap
    real(a, b)
commit.os.replace = dying_replace
with RecordWriter({str(c)!r}, tool="t", shard_size="3") as w:
    for i in range(100, 106):
        w.write({{"id": i, "text": "new"}})
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == 9
    rep = inspect_output(c)
    assert not rep.complete and [p.kind for p in rep.problems] == ["no_manifest"]  # refused, never read as whole
    with pytest.raises(DataError, match="did not finish"):
        RecordReader([c])
    _write(c, [7])  # the next run of the slice cleans up what the killed commit left
    assert _ids(c) == [7] and _visible(c) == ["manifest.json", "part-00000.jsonl.zst"] and temp_files(c) == []


def test_file_output_removes_its_own_stale_temps(tmp_path):
    f = tmp_path / "x.jsonl.zst"
    stale = tmp_path / f".x.jsonl.zst.tmp-{hostname()}-{pid_namespace()}-999999999"
    stale.write_bytes(b"half")
    foreign = tmp_path / f".x.jsonl.zst.tmp-othernode-{pid_namespace()}-999999999"
    foreign.write_bytes(b"half")
    with RecordWriter(f, tool="t") as w:
        w.write({"id": 1})
    assert not stale.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [foreign.name, "x.jsonl.zst", "x.jsonl.zst.manifest.json"]
    )


def _unshare_works() -> bool:
    import shutil

    if not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return p.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare --pid (root or user namespaces)")
def test_a_writer_in_another_pid_namespace_is_never_taken_for_dead(tmp_path, monkeypatch):
    """The issue's experiment: a second pid namespace stands in for another node, where our /proc cannot see."""
    from phitools.shards import ownership

    c = tmp_path / "c"
    other = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            "import sys; from phitools.shards import RecordWriter; "
            f"w = RecordWriter({str(c)!r}, tool='t', shard_size='1'); [w.write({{'id': i}}) for i in range(3)]; "
            "print('ready', flush=True); sys.stdin.read(); w.close()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert other.stdout.readline().strip() == b"ready"
        theirs = temp_files(c)
        assert len(theirs) >= 2 and all(t.pidns != pid_namespace() and not t.stale() for t in theirs)
        with pytest.raises(BusyError):  # flock works across pid namespaces
            RecordWriter(c, tool="t")
        # a node whose locks do not reach us: even then its temp files are left alone
        monkeypatch.setattr(ownership.fcntl, "flock", lambda fd, op: None)
        w = RecordWriter(c, tool="t")
        assert all(t.path.exists() for t in theirs)
        w.abort()
    finally:
        other.communicate(b"", timeout=60)
    assert other.returncode == 0  # it committed: nothing of its was removed under it
    assert _ids(c) == [0, 1, 2]
