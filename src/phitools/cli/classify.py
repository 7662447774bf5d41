"""`phitools classify train` and `phitools classify apply`: learn the labeller's judgement, filter a corpus."""

from __future__ import annotations

import itertools
from typing import Annotated

import typer
from rich.table import Table

from phitools.cli import console
from phitools.cli.common import (
    AllowPartial,
    Inputs,
    Limit,
    Output,
    ProgressEvery,
    Quiet,
    Seed,
    Shard,
    ShardSize,
    SkipBad,
    handle_errors,
    setup,
)
from phitools.cli.console import console as rich_console
from phitools.errors import UsageError

Features = Annotated[
    str,
    typer.Option(
        "--features",
        help="Feature sets, comma-separated: `hash` (hashed word/sub-word/char n-grams, TF-IDF; fast) and/or `model:CKPT` (mean-pooled final hidden states of a Phi checkpoint, as phi-1).",
    ),
]
Estimator = Annotated[
    str,
    typer.Option(
        "--estimator", help="rf (random forest, as phi-1), lgbm (LightGBM) or logreg (logistic/ridge regression)."
    ),
]
Threshold = Annotated[float, typer.Option("--threshold", help="A label >= this is 'good' (on the labeller's scale).")]


def _parse_range(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--score-range {value!r} is not LO,HI", hint="e.g. --score-range 0,5") from None
    return lo, hi


def _parse_ngrams(value: str) -> tuple[int, ...]:
    if value.strip().lower() in ("", "none", "0"):
        return ()
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise UsageError(
            f"--char-ngrams {value!r} is not a list of sizes", hint="e.g. --char-ngrams 3,4,5, or none"
        ) from None


@handle_errors("classify train")
def train(
    labeled: Annotated[
        list[str] | None,
        typer.Argument(
            help="Labelled records (files, directories, globs; '-' or nothing reads stdin).", show_default=False
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Directory to write the classifier to (required).", show_default=False),
    ] = None,
    features: Features = "hash",
    estimator: Estimator = "lgbm",
    target: Annotated[
        str,
        typer.Option("--target", help="regression: predict the label score; binary: predict P(label >= --threshold)."),
    ] = "regression",
    threshold: Threshold = 3.0,
    score_range: Annotated[
        str, typer.Option("--score-range", help="LO,HI of the labeller's scale; labels outside it are an error.")
    ] = "0,5",
    label_field: Annotated[
        str, typer.Option("--label-field", help="Dotted path of the score in each record.")
    ] = "label.score",
    folds: Annotated[int, typer.Option("--folds", help="k for the stratified k-fold held-out report.")] = 5,
    test_size: Annotated[
        float | None,
        typer.Option(
            "--test-size",
            help="Use one stratified hold-out split of this fraction instead of k-fold.",
            show_default=False,
        ),
    ] = None,
    n_estimators: Annotated[
        int | None,
        typer.Option("--n-estimators", help="Trees for rf/lgbm (default 200).", show_default=False, min=1),
    ] = None,
    max_columns: Annotated[
        int | None,
        typer.Option(
            "--max-columns",
            help="Keep the N hashed columns most correlated with the label (default 2000 for rf/lgbm, 20000 for logreg).",
            show_default=False,
            min=1,
        ),
    ] = None,
    min_df: Annotated[
        int, typer.Option("--min-df", help="Ignore hashed columns seen in fewer training documents.")
    ] = 2,
    n_features: Annotated[int, typer.Option("--n-features", help="hash: buckets (a power of two).")] = 1 << 18,
    char_ngrams: Annotated[
        str, typer.Option("--char-ngrams", help="hash: byte n-gram sizes (1-8), comma-separated, or none.")
    ] = "4",
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="model: tokenizer.json (default: the checkpoint's own).", show_default=False),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="model: tokens per document (truncated).")] = 512,
    embed_batch_size: Annotated[
        int, typer.Option("--embed-batch-size", help="model: documents per forward pass.")
    ] = 16,
    device: Annotated[str, typer.Option("--device", help="model: auto, cpu, cuda, cuda:1 ...")] = "auto",
    threads: Annotated[
        int, typer.Option("--threads", help="Threads for fitting (LightGBM, random forest).", min=1)
    ] = 1,
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Train a quality classifier on labelled records (label.score) and report how well it matches the labeller.

    Writes CLF/ (classifier.json, features.safetensors, the model file, report.json, manifest.json); the
    held-out report (F1/precision/recall at --threshold, ROC-AUC, confusion matrix, Spearman, calibration)
    is printed on stderr. Nothing in CLF/ is pickled.

    Example:

        phitools label corpus/ --sample 200 -o labeled/
        phitools classify train labeled/ --features hash --estimator lgbm -o clf/
        phitools classify apply clf/ corpus/ --keep-top 0.3 -o filtered/
    """
    setup(quiet, progress_every)
    from phitools.shards import RecordReader, Stats
    from phitools.steps.classify.features import parse_features
    from phitools.steps.classify.hashing import HashSettings
    from phitools.steps.classify.train import TrainOptions
    from phitools.steps.classify.train import train as train_classifier

    if not output or output == "-":
        raise UsageError("classify train needs -o DIR for the classifier", hint="e.g. -o clf/")
    try:
        settings = HashSettings(n_features=n_features, char_ngrams=_parse_ngrams(char_ngrams))
    except ValueError as e:
        raise UsageError(f"hash feature settings: {e}") from None
    pipeline = parse_features(
        features,
        hash_settings=settings,
        tokenizer=tokenizer,
        max_tokens=max_tokens,
        batch_size=embed_batch_size,
        device=device,
    )
    opts = TrainOptions(
        estimator=estimator,
        target=target,
        threshold=threshold,
        score_range=_parse_range(score_range),
        label_field=label_field,
        folds=folds,
        test_size=test_size,
        n_estimators=n_estimators,
        min_df=min_df,
        max_columns=max_columns,
        seed=seed,
        threads=threads,
    )
    opts.check()
    stats = Stats()
    reader = RecordReader(
        labeled, skip_bad=skip_bad, required=("text",), str_fields=("text",), stats=stats, allow_partial=allow_partial
    )
    records = iter(reader)
    if limit is not None:
        records = itertools.islice(records, limit)
    with console.progress("featurise", unit="records", stats=stats) as bar:
        clf, report = train_classifier(records, pipeline, opts, inputs=reader.inputs, progress=bar)
    if stats.skipped_bad:
        report["skipped_bad"] = dict(stats.skipped_bad)
    clf.save(output, report=report, inputs=reader.inputs, seed=seed)
    if not quiet:
        render_report(report)
        lab = report["labels"]
        skipped = lab["skipped_failed_label"] + lab["skipped_unlabelled"]
        rich_console.print(
            f"classify train: {lab['used']} labelled records used"
            + (
                f", {skipped} skipped "
                f"({lab['skipped_failed_label']} failed labels, {lab['skipped_unlabelled']} unlabelled)"
                if skipped
                else ""
            )
            + f"; classifier written to {output}"
        )


@handle_errors("classify apply")
def apply(
    clf: Annotated[str, typer.Argument(help="Classifier directory written by `classify train`.", show_default=False)],
    inputs: Inputs = None,
    output: Output = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Keep records with score >= this (default: the classifier's: its label threshold for regression, 0.5 for binary).",
            show_default=False,
        ),
    ] = None,
    keep_top: Annotated[
        float | None,
        typer.Option(
            "--keep-top",
            help="Keep this fraction of records with the highest scores (exact for files, a streaming estimate from stdin).",
            show_default=False,
        ),
    ] = None,
    score_only: Annotated[bool, typer.Option("--score-only", help="Keep every record; only add `quality`.")] = False,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects", help="Also write the dropped records here (e.g. rejects.jsonl.zst).", show_default=False
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", help="Scoring processes (0: one per core). Output is identical for any value.", min=0
        ),
    ] = 0,
    model_checkpoint: Annotated[
        str | None,
        typer.Option(
            "--model-checkpoint",
            help="model: features: where the checkpoint is now (default: the path used in training).",
            show_default=False,
        ),
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="model: features: tokenizer.json to use.", show_default=False)
    ] = None,
    device: Annotated[str, typer.Option("--device", help="model: features: auto, cpu, cuda ...")] = "auto",
    embed_batch_size: Annotated[
        int | None,
        typer.Option(
            "--embed-batch-size", help="model: features: documents per forward pass.", show_default=False, min=1
        ),
    ] = None,
    tmp_dir: Annotated[
        str | None,
        typer.Option("--tmp-dir", help="Where --keep-top spills scores (8 bytes per record).", show_default=False),
    ] = None,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Score records with a trained classifier: add quality: {score, classifier}, keep the good ones.

    Keeps score >= --threshold (default: the classifier's), or the --keep-top FRACTION best, or everything
    with --score-only; --rejects FILE gets the dropped records. Counts and a score histogram go to stderr
    and to the manifest.

    Example:

        phitools classify apply clf/ corpus/ --keep-top 0.3 --rejects rejects.jsonl.zst -o filtered/
        phitools cat corpus/ | phitools classify apply clf/ --score-only | head -n 1
    """
    setup(quiet, progress_every)
    from phitools.shards import RecordReader, RecordWriter, Stats, parse_shard
    from phitools.steps.classify.apply import Keep, Scorer, default_workers, run
    from phitools.steps.classify.saved import load_classifier

    if keep_top is not None and threshold is not None:
        raise UsageError("--keep-top and --threshold both choose what to keep", hint="give one of them")
    if score_only and (keep_top is not None or threshold is not None or rejects):
        raise UsageError("--score-only keeps everything: it does not combine with --keep-top, --threshold or --rejects")
    if keep_top is not None and not 0 < keep_top <= 1:
        raise UsageError(
            f"--keep-top {keep_top:g} must be a fraction in (0, 1]", hint="e.g. --keep-top 0.3 keeps the best 30%"
        )
    load_kwargs = {
        "checkpoint": model_checkpoint,
        "tokenizer": tokenizer,
        "device": device,
        "embed_batch_size": embed_batch_size,
    }
    classifier = load_classifier(clf, **load_kwargs)
    n_workers = workers or default_workers()
    if classifier.pipeline.uses_model and n_workers > 1:
        if workers > 1:
            console.warn("model: features run in one process (torch uses all cores, or the GPU); ignoring --workers")
        n_workers = 1
    if score_only:
        keep = Keep("score_only")
    elif keep_top is not None:
        keep = Keep("keep_top", fraction=keep_top, seed=seed)
    else:
        keep = Keep("threshold", threshold=classifier.decision if threshold is None else threshold)
    stats = Stats()
    spec = parse_shard(shard)
    reader = RecordReader(
        inputs,
        shard=spec,
        skip_bad=skip_bad,
        required=("text",),
        str_fields=("text",),
        stats=stats,
        allow_partial=allow_partial,
    )
    rereadable = "-" not in reader.files

    def open_records():
        # a fresh reader per pass (--keep-top reads files twice); the counters are those of the last pass
        stats.records_in = 0
        stats.skipped_bad.clear()
        it = iter(
            RecordReader(
                inputs,
                shard=spec,
                skip_bad=skip_bad,
                required=("text",),
                str_fields=("text",),
                stats=stats,
                allow_partial=allow_partial,
            )
        )
        return itertools.islice(it, limit) if limit is not None else it

    info = {
        "classifier": classifier.tag,
        "path": clf,
        "estimator": classifier.estimator,
        "target": classifier.target,
        "features": classifier.pipeline.spec(),
        "workers": n_workers,
        "keep": {"mode": keep.mode, "threshold": keep.threshold, "keep_top": keep.fraction},
    }
    writer = RecordWriter(
        output,
        tool="classify apply",
        shard_size=shard_size,
        shard=spec,
        stats=stats,
        seed=seed,
        inputs=reader.inputs,
        manifest_extra={"classify": info},
    )
    rej_stats = Stats()
    rej = (
        RecordWriter(
            rejects,
            tool="classify apply (rejects)",
            shard_size=shard_size,
            shard=spec,
            stats=rej_stats,
            seed=seed,
            inputs=reader.inputs,
            manifest_extra={"classify": info},
        )
        if rejects
        else None
    )
    with writer, rej if rej is not None else _Null():
        write_kept = writer.write
        write_rej = rej.write if rej is not None else None

        def emit(rec, kept: bool) -> None:
            if kept:
                write_kept(rec)
            else:
                stats.drop("below_cut")
                if write_rej is not None:
                    write_rej(rec)

        with (
            Scorer(classifier, clf, workers=n_workers, load_kwargs=load_kwargs) as scorer,
            console.progress("classify", unit="records", stats=stats) as bar,
        ):
            outcome = run(
                classifier, scorer, open_records, keep, emit, rereadable=rereadable, progress=bar, tmp_dir=tmp_dir
            )
        summary = outcome.to_dict()
        info["result"] = summary
        stats.extra["classify"] = {k: summary[k] for k in ("scored", "kept", "dropped")}
        rej_stats.extra["classify"] = stats.extra["classify"]
    if not quiet:
        _print_summary(classifier, summary, keep)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _print_summary(classifier, s: dict, keep) -> None:
    from rich.table import Table

    if keep.mode == "threshold":
        how = f"score >= {keep.threshold:g}"
    elif keep.mode == "score_only":
        how = "everything (--score-only)"
    else:
        how = f"the top {keep.fraction:g}" + (f" (score >= {s['cut']:g})" if s.get("cut") is not None else "")
    frac = f"{s['kept_fraction']:.1%}" if s.get("kept_fraction") is not None else "-"
    t = Table(
        title=f"classify apply ({classifier.tag}): kept {s['kept']:,} of {s['scored']:,} ({frac}), dropped {s['dropped']:,}; kept {how}",
        title_justify="left",
    )
    t.add_column("score", justify="right")
    t.add_column("records", justify="right")
    t.add_column("kept", justify="right")
    t.add_column("")
    h = s["histogram"]
    top = max(h["counts"]) or 1
    for i, (c, k) in enumerate(zip(h["counts"], h["kept"])):
        t.add_row(
            f"[{h['edges'][i]:g}, {h['edges'][i + 1]:g}{']' if i == len(h['counts']) - 1 else ')'}",
            f"{c:,}",
            f"{k:,}",
            "#" * int(round(30 * c / top)),
        )
    rich_console.print(t)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Learn the labeller's judgement (train) and filter a corpus with it (apply).\n\n"
        "    phitools classify train labeled/ -o clf/\n\n"
        "    phitools classify apply clf/ corpus/ --keep-top 0.3 -o filtered/",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    sub.command("train")(train)
    sub.command("apply")(apply)
    app.add_typer(sub, name="classify")


def render_report(report: dict) -> None:
    """Print the report as rich tables on stderr."""
    ev = report["evaluation"]
    m = ev["metrics"]
    t = Table(
        title=f"classify train: held-out report ({ev['method']}, n={m['n']}, good={m['n_good']}, bad={m['n_bad']})",
        title_justify="left",
        show_header=True,
    )
    t.add_column("metric")
    t.add_column("classifier", justify="right")
    t.add_column("baseline", justify="right")
    base = m.get("baseline", {})

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for key, name in (
        ("f1", "F1 (good)"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("accuracy", "accuracy"),
        ("roc_auc", "ROC-AUC"),
        ("spearman", "Spearman vs labeller"),
        ("mae", "MAE"),
        ("rmse", "RMSE"),
    ):
        if key in m:
            t.add_row(name, fmt(m[key]), fmt(base.get(key)))
    c = m["confusion"]
    t.add_row("confusion (tn fp / fn tp)", f"{c['tn']} {c['fp']} / {c['fn']} {c['tp']}", "")
    rich_console.print(t)
    cal = Table(title="calibration", title_justify="left")
    for col in ("score bin", "n", "mean score", "mean label", "frac good"):
        cal.add_column(col, justify="right")
    for row in m["calibration"]:
        cal.add_row(
            f"[{row['bin'][0]:g}, {row['bin'][1]:g})",
            str(row["n"]),
            fmt(row["mean_score"]),
            fmt(row["mean_label"]),
            fmt(row["frac_good"]),
        )
    rich_console.print(cal)
