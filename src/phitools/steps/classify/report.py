"""The held-out report: how well the classifier reproduces the labeller on documents it did not train on.

Fields (report.json, see docs/classify.md): F1 / precision / recall / accuracy of "good" (label >= threshold)
at the classifier's decision point, ROC-AUC of the score, the confusion matrix, Spearman's rank correlation
with the labeller's score, MAE (regression), a calibration table, and the same numbers for a trivial
baseline so they can be read in context. The metrics are scikit-learn's (Spearman: scipy's), rounded to 4
places; what is undefined (one class, a constant score) is None.
"""

from __future__ import annotations

import math

import numpy as np


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 4)


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho (scipy; average ranks for ties); None when either side is constant."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return _f(spearmanr(a, b).statistic)


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (scikit-learn; ties count half); None with one class only."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return None
    return _f(roc_auc_score(truth, score))


def binary_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """F1, precision, recall and accuracy of predicting "good" (scikit-learn; 0 where undefined), and the
    confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    (tn, fp), (fn, tp) = confusion_matrix(truth, pred, labels=[False, True]).tolist()
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, pred, labels=[True], average="binary", pos_label=True, zero_division=0.0
    )
    return {
        "f1": _f(f1),
        "precision": _f(precision),
        "recall": _f(recall),
        "accuracy": _f(accuracy_score(truth, pred)) if len(truth) else 0.0,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def calibration(score: np.ndarray, label: np.ndarray, truth: np.ndarray, edges: np.ndarray) -> list[dict]:
    """Per bin of predicted score: count, mean prediction, mean label score, fraction labelled good."""
    rows = []
    b = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, len(edges) - 2)
    for i in range(len(edges) - 1):
        m = b == i
        n = int(m.sum())
        rows.append(
            {
                "bin": [_f(edges[i]), _f(edges[i + 1])],
                "n": n,
                "mean_score": _f(score[m].mean()) if n else None,
                "mean_label": _f(label[m].mean()) if n else None,
                "frac_good": _f(truth[m].mean()) if n else None,
            }
        )
    return rows


def build_report(
    label: np.ndarray,
    score: np.ndarray,
    *,
    target: str,
    threshold: float,
    decision: float,
    score_range: tuple[float, float],
) -> dict:
    """Metrics of held-out scores `score` against the labeller's `label` (both (n,))."""
    truth = label >= threshold
    pred = score >= decision
    m = binary_metrics(truth, pred)
    lo, hi = score_range
    edges = (
        np.linspace(0.0, 1.0, 11)
        if target == "binary"
        else np.linspace(lo, hi, int(round(hi - lo)) + 1 if hi - lo >= 2 else 6)
    )
    out = {
        "n": int(len(label)),
        "n_good": int(truth.sum()),
        "n_bad": int((~truth).sum()),
        "decision": {"good_if": f"label >= {threshold:g}", "predicted_good_if": f"score >= {decision:g}"},
        **{k: m[k] for k in ("f1", "precision", "recall", "accuracy")},
        "roc_auc": roc_auc(truth, score),
        "spearman": spearman(score, label),
        "confusion": m["confusion"],
        "calibration": calibration(score, label, truth, edges),
    }
    if target == "regression":
        out["mae"] = _f(np.abs(score - label).mean())
        out["rmse"] = _f(np.sqrt(((score - label) ** 2).mean()))
    # context: always predicting the majority side, and a constant score
    majority = truth.mean() >= 0.5
    base = binary_metrics(truth, np.full(len(truth), majority))
    out["baseline"] = {
        "predict_all": "good" if majority else "bad",
        "f1": base["f1"],
        "accuracy": base["accuracy"],
        "roc_auc": 0.5,
        **({"mae": _f(np.abs(label - label.mean()).mean())} if target == "regression" else {}),
    }
    return out
