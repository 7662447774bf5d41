"""Training: labelled records -> features -> held-out evaluation -> a classifier fitted on everything.

Records are featurised batch by batch as they stream in (only the sparse feature rows and the labels are
kept, not the texts). The held-out report comes from stratified k-fold cross-validation (or one stratified
hold-out split with `test_size`): every fold learns its own IDF weights and active columns from its training
part only, so the report measures documents the whole pipeline never saw. The saved classifier is then
fitted on all labelled records.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from phitools import __version__
from phitools.errors import DataError, UsageError
from phitools.records import Record
from phitools.steps.classify import estimators
from phitools.steps.classify.estimators import ESTIMATORS, predict_matrix
from phitools.steps.classify.features import Pipeline
from phitools.steps.classify.labels import LabelCounts, read_label
from phitools.steps.classify.report import build_report
from phitools.steps.classify.saved import Classifier

BATCH_BYTES = 2 << 20


@dataclass
class TrainOptions:
    """What `classify train` needs beyond the records (CLI flags map 1:1)."""

    estimator: str = "lgbm"
    target: str = "regression"
    threshold: float = 3.0
    score_range: tuple[float, float] = (0.0, 5.0)
    label_field: str = "label.score"
    folds: int = 5
    test_size: float | None = None
    n_estimators: int | None = None
    min_df: int = 2
    max_columns: int | None = None  # default: estimators.DEFAULT_MAX_COLUMNS[estimator]
    seed: int = 0
    threads: int = 1  # LightGBM's OpenMP threads spin: more threads than idle cores is much slower, not faster

    def check(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise UsageError(f"--estimator {self.estimator!r} is not one of {', '.join(ESTIMATORS)}")
        if self.target not in ("regression", "binary"):
            raise UsageError(f"--target {self.target!r} must be regression or binary")
        lo, hi = self.score_range
        if not lo < hi:
            raise UsageError(f"--score-range {lo:g},{hi:g}: LO must be below HI")
        if not lo < self.threshold <= hi:
            raise UsageError(
                f"--threshold {self.threshold:g} is outside the score range {lo:g}..{hi:g}",
                hint="the threshold separates good (>=) from bad labels",
            )
        if self.test_size is None and self.folds < 2:
            raise UsageError(
                f"--folds {self.folds}: need at least 2", hint="or use --test-size 0.2 for one hold-out split"
            )
        if self.test_size is not None and not 0 < self.test_size < 1:
            raise UsageError(f"--test-size {self.test_size:g} must be between 0 and 1")
        if self.min_df < 1:
            raise UsageError("--min-df must be at least 1")
        if self.max_columns is not None and self.max_columns < 1:
            raise UsageError("--max-columns must be at least 1")


@dataclass
class Labelled:
    """Featurised labelled records: term-frequency matrix (no IDF yet) and the labeller's scores."""

    X: object  # scipy CSR (n, dim)
    y: np.ndarray  # (n,) float64
    counts: LabelCounts


def collect(records: Iterable[Record], pipeline: Pipeline, opts: TrainOptions, progress=None) -> Labelled:
    """Read labels and featurise the labelled records in batches."""
    import scipy.sparse as sp

    counts = LabelCounts()
    lo, hi = opts.score_range
    mats, ys = [], []
    texts: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal texts, size
        if texts:
            mats.append(pipeline.matrix(pipeline.featurize(texts)))
            if progress is not None:
                progress.advance(len(texts))
            texts, size = [], 0

    for i, rec in enumerate(records):
        score = read_label(rec, i, field_path=opts.label_field, lo=lo, hi=hi, counts=counts)
        if score is None:
            continue
        text = rec.get("text")
        if not isinstance(text, str):
            raise DataError(f"record {i + 1}: `text` is {type(text).__name__}, not a string")
        texts.append(text)
        ys.append(score)
        size += len(text)
        if size >= BATCH_BYTES:
            flush()
    flush()
    if not ys:
        raise DataError(
            f"no labels: none of the records has a numeric {opts.label_field} "
            f"({counts.failed} failed labels with a null score, {counts.unlabelled} records without the field)",
            hint="run `phitools label` on the corpus first, or point --label-field at the score",
        )
    X = sp.vstack(mats, format="csr") if len(mats) > 1 else mats[0]
    return Labelled(X, np.asarray(ys, np.float64), counts)


def _idf_scale(pipeline: Pipeline, X, rows: np.ndarray) -> np.ndarray:
    """Per-column multipliers: IDF learnt from `rows` on the hashed columns, 1 elsewhere."""
    from phitools.steps.classify.hashing import idf_from_df

    scale = np.ones(X.shape[1], np.float64)
    sub = X[rows]
    for s in pipeline.idf_columns():
        df = np.diff(sub[:, s].tocsc().indptr)
        scale[s] = idf_from_df(df, len(rows))
    return scale


def _active(pipeline: Pipeline, X, rows: np.ndarray, min_df: int) -> tuple[np.ndarray, np.ndarray]:
    """(active columns, dense columns): hashed buckets seen in >= min_df training rows, and all dense columns."""
    dim = X.shape[1]
    is_hashed = np.zeros(dim, bool)
    for s in pipeline.idf_columns():
        is_hashed[s] = True
    df = np.diff(X[rows].tocsc().indptr)
    active = np.flatnonzero(~is_hashed | (df >= min_df))
    return active.astype(np.int64), np.flatnonzero(~is_hashed).astype(np.int64)


def _scaled(X, scale: np.ndarray):
    import scipy.sparse as sp

    return (X @ sp.diags(scale)).tocsr()


def _fit(pipeline: Pipeline, data: Labelled, rows: np.ndarray, opts: TrainOptions):
    scale = _idf_scale(pipeline, data.X, rows)
    Xs = _scaled(data.X[rows], scale)
    active, dense = _active(pipeline, data.X, rows, opts.min_df)
    model, native = estimators.fit(
        opts.estimator,
        Xs,
        data.y[rows],
        target=opts.target,
        threshold=opts.threshold,
        columns=active,
        dense_columns=dense,
        seed=opts.seed,
        n_estimators=opts.n_estimators,
        threads=opts.threads,
        max_columns=opts.max_columns or estimators.DEFAULT_MAX_COLUMNS[opts.estimator],
    )
    return model, native, scale


def _post(score: np.ndarray, opts: TrainOptions) -> np.ndarray:
    if opts.target == "regression":
        score = np.clip(score, *opts.score_range)
    return np.round(score, 6) + 0.0


def stratified_folds(good: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index splits; each class is shuffled (seeded) and dealt round-robin into the k folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(good), np.int64)
    offset = 0
    for cls in (True, False):
        members = rng.permutation(np.flatnonzero(good == cls))
        fold[members] = (np.arange(len(members)) + offset) % k
        offset += len(members)
    idx = np.arange(len(good))
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def stratified_holdout(good: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (train, test) split holding out `test_size` of each class (at least one of each)."""
    rng = np.random.default_rng(seed)
    test = []
    for cls in (True, False):
        members = rng.permutation(np.flatnonzero(good == cls))
        test.append(members[: max(1, int(round(test_size * len(members))))])
    te = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(good)), te), te


def evaluate(pipeline: Pipeline, data: Labelled, opts: TrainOptions) -> dict:
    """Held-out scores for every labelled record (k-fold) or for the hold-out part; returns the report section."""
    y = data.y
    good = y >= opts.threshold
    n, n_good = len(y), int(good.sum())
    n_min = min(n_good, n - n_good)
    if n_min == 0:
        side = "good (>=" if n_good else "bad (<"
        raise DataError(
            f"one class only: all {n} labelled records are {side} {opts.threshold:g})",
            hint="label a more varied sample, or move --threshold",
        )
    if opts.test_size is None:
        if n_min < opts.folds:
            raise DataError(
                f"too few examples for --folds {opts.folds}: {n} labelled records, only {n_min} in the smaller class",
                hint="label more records, or lower --folds (2 at least; the smaller class needs one per fold)",
            )
        splits = stratified_folds(good, opts.folds, opts.seed)
        method = f"{opts.folds}-fold stratified cross-validation"
    else:
        n_test = int(round(opts.test_size * n))
        if n_min < 2 or n_test < 2 or n - n_test < 2:
            raise DataError(
                f"too few examples for --test-size {opts.test_size:g}: {n} labelled records, {n_min} in the smaller class",
                hint="label more records, or change --test-size",
            )
        splits = [stratified_holdout(good, opts.test_size, opts.seed)]
        method = f"stratified hold-out ({opts.test_size:g} of the data)"
    held = np.full(n, np.nan)
    for tr, te in splits:
        model, _, scale = _fit(pipeline, data, tr, opts)
        held[te] = _post(predict_matrix(model, _scaled(data.X[te], scale)), opts)
    ev = np.flatnonzero(~np.isnan(held))
    decision = decision_point(opts, y)
    metrics = build_report(
        y[ev], held[ev], target=opts.target, threshold=opts.threshold, decision=decision, score_range=opts.score_range
    )
    return {
        "method": method,
        "folds": opts.folds if opts.test_size is None else None,
        "test_size": opts.test_size,
        "seed": opts.seed,
        "metrics": metrics,
    }


def decision_point(opts: TrainOptions, y: np.ndarray) -> float:
    """Default cut on the score: 0.5 (binary); threshold - 0.5 for regression on whole-number labels, else threshold."""
    if opts.target == "binary":
        return 0.5
    if np.all(y == np.round(y)) and float(opts.threshold).is_integer():
        return opts.threshold - 0.5
    return opts.threshold


def package_versions(model: bool = False) -> dict:
    """Versions that produced (or could reproduce) a classifier."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"phitools": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "scipy", "scikit-learn", "lightgbm", "safetensors") + (
        ("torch", "tokenizers") if model else ()
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def train(
    records: Iterable[Record], pipeline: Pipeline, opts: TrainOptions, *, inputs: list[str] | None = None, progress=None
) -> tuple[Classifier, dict]:
    """Fit a classifier on labelled records; returns (classifier, report)."""
    opts.check()
    t0 = time.monotonic()
    data = collect(records, pipeline, opts, progress)
    evaluation = evaluate(pipeline, data, opts)
    model, native, scale = _fit(pipeline, data, np.arange(len(data.y)), opts)
    for part, off in zip(pipeline.parts, pipeline.offsets):
        if part.kind == "hash":
            part.idf = scale[off : off + part.settings.n_features].astype(np.float32)
    seconds = round(time.monotonic() - t0, 2)
    report = {
        "estimator": opts.estimator,
        "target": opts.target,
        "threshold": opts.threshold,
        "score_range": list(opts.score_range),
        "features": pipeline.spec(),
        "labels": data.counts.to_dict(),
        "evaluation": evaluation,
        "train_seconds": seconds,
    }
    info = {
        "labels": data.counts.to_dict(),
        "label_source": {
            "field": opts.label_field,
            "inputs": list(inputs or []),
            "models": dict(data.counts.models.most_common(10)),
            "rubrics": dict(data.counts.rubrics.most_common(10)),
        },
        "trained": {
            "n": int(len(data.y)),
            "n_good": int((data.y >= opts.threshold).sum()),
            "seed": opts.seed,
            "n_estimators": opts.n_estimators or estimators.DEFAULT_TREES.get(opts.estimator),
            "min_df": opts.min_df,
            "max_columns": opts.max_columns or estimators.DEFAULT_MAX_COLUMNS[opts.estimator],
            "model_columns": int(len(model.columns)),
        },  # no timing here: classifier.json feeds the id
        "packages": package_versions(pipeline.uses_model),
    }
    clf = Classifier(
        pipeline,
        model,
        opts.estimator,
        opts.target,
        opts.threshold,
        tuple(opts.score_range),
        info=info,
        decision_point=decision_point(opts, data.y),
        native=native,
    )
    return clf, report
