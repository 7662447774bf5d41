"""steps/ingest_parquet.py and shards/parquet.py in-process: remote (fsspec) paths, Arrow types -> JSON,
sharding plans.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io

import fsspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stacklike import expected_kept, stack_rows, write_stack

from phitools.errors import DataError, UsageError
from phitools.shards import Stats
from phitools.shards.parquet import column_values, list_remote
from phitools.shards.spec import ShardSpec
from phitools.steps.ingest_parquet import Fields, ingest_parquet, list_parquet, plan


def _records(paths, fields=Fields(), shard=None, **kw):
    stats = Stats()
    return list(ingest_parquet(plan(list_parquet(paths, stats=stats), shard), fields, stats=stats, **kw)), stats


def test_an_fsspec_url_reads_like_a_local_folder(tmp_path):
    """hf:// goes through the same fsspec code path; an in-memory file system stands in for the Hub here."""
    rows = stack_rows(30)
    fs = fsspec.filesystem("memory")
    for k, chunk in enumerate((rows[:12], rows[12:])):
        buf = io.BytesIO()
        write_stack(tmp_path / "tmp.parquet", chunk, row_group_size=5)
        buf.write((tmp_path / "tmp.parquet").read_bytes())
        fs.pipe(f"/ds/data/python/train-{k:05d}.parquet", buf.getvalue())
    fs.pipe("/ds/data/python/README.md", b"not parquet")
    fields = Fields(meta=("max_stars_repo_licenses", "repo"))
    remote, _ = _records(["memory://ds/data/python"], fields)
    for k, chunk in enumerate((rows[:12], rows[12:])):
        write_stack(tmp_path / "python" / f"train-{k:05d}.parquet", chunk, row_group_size=5)
    local, _ = _records([tmp_path / "python"], fields)
    assert remote == local and len(local) == len(expected_kept(rows))
    assert local[0]["id"] == "python/train-00000.parquet:0"
    sources = list_remote("memory://ds/data/python/train-00001.parquet", lambda rel: True)
    assert [s.rel for s in sources] == ["train-00001.parquet"] and sources[
        0
    ].display == "memory:///ds/data/python/train-00001.parquet"
    with pytest.raises(DataError, match="not found"):
        list_remote("memory://ds/nothing-here", lambda rel: True)
    with pytest.raises(UsageError, match="no file system"):
        list_remote("nosuchscheme://x/y", lambda rel: True)


def test_hf_urls_use_huggingface_hubs_file_system():
    from huggingface_hub import HfFileSystem

    from phitools.shards.parquet import url_to_fs

    fs, path = url_to_fs("hf://datasets/bigcode/the-stack-dedup/data/python")
    assert isinstance(fs, HfFileSystem) and path == "datasets/bigcode/the-stack-dedup/data/python"


def test_arrow_types_become_json():
    table = pa.table(
        {
            "dec": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
            "raw": pa.array([b"caf\xc3\xa9", b"\xff\x00"], pa.binary()),
            "ns": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5, 6), None], pa.timestamp("ns")),
            "us_tz": pa.array([dt.datetime(2020, 1, 2, tzinfo=dt.timezone.utc)] * 2, pa.timestamp("us", tz="UTC")),
            "dur": pa.array([dt.timedelta(seconds=90), None], pa.duration("s")),
            "m": pa.array([[("a", 1)], []], pa.map_(pa.string(), pa.int64())),
            "cat": pa.array(["x", "y"]).dictionary_encode(),
            "nested": pa.array(
                [{"a": [decimal.Decimal("2.0")]}, None], pa.struct([("a", pa.list_(pa.decimal128(3, 1)))])
            ),
            "f16": pa.array([1.5, None], pa.float16()) if hasattr(pa, "float16") else pa.array([1.5, None]),
        }
    )
    got = {name: column_values(table.column(name)) for name in table.column_names}
    assert got["dec"] == ["1.50", None]  # exact, as text
    assert got["raw"] == ["café", "/wA="]  # UTF-8 as text, anything else base64
    assert got["ns"] == ["2020-01-02T03:04:05.000006", None]
    assert got["dur"] == [90.0, None] and got["m"] == [[("a", 1)], []] and got["cat"] == ["x", "y"]
    assert got["nested"] == [{"a": ["2.0"]}, None] and got["f16"] == [1.5, None]
    for values in got.values():
        orjson.dumps(values)  # every value is JSON


def test_text_column_of_bytes_and_dictionary(tmp_path):
    f = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": pa.array([b"print(1)\n", b"\xff\xfe", None, b"   "], pa.large_binary())}), f)
    recs, stats = _records([f])
    assert [r["text"] for r in recs] == ["print(1)\n"]
    assert stats.dropped == {"not_utf8": 1, "null_text": 1, "empty": 1} and stats.records_in == 4
    g = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": pa.array(["a", "b", "a"]).dictionary_encode()}), g)
    recs, _ = _records([g], dedup=True)
    assert [r["text"] for r in recs] == ["a", "b"]


def test_ids_from_a_column_fall_back_to_file_and_row(tmp_path):
    f = tmp_path / "i.parquet"
    pq.write_table(pa.table({"content": ["x", "y", "z"], "n": pa.array([7, None, 9], pa.int64())}), f)
    recs, _ = _records([f], Fields(id="n"))
    assert [r["id"] for r in recs] == ["7", "i.parquet:1", "9"]


def test_plan_splits_by_file_or_by_row_group(tmp_path):
    for k, n in enumerate((10, 3, 17)):  # row groups of 4: 3 + 1 + 5 = 9 groups
        write_stack(tmp_path / "d" / f"{k}.parquet", stack_rows(n, start=100 * k), row_group_size=4)
    sources = list_parquet([tmp_path / "d"])
    by_file = [plan(sources, ShardSpec(k, 2)) for k in range(2)]
    assert [[u.source.rel for u in p] for p in by_file] == [["d/0.parquet", "d/2.parquet"], ["d/1.parquet"]]
    assert all(u.row_groups is None for p in by_file for u in p)
    by_group = [plan(sources, ShardSpec(k, 4)) for k in range(4)]
    owned = sorted((u.source.rel, g) for p in by_group for u in p for g in u.row_groups)
    assert owned == sorted(
        [("d/0.parquet", g) for g in range(3)] + [("d/1.parquet", 0)] + [("d/2.parquet", g) for g in range(5)]
    )
    whole, _ = _records([tmp_path / "d"])
    parts = [r for k in range(4) for r in _records([tmp_path / "d"], shard=ShardSpec(k, 4))[0]]
    assert sorted(r["id"] for r in parts) == sorted(r["id"] for r in whole) and len(parts) == len(whole)


def test_meta_fields_parse():
    assert Fields.parse_meta(["a,b", " c ,a", ""]) == ("a", "b", "c")
    assert Fields.parse_meta(None) == ()


def test_progress_counts_rows_against_the_footer_total(tmp_path):
    from phitools.steps.ingest_parquet import check_local

    class Counter:
        def __init__(self):
            self.n = 0

        def advance(self, n=1):
            self.n += n

        def update(self, **kw):
            pass

    for k in range(2):
        write_stack(tmp_path / "d" / f"{k}.parquet", stack_rows(13, start=20 * k), row_group_size=4)
    units = plan(list_parquet([tmp_path / "d"]), None)
    assert check_local(units, Fields()) == 26
    rep, stats = Counter(), Stats()
    list(ingest_parquet(units, Fields(), stats=stats, progress=rep))
    assert rep.n == stats.records_in == 26
