"""`phitools.steps.ingest` from Python gives what `phitools ingest` gives: the same records and the same manifest
(apart from argv and time), for files and parquet, sharded and deduplicated; bad options are the same one-line
errors."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_phitools
from same_as_cli import comparable
from stacklike import stack_rows, write_stack

from phitools.errors import DataError, UsageError
from phitools.shards import read_records
from phitools.steps.ingest import Ingest, IngestOptions, ingest


@pytest.fixture
def tree(tmp_path, stdlib_small):
    """A folder of code with an exact copy, an empty file and a binary one."""
    root = tmp_path / "code"
    shutil.copytree(stdlib_small, root / "lib")
    (root / "copy").mkdir()
    first = sorted((root / "lib").glob("*.py"))[3]
    shutil.copy(first, root / "copy" / "again.py")
    (root / "empty.py").write_text("")
    (root / "blob.py").write_bytes(b"x = 1\x00\x01")
    return root


@pytest.fixture
def stack(tmp_path):
    rows = stack_rows(40)
    write_stack(tmp_path / "stack" / "a.parquet", rows[:25], row_group_size=5)
    write_stack(tmp_path / "stack" / "b.parquet", rows[25:], row_group_size=5)
    return tmp_path / "stack"


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--dedup", "--shard", "1/2", "--max-bytes", "20000"],
        ["--shard", "0/3", "--exclude", "*/copy/*", "--limit", "7", "--shard-size", "3"],
    ],
)
def test_files_from_python_equal_the_command(tree, tmp_path, flags):
    cli, api = tmp_path / "cli", tmp_path / "api"
    r = run_phitools("ingest", tree, *flags, "-o", cli)
    assert r.returncode == 0, r.stderr.decode()
    # the same options, built from Python
    opts = dict(dedup="--dedup" in flags, max_bytes=20000 if "--max-bytes" in flags else 1_000_000)
    for flag, key, conv in (("--shard", "shard", str), ("--limit", "limit", int), ("--shard-size", "shard_size", str)):
        if flag in flags:
            opts[key] = conv(flags[flags.index(flag) + 1])
    if "--exclude" in flags:
        opts["exclude"] = ["*/copy/*"]
    stats = ingest(IngestOptions(paths=[str(tree)], output=str(api), **opts))
    assert sorted(p.name for p in api.iterdir()) == sorted(p.name for p in cli.iterdir())
    assert list(cli.glob("part-*")) and list(cli.glob("manifest*.json"))
    for m in cli.glob("manifest*.json"):
        assert comparable(api / m.name) == comparable(m)
    for part in cli.glob("part-*"):
        assert (api / part.name).read_bytes() == part.read_bytes()
    assert stats.records_out == sum(1 for _ in read_records(sorted(map(str, api.glob("part-*")))))


def test_the_source_yields_the_commands_records_andcomparable(tree):
    r = run_phitools("ingest", tree, "--dedup", "--limit", "20", check=True)
    source = Ingest(IngestOptions(paths=[str(tree)], dedup=True, limit=20))
    assert [json.dumps(x) for x in source.records()] == [json.dumps(json.loads(x)) for x in r.stdout.splitlines()]
    info = source.manifest()["ingest"]
    assert info["format"] == "files" and info["dedup"] is True and info["files_listed"] == source.total
    assert source.stats.dropped["empty"] == 1 and source.stats.dropped["binary"] == 1
    assert source.stats.dropped["duplicate"] == 1


@pytest.mark.parametrize("flags", [["--meta-fields", "lang,max_stars_repo_path"], ["--dedup", "--shard", "1/3"]])
def test_parquet_from_python_equals_the_command(stack, tmp_path, flags):
    cli, api = tmp_path / "cli", tmp_path / "api"
    r = run_phitools("ingest", stack, *flags, "-o", cli)
    assert r.returncode == 0, r.stderr.decode()
    opts = {}
    if "--meta-fields" in flags:
        opts["meta_fields"] = [flags[1]]
    if "--dedup" in flags:
        opts.update(dedup=True, shard="1/3")
    ingest(IngestOptions(paths=[str(stack)], output=str(api), **opts))
    assert sorted(p.name for p in api.iterdir()) == sorted(p.name for p in cli.iterdir())
    assert list(cli.glob("part-*")) and list(cli.glob("manifest*.json"))
    for m in cli.glob("manifest*.json"):
        assert comparable(api / m.name) == comparable(m)
    for part in cli.glob("part-*"):
        assert (api / part.name).read_bytes() == part.read_bytes()


def test_bad_options_are_the_commands_errors(tree, stack, tmp_path):
    with pytest.raises(UsageError, match="--format 'csv' is not one of auto, files, parquet"):
        IngestOptions(paths=[str(tree)], format="csv")
    with pytest.raises(UsageError, match="--limit must be at least 0"):
        IngestOptions(paths=[str(tree)], limit=-1)
    with pytest.raises(UsageError, match="--max-bytes expects integer"):
        IngestOptions(paths=[str(tree)], max_bytes="1M")
    with pytest.raises(UsageError, match="K/N"):
        IngestOptions(paths=[str(tree)], shard="3")
    # flags that do not apply to the inputs: found when the inputs are looked at, before any output
    with pytest.raises(UsageError, match="--text-field applies to parquet inputs"):
        Ingest(IngestOptions(paths=[str(tree)], text_field="content"))
    with pytest.raises(UsageError, match="--ext chooses files by extension"):
        Ingest(IngestOptions(paths=[str(stack)], ext=["py"]))
    with pytest.raises(UsageError, match="no column 'nope' for --text-field"):
        Ingest(IngestOptions(paths=[str(stack)], text_field="nope"))
    with pytest.raises(DataError, match="no matching files"):
        ingest(IngestOptions(paths=[str(tree)], include=["*.zzz"], output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
