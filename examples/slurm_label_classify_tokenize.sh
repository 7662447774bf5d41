#!/usr/bin/env bash
#SBATCH --job-name=phitools
#SBATCH --requeue
#SBATCH --open-mode=append
#
# The data half of the phi-1 recipe on a Slurm cluster. Every stage is an array of N independent tasks, task K
# processing slice K/N of its input (`--shard K/N`, K from 0), all writing into one shared directory under
# distinct names (part-0000K-of-000NN-*.jsonl.zst + manifest-0000K-of-000NN.json). A stage starts when the
# previous one has finished (afterok); the last job trains on the union of the token shards.
#
#   label (array) -> classify train -> classify apply (array) -> decontam (array) -> tokenize (array) -> train
#
# Usage (from anywhere; relative CORPUS/WORK are taken from DATA_DIR, by default the current directory):
#   examples/slurm_label_classify_tokenize.sh submit    # submit what is missing; re-run it after any failure
#   examples/slurm_label_classify_tokenize.sh status    # per stage: done, running, pending, failed, missing parts
#   examples/slurm_label_classify_tokenize.sh cancel    # cancel this recipe's queued and running jobs (this WORK)
#   examples/slurm_label_classify_tokenize.sh local     # every stage here, the tasks one after another
#   sbatch --array=1 examples/slurm_label_classify_tokenize.sh label 64    # one task by hand: K=1 of N=64
#
# `submit` can simply be run again, like datatrove's executors: a part is done when the shard layer says so
# (`phitools verify`: the stage's manifests list it and its files match), done parts are skipped, missing task
# ids are resubmitted as `--array=<those ids>` with the true N on the command line (a task never derives N from
# the array's size), jobs still queued or running are kept, and pending jobs that wait on a failed or replaced
# job are cancelled and resubmitted behind the new ones. Everything is submitted held and released only once
# the whole chain is queued: when one sbatch fails, the jobs this run queued are cancelled (only those) and
# nothing runs. A failed dependency cancels its dependants (--kill-on-invalid-dep=yes) instead of leaving them
# pending forever. Logs: WORK/logs/<job name>-<job>_<task>.out, one per task, each with the tool's progress and
# summary, the task's command, its timing and exit status; WORK/logs/tasks/ holds each task's last state.
#
# Settings are environment variables; `submit` resolves paths to absolute ones and passes every setting to the
# jobs (--export=ALL).
DATA_DIR=${DATA_DIR:-$PWD}           # relative paths below are relative to this directory
CORPUS=${CORPUS:-corpus/}            # records from `phitools ingest` (e.g. The Stack's Python subset), many files
WORK=${WORK:-work}                   # shared filesystem: every stage's output goes under here
N=${N:-}                             # tasks per array (default 64; a re-run takes the N WORK was started with)
LABEL_FRACTION=${LABEL_FRACTION:-0.005}   # phi-1 labelled ~100k files; 0.5% of The Stack's ~20M Python files
# The labeller: any OpenAI-compatible server (vLLM, TGI, a hosted API). The key, if any, is read from the
# variable named by --api-key-env and never written anywhere.
LABEL_ARGS=${LABEL_ARGS:-"--api-base http://labeller:8000/v1 --model Qwen/Qwen2.5-72B-Instruct --concurrency 16"}
# Classifier features: `hash` (CPU, minutes) or `model:CKPT` (mean-pooled hidden states of a Phi checkpoint,
# phi-1's choice: embeddings from a pretrained code model), e.g. model:/models/phi-1 (a Hugging Face Phi dir).
# Only model: features ask Slurm for GPUs (CLF_GPUS, for classify train and apply).
CLF_FEATURES=${CLF_FEATURES:-model:/models/phi-1}
CLF_ARGS=${CLF_ARGS:-"--estimator rf --n-estimators 300"}   # --threads defaults to the task's CPUs
# Absolute score cut (on the labeller's 0-5 scale). An absolute threshold makes the union of the N sharded
# outputs exactly the unsharded result; --keep-top F would keep the top F of *each* shard instead.
THRESHOLD=${THRESHOLD:-3}
BENCHMARKS=${BENCHMARKS:-"-b humaneval -b mbpp"}   # decontaminate against these (add --data-dir DIR offline)
# The tokenizer: `stdlib-8k` (bundled, offline), a tokenizer.json, or a Hugging Face Hub id, which `submit`
# saves once as WORK/tokenizer/<id>.json on the login node (compute nodes are often offline).
TOKENIZER=${TOKENIZER:-microsoft/phi-1}
SEQ_LEN=${SEQ_LEN:-2048}
TOKENIZE_ARGS=${TOKENIZE_ARGS:-}     # e.g. --no-pack (keeps every token: the union of the parts is then the unsharded stream)
# Training, last in the chain (TRAIN=0 leaves it out): TRAIN_SCRIPT runs with DATA=WORK/tok/ and RUN.
TRAIN=${TRAIN:-1}
TRAIN_SCRIPT=${TRAIN_SCRIPT:-}       # default: examples/torchrun_phi1_small.sh next to this script
TRAIN_MODE=${TRAIN_MODE:-ddp}
TRAIN_SBATCH=${TRAIN_SBATCH:-"--nodes=1 --gpus-per-node=8 --cpus-per-task=64"}
RUN=${RUN:-}                         # the run directory (default WORK/run)
# Resources. The defaults fit a small CPU node; raise them per stage with the *_SBATCH variables (later flags
# win), e.g. TOKENIZE_SBATCH="--cpus-per-task=16 --mem=32G".
CPUS=${CPUS:-2}
MEM=${MEM:-4G}
TIME_LIMIT=${TIME_LIMIT:-}           # e.g. 06:00:00; empty: the partition's default
CLF_GPUS=${CLF_GPUS:-1}
SBATCH_ARGS=${SBATCH_ARGS:-}         # flags for every job: --partition=cpu --account=proj --qos=normal ...
LABEL_SBATCH=${LABEL_SBATCH:-} CLF_SBATCH=${CLF_SBATCH:-} APPLY_SBATCH=${APPLY_SBATCH:-}
DECONTAM_SBATCH=${DECONTAM_SBATCH:-} TOKENIZE_SBATCH=${TOKENIZE_SBATCH:-}
PHITOOLS=${PHITOOLS:-phitools}       # the phitools command (submit resolves it to an absolute path)
VERIFY=${VERIFY:-size}               # submit/status: `phitools verify --quick` (sizes); sha256 hashes every file
set -euo pipefail

PROG=slurm_label_classify_tokenize.sh
STAGES=(label classify-train apply decontam tokenize train)

say() { printf '%s\n' "$*" >&2; }
die() { say "$PROG: error: $1"; exit "${2:-1}"; }

# ---------------------------------------------------------------------------------------------------------------
# settings

resolve_settings() {  # absolute paths, and the settings every job receives
  case $DATA_DIR in /*) ;; *) DATA_DIR=$(cd "$DATA_DIR" && pwd) ;; esac
  [ -d "$DATA_DIR" ] || die "DATA_DIR $DATA_DIR is not a directory"
  cd "$DATA_DIR"
  CORPUS=$(abspath "$CORPUS")
  WORK=$(abspath "$WORK")
  RUN=$(abspath "${RUN:-$WORK/run}")
  if [ "$PHITOOLS" = phitools ] || [ "${PHITOOLS#/}" = "$PHITOOLS" ]; then
    local p
    p=$(command -v "$PHITOOLS") || die "'$PHITOOLS' is not on PATH: activate phitools' environment, or set PHITOOLS=/path/to/phitools"
    PHITOOLS=$(abspath "$p")
  fi
  # the Python that runs phitools reads its JSON reports
  PY=${PY:-$(dirname "$PHITOOLS")/python}
  [ -x "$PY" ] || PY=$(command -v python3) || die "no python3 found: set PY=/path/to/python"
  export DATA_DIR CORPUS WORK RUN N LABEL_FRACTION LABEL_ARGS CLF_FEATURES CLF_ARGS THRESHOLD BENCHMARKS TOKENIZER \
    SEQ_LEN TOKENIZE_ARGS CPUS PHITOOLS PY
}

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "${1#./}" ;; esac; }

resolve_n() {  # N as given, else the N this WORK was started with, else 64; a different N than WORK's is refused
  local record=${1:-} recorded=""
  [ -f "$WORK/logs/N" ] && recorded=$(cat "$WORK/logs/N")
  if [ -z "$N" ]; then N=${recorded:-64}; fi
  case $N in ''|*[!0-9]*|0*) die "N must be a positive integer (tasks per array), not '$N'" 2 ;; esac
  if [ -n "$recorded" ] && [ "$recorded" != "$N" ]; then
    die "$WORK was started with N=$recorded tasks per stage, not N=$N: run with N=$recorded (or a new WORK)" 2
  fi
  if [ "$record" = record ]; then
    mkdir -p "$WORK/logs/tasks"
    printf '%s\n' "$N" > "$WORK/logs/N"
  fi
  export N
}

resolve_tokenizer() {  # [offline]: a Hub id becomes WORK/tokenizer/<id>.json, saved here once; stdlib-8k is bundled
  case $TOKENIZER in
    stdlib-8k) return 0 ;;
  esac
  if [ -e "$TOKENIZER" ] || [ -e "$DATA_DIR/$TOKENIZER" ]; then
    TOKENIZER=$(abspath "$TOKENIZER")
    return 0
  fi
  case $TOKENIZER in
    *.json|/*|./*|../*) die "TOKENIZER $TOKENIZER not found (a tokenizer.json, stdlib-8k, or a Hub id like microsoft/phi-1)" 2 ;;
  esac
  local saved="$WORK/tokenizer/${TOKENIZER//\//__}.json"
  if [ ! -f "$saved" ] && [ "${1:-}" = offline ]; then
    die "TOKENIZER $TOKENIZER is a Hub id and $saved does not exist: run submit (it saves it on the login node), or set TOKENIZER to a tokenizer.json or stdlib-8k" 2
  fi
  if [ ! -f "$saved" ]; then
    say "saving the Hub tokenizer $TOKENIZER to $saved (compute nodes may be offline)"
    mkdir -p "$WORK/tokenizer"
    "$PY" -c 'import sys; from tokenizers import Tokenizer; Tokenizer.from_pretrained(sys.argv[1]).save(sys.argv[2] + ".tmp")' \
      "$TOKENIZER" "$saved" || die "could not fetch tokenizer $TOKENIZER (no internet here? save a tokenizer.json and set TOKENIZER=PATH, or TOKENIZER=stdlib-8k)"
    mv "$saved.tmp" "$saved"
  fi
  TOKENIZER=$saved
}

# ---------------------------------------------------------------------------------------------------------------
# stages

stage_dir() {
  case $1 in
    label) echo "$WORK/labeled" ;; classify-train) echo "$WORK/clf" ;; apply) echo "$WORK/filtered" ;;
    decontam) echo "$WORK/clean" ;; tokenize) echo "$WORK/tok" ;; train) echo "$RUN" ;;
  esac
}

stage_n() { case $1 in classify-train|train) echo 1 ;; *) echo "$N" ;; esac; }

uses_gpu_features() { case ,$CLF_FEATURES, in *,model:*) return 0 ;; esac; return 1; }

stage_sbatch_flags() {  # resources for a stage: defaults, GPUs only where needed, then the user's flags
  local s=$1
  SFLAGS=(--cpus-per-task="$CPUS" --mem="$MEM")
  [ -n "$TIME_LIMIT" ] && SFLAGS+=(--time="$TIME_LIMIT")
  local extra=""
  case $s in
    label) extra=$LABEL_SBATCH ;;
    classify-train) extra=$CLF_SBATCH ;;
    apply) extra=$APPLY_SBATCH ;;
    decontam) extra=$DECONTAM_SBATCH ;;
    tokenize) extra=$TOKENIZE_SBATCH ;;
    train) SFLAGS=(); [ -n "$TIME_LIMIT" ] && SFLAGS+=(--time="$TIME_LIMIT"); extra=$TRAIN_SBATCH ;;
  esac
  case $s in classify-train|apply) uses_gpu_features && SFLAGS+=(--gpus="$CLF_GPUS") ;; esac
  local -a words
  read -r -a words <<< "$SBATCH_ARGS $extra"
  SFLAGS+=("${words[@]}")
}

task_command() {  # STAGE K N -> CMD: the phitools command of task K of N
  local s=$1 k=$2 n=$3 threads=${SLURM_CPUS_PER_TASK:-$CPUS}
  local -a la ca bm ta
  read -r -a la <<< "$LABEL_ARGS"
  read -r -a ta <<< "$TOKENIZE_ARGS"
  read -r -a ca <<< "$CLF_ARGS"
  read -r -a bm <<< "$BENCHMARKS"
  case $s in
    label)
      # --fraction draws the same records whatever N is (a hash of --seed and the record), so the union of the
      # shards is the unsharded sample. One request cache per task: SQLite on a shared filesystem should not be
      # written by many processes at once. A requeued task re-sends only what its cache does not hold.
      CMD=("$PHITOOLS" label "$CORPUS" --fraction "$LABEL_FRACTION" --seed 1 "${la[@]}" --shard "$k/$n"
           --cache "$WORK/cache/label-$k-of-$n.sqlite" -o "$WORK/labeled/") ;;
    classify-train)
      CMD=("$PHITOOLS" classify train "$WORK/labeled/" --features "$CLF_FEATURES" --threads "$threads" "${ca[@]}"
           --seed 1 -o "$WORK/clf/") ;;
    apply)
      CMD=("$PHITOOLS" classify apply "$WORK/clf/" "$CORPUS" --threshold "$THRESHOLD" --shard "$k/$n"
           --rejects "$WORK/rejects/part-$k-of-$n.jsonl.zst" -o "$WORK/filtered/") ;;
    decontam)
      CMD=("$PHITOOLS" decontam "$WORK/filtered/" "${bm[@]}" --drop --shard "$k/$n" -o "$WORK/clean/") ;;
    tokenize)
      # writes tokens-K-of-N-*.bin + manifest-K-of-N.json; train reads the union once all N parts exist
      CMD=("$PHITOOLS" tokenize "$WORK/clean/" --tokenizer "$TOKENIZER" --seq-len "$SEQ_LEN" --workers "$threads"
           "${ta[@]}" --shard "$k/$n" -o "$WORK/tok/") ;;
    *) die "unknown stage $s" 2 ;;
  esac
}

# ---------------------------------------------------------------------------------------------------------------
# completeness: the shard layer's word (phitools verify), never a count of files here

# missing_parts STAGE -> "K K ... | R ...": the task ids (0..n-1) whose output is not complete, then those whose
# writer holds its lock right now (a task running outside Slurm's view, e.g. `local`); "|" alone when complete
missing_parts() {
  local s=$1 dir n
  dir=$(stage_dir "$s")
  n=$(stage_n "$s")
  case $s in
    train)
      "$PY" - "$dir/manifest.json" <<'EOF' || echo "0 |"
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("0 |"); sys.exit()
print("|" if m.get("train", {}).get("status") == "complete" else "0 |")
EOF
      return 0 ;;
  esac
  verify_missing "$dir" "$n"
}

verify_missing() {  # DIR N: `phitools verify` decides; parts it finds missing or damaged are the ones to (re)run
  local dir=$1 n=$2 out rc=0
  local -a quick=(--quick)
  [ "$VERIFY" = sha256 ] && quick=()
  out=$("$PHITOOLS" verify "$dir" --json --parts "$n" "${quick[@]}" 2>&1) || rc=$?
  [ "$rc" -le 1 ] || die "phitools verify $dir failed: $out"
  "$PY" -c '
import json, re, sys
rep, n = json.loads(sys.argv[1]), int(sys.argv[2])
redo, other = set(rep["missing"]), []
for p in rep["problems"]:
    kind, part, name = p["kind"], p.get("part"), (p.get("path") or "").rsplit("/", 1)[-1]
    if kind in ("missing_part", "no_manifest"):
        continue
    if part is not None and kind in ("missing_file", "size_mismatch", "sha256_mismatch"):
        redo.add(part)  # damaged: the task writes its part again
        continue
    m = re.match(r"^(?:part|tokens)-(\d{5})-of-(\d{5})-\d{5}\.", name)
    if kind == "extra_file" and m and int(m[2]) == n:
        redo.add(int(m[1]))  # a shard its task left when it was killed: that task again
        continue
    if kind == "extra_file" and n == 1 and re.match(r"^(?:part|tokens)-\d{5}\.", name):
        redo.add(0)
        continue
    other.append(p["message"])
if other:
    print("!" + rep["path"] + ": " + "; ".join(other[:3]) + " (" + (rep.get("hint") or "") + ")")
    sys.exit(3)
print(" ".join(map(str, sorted(redo))), "|", " ".join(map(str, rep.get("running") or [])))
' "$out" "$n"
}

check_stage() {  # STAGE -> MISSING (task ids to run) and LOCKED (ids a writer holds now), or STAGE_ERROR
  local out rc=0
  out=$(missing_parts "$1") || rc=$?
  if [ "$rc" != 0 ]; then
    case $out in
      "!"*) STAGE_ERROR=${out#!} ;;
      *) STAGE_ERROR="could not check $(stage_dir "$1"): $out" ;;
    esac
    return 1
  fi
  local -a w
  read -r -a w <<< "${out%%|*}"
  MISSING=${w[*]}
  read -r -a w <<< "${out#*|}"
  LOCKED=${w[*]}
}

# ---------------------------------------------------------------------------------------------------------------
# one task

write_task_state() {  # STAGE K N STATE...: WORK/logs/tasks/STAGE.K-of-N holds the task's last state, one line
  local f="$WORK/logs/tasks/$1.$2-of-$3"
  shift 3
  mkdir -p "$WORK/logs/tasks"
  printf '%s\n' "$*" > "$f.tmp.$$" && mv "$f.tmp.$$" "$f"
}

run_task() {  # STAGE K N: run task K of N of STAGE here, with a start line, the tool's own stderr, an end line
  local s=$1 k=$2 n=$3
  case $k in ''|*[!0-9]*) die "task id '$k' is not a number" 2 ;; esac
  [ "$k" -lt "$n" ] || die "task id $k is not below N=$n: the array's ids are 0..$((n - 1))" 2
  local job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
  job=${job:-${SLURM_JOB_ID:-local}}
  local log=${SLURM_JOB_ID:+$WORK/logs/${SLURM_JOB_NAME:-job}-$job.out}
  [ "$s" = tokenize ] && resolve_tokenizer offline   # a task never downloads: submit saved a Hub tokenizer
  task_command "$s" "$k" "$n"
  # the tools print their summaries (and periodic progress) on stderr when it is not a terminal
  export PHITOOLS_VERBOSE=1 PYTHONUNBUFFERED=1
  export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${OMP_NUM_THREADS:-$CPUS}}
  local t0 host
  t0=$(date +%s.%N)
  host=$(hostname)
  say "[recipe] $s task $k of $n: start on $host, job $job, $(date -Is)"
  say "[recipe] $s task $k of $n: ${CMD[*]}"
  write_task_state "$s" "$k" "$n" "state=running job=$job host=$host start=$(date -Is) log=${log:-}"
  mkdir -p "$WORK/cache" "$WORK/rejects"
  local rc=0
  TASK_SIGNAL=""
  trap 'TASK_SIGNAL=TERM' TERM   # scancel, a time limit, preemption: record it once the tool has stopped
  "${CMD[@]}" || rc=$?
  trap - TERM
  local el
  el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" -eq 0 ] && stage_task_summary "$s" "$k" "$n"
  write_task_state "$s" "$k" "$n" "state=exited exit=$rc${TASK_SIGNAL:+ signal=$TASK_SIGNAL} job=$job host=$host elapsed_s=$el end=$(date -Is) log=${log:-}"
  say "[recipe] $s task $k of $n: exit $rc${TASK_SIGNAL:+ (SIG$TASK_SIGNAL)} after ${el}s on $host"
  return "$rc"
}

stage_task_summary() {  # the numbers from the task's manifest, in one line
  local s=$1 k=$2 n=$3 dir m
  dir=$(stage_dir "$s")
  if [ "$n" -gt 1 ]; then m=$(printf '%s/manifest-%05d-of-%05d.json' "$dir" "$k" "$n"); else m="$dir/manifest.json"; fi
  "$PY" - "$m" "$s task $k of $n" <<'EOF' >&2 || true
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print(f"[recipe] {sys.argv[2]}: no manifest to summarise ({e})"); sys.exit()
st = m.get("stats") or {}
parts = [f"{k.replace('_', ' ')} {v:,}" for k, v in st.items() if isinstance(v, int) and not isinstance(v, bool)]
for k in ("dropped", "skipped_bad"):
    if st.get(k):
        parts.append(f"{k.replace('_', ' ')} " + ", ".join(f"{r} {c:,}" for r, c in st[k].items()))
outs = [o for o in m.get("outputs") or [] if isinstance(o, dict)]
size = ", ".join(f"{sum(o.get(u) or 0 for o in outs):,} {u}" for u in ("records", "tokens", "bytes") if any(u in o for o in outs))
parts.append(f"{len(outs)} output file(s)" + (f" ({size})" if size else ""))
print(f"[recipe] {sys.argv[2]}: {m.get('tool', '?')}: " + "; ".join(parts))
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# the queue: this recipe's jobs carry --comment="phitools-recipe WORK", so another WORK's jobs are never touched

recipe_comment() { printf 'phitools-recipe %s' "$WORK"; }

read_queue() {  # QUEUE: lines "stage task jobref state reason" of this WORK's jobs (one per array task)
  QUEUE=""      # (without a reachable Slurm, e.g. after `local`, status shows the outputs alone)
  local strict=${1:-strict} out
  if ! command -v squeue > /dev/null || ! out=$(squeue -h -r -u "$(id -un)" -o '%F|%K|%i|%j|%T|%r|%k' 2>&1); then
    [ "$strict" = strict ] && die "squeue failed: is Slurm reachable from here? ${out:-}"
    say "(no Slurm queue here: showing the outputs only)"
    return 0
  fi
  local comment
  comment=$(recipe_comment)
  QUEUE=$(printf '%s\n' "$out" | awk -F'|' -v c="$comment" '
    $7 == c {
      stage = $4; sub(/^phi-/, "", stage)
      task = ($2 == "N/A" || $2 == "") ? 0 : $2
      ref = ($2 == "N/A" || $2 == "") ? $3 : $1 "_" $2
      print stage, task, ref, $5, $6
    }')
}

wait_completing() {  # a task in COMPLETING has stopped but its exit is not settled: give it a moment
  local i
  for ((i = 0; i < 120; i++)); do
    read_queue
    printf '%s\n' "$QUEUE" | awk '$4 == "COMPLETING" { f = 1 } END { exit !f }' || return 0
    sleep 1
  done
}

# ---------------------------------------------------------------------------------------------------------------
# submit

NEW_JOBS=()
rollback() {  # cancel exactly the jobs this submit queued (they are still held: none of them has run)
  if [ "${#NEW_JOBS[@]}" -gt 0 ]; then
    say "cancelling the ${#NEW_JOBS[@]} job(s) this submit queued: ${NEW_JOBS[*]}"
    scancel "${NEW_JOBS[@]}" || say "$PROG: scancel failed; cancel by hand: scancel ${NEW_JOBS[*]}"
    NEW_JOBS=()
  fi
}

compress_ids() {  # "0 1 2 5 7 8" -> "0-2,5,7-8"
  printf '%s\n' "$@" | sort -n | awk '
    NR == 1 { a = b = $1; next }
    $1 == b + 1 { b = $1; next }
    { out = out (out ? "," : "") (a == b ? a : a "-" b); a = b = $1 }
    END { if (NR) print out (out ? "," : "") (a == b ? a : a "-" b) }'
}

submit() {
  command -v sbatch > /dev/null || die "sbatch not found: submit needs a Slurm login node (or use 'local')"
  resolve_tokenizer
  export TOKENIZER
  [ -e "$CORPUS" ] || die "CORPUS $CORPUS not found (records from phitools ingest; run from the data directory or set DATA_DIR)" 2
  local train_script="${TRAIN_SCRIPT:-$(dirname "$SELF")/torchrun_phi1_small.sh}"
  if [ "$TRAIN" = 1 ]; then
    train_script=$(abspath "$train_script")
    [ -f "$train_script" ] || die "TRAIN_SCRIPT $train_script not found (or TRAIN=0 to stop after tokenize)" 2
    CONFIG=$(abspath "${CONFIG:-$(dirname "$train_script")/train_phi1_small.toml}")
    export CONFIG DATA="$WORK/tok/" RUN
  fi
  wait_completing
  local comment
  comment=$(recipe_comment)
  trap 'rollback; exit 130' INT TERM
  trap rollback EXIT   # any other way out before the release, too (NEW_JOBS is emptied once all is released)
  local -a prev_deps=() stale=() submitted=()
  local changed=0 earlier_incomplete="" s
  for s in "${STAGES[@]}"; do
    [ "$s" = train ] && [ "$TRAIN" != 1 ] && continue
    local n missing
    n=$(stage_n "$s")
    check_stage "$s" || { rollback; die "$STAGE_ERROR"; }
    missing=$MISSING
    if [ -z "$missing" ]; then
      if [ -n "$earlier_incomplete" ]; then
        say "note: $(stage_dir "$s") is complete though $earlier_incomplete is not: kept as it is (remove it to redo it from the new $earlier_incomplete output)"
      fi
      say "$(printf '%-15s' "$s") done: all $n part(s) complete, skipped"
      prev_deps=()
      continue
    fi
    earlier_incomplete=$s
    # keep what is running, or queued behind jobs that still stand; replace the rest
    local -a keep=() todo=() cancel=()
    local k
    for k in $missing; do
      local line state reason ref
      line=$(printf '%s\n' "$QUEUE" | awk -v s="$s" -v k="$k" '$1 == s && $2 == k && !f { print; f = 1 }')
      if [ -n "$line" ]; then
        read -r _ _ ref state reason <<< "$line"
        if [[ $state =~ ^(RUNNING|CONFIGURING|COMPLETING|SUSPENDED)$ ]] || { [ "$state" = PENDING ] &&
             [ "$changed" = 0 ] && [ "$reason" != DependencyNeverSatisfied ] && [ "$reason" != JobHeldUser ]; }; then
          keep+=("$ref")
          continue
        fi
        cancel+=("$ref")
      elif [[ " $LOCKED " == *" $k "* ]]; then
        rollback
        die "task $k of $s is being written right now by a process that is not one of this recipe's queued jobs (its lock in $(stage_dir "$s") is held): let it finish or stop it, then submit again"
      fi
      todo+=("$k")
    done
    stale+=("${cancel[@]}")
    if [ "${#todo[@]}" -eq 0 ]; then
      say "$(printf '%-15s' "$s") in flight: ${keep[*]}"
      prev_deps=("${keep[@]}")
      continue
    fi
    stage_sbatch_flags "$s"
    local -a args=(--parsable --hold --export=ALL --chdir="$DATA_DIR" --job-name="phi-$s" --comment="$comment"
                   --kill-on-invalid-dep=yes --open-mode=append)
    [ "${#prev_deps[@]}" -gt 0 ] && args+=(--dependency="afterok:$(IFS=:; echo "${prev_deps[*]}")")
    local what
    if [ "$s" = train ]; then
      args+=(--output="$WORK/logs/%x-%j.out" "${SFLAGS[@]}" "$train_script" "$TRAIN_MODE")
      what=""
    elif [ "$s" = classify-train ]; then
      args+=(--output="$WORK/logs/%x-%j.out" "${SFLAGS[@]}" "$SELF" "$s")
      what=""
    else
      args+=(--array="$(compress_ids "${todo[@]}")" --output="$WORK/logs/%x-%A_%a.out" "${SFLAGS[@]}" "$SELF" "$s" "$n")
      what=" --array=$(compress_ids "${todo[@]}") (N=$n)"
    fi
    local out id
    if ! out=$(sbatch "${args[@]}" 2>&1); then
      say "$PROG: sbatch for stage $s failed: $out"
      rollback
      die "nothing was submitted; fix the flags above (SBATCH_ARGS and the stage's *_SBATCH) and run submit again"
    fi
    id=${out%%;*}
    id=${id##*$'\n'}
    case $id in ''|*[!0-9]*) say "$PROG: unexpected sbatch answer for $s: $out"; rollback; die "nothing was submitted" ;; esac
    NEW_JOBS+=("$id")
    submitted+=("$s $id")
    changed=1
    say "$(printf '%-15s' "$s") submitted$what: job $id${prev_deps[0]:+ (after ${prev_deps[*]})}"
    if [ "$s" = classify-train ] || [ "$s" = train ]; then prev_deps=("$id"); else prev_deps=("$id" "${keep[@]}"); fi
  done
  # every job is queued: drop the stale ones, then let the new ones run
  if [ "${#stale[@]}" -gt 0 ]; then
    say "cancelling ${#stale[@]} pending job(s) that waited on failed or replaced jobs: ${stale[*]}"
    scancel "${stale[@]}" || { rollback; die "scancel of the stale jobs failed; nothing was submitted"; }
  fi
  if [ "${#NEW_JOBS[@]}" -gt 0 ]; then
    scontrol release "${NEW_JOBS[@]}" > /dev/null || { rollback; die "scontrol release failed; nothing was submitted"; }
  fi
  trap - INT TERM EXIT
  local line
  for line in "${submitted[@]}"; do printf '%s\n' "$line"; done
  if [ "${#NEW_JOBS[@]}" -eq 0 ]; then
    say "nothing to submit: every stage is complete or in flight ($SELF status)"
  else
    say "submitted ${NEW_JOBS[*]}; watch it with: $SELF status   (logs: $WORK/logs/)"
  fi
  NEW_JOBS=()
}

# ---------------------------------------------------------------------------------------------------------------
# status

status() {
  read_queue lenient
  local s all_done=1
  printf '%-15s %6s %5s %8s %8s %7s  %s\n' stage parts "done" running pending failed "missing (not done, not queued)"
  for s in "${STAGES[@]}"; do
    [ "$s" = train ] && [ "$TRAIN" != 1 ] && continue
    local n missing k
    n=$(stage_n "$s")
    if ! check_stage "$s"; then
      printf '%-15s %6s  %s\n' "$s" "$n" "cannot tell: $STAGE_ERROR"
      all_done=0
      continue
    fi
    missing=$MISSING
    [ -n "$missing" ] && all_done=0
    local -i running=0 pending=0 failed=0 ndone
    local -a lost=() notes=()
    ndone=$((n - $(wc -w <<< "$missing")))
    for k in $missing; do
      local line state
      line=$(printf '%s\n' "$QUEUE" | awk -v s="$s" -v k="$k" '$1 == s && $2 == k && !f { print; f = 1 }')
      state=$(awk '{ print $4 }' <<< "$line")
      [[ " $LOCKED " == *" $k "* ]] && [ -z "$state" ] && state=RUNNING   # written now, outside Slurm (local)
      case $state in
        RUNNING|COMPLETING) running+=1 ;;
        PENDING|CONFIGURING|SUSPENDED|REQUEUED*) pending+=1 ;;
        *)
          lost+=("$k")
          local f="$WORK/logs/tasks/$s.$k-of-$n" last=""
          [ -f "$f" ] && last=$(cat "$f")
          case $last in
            *state=exited\ exit=0*) ;;
            *state=exited*) failed+=1; notes+=("$s task $k: ${last#state=}") ;;
            *state=running*) failed+=1; notes+=("$s task $k: killed or lost (no exit recorded): ${last#state=}") ;;
          esac ;;
      esac
    done
    printf '%-15s %6s %5s %8s %8s %7s  %s\n' "$s" "$n" "$ndone" "$running" "$pending" "$failed" \
      "$( [ "${#lost[@]}" -gt 0 ] && compress_ids "${lost[@]}" || echo -)"
    local note
    for note in "${notes[@]}"; do printf '    %s\n' "$note"; done
  done
  if [ "$all_done" = 1 ]; then say "complete: every stage's parts are there"; return 0; fi
  say "not complete; '$PROG submit' resubmits what is missing (and keeps what is queued)"
  return 1
}

cancel_all() {
  read_queue
  local -a ids
  mapfile -t ids < <(printf '%s\n' "$QUEUE" | awk 'NF { print $3 }')
  if [ "${#ids[@]}" -eq 0 ]; then say "no job of this recipe (WORK=$WORK) in the queue"; return 0; fi
  say "cancelling ${ids[*]}"
  scancel "${ids[@]}"
}

# ---------------------------------------------------------------------------------------------------------------
# local: the same tasks on this machine, one after another (a toy check of the flags and the shard bookkeeping)

run_local() {
  resolve_tokenizer
  export TOKENIZER
  local s k
  for s in label classify-train apply decontam tokenize; do
    local n missing
    n=$(stage_n "$s")
    check_stage "$s" || die "$STAGE_ERROR"
    missing=$MISSING
    [ -z "$missing" ] && { say "[recipe] $s: all $n part(s) complete, skipped"; continue; }
    for k in $missing; do (run_task "$s" "$k" "$n"); done
  done
}

# ---------------------------------------------------------------------------------------------------------------

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $PROG submit|status|cancel|local, or (in a job) STAGE N: label|classify-train|apply|decontam|tokenize" 2
# absolute, before any cd (in a job this is Slurm's spooled copy: tasks need nothing else from the checkout)
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
resolve_settings
case $cmd in
  submit) resolve_n record; submit ;;
  status) resolve_n; status ;;
  cancel) cancel_all ;;
  local) resolve_n record; run_local ;;
  label|apply|decontam|tokenize)
    n=${2:-}
    [ -n "$n" ] || die "$cmd needs the stage's true N: sbatch --array=K $PROG $cmd N (N is never taken from the array's size)" 2
    case $n in *[!0-9]*|0*) die "N must be a positive integer, not '$n'" 2 ;; esac
    [ -n "${SLURM_ARRAY_TASK_ID:-}${K:-}" ] || die "$cmd runs as an array task (sbatch --array=K) or with K=<task id> set" 2
    N=$n
    run_task "$cmd" "${SLURM_ARRAY_TASK_ID:-$K}" "$n" ;;
  classify-train) N=${N:-1}; run_task classify-train 0 1 ;;
  *) die "unknown command '$cmd': submit, status, cancel, local, label, classify-train, apply, decontam or tokenize" 2 ;;
esac
