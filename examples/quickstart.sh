#!/usr/bin/env bash
# The whole phitools recipe, offline on a CPU, on the embedded default corpus (this Python's standard library):
#
#   ingest -> label -> classify train/apply -> synth -> decontam -> tokenize -> train -> grow -> train on -> eval
#
# Every step leaves its shards and manifest.json in $RUN, so each one can be inspected and re-run.
# Scale it up by changing the knobs below (see docs/recipe.md): a real corpus, a capable labeller/writer
# behind --api-base, bigger presets on GPUs.
set -euo pipefail

RUN=${RUN:-quickstart-run}
LABEL_LLM_SAMPLE=${LABEL_LLM_SAMPLE:-4}    # records rated by the embedded LLM (SmolLM2-135M: plumbing, not judgement)
LABEL_SAMPLE=${LABEL_SAMPLE:-400}          # records rated for the classifier (transparent heuristic rater, see below)
SYNTH_N=${SYNTH_N:-2}                      # textbook sections and exercises written by the embedded LLM (each)
SYNTH_TOKENS=${SYNTH_TOKENS:-64}
TRAIN_STEPS=${TRAIN_STEPS:-150}
GROW_STEPS=${GROW_STEPS:-100}
EVAL_PROBLEMS=${EVAL_PROBLEMS:-5}
LLM=(${LLM_FLAGS:---backend local})        # e.g. LLM_FLAGS="--api-base http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct"

STDLIB=${CORPUS:-$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}  # CORPUS=DIR: another tree
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUN"
START=$(date +%s)
step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$(( $(date +%s) - START ))" "$*" >&2; }

step "1/10 ingest the standard library -> $RUN/corpus/"
phitools ingest "$STDLIB" --exclude 'site-packages/*' --exclude 'test/*' --exclude 'tests/*' --dedup -o "$RUN/corpus/"

step "2/10 label: the embedded LLM rates $LABEL_LLM_SAMPLE files (proves the plumbing; a 135M model has no judgement)"
phitools label "$RUN/corpus/" --sample "$LABEL_LLM_SAMPLE" --rubric code "${LLM[@]}" --max-tokens 8 --seed 1 -o "$RUN/labeled-llm/"
# The classifier needs labels with signal. Offline we use the transparent heuristic rater (every record it
# scores says label.model = "heuristic"); the real recipe points --api-base at a capable model instead.
phitools label "$RUN/corpus/" --sample "$LABEL_SAMPLE" --backend heuristic --seed 1 -o "$RUN/labeled/"

step "3/10 classify: learn the labels, keep the top half of the corpus"
phitools classify train "$RUN/labeled/" --features hash --estimator lgbm --seed 1 -o "$RUN/clf/"
phitools classify apply "$RUN/clf/" "$RUN/corpus/" --keep-top 0.5 --rejects "$RUN/rejects.jsonl.zst" -o "$RUN/filtered/"

step "4/10 synth: $SYNTH_N textbook sections and $SYNTH_N exercises from examples/topics.txt"
phitools synth --topics "$HERE/topics.txt" --kind textbook --n "$SYNTH_N" --max-tokens "$SYNTH_TOKENS" "${LLM[@]}" --seed 1 -o "$RUN/synth-textbook/"
phitools synth --spec "$HERE/spec.toml" --kind exercise --n "$SYNTH_N" --max-tokens "$SYNTH_TOKENS" "${LLM[@]}" --seed 1 -o "$RUN/synth-exercise/" \
  || echo "   (no exercise from the small model parsed; continuing with textbooks only)" >&2

step "5/10 decontam: drop anything overlapping HumanEval or MBPP (both ship with phitools: offline)"
SYNTH_DIRS=()
for d in "$RUN/synth-textbook" "$RUN/synth-exercise"; do [ -f "$d/manifest.json" ] && SYNTH_DIRS+=("$d/"); done
phitools decontam --benchmark humaneval --benchmark mbpp --drop "$RUN/filtered/" "${SYNTH_DIRS[@]}" -o "$RUN/clean/"

step "6/10 tokenize: train a byte-level BPE, pack 256-token rows"
phitools tokenize "$RUN/clean/" --train-tokenizer --vocab-size 4096 --seq-len 256 -o "$RUN/tok/"

step "7/10 train a tiny phi model ($TRAIN_STEPS steps)"
phitools train --data "$RUN/tok/" --preset tiny --seq-len 256 --batch-size 16 --max-steps "$TRAIN_STEPS" \
  --lr 3e-3 --eval-every 50 --save-every 50 --seed 7 -o "$RUN/runs/tiny"

step "8/10 grow it: 2x width (tiled) and 2 -> 4 layers (identity copies): function-preserving, --check shows it"
phitools grow "$RUN/runs/tiny" --d-model 256 --layers 4 --depth identity --check -o "$RUN/runs/grown-init" --overwrite

step "9/10 train the grown model on ($GROW_STEPS steps)"
phitools train --data "$RUN/tok/" --init "$RUN/runs/grown-init" --seq-len 256 --batch-size 16 --max-steps "$GROW_STEPS" \
  --lr 1e-3 --eval-every 50 --save-every 50 --seed 8 -o "$RUN/runs/grown"

step "10/10 eval: HumanEval pass@1 on $EVAL_PROBLEMS problems (sandboxed)"
phitools eval "$RUN/runs/grown" --benchmark humaneval --n-samples 1 --limit "$EVAL_PROBLEMS" --max-tokens 96 -o "$RUN/results/"

python "$HERE/quickstart_summary.py" "$RUN" "$(( $(date +%s) - START ))" >&2
