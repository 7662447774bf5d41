"""Property tests: shard round-trips and the --shard union."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phitools.shards import RecordReader, RecordWriter, parse_shard

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8
)
records = st.lists(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(lambda d: {**d, "text": str(d.get("text", "t"))}),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from(["out", "o.jsonl", "o.jsonl.zst", "o.jsonl.gz"]), st.integers(1, 7))
def test_round_trip(recs, target, shard_size):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / target
        with RecordWriter(out, tool="t", shard_size=str(shard_size)) as w:
            w.write_many(recs)
        assert list(RecordReader([out])) == recs


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 5))
def test_shard_union_equals_whole_and_is_disjoint(n_records, n_files, n_shards):
    with tempfile.TemporaryDirectory() as d:
        files = []
        i = 0
        for f in range(n_files):
            p = Path(d) / f"f{f}.jsonl"
            with RecordWriter(p, tool="t") as w:
                for _ in range(max(1, n_records // n_files)):
                    w.write({"id": i, "text": "x"})
                    i += 1
            files.append(str(p))
        whole = [r["id"] for r in RecordReader(files)]
        parts = [
            [r["id"] for r in RecordReader(files, shard=parse_shard(f"{k}/{n_shards}"), allow_empty=True)]
            for k in range(n_shards)
        ]
        flat = [x for p in parts for x in p]
        assert sorted(flat) == sorted(whole) and len(flat) == len(set(flat))
