"""`phitools classify train` and `phitools classify apply`: learn the labeller's judgement, filter a corpus."""

from __future__ import annotations

import typer

from phitools import pipeline
from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.pipeline import IOOptions
from phitools.steps.classify.apply import Apply, ApplyOptions
from phitools.steps.classify.train import TrainOptions, train_classifier


@command("classify train")
def train(opts: TrainOptions, run: RunOptions) -> None:
    """Train a quality classifier on labelled records (label.score) and report how well it matches the labeller.

    Writes CLF/ (classifier.json, features.safetensors, the model file, report.json, manifest.json); the
    held-out report (F1/precision/recall at --threshold, ROC-AUC, confusion matrix, Spearman, calibration)
    is printed on stderr. Nothing in CLF/ is pickled.

    Example:

        phitools label corpus/ --sample 200 -o labeled/
        phitools classify train labeled/ --features hash --estimator lgbm -o clf/
        phitools classify apply clf/ corpus/ --keep-top 0.3 -o filtered/
    """
    _, report = train_classifier(opts, progress=console.progress)
    if not run.quiet:
        render_report(report)
        lab = report["labels"]
        skipped = lab["skipped_failed_label"] + lab["skipped_unlabelled"]
        console.console.print(
            f"classify train: {lab['used']} labelled records used"
            + (
                f", {skipped} skipped "
                f"({lab['skipped_failed_label']} failed labels, {lab['skipped_unlabelled']} unlabelled)"
                if skipped
                else ""
            )
            + f"; classifier written to {opts.output}",
            markup=False,
        )


@command("classify apply")
def apply(opts: ApplyOptions, io: IOOptions, run: RunOptions) -> None:
    """Score records with a trained classifier: add quality: {score, classifier}, keep the good ones.

    Keeps score >= --threshold (default: the classifier's), or the --keep-top FRACTION best, or everything
    with --score-only; --rejects FILE gets the dropped records. Counts and a score histogram go to stderr
    and to the manifest.

    Example:

        phitools classify apply clf/ corpus/ --keep-top 0.3 --rejects rejects.jsonl.zst -o filtered/
        phitools cat corpus/ | phitools classify apply clf/ --score-only | head -n 1
    """
    step = Apply(opts)
    pipeline.run(step, io, progress=console.progress)
    if not run.quiet:
        _print_summary(step.classifier, step.summary, step.keep)


def _print_summary(classifier, s: dict, keep) -> None:
    """The kept/dropped counts and the score histogram, on stderr."""
    if keep.mode == "threshold":
        how = f"score >= {keep.threshold:g}"
    elif keep.mode == "score_only":
        how = "everything (--score-only)"
    else:
        how = f"the top {keep.fraction:g}" + (f" (score >= {s['cut']:g})" if s.get("cut") is not None else "")
    frac = f"{s['kept_fraction']:.1%}" if s.get("kept_fraction") is not None else "-"
    h = s["histogram"]
    top = max(h["counts"]) or 1
    rows = [
        [
            f"[{h['edges'][i]:g}, {h['edges'][i + 1]:g}{']' if i == len(h['counts']) - 1 else ')'}",
            f"{c:,}",
            f"{k:,}",
            "#" * int(round(30 * c / top)),
        ]
        for i, (c, k) in enumerate(zip(h["counts"], h["kept"]))
    ]
    console.table(
        f"classify apply ({classifier.tag}): kept {s['kept']:,} of {s['scored']:,} ({frac}), "
        f"dropped {s['dropped']:,}; kept {how}",
        ["score", "records", "kept", ""],
        rows,
        justify=["right", "right", "right", "left"],
    )


def render_report(report: dict) -> None:
    """The held-out report (metrics against a trivial baseline, then calibration), on stderr."""
    ev = report["evaluation"]
    m = ev["metrics"]
    base = m.get("baseline", {})

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    names = (
        ("f1", "F1 (good)"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("accuracy", "accuracy"),
        ("roc_auc", "ROC-AUC"),
        ("spearman", "Spearman vs labeller"),
        ("mae", "MAE"),
        ("rmse", "RMSE"),
    )
    rows = [[name, fmt(m[key]), fmt(base.get(key))] for key, name in names if key in m]
    c = m["confusion"]
    rows.append(["confusion (tn fp / fn tp)", f"{c['tn']} {c['fp']} / {c['fn']} {c['tp']}", ""])
    console.table(
        f"classify train: held-out report ({ev['method']}, n={m['n']}, good={m['n_good']}, bad={m['n_bad']})",
        ["metric", "classifier", "baseline"],
        rows,
    )
    console.table(
        "calibration",
        ["score bin", "n", "mean score", "mean label", "frac good"],
        [
            [
                f"[{row['bin'][0]:g}, {row['bin'][1]:g})",
                str(row["n"]),
                fmt(row["mean_score"]),
                fmt(row["mean_label"]),
                fmt(row["frac_good"]),
            ]
            for row in m["calibration"]
        ],
        justify_right_from=0,
    )


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
