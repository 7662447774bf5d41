"""apply: exact and streaming keep-top, ordered multi-process scoring, histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.steps.classify import apply as ap
from phitools.steps.classify.saved import load_classifier


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.5, 3.0]), min_size=1, max_size=80),
    st.integers(1, 5),
    st.data(),
)
def test_kth_largest_is_exact(values, nchunks, data):
    x = np.array(values, np.float64)
    k = data.draw(st.integers(1, len(x)))
    chunks = np.array_split(x, nchunks)
    t, m = ap.kth_largest(lambda: iter(chunks), k)
    desc = np.sort(x)[::-1]
    assert t == desc[k - 1]
    assert (x > t).sum() + m == k and 1 <= m <= (x == t).sum()


def _records(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["def", "return", "self", "value", "x", "lIlO0", "import", "class", "#", "docstring", '"""', "\n", "    "]
    return [{"id": i, "text": " ".join(rng.choice(words, size=int(rng.integers(5, 60))))} for i in range(n)]


@pytest.fixture(scope="module")
def clf(clf_dir):
    return load_classifier(clf_dir)


def _run(clf, clf_dir, recs, keep, *, rereadable, workers=1):
    kept, dropped = [], []
    import copy

    out = ap.Outcome(histogram=ap.histogram_for(clf))
    with ap.Scorer(clf, str(clf_dir), workers=workers) as scorer:
        for rec, k in ap.select(clf, scorer, lambda: iter(copy.deepcopy(recs)), keep, out, rereadable=rereadable):
            (kept if k else dropped).append(rec["id"])
    return kept, dropped, out


def test_keep_top_exact_keeps_exactly_k_in_order(clf, clf_dir):
    recs = _records(700)
    kept, dropped, out = _run(clf, clf_dir, recs, ap.Keep("keep_top", fraction=0.3), rereadable=True)
    assert len(kept) == round(0.3 * 700) and len(kept) + len(dropped) == 700
    assert kept == sorted(kept) and out.kept == len(kept)
    scores = clf.score([r["text"] for r in recs])
    worst_kept = min(scores[i] for i in kept)
    assert all(scores[i] <= worst_kept for i in dropped)
    assert out.histogram.counts.sum() == 700 and out.histogram.kept.sum() == len(kept)


def test_keep_top_streaming_is_close(clf, clf_dir, monkeypatch):
    monkeypatch.setattr(ap, "WARMUP_RECORDS", 300)
    monkeypatch.setattr(ap, "RESERVOIR", 500)
    monkeypatch.setattr(ap, "BATCH_RECORDS", 100)
    recs = _records(3000, seed=1)
    kept, dropped, out = _run(clf, clf_dir, recs, ap.Keep("keep_top", fraction=0.25, seed=3), rereadable=False)
    assert len(kept) + len(dropped) == 3000
    assert abs(len(kept) / 3000 - 0.25) < 0.03, len(kept)
    assert "streaming" in out.quantile


def test_threshold_and_score_only(clf, clf_dir):
    recs = _records(200, seed=2)
    scores = clf.score([r["text"] for r in recs])
    t = float(np.median(scores))
    kept, _, _ = _run(clf, clf_dir, recs, ap.Keep("threshold", threshold=t), rereadable=True)
    assert kept == [i for i in range(200) if scores[i] >= t]
    kept, dropped, _ = _run(clf, clf_dir, recs, ap.Keep("score_only"), rereadable=True)
    assert len(kept) == 200 and not dropped


def test_worker_count_does_not_change_scores(clf, clf_dir, monkeypatch):
    monkeypatch.setattr(ap, "BATCH_RECORDS", 50)
    recs = _records(400, seed=4)
    got = {}
    for w in (1, 2):
        import copy

        rs = copy.deepcopy(recs)
        with ap.Scorer(clf, str(clf_dir), workers=w) as scorer:
            got[w] = np.concatenate([s for _, s in scorer.map(ap.batches(iter(rs), max_records=ap.BATCH_RECORDS))])
    assert np.array_equal(got[1], got[2])


def test_batches_are_cut_by_size_and_count():
    recs = [{"text": "x" * 10}] * 25
    assert [len(b) for b in ap.batches(iter(recs), max_bytes=35, max_records=100)] == [4, 4, 4, 4, 4, 4, 1]
    assert [len(b) for b in ap.batches(iter(recs), max_bytes=10**9, max_records=10)] == [10, 10, 5]
    assert math.isclose(sum(1 for _ in ap.batches(iter([]))), 0)
