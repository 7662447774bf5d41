"""Scores do not drift: two LightGBM classifiers saved by phitools, and the scores the numpy tree evaluator gave
them (golden/scores.jsonl.zst, written at commit b55fe9f, before apply switched to LightGBM's own
Booster.predict). Scores from today's code must equal them: raw predictions to 1e-12, the rounded `quality.score`
exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phitools.shards import read_records
from phitools.steps.classify.saved import load_classifier

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def golden():
    return list(read_records([GOLDEN / "scores.jsonl.zst"]))


@pytest.mark.parametrize("target", ["regression", "binary"])
def test_scores_equal_the_numpy_evaluators(golden, target):
    clf = load_classifier(GOLDEN / f"lgbm-{target}")
    texts = [r["text"] for r in golden]
    feats = clf.pipeline.featurize(texts)
    raw = clf.model.predict(clf.pipeline.columns(feats, clf.model.pipeline_columns))
    np.testing.assert_allclose(raw, [r[f"{target}_raw"] for r in golden], rtol=1e-12, atol=1e-12)
    assert clf.score(texts).tolist() == [r[f"{target}_score"] for r in golden]
    assert len(set(raw.tolist())) > 10  # the texts reach many different leaves
