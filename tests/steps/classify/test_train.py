"""Training: a learnable signal is learnt (held out), and every bad labelled set is a clear error."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from phitools.errors import DataError, UsageError
from phitools.steps.classify.features import parse_features
from phitools.steps.classify.hashing import HashSettings
from phitools.steps.classify.report import roc_auc, spearman
from phitools.steps.classify.train import TrainOptions, train

FAST = dict(n_estimators=40, folds=3)


def _train(recs, **kw):
    opts = TrainOptions(**{**FAST, **kw})
    return train(iter(copy.deepcopy(recs)), parse_features("hash"), opts)


@pytest.mark.parametrize("estimator,target", [("lgbm", "regression"), ("rf", "binary"), ("logreg", "binary")])
def test_learns_documented_code_from_obfuscated(labelled, heldout, estimator, target):
    clf, report = _train(
        labelled, estimator=estimator, target=target, max_columns=5000 if estimator == "logreg" else None
    )
    m = report["evaluation"]["metrics"]
    assert m["n"] == len(labelled) and m["roc_auc"] >= 0.9 and m["f1"] >= 0.85, m
    # documents from modules never seen in training
    y = np.array([r["label"]["score"] for r in heldout], float)
    s = clf.score([r["text"] for r in heldout])
    assert roc_auc(y >= 3, s) >= 0.9
    assert spearman(s, y) >= 0.6
    good = s >= clf.decision
    assert ((y >= 3) == good).mean() >= 0.85
    assert set(m) >= {"f1", "precision", "recall", "roc_auc", "spearman", "confusion", "calibration", "baseline"}
    assert sum(row["n"] for row in m["calibration"]) == m["n"]


def test_regression_on_whole_numbers_cuts_half_a_point_below():
    from phitools.steps.classify.train import decision_point

    o = TrainOptions(target="regression", threshold=3)
    assert decision_point(o, np.array([0.0, 3, 5])) == 2.5
    assert decision_point(o, np.array([0.5, 3, 5])) == 3
    assert decision_point(TrainOptions(target="binary"), np.array([0.0, 5])) == 0.5


def test_failed_and_missing_labels_are_skipped_and_counted(labelled):
    recs = copy.deepcopy(labelled)
    recs[0]["label"] = {"score": None, "error": "timeout"}
    recs[1]["label"]["score"] = None
    del recs[2]["label"]
    clf, report = _train(recs, folds=2, n_estimators=10)
    assert report["labels"]["used"] == len(recs) - 3
    assert report["labels"]["skipped_failed_label"] == 2 and report["labels"]["skipped_unlabelled"] == 1
    assert report["evaluation"]["metrics"]["n"] == len(recs) - 3


def _set(scores):
    return [
        {"id": str(i), "text": f"def f{i}():\n    return {i}\n", "label": {"score": s}} for i, s in enumerate(scores)
    ]


@pytest.mark.parametrize(
    "recs,pattern",
    [
        ([{"text": "x"}, {"text": "y", "label": {"score": None}}], "no labels.*1 failed.*1 records without"),
        (_set([4, 5, 3, 4, 5, 4]), "one class only"),
        (_set([0, 5, 1, 4, 0, 5, 1, 4]), "too few examples for --folds 5"),
        (_set([1, 7]), r"outside the score range 0\.\.5"),
        (_set([1, -1]), "outside the score range"),
        (_set([1, "high"]), "not a number"),
        (_set([1, True]), "not a number"),
    ],
)
def test_errors(recs, pattern):
    with pytest.raises(DataError, match=pattern):
        train(iter(recs), parse_features("hash", hash_settings=HashSettings(n_features=1 << 10)), TrainOptions(folds=5))


def test_option_errors():
    for kw in (
        {"estimator": "svm"},
        {"target": "ordinal"},
        {"threshold": 9},
        {"folds": 1},
        {"test_size": 1.5},
        {"score_range": (5, 0)},
    ):
        with pytest.raises(UsageError):
            TrainOptions(**kw).check()
    with pytest.raises(UsageError):
        parse_features("tfidf")


def test_hold_out_split(labelled):
    _, report = _train(labelled, test_size=0.25)
    ev = report["evaluation"]
    assert ev["method"].startswith("stratified hold-out") and 14 <= ev["metrics"]["n"] <= 16


def test_folds_are_stratified_and_seeded():
    from phitools.steps.classify.train import splits

    good = np.array([True] * 23 + [False] * 17)
    folds = splits(good, TrainOptions(folds=5, seed=1))
    tested = np.sort(np.concatenate([te for _, te in folds]))
    assert tested.tolist() == list(range(40))  # every record held out exactly once
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == 40
        assert int(good[te].sum()) in (4, 5) and int((~good[te]).sum()) in (3, 4)
    again = splits(good, TrainOptions(folds=5, seed=1))
    other = splits(good, TrainOptions(folds=5, seed=2))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    ((tr, te),) = splits(good, TrainOptions(test_size=0.25, seed=1))
    assert len(te) == 10 and int(good[te].sum()) in (5, 6) and not set(tr) & set(te)


def test_report_metrics_by_hand():
    from phitools.steps.classify.report import binary_metrics

    truth = np.array([True, True, False, False, False])
    score = np.array([0.9, 0.4, 0.4, 0.1, 0.1])
    assert roc_auc(truth, score) == 0.9167  # of the 6 (good, bad) pairs 5 are ordered right, 1 tied: 5.5 / 6
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.2])) is None
    # average ranks 5 3.5 3.5 1.5 1.5 against 5 3.5 3.5 2 1: Pearson of the ranks = 9 / sqrt(9 * 9.5)
    assert spearman(score, np.array([5, 4, 4, 1, 0])) == 0.9733
    assert spearman(score, np.ones(5)) is None
    m = binary_metrics(truth, score >= 0.4)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 0, "tp": 2}
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.6667, 1.0, 0.8, 0.8)
    none = binary_metrics(truth, np.zeros(5, bool))  # nothing predicted good: 0, not a division by zero
    assert (none["precision"], none["recall"], none["f1"]) == (0.0, 0.0, 0.0)


def test_python_gives_what_the_command_gives(labelled, tmp_path):
    """train_classifier(opts) writes the directory `classify train` writes, byte for byte (bar timings)."""
    import json

    from conftest import run_phitools

    from phitools.shards import RecordWriter
    from phitools.steps.classify.saved import load_classifier
    from phitools.steps.classify.train import train_classifier

    data = tmp_path / "labelled.jsonl"
    with RecordWriter(data, tool="test") as w:
        for r in copy.deepcopy(labelled):
            w.write(r)
    flags = ["--n-estimators", "10", "--folds", "2", "--n-features", "16384", "--char-ngrams", "3,4", "--seed", "3"]
    run_phitools("classify", "train", data, *flags, "-o", tmp_path / "cli", check=True)
    opts = TrainOptions(
        labeled=[str(data)], output=str(tmp_path / "py"), n_estimators=10, folds=2, n_features=16384,
        char_ngrams=(3, 4), seed=3,
    )  # fmt: skip
    clf, report = train_classifier(opts)
    for name in ("classifier.json", "features.safetensors", "model.txt"):
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name

    def timeless(path):
        doc = json.loads(path.read_text())
        for key in ("argv", "created", "train_seconds"):
            doc.pop(key, None)
        for o in doc.get("outputs", []):
            if o["path"] == "report.json":
                o.pop("sha256"), o.pop("bytes")
        return doc

    for name in ("report.json", "manifest.json"):
        assert timeless(tmp_path / "py" / name) == timeless(tmp_path / "cli" / name), name
    assert load_classifier(tmp_path / "py").id == load_classifier(tmp_path / "cli").id
    assert report["labels"]["used"] == len(labelled) and clf.estimator == "lgbm"


def test_train_option_errors_from_python():
    for kw, message in (
        ({"folds": "5"}, "--folds expects integer"),
        ({"estimator": "svm"}, "--estimator must be one of rf, lgbm, logreg"),
        ({"min_df": 0}, "--min-df must be at least 1"),
        ({"n_estimators": 0}, "--n-estimators must be at least 1"),
        ({"score_range": "0-5"}, "is not LO,HI"),
        ({"char_ngrams": "3,x"}, "is not a list of sizes"),
        ({"char_ngrams": (9,)}, "char n-gram sizes must be 1..8"),
        ({"n_features": 1000}, "power of two"),
        ({"features": "tfidf"}, "unknown feature set"),
    ):
        with pytest.raises(UsageError, match=message):
            TrainOptions(**kw)
    assert TrainOptions(score_range=(0, 10), threshold=7).bounds == (0.0, 10.0)
    assert TrainOptions(char_ngrams=()).hash_settings.char_ngrams == ()
    with pytest.raises(UsageError, match="needs -o DIR"):
        from phitools.steps.classify.train import train_classifier

        train_classifier(TrainOptions(labeled=["x.jsonl"]))
