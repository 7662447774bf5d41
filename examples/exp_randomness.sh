#!/usr/bin/env bash
# Does injected randomness make synthetic data more diverse? A small-scale test of the phi-1 / TinyStories claim.
#
# For each kind (exercise, textbook), two arms with the same model, sampling settings, --seed and --n:
#   random : draws per record from a randomness spec (exercise: examples/spec.toml, 6 dimensions;
#            textbook: examples/topics.txt + the kind's default audience and style lists)
#   fixed  : one value per dimension (examples/spec_fixed.toml, examples/spec_fixed_textbook.toml): every record
#            gets the same prompt and differs only by its sampling seed
# then `phitools stats` on each: distinct-1/2/3, repeated openings, near-duplicate rate (MinHash, Jaccard >= 0.8).
# Writes $DOCS/exp_randomness.png and $DOCS/exp_randomness.md.
#
# Without --api-base (the default here) the model is the embedded SmolLM2-135M on CPU: ~10 tokens/s on two
# cores, so N and MAX_TOKENS are small (16 records of at most 96 tokens per arm: ~4 minutes per arm). To run it
# against a real model:  SYNTH_ARGS="--api-base http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
#   --concurrency 32" N=500 MAX_TOKENS=512 examples/exp_randomness.sh
#
# Usage: examples/exp_randomness.sh [WORKDIR]   (env: N (16), MAX_TOKENS (96), KINDS ("exercise textbook"),
#                                                SEED (1), SYNTH_ARGS, THREADS, DOCS (docs))
set -euo pipefail
W=${1:-randomness-experiment}
N=${N:-16}; MAX_TOKENS=${MAX_TOKENS:-96}; KINDS=${KINDS:-"exercise textbook"}; SEED=${SEED:-1}; DOCS=${DOCS:-docs}
read -r -a EXTRA <<< "${SYNTH_ARGS:-}"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
PY=${PYTHON:-python}
mkdir -p "$W" "$DOCS"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }
T0=$(date +%s)

for kind in $KINDS; do
  case $kind in
    exercise) random=(--spec "$HERE/spec.toml"); fixed=(--spec "$HERE/spec_fixed.toml") ;;
    textbook) random=(--kind textbook --topics "$HERE/topics.txt"); fixed=(--spec "$HERE/spec_fixed_textbook.toml") ;;
    *) echo "unknown kind $kind (exercise or textbook)" >&2; exit 2 ;;
  esac
  for arm in random fixed; do
    if [ "$arm" = random ]; then args=("${random[@]}"); else args=("${fixed[@]}"); fi
    out="$W/synth-$kind-$arm.jsonl"
    # the prompts each record gets (no model call): how many distinct prompts each arm really sends
    phitools synth "${args[@]}" --n "$N" --seed "$SEED" --dry-run --quiet > "$W/prompts-$kind-$arm.jsonl"
    if [ ! -f "$out" ]; then
      step "synth $kind, $arm prompt: $N records, --max-tokens $MAX_TOKENS -> $out"
      phitools synth "${args[@]}" --n "$N" --seed "$SEED" --max-tokens "$MAX_TOKENS" "${EXTRA[@]}" \
        --failed "$W/failed-$kind-$arm.jsonl" -o "$out"
    fi
    step "stats $out"
    phitools stats "$out" -o "$W/stats-$kind-$arm.json" --quiet
  done
done

step "plot and table -> $DOCS/exp_randomness.png, $DOCS/exp_randomness.md"
WALL=$(( $(date +%s) - T0 ))
$PY "$HERE/exp_report.py" randomness "$W" --png "$DOCS/exp_randomness.png" --md "$DOCS/exp_randomness.md" --wall "$WALL" \
  --command "N=$N MAX_TOKENS=$MAX_TOKENS KINDS=\"$KINDS\" SEED=$SEED examples/exp_randomness.sh $W"
step "done in ${WALL}s"
