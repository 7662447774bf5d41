"""The estimators: `rf` (random forest, as phi-1), `lgbm` (LightGBM), `logreg` (a linear model).

Each is fitted with its usual library and saved in a format that needs no unpickling to load:
  rf      scikit-learn's trees copied out as arrays (trees.Forest, saved as safetensors, predicted with numpy)
  lgbm    LightGBM's own text model (model.txt), checked by lightgbm_text.check_text, then applied by LightGBM
          (`Booster.predict`: 2.3x faster than the numpy evaluator it replaced, see docs/performance.md)
  logreg  weights + bias (safetensors): logistic regression for a binary target, ridge for regression

Models see only the "active" columns (a hashed bucket that occurs in at least `min_df` training documents,
and every dense column), of which they keep the `max_columns` buckets most correlated with the target
(2000 for trees, 20000 for logreg: models over 10^5-10^6 sparse columns are slow to fit and mostly fit noise).
`columns` maps a model's column k to the feature pipeline's column columns[k].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phitools.errors import CheckpointError
from phitools.steps.classify.lightgbm_text import check_text
from phitools.steps.classify.trees import Forest, from_sklearn

ESTIMATORS = ("rf", "lgbm", "logreg")
MODEL_FILES = {"rf": "forest.safetensors", "lgbm": "model.txt", "logreg": "linear.safetensors"}
DEFAULT_TREES = {"rf": 200, "lgbm": 200}
DEFAULT_MAX_COLUMNS = {"rf": 2000, "lgbm": 2000, "logreg": 20000}


@dataclass
class Linear:
    """score = link(X[:, columns] @ weights + bias)."""

    columns: np.ndarray
    weights: np.ndarray
    bias: float
    link: str = "identity"

    def validate(self, dim: int) -> Linear:
        if self.columns.shape != self.weights.shape or self.columns.ndim != 1:
            raise CheckpointError("linear model: columns and weights differ in shape")
        if len(self.columns) and (self.columns.min() < 0 or self.columns.max() >= dim):
            raise CheckpointError("linear model: a column is outside the feature space")
        if (
            not np.isfinite(self.weights).all()
            or not np.isfinite(self.bias)
            or self.link not in ("identity", "sigmoid")
        ):
            raise CheckpointError("linear model: non-finite weights or unknown link")
        return self

    def full_weights(self, dim: int) -> np.ndarray:
        w = np.zeros(dim, np.float64)
        np.add.at(w, self.columns, self.weights)
        return w

    def finish(self, raw: np.ndarray) -> np.ndarray:
        z = raw + self.bias
        return 1.0 / (1.0 + np.exp(-z)) if self.link == "sigmoid" else z


@dataclass
class Trees:
    """A Forest over model columns; `columns` maps them to pipeline columns."""

    forest: Forest
    columns: np.ndarray

    @property
    def pipeline_columns(self) -> np.ndarray:
        return self.columns[self.forest.columns]

    def predict(self, X_used: np.ndarray) -> np.ndarray:
        """X_used: the (n, len(pipeline_columns)) values of pipeline_columns, in that order."""
        return self.forest.predict(X_used)


class LightGBMModel:
    """LightGBM's own model over model columns, kept in its text format and applied by LightGBM; `columns` maps
    them to pipeline columns. The text is checked (lightgbm_text.check_text) before LightGBM parses it."""

    def __init__(self, text: str, columns: np.ndarray, source: str = "model.txt"):
        import lightgbm as lgb

        self.text = text
        self.columns = columns
        self.checked = check_text(text, len(columns), source)
        try:
            self.booster = lgb.Booster(model_str=text)
        except (lgb.basic.LightGBMError, ValueError) as e:
            raise CheckpointError(f"{source}: LightGBM cannot read it ({e})") from None
        if self.booster.num_feature() != len(columns):
            raise CheckpointError(f"{source}: {self.booster.num_feature()} features, expected {len(columns)}")

    @property
    def pipeline_columns(self) -> np.ndarray:
        """The pipeline columns the trees split on (sorted)."""
        return self.columns[self.checked.used]

    def predict(self, X_used: np.ndarray) -> np.ndarray:
        """X_used: the (n, len(pipeline_columns)) values of pipeline_columns, in that order."""
        import scipy.sparse as sp

        # sparse rows over every model column (LightGBM wants them all); the columns no split tests stay empty
        A = sp.csr_matrix(X_used)
        A = sp.csr_matrix((A.data, self.checked.used[A.indices], A.indptr), shape=(A.shape[0], len(self.columns)))
        return self.predict_model_columns(A)

    def predict_model_columns(self, X) -> np.ndarray:
        """Scores of X, a scipy CSR matrix over the model columns. One thread: --workers processes parallelise."""
        return self.booster.predict(X, num_threads=1)

    def meta(self) -> dict:
        """What classifier.json records of the model (the keys the numpy evaluator's forest recorded)."""
        c = self.checked
        return {
            "aggregate": "sum",
            "link": c.link,
            "sigmoid": c.sigmoid,
            "compare_float32": False,
            "n_trees": c.n_trees,
            "n_nodes": c.n_nodes,
        }


def predict_matrix(model, X) -> np.ndarray:
    """Predict from a full scipy CSR feature matrix (cross-validation and tests)."""
    if isinstance(model, Linear):
        return model.finish(np.asarray(X[:, model.columns] @ model.weights).ravel())
    if isinstance(model, LightGBMModel):
        return model.predict_model_columns(X[:, model.columns].tocsr())
    return model.predict(X[:, model.pipeline_columns].toarray())


def select_columns(X, y: np.ndarray, columns: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """`keep` plus the k other `columns` with the largest |Pearson correlation| with y (ties: lower column). Sorted."""
    cand = np.setdiff1d(columns, keep)
    if len(cand) <= k:
        return np.union1d(cand, keep)
    Xc = X[:, cand].tocsc()
    n = X.shape[0]
    yc = y - y.mean()
    cov = np.asarray(Xc.T @ yc).ravel()
    mean = np.asarray(Xc.sum(axis=0)).ravel() / n
    var = np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel() / n - mean**2
    score = np.abs(cov) / np.sqrt(np.maximum(var, 1e-30))
    order = np.lexsort((cand, -score))[:k]
    return np.union1d(cand[order], keep)


def fit(
    estimator: str,
    X,
    y_score: np.ndarray,
    *,
    target: str,
    threshold: float,
    columns: np.ndarray,
    dense_columns: np.ndarray,
    seed: int = 0,
    n_estimators: int | None = None,
    threads: int = 1,
    max_columns: int | None = None,
):
    """Fit on X[:, columns] (CSR); returns the model."""
    binary = target == "binary"
    y = (y_score >= threshold).astype(np.int64) if binary else y_score.astype(np.float64)
    columns = select_columns(
        X,
        y.astype(np.float64),
        columns,
        np.intersect1d(columns, dense_columns),
        max_columns or DEFAULT_MAX_COLUMNS[estimator],
    )
    Xa = X[:, columns].tocsr()
    if estimator == "lgbm":
        import lightgbm as lgb

        n = X.shape[0]
        params = {
            "objective": "binary" if binary else "regression",
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": int(max(3, min(20, n // 40))),
            "min_sum_hessian_in_leaf": 1e-3,
            "feature_fraction": 0.5,
            "feature_fraction_seed": seed,
            "lambda_l2": 1.0,
            "max_bin": 31,
            "min_data_in_bin": 1,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": threads,
            "verbosity": -1,
        }
        ds = lgb.Dataset(Xa, label=y, params={"max_bin": 31, "min_data_in_bin": 1, "verbosity": -1}, free_raw_data=True)
        booster = lgb.train(params, ds, num_boost_round=n_estimators or DEFAULT_TREES["lgbm"])
        return LightGBMModel(booster.model_to_string(), columns.astype(np.int64))
    if estimator == "rf":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if binary else RandomForestRegressor
        est = cls(
            n_estimators=n_estimators or DEFAULT_TREES["rf"],
            max_features="sqrt",
            min_samples_leaf=1,
            random_state=seed,
            n_jobs=threads,
        )
        est.fit(Xa, y)
        forest = from_sklearn(est, len(columns))
        return Trees(forest, columns.astype(np.int64))
    if estimator == "logreg":
        return _fit_linear(Xa, y, binary=binary, columns=columns, dense_columns=dense_columns, seed=seed)
    raise ValueError(f"unknown estimator {estimator!r}")


def _fit_linear(Xa, y, *, binary: bool, columns: np.ndarray, dense_columns: np.ndarray, seed: int) -> Linear:
    """Standardise, fit, and fold the scaling back into the weights (so apply needs only a dot product).

    Sparse (hashed) columns share one scale that makes the mean row norm 1; dense columns are centred and
    scaled to unit variance.
    """
    import scipy.sparse as sp

    is_dense = np.isin(columns, dense_columns)
    hs, ds = np.flatnonzero(~is_dense), np.flatnonzero(is_dense)
    Xh = Xa[:, hs]
    norms = np.sqrt(np.asarray(Xh.multiply(Xh).sum(axis=1)).ravel())
    s_h = 1.0 / max(float(norms.mean()), 1e-12) if len(hs) else 1.0
    Xd = Xa[:, ds].toarray()
    mu = Xd.mean(axis=0) if len(ds) else np.zeros(0)
    sd = Xd.std(axis=0) if len(ds) else np.zeros(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Xs = sp.hstack([Xh * s_h, sp.csr_matrix((Xd - mu) / sd)], format="csr")
    if binary:
        from sklearn.linear_model import LogisticRegression

        # liblinear's dual coordinate descent suits few documents x many columns (lbfgs is ~100x slower here)
        m = LogisticRegression(C=1.0, solver="liblinear", max_iter=1000, random_state=seed)
        m.fit(Xs, y)
        coef, b, link = m.coef_.ravel(), float(m.intercept_[0]), "sigmoid"
    else:
        from sklearn.linear_model import Ridge

        m = Ridge(alpha=1.0, random_state=seed)
        m.fit(Xs, y)
        coef, b, link = np.ravel(m.coef_), float(m.intercept_), "identity"
    w = np.concatenate([coef[: len(hs)] * s_h, coef[len(hs) :] / sd])
    b -= float((coef[len(hs) :] * mu / sd).sum())
    return Linear(np.concatenate([columns[hs], columns[ds]]).astype(np.int64), w.astype(np.float64), b, link)


# ---- storage --------------------------------------------------------------------------------------------


def model_arrays(model) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays for safetensors, JSON metadata) of an rf or logreg model (lgbm saves its text model instead)."""
    if isinstance(model, Linear):
        return (
            {"columns": model.columns, "weights": model.weights, "bias": np.array([model.bias], np.float64)},
            {"link": model.link, "n_columns": int(len(model.columns))},
        )
    arrays = model.forest.arrays()
    arrays["columns"] = model.columns
    return arrays, model.forest.meta()


def load_model(estimator: str, data: bytes | dict, meta: dict, dim: int, source: str):
    """Rebuild a model from its saved file (text for lgbm, safetensors arrays otherwise); raises CheckpointError."""
    if estimator == "lgbm":
        cols = (
            np.asarray(meta.get("columns"), np.int64)
            if not isinstance(meta.get("columns"), np.ndarray)
            else meta["columns"]
        )
        try:
            text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else None
        except UnicodeDecodeError:
            text = None
        if text is None:
            raise CheckpointError(f"{source}: not a UTF-8 LightGBM text model")
        return _check_columns(LightGBMModel(text, cols, source=source), dim)
    if not isinstance(data, dict) or "columns" not in data:
        raise CheckpointError(f"{source}: `columns` array is missing")
    cols = np.asarray(data["columns"], np.int64)
    if estimator == "rf":
        return _check_columns(Trees(Forest.from_arrays(data, meta, len(cols)), cols), dim)
    if estimator == "logreg":
        if "weights" not in data or "bias" not in data or np.asarray(data["bias"]).shape != (1,):
            raise CheckpointError(f"{source}: weights/bias missing")
        return Linear(
            cols, np.asarray(data["weights"], np.float64), float(data["bias"][0]), str(meta.get("link", ""))
        ).validate(dim)
    raise CheckpointError(f"unknown estimator {estimator!r}")


def _check_columns(t: Trees | LightGBMModel, dim: int) -> Trees | LightGBMModel:
    if t.columns.ndim != 1 or (len(t.columns) and (t.columns.min() < 0 or t.columns.max() >= dim)):
        raise CheckpointError("tree model: a column is outside the feature space")
    return t
