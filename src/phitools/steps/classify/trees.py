"""Decision forests as plain arrays, predicted with numpy: no pickle to load, no estimator library to apply.

A forest is the node arrays of all its trees laid end to end (`Forest`):

    feature[i]    column tested at node i (0 at leaves)
    threshold[i]  go left when x[feature] <= threshold (+inf at leaves, so a leaf always "goes left"...)
    left[i], right[i]  child node indices; a leaf points at itself (...and stays where it is)
    value[i]      the leaf's output (0 at internal nodes)
    roots[t]      first node of tree t

Every child index is greater than its parent's, which `validate` checks: a loaded forest cannot loop.
Prediction walks all trees for all documents at once, one level per step: (n_docs, n_trees) node indices.

The source is a scikit-learn random forest (its tree arrays copied out; sklearn compares float32 features,
so `compare_float32` keeps that). LightGBM models are applied by LightGBM itself (estimators.LightGBMModel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phitools.errors import CheckpointError


@dataclass
class Forest:
    """A tree ensemble as flat arrays (see the module docstring)."""

    feature: np.ndarray  # int64 (N,)
    threshold: np.ndarray  # float64 (N,)
    left: np.ndarray  # int64 (N,)
    right: np.ndarray  # int64 (N,)
    value: np.ndarray  # float64 (N,)
    roots: np.ndarray  # int64 (T,)
    aggregate: str = "sum"  # "sum" (boosting) or "mean" (random forest)
    link: str = "identity"  # "identity" or "sigmoid"
    sigmoid: float = 1.0
    compare_float32: bool = False

    # -- derived -------------------------------------------------------------------------------------------
    def validate(self, n_columns: int) -> Forest:
        """Check shapes, ranges and that children follow parents; raises CheckpointError. Sets depth."""
        n = len(self.feature)
        arrays = {"threshold": self.threshold, "left": self.left, "right": self.right, "value": self.value}
        for name, a in arrays.items():
            if a.ndim != 1 or len(a) != n:
                raise CheckpointError(f"forest: {name} has shape {a.shape}, expected ({n},)")
        if self.roots.ndim != 1 or len(self.roots) == 0 or n == 0:
            raise CheckpointError("forest: no trees")
        if self.aggregate not in ("sum", "mean") or self.link not in ("identity", "sigmoid"):
            raise CheckpointError(f"forest: unknown aggregate/link {self.aggregate}/{self.link}")
        if self.roots.min() < 0 or self.roots.max() >= n:
            raise CheckpointError("forest: a tree root is out of range")
        idx = np.arange(n)
        leaf = (self.left == idx) & (self.right == idx)
        internal = ~leaf
        if (
            ((self.left[internal] <= idx[internal]) | (self.right[internal] <= idx[internal])).any()
            or (self.left >= n).any()
            or (self.right >= n).any()
        ):
            raise CheckpointError("forest: a child index does not follow its parent (damaged or crafted file)")
        if internal.any() and (self.feature[internal].min() < 0 or self.feature[internal].max() >= n_columns):
            raise CheckpointError(f"forest: a split tests a column outside the {n_columns} features")
        if not np.isfinite(self.value).all() or np.isnan(self.threshold).any():
            raise CheckpointError("forest: non-finite leaf value or NaN threshold")
        self.threshold = np.where(leaf, np.inf, self.threshold)
        self.feature = np.where(leaf, 0, self.feature)
        # depth: longest root-to-leaf path, found level by level
        depth, cur = 0, self.roots
        while True:
            cur = cur[internal[cur]]
            if len(cur) == 0:
                break
            cur = np.unique(np.concatenate((self.left[cur], self.right[cur])))
            depth += 1
        self.depth = depth
        return self

    @property
    def columns(self) -> np.ndarray:
        """The sorted feature columns the forest reads."""
        idx = np.arange(len(self.feature))
        internal = (self.left != idx) | (self.right != idx)
        return np.unique(self.feature[internal])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores for X, the (n, len(columns)) matrix of exactly `self.columns` (see hashing.to_columns)."""
        cols = self.columns
        n = X.shape[0]
        if X.shape[1] != len(cols):
            raise ValueError(f"expected {len(cols)} columns, got {X.shape[1]}")
        remap = np.zeros(max(int(self.feature.max()) + 1, 1), np.int64)
        remap[cols] = np.arange(len(cols))
        featc = remap[self.feature]
        if self.compare_float32:
            X = X.astype(np.float32).astype(np.float64)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        if len(cols):
            rows = np.arange(n)[:, None] * X.shape[1]
            flat = X.ravel()
            for _ in range(getattr(self, "depth", 64)):
                go_left = flat[rows + featc[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
        out = self.value[node].sum(axis=1)
        if self.aggregate == "mean":
            out = out / len(self.roots)
        if self.link == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-self.sigmoid * out))
        return out

    # -- storage -------------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        d = {
            "feature": self.feature.astype(np.int64),
            "threshold": self.threshold.astype(np.float64),
            "left": self.left.astype(np.int64),
            "right": self.right.astype(np.int64),
            "value": self.value.astype(np.float64),
            "roots": self.roots.astype(np.int64),
        }
        return d

    def meta(self) -> dict:
        return {
            "aggregate": self.aggregate,
            "link": self.link,
            "sigmoid": self.sigmoid,
            "compare_float32": self.compare_float32,
            "n_trees": int(len(self.roots)),
            "n_nodes": int(len(self.feature)),
        }

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, n_columns: int) -> Forest:
        try:
            f = cls(
                feature=np.asarray(arrays["feature"], np.int64),
                threshold=np.asarray(arrays["threshold"], np.float64),
                left=np.asarray(arrays["left"], np.int64),
                right=np.asarray(arrays["right"], np.int64),
                value=np.asarray(arrays["value"], np.float64),
                roots=np.asarray(arrays["roots"], np.int64),
                aggregate=str(meta["aggregate"]),
                link=str(meta["link"]),
                sigmoid=float(meta.get("sigmoid", 1.0)),
                compare_float32=bool(meta.get("compare_float32", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"forest: missing or bad field ({e})") from None
        return f.validate(n_columns)


# ---- scikit-learn ---------------------------------------------------------------------------------------


def from_sklearn(est, n_columns: int) -> Forest:
    """Copy the trees of a fitted RandomForestClassifier (binary; P(class 1)) or RandomForestRegressor."""
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    base = 0
    is_clf = hasattr(est, "classes_")
    if is_clf and list(est.classes_) not in ([0, 1], [False, True]):
        raise ValueError(f"expected binary classes [0, 1], got {list(est.classes_)}")
    for tree in est.estimators_:
        t = tree.tree_
        n = t.node_count
        leaf = t.children_left == -1
        idx = np.arange(n)
        v = t.value[:, 0, :]
        val = v[:, 1] / np.maximum(v.sum(axis=1), 1e-300) if is_clf else v[:, 0]
        feats.append(np.where(leaf, 0, t.feature))
        thrs.append(np.where(leaf, np.inf, t.threshold))
        lefts.append(np.where(leaf, idx, t.children_left) + base)
        rights.append(np.where(leaf, idx, t.children_right) + base)
        vals.append(np.where(leaf, val, 0.0))
        roots.append(base)
        base += n
    f = Forest(
        np.concatenate(feats).astype(np.int64),
        np.concatenate(thrs).astype(np.float64),
        np.concatenate(lefts).astype(np.int64),
        np.concatenate(rights).astype(np.int64),
        np.concatenate(vals).astype(np.float64),
        np.array(roots, np.int64),
        aggregate="mean",
        link="identity",
        compare_float32=True,
    )
    return f.validate(n_columns)
