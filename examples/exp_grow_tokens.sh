#!/usr/bin/env bash
# Weight reuse, counted in tokens: how many tokens does the grown model need to reach the loss the same shape
# reaches from scratch? Extends examples/grow_experiment.sh (which compares the two at an equal token budget,
# where the grown continuation stops before reaching scratch's final loss).
#
#   1. run examples/grow_experiment.sh into GROW_DIR unless it is already there
#   2. continue each grown model for LONG_STEPS steps (3x the experiment's continuation) with the experiment's
#      own settings: the grown run's recorded train_config.json, only --max-steps (and paths) changed
#   3. report the tokens (and FLOPs, counting the small model's too) at which each grown run first reaches the
#      scratch run's final eval loss, and the tokens at which scratch reaches each grown run's losses:
#      $DOCS/exp_grow.png, $DOCS/exp_grow.md
#
# Usage: examples/exp_grow_tokens.sh [GROW_DIR] [WORKDIR]   (env: LONG_STEPS (450), VARIANTS ("identity"), THREADS, DOCS)
set -euo pipefail
G=${1:-grow-experiment}
W=${2:-$G}
LONG_STEPS=${LONG_STEPS:-450}
VARIANTS=${VARIANTS:-identity}
DOCS=${DOCS:-docs}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
PY=${PYTHON:-python}
mkdir -p "$W" "$DOCS"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }
T0=$(date +%s)

if [ ! -f "$G/scratch/model.safetensors" ]; then
  step "run examples/grow_experiment.sh $G first"
  VARIANTS="$VARIANTS" DOCS="$DOCS" "$HERE/grow_experiment.sh" "$G"
fi

for v in $VARIANTS; do
  step "continue grown-$v for $LONG_STEPS steps -> $W/long-grown-$v"
  # same lr, schedule shape, batch, seed and eval windows as $G/train-grown-$v: its resolved config, with a longer run
  phitools train --config "$G/train-grown-$v/train_config.json" --data "$G/tok" --init "$G/grown-$v" \
    --max-steps "$LONG_STEPS" --resume --quiet -o "$W/long-grown-$v"
done

step "table and plot -> $DOCS/exp_grow.md, $DOCS/exp_grow.png"
WALL=$(( $(date +%s) - T0 ))
$PY "$HERE/exp_report.py" grow "$G" --long "$W" --png "$DOCS/exp_grow.png" --md "$DOCS/exp_grow.md" --wall "$WALL" \
  --command "LONG_STEPS=$LONG_STEPS VARIANTS=\"$VARIANTS\" examples/exp_grow_tokens.sh $G $W"
step "done in ${WALL}s"
