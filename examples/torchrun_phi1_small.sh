#!/usr/bin/env bash
#SBATCH --job-name=phi1-small
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=4-00:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --requeue
#
# Train phi-1-small (350M: 20 layers, d 1024, 16 heads, seq 2048, global batch 1024, bf16) on many GPUs with
# torchrun, data parallel (DDP) or fully sharded (FSDP2). The hyper-parameters are in
# examples/train_phi1_small.toml; the same file gives the same run on 8 GPUs or 64, because --batch-size is the
# global batch and gradient accumulation is derived (docs/train.md).
#
# Usage:
#   examples/torchrun_phi1_small.sh ddp                 # this node, all its GPUs (no Slurm needed)
#   examples/torchrun_phi1_small.sh fsdp                # the same with FSDP2: parameters, grads, AdamW state sharded
#   mkdir -p logs && sbatch examples/torchrun_phi1_small.sh ddp    # one node under Slurm (logs/ must exist)
#   sbatch --nodes=4 examples/torchrun_phi1_small.sh fsdp   # 4 nodes x 8 GPUs: one torchrun per node (srun),
#                                                           # c10d rendezvous on the first node
#
# env: DATA (token dir from `phitools tokenize -o`, on a shared filesystem), RUN (run dir), CONFIG,
#      NPROC (GPUs per node; default: all visible), PORT (29500), TRAIN_ARGS (extra `phitools train` flags)
#
# Which one: DDP keeps a full copy of the model, gradients and AdamW state on every GPU (350M params x 16 bytes
# = 5.7 GB before activations): fine for phi-1-small and phi-1 on 40/80 GB GPUs, and the fastest. FSDP shards
# those 16 bytes/param across GPUs; use it for larger models or small GPUs. Checkpoints are the same files
# either way, so a run can resume under the other.
#
# Requeue-safe: --resume continues from the newest checkpoint (and starts fresh when there is none), so a
# preempted or timed-out job resubmitted with the same command goes on exactly where it stopped.
set -euo pipefail
MODE=${1:-ddp}
case $MODE in ddp|fsdp) ;; *) echo "usage: $0 [ddp|fsdp]" >&2; exit 2 ;; esac
cd "${SLURM_SUBMIT_DIR:-.}"
DATA=${DATA:-tok/}
RUN=${RUN:-runs/phi-1-small}
CONFIG=${CONFIG:-examples/train_phi1_small.toml}
PORT=${PORT:-29500}
NPROC=${NPROC:-${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}}
if [ "${NPROC:-0}" -lt 1 ]; then echo "no GPUs visible: set NPROC (and TRAIN_ARGS=--device cpu to try it on CPU)" >&2; exit 2; fi
read -r -a EXTRA <<< "${TRAIN_ARGS:-}"
export PHITOOLS_VERBOSE=${PHITOOLS_VERBOSE:-1}   # one plain log line per logged step (no TTY in batch jobs)

# every rank runs this; only rank 0 writes RUN/ (metrics.jsonl, checkpoints, manifest.json)
TRAIN=(-m phitools train --data "$DATA" --config "$CONFIG" --parallel "$MODE" --resume -o "$RUN" "${EXTRA[@]}")

NNODES=${SLURM_NNODES:-1}
if [ "$NNODES" -gt 1 ]; then
  # multi-node: one torchrun per node; they meet at the first node of the allocation
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
    torchrun --nnodes "$NNODES" --nproc-per-node "$NPROC" \
      --rdzv-backend c10d --rdzv-endpoint "$head:$PORT" --rdzv-id "${SLURM_JOB_ID:-phi1small}" \
      "${TRAIN[@]}"
else
  # one node: --standalone picks a free port, so several jobs can share a machine
  torchrun --standalone --nproc-per-node "$NPROC" "${TRAIN[@]}"
fi
