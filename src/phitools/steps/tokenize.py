"""tokenize: text records -> token ids. Tokenizer training (byte-level BPE) and batched encoding."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from phitools.errors import DataError, UsageError
from phitools.records import Record

EOT = "<|endoftext|>"


def _tokenizers():
    import tokenizers

    return tokenizers


def set_threads(workers: int) -> None:
    """Size the tokenizers (Rayon) thread pool. Must run before the first parallel encode in this process."""
    os.environ["RAYON_NUM_THREADS"] = str(max(1, workers))
    os.environ["RAYON_RS_NUM_CPUS"] = str(max(1, workers))
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, eot: str = EOT):
    """Train a byte-level BPE (GPT-2 style, as phi-1's codegen tokenizer) with an end-of-text special token."""
    tk = _tokenizers()
    if vocab_size < 256 + 1:
        raise UsageError(f"--vocab-size {vocab_size} is too small", hint="byte-level BPE needs at least 257 (256 bytes + end-of-text)")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eot],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


DEFAULT_TOKENIZER = "stdlib-8k"


def default_tokenizer_path() -> Path:
    """The bundled default: a byte-level BPE (8192 ids, <|endoftext|> = 0) trained on CPython 3.11's standard library."""
    from importlib.resources import files

    return Path(str(files("phitools") / "data" / "tokenizer-stdlib-8k.json"))


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer: a tokenizer.json (or a directory holding one), the bundled `stdlib-8k`, or a
    Hugging Face Hub id such as `microsoft/phi-1` (needs internet)."""
    if str(path) == DEFAULT_TOKENIZER:
        path = default_tokenizer_path()
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        name = str(path)
        if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1 and not Path(name).parent.exists():
            try:
                return _tokenizers().Tokenizer.from_pretrained(name)
            except Exception as e:
                raise DataError(f"could not fetch tokenizer {name!r} from the Hugging Face Hub ({str(e).splitlines()[0][:160]})",
                                hint="check the id and your network, or download tokenizer.json and pass its path") from None
        raise DataError("tokenizer file not found", source=str(path), hint="pass a tokenizer.json, or --train-tokenizer")
    try:
        return _tokenizers().Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise DataError(f"not a valid tokenizer.json ({str(e).splitlines()[0][:200]})", source=str(p)) from None


def eot_id(tok, eot: str | None = None) -> int:
    """The end-of-text id: the given token, else a known EOS/EOT special token of the tokenizer."""
    candidates = [eot] if eot else [EOT, "</s>", "<eos>", "<|end_of_text|>", "<|im_end|>"]
    for c in candidates:
        i = tok.token_to_id(c)
        if i is not None:
            return int(i)
    raise DataError(f"tokenizer has no end-of-text token (tried {', '.join(candidates)})", hint="pass --eot TOKEN naming its end-of-text token")


def tokenizer_sha256(tok) -> str:
    """sha256 of the tokenizer's canonical JSON."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()


def _batches(records: Iterable[Record], batch_size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_records(tok, records: Iterable[Record], *, eot: int, batch_size: int = 512, field: str = "text") -> Iterator[tuple[Record, np.ndarray]]:
    """Yield (record, ids with end-of-text appended) in input order, encoding in batches.

    Reading and parsing run in a background thread while tokenizers (which releases the GIL) encodes.
    """
    from phitools.runtime.prefetch import prefetch

    encode = tok.encode_batch_fast if hasattr(tok, "encode_batch_fast") else tok.encode_batch
    for batch in prefetch(_batches(records, batch_size), depth=4):
        texts = [r[field] if isinstance(r.get(field), str) else "" for r in batch]
        for r, e in zip(batch, encode(texts, add_special_tokens=False)):
            ids = e.ids
            arr = np.empty(len(ids) + 1, dtype=np.int64)
            arr[:-1] = ids
            arr[-1] = eot
            yield r, arr
