"""Train fixtures: a real token directory made in-test (a tiny BPE trained on standard-library code)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def make_token_dir(
    out: Path, *, n_files: int = 40, vocab_size: int = 512, seq_len: int = 64, shard_tokens: int = 20_000
) -> Path:
    """tokenizer.json + tokens-*.bin + manifest.json, as `phitools tokenize -o` writes them, from stdlib files."""
    from phitools.shards import write_manifest
    from phitools.shards.tokens import TokenShardWriter
    from phitools.steps import tokenize as T

    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(STDLIB.glob("*.py"))[:n_files]]
    tok = T.train_tokenizer(texts, vocab_size)
    eot = T.eot_id(tok)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    w = TokenShardWriter(out, vocab_size=vocab, seq_len=seq_len, packed=True, shard_tokens=shard_tokens)
    w.set_tokenizer(tok)
    for enc in tok.encode_batch(texts):
        w.add(np.array(enc.ids + [eot], dtype=np.int64))
    w.close()
    w.commit(
        lambda path, fields: write_manifest(
            path,
            tool="tokenize",
            argv=["test"],
            seed=0,
            outputs=w.shards,
            extra={
                **fields,
                "vocab_size": vocab,
                "eot_id": eot,
                "documents": len(texts),
                "tokenizer_sha256": T.tokenizer_sha256(tok),
            },
        )
    )
    return out


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory) -> Path:
    """~100k real tokens in several shards (so windows cross shard boundaries)."""
    return make_token_dir(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~30x faster than two fighting threads."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
