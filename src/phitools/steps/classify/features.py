"""The feature pipeline: `--features hash`, `model:CKPT`, or both (`hash,model:ckpt/`), as one column space.

Columns are laid out part after part: [hash buckets | dense statistics][model hidden size]. Each part can
  featurize(texts)        -> its own per-batch representation,
  matrix(f)               -> scipy CSR of its columns (training; the hash part gives plain term frequencies,
                             IDF is applied by the trainer so cross-validation folds fit their own),
  columns(f, cols)        -> dense values of only those columns (what a tree model reads),
  dot(f, w)               -> f @ w without building the matrix (what a linear model needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phitools.errors import CheckpointError, UsageError
from phitools.steps.classify import hashing
from phitools.steps.classify.hashing import HashSettings


@dataclass
class HashPart:
    """Hashed n-grams + dense statistics (hashing.py); `idf` is learnt at training time."""

    settings: HashSettings
    idf: np.ndarray | None = None
    kind: str = "hash"

    @property
    def dim(self) -> int:
        return self.settings.dim

    @property
    def idf_columns(self) -> slice:
        return slice(0, self.settings.n_features)

    def featurize(self, texts: Sequence[str]) -> hashing.HashedBatch:
        return hashing.hash_batch(texts, self.settings)

    def matrix(self, f: hashing.HashedBatch):
        return hashing.to_csr(f, self.settings, self.idf)

    def columns(self, f: hashing.HashedBatch, cols: np.ndarray) -> np.ndarray:
        return hashing.to_columns(f, self.settings, self._idf(), cols)

    def dot(self, f: hashing.HashedBatch, w: np.ndarray) -> np.ndarray:
        return hashing.dot(f, self.settings, self._idf(), w)

    def _idf(self) -> np.ndarray:
        if self.idf is None:
            raise RuntimeError("hash features have no IDF yet (not trained)")
        return self.idf

    def describe(self) -> dict:
        return {"kind": "hash", "settings": self.settings.to_json(), "dim": self.dim, "idf": "hash.idf"}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"hash.idf": self._idf()}


@dataclass
class ModelPart:
    """Mean-pooled hidden states of a Phi checkpoint (embed.py). The model is loaded on first use."""

    checkpoint: str
    tokenizer: str | None = None
    max_tokens: int = 512
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"
    expected: dict | None = None  # what training recorded (d_model, sha256s), checked when loaded for apply
    kind: str = "model"
    _embedder: Any = field(default=None, repr=False)

    @property
    def embedder(self):
        if self._embedder is None:
            from phitools.steps.classify.embed import Embedder

            self._embedder = Embedder(
                self.checkpoint,
                tokenizer=self.tokenizer,
                max_tokens=self.max_tokens,
                batch_size=self.batch_size,
                device=self.device,
                dtype=self.dtype,
            )
            if self.expected:
                got = self._embedder.describe()
                for key in ("d_model", "weights_sha256", "tokenizer_sha256"):
                    want = self.expected.get(key)
                    if want is not None and got.get(key) is not None and want != got[key]:
                        raise CheckpointError(
                            f"model:{self.checkpoint}: {key} differs from the checkpoint the classifier was trained on",
                            hint="point --model-checkpoint at the same checkpoint (and tokenizer) used in training",
                        )
        return self._embedder

    @property
    def dim(self) -> int:
        if self.expected and "d_model" in self.expected:
            return int(self.expected["d_model"])
        return self.embedder.dim

    @property
    def idf_columns(self) -> None:
        return None

    def featurize(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def matrix(self, f: np.ndarray):
        import scipy.sparse as sp

        return sp.csr_matrix(f)

    def columns(self, f: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return f[:, cols]

    def dot(self, f: np.ndarray, w: np.ndarray) -> np.ndarray:
        return f @ w

    def describe(self) -> dict:
        d = dict(self.expected) if self.expected else self.embedder.describe()
        d.update(
            {
                "kind": "model",
                "checkpoint": self.checkpoint,
                "max_tokens": self.max_tokens,
                "pooling": "mean",
                "dim": self.dim,
                "tokenizer": self.tokenizer,
                "batch_size": self.batch_size,
            }
        )
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


def parse_features(
    spec: str,
    *,
    hash_settings: HashSettings | None = None,
    tokenizer: str | None = None,
    max_tokens: int = 512,
    batch_size: int = 16,
    device: str = "auto",
) -> Pipeline:
    """Parse `--features`: comma-separated `hash` and/or `model:CKPT`."""
    parts: list = []
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise UsageError("--features is empty", hint="e.g. --features hash, or --features hash,model:ckpt/")
    for item in items:
        if item == "hash":
            if any(p.kind == "hash" for p in parts):
                raise UsageError("--features names `hash` twice")
            parts.append(HashPart(hash_settings or HashSettings()))
        elif item.startswith("model:"):
            ckpt = item[len("model:") :]
            if not ckpt:
                raise UsageError("--features model: needs a checkpoint path", hint="e.g. --features model:ckpt/")
            parts.append(
                ModelPart(ckpt, tokenizer=tokenizer, max_tokens=max_tokens, batch_size=batch_size, device=device)
            )
        else:
            raise UsageError(
                f"--features: unknown feature set {item!r}", hint="use `hash`, `model:CKPT`, or both: hash,model:CKPT"
            )
    return Pipeline(parts)


class Pipeline:
    """Several feature parts as one column space."""

    def __init__(self, parts: list):
        self.parts = parts
        self._offsets: list[int] | None = None

    @property
    def offsets(self) -> list[int]:
        if self._offsets is None:
            offs, o = [], 0
            for p in self.parts:
                offs.append(o)
                o += p.dim
            self._offsets = offs + [o]
        return self._offsets

    @property
    def dim(self) -> int:
        return self.offsets[-1]

    @property
    def uses_model(self) -> bool:
        return any(p.kind == "model" for p in self.parts)

    def spec(self) -> str:
        return ",".join("hash" if p.kind == "hash" else f"model:{p.checkpoint}" for p in self.parts)

    def featurize(self, texts: Sequence[str]) -> list:
        return [p.featurize(texts) for p in self.parts]

    def matrix(self, feats: list):
        import scipy.sparse as sp

        return sp.hstack([p.matrix(f) for p, f in zip(self.parts, feats)], format="csr")

    def idf_columns(self) -> list[slice]:
        """Global column ranges that take IDF weights (the hashed buckets)."""
        out = []
        for p, o in zip(self.parts, self.offsets):
            s = p.idf_columns
            if s is not None:
                out.append(slice(o + s.start, o + s.stop))
        return out

    def columns(self, feats: list, cols: np.ndarray) -> np.ndarray:
        """Dense values of the sorted global columns `cols`, (n, len(cols))."""
        blocks = []
        for p, f, lo, hi in zip(self.parts, feats, self.offsets, self.offsets[1:]):
            mine = cols[(cols >= lo) & (cols < hi)]
            if len(mine):
                blocks.append(p.columns(f, mine - lo))
        n = _n_docs(feats)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))

    def dot(self, feats: list, w: np.ndarray) -> np.ndarray:
        """Feature matrix @ w (w over all `dim` columns)."""
        acc = None
        for p, f, lo, hi in zip(self.parts, feats, self.offsets, self.offsets[1:]):
            r = p.dot(f, w[lo:hi])
            acc = r if acc is None else acc + r
        return acc

    def describe(self) -> list[dict]:
        return [p.describe() for p in self.parts]

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for p in self.parts:
            out.update(p.arrays())
        return out

    @classmethod
    def from_saved(
        cls,
        described: list,
        arrays: dict,
        *,
        checkpoint: str | None = None,
        tokenizer: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
    ) -> Pipeline:
        """Rebuild from classifier.json's `features` and features.safetensors; raises CheckpointError."""
        parts: list = []
        if not isinstance(described, list) or not described:
            raise CheckpointError("classifier.json: `features` is missing or empty")
        for d in described:
            kind = d.get("kind") if isinstance(d, dict) else None
            if kind == "hash":
                try:
                    settings = HashSettings.from_json(d["settings"])
                except (KeyError, TypeError, ValueError) as e:
                    raise CheckpointError(f"classifier.json: bad hash settings ({e})") from None
                idf = arrays.get("hash.idf")
                if idf is None or idf.shape != (settings.n_features,) or not np.isfinite(idf).all():
                    raise CheckpointError("features.safetensors: hash.idf is missing or has the wrong shape")
                parts.append(HashPart(settings, idf.astype(np.float32)))
            elif kind == "model":
                expected = {k: d.get(k) for k in ("d_model", "weights_sha256", "tokenizer_sha256", "n_layer")}
                parts.append(
                    ModelPart(
                        checkpoint or d.get("checkpoint"),
                        tokenizer=tokenizer or d.get("tokenizer"),
                        max_tokens=int(d.get("max_tokens", 512)),
                        batch_size=batch_size or int(d.get("batch_size", 16)),
                        device=device,
                        expected=expected,
                    )
                )
            else:
                raise CheckpointError(f"classifier.json: unknown feature kind {kind!r}")
        return cls(parts)


def _n_docs(feats: list) -> int:
    f = feats[0]
    return f.n_docs if isinstance(f, hashing.HashedBatch) else f.shape[0]
