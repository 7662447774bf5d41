"""Completeness: a stage output knows when it is whole (shards/complete.py, `phitools verify`)."""

from __future__ import annotations

import json

import pytest
from conftest import run_phitools

from phitools.shards import RecordWriter, parse_shard
from phitools.shards.complete import inspect_output


def _write(out, n=10, shard=None, shard_size="4", start=0):
    with RecordWriter(out, tool="t", shard_size=shard_size, shard=parse_shard(shard)) as w:
        for i in range(start, start + n):
            w.write({"id": i, "text": f"t{i}"})


def test_whole_unsharded_and_sharded(tmp_path):
    _write(tmp_path / "a")
    rep = inspect_output(tmp_path / "a")
    assert rep.complete and rep.kind == "records" and rep.parts == 1 and rep.records == 10 and len(rep.listed) == 3
    for k in range(3):
        _write(tmp_path / "b", n=5, shard=f"{k}/3", start=5 * k)
    rep = inspect_output(tmp_path / "b")
    assert rep.complete and rep.parts == 3 and rep.present == [0, 1, 2] and rep.missing == [] and rep.records == 15


def test_missing_part(tmp_path):
    for k in (0, 2):
        _write(tmp_path / "b", n=5, shard=f"{k}/3")
    rep = inspect_output(tmp_path / "b")
    assert not rep.complete and rep.present == [0, 2] and rep.missing == [1]
    assert "2 of 3 --shard parts" in rep.summary() and "missing K = 1" in rep.summary()
    # parts of a 3-way run are not parts of the 4-way run the caller expects
    rep = inspect_output(tmp_path / "b", parts=4)
    assert rep.missing == [0, 1, 2, 3] and "mixed_parts" in {p.kind for p in rep.problems}


def test_nothing_written_yet_with_known_n(tmp_path):
    rep = inspect_output(tmp_path / "nope", parts=3)
    assert not rep.complete and rep.missing == [0, 1, 2]
    (tmp_path / "empty").mkdir()
    assert inspect_output(tmp_path / "empty", parts=2).missing == [0, 1]


def test_no_manifest_means_unfinished(tmp_path):
    _write(tmp_path / "a")
    (tmp_path / "a" / "manifest.json").unlink()
    rep = inspect_output(tmp_path / "a")
    assert not rep.complete and [p.kind for p in rep.problems] == ["no_manifest"]


def test_plain_directory_is_not_checked(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    rep = inspect_output(tmp_path)
    assert rep.kind == "plain" and not rep.problems and rep.plain_files == [tmp_path / "x.jsonl"]


@pytest.mark.parametrize(
    "damage,kind",
    [
        (lambda d: (d / "part-00001.jsonl.zst").unlink(), "missing_file"),
        (lambda d: (d / "part-00001.jsonl.zst").write_bytes(b"short"), "size_mismatch"),
        (lambda d: (d / "part-00009.jsonl.zst").write_bytes(b"stray"), "extra_file"),
        (lambda d: (d / "manifest.json").write_text("{"), "bad_manifest"),
    ],
)
def test_damage_is_named(tmp_path, damage, kind):
    d = tmp_path / "a"
    _write(d)
    damage(d)
    rep = inspect_output(d)
    assert not rep.complete and kind in {p.kind for p in rep.problems}


def test_sha256_checked_unless_quick(tmp_path):
    d = tmp_path / "a"
    _write(d)
    p = d / "part-00000.jsonl.zst"
    b = bytearray(p.read_bytes())
    b[-5] ^= 0xFF  # same size, other bytes
    p.write_bytes(bytes(b))
    assert inspect_output(d, sha256=False).complete
    rep = inspect_output(d)
    assert not rep.complete and [p.kind for p in rep.problems] == ["sha256_mismatch"]


def test_mixed_runs_are_named(tmp_path):
    d = tmp_path / "m"
    _write(d, n=4, shard_size="100")
    # an older layout: a sharded part written beside an unsharded run (the writers now refuse this)
    _write(tmp_path / "other", n=4, shard="0/2", shard_size="100")
    for f in (tmp_path / "other").iterdir():
        f.rename(d / f.name)
    rep = inspect_output(d)
    assert not rep.complete and "mixed_parts" in {p.kind for p in rep.problems}
    assert "extra_file" not in {p.kind for p in rep.problems}  # listed files are not "extra"


def test_wrong_part_and_duplicate(tmp_path):
    d = tmp_path / "b"
    _write(d, n=4, shard="0/2")
    m = json.loads((d / "manifest-00000-of-00002.json").read_text())
    (d / "manifest-00001-of-00002.json").write_text(json.dumps(m))  # a copy claiming to be part 1
    assert "wrong_part" in {p.kind for p in inspect_output(d).problems}
    m["shard"] = "1/2"
    (d / "manifest-00001-of-00002.json").write_text(json.dumps(m))  # lists part 0's files again
    assert "duplicate_file" in {p.kind for p in inspect_output(d).problems}


def test_verify_command(tmp_path):
    d = tmp_path / "b"
    for k in (0, 2):
        _write(d, n=5, shard=f"{k}/3")
    r = run_phitools("verify", d, "--json")
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert rep["complete"] is False and rep["parts"] == 3 and rep["present"] == [0, 2] and rep["missing"] == [1]
    assert set(rep) >= {
        "path",
        "kind",
        "complete",
        "parts",
        "present",
        "missing",
        "running",
        "checked",
        "files",
        "records",
        "tokens",
        "problems",
        "temp_files",
        "summary",
        "hint",
    }
    assert r.stderr == b""
    _write(d, n=5, shard="1/3")
    r = run_phitools("verify", d)
    assert r.returncode == 0 and b"complete: " in r.stdout
    r = run_phitools("verify", d, "--parts", "0")
    assert r.returncode == 2


def test_running_names_the_parts_whose_writer_holds_its_lock(tmp_path):
    import subprocess
    import sys

    d = tmp_path / "b"
    _write(d, n=3, shard="0/3")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from phitools.shards import RecordWriter, parse_shard; "
            f"w = RecordWriter({str(d)!r}, tool='t', shard=parse_shard('1/3')); "
            "print('ready', flush=True); sys.stdin.read(); w.abort()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"ready"
        rep = json.loads(run_phitools("verify", d, "--json").stdout)
        assert rep["running"] == [1] and rep["missing"] == [1, 2]
    finally:
        holder.communicate(b"", timeout=60)
    assert json.loads(run_phitools("verify", d, "--json").stdout)["running"] == []
