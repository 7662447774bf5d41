"""LightGBM models: applied by LightGBM itself (equal to the booster that was trained), and a model text that
LightGBM's own parser would trust to its harm (a loop, a column past the row, tree_sizes that lie) is refused
before LightGBM sees it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from phitools.errors import CheckpointError
from phitools.runtime.files import sha256_file
from phitools.steps.classify.estimators import LightGBMModel
from phitools.steps.classify.lightgbm_text import check_text
from phitools.steps.classify.saved import load_classifier

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.2, random_state=1, format="csr")
    X.data = rng.random(len(X.data))
    w = rng.normal(size=40)
    y = np.asarray(X @ w).ravel() + 0.1 * rng.normal(size=300)
    return X, y


def _booster(X, y, objective):
    import lightgbm as lgb

    label = y if objective == "regression" else (y > np.median(y)).astype(int)
    params = {"objective": objective, "num_leaves": 7, "min_data_in_leaf": 5, "verbosity": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, label=label), num_boost_round=25)


@pytest.mark.parametrize("objective", ["regression", "binary"])
def test_applied_model_equals_the_trained_booster(data, objective):
    X, y = data
    b = _booster(X, y, objective)
    m = LightGBMModel(b.model_to_string(), np.arange(40, dtype=np.int64))
    # what apply hands it: only the columns the trees split on, dense (zeros are LightGBM's "zero as missing")
    got = m.predict(X[:, m.pipeline_columns].toarray())
    np.testing.assert_allclose(got, b.predict(X), rtol=1e-12, atol=1e-12)
    assert 0 < len(m.pipeline_columns) < 40 and m.meta()["n_trees"] == 25
    assert m.meta()["link"] == ("sigmoid" if objective == "binary" else "identity")


@pytest.fixture(scope="module")
def model_text():
    return (GOLDEN / "lgbm-regression" / "model.txt").read_text()


def _n_columns(text: str) -> int:
    return int(re.search(r"^max_feature_idx=(\d+)$", text, re.M).group(1)) + 1


def resize(text: str) -> str:
    """Rewrite tree_sizes to match the trees (what someone editing a tree consistently would do)."""
    starts = [m.start() for m in re.finditer(r"^Tree=", text, re.M)] + [text.index("\nend of trees\n") + 1]
    sizes = " ".join(str(b - a) for a, b in zip(starts, starts[1:]))
    return re.sub(r"^tree_sizes=.*$", "tree_sizes=" + sizes, text, count=1, flags=re.M)


def _tree0(text: str, key: str, value: str) -> str:
    """Set `key` of the first tree (the tree sizes rewritten to match)."""
    head, rest = text.split("Tree=0\n", 1)
    rest = re.sub(rf"^{key}=.*$", f"{key}={value}", rest, count=1, flags=re.M)
    return resize(head + "Tree=0\n" + rest)


def test_a_model_as_trained_passes(model_text):
    c = check_text(model_text, _n_columns(model_text))
    assert c.n_trees == 40 and len(c.used) > 5 and c.link == "identity"
    assert resize(model_text) == model_text  # the helper reproduces LightGBM's tree_sizes


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: _tree0(t, "left_child", "0 -2"), "does not follow its parent"),  # the root points at itself
        (lambda t: _tree0(t, "right_child", "1 7"), "does not follow its parent"),  # past the last node
        (lambda t: _tree0(t, "left_child", "-9 -2"), "does not follow its parent"),  # a leaf that does not exist
        (lambda t: _tree0(t, "split_feature", f"{_n_columns(t)} 1"), "outside the"),
        (lambda t: _tree0(t, "split_feature", "-1 1"), "outside the"),
        (lambda t: _tree0(t, "decision_type", "1 2"), "categorical"),
        (lambda t: _tree0(t, "num_cat", "1"), "numerical splits"),
        (lambda t: _tree0(t, "leaf_value", "1 2"), "leaf_value"),
        (lambda t: _tree0(t, "threshold", "nan 0.1"), "NaN"),
        (lambda t: _tree0(t, "internal_count", "1"), "internal_count"),
        (lambda t: re.sub(r"^tree_sizes=(\d+)", lambda m: f"tree_sizes={int(m[1]) + 64}", t, flags=re.M), "tree_sizes"),
        (lambda t: resize(t.replace("shrinkage=1\n", "shrinkage 1\n", 1)), "not key=value"),
        (lambda t: t.replace("max_feature_idx=", "max_feature_idx=9", 1), "max_feature_idx"),
        (lambda t: t.replace("num_class=1", "num_class=3", 1), "multi-class"),
        (lambda t: t.replace("objective=regression", "objective=lambdarank", 1), "unsupported objective"),
        (lambda t: t.replace("objective=regression", "objective=regression sqrt", 1), "unsupported objective"),
        (lambda t: t.replace("version=v4\n", "version=v4\naverage_output\n", 1), "random-forest"),
        (lambda t: t[: t.index("end of trees")], "end of trees"),  # cut short
        (lambda t: resize(t.replace("Tree=1\n", "Tree=7\n", 1)), "Tree=1"),
        (lambda t: t.replace("tree\n", "forest\n", 1), "does not start"),
        (lambda t: t.replace("Column_0", "Colümn_0", 1), "plain-text"),
        (lambda t: t.replace("\n", "\r\n"), "plain-text"),
    ],
)
def test_crafted_model_texts_are_refused(model_text, edit, message):
    text = edit(model_text)
    assert text != model_text
    with pytest.raises(CheckpointError, match=message):
        LightGBMModel(text, np.arange(_n_columns(model_text), dtype=np.int64))


def test_a_loop_in_a_saved_classifier_is_refused_at_load(tmp_path, model_text):
    """Someone who also rewrites the manifest gets past the sha256, not past the check: LightGBM would load
    this model and then loop forever on the first document that reaches the root."""
    dst = tmp_path / "clf"
    shutil.copytree(GOLDEN / "lgbm-regression", dst)
    (dst / "model.txt").write_text(_tree0(model_text, "left_child", "0 -2"))
    man = json.loads((dst / "manifest.json").read_text())
    for o in man["outputs"]:
        o["sha256"] = sha256_file(dst / o["path"])
    (dst / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="does not follow its parent"):
        load_classifier(dst)
