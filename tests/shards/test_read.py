"""Reading records: formats, sharding, and every bad-input case."""

from __future__ import annotations

import gzip
import io

import pytest
import zstandard

from phitools.errors import DataError
from phitools.shards import RecordReader, Stats, parse_shard
from phitools.shards.read import open_text_stream


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"id": %d, "text": "doc %d", "extra": {"k": [1, 2]}}\n' % (i, i) for i in range(start, start + n))


def test_reads_plain_zstd_gzip_and_dirs(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(_lines(3))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_lines(2, 3)))
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(_lines(2, 5)))
    (tmp_path / "manifest.json").write_text("{}")  # not a shard: ignored
    recs = list(RecordReader([tmp_path]))
    assert [r["id"] for r in recs] == list(range(7))
    assert recs[0]["extra"] == {"k": [1, 2]}  # unknown fields pass through


def test_zstd_recognised_by_magic_bytes_without_suffix(tmp_path):
    p = tmp_path / "noext"
    p.write_bytes(zstandard.ZstdCompressor().compress(_lines(4)))
    assert len(list(RecordReader([str(p)]))) == 4


def test_multi_frame_zstd(tmp_path):
    c = zstandard.ZstdCompressor()
    p = tmp_path / "m.jsonl.zst"
    p.write_bytes(c.compress(_lines(3)) + c.compress(_lines(3, 3)))
    assert [r["id"] for r in RecordReader([p])] == list(range(6))


def test_glob_and_missing(tmp_path):
    for i in range(3):
        (tmp_path / f"p{i}.jsonl").write_bytes(_lines(1, i))
    assert len(list(RecordReader([str(tmp_path / "p*.jsonl")]))) == 3
    with pytest.raises(DataError, match="no such file"):
        RecordReader([str(tmp_path / "nope.jsonl")])
    with pytest.raises(DataError, match="glob matched no files"):
        RecordReader([str(tmp_path / "q*.jsonl")])


@pytest.mark.parametrize(
    "payload,needle,line",
    [
        (b'{"text": "ok"}\n{"text": \n', "malformed JSON", 2),
        (b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', "invalid UTF-8", 2),
        (b'{"text": "ok"}\n[1, 2]\n', "not an object", 2),
        (b'{"text": "ok"}\n\n{"id": 3}\n', "no 'text' field", 3),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, payload, needle, line):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(payload)
    with pytest.raises(DataError) as ei:
        list(RecordReader([p], required=("text",)))
    msg = str(ei.value)
    assert needle in msg and f"bad.jsonl:{line}:" in msg and "--skip-bad" in msg


def test_skip_bad_counts(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "a"}\n{oops\n[1]\n{"text": "b"}\n{"id": 1}\n')
    stats = Stats()
    recs = list(RecordReader([p], required=("text",), skip_bad=True, stats=stats))
    assert [r["text"] for r in recs] == ["a", "b"]
    assert dict(stats.skipped_bad) == {"malformed_json": 1, "not_object": 1, "missing_text": 1}


def _random_lines(n: int) -> bytes:
    import hashlib

    return b"".join(
        b'{"id": %d, "text": "%s"}\n' % (i, hashlib.sha256(b"%d" % i).hexdigest().encode() * 4) for i in range(n)
    )


def test_truncated_zstd_is_an_error(tmp_path):
    data = zstandard.ZstdCompressor().compress(_random_lines(5000))
    p = tmp_path / "t.jsonl.zst"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        list(RecordReader([p]))
    stats = Stats()
    recs = list(RecordReader([p], skip_bad=True, stats=stats))
    assert 0 < len(recs) < 5000 and stats.skipped_bad["truncated_file"] == 1


def test_truncated_gzip_is_an_error(tmp_path):
    data = gzip.compress(_lines(5000))
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated|corrupt"):
        list(RecordReader([p]))


def test_empty_input_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"\n\n")
    with pytest.raises(DataError, match="empty"):
        list(RecordReader([p]))


def test_huge_line_is_read(tmp_path):
    big = "x" * (100 * 1024 * 1024)
    p = tmp_path / "big.jsonl.zst"
    with open(p, "wb") as f, zstandard.ZstdCompressor(level=1).stream_writer(f) as w:
        w.write(b'{"text": "small"}\n{"text": "')
        w.write(big.encode())
        w.write(b'"}\n')
    recs = list(RecordReader([p]))
    assert len(recs) == 2 and len(recs[1]["text"]) == len(big)


def test_shard_by_record_and_by_file(tmp_path):
    p = tmp_path / "one.jsonl"
    p.write_bytes(_lines(10))
    parts = [[r["id"] for r in RecordReader([p], shard=parse_shard(f"{k}/3"))] for k in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    files = []
    for i in range(4):
        f = tmp_path / f"f{i}.jsonl"
        f.write_bytes(_lines(2, 10 * i))
        files.append(str(f))
    rdr = RecordReader(files, shard=parse_shard("1/2"))
    assert rdr.by_file and [r["id"] for r in rdr] == [10, 11, 30, 31]


def test_open_text_stream_reads_stdin_like_streams(monkeypatch):
    data = zstandard.ZstdCompressor().compress(_lines(3))

    class FakeStdin:
        buffer = io.BufferedReader(io.BytesIO(data))

    monkeypatch.setattr("sys.stdin", FakeStdin)
    assert open_text_stream("-").read().count(b"\n") == 3
