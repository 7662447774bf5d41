"""tokenize: text records -> token ids, and the whole of `phitools tokenize` as a library call.

    from phitools.steps.tokenize import TokenizeIO, TokenizeOptions, tokenize

    manifest = tokenize(TokenizeIO(inputs=["corpus/"], output="tok/"), TokenizeOptions(seq_len=512))

`TokenizeOptions` are the command's own flags (tokenizer, training, rows, batches), `TokenizeIO` the shared
record-input flags (`pipeline.IOOptions`) with -o naming a token directory and --shard-size counting tokens.
`tokenize(io, opts)` does what the command does: reads (stdin spooled when a tokenizer is trained on it),
trains or loads the tokenizer, encodes, packs into token shards (shards/tokens.py) and commits them with the
manifest; with no -o it writes token-id records to stdout. `records=` takes any iterable of dicts instead of
the inputs. `Tokenize` is the record step (records in, records with `tokens` out) for `pipeline.run` or a loop.
Below them: tokenizer training (byte-level BPE), loading, and batched encoding.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phitools.errors import DataError, UsageError
from phitools.options import check, option
from phitools.pipeline import Context, IOOptions, limited
from phitools.records import Record, dumps_record
from phitools.runtime.progress import NullReporter
from phitools.shards import RecordReader, RecordWriter, Stats, ownership, write_manifest
from phitools.shards.spec import ShardSpec, parse_size
from phitools.shards.tokens import TokenShardWriter, token_claim
from phitools.shards.write import output_kind

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
    _check_vocab_size(vocab_size)
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
    """The bundled default: a byte-level BPE (8192 ids, <|endoftext|> = 0) trained on CPython 3.11's standard
    library."""
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


# ---- the command as a library call ---------------------------------------------------------------------
@dataclass
class TokenizeOptions:
    """How `phitools tokenize` encodes and packs: which tokenizer, which rows, which batches."""

    tokenizer: str | None = option(
        None,
        "--tokenizer",
        show_default=False,
        help="A tokenizer.json (or a directory holding one), a Hugging Face Hub id (microsoft/phi-1, needs "
        "internet), or 'stdlib-8k'. Default: the bundled stdlib-8k byte-level BPE (8192 ids), unless "
        "--train-tokenizer.",
    )
    train_tokenizer: bool = option(
        False, "--train-tokenizer", help="Train a byte-level BPE on the input first (saved as DIR/tokenizer.json)."
    )
    vocab_size: int = option(8192, "--vocab-size", help="Vocabulary size for --train-tokenizer.")
    seq_len: int = option(2048, "--seq-len", min=1, help="Row length for packing (phi-1 used 2048).")
    pack: bool = option(
        True,
        "--pack/--no-pack",
        help="Pack into whole --seq-len rows (the tail shorter than a row is dropped and counted), or keep every "
        "token.",
    )
    field: str = option("text", "--field", help="Record field holding the text.")
    eot: str | None = option(
        None, "--eot", show_default=False, help="End-of-text token (default: <|endoftext|> or the tokenizer's EOS)."
    )
    workers: int = option(
        0,
        "--workers",
        show_default=False,
        help="Encoding threads (default: all cores). Output is identical for any value.",
    )
    batch_size: int = option(1024, "--batch-size", min=1, help="Documents per encode batch.")

    def __post_init__(self) -> None:
        check(self)
        if self.train_tokenizer and self.tokenizer:
            raise UsageError("give either --tokenizer or --train-tokenizer, not both")
        if self.train_tokenizer:
            _check_vocab_size(self.vocab_size)

    @property
    def tokenizer_source(self) -> str:
        """What the manifest records as the tokenizer's source: 'trained', the --tokenizer given, or the default."""
        return "trained" if self.train_tokenizer else self.tokenizer or DEFAULT_TOKENIZER


@dataclass
class TokenizeIO(IOOptions):
    """The record-input flags every tool shares; tokenize's -o is a token directory and --shard-size counts tokens."""

    output: str | None = option(
        None,
        "-o",
        "--output",
        metavar="DIR|-",
        show_default=False,
        help="Output directory: DIR/tokenizer.json, DIR/tokens-*.bin and DIR/manifest.json. No -o (or '-'): "
        "each record with a `tokens` list on stdout.",
    )
    shard_size: str = option("100M", "--shard-size", help="Tokens per .bin shard (a number, or with K/M/G).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if output_kind(self.output) == "file":
            raise UsageError(
                f"-o {self.output}: tokenize writes a directory of token shards",
                hint="use -o DIR, or no -o for JSONL token records on stdout",
            )
        records, size = parse_size(self.shard_size)
        self.shard_tokens: int = records if records is not None else max(1, size or 1)  # a unit scales a count

    @property
    def directory(self) -> Path | None:
        """The token directory, or None when token-id records go to stdout."""
        return Path(self.output) if output_kind(self.output) == "dir" else None


PYTHON_RECORDS = "<records>"  # how records given from Python are named in messages and the manifest


class Tokenize:
    """The record step: each record with a `tokens` list (its ids, end-of-text appended), as `tokenize` without -o.

        step = Tokenize(TokenizeOptions(tokenizer="tok/tokenizer.json"))
        for rec in step(records, Context()):
            ...

    `trained` is a tokenizer trained on the input (`opts.train_tokenizer`); otherwise `opts.tokenizer` (or the
    bundled default) is loaded on first use. `manifest()` gives the tokenizer and the counts.
    """

    name = "tokenize"

    def __init__(self, opts: TokenizeOptions | None = None, *, trained: Any = None) -> None:
        self.opts = opts if opts is not None else TokenizeOptions()
        if self.opts.train_tokenizer and trained is None:
            raise _needs_dir()
        if trained is not None and not self.opts.train_tokenizer:
            raise UsageError("a trained tokenizer goes with train_tokenizer=True (else opts.tokenizer is loaded)")
        self.required: tuple[str, ...] = (self.opts.field,)
        self.tok = trained
        self.eot_id: int | None = None
        self.documents = 0
        self.text_chars = 0
        self.tokens = 0

    def load(self) -> Any:
        """The tokenizer (loaded once) and its end-of-text id."""
        if self.tok is None:
            self.tok = load_tokenizer(self.opts.tokenizer_source)
        if self.eot_id is None:
            self.eot_id = eot_id(self.tok, self.opts.eot)
        return self.tok

    def encode(self, records: Iterable[Record]) -> Iterator[tuple[Record, np.ndarray]]:
        """(record, ids with end-of-text appended) in input order, counted."""
        tok = self.load()
        field = self.opts.field
        for rec, ids in encode_records(
            tok, _checked(records, field), eot=self.eot_id, batch_size=self.opts.batch_size, field=field
        ):
            self.documents += 1
            self.text_chars += len(rec[field])
            self.tokens += len(ids)
            yield rec, ids

    def __call__(self, records: Iterable[Record], ctx: Context) -> Iterator[Record]:
        for rec, ids in self.encode(records):
            out = dict(rec)
            out["tokens"] = ids.tolist()
            yield out

    def manifest(self) -> dict:
        tok = self.load()
        return {
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "eot_id": self.eot_id,
            "documents": self.documents,
            "text_chars": self.text_chars,
            "tokenizer_source": self.opts.tokenizer_source,
            "tokenizer_sha256": tokenizer_sha256(tok),
        }


def tokenize(
    io: TokenizeIO,
    opts: TokenizeOptions | None = None,
    *,
    records: Iterable[Record] | None = None,
    progress: Callable[..., Any] | None = None,
) -> dict:
    """Do what `phitools tokenize` does. Returns the manifest written to `io.output` (a token directory), or,
    with no output, the same facts about the token-id records written to stdout.

    `records` (any iterable of dicts, read once) replaces `io.inputs` and is treated as stdin is: sliced by
    record with `io.shard`, cut at `io.limit`, spooled when a tokenizer is trained on it. `progress(name,
    unit=, stats=)` is a context manager yielding a reporter (the command line passes its bar; default: none).
    """
    if not isinstance(io, TokenizeIO):
        raise TypeError("tokenize() takes a TokenizeIO: its output is a token directory, its shard_size counts tokens")
    opts = opts if opts is not None else TokenizeOptions()
    if records is not None and io.inputs:
        raise UsageError("give inputs or records, not both")
    set_threads(opts.workers or os.cpu_count() or 1)
    if opts.train_tokenizer and io.directory is None:
        raise _needs_dir()
    spec = io.shard_spec
    if opts.train_tokenizer and spec and spec.count > 1:
        raise UsageError(
            "--train-tokenizer cannot be combined with --shard",
            hint="train the tokenizer once, then run the shards with --tokenizer DIR/tokenizer.json",
        )
    source = _Source(io, opts.field, records)
    report = progress or _no_progress
    if io.directory is None:
        return _to_stdout(source, io, opts, report)
    return _to_token_dir(source, io, opts, report)


def _needs_dir() -> UsageError:
    return UsageError("--train-tokenizer needs -o DIR", hint="the trained tokenizer is saved as DIR/tokenizer.json")


def _no_progress(*args: Any, **kwargs: Any) -> Any:
    return nullcontext(NullReporter())


class _Source:
    """The records of a run: read once, or twice when a tokenizer is trained on them first."""

    def __init__(self, io: TokenizeIO, field: str, records: Iterable[Record] | None) -> None:
        self.io = io
        self.field = field
        self.stats = Stats()
        self.records = records
        self.reader = self._reader() if records is None else None
        self.inputs = self.reader.inputs if self.reader is not None else [PYTHON_RECORDS]
        self.one_shot = records is not None or "<stdin>" in self.inputs  # cannot be read again

    def _reader(self) -> RecordReader:
        io, field = self.io, self.field
        return RecordReader(
            io.inputs,
            shard=io.shard_spec,
            skip_bad=io.skip_bad,
            required=(field,),
            str_fields=(field,),
            stats=self.stats,
            allow_partial=io.allow_partial,
        )

    def __iter__(self) -> Iterator[Record]:
        if self.reader is not None:
            return limited(self.reader, self.io.limit)
        assert self.records is not None
        return limited(_python_records(self.records, self.field, self.io, self.stats), self.io.limit)

    def again(self) -> Iterator[Record]:
        """A second pass over the inputs (not for stdin or records from Python: those are spooled)."""
        self.stats.records_in = 0
        self.stats.skipped_bad.clear()
        return limited(self._reader(), self.io.limit)


def _python_records(records: Iterable[Record], field: str, io: IOOptions, stats: Stats) -> Iterator[Record]:
    """Records from Python, checked as the reader checks a file's: a dict holding `field` as valid Unicode."""
    spec: ShardSpec | None = io.shard_spec if io.shard_spec and io.shard_spec.count > 1 else None
    for i, rec in enumerate(records):
        if spec is not None and i % spec.count != spec.index:
            continue  # as stdin: record i goes to slice i mod N
        problem = _problem(rec, field)
        if problem is not None:
            if io.skip_bad:
                stats.skipped_bad[problem[0]] += 1
                continue
            raise DataError(
                problem[1],
                source=PYTHON_RECORDS,
                line=i + 1,
                hint="fix or remove that record, or pass --skip-bad to count and skip such records",
            )
        stats.records_in += 1
        yield rec


def _problem(rec: Any, field: str) -> tuple[str, str] | None:
    """(reason key, message) when a record from Python is not one tokenize can encode."""
    if not isinstance(rec, dict):
        return "not_object", f"record is {type(rec).__name__}, not a dict"
    if field not in rec:
        return f"missing_{field}", f"record has no {field!r} field"
    for name in dict.fromkeys((field, "text")):
        value = rec.get(name)
        if name != field and value is None:
            continue  # a record's text, when it is not the field tokenized, may be null
        if not isinstance(value, str):
            return f"not_string_{name}", f"field {name!r} is {type(value).__name__}, not a string"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "lone_surrogate", f"field {name!r} holds a lone surrogate, which is not valid Unicode"
    return None


def _texts(records: Iterable[Record], field: str) -> Iterator[str]:
    for r in records:
        t = r.get(field)
        if isinstance(t, str):
            yield t


def _checked(records: Iterable[Record], field: str) -> Iterator[Record]:
    for r in records:
        if not isinstance(r.get(field), str):
            raise DataError(
                f"record {r.get('id', '?')!r}: field {field!r} is not a string",
                hint="every record needs a text string; use --field to pick another field",
            )
        yield r


def _train(records: Iterable[Record], opts: TokenizeOptions, progress: Callable[..., Any]) -> Any:
    with progress("training tokenizer", unit="docs") as bar:

        def counted(texts: Iterable[str]) -> Iterator[str]:
            for t in texts:
                bar.advance()
                yield t

        return train_tokenizer(counted(_texts(records, opts.field)), opts.vocab_size)


class _Spool:
    """Records kept (zstd-compressed) as they pass, to be read again: stdin and Python iterables are read once."""

    def __init__(self, directory: Path, field: str) -> None:
        import zstandard

        self.path = directory / "spool.jsonl.zst"
        self.field = field
        self._fh = open(self.path, "wb")
        self._zw = zstandard.ZstdCompressor(level=1).stream_writer(self._fh)
        self._flush = zstandard.FLUSH_FRAME

    def tee(self, records: Iterable[Record]) -> Iterator[Record]:
        keep = ("id", self.field)  # all a second pass needs: the text, and the id for messages
        for r in records:
            self._zw.write(dumps_record({k: r[k] for k in keep if k in r}))
            yield r

    def read(self) -> Iterator[Record]:
        """Finish writing; the spooled records (counted in a Stats of their own: the first pass counted them)."""
        self._zw.flush(self._flush)
        self._zw.close()
        return iter(RecordReader([str(self.path)], required=(self.field,), str_fields=(self.field,), stats=Stats()))

    def close(self) -> None:
        self._fh.close()


def _to_stdout(source: _Source, io: TokenizeIO, opts: TokenizeOptions, progress: Callable[..., Any]) -> dict:
    """Token-id records on stdout (no -o)."""
    step = Tokenize(opts)
    step.load()
    stats = source.stats
    with RecordWriter(None, tool=step.name, stats=stats, seed=io.seed) as writer:
        with progress(step.name, unit="docs", stats=stats) as bar:
            ctx = Context(stats=stats, shard=io.shard_spec, seed=io.seed, progress=bar, inputs=source.inputs)
            for rec in step(source, ctx):
                writer.write(rec)
                bar.advance()
    return {
        "tool": step.name,
        "seed": io.seed,
        "shard": str(io.shard_spec) if io.shard_spec else None,
        "inputs": source.inputs,
        "stats": stats.to_dict(),
        "tokens": step.tokens,
        **step.manifest(),
    }


def _to_token_dir(source: _Source, io: TokenizeIO, opts: TokenizeOptions, progress: Callable[..., Any]) -> dict:
    """Token shards, tokenizer.json and the manifest into `io.directory`, all or nothing (shards/tokens.py)."""
    out_dir = io.directory
    assert out_dir is not None
    spec = io.shard_spec
    stats = source.stats
    claim = token_claim(out_dir, spec)  # one writer per slice, from the start
    spool_dir: Path | None = None
    spool: _Spool | None = None
    tw: TokenShardWriter | None = None
    try:
        # -- the tokenizer --------------------------------------------------------------------------------
        if opts.train_tokenizer:
            if source.one_shot:  # stdin can be read once: spool it (compressed) while the trainer consumes it
                spool_dir = ownership.tmp_path(out_dir / "spool")
                spool_dir.mkdir()
                spool = _Spool(spool_dir, opts.field)
                trained = _train(spool.tee(source), opts, progress)
                encode_iter = spool.read()
            else:
                trained = _train(source, opts, progress)
                encode_iter = source.again()
            enc = Tokenize(opts, trained=trained)
        else:
            enc = Tokenize(opts)
            encode_iter = iter(source)
        tok = enc.load()

        # -- encode and pack -------------------------------------------------------------------------------
        tw = TokenShardWriter(
            out_dir,
            vocab_size=tok.get_vocab_size(with_added_tokens=True),
            seq_len=opts.seq_len,
            packed=opts.pack,
            shard_tokens=io.shard_tokens,
            shard=spec,
            claim=claim,
        )
        if not _same_file(opts.tokenizer, out_dir / "tokenizer.json"):
            tw.set_tokenizer(tok)  # goes in as DIR/tokenizer.json with the shards
        with progress(enc.name, unit="docs", stats=stats) as bar:
            for _rec, ids in enc.encode(encode_iter):
                tw.add(ids)
                stats.records_out = enc.documents
                bar.advance()
        tw.close()
        if enc.documents == 0:
            raise DataError(
                "no documents to tokenize", source=", ".join(source.inputs), hint="check the input and --field"
            )
        stats.records_out = enc.documents
        stats.extra["tail_tokens_dropped"] = tw.tail_dropped
        shards = [{k: s[k] for k in ("path", "tokens", "bytes", "sha256")} for s in tw.shards]

        def manifest(path: Path, fields: dict) -> dict:
            return write_manifest(
                path,
                tool=enc.name,
                seed=io.seed,
                inputs=source.inputs,
                stats=stats,
                outputs=shards,
                shard=str(spec) if spec else None,
                extra={**fields, **enc.manifest()},
            )

        return tw.commit(manifest)
    except BaseException:
        if tw is not None:
            tw.abort()  # removes what this run wrote; the directory's previous output stays
        else:
            claim.release()
        raise
    finally:
        if spool is not None:
            spool.close()
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)


def _same_file(tokenizer: str | None, dst: Path) -> bool:
    """Whether --tokenizer names DIR/tokenizer.json itself (tokenize --tokenizer tok/tokenizer.json -o tok/)."""
    if not tokenizer or not dst.exists():
        return False
    src = Path(tokenizer)
    src = src / "tokenizer.json" if src.is_dir() else src
    return src.exists() and src.resolve() == dst.resolve()


def _check_vocab_size(vocab_size: int) -> None:
    if vocab_size < 256 + 1:
        raise UsageError(
            f"--vocab-size {vocab_size} is too small",
            hint="byte-level BPE needs at least 257 (256 bytes + end-of-text)",
        )
