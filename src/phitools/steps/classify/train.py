"""Training: labelled records -> features -> held-out evaluation -> a classifier fitted on everything.

Records are featurised batch by batch as they stream in (only the sparse feature rows and the labels are
kept, not the texts). The held-out report comes from stratified k-fold cross-validation (or one stratified
hold-out split with `test_size`): every fold learns its own IDF weights and active columns from its training
part only, so the report measures documents the whole pipeline never saw. The saved classifier is then
fitted on all labelled records.

    from phitools.steps.classify.train import TrainOptions, train_classifier
    clf, report = train_classifier(TrainOptions(labeled=["labeled/"], output="clf/", estimator="lgbm"))

`train_classifier(opts)` is the command (read, fit, write the directory); `train(records, None, opts)` fits on
records already in memory and returns the classifier unsaved (`clf.save(path, report=report)`).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from phitools import __version__
from phitools.errors import DataError, UsageError
from phitools.options import check, option, option_like
from phitools.pipeline import IOOptions, limited, read
from phitools.records import Record
from phitools.runtime.progress import Reporter
from phitools.shards import Stats
from phitools.steps.classify import estimators
from phitools.steps.classify.estimators import ESTIMATORS, predict_matrix
from phitools.steps.classify.features import Pipeline, parse_features
from phitools.steps.classify.hashing import HashSettings
from phitools.steps.classify.labels import LabelCounts, read_label
from phitools.steps.classify.report import build_report
from phitools.steps.classify.saved import Classifier

BATCH_BYTES = 2 << 20


def _parse_range(value: str | tuple | list) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        value = ",".join(str(x) for x in value)
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--score-range {value!r} is not LO,HI", hint="e.g. --score-range 0,5") from None
    return lo, hi


def _parse_ngrams(value: str | tuple | list) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        value = ",".join(str(x) for x in value)
    if value.strip().lower() in ("", "none", "0"):
        return ()
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise UsageError(
            f"--char-ngrams {value!r} is not a list of sizes", hint="e.g. --char-ngrams 3,4,5, or none"
        ) from None


@dataclass
class TrainOptions:
    """Everything `classify train` takes: where the labelled records are, where the classifier goes, how it learns.

    `train_classifier(opts)` does what the command does; `train(records, opts)` fits on records in memory (the
    input/output fields are then unused). `score_range` and `char_ngrams` are the flags' strings ("0,5",
    "3,4"); a tuple is accepted from Python. Checked when built: a bad value is a `UsageError`.
    """

    labeled: list[str] | None = option(
        None,
        argument=True,
        show_default=False,
        help="Labelled records (files, directories, globs; '-' or nothing reads stdin).",
    )
    output: str | None = option(
        None, "-o", "--output", show_default=False, help="Directory to write the classifier to (required)."
    )
    features: str = option(
        "hash",
        "--features",
        help="Feature sets, comma-separated: `hash` (hashed word/sub-word/char n-grams, TF-IDF; fast) and/or "
        "`model:CKPT` (mean-pooled final hidden states of a Phi checkpoint, as phi-1).",
    )
    estimator: str = option(
        "lgbm",
        "--estimator",
        choices=ESTIMATORS,
        help="rf (random forest, as phi-1), lgbm (LightGBM) or logreg (logistic/ridge regression).",
    )
    target: str = option(
        "regression",
        "--target",
        choices=("regression", "binary"),
        help="regression: predict the label score; binary: predict P(label >= --threshold).",
    )
    threshold: float = option(3.0, "--threshold", help="A label >= this is 'good' (on the labeller's scale).")
    score_range: str = option(
        "0,5", "--score-range", help="LO,HI of the labeller's scale; labels outside it are an error."
    )
    label_field: str = option("label.score", "--label-field", help="Dotted path of the score in each record.")
    folds: int = option(5, "--folds", help="k for the stratified k-fold held-out report.")
    test_size: float | None = option(
        None,
        "--test-size",
        show_default=False,
        help="Use one stratified hold-out split of this fraction instead of k-fold.",
    )
    n_estimators: int | None = option(
        None, "--n-estimators", min=1, show_default=False, help="Trees for rf/lgbm (default 200)."
    )
    max_columns: int | None = option(
        None,
        "--max-columns",
        min=1,
        show_default=False,
        help="Keep the N hashed columns most correlated with the label (default 2000 for rf/lgbm, 20000 for logreg).",
    )
    min_df: int = option(2, "--min-df", help="Ignore hashed columns seen in fewer training documents.")
    n_features: int = option(1 << 18, "--n-features", help="hash: buckets (a power of two).")
    char_ngrams: str = option("4", "--char-ngrams", help="hash: byte n-gram sizes (1-8), comma-separated, or none.")
    tokenizer: str | None = option(
        None, "--tokenizer", show_default=False, help="model: tokenizer.json (default: the checkpoint's own)."
    )
    max_tokens: int = option(512, "--max-tokens", help="model: tokens per document (truncated).")
    embed_batch_size: int = option(16, "--embed-batch-size", help="model: documents per forward pass.")
    device: str = option("auto", "--device", help="model: auto, cpu, cuda, cuda:1 ...")
    # LightGBM's OpenMP threads spin: more threads than idle cores is much slower, not faster
    threads: int = option(1, "--threads", min=1, help="Threads for fitting (LightGBM, random forest).")
    skip_bad: bool = option_like(IOOptions, "skip_bad")
    allow_partial: bool = option_like(IOOptions, "allow_partial")
    seed: int = option_like(IOOptions, "seed")
    limit: int | None = option_like(IOOptions, "limit")

    def __post_init__(self) -> None:
        if isinstance(self.score_range, (tuple, list)):  # from Python: (0, 5) means "0,5"
            self.score_range = ",".join(repr(float(x)) for x in self.score_range)
        if isinstance(self.char_ngrams, (tuple, list)):
            self.char_ngrams = ",".join(str(x) for x in self.char_ngrams) or "none"
        check(self)
        self.threshold = float(self.threshold)  # 3 and 3.0 are one classifier (classifier.json feeds its id)
        lo, hi = self.bounds
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
        self.pipeline()  # a bad --features / --n-features / --char-ngrams is an error now, not after reading

    @property
    def bounds(self) -> tuple[float, float]:
        """(LO, HI) of --score-range."""
        return _parse_range(self.score_range)

    @property
    def hash_settings(self) -> HashSettings:
        try:
            return HashSettings(n_features=self.n_features, char_ngrams=_parse_ngrams(self.char_ngrams))
        except ValueError as e:
            raise UsageError(f"hash feature settings: {e}") from None

    def pipeline(self) -> Pipeline:
        """A fresh (untrained) feature pipeline for --features and its settings."""
        return parse_features(
            self.features,
            hash_settings=self.hash_settings,
            tokenizer=self.tokenizer,
            max_tokens=self.max_tokens,
            batch_size=self.embed_batch_size,
            device=self.device,
        )


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
    lo, hi = opts.bounds
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
    model = estimators.fit(
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
    return model, scale


def _post(score: np.ndarray, opts: TrainOptions) -> np.ndarray:
    if opts.target == "regression":
        score = np.clip(score, *opts.bounds)
    return np.round(score, 6) + 0.0


def splits(good: np.ndarray, opts: TrainOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index splits, stratified by good/bad and seeded: scikit-learn's StratifiedKFold (k folds,
    shuffled) or, with `test_size`, one StratifiedShuffleSplit."""
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    seed = opts.seed % 2**32  # scikit-learn takes seeds in [0, 2^32)
    if opts.test_size is None:
        cv = StratifiedKFold(n_splits=opts.folds, shuffle=True, random_state=seed)
    else:
        cv = StratifiedShuffleSplit(n_splits=1, test_size=opts.test_size, random_state=seed)
    return list(cv.split(np.zeros((len(good), 1)), good))


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
        method = f"{opts.folds}-fold stratified cross-validation"
    else:
        n_test = math.ceil(opts.test_size * n)  # as scikit-learn counts it
        if n_min < 2 or n_test < 2 or n - n_test < 2:
            raise DataError(
                f"too few examples for --test-size {opts.test_size:g}: {n} labelled records, {n_min} in the smaller "
                "class",
                hint="label more records, or change --test-size",
            )
        method = f"stratified hold-out ({opts.test_size:g} of the data)"
    held = np.full(n, np.nan)
    for tr, te in splits(good, opts):
        model, scale = _fit(pipeline, data, tr, opts)
        held[te] = _post(predict_matrix(model, _scaled(data.X[te], scale)), opts)
    ev = np.flatnonzero(~np.isnan(held))
    decision = decision_point(opts, y)
    metrics = build_report(
        y[ev], held[ev], target=opts.target, threshold=opts.threshold, decision=decision, score_range=opts.bounds
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
    records: Iterable[Record],
    pipeline: Pipeline | None,
    opts: TrainOptions,
    *,
    inputs: list[str] | None = None,
    progress: Reporter | None = None,
) -> tuple[Classifier, dict]:
    """Fit a classifier on labelled records; returns (classifier, report). `pipeline` defaults to
    `opts.pipeline()`; `inputs` names where the records came from (classifier.json's label_source)."""
    pipeline = pipeline if pipeline is not None else opts.pipeline()
    t0 = time.monotonic()
    data = collect(records, pipeline, opts, progress)
    evaluation = evaluate(pipeline, data, opts)
    model, scale = _fit(pipeline, data, np.arange(len(data.y)), opts)
    for part, off in zip(pipeline.parts, pipeline.offsets):
        if part.kind == "hash":
            part.idf = scale[off : off + part.settings.n_features].astype(np.float32)
    seconds = round(time.monotonic() - t0, 2)
    report = {
        "estimator": opts.estimator,
        "target": opts.target,
        "threshold": opts.threshold,
        "score_range": list(opts.bounds),
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
        tuple(opts.bounds),
        info=info,
        decision_point=decision_point(opts, data.y),
    )
    return clf, report


def train_classifier(opts: TrainOptions, *, progress: Callable[..., Any] | None = None) -> tuple[Classifier, dict]:
    """What `phitools classify train` does: read `opts.labeled` (honouring --skip-bad, --allow-partial, --limit),
    fit, and write the classifier directory `opts.output` with its report; returns (classifier, report).

    `progress(name, unit=, stats=)` is a context manager yielding a reporter, as for `pipeline.run`."""
    if not opts.output or opts.output == "-":
        raise UsageError("classify train needs -o DIR for the classifier", hint="e.g. -o clf/")
    io = IOOptions(
        inputs=opts.labeled, skip_bad=opts.skip_bad, allow_partial=opts.allow_partial, seed=opts.seed, limit=opts.limit
    )
    stats = Stats()
    reader = read(io, required=("text",), stats=stats)
    with progress("featurise", unit="records", stats=stats) if progress else nullcontext() as bar:
        clf, report = train(limited(reader, io.limit), opts.pipeline(), opts, inputs=reader.inputs, progress=bar)
    if stats.skipped_bad:
        report["skipped_bad"] = dict(stats.skipped_bad)
    clf.save(opts.output, report=report, inputs=reader.inputs, seed=opts.seed)
    return clf, report
