#!/usr/bin/env bash
# How src/phitools/data/tokenizer-stdlib-8k.json (the default `tokenize` tokenizer) was made:
# a byte-level BPE with 8192 ids (<|endoftext|> = 0) on CPython 3.11's standard library, tests and site-packages excluded.
set -euo pipefail
STDLIB=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
OUT=${1:-/tmp/stdlib-8k}
phitools ingest "$STDLIB" --exclude 'site-packages/*' --exclude 'test/*' --exclude 'tests/*' --dedup \
  | phitools tokenize --train-tokenizer --vocab-size 8192 --workers 1 -o "$OUT"
echo "$OUT/tokenizer.json" >&2
