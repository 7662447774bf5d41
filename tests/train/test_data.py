"""Token data for training: flat stream over shards, held-out split, resumable seeded sampler, rank slices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.errors import CheckpointError, DataError
from phitools.train.data import TokenData, TokenStream, Windows, WindowSampler, rank_slice


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 50), min_size=1, max_size=6), data=st.data())
def test_stream_reads_across_shards_like_one_array(lengths, data):
    rng = np.random.default_rng(sum(lengths))
    arrays = [rng.integers(0, 60000, n).astype("<u2") for n in lengths]
    flat = np.concatenate(arrays).astype(np.int64)
    s = TokenStream(arrays)
    assert len(s) == len(flat)
    if len(flat) == 0:
        return
    start = data.draw(st.integers(0, len(flat) - 1))
    n = data.draw(st.integers(0, len(flat) - start))
    assert np.array_equal(s.read(start, n), flat[start : start + n])


def test_windows_are_inputs_plus_shifted_targets():
    flat = np.arange(100, dtype="<u2")
    w = Windows(TokenStream([flat[:37], flat[37:]]), 10, 100, seq_len=8)
    assert len(w) == (90 - 1) // 8
    got = w.get([0, 3])
    assert got.shape == (2, 9)
    assert got[0].tolist() == list(range(10, 19))
    assert got[1].tolist() == list(range(34, 43))  # crosses the shard boundary at 37


def test_token_dir_split_is_disjoint_and_seq_len_is_free(token_dir):
    td = TokenData(token_dir, seq_len=50, seed=1, eval_fraction=0.05)  # tokenize packed with 64: any length works
    n = len(td.stream)
    assert td.heldout.start == td.train.stop == n - int(n * 0.05)
    last_train_token = td.train.start + len(td.train) * 50  # the last target of the last train window
    assert last_train_token < td.heldout.start
    assert len(td.heldout) > 0
    d = td.describe()
    assert d["tokenizer_sha256"] and len(d["shards"]) > 1 and all(s["sha256"] for s in d["shards"])


def test_sampler_epoch_is_a_permutation_and_seeded():
    a, b, c = WindowSampler(50, seed=3), WindowSampler(50, seed=3), WindowSampler(50, seed=4)
    ea = a.take(50)
    assert sorted(ea.tolist()) == list(range(50))
    assert np.array_equal(ea, b.take(50))
    assert not np.array_equal(ea, c.take(50))
    assert a.state_dict()["epoch"] == 1 and a.state_dict()["index"] == 0
    assert not np.array_equal(a.take(50), ea)  # a new order each epoch


def test_resumed_sampler_yields_exactly_the_uninterrupted_batches():
    straight = WindowSampler(37, seed=9)
    expected = [straight.take(8) for _ in range(12)]  # crosses two epoch boundaries
    first = WindowSampler(37, seed=9)
    got = [first.take(8) for _ in range(5)]
    state = dict(first.state_dict())
    resumed = WindowSampler(37, seed=9)
    resumed.load_state_dict(state)
    got += [resumed.take(8) for _ in range(7)]
    assert all(np.array_equal(x, y) for x, y in zip(got, expected))


def test_sampler_refuses_other_data():
    s = WindowSampler(10, seed=0)
    with pytest.raises(CheckpointError):
        WindowSampler(11, seed=0).load_state_dict(s.state_dict())


def test_rank_slices_partition_the_global_batch():
    batch = np.arange(12)
    parts = [batch[rank_slice(12, r, 3)] for r in range(3)]
    assert np.array_equal(np.concatenate(parts), batch)


def test_too_few_tokens_is_a_data_error(token_dir):
    with pytest.raises(DataError, match="too few"):
        TokenData(token_dir, seq_len=10_000_000, seed=0)
    with pytest.raises(DataError, match="not a token directory"):
        TokenData(token_dir / "nope", seq_len=8, seed=0)
