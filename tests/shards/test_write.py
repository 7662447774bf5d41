"""Writing records: rolling shards, manifests, atomicity, re-runs."""

from __future__ import annotations

import json

import pytest

from phitools.errors import UsageError
from phitools.runtime.files import sha256_file
from phitools.shards import RecordReader, RecordWriter, Stats, parse_shard, parse_size, redact_argv


def test_rolling_shards_and_manifest(tmp_path):
    out = tmp_path / "out"
    stats = Stats()
    with RecordWriter(out, tool="test", shard_size="4", stats=stats, seed=3, inputs=["x"]) as w:
        for i in range(10):
            w.write({"id": i, "text": f"t{i}"})
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "part-00000.jsonl.zst", "part-00001.jsonl.zst", "part-00002.jsonl.zst"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["tool"] == "test" and m["seed"] == 3 and m["stats"]["records_out"] == 10
    assert [o["records"] for o in m["outputs"]] == [4, 4, 2]
    for o in m["outputs"]:
        assert o["sha256"] == sha256_file(out / o["path"])
    assert [r["id"] for r in RecordReader([out])] == list(range(10))


def test_size_based_rolling(tmp_path):
    with RecordWriter(tmp_path / "o", tool="t", shard_size="1K") as w:
        for _i in range(100):
            w.write({"text": "y" * 50})
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(m["outputs"]) > 3 and all(o["uncompressed_bytes"] >= 1024 for o in m["outputs"][:-1])


def test_failure_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with RecordWriter(out, tool="t", shard_size="3") as w:
            for i in range(7):
                w.write({"id": i})
            raise RuntimeError("boom")
    assert list(out.iterdir()) == []


def test_single_file_output_gets_sidecar_manifest(tmp_path):
    f = tmp_path / "x.jsonl.gz"
    with RecordWriter(f, tool="t") as w:
        w.write({"id": 1})
    assert [r["id"] for r in RecordReader([f])] == [1]
    assert json.loads((tmp_path / "x.jsonl.gz.manifest.json").read_text())["outputs"][0]["records"] == 1


def test_rerun_replaces_previous_outputs_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with RecordWriter(out, tool="t", shard_size="2") as w:
        for i in range(6):
            w.write({"id": i})
    with RecordWriter(out, tool="t", shard_size="2") as w:
        w.write({"id": 99})
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "manifest.json", "part-00000.jsonl.zst"]


def test_sharded_writers_use_distinct_names(tmp_path):
    out = tmp_path / "out"
    for k in range(2):
        with RecordWriter(out, tool="t", shard=parse_shard(f"{k}/2")) as w:
            w.write({"id": k})
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest-00000-of-00002.json",
        "manifest-00001-of-00002.json",
        "part-00000-of-00002-00000.jsonl.zst",
        "part-00001-of-00002-00000.jsonl.zst",
    ]
    assert sorted(r["id"] for r in RecordReader([out])) == [0, 1]


def test_parse_size_and_shard():
    assert parse_size("100") == (100, None)
    assert parse_size("2M") == (None, 2 << 20)
    assert parse_shard("3/8").index == 3
    for bad in ["8/8", "x", "1/0", "-1/2"]:
        with pytest.raises(UsageError):
            parse_shard(bad)
    with pytest.raises(UsageError):
        parse_size("12 parsecs")


def test_redact_argv():
    argv = [
        "phitools",
        "label",
        "--api-key",
        "sk-abcdefghijklmnop",
        "--api-key-env",
        "MY_KEY",
        "--token=abc",
        "Bearer xyz",
    ]
    red = redact_argv(argv)
    assert "sk-abcdefghijklmnop" not in " ".join(red) and "abc" not in red[6] and "MY_KEY" in red
    keep = [
        "phitools",
        "tokenize",
        "--train-tokenizer",
        "--vocab-size",
        "8192",
        "--max-tokens",
        "64",
        "--tokenizer",
        "t.json",
    ]
    assert redact_argv(keep) == keep
    assert redact_argv(["--hf-token", "hf_abcdefghijk", "--password=x"]) == [
        "--hf-token",
        "<redacted>",
        "--password=<redacted>",
    ]


def test_stale_tmp_from_a_killed_writer_is_removed(tmp_path):
    from phitools.shards.ownership import hostname, pid_namespace

    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".part-00000.jsonl.zst.tmp-{hostname()}-{pid_namespace()}-999999999"
    stale.write_bytes(b"half")
    with RecordWriter(out, tool="t") as w:
        w.write({"id": 1})
    assert not stale.exists()
