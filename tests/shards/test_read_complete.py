"""Readers check: a directory is read only as the complete set its manifests describe (issue 11, item 1)."""

from __future__ import annotations

import json

import pytest
from conftest import run_phitools

from phitools.errors import DataError
from phitools.shards import RecordReader, RecordWriter, Stats, parse_shard


def _write(out, ids, shard=None, shard_size="3"):
    with RecordWriter(out, tool="t", shard_size=shard_size, shard=parse_shard(shard)) as w:
        for i in ids:
            w.write({"id": i, "text": f"t{i}"})


def _ids(*paths, **kw):
    return [r["id"] for r in RecordReader(list(paths), **kw)]


def test_killed_run_without_manifest_is_refused(tmp_path):
    c = tmp_path / "c"
    _write(c, range(10))
    (c / "manifest.json").unlink()  # what a killed run of an earlier phitools left: shards, no manifest
    with pytest.raises(DataError, match="no manifest: the run that wrote them did not finish"):
        RecordReader([c])
    st = Stats()
    assert _ids(c, allow_partial=True, stats=st) == list(range(10))
    assert st.extra["partial_inputs"][0]["path"] == str(c)


def test_leftover_shards_of_an_earlier_run_are_refused(tmp_path):
    c = tmp_path / "c"
    _write(c, range(12))
    big = {p.name: p.read_bytes() for p in c.iterdir() if p.name.startswith("part")}
    _write(c, range(100, 102))  # the re-run wrote fewer shards ...
    for name, b in big.items():  # ... and an old run's shards came back (copied, restored from a backup, ...)
        if not (c / name).exists():
            (c / name).write_bytes(b)
    with pytest.raises(DataError, match=r"3 file\(s\) no manifest lists \(part-00001.jsonl.zst"):
        RecordReader([c])
    assert _ids(c, allow_partial=True) == [100, 101]  # only what the manifest lists


def test_sharded_beside_unsharded_is_refused(tmp_path):
    c = tmp_path / "c"
    _write(c, range(4))
    _write(tmp_path / "o", range(4), shard="0/2")
    for f in (tmp_path / "o").iterdir():
        f.rename(c / f.name)
    with pytest.raises(DataError, match="manifests of different runs"):
        RecordReader([c])


def test_missing_part_is_refused_and_allow_partial_reads_the_rest(tmp_path):
    c = tmp_path / "c"
    for k in (0, 2):
        _write(c, range(10 * k, 10 * k + 3), shard=f"{k}/3")
    with pytest.raises(DataError, match=r"2 of 3 --shard parts are complete \(missing K = 1\)") as e:
        RecordReader([c])
    assert "re-run the missing --shard K/3 tasks" in str(e.value)
    st = Stats()
    assert _ids(c, allow_partial=True, stats=st) == [0, 1, 2, 20, 21, 22]
    assert st.extra["partial_inputs"][0]["missing_parts"] == [1]


def test_damaged_shard_is_noticed_while_reading(tmp_path):
    c = tmp_path / "c"
    _write(c, range(10, 16), shard_size="100")
    p = c / "part-00000.jsonl.zst"
    other = tmp_path / "o"
    _write(other, range(50, 56), shard_size="100")
    q = other / "part-00000.jsonl.zst"
    assert q.stat().st_size == p.stat().st_size  # same size, other bytes: only the sha256 tells
    p.write_bytes(q.read_bytes())
    with pytest.raises(DataError, match="sha256 differs from its manifest"):
        _ids(c)
    st = Stats()
    assert _ids(c, allow_partial=True, stats=st) == list(range(50, 56))
    assert "sha256" in st.extra["partial_inputs"][0]["problems"][0]


def test_a_file_named_directly_is_checked_against_its_manifest(tmp_path):
    f = tmp_path / "x.jsonl"
    with RecordWriter(f, tool="t") as w:
        w.write({"id": 1, "text": "a"})
    assert _ids(f) == [1]
    f.write_text('{"id":2,"text":"b"}\n')  # same size, edited after the manifest was written
    with pytest.raises(DataError, match="sha256 differs"):
        _ids(f)
    c = tmp_path / "c"
    _write(c, range(3))
    (c / "part-00000.jsonl.zst").write_bytes(b'{"id": 5}\n')  # replaced by a valid file of another size
    with pytest.raises(DataError, match="manifest says"):
        _ids(c / "part-00000.jsonl.zst")


def test_plain_directories_and_trees_are_read_as_before(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 0}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"id": 1}\n')
    _write(tmp_path / "sub" / "out", [2, 3])  # a phitools output inside a plain tree: read as its manifest says
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jsonl").write_text('{"id": 99}\n')
    assert sorted(_ids(tmp_path)) == [0, 1, 2, 3]


def test_token_directory_is_not_read_as_records(tmp_path):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"tool": "tokenize", "format": "phitools-tokens", "outputs": []}))
    with pytest.raises(DataError, match="token directory"):
        RecordReader([d])


def test_cli_refuses_in_one_line_and_allow_partial_is_in_the_manifest(tmp_path):
    c = tmp_path / "c"
    for k in (0, 1):
        _write(c, range(10 * k, 10 * k + 2), shard=f"{k}/3")
    r = run_phitools("cat", c)
    assert r.returncode == 1 and r.stdout == b""
    err = r.stderr.decode().strip()
    assert "\n" not in err and "missing K = 2" in err and "--allow-partial" in err
    r = run_phitools("cat", c, "--allow-partial", "-o", tmp_path / "out", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["stats"]["records_out"] == 4 and m["stats"]["partial_inputs"][0]["missing_parts"] == [2]
