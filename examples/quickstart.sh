#!/usr/bin/env bash
# The phitools recipe on the embedded default corpus (the running Python's standard library), offline, on CPU.
# Every step leaves its shards and manifest in $RUN so you can inspect (and re-run) each one.
set -euo pipefail
RUN=${RUN:-quickstart-run}
STDLIB=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$RUN"
step() { printf '\n== %s\n' "$*" >&2; }

step "1. ingest the standard library -> $RUN/corpus/"
phitools ingest "$STDLIB" --exclude 'site-packages/*' --dedup -o "$RUN/corpus/"

step "2. tokenize: train a byte-level BPE and pack token shards -> $RUN/tok/"
phitools tokenize "$RUN/corpus/" --train-tokenizer --vocab-size 8192 --seq-len 512 -o "$RUN/tok/"

python - "$RUN" <<'PY' >&2
import json, sys
run = sys.argv[1]
c = json.load(open(f"{run}/corpus/manifest.json"))
t = json.load(open(f"{run}/tok/manifest.json"))
print(f"\nsummary: {c['stats']['records_out']:,} files ingested, {t['tokens']:,} tokens "
      f"(vocab {t['vocab_size']}, seq_len {t['seq_len']}); outputs under {run}/")
PY
