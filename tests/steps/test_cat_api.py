"""`phitools cat` from Python: `pipeline.run(Cat(), IOOptions(...))` writes what the command writes (the same
shards, byte for byte, and the same manifest apart from argv and time), sharded, limited and re-sharded alike."""

from __future__ import annotations

import json

import pytest
from conftest import run_phitools
from same_as_cli import comparable, files

from phitools import pipeline
from phitools.errors import UsageError
from phitools.pipeline import Context, IOOptions
from phitools.shards import RecordReader
from phitools.steps.cat import Cat


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "in.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"line {i}\n" * (i % 5 + 1)}) + "\n" for i in range(250)))
    return path


@pytest.mark.parametrize(
    "flags, kw",
    [
        ([], {}),
        (["--shard", "1/3", "--shard-size", "20"], {"shard": "1/3", "shard_size": "20"}),
        (["--limit", "37", "--shard-size", "10"], {"limit": 37, "shard_size": "10"}),
    ],
)
def test_python_writes_what_the_command_writes(source, tmp_path, flags, kw):
    r = run_phitools("cat", source, *flags, "-o", tmp_path / "cli")
    assert r.returncode == 0, r.stderr.decode()
    stats = pipeline.run(Cat(), IOOptions(inputs=[str(source)], output=str(tmp_path / "api"), **kw))
    cli, api = files(tmp_path / "cli"), files(tmp_path / "api")
    assert cli == api and cli
    (name,) = [p.name for p in (tmp_path / "cli").glob("manifest*.json")]  # manifest-1-of-3.json with --shard
    man = comparable(tmp_path / "cli" / name, tmp_path / "cli")
    assert man == comparable(tmp_path / "api" / name, tmp_path / "api")
    back = list(RecordReader([str(tmp_path / "api")], allow_partial="shard" in kw))  # one part of three
    assert stats.records_out == len(back) == man["stats"]["records_out"] > 0


def test_on_records_in_memory_it_is_the_identity():
    recs = [{"id": "a", "text": "x"}, {"id": "b", "text": "y", "meta": {"k": 1}}]
    assert list(Cat()(recs, Context())) == recs
    assert Cat().manifest() == {}


def test_bad_options_are_the_commands_errors():
    with pytest.raises(UsageError, match="--shard"):
        IOOptions(inputs=["x"], shard="3/2")
