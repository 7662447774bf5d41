"""LightGBM's text model (model.txt), checked before LightGBM itself parses and applies it.

LightGBM's parser trusts its input: a line without `=` is scanned past its end, a `tree_sizes` entry that does
not match the text makes it read trees from the wrong place, a child index that points back up makes
prediction loop forever, and a split on a column past `max_feature_idx` reads outside the row (LightGBM 4.7,
tried on an edited model.txt: the loop hangs `predict`, a wrong tree size aborts the process, a column past the
row is a segmentation fault; tests/steps/classify/test_lightgbm_text.py has each edit). A damaged file
is already refused by the manifest's sha256; this check refuses an edited or crafted one (someone who rewrote
the manifest too) with a CheckpointError before LightGBM sees it. It accepts what phitools trains: one tree per
iteration, a binary or regression objective, numerical splits only.

The check is a parse of the layout LightGBM writes (`Booster.model_to_string`):

    tree                       header: key=value lines (version, num_class, max_feature_idx, objective,
    version=v4                 feature_names, feature_infos, tree_sizes = bytes of each tree block)
    ...
    Tree=0                     one block per tree: key=value lines, then an empty line
    num_leaves=3               internal nodes 0..num_leaves-2; a child >= 0 is an internal node (always a
    split_feature=313 220      later one than its parent), a child ~k (< 0) is leaf k
    ...
    end of trees               (then feature importances and parameters, which prediction does not read)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phitools.errors import CheckpointError

REGRESSION = ("regression", "regression_l2", "regression_l1", "huber", "fair", "quantile")
NODE_ARRAYS = (
    "split_feature",
    "split_gain",
    "threshold",
    "decision_type",
    "left_child",
    "right_child",
    "internal_value",
    "internal_weight",
    "internal_count",
)
LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")


@dataclass
class Checked:
    """What the check learnt about a model: the columns it reads and what classifier.json records of it."""

    used: np.ndarray  # sorted model columns its splits test
    link: str  # "sigmoid" (binary) or "identity"
    sigmoid: float
    n_trees: int
    n_nodes: int  # internal nodes + leaves, all trees


def _nums(s: str, dtype) -> np.ndarray:
    s = s.strip()
    if not s:
        return np.zeros(0, dtype)
    return np.array([float(x) if dtype is np.float64 else int(x) for x in s.split(" ")], dtype)


def check_text(text: str, n_columns: int, source: str = "model.txt") -> Checked:
    """Check LightGBM's text model of a model over `n_columns` columns; raises CheckpointError."""

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: {msg}", hint="the file is damaged or not a LightGBM model; retrain the classifier"
        )

    if not text.isascii() or "\r" in text or "\0" in text:
        raise bad("is not the plain-text layout LightGBM writes")
    lines = text.split("\n")
    if lines[0] != "tree":
        raise bad("does not start with 'tree'")
    # the header: up to the first tree
    header: dict[str, str] = {}
    i = 1
    while i < len(lines) and not lines[i].startswith("Tree="):
        if lines[i] and "=" not in lines[i] and lines[i] != "average_output":
            raise bad(f"line {i + 1} is not key=value")
        k, _, v = lines[i].partition("=")
        header[k] = v
        i += 1
    if header.get("num_tree_per_iteration", "1") != "1" or header.get("num_class") != "1":
        raise bad("multi-class models are not supported")
    if "average_output" in header:
        raise bad("random-forest mode LightGBM models are not supported")
    if header.get("max_feature_idx") != str(n_columns - 1):
        raise bad(f"max_feature_idx {header.get('max_feature_idx')!r} does not match the {n_columns} model columns")
    objective = header.get("objective", "").split(" ")
    if objective[0] == "binary":
        link = "sigmoid"
        sig = [o.split(":", 1)[1] for o in objective[1:] if o.startswith("sigmoid:")]
        try:
            sigmoid = float(sig[0]) if sig else 1.0
        except ValueError:
            raise bad(f"bad objective {header['objective']!r}") from None
    elif objective[0] in REGRESSION and "sqrt" not in objective:
        link, sigmoid = "identity", 1.0
    else:
        raise bad(f"unsupported objective {header.get('objective')!r}")
    # the trees: blocks of key=value lines, each ended by an empty line, then "end of trees"
    trees: list[dict[str, str]] = []
    starts: list[int] = []  # character (= byte: ASCII) offset of each block, then of "end of trees"
    offset = sum(len(line) + 1 for line in lines[:i])
    cur: dict[str, str] | None = None
    while True:
        if i >= len(lines):
            raise bad("has no 'end of trees' line")
        line = lines[i]
        if line == "end of trees":
            starts.append(offset)
            break
        if line.startswith("Tree="):
            if cur is not None or line != f"Tree={len(trees)}":
                raise bad(f"line {i + 1}: expected Tree={len(trees)} after an empty line")
            cur = {}
            trees.append(cur)
            starts.append(offset)
        elif line == "":
            cur = None
        elif cur is None or "=" not in line:
            raise bad(f"line {i + 1} is not key=value inside a tree")
        else:
            k, _, v = line.partition("=")
            cur[k] = v
        offset += len(line) + 1
        i += 1
    if not trees:
        raise bad("holds no trees")
    if "tree_sizes" in header:
        try:
            sizes = [int(x) for x in header["tree_sizes"].split(" ")]
        except ValueError:
            raise bad("tree_sizes is not a list of sizes") from None
        if sizes != [b - a for a, b in zip(starts, starts[1:])]:
            raise bad("tree_sizes does not match the trees in the file")
    used: list[np.ndarray] = []
    n_nodes = 0
    try:
        for t in trees:
            nl = int(t["num_leaves"])
            ni = nl - 1
            if nl < 1 or int(t.get("num_cat", "0")) != 0 or t.get("is_linear", "0").strip() not in ("0", ""):
                raise bad("only trees with numerical splits are supported")
            for key, n in [(k, ni) for k in NODE_ARRAYS] + [(k, nl) for k in LEAF_ARRAYS]:
                if key in t and len(t[key].split(" ")) != n and n > 0:
                    raise bad(f"{key} does not match num_leaves")
            leaf_value = _nums(t["leaf_value"], np.float64)
            if len(leaf_value) != nl or not np.isfinite(leaf_value).all():
                raise bad("leaf_value does not match num_leaves or is not finite")
            n_nodes += ni + nl
            if ni == 0:
                continue
            sf = _nums(t["split_feature"], np.int64)
            th = _nums(t["threshold"], np.float64)
            dt = _nums(t["decision_type"], np.int64)
            lc = _nums(t["left_child"], np.int64)
            rc = _nums(t["right_child"], np.int64)
            if not (len(sf) == len(th) == len(dt) == len(lc) == len(rc) == ni):
                raise bad("split arrays do not match num_leaves")
            if (dt & 1).any() or (dt < 0).any() or (dt > 15).any():
                raise bad("categorical splits are not supported")
            if np.isnan(th).any():
                raise bad("a NaN threshold")
            if (sf < 0).any() or (sf >= n_columns).any():
                raise bad(f"a split tests a column outside the {n_columns} model columns")
            node = np.arange(ni)
            for child in (lc, rc):  # an internal child comes after its parent (so a walk ends); a leaf exists
                if ((child >= 0) & ((child <= node) | (child >= ni))).any() or ((child < 0) & (~child >= nl)).any():
                    raise bad("a child index does not follow its parent (damaged or crafted file)")
            used.append(sf)
    except (KeyError, ValueError, OverflowError) as e:
        raise bad(f"malformed tree ({e})") from None
    cols = np.unique(np.concatenate(used)) if used else np.zeros(0, np.int64)
    return Checked(cols.astype(np.int64), link, sigmoid, len(trees), n_nodes)
