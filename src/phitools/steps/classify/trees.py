"""Decision forests as plain arrays, predicted with numpy: no pickle to load, no estimator library to apply.

A forest is the node arrays of all its trees laid end to end (`Forest`):

    feature[i]    column tested at node i (0 at leaves)
    threshold[i]  go left when x[feature] <= threshold (+inf at leaves, so a leaf always "goes left"...)
    left[i], right[i]  child node indices; a leaf points at itself (...and stays where it is)
    value[i]      the leaf's output (0 at internal nodes)
    roots[t]      first node of tree t

Every child index is greater than its parent's, which `validate` checks: a loaded forest cannot loop.
Prediction walks all trees for all documents at once, one level per step: (n_docs, n_trees) node indices.

Two sources: a scikit-learn random forest (its tree arrays copied out; sklearn compares float32 features,
so `compare_float32` keeps that), and LightGBM's own text model, parsed here (numerical splits only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phitools.errors import CheckpointError

_KZERO = 1e-35  # LightGBM's zero threshold for "zero as missing"


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
    zero_missing: np.ndarray | None = None  # bool (N,): LightGBM missing_type=Zero splits
    default_left: np.ndarray | None = None  # bool (N,): where such a split sends a zero

    # -- derived -------------------------------------------------------------------------------------------
    def validate(self, n_columns: int) -> Forest:
        """Check shapes, ranges and that children follow parents; raises CheckpointError. Sets depth."""
        n = len(self.feature)
        arrays = {"threshold": self.threshold, "left": self.left, "right": self.right, "value": self.value}
        if self.zero_missing is not None:
            arrays["zero_missing"] = self.zero_missing
        if self.default_left is not None:
            arrays["default_left"] = self.default_left
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
            zm = self.zero_missing is not None and bool(self.zero_missing.any())
            for _ in range(getattr(self, "depth", 64)):
                x = flat[rows + featc[node]]
                go_left = x <= self.threshold[node]
                if zm:
                    miss = self.zero_missing[node] & (np.abs(x) <= _KZERO)
                    go_left = np.where(miss, self.default_left[node], go_left)
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


# ---- LightGBM text model --------------------------------------------------------------------------------


def _nums(s: str, dtype) -> np.ndarray:
    s = s.strip()
    if not s:
        return np.zeros(0, dtype)
    return np.array([float(x) if dtype is np.float64 else int(x) for x in s.split(" ")], dtype)


def from_lightgbm_text(text: str, n_columns: int, source: str = "model.txt") -> Forest:
    """Parse LightGBM's text model (binary or regression objective, numerical splits) into a Forest."""

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: {msg}", hint="the file is damaged or not a LightGBM model; retrain the classifier"
        )

    lines = text.splitlines()
    if not lines or lines[0].strip() != "tree":
        raise bad("does not start with 'tree'")
    header: dict[str, str] = {}
    i = 1
    while i < len(lines) and not lines[i].startswith("Tree="):
        if "=" in lines[i]:
            k, v = lines[i].split("=", 1)
            header[k.strip()] = v.strip()
        i += 1
    objective = header.get("objective", "").split(" ")
    if header.get("num_tree_per_iteration", "1") != "1" or header.get("num_class", "1") != "1":
        raise bad("multi-class models are not supported")
    if "average_output" in header:
        raise bad("random-forest mode LightGBM models are not supported")
    if objective[0] == "binary":
        link = "sigmoid"
        sig = [o.split(":", 1)[1] for o in objective[1:] if o.startswith("sigmoid:")]
        sigmoid = float(sig[0]) if sig else 1.0
    elif objective[0] in ("regression", "regression_l2", "regression_l1", "huber", "fair", "quantile"):
        link, sigmoid = "identity", 1.0
    else:
        raise bad(f"unsupported objective {header.get('objective')!r}")
    trees: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    for line in lines[i:]:
        if line.startswith("Tree="):
            cur = {}
            trees.append(cur)
        elif line.strip() == "end of trees":
            break
        elif cur is not None and "=" in line:
            k, v = line.split("=", 1)
            cur[k.strip()] = v
    if not trees:
        raise bad("holds no trees")
    feats, thrs, lefts, rights, vals, roots, zms, dls = [], [], [], [], [], [], [], []
    base = 0
    try:
        for t in trees:
            nl = int(t["num_leaves"])
            if int(t.get("num_cat", "0")) != 0:
                raise bad("categorical splits are not supported")
            if t.get("is_linear", "0").strip() not in ("0", ""):
                raise bad("linear trees are not supported")
            leaf_value = _nums(t["leaf_value"], np.float64)
            if len(leaf_value) != nl or nl < 1:
                raise bad("leaf_value does not match num_leaves")
            ni = nl - 1
            if ni == 0:
                feats.append(np.zeros(1, np.int64))
                thrs.append(np.full(1, np.inf))
                lefts.append(np.array([base]))
                rights.append(np.array([base]))
                vals.append(leaf_value)
                zms.append(np.zeros(1, bool))
                dls.append(np.zeros(1, bool))
                roots.append(base)
                base += 1
                continue
            sf = _nums(t["split_feature"], np.int64)
            th = _nums(t["threshold"], np.float64)
            dt = _nums(t["decision_type"], np.int64)
            lc = _nums(t["left_child"], np.int64)
            rc = _nums(t["right_child"], np.int64)
            if not (len(sf) == len(th) == len(dt) == len(lc) == len(rc) == ni):
                raise bad("split arrays do not match num_leaves")
            if (dt & 1).any():
                raise bad("categorical splits are not supported")
            missing_type = (dt >> 2) & 3

            # internal nodes 0..ni-1, then leaves ni..ni+nl-1; a negative child ~k is leaf k
            def child(c: np.ndarray) -> np.ndarray:
                out = np.where(c >= 0, c, ni + (~c))
                if ((c >= 0) & (c >= ni)).any() or ((c < 0) & ((~c) >= nl)).any():
                    raise bad("a child index is out of range")
                return out + base

            idx = np.arange(ni + nl) + base
            feats.append(np.concatenate((sf, np.zeros(nl, np.int64))))
            thrs.append(np.concatenate((th, np.full(nl, np.inf))))
            lefts.append(np.concatenate((child(lc), idx[ni:])))
            rights.append(np.concatenate((child(rc), idx[ni:])))
            vals.append(np.concatenate((np.zeros(ni), leaf_value)))
            zms.append(np.concatenate((missing_type == 1, np.zeros(nl, bool))))
            dls.append(np.concatenate(((dt & 2) != 0, np.zeros(nl, bool))))
            roots.append(base)
            base += ni + nl
    except (KeyError, ValueError, OverflowError) as e:
        raise bad(f"malformed tree ({e})") from None
    f = Forest(
        np.concatenate(feats),
        np.concatenate(thrs),
        np.concatenate(lefts),
        np.concatenate(rights),
        np.concatenate(vals),
        np.array(roots, np.int64),
        aggregate="sum",
        link=link,
        sigmoid=sigmoid,
        compare_float32=False,
        zero_missing=np.concatenate(zms),
        default_left=np.concatenate(dls),
    )
    return f.validate(n_columns)
