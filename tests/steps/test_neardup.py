"""MinHash + LSH near-duplicate detection: known near-duplicates are found, distinct texts are not."""

from __future__ import annotations

import random

import numpy as np
import pytest

from phitools.errors import UsageError
from phitools.steps.neardup import MinHashParams, NearDupIndex, dedup_records, jaccard, pairs_above

VOCAB = [f"w{i}" for i in range(5000)]


def doc(rng: random.Random, n: int = 150) -> list:
    return [rng.choice(VOCAB) for _ in range(n)]


def edit(words: list, rng: random.Random, frac: float) -> list:
    w = list(words)
    for i in rng.sample(range(len(w)), int(len(w) * frac)):
        w[i] = "zz" + w[i]
    return w


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(0)
    originals = [doc(rng) for _ in range(40)]
    texts = [" ".join(d) for d in originals]
    expected = {}
    # 20 light edits (1 word in 100: Jaccard ~0.9), 10 exact copies with different spacing and case
    for k in range(20):
        expected[len(texts)] = k
        texts.append(" ".join(edit(originals[k], rng, 0.01)))
    for k in range(20, 30):
        expected[len(texts)] = k
        texts.append("  ".join(originals[k]).upper())
    # 10 heavy edits (1 word in 5: Jaccard well below 0.8) must not count
    heavy = []
    for k in range(30, 40):
        heavy.append(len(texts))
        texts.append(" ".join(edit(originals[k], rng, 0.2)))
    return texts, expected, heavy


def test_known_near_duplicates_found_and_distinct_texts_not(corpus):
    texts, expected, heavy = corpus
    idx = NearDupIndex()
    verdicts = idx.check(texts)
    assert [verdicts[i] for i in range(40)] == [None] * 40
    assert {i: verdicts[i] for i in expected} == expected
    assert all(verdicts[i] is None for i in heavy)
    rep = idx.report()
    assert rep["near_duplicates"] == 30 and rep["rate"] == round(30 / 80, 6)


def test_verdicts_agree_with_exact_jaccard(corpus):
    texts, _, _ = corpus
    idx = NearDupIndex()
    sets = [idx.shingles(t) for t in texts]
    truth = {(a, b) for a in range(len(texts)) for b in range(a + 1, len(texts)) if jaccard(sets[a], sets[b]) >= 0.8}
    assert {(a, b) for a, b, _ in pairs_above(texts)} == truth
    assert len(truth) == 30


def test_threshold_boundary_is_exact():
    # 96 distinct words -> 92 five-word shingles; replacing the last k words removes k shingles and adds k
    base = [f"t{i}" for i in range(96)]
    idx = NearDupIndex()
    s0 = idx.shingles(" ".join(base))
    for k in (1, 4, 8, 10, 11, 12, 16):
        other = base[: 96 - k] + [f"new{i}" for i in range(k)]
        j = jaccard(s0, idx.shingles(" ".join(other)))
        fresh = NearDupIndex()
        assert (fresh.check([" ".join(base), " ".join(other)])[1] == 0) == (j >= 0.8), (k, j)


def test_batching_does_not_change_results(corpus):
    texts, _, _ = corpus
    recs = [{"id": i, "text": t} for i, t in enumerate(texts)]
    dropped_1, dropped_big = [], []
    kept_1 = [
        r["id"]
        for r in dedup_records(recs, NearDupIndex(), batch=1, on_drop=lambda r, v: dropped_1.append((r["id"], v)))
    ]
    kept_big = [
        r["id"]
        for r in dedup_records(recs, NearDupIndex(), batch=7, on_drop=lambda r, v: dropped_big.append((r["id"], v)))
    ]
    assert kept_1 == kept_big and dropped_1 == dropped_big
    assert kept_1 == list(range(40)) + list(range(70, 80))
    idx = NearDupIndex()
    sigs_batch = idx.minhash.signatures([idx.shingles(t) for t in texts[:5]])
    sigs_one = np.vstack([idx.minhash.signatures([idx.shingles(t)]) for t in texts[:5]])
    assert np.array_equal(sigs_batch, sigs_one)


def test_keep_first_and_empty_texts():
    a = "the quick brown fox jumps over the lazy dog again and again"
    kept = list(dedup_records([{"text": a}, {"text": ""}, {"text": a}, {"x": 1}, {"text": a + "!"}], NearDupIndex()))
    assert kept == [{"text": a}, {"text": ""}, {"x": 1}]  # texts with no words are never duplicates


def test_params_are_checked():
    with pytest.raises(UsageError, match="bands x rows"):
        MinHashParams(num_perm=128, bands=20, rows=4)
    d = MinHashParams().describe()
    assert d["candidate_probability_at_threshold"] > 0.9999
