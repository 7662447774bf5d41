#!/usr/bin/env bash
#SBATCH --job-name=phitools
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=06:00:00
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --requeue
#
# The data half of the phi-1 recipe on a Slurm cluster: every stage is an array of N independent tasks, task K
# processing slice K/N of its input (`--shard K/N`, K from 0), all writing into one shared directory under
# distinct names (part-0000K-of-000NN-*.jsonl.zst + manifest-0000K-of-000NN.json). A stage starts when the
# previous one has finished (afterok), and the last job trains on the union of the token shards.
#
#   label (array) -> classify train (1 GPU) -> classify apply (array) -> decontam (array) -> tokenize (array) -> train
#
# Usage, from the directory holding your data (`submit` creates logs/; Slurm does not, so `mkdir -p logs` before
# an sbatch by hand):
#   examples/slurm_label_classify_tokenize.sh submit          # submit the whole chain: 5 arrays of 0-63 + 2 jobs
#   sbatch --array=0-63 examples/slurm_label_classify_tokenize.sh label       # or one stage by hand
#   sbatch --array=0-63 examples/slurm_label_classify_tokenize.sh apply
#   examples/slurm_label_classify_tokenize.sh local           # every stage and task in turn, here (a toy test)
#
# Every setting is an environment variable (sbatch passes the submitting shell's environment by default):
CORPUS=${CORPUS:-corpus/}            # records from `phitools ingest` (e.g. The Stack's Python subset), many files
WORK=${WORK:-work}                   # shared filesystem: every stage's output goes under here
N=${N:-64}                           # tasks per array
LABEL_FRACTION=${LABEL_FRACTION:-0.005}   # phi-1 labelled ~100k files; 0.5% of The Stack's ~20M Python files
# The labeller: any OpenAI-compatible server (vLLM, TGI, a hosted API). The key, if any, is read from the
# variable named by --api-key-env and never written anywhere.
LABEL_ARGS=${LABEL_ARGS:-"--api-base http://labeller:8000/v1 --model Qwen/Qwen2.5-72B-Instruct --concurrency 16"}
# Classifier features: `hash` (CPU, minutes) or `model:CKPT` (mean-pooled hidden states of a Phi checkpoint,
# phi-1's choice: embeddings from a pretrained code model), e.g. model:/models/phi-1 (a Hugging Face Phi dir)
CLF_FEATURES=${CLF_FEATURES:-model:/models/phi-1}
CLF_ARGS=${CLF_ARGS:-"--estimator rf --n-estimators 300 --threads 8"}
# Absolute score cut (on the labeller's 0-5 scale). An absolute threshold makes the union of the N sharded
# outputs exactly the unsharded result; --keep-top F would keep the top F of *each* shard instead.
THRESHOLD=${THRESHOLD:-3}
BENCHMARKS=${BENCHMARKS:-"-b humaneval -b mbpp"}   # decontaminate against these (add --data-dir DIR offline)
# The tokenizer: a tokenizer.json. `submit` saves microsoft/phi-1's there first if it is missing (compute
# nodes are often offline); any tokenizer.json, or stdlib-8k, works too.
TOKENIZER=${TOKENIZER:-$WORK/phi1-tokenizer.json}
SEQ_LEN=${SEQ_LEN:-2048}
TRAIN_SCRIPT=${TRAIN_SCRIPT:-examples/torchrun_phi1_small.sh}
TRAIN_SBATCH=${TRAIN_SBATCH:-"--nodes=1 --gpus-per-node=8 --cpus-per-task=64 --time=4-00:00:00"}
set -euo pipefail

stage=${1:?usage: $0 submit|local|label|classify-train|apply|decontam|tokenize}
K=${SLURM_ARRAY_TASK_ID:-0}
NT=${SLURM_ARRAY_TASK_COUNT:-1}      # tasks in this array (0-based ids: --array=0-63 gives 64)
cd "${SLURM_SUBMIT_DIR:-.}"
mkdir -p logs "$WORK"
echo "stage $stage, task $K/$NT on $(hostname) at $(date -Is)" >&2

case $stage in
  label)
    # --fraction draws the same records whatever N is (a hash of --seed and the record), so the union of the
    # shards is the unsharded sample. One request cache per task: SQLite on a shared filesystem should not be
    # written by 64 processes at once. A requeued task re-sends only what its cache does not hold.
    # shellcheck disable=SC2086  # LABEL_ARGS is a list of flags
    phitools label "$CORPUS" --fraction "$LABEL_FRACTION" --seed 1 $LABEL_ARGS --shard "$K/$NT" \
      --cache "$WORK/cache/label-$K.sqlite" -o "$WORK/labeled/"
    ;;
  classify-train)
    # one job, one GPU (for model: features); the held-out report lands in $WORK/clf/report.json
    # shellcheck disable=SC2086
    phitools classify train "$WORK/labeled/" --features "$CLF_FEATURES" $CLF_ARGS --seed 1 -o "$WORK/clf/"
    ;;
  apply)
    phitools classify apply "$WORK/clf/" "$CORPUS" --threshold "$THRESHOLD" --shard "$K/$NT" \
      --rejects "$WORK/rejects/part-$K.jsonl.zst" -o "$WORK/filtered/"
    ;;
  decontam)
    # shellcheck disable=SC2086
    phitools decontam "$WORK/filtered/" $BENCHMARKS --drop --shard "$K/$NT" -o "$WORK/clean/"
    ;;
  tokenize)
    # writes tokens-K-of-N-*.bin + manifest-K-of-N.json; train reads the union once all N parts exist
    phitools tokenize "$WORK/clean/" --tokenizer "$TOKENIZER" --seq-len "$SEQ_LEN" --shard "$K/$NT" -o "$WORK/tok/"
    ;;
  submit)
    if [ ! -f "$TOKENIZER" ]; then
      # on the login node (it has internet): save phi-1's tokenizer for the offline compute nodes
      python -c "import sys; from tokenizers import Tokenizer; Tokenizer.from_pretrained('microsoft/phi-1').save(sys.argv[1])" "$TOKENIZER"
    fi
    arr="--array=0-$((N - 1))"
    a=$(sbatch --parsable "$arr" --job-name=label "$0" label)
    b=$(sbatch --parsable --dependency="afterok:$a" --gpus=1 --job-name=clf-train "$0" classify-train)
    c=$(sbatch --parsable "$arr" --dependency="afterok:$b" --job-name=apply "$0" apply)
    d=$(sbatch --parsable "$arr" --dependency="afterok:$c" --job-name=decontam "$0" decontam)
    e=$(sbatch --parsable "$arr" --dependency="afterok:$d" --job-name=tokenize "$0" tokenize)
    # shellcheck disable=SC2086
    f=$(DATA="$WORK/tok/" sbatch --parsable --dependency="afterok:$e" --job-name=train $TRAIN_SBATCH "$TRAIN_SCRIPT" ddp)
    echo "submitted: label $a, classify-train $b, apply $c, decontam $d, tokenize $e, train $f (squeue --me)" >&2
    ;;
  local)
    # The same stages on this machine, the array tasks one after another (what Slurm runs in parallel):
    # a toy check of the flags and of the shard bookkeeping, e.g.
    #   CORPUS=corpus/ WORK=/tmp/w N=4 LABEL_ARGS="--backend heuristic" CLF_FEATURES=hash \
    #     CLF_ARGS="--estimator lgbm" TOKENIZER=stdlib-8k SEQ_LEN=128 examples/slurm_label_classify_tokenize.sh local
    for s in label classify-train apply decontam tokenize; do
      if [ "$s" = classify-train ]; then
        SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=1 "$0" "$s"
      else
        for ((k = 0; k < N; k++)); do SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=$N "$0" "$s"; done
      fi
    done
    ;;
  *)
    echo "unknown stage $stage: submit, local, label, classify-train, apply, decontam or tokenize" >&2
    exit 2
    ;;
esac
