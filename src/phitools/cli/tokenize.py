"""`phitools tokenize`: text records -> packed token shards (or token-id records on stdout)."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from phitools.cli.common import (
    AllowPartial,
    Inputs,
    Limit,
    Output,
    ProgressEvery,
    Quiet,
    Seed,
    Shard,
    SkipBad,
    handle_errors,
    setup,
)
from phitools.errors import DataError, UsageError
from phitools.records import dumps_record
from phitools.runtime.console import info, progress
from phitools.shards import RecordReader, RecordWriter, Stats, ownership, parse_shard, write_manifest
from phitools.shards.tokens import TokenShardWriter, token_claim
from phitools.shards.write import output_kind


def _texts(records, field: str):
    for r in records:
        t = r.get(field)
        if isinstance(t, str):
            yield t


@handle_errors("tokenize")
def tokenize(
    inputs: Inputs = None,
    output: Output = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="A tokenizer.json (or a directory holding one), a Hugging Face Hub id (microsoft/phi-1, needs internet), or 'stdlib-8k'. Default: the bundled stdlib-8k byte-level BPE (8192 ids), unless --train-tokenizer.",
            show_default=False,
        ),
    ] = None,
    train_tokenizer: Annotated[
        bool,
        typer.Option(
            "--train-tokenizer", help="Train a byte-level BPE on the input first (saved as DIR/tokenizer.json)."
        ),
    ] = False,
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="Vocabulary size for --train-tokenizer.")] = 8192,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Row length for packing (phi-1 used 2048).", min=1)] = 2048,
    pack: Annotated[
        bool,
        typer.Option(
            "--pack/--no-pack",
            help="Pack into whole --seq-len rows (the tail shorter than a row is dropped and counted), or keep every token.",
        ),
    ] = True,
    field: Annotated[str, typer.Option("--field", help="Record field holding the text.")] = "text",
    eot: Annotated[
        str | None,
        typer.Option(
            "--eot", help="End-of-text token (default: <|endoftext|> or the tokenizer's EOS).", show_default=False
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Encoding threads (default: all cores). Output is identical for any value.",
            show_default=False,
        ),
    ] = 0,
    shard_size: Annotated[
        str, typer.Option("--shard-size", help="Tokens per .bin shard (a number, or with K/M/G).")
    ] = "100M",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per encode batch.", min=1)] = 1024,
    shard: Shard = None,
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Encode text records, append end-of-text, and pack them into token shards that `train` memory-maps.

    With -o DIR: writes DIR/tokenizer.json, DIR/tokens-*.bin (raw little-endian uint16/uint32 ids) and
    DIR/manifest.json. Without -o: writes each record with a `tokens` list to stdout.

    Examples:

        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/
        phitools tokenize corpus/ --tokenizer tok/tokenizer.json --seq-len 512 -o tok2/
        cat corpus/*.jsonl.zst | phitools tokenize --tokenizer tok/tokenizer.json -o tok3/
        phitools synth --topics topics.txt | phitools tokenize -o tok/     # the bundled stdlib-8k tokenizer
    """
    setup(quiet, progress_every)
    from phitools.steps import tokenize as T

    T.set_threads(workers or os.cpu_count() or 1)
    if train_tokenizer and tokenizer:
        raise UsageError("give either --tokenizer or --train-tokenizer, not both")
    if not train_tokenizer and not tokenizer:
        tokenizer = T.DEFAULT_TOKENIZER
    kind = output_kind(output)
    if train_tokenizer and kind != "dir":
        raise UsageError("--train-tokenizer needs -o DIR", hint="the trained tokenizer is saved as DIR/tokenizer.json")
    if kind == "file":
        raise UsageError(
            f"-o {output}: tokenize writes a directory of token shards",
            hint="use -o DIR, or no -o for JSONL token records on stdout",
        )
    spec = parse_shard(shard)
    if train_tokenizer and spec and spec.count > 1:
        raise UsageError(
            "--train-tokenizer cannot be combined with --shard",
            hint="train the tokenizer once, then run the shards with --tokenizer DIR/tokenizer.json",
        )
    from phitools.shards.spec import parse_size

    recs_n, bytes_n = parse_size(shard_size)
    shard_tokens = recs_n if recs_n is not None else max(1, bytes_n or 1)  # a unit here scales a token count

    stats = Stats()
    out_dir = Path(output) if kind == "dir" else None
    reader = RecordReader(
        inputs,
        shard=spec,
        skip_bad=skip_bad,
        required=(field,),
        str_fields=(field,),
        stats=stats,
        allow_partial=allow_partial,
    )

    def limited(it):
        return itertools.islice(it, limit) if limit is not None else it

    claim = token_claim(out_dir, spec) if out_dir is not None else None  # one writer per slice, from the start
    spool_dir = None
    tw = None
    try:
        # -- the tokenizer ----------------------------------------------------------------------------
        if train_tokenizer:
            assert out_dir is not None
            source_is_stdin = "<stdin>" in reader.inputs
            if source_is_stdin:
                # stdin can be read once: spool it (compressed) while the trainer consumes it
                spool_dir = ownership.tmp_path(out_dir / "spool")
                spool_dir.mkdir()
                spool = spool_dir / "spool.jsonl.zst"
                import zstandard

                fh = open(spool, "wb")
                zw = zstandard.ZstdCompressor(level=1).stream_writer(fh)

                def spooled():
                    for r in limited(iter(reader)):
                        zw.write(dumps_record(r))
                        yield r

                with progress("training tokenizer", unit="docs") as bar:

                    def counted(it):
                        for t in it:
                            bar.advance()
                            yield t

                    tok = T.train_tokenizer(counted(_texts(spooled(), field)), vocab_size)
                zw.flush(zstandard.FLUSH_FRAME)
                zw.close()
                encode_reader = RecordReader([str(spool)], required=(field,), str_fields=(field,), stats=Stats())
                encode_iter = iter(encode_reader)
            else:
                with progress("training tokenizer", unit="docs") as bar:

                    def counted2(it):
                        for t in it:
                            bar.advance()
                            yield t

                    tok = T.train_tokenizer(counted2(_texts(limited(iter(reader)), field)), vocab_size)
                stats.records_in = 0
                stats.skipped_bad.clear()
                reader2 = RecordReader(
                    inputs,
                    shard=spec,
                    skip_bad=skip_bad,
                    required=(field,),
                    str_fields=(field,),
                    stats=stats,
                    allow_partial=allow_partial,
                )
                encode_iter = limited(iter(reader2))
            tokenizer_source = "trained"
        else:
            tok = T.load_tokenizer(tokenizer)
            encode_iter = limited(iter(reader))
            tokenizer_source = str(tokenizer)
        eot_id = T.eot_id(tok, eot)
        vocab = tok.get_vocab_size(with_added_tokens=True)
        sha = T.tokenizer_sha256(tok)

        # -- encode ---------------------------------------------------------------------------------
        if out_dir is None:
            with RecordWriter(None, tool="tokenize", stats=stats, seed=seed) as w:
                with progress("tokenize", unit="docs", stats=stats) as bar:
                    for rec, ids in T.encode_records(
                        tok, _checked(encode_iter, field), eot=eot_id, batch_size=batch_size, field=field
                    ):
                        out = dict(rec)
                        out["tokens"] = ids.tolist()
                        w.write(out)
                        bar.advance()
            return

        tw = TokenShardWriter(
            out_dir, vocab_size=vocab, seq_len=seq_len, packed=pack, shard_tokens=shard_tokens, shard=spec, claim=claim
        )
        if not _same_file(tokenizer, out_dir / "tokenizer.json"):
            tw.set_tokenizer(tok)  # goes in as DIR/tokenizer.json with the shards
        docs = 0
        text_bytes = 0
        with progress("tokenize", unit="docs", stats=stats) as bar:
            for rec, ids in T.encode_records(
                tok, _checked(encode_iter, field), eot=eot_id, batch_size=batch_size, field=field
            ):
                tw.add(ids)
                docs += 1
                stats.records_out = docs
                text_bytes += len(rec[field])
                bar.advance()
        tw.close()
        if docs == 0:
            raise DataError(
                "no documents to tokenize", source=", ".join(reader.inputs), hint="check the input and --field"
            )
        stats.records_out = docs
        stats.extra["tail_tokens_dropped"] = tw.tail_dropped

        def manifest(path, fields):
            return write_manifest(
                path,
                tool="tokenize",
                seed=seed,
                inputs=reader.inputs,
                stats=stats,
                outputs=[
                    {"path": s["path"], "tokens": s["tokens"], "bytes": s["bytes"], "sha256": s["sha256"]}
                    for s in tw.shards
                ],
                shard=str(spec) if spec else None,
                extra={
                    **fields,
                    "vocab_size": vocab,
                    "eot_id": eot_id,
                    "documents": docs,
                    "text_chars": text_bytes,
                    "tokenizer_source": tokenizer_source,
                    "tokenizer_sha256": sha,
                },
            )

        tw.commit(manifest)
        info(f"tokenize: {docs:,} documents -> {tw.tokens:,} tokens in {len(tw.shards)} shard(s) at {out_dir}")
    except BaseException:
        if tw is not None:
            tw.abort()  # removes what this run wrote; the directory's previous output stays
        elif claim is not None:
            claim.release()
        raise
    finally:
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)


def _same_file(tokenizer: str | None, dst: Path) -> bool:
    """Whether --tokenizer names DIR/tokenizer.json itself (tokenize --tokenizer tok/tokenizer.json -o tok/)."""
    if not tokenizer or not dst.exists():
        return False
    src = Path(tokenizer)
    src = src / "tokenizer.json" if src.is_dir() else src
    return src.exists() and src.resolve() == dst.resolve()


def _checked(records, field: str):
    for r in records:
        if not isinstance(r.get(field), str):
            raise DataError(
                f"record {r.get('id', '?')!r}: field {field!r} is not a string",
                hint="every record needs a text string; use --field to pick another field",
            )
        yield r


def register(app: typer.Typer) -> None:
    app.command("tokenize")(tokenize)
