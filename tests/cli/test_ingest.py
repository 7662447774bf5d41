"""`phitools ingest` through real subprocesses."""

from __future__ import annotations

import json

from conftest import run_phitools


def _own_copy(src, tmp_path):
    """Tests that add files work on a private copy (stdlib_small is shared by the whole session)."""
    import shutil

    dst = tmp_path / "lib"
    shutil.copytree(src, dst)
    return dst


def _records(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_ingest_stdout_and_dir_agree(stdlib_small, tmp_path):
    stdlib_small = _own_copy(stdlib_small, tmp_path)
    (stdlib_small / "blob.py").write_bytes(b"\x00\x01binary")
    (stdlib_small / "empty.py").write_bytes(b"")
    out = run_phitools("ingest", stdlib_small, check=True)
    recs = _records(out.stdout)
    assert len(recs) == 60 and all(set(r) == {"id", "text", "meta"} for r in recs)
    assert recs[0]["id"].startswith("lib/") and recs[0]["meta"]["lang"] == "python"
    run_phitools("ingest", stdlib_small, "-o", tmp_path / "c", check=True)
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["stats"]["records_out"] == 60 and m["stats"]["dropped"] == {"binary": 1, "empty": 1}
    back = run_phitools("cat", tmp_path / "c", check=True)
    assert back.stdout == out.stdout


def test_ingest_filters_dedup_and_shards(stdlib_small, tmp_path):
    stdlib_small = _own_copy(stdlib_small, tmp_path)
    first = sorted(stdlib_small.glob("*.py"))[0]
    (stdlib_small / "copy_of_first.py").write_bytes(first.read_bytes())
    full = _records(run_phitools("ingest", stdlib_small, "--dedup", check=True).stdout)
    assert len(full) == 60
    assert "lib/copy_of_first.py" not in {r["id"] for r in full}
    nodedup_parts = [
        _records(run_phitools("ingest", stdlib_small, "--shard", f"{k}/3", check=True).stdout) for k in range(3)
    ]
    whole = _records(run_phitools("ingest", stdlib_small, check=True).stdout)
    assert sorted(r["id"] for p in nodedup_parts for r in p) == sorted(r["id"] for r in whole)
    only = _records(
        run_phitools("ingest", stdlib_small, "--include", "a*.py", "--exclude", "abc.py", check=True).stdout
    )
    assert only and all(r["id"].split("/")[-1].startswith("a") and not r["id"].endswith("/abc.py") for r in only)


def test_ingest_missing_path_is_a_one_line_error(tmp_path):
    out = run_phitools("ingest", tmp_path / "nope")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().count("\n") == 1 and "nope" in out.stderr.decode()


def test_broken_pipe_is_quiet(stdlib_small):
    import subprocess
    import sys

    p = subprocess.run(
        f"{sys.executable} -m phitools ingest {stdlib_small} | head -n 1", shell=True, capture_output=True
    )
    assert p.returncode == 0 and p.stderr == b"" and p.stdout.count(b"\n") == 1
    p = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m phitools ingest {stdlib_small} | head -c 10"],
        capture_output=True,
    )
    assert p.stderr == b"" and p.returncode == 0


def test_special_files_are_skipped_and_counted(tmp_path):
    import os

    d = tmp_path / "src"
    d.mkdir()
    (d / "ok.py").write_text("x = 1\n")
    os.mkfifo(d / "fifo.py")  # reading it would block forever
    (d / "zero.py").symlink_to("/dev/zero")  # reading it never ends
    (d / "null.py").symlink_to("/dev/null")
    out = run_phitools("ingest", d, "-o", tmp_path / "c", timeout=60)  # a FIFO read would block forever
    assert out.returncode == 0, out.stderr
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["stats"]["records_out"] == 1 and m["stats"]["dropped"] == {"special_file": 3}
    named = run_phitools("ingest", d / "fifo.py", timeout=60)
    assert named.returncode == 0 and named.stdout == b""


def test_dedup_with_shard_gives_the_unsharded_answer(stdlib_small, tmp_path):
    stdlib_small = _own_copy(stdlib_small, tmp_path)
    files = sorted(stdlib_small.glob("*.py"))
    for i, f in enumerate(files[:12]):  # twelve copies, spread over the listing order
        (stdlib_small / f"zz_copy_{i}.py").write_bytes(f.read_bytes())
    whole = _records(run_phitools("ingest", stdlib_small, "--dedup", check=True).stdout)
    parts = []
    for k in range(3):
        run_phitools("ingest", stdlib_small, "--dedup", "--shard", f"{k}/3", "-o", tmp_path / "p", check=True)
    parts = _records(run_phitools("cat", tmp_path / "p", check=True).stdout)
    assert len(whole) == 60
    assert sorted(r["id"] for r in parts) == sorted(r["id"] for r in whole)
    m = json.loads((tmp_path / "p" / "manifest-00000-of-00003.json").read_text())
    assert m["ingest"]["shard_by"].startswith("file size")


def test_special_files_are_never_opened(tmp_path, monkeypatch):
    """Opening a device can act on it (a tape rewinds, a serial line hangs up): skip it from its stat alone."""
    import os

    from phitools.steps import ingest as I

    d = tmp_path / "src"
    d.mkdir()
    (d / "ok.py").write_text("x = 1\n")
    os.mkfifo(d / "fifo.py")
    (d / "null.py").symlink_to("/dev/null")
    opened = []
    real_open = os.open
    monkeypatch.setattr(I.os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    stats = I.Stats()
    recs = list(I.ingest_files(I.list_files([d], stats=stats), stats=stats))
    assert [r["id"] for r in recs] == ["src/ok.py"] and stats.dropped == {"special_file": 2}
    assert opened == [str(d / "ok.py")]
