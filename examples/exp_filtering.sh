#!/usr/bin/env bash
# Does classifier filtering make better training data? A small-scale test of phi-1's first claim, on CPU.
#
#   1. ingest the standard library's Python files (site-packages excluded)
#   2. label a sample with --backend heuristic (a documented non-LLM scorer; see below why not the local LLM)
#   3. classify train on those labels, classify apply --keep-top 0.5 to the whole corpus  -> "filtered"
#   4. tokenize the unfiltered and the filtered corpus with the same tokenizer (the bundled stdlib-8k)
#   5. train one tiny model on each, same shape, same steps, same batch: the same number of tokens
#   6. measure both (every saved checkpoint) on HumanEval's canonical solutions (prompt + canonical_solution)
#      and on MBPP's reference code: a "textbook quality" probe neither model trained on
#   7. write a plot and a table: $DOCS/exp_filtering.png, $DOCS/exp_filtering.md
#
# Why the heuristic labeller: the embedded SmolLM2-135M cannot judge code (docs/label.md: it gives a tutorial
# and obfuscated code the same score), so a classifier trained on its labels would filter at random. The heuristic scores
# documentation, comments, names, size and doctests -- a crude stand-in for what phi-1 asked GPT-4. For the
# real experiment, replace step 2 with `phitools label ... --api-base URL --model M` (docs/recipe.md).
#
# Usage: examples/exp_filtering.sh [WORKDIR]
#   env: STEPS (400), BATCH (16), SEQ (128), SEEDS ("1 2"), KEEP (0.5), SAMPLE (800), THREADS, DOCS (docs),
#        PHITOOLS_DATA (a folder with newer humaneval/HumanEval.jsonl and mbpp/mbpp.jsonl copies; by default the
#        copies shipped with phitools are used)
set -euo pipefail
W=${1:-filter-experiment}
STEPS=${STEPS:-400}; BATCH=${BATCH:-16}; SEQ=${SEQ:-128}; SEEDS=${SEEDS:-"1 2"}
KEEP=${KEEP:-0.5}; SAMPLE=${SAMPLE:-800}; DOCS=${DOCS:-docs}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
PY=${PYTHON:-python}
STDLIB=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$W" "$DOCS"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }
T0=$(date +%s)

if [ ! -f "$W/corpus/manifest.json" ]; then
  step "1. ingest the standard library's .py files -> $W/corpus/"
  phitools ingest "$STDLIB" --exclude 'site-packages/*' --include '*.py' --dedup -o "$W/corpus/" --quiet
fi

if [ ! -f "$W/filtered/manifest.json" ]; then
  step "2. label a sample of $SAMPLE files (heuristic) -> $W/labeled/"
  phitools label "$W/corpus/" --backend heuristic --sample "$SAMPLE" --seed 1 -o "$W/labeled/" --quiet
  step "3. classify train -> $W/clf/ ; classify apply --keep-top $KEEP -> $W/filtered/"
  phitools classify train "$W/labeled/" --features hash --estimator lgbm --seed 1 -o "$W/clf/" --quiet
  phitools classify apply "$W/clf/" "$W/corpus/" --keep-top "$KEEP" --rejects "$W/rejects.jsonl.zst" -o "$W/filtered/" --quiet
fi

step "4. tokenize both corpora and the probes with the same tokenizer (bundled stdlib-8k)"
[ -f "$W/tok-unfiltered/manifest.json" ] || phitools tokenize "$W/corpus/" --seq-len "$SEQ" -o "$W/tok-unfiltered/" --quiet
[ -f "$W/tok-filtered/manifest.json" ] || phitools tokenize "$W/filtered/" --seq-len "$SEQ" -o "$W/tok-filtered/" --quiet
# The probes: one record per problem. HumanEval: prompt + canonical solution (the function as a textbook would
# show it); MBPP: the reference code of the 500 test problems, with its CRLF line endings and trailing spaces
# normalised (an artifact of the dataset's files that would otherwise dominate the loss). Loaded by eval's own
# benchmark loader.
$PY - "$W" <<'PY'
import os
import sys
from phitools.eval.benchmarks import load_benchmark
from phitools.records import dumps_record
w = sys.argv[1]
def clean(code):
    return "\n".join(line.rstrip() for line in code.replace("\r\n", "\n").split("\n")).strip("\n") + "\n"
for name, text in (("humaneval", lambda p: p.prompt + p.reference), ("mbpp", lambda p: clean(p.reference))):
    try:
        bench = load_benchmark(name, allow_download=False)
    except Exception as e:  # MBPP is optional: say so and go on
        print(f"probe {name} skipped: {e}", file=sys.stderr)
        continue
    if os.path.exists(f"{w}/probe-{name}.jsonl"):
        continue
    with open(f"{w}/probe-{name}.jsonl", "wb") as f:
        for p in bench.problems:
            f.write(dumps_record({"id": p.task_id, "text": text(p)}))
PY
PROBES=()
for probe in humaneval mbpp; do
  [ -f "$W/probe-$probe.jsonl" ] || continue
  PROBES+=("$probe")
  # --no-pack keeps every token of the probe
  [ -f "$W/tok-$probe/manifest.json" ] || phitools tokenize "$W/probe-$probe.jsonl" --seq-len "$SEQ" --no-pack -o "$W/tok-$probe/" --quiet
done

EVERY=$((STEPS / 4))
for seed in $SEEDS; do
  for arm in unfiltered filtered; do
    run="$W/runs/$arm-s$seed"
    step "5. train $arm, seed $seed: $STEPS steps x $BATCH x $SEQ tokens -> $run"
    # identical flags for both arms; only --data differs. --resume: a re-run continues (or skips) finished runs
    phitools train --data "$W/tok-$arm/" --preset tiny --seq-len "$SEQ" --batch-size "$BATCH" --max-steps "$STEPS" \
      --lr 2e-3 --seed "$seed" --eval-every "$EVERY" --eval-batches 4 --save-every "$EVERY" --resume --quiet -o "$run"
    step "6. probe losses of every checkpoint of $run"
    for ck in "$run"/checkpoints/step-*; do
      for probe in "${PROBES[@]}"; do
        out="$W/probe-loss/$arm-s$seed/$(basename "$ck")-$probe"
        [ -f "$out/perplexity.json" ] || phitools eval "$ck" --perplexity "$W/tok-$probe/" --device cpu -o "$out" --quiet
      done
    done
  done
done

step "7. plot and table -> $DOCS/exp_filtering.png, $DOCS/exp_filtering.md"
WALL=$(( $(date +%s) - T0 ))
$PY "$HERE/exp_report.py" filtering "$W" --png "$DOCS/exp_filtering.png" --md "$DOCS/exp_filtering.md" --wall "$WALL" \
  --command "STEPS=$STEPS BATCH=$BATCH SEQ=$SEQ SEEDS=\"$SEEDS\" KEEP=$KEEP SAMPLE=$SAMPLE examples/exp_filtering.sh $W"
step "done in ${WALL}s"
