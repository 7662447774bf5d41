"""Random forests as arrays: numpy prediction equals scikit-learn's, and bad arrays are refused."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from phitools.errors import CheckpointError
from phitools.steps.classify.trees import Forest, from_sklearn


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.2, random_state=1, format="csr")
    X.data = rng.random(len(X.data))
    w = rng.normal(size=40)
    y = np.asarray(X @ w).ravel() + 0.1 * rng.normal(size=300)
    return X, y


def test_sklearn_forest_matches(data):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    X, y = data
    reg = RandomForestRegressor(n_estimators=15, random_state=0).fit(X, y)
    f = from_sklearn(reg, X.shape[1])
    assert np.allclose(f.predict(X[:, f.columns].toarray()), reg.predict(X), rtol=1e-12, atol=1e-12)
    clf = RandomForestClassifier(n_estimators=15, random_state=0).fit(X, y > np.median(y))
    f = from_sklearn(clf, X.shape[1])
    assert np.allclose(f.predict(X[:, f.columns].toarray()), clf.predict_proba(X)[:, 1], rtol=1e-12, atol=1e-12)


def _tiny() -> Forest:
    # one stump: x0 <= 0.5 -> 1.0 else 2.0
    return Forest(
        feature=np.array([0, 0, 0]),
        threshold=np.array([0.5, np.inf, np.inf]),
        left=np.array([1, 1, 2]),
        right=np.array([2, 1, 2]),
        value=np.array([0.0, 1.0, 2.0]),
        roots=np.array([0]),
    )


def test_refuses_loops_and_out_of_range():
    assert _tiny().validate(1).predict(np.array([[0.2], [0.9]])).tolist() == [1.0, 2.0]
    loop = _tiny()
    loop.left = np.array([0, 1, 2])  # the root points at itself on one side only: not a leaf, a loop
    with pytest.raises(CheckpointError, match="child index"):
        loop.validate(1)
    far = _tiny()
    far.feature = np.array([7, 0, 0])
    with pytest.raises(CheckpointError, match="outside"):
        far.validate(3)
    nan = _tiny()
    nan.value = np.array([0.0, np.nan, 2.0])
    with pytest.raises(CheckpointError):
        nan.validate(1)
