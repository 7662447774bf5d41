"""`model:CKPT` features: mean-pooled final hidden states of a Phi checkpoint (phi-1's classifier input).

phi-1 trained its quality classifier on the output embeddings of a pretrained code model; here that is
any phitools or Hugging Face Phi checkpoint (model/checkpoint.py) and the tokenizer.json that travels with
it (in the checkpoint directory, or given with --tokenizer). Each document's first 16 x `max_tokens`
characters are tokenised and the first `max_tokens` tokens kept,
documents of similar length are batched together (right padding: the model is causal, so real tokens never
see the padding and no attention mask is needed), and the hidden states of the real tokens are averaged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phitools.errors import CheckpointError, UsageError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_tokenizer(checkpoint: str | os.PathLike, tokenizer: str | os.PathLike | None = None) -> Path:
    """The tokenizer.json to use: the one given, or the checkpoint's own."""
    if tokenizer:
        p = Path(tokenizer)
        p = p / "tokenizer.json" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(
                f"{tokenizer}: no tokenizer.json there", hint="pass a tokenizer.json file or a directory holding one"
            )
        return p
    p = Path(checkpoint) / "tokenizer.json"
    if not p.is_file():
        raise CheckpointError(
            f"{checkpoint}: the checkpoint has no tokenizer.json",
            hint="pass --tokenizer PATH (e.g. the tok/ directory `phitools tokenize` wrote)",
        )
    return p


def weights_sha256(checkpoint: str | os.PathLike) -> str | None:
    """sha256 of the checkpoint's weights: recorded in a phitools config.json, else hashed (single-file HF)."""
    import json

    root = Path(checkpoint)
    try:
        files = json.loads((root / "config.json").read_text()).get("files") or {}
        rec = files.get("model.safetensors") or {}
        if isinstance(rec, dict) and isinstance(rec.get("sha256"), str):
            return rec["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    w = root / "model.safetensors"
    return _sha256(w) if w.is_file() else None


class Embedder:
    """Mean-pooled final hidden states of a Phi checkpoint, batched. `embed(texts)` -> (n, d_model) float64."""

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        max_tokens: int = 512,
        batch_size: int = 16,
        device: str = "auto",
        dtype: str = "auto",
    ):
        import torch
        from tokenizers import Tokenizer

        from phitools.model.checkpoint import load_checkpoint

        if max_tokens < 1 or batch_size < 1:
            raise UsageError("--max-tokens and --embed-batch-size must be positive")
        self.checkpoint = str(checkpoint)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if torch_dtype is None:
            raise UsageError(f"unknown dtype {dtype!r}", hint="float32, bfloat16 or float16")
        self.model, self.config, meta = load_checkpoint(checkpoint, map_location=self.device, dtype=torch_dtype)
        self.tokenizer_path = find_tokenizer(checkpoint, tokenizer)
        try:
            self.tok = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise CheckpointError(
                f"{self.tokenizer_path}: not a valid tokenizer.json ({str(e).splitlines()[0][:200]})"
            ) from None
        if self.tok.get_vocab_size() > self.config.vocab_size:
            raise CheckpointError(
                f"{self.tokenizer_path}: tokenizer has {self.tok.get_vocab_size()} tokens but the model only "
                f"{self.config.vocab_size}",
                hint="use the tokenizer the checkpoint was trained with",
            )
        self.max_tokens = min(max_tokens, self.config.max_seq_len)
        self.batch_size = batch_size
        self.dim = self.config.d_model
        self.dtype = dtype
        self.tokenizer_sha256 = _sha256(self.tokenizer_path)

    def describe(self) -> dict:
        """What identifies these features (saved in the classifier's JSON)."""
        return {
            "checkpoint": self.checkpoint,
            "d_model": self.dim,
            "n_layer": self.config.n_layer,
            "max_tokens": self.max_tokens,
            "pooling": "mean",
            "layer": "final (after ln_f)",
            "tokenizer_sha256": self.tokenizer_sha256,
            "weights_sha256": weights_sha256(self.checkpoint),
        }

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d_model) mean-pooled hidden states, float64."""
        import torch

        n = len(texts)
        out = np.zeros((n, self.dim), np.float64)
        if n == 0:
            return out
        # a token is rarely longer than 16 characters, so only the head of a long document is tokenised
        cut = 16 * self.max_tokens
        heads = [t[:cut] for t in texts]
        ids = [e.ids[: self.max_tokens] for e in self.tok.encode_batch(heads, add_special_tokens=False)]
        lens = np.array([len(x) for x in ids])
        order = np.argsort(-lens, kind="stable")  # similar lengths together: less padding
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                chunk = [j for j in order[i : i + self.batch_size] if lens[j] > 0]
                if not chunk:
                    continue
                T = int(lens[chunk[0]])
                idx = torch.zeros((len(chunk), T), dtype=torch.long)
                for r, j in enumerate(chunk):
                    idx[r, : lens[j]] = torch.tensor(ids[j], dtype=torch.long)
                h = self.model.hidden_states(idx.to(self.device)).float()  # (B, T, C)
                mask = (torch.arange(T)[None, :] < torch.tensor(lens[chunk])[:, None]).to(self.device)
                pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                out[chunk] = pooled.double().cpu().numpy()
        return out
