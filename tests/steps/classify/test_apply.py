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


# ---- the Python API does what the command does -------------------------------------------------------------


def _manifest(path):
    import json

    m = json.loads(path.read_text())
    for volatile in ("argv", "created"):
        m.pop(volatile)
    return m


def _written(out):
    """{relative name: bytes} of a file or a shard directory, and its manifest without argv and time."""
    if out.is_dir():
        return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl*"))}, _manifest(out / "manifest.json")
    return {out.name: out.read_bytes()}, _manifest(out.with_name(out.name + ".manifest.json"))


@pytest.mark.parametrize(
    "flags,kw",
    [
        (["--keep-top", "0.3"], {"keep_top": 0.3}),
        (["--threshold", "2.5"], {"threshold": 2.5}),
        (["--score-only"], {"score_only": True}),
    ],
)
def test_python_gives_what_the_command_gives(clf_dir, tmp_path, flags, kw):
    from conftest import run_phitools

    from phitools import pipeline
    from phitools.shards import RecordWriter

    corpus = tmp_path / "corpus.jsonl"
    with RecordWriter(corpus, tool="test") as w:
        for r in _records(500, seed=5):
            w.write(r)
    rejects = not kw.get("score_only")
    for side in ("cli", "py"):
        (tmp_path / side).mkdir()
    run_phitools(
        "classify", "apply", clf_dir, corpus, *flags, "--workers", "1", "--shard-size", "200", "-o",
        tmp_path / "cli" / "out", *(["--rejects", tmp_path / "cli" / "rej.jsonl.zst"] if rejects else []),
        check=True,
    )  # fmt: skip
    opts = ap.ApplyOptions(
        clf=str(clf_dir), workers=1, rejects=str(tmp_path / "py" / "rej.jsonl.zst") if rejects else None, **kw
    )
    step = ap.Apply(opts)
    stats = pipeline.run(
        step, pipeline.IOOptions(inputs=[str(corpus)], output=str(tmp_path / "py" / "out"), shard_size="200")
    )
    for name in ("out",) + (("rej.jsonl.zst",) if rejects else ()):
        assert _written(tmp_path / "py" / name) == _written(tmp_path / "cli" / name)
    assert stats.records_in == 500 and step.summary["scored"] == 500
    assert step.summary["kept"] == stats.records_out == (150 if "keep_top" in kw else stats.records_out)


def test_python_on_records_in_memory(clf, clf_dir):
    """No files at all: a step over a list. With `reopen` the list is read twice for an exact --keep-top."""
    import copy

    from phitools.pipeline import Context

    recs = _records(300, seed=6)
    scores = clf.score([r["text"] for r in recs])
    cut = float(np.median(scores))
    step = ap.Apply(ap.ApplyOptions(clf=str(clf_dir), threshold=cut, workers=1))
    kept = list(step(copy.deepcopy(recs), Context()))
    assert [r["id"] for r in kept] == [i for i in range(300) if scores[i] >= cut] and 100 < len(kept) < 300
    assert all(r["quality"]["classifier"] == clf.tag for r in kept)
    step = ap.Apply(ap.ApplyOptions(clf=str(clf_dir), keep_top=0.1, workers=1))
    ctx = Context(reopen=lambda: copy.deepcopy(recs))
    kept = list(step(copy.deepcopy(recs), ctx))
    assert len(kept) == 30 and step.summary["quantile"].startswith("exact")
    assert ctx.stats.dropped == {"below_cut": 270} and step.manifest()["classify"]["result"]["kept"] == 30


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"keep_top": 0.3, "threshold": 2.0}, "--keep-top and --threshold"),
        ({"score_only": True, "rejects": "r.jsonl"}, "--score-only"),
        ({"keep_top": 0.0}, "fraction in"),
        ({"keep_top": 1.5}, "fraction in"),
        ({"workers": -1}, "--workers must be at least 0"),
        ({"embed_batch_size": 0}, "--embed-batch-size must be at least 1"),
        ({"workers": "2"}, "--workers expects integer"),
    ],
)
def test_option_errors_from_python(kw, message):
    from phitools.errors import UsageError

    with pytest.raises(UsageError, match=message):
        ap.ApplyOptions(clf="clf/", **kw)


def test_a_missing_classifier_is_an_error_when_the_step_is_built(tmp_path):
    from phitools.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such classifier directory"):
        ap.Apply(ap.ApplyOptions(clf=str(tmp_path / "nope")))
