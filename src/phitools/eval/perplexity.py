"""Loss and perplexity of a checkpoint on token shards (`phitools tokenize -o DIR`).

Each shard's stream is cut into windows of seq_len + 1 tokens with stride seq_len, so every token after a
shard's first is predicted exactly once, from up to seq_len tokens of context that never cross a shard.
loss is the mean next-token cross-entropy in nats; perplexity = exp(loss).

`run(checkpoint, tokdir, output=...)` is `phitools eval CKPT --perplexity TOKDIR`: it measures, then writes
one JSON line on stdout, or `perplexity.json` + `manifest.json` into the output directory, and returns the
result. `evaluate_perplexity` only measures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from phitools.errors import DataError
from phitools.runtime import console
from phitools.runtime.files import atomic_write, sha256_file


def windows(n_tokens: int, seq_len: int) -> list[tuple[int, int]]:
    """(start, end) windows of at most seq_len + 1 tokens, stride seq_len, covering a stream of n tokens."""
    out = []
    s = 0
    while s + 1 < n_tokens:
        out.append((s, min(s + seq_len + 1, n_tokens)))
        s += seq_len
    return out


def evaluate_perplexity(
    ckpt: str | os.PathLike,
    tokdir: str | os.PathLike,
    *,
    seq_len: int | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
    warn: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Mean loss and perplexity of the checkpoint on the token directory (first `limit` windows if given)."""
    import numpy as np
    import torch

    from phitools.model.checkpoint import load_checkpoint
    from phitools.shards.tokens import open_token_dir

    td = open_token_dir(tokdir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, config, _meta = load_checkpoint(ckpt, map_location=dev)
    if td.vocab_size > config.vocab_size:
        raise DataError(
            f"token ids go up to {td.vocab_size - 1} but the model has {config.vocab_size} embeddings",
            source=str(tokdir),
            hint="tokenize with the model's own tokenizer",
        )
    ckpt_tok = os.path.join(str(ckpt), "tokenizer.json")
    tok_match = None
    if os.path.isfile(ckpt_tok):
        from tokenizers import Tokenizer

        from phitools.steps.tokenize import tokenizer_sha256

        # the same identity `phitools tokenize` records: sha256 of the tokenizer's canonical JSON
        canon = tokenizer_sha256(Tokenizer.from_file(ckpt_tok))
        tok_match = canon == td.tokenizer_sha256 or sha256_file(ckpt_tok) == sha256_file(td.tokenizer_path)
        if not tok_match and warn:
            warn(
                f"{tokdir} was tokenized with a different tokenizer than {ckpt}'s tokenizer.json: the loss is "
                "not meaningful"
            )
    L = min(seq_len or td.seq_len or config.max_seq_len, config.max_seq_len)
    spans = [(a, s, e) for a, arr in enumerate(td.arrays) for s, e in windows(len(arr), L)]
    if limit is not None:
        spans = spans[:limit]
    if not spans:
        raise DataError("no tokens to evaluate", source=str(tokdir))
    total_loss = 0.0
    total_tok = 0
    with torch.inference_mode():
        for b0 in range(0, len(spans), batch_size):
            batch = spans[b0 : b0 + batch_size]
            T = max(e - s for _, s, e in batch)
            x = torch.zeros((len(batch), T), dtype=torch.long)
            valid = torch.zeros((len(batch), T), dtype=torch.bool)
            for r, (a, s, e) in enumerate(batch):
                seg = np.asarray(td.arrays[a][s:e], dtype=np.int64)
                x[r, : e - s] = torch.from_numpy(seg)
                valid[r, : e - s] = True
            x, valid = x.to(dev), valid.to(dev)
            # right-padded rows: padding only ever follows real tokens, so causal attention never sees it
            logits = model(x[:, :-1])  # (B, T-1, V)
            tgt = x[:, 1:]
            keep = valid[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1), reduction="none"
            ).view_as(tgt)
            total_loss += float(loss[keep].sum())
            total_tok += int(keep.sum())
            if on_batch:
                on_batch(len(batch))
    mean = total_loss / total_tok
    return {
        "loss": mean,
        "perplexity": math.exp(mean) if mean < 700 else float("inf"),
        "tokens": total_tok,
        "windows": len(spans),
        "seq_len": L,
        "tokens_in_dir": td.total_tokens,
        "tokenizer_matches": tok_match,
        "tokens_dir": str(tokdir),
    }


def run(
    checkpoint: str | os.PathLike,
    tokdir: str | os.PathLike,
    *,
    output: str | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str | None = None,
    seed: int = 0,
) -> dict:
    """What `phitools eval CHECKPOINT --perplexity TOKDIR` does: measure (progress and warnings through
    runtime.console), then write the result as one JSON line on stdout (`output` None or '-') or as
    perplexity.json + manifest.json in the `output` directory. Returns the result."""
    import sys
    from pathlib import Path

    import orjson

    from phitools.shards import write_manifest

    with console.progress("perplexity", total=None, unit="windows") as bar:
        res = evaluate_perplexity(
            checkpoint,
            tokdir,
            batch_size=batch_size,
            limit=limit,
            device=device,
            warn=console.warn,
            on_batch=bar.advance,
        )
    res["checkpoint"] = str(checkpoint)
    if output in (None, "-"):
        sys.stdout.buffer.write(orjson.dumps(res, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return res
    d = Path(output)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "perplexity.json", orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    write_manifest(
        d / "manifest.json",
        tool="eval",
        seed=seed,
        inputs=[str(tokdir), str(checkpoint)],
        outputs=[{"path": "perplexity.json"}],
        extra={"perplexity": res},
    )
    return res
