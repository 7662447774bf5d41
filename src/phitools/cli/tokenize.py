"""`phitools tokenize`: text records -> packed token shards (or token-id records on stdout)."""

from __future__ import annotations

import typer

from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.steps import tokenize as T
from phitools.steps.tokenize import TokenizeIO, TokenizeOptions


@command("tokenize")
def tokenize(io: TokenizeIO, opts: TokenizeOptions, run: RunOptions) -> None:
    """Encode text records, append end-of-text, and pack them into token shards that `train` memory-maps.

    With -o DIR: writes DIR/tokenizer.json, DIR/tokens-*.bin (raw little-endian uint16/uint32 ids) and
    DIR/manifest.json. Without -o: writes each record with a `tokens` list to stdout.

    Examples:

        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 -o tok/
        phitools tokenize corpus/ --tokenizer tok/tokenizer.json --seq-len 512 -o tok2/
        cat corpus/*.jsonl.zst | phitools tokenize --tokenizer tok/tokenizer.json -o tok3/
        phitools synth --topics topics.txt | phitools tokenize -o tok/     # the bundled stdlib-8k tokenizer
    """
    m = T.tokenize(io, opts, progress=console.progress)
    if io.directory is not None:
        console.info(
            f"tokenize: {m['documents']:,} documents -> {m['tokens']:,} tokens in {len(m['shards'])} shard(s) "
            f"at {io.directory}"
        )


def register(app: typer.Typer) -> None:
    app.command("tokenize")(tokenize)
