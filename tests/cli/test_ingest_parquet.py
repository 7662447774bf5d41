"""`phitools ingest` on parquet (The Stack's shape) through real subprocesses: the recipe's command as written,
nulls, a huge row, sharding, projection, and every bad-input case as one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_phitools
from stacklike import corrupt_column_chunk, expected_kept, stack_rows, write_stack


def _records(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def stack(tmp_path):
    """stack/ as `hf download` leaves it: parquet under data/python/ next to a README and a .gitattributes."""
    root = tmp_path / "stack"
    rows = stack_rows(60)
    write_stack(root / "data" / "python" / "train-00000-of-00003.parquet", rows[:20], row_group_size=6)
    write_stack(root / "data" / "python" / "train-00001-of-00003.parquet", rows[20:45], row_group_size=6)
    write_stack(root / "data" / "python" / "train-00002-of-00003.parquet", rows[45:], row_group_size=6)
    (root / "README.md").write_text("---\nlicense: other\n---\n# The Stack\n")
    (root / ".gitattributes").write_text("*.parquet filter=lfs\n")
    return root, rows


def test_the_recipe_command_as_written(stack, tmp_path):
    root, rows = stack
    r = run_phitools(
        "ingest",
        "stack/",
        "--text-field",
        "content",
        "--meta-fields",
        "max_stars_repo_path,lang",
        "-o",
        "corpus/",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"" and r.stderr == b""
    recs = _records(run_phitools("cat", tmp_path / "corpus", check=True).stdout)
    kept = expected_kept(rows)
    assert len(recs) == len(kept) and len(kept) < len(rows)
    assert [r["text"] for r in recs] == [k["content"] for k in kept]
    assert all(set(r) == {"id", "text", "meta"} and set(r["meta"]) == {"max_stars_repo_path", "lang"} for r in recs)
    assert [r["meta"]["max_stars_repo_path"] for r in recs] == [k["max_stars_repo_path"] for k in kept]
    assert None in [r["meta"]["max_stars_repo_path"] for r in recs]  # null meta is kept as null
    # ids: file relative to the root's parent, and the row's index in that file
    assert recs[0]["id"] == "stack/data/python/train-00000-of-00003.parquet:0"
    assert recs[-1]["id"] == "stack/data/python/train-00002-of-00003.parquet:14"
    assert len({r["id"] for r in recs}) == len(recs)
    m = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    nulls = sum(1 for x in rows if x["content"] is None)
    empties = sum(1 for x in rows if x["content"] == "")
    assert m["stats"]["records_in"] == 60 and m["stats"]["records_out"] == len(kept)
    assert m["stats"]["dropped"] == {"null_text": nulls, "empty": empties}
    assert m["ingest"]["format"] == "parquet" and m["ingest"]["meta_fields"] == ["max_stars_repo_path", "lang"]


def test_default_text_field_nested_meta_and_id_field(stack, tmp_path):
    root, rows = stack
    meta = "max_stars_repo_licenses,max_stars_count,repo,size,avg_line_length"
    recs = _records(run_phitools("ingest", root, "--meta-fields", meta, "--id-field", "hexsha", check=True).stdout)
    kept = expected_kept(rows)
    assert [r["id"] for r in recs] == [k["hexsha"] for k in kept]
    for r, k in zip(recs, kept):
        assert r["text"] == k["content"]  # `content` found without --text-field
        assert r["meta"] == {
            "max_stars_repo_licenses": k["max_stars_repo_licenses"],
            "max_stars_count": k["max_stars_count"],
            "repo": k["repo"],
            "size": k["size"],
            "avg_line_length": k["avg_line_length"],
        }
    assert {len(r["meta"]["max_stars_repo_licenses"]) for r in recs} == {0, 1, 2}
    # a `text` column is the next default
    t = tmp_path / "web" / "part.parquet"
    t.parent.mkdir()
    pq.write_table(pa.table({"url": ["a", "b"], "text": ["first page", "second page"]}), t)
    recs = _records(run_phitools("ingest", t, "--meta-fields", "url", check=True).stdout)
    assert recs == [
        {"id": "part.parquet:0", "text": "first page", "meta": {"url": "a"}},
        {"id": "part.parquet:1", "text": "second page", "meta": {"url": "b"}},
    ]


def test_shards_union_is_the_unsharded_output(stack, tmp_path):
    """3 files: by file for N = 2, by row group for N = 5. The union of the N outputs is the whole output."""
    root, _ = stack
    args = ["ingest", root, "--meta-fields", "max_stars_repo_path,repo"]
    whole = run_phitools(*args, check=True).stdout.splitlines()
    by_file = [run_phitools(*args, "--shard", f"{k}/2", check=True).stdout.splitlines() for k in range(2)]
    assert all(by_file) and sorted(by_file[0] + by_file[1]) == sorted(whole)
    for k in range(5):  # five Slurm array tasks writing into one directory
        run_phitools(*args, "--shard", f"{k}/5", "-o", tmp_path / "out", check=True)
    ms = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("manifest-*.json"))]
    assert (
        len(ms) == 5
        and {m["ingest"]["split"] for m in ms} == {"row_group"}
        and all(m["stats"]["records_out"] for m in ms)
    )
    assert sum(m["stats"]["records_in"] for m in ms) == 60
    by_group = run_phitools("cat", tmp_path / "out", check=True).stdout.splitlines()
    assert sorted(by_group) == sorted(whole) and len(by_group) == len(whole)


def test_huge_row(tmp_path):
    big = "x = 1  # " + "a" * (24 << 20) + "\n"  # one 24 MB row among small ones
    rows = stack_rows(6)
    rows[2]["content"] = big
    f = write_stack(tmp_path / "big.parquet", rows, row_group_size=2)
    r = run_phitools("ingest", f, "--max-bytes", str(32 << 20), "-o", tmp_path / "out.jsonl", check=True)
    recs = _records((tmp_path / "out.jsonl").read_bytes())
    assert [x["text"] for x in recs] == [x["content"] for x in expected_kept(rows)]
    assert recs[2]["text"] == big and r.stdout == b""
    # over --max-bytes (default 1 MB): skipped and counted, the rest written
    r = run_phitools("ingest", f, "-o", tmp_path / "small", check=True)
    m = json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert m["stats"]["dropped"]["too_large"] == 1 and m["stats"]["records_out"] == len(expected_kept(rows)) - 1


def _one_line_error(r, code: int) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("phitools ingest: error: "), err
    assert r.stdout == b""
    return err


def test_missing_text_field_names_file_and_columns(stack, tmp_path):
    root, _ = stack
    err = _one_line_error(run_phitools("ingest", root, "--text-field", "body", "-o", tmp_path / "out"), 2)
    assert "train-00000-of-00003.parquet" in err and "'body'" in err and "hexsha, size, ext, lang" in err
    assert not (tmp_path / "out" / "manifest.json").exists() and not list((tmp_path / "out").glob("part-*"))
    f = tmp_path / "nocontent.parquet"
    pq.write_table(pa.table({"code": ["x"], "path": ["a.py"]}), f)
    err = _one_line_error(run_phitools("ingest", f), 2)
    assert "nocontent.parquet" in err and "content or text" in err and "code, path" in err and "--text-field" in err
    err = _one_line_error(run_phitools("ingest", root, "--meta-fields", "lang,stars"), 2)
    assert "'stars'" in err and "--meta-fields" in err and "max_stars_count" in err
    err = _one_line_error(run_phitools("ingest", root, "--text-field", "size"), 2)
    assert "'size' is int64, not text" in err


def test_corrupt_row_group_names_file_and_row_group(stack, tmp_path):
    root, rows = stack
    f = root / "data" / "python" / "train-00001-of-00003.parquet"
    corrupt_column_chunk(f, 2, "content")
    err = _one_line_error(run_phitools("ingest", root, "-o", tmp_path / "out"), 1)
    assert "train-00001-of-00003.parquet" in err and "row group 2 (of 5)" in err and "--skip-bad" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing that looks complete
    # --skip-bad: that row group is counted and skipped, everything else is written
    run_phitools("ingest", root, "--skip-bad", "-o", tmp_path / "out", check=True)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["stats"]["skipped_bad"] == {"corrupt_row_group": 1}
    lost = expected_kept(rows[20 + 12 : 20 + 18])
    assert m["stats"]["records_out"] == len(expected_kept(rows)) - len(lost)


def test_projection_reads_only_the_columns_named(stack, tmp_path):
    """A damaged column that is not asked for is never read; asking for it hits the damage."""
    root, rows = stack
    corrupt_column_chunk(root / "data" / "python" / "train-00000-of-00003.parquet", 1, "hexsha")
    recs = _records(run_phitools("ingest", root, "--meta-fields", "lang,max_stars_repo_path", check=True).stdout)
    assert len(recs) == len(expected_kept(rows))
    err = _one_line_error(run_phitools("ingest", root, "--meta-fields", "hexsha", "-o", tmp_path / "out"), 1)
    assert "train-00000-of-00003.parquet" in err and "row group 1 (of 4)" in err


def test_not_parquet_or_truncated(tmp_path):
    f = write_stack(tmp_path / "d" / "a.parquet", stack_rows(10))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    err = _one_line_error(run_phitools("ingest", tmp_path / "d"), 1)
    assert "a.parquet" in err and "not a readable parquet file" in err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "b.parquet").write_bytes(b"PAR1 but not really" * 10)
    err = _one_line_error(run_phitools("ingest", tmp_path / "e" / "b.parquet"), 1)
    assert "b.parquet" in err


def test_flags_that_do_not_fit_the_input(stack, stdlib_small):
    root, _ = stack
    err = _one_line_error(run_phitools("ingest", stdlib_small, "--text-field", "content"), 2)
    assert "--text-field applies to parquet" in err
    err = _one_line_error(run_phitools("ingest", root, stdlib_small), 2)
    assert "either parquet" in err and "phitools cat" in err
    err = _one_line_error(run_phitools("ingest", root, "--ext", "py"), 2)
    assert "--ext" in err
    # --format files reads the folder's files as files (the parquet included, as binary: skipped and counted)
    r = run_phitools("ingest", root, "--format", "files", "--include", "*", check=True)
    assert [x["id"] for x in _records(r.stdout)] == ["stack/.gitattributes", "stack/README.md"]


@pytest.mark.parametrize(
    "env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["hf_offline", "unreachable"]
)
def test_hub_path_without_network_is_one_line(tmp_path, env):
    r = run_phitools(
        "ingest",
        "hf://datasets/bigcode/the-stack-dedup/data/python",
        "--meta-fields",
        "lang",
        "-o",
        tmp_path / "c",
        env={**env, "HF_HOME": str(tmp_path / "hf")},
    )
    err = _one_line_error(r, 1)
    assert "hf://datasets/bigcode/the-stack-dedup/data/python" in err and "cannot reach the Hub" in err
    assert "hf download" in err and not (tmp_path / "c" / "manifest.json").exists()


# Measured from a small parent: a child's maxrss starts at its parent's when it is forked (or vforked) from it,
# and a pytest worker can be large.
_MEASURE = (
    "import os, subprocess, sys; "
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
    "_, st, ru = os.wait4(p.pid, 0); code = os.waitstatus_to_exitcode(st); "
    "sys.exit(p.stderr.read().decode()) if code else print(ru.ru_maxrss)"
)


def _peak_rss_mb(args: list) -> float:
    r = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "phitools", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return int(r.stdout) / 1024


def _write_groups(path, texts, groups: int) -> None:
    schema = pa.schema([("content", pa.string()), ("lang", pa.string())])
    table = pa.table({"content": texts, "lang": ["Python"] * len(texts)}, schema=schema)
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for _ in range(groups):
            w.write_table(table, row_group_size=len(texts))


@pytest.mark.slow
def test_memory_is_bounded_by_the_row_group_not_the_file(tmp_path):
    """Peak RSS grows far less than the data: 16 vs 192 row groups of ~1.1 MB of text each (18 vs 216 MB).

    Reading the whole file (or keeping its rows) would add at least the extra 198 MB; streaming adds allocator
    noise only (~30-50 MB measured)."""
    import numpy as np

    rng = np.random.default_rng(0)
    words = np.array(
        ["def", "return", "self", "value", "import", "for", "in", "range", "x", "y", "if", "else", "(", ")", ":"]
    )
    texts = [" ".join(words[rng.integers(0, len(words), 700)]) for _ in range(400)]
    group_mb = sum(map(len, texts)) / 2**20
    _write_groups(tmp_path / "small.parquet", texts, 16)
    _write_groups(tmp_path / "big.parquet", texts, 192)
    small = _peak_rss_mb(["ingest", tmp_path / "small.parquet", "--meta-fields", "lang"])
    big = _peak_rss_mb(["ingest", tmp_path / "big.parquet", "--meta-fields", "lang"])
    extra_data = (192 - 16) * group_mb
    print(f"peak RSS {small:.0f} MB ({16 * group_mb:.0f} MB of text), {big:.0f} MB ({192 * group_mb:.0f} MB of text)")
    assert big - small < 0.5 * extra_data, (small, big, extra_data)
