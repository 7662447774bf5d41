#!/usr/bin/env bash
#SBATCH --job-name=grow-phi1
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=4-00:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --requeue
#
# Weight reuse: grow a trained phi-1-small (350M) into phi-1's shape (1.3B) and keep training it, instead of
# training phi-1 from random init.
#
#   phi-1-small: 20 layers, d_model 1024, 16 heads of 64, MLP 4096
#   phi-1      : 24 layers, d_model 2048, 32 heads of 64, MLP 8192
#
#   width : tiled x2 (function-preserving: each weight repeated and rescaled, head_dim 64 kept, so the new heads
#           are copies of the old ones), plus --noise: zero-sum noise across the copies so they can diverge
#           without changing the function
#   depth : 20 -> 24 layers by interpolation, new layer i <- old layer round(i * 20 / 24) (not function-
#           preserving: four layers appear twice; use DEPTH=identity for zeroed copies that keep the function)
#
# Usage:
#   examples/grow_phi1_small_to_phi1.sh                         # SRC=runs/phi-1-small -> grown/phi-1, then train
#   mkdir -p logs && SRC=runs/phi-1-small/checkpoints/step-024000 sbatch examples/grow_phi1_small_to_phi1.sh
#   STEPS=grow examples/grow_phi1_small_to_phi1.sh             # only grow: a CPU is enough (peak 7.8 GB RAM with
#                                                               # --check, ~2 min; docs/performance.md, ## grow)
#
# env: SRC, DST (grown/phi-1), D_MODEL (2048), HEADS (32), D_MLP (8192), LAYERS (24), DEPTH (interpolate),
#      NOISE (0.01), DATA (tok/), RUN (runs/phi-1-grown),
#      NPROC (GPUs; default all visible), MAX_STEPS (12000), LR (1e-3), TRAIN_ARGS (extra train flags),
#      STEPS ("grow train")
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
SRC=${SRC:-runs/phi-1-small}
DST=${DST:-grown/phi-1}
D_MODEL=${D_MODEL:-2048}; HEADS=${HEADS:-32}; D_MLP=${D_MLP:-8192}; LAYERS=${LAYERS:-24}
DEPTH=${DEPTH:-interpolate}
NOISE=${NOISE:-0.01}
DATA=${DATA:-tok/}
RUN=${RUN:-runs/phi-1-grown}
MAX_STEPS=${MAX_STEPS:-12000}   # 12,000 x 1024 x 2048 = 25B tokens: half of phi-1-base's ~50B (a choice, not the paper's)
LR=${LR:-1e-3}
STEPS=${STEPS:-"grow train"}
read -r -a EXTRA <<< "${TRAIN_ARGS:-}"
export PHITOOLS_VERBOSE=${PHITOOLS_VERBOSE:-1}

if [[ " $STEPS " == *" grow "* ]]; then
  # --check compares the grown model's logits with the source's on random inputs (exact for width-only growth;
  # with interpolated depth the difference is expected and printed, not an error). Nothing is overwritten
  # unless --overwrite is given.
  phitools grow "$SRC" -o "$DST" --d-model "$D_MODEL" --heads "$HEADS" --d-mlp "$D_MLP" --layers "$LAYERS" --depth "$DEPTH" \
    --noise "$NOISE" --seed 1 --check
fi

if [[ " $STEPS " == *" train "* ]]; then
  NPROC=${NPROC:-${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}}
  if [ "${NPROC:-0}" -lt 1 ]; then echo "no GPUs visible: set NPROC (and TRAIN_ARGS=--device cpu to try it on CPU)" >&2; exit 2; fi
  # The shape, vocabulary and dropout come from the grown checkpoint (--init takes no model overrides). A fresh
  # warmup: the optimizer state does not carry over. Same global batch and sequence length as phi-1-small;
  # 1.3B params x 16 bytes = 21 GB of weights + grads + AdamW state per GPU under DDP, so micro-batch 4 on
  # 80 GB GPUs (use fsdp for 40 GB GPUs).
  torchrun --standalone --nproc-per-node "$NPROC" -m phitools train --data "$DATA" --init "$DST" \
    --seq-len 2048 --batch-size 1024 --micro-batch-size 4 --max-steps "$MAX_STEPS" --lr "$LR" --warmup-steps 750 \
    --schedule linear --weight-decay 0.1 --eval-every 500 --eval-batches 4 --save-every 1000 --log-every 10 \
    --parallel ddp --resume -o "$RUN" "${EXTRA[@]}"
fi
