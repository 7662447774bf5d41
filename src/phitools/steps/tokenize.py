"""tokenize: text records -> token ids. Tokenizer training (byte-level BPE) and batched encoding."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

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
        raise UsageError(
            f"--vocab-size {vocab_size} is too small",
            hint="byte-level BPE needs at least 257 (256 bytes + end-of-text)",
        )
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
                raise DataError(
                    f"could not fetch tokenizer {name!r} from the Hugging Face Hub ({str(e).splitlines()[0][:160]})",
                    hint="check the id and your network, or download tokenizer.json and pass its path",
                ) from None
        raise DataError(
            "tokenizer file not found", source=str(path), hint="pass a tokenizer.json, or --train-tokenizer"
        )
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
    raise DataError(
        f"tokenizer has no end-of-text token (tried {', '.join(candidates)})",
        hint="pass --eot TOKEN naming its end-of-text token",
    )


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


# A huge document is encoded in pieces: tokenizers holds ~100 bytes per token of bookkeeping (offsets, token
# strings, alignments), so one 50 MB record took 5.5 GB in a single encode call. Pieces of about PIECE_CHARS,
# cut where the result is provably the same (see `split_safe`), and at most ENCODE_CHARS per encode call keep
# a record within a few times its own size (benchmarks/tokenize_memory.py).
PIECE_CHARS = 1 << 18
ENCODE_CHARS = 2 << 20


def split_safe(tok) -> bool:
    """Whether cutting a text after a newline between two non-space characters leaves its ids unchanged.

    True for byte-level BPE with the GPT-2 split regex and no prefix space (phi-1's tokenizer, the bundled
    stdlib-8k, every --train-tokenizer result), no normalizer, and no added token that holds a newline or
    strips the whitespace to its left. With the GPT-2 regex a newline between two non-space characters is
    a piece of its own (`\\s+` matches it alone), so both sides are pre-tokenized as they are in the whole
    text, and BPE never merges across pieces.
    """
    import json

    try:
        cfg = json.loads(tok.to_str())
    except Exception:
        return False
    pre = cfg.get("pre_tokenizer") or {}
    if cfg.get("normalizer") is not None or pre.get("type") != "ByteLevel":
        return False
    if pre.get("add_prefix_space") or not pre.get("use_regex", True):
        return False
    for t in cfg.get("added_tokens") or []:
        if "\n" in str(t.get("content", "")) or t.get("lstrip"):
            return False
    return True


def pieces(text: str, limit: int = PIECE_CHARS) -> list[tuple[int, int]]:
    """(start, end) spans covering `text`, each at most about `limit` chars, cut after a newline between two
    non-space characters (a text without such a newline stays whole)."""
    n = len(text)
    if n <= limit:
        return [(0, n)]
    spans, start = [], 0
    while n - start > limit:
        cut = -1
        p = text.rfind("\n", start + 1, start + limit)
        while p > start:
            if p + 1 < n and not text[p - 1].isspace() and not text[p + 1].isspace():
                cut = p + 1
                break
            p = text.rfind("\n", start + 1, p)
        if cut < 0:
            p = text.find("\n", start + limit)
            while p != -1 and p + 1 < n:
                if not text[p - 1].isspace() and not text[p + 1].isspace():
                    cut = p + 1
                    break
                p = text.find("\n", p + 1)
        if cut < 0:
            break
        spans.append((start, cut))
        start = cut
    spans.append((start, n))
    return spans


def encode_records(
    tok, records: Iterable[Record], *, eot: int, batch_size: int = 512, field: str = "text"
) -> Iterator[tuple[Record, np.ndarray]]:
    """Yield (record, ids with end-of-text appended) in input order, encoding in batches.

    Reading and parsing run in a background thread while tokenizers (which releases the GIL) encodes.
    A document longer than PIECE_CHARS is encoded in pieces when the tokenizer allows it (`split_safe`):
    the ids are identical, the memory is not.
    """
    from phitools.runtime.prefetch import prefetch

    encode = tok.encode_batch_fast if hasattr(tok, "encode_batch_fast") else tok.encode_batch
    can_split = split_safe(tok)
    for batch in prefetch(_batches(records, batch_size), depth=4):
        texts = [r[field] if isinstance(r.get(field), str) else "" for r in batch]
        if not can_split or max(map(len, texts), default=0) <= PIECE_CHARS:
            for r, e in zip(batch, encode(texts, add_special_tokens=False)):
                ids = e.ids
                arr = np.empty(len(ids) + 1, dtype=np.uint32)
                arr[:-1] = ids
                arr[-1] = eot
                yield r, arr
            continue
        # some document is huge: encode (doc, span) pieces, at most ENCODE_CHARS per call
        work = [(i, a, b) for i, t in enumerate(texts) for a, b in pieces(t)]
        parts: list[list[np.ndarray]] = [[] for _ in texts]
        j = 0
        while j < len(work):
            k, size = j, 0
            while k < len(work) and (k == j or size + work[k][2] - work[k][1] <= ENCODE_CHARS) and k - j < batch_size:
                size += work[k][2] - work[k][1]
                k += 1
            group = work[j:k]
            encs = encode([texts[i][a:b] for i, a, b in group], add_special_tokens=False)
            for (i, _, _), e in zip(group, encs):
                parts[i].append(np.asarray(e.ids, dtype=np.uint32))
            del encs
            j = k
        for i, r in enumerate(batch):
            arr = np.concatenate(parts[i] + [np.array([eot], dtype=np.uint32)])
            parts[i] = []
            yield r, arr
