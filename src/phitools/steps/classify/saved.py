"""A trained classifier, and its directory format: nothing in it is unpickled or executed when loaded.

    clf/
      classifier.json        format, estimator, target, threshold, score range, feature settings, label
                             source, training counts, package versions
      features.safetensors   arrays of the feature pipeline: hash.idf (float32, one per bucket); for lgbm
                             also lgbm.columns (model column -> feature column)
      model.txt              lgbm: LightGBM's own text model            } one of these,
      forest.safetensors     rf: the trees as arrays (trees.py)          } named by
      linear.safetensors     logreg: columns, weights, bias             } classifier.json `model_file`
      report.json            the held-out evaluation
      manifest.json          the usual phitools manifest; `outputs` lists every file with its sha256

Loading checks every file against the manifest's sha256 before parsing it, then validates shapes and
indices, so a damaged or edited file is a CheckpointError, never a crash or a silently different model.
(The sha256 guards against damage and careless edits, not against someone who rewrites the manifest too;
the safety against a crafted file comes from the formats: JSON, safetensors, and a LightGBM text model that
lightgbm_text.py checks before LightGBM parses it.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from phitools.errors import CheckpointError, UsageError
from phitools.runtime.files import atomic_dir, sha256_file
from phitools.runtime.safetensors_io import load_arrays, save_arrays
from phitools.shards import write_manifest
from phitools.steps.classify.estimators import MODEL_FILES, LightGBMModel, Linear, Trees, load_model, model_arrays
from phitools.steps.classify.features import Pipeline

FORMAT = "phitools-classifier"
FORMAT_VERSION = 1
CLASSIFIER_JSON = "classifier.json"
FEATURES_FILE = "features.safetensors"
REPORT_FILE = "report.json"
MANIFEST = "manifest.json"


@dataclass
class Classifier:
    """Feature pipeline + fitted model + what the score means."""

    pipeline: Pipeline
    model: LightGBMModel | Trees | Linear
    estimator: str
    target: str  # "regression" (score on the label scale) or "binary" (P(label >= threshold))
    threshold: float  # a label >= threshold is "good"
    score_range: tuple[float, float]
    info: dict = field(default_factory=dict)
    decision_point: float | None = None  # the default cut on the score (see `decision`)
    name: str = "classifier"
    id: str = ""
    _w: np.ndarray | None = field(default=None, repr=False)

    @property
    def decision(self) -> float:
        """The default cut on the score: 0.5 for a probability; for regression the label threshold, or half a
        point below it when the labels are whole numbers (a prediction that rounds to the threshold counts,
        as FineWeb-Edu's int(round(score)) >= 3)."""
        if self.decision_point is not None:
            return self.decision_point
        return 0.5 if self.target == "binary" else self.threshold

    @property
    def tag(self) -> str:
        """What `quality.classifier` says: name@id."""
        return f"{self.name}@{self.id}" if self.id else self.name

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores of a batch of documents, (n,) float64 rounded to 6 decimals."""
        return self.score_features(self.pipeline.featurize(texts))

    def score_features(self, feats: list) -> np.ndarray:
        if isinstance(self.model, Linear):
            if self._w is None:
                self._w = self.model.full_weights(self.pipeline.dim)
            out = self.model.finish(self.pipeline.dot(feats, self._w))
        else:
            out = self.model.predict(self.pipeline.columns(feats, self.model.pipeline_columns))
        if self.target == "regression":
            out = np.clip(out, *self.score_range)
        return np.round(out, 6) + 0.0  # + 0.0: no -0.0 in the output

    # -- saving ---------------------------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike,
        *,
        report: dict | None = None,
        inputs: list[str] | None = None,
        seed: int | None = None,
    ) -> Path:
        """Write the classifier directory atomically (a temporary directory beside it, then renamed into place;
        an existing classifier directory there is replaced, anything else is refused)."""
        final = Path(path)
        with atomic_dir(
            final, replace=True, may_replace=_replaceable, error=UsageError, what="classifier directory"
        ) as tmp:
            farrays = self.pipeline.arrays()
            model_file = MODEL_FILES[self.estimator]
            if isinstance(self.model, LightGBMModel):
                farrays["lgbm.columns"] = self.model.columns
                model_meta = self.model.meta()
                (tmp / model_file).write_bytes(self.model.text.encode())
            else:
                arrays, model_meta = model_arrays(self.model)
                save_arrays(tmp / model_file, arrays)
            save_arrays(tmp / FEATURES_FILE, farrays)
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "estimator": self.estimator,
                "target": self.target,
                "threshold": self.threshold,
                "score_range": list(self.score_range),
                "decision": self.decision,
                "features": self.pipeline.describe(),
                "dim": self.pipeline.dim,
                "model_file": model_file,
                "model": model_meta,
                **self.info,
            }
            (tmp / CLASSIFIER_JSON).write_bytes(
                orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
            )
            names = [CLASSIFIER_JSON, FEATURES_FILE, model_file]
            if report is not None:
                (tmp / REPORT_FILE).write_bytes(
                    orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
                )
                names.append(REPORT_FILE)
            umask = os.umask(0)
            os.umask(umask)
            for n in names:  # safetensors writes owner-only files; give every file the usual permissions
                os.chmod(tmp / n, 0o666 & ~umask)
            os.chmod(tmp, 0o777 & ~umask)  # and the directory (a temporary directory starts owner-only)
            outputs = [{"path": n, "bytes": (tmp / n).stat().st_size, "sha256": sha256_file(tmp / n)} for n in names]
            write_manifest(
                tmp / MANIFEST,
                tool="classify train",
                seed=seed,
                inputs=inputs,
                outputs=outputs,
                stats={"labels": self.info.get("labels", {})},
                extra={"classifier": {"format": FORMAT, "estimator": self.estimator}},
            )
        return final


def _replaceable(path: Path) -> bool:
    """A directory `save` may replace: a classifier directory, or an empty one."""
    return (path / CLASSIFIER_JSON).exists() or not any(path.iterdir())


def _read_json(p: Path) -> dict:
    try:
        d = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable ({e})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{p}: not a JSON object")
    return d


def verified_files(path: str | os.PathLike) -> tuple[Path, dict[str, str]]:
    """Check every file the manifest lists against its sha256; returns (dir, {name: sha256})."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: no such classifier directory", hint="pass the -o directory of `phitools classify train`"
        )
    man_p = root / MANIFEST
    if not man_p.is_file():
        raise CheckpointError(
            f"{root}: no {MANIFEST} (not a finished classifier directory)", hint="re-run `phitools classify train`"
        )
    outputs = _read_json(man_p).get("outputs")
    if not isinstance(outputs, list):
        raise CheckpointError(f"{man_p}: no `outputs` list")
    digests: dict[str, str] = {}
    for o in outputs:
        name = o.get("path") if isinstance(o, dict) else None
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise CheckpointError(f"{man_p}: bad file entry {o!r}")
        f = root / name
        if not f.is_file():
            raise CheckpointError(
                f"{f}: missing (listed in {MANIFEST})",
                hint="the classifier directory is incomplete; retrain or restore it",
            )
        got = sha256_file(f)
        if got != o.get("sha256"):
            raise CheckpointError(
                f"{f}: sha256 does not match {MANIFEST} (the file changed after training)",
                hint="restore the original file or retrain the classifier",
            )
        digests[name] = got
    return root, digests


def load_classifier(
    path: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    tokenizer: str | None = None,
    device: str = "auto",
    embed_batch_size: int | None = None,
) -> Classifier:
    """Load and verify a classifier directory. `checkpoint`/`tokenizer` relocate a model: feature's files."""
    root, digests = verified_files(path)
    for need in (CLASSIFIER_JSON, FEATURES_FILE):
        if need not in digests:
            raise CheckpointError(f"{root}: {need} is not listed in {MANIFEST}")
    doc = _read_json(root / CLASSIFIER_JSON)
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{root / CLASSIFIER_JSON}: not a phitools classifier (format {doc.get('format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{root / CLASSIFIER_JSON}: format_version {doc.get('format_version')!r} is not supported by this phitools",
            hint="upgrade phitools or retrain",
        )
    estimator, target = doc.get("estimator"), doc.get("target")
    if estimator not in MODEL_FILES or target not in ("regression", "binary"):
        raise CheckpointError(f"{root / CLASSIFIER_JSON}: unknown estimator/target {estimator!r}/{target!r}")
    model_file = doc.get("model_file")
    if model_file != MODEL_FILES[estimator] or model_file not in digests:
        raise CheckpointError(
            f"{root / CLASSIFIER_JSON}: model_file {model_file!r} is missing or not listed in {MANIFEST}"
        )

    farrays = load_arrays(root / FEATURES_FILE)  # a damaged file is a CheckpointError naming it
    try:
        pipeline = Pipeline.from_saved(
            doc.get("features"),
            farrays,
            checkpoint=checkpoint,
            tokenizer=tokenizer,
            device=device,
            batch_size=embed_batch_size,
        )
        threshold = float(doc["threshold"])
        lo, hi = (float(x) for x in doc["score_range"])
        dim = int(doc["dim"])
        decision = float(doc["decision"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{root / CLASSIFIER_JSON}: bad field ({e})") from None
    if dim != pipeline.dim:
        raise CheckpointError(
            f"{root / CLASSIFIER_JSON}: dim {dim} does not match its feature settings ({pipeline.dim})"
        )
    meta = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    if estimator == "lgbm":
        if "lgbm.columns" not in farrays:
            raise CheckpointError(f"{root / FEATURES_FILE}: lgbm.columns is missing")
        model = load_model(
            "lgbm",
            (root / model_file).read_bytes(),
            {**meta, "columns": farrays["lgbm.columns"]},
            dim,
            str(root / model_file),
        )
    else:
        model = load_model(estimator, load_arrays(root / model_file), meta, dim, str(root / model_file))
    if not isinstance(model, Linear) and len(model.columns) > 1 and (np.diff(model.columns) <= 0).any():
        raise CheckpointError(f"{root}: tree model columns are not sorted")
    cid = hashlib.sha256("".join(digests[n] for n in sorted(digests) if n != REPORT_FILE).encode()).hexdigest()[:12]
    info = {k: doc[k] for k in ("labels", "label_source", "packages", "trained") if k in doc}
    return Classifier(
        pipeline,
        model,
        estimator,
        target,
        threshold,
        (lo, hi),
        info=info,
        decision_point=decision,
        name=root.resolve().name,
        id=cid,
    )
