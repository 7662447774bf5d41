#!/usr/bin/env bash
# The Slurm recipe (examples/slurm_label_classify_tokenize.sh) on a real one-node Slurm, end to end:
#
#   tests/slurm/selftest.sh            # exit 0: passed; 1: failed; 3: skipped (no root, no slurm-wlm/munge)
#   KEEP=1 tests/slurm/selftest.sh     # keep the temp dir (cluster logs, WORK dirs) for a look afterwards
#
# It brings up a private cluster (tests/slurm/cluster.sh), ingests a slice of the Python standard library and
# runs the recipe with CPU settings (hash features, stdlib-8k, N=3, a tiny model trained on CPU last). Labels
# come over real HTTP from phitools' loopback OpenAI-compatible server (phitools.llm.testing: deterministic
# answers, 0.2 s each), so that a label task is still at work when it is killed.
#   1. a submission that fails at its last sbatch leaves nothing queued and nothing run; `cancel` cancels one
#      WORK's jobs and leaves another's;
#   2. the happy path, submitted from the data directory with relative paths; a re-run submits nothing;
#   3. a run submitted from elsewhere (DATA_DIR, relative script path; a second submit while it is in flight
#      submits nothing) whose label task 1 is killed by scancel while its `phitools label` is half-way through
#      its requests: the dependants are cancelled, `status` names the failed task, a stale pending job is
#      injected, and `submit` alone resubmits exactly task 1 of 3 (which re-sends only what its request cache
#      lacks) and the rest of the chain;
#   4. an unsharded run (local, N=1);
# and checks that 3 equals 2 part for part and byte for byte, and that 2 equals 4 as a union. Then it stops the
# daemons and the server it started (by pid). Needs phitools on PATH or a .venv in the checkout.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RECIPE=$REPO/examples/slurm_label_classify_tokenize.sh
CLUSTER=$HERE/cluster.sh
if ! command -v phitools > /dev/null && [ -x "$REPO/.venv/bin/phitools" ]; then PATH="$REPO/.venv/bin:$PATH"; fi
command -v phitools > /dev/null || { echo "selftest: phitools not on PATH (make venv)" >&2; exit 1; }
PY=$(dirname "$(command -v phitools)")/python

T=$(mktemp -d "${TMPDIR:-/tmp}/phitools-slurm.XXXXXX")
T0=$(date +%s)
step() { printf '\n== %s  (t=%ss)\n' "$*" "$(($(date +%s) - T0))" >&2; }
fail() { echo "selftest: FAILED: $*" >&2; exit 1; }
SERVER_PID=""
cleanup() {
  local rc=$?
  "$CLUSTER" down "$T/cluster" || true
  if [ -n "$SERVER_PID" ] && [ -d "/proc/$SERVER_PID" ]; then kill "$SERVER_PID" 2> /dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "selftest: files kept in $T" >&2; else rm -rf "$T"; fi
  exit "$rc"
}
trap cleanup EXIT

step "one-node cluster"
rc=0
out=$("$CLUSTER" up "$T/cluster") || rc=$?
[ "$rc" = 3 ] && { echo "selftest: SKIPPED: no cluster here (see above)" >&2; exit 3; }
[ "$rc" = 0 ] || fail "the cluster did not start"
eval "$out"
sinfo >&2

step "corpus: a slice of the standard library"
mkdir -p "$T/data/lib" "$T/elsewhere"
stdlib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
# (no `| head` under pipefail: a writer cut short by SIGPIPE would fail the pipeline)
mapfile -t modules < <(find "$stdlib" -maxdepth 1 -name '*.py' | sort)
cp "${modules[@]:0:90}" "$T/data/lib/"
(cd "$T/data" && phitools ingest lib -o corpus/ 2>&1 | tail -n 2 >&2)
# a tiny model trained for a few steps on CPU, last in the chain, under torchrun like the real one
cat > "$T/data/tiny.toml" <<'EOF'
preset = "tiny"
seq_len = 128
batch_size = 4
micro_batch_size = 4
max_steps = 3
warmup_steps = 1
log_every = 1
save_every = 3
EOF

step "labeller: phitools' loopback OpenAI-compatible server"
mkfifo "$T/server.in"
exec 7<> "$T/server.in"   # the server serves until its stdin closes (this script's end)
"$PY" -m phitools.llm.testing --latency 0.2 < "$T/server.in" > "$T/server.url" 2> "$T/server.log" 7>&- &
SERVER_PID=$!
for ((i = 0; i < 100; i++)); do [ -s "$T/server.url" ] && break; sleep 0.2; done
URL=$(cat "$T/server.url")
[ -n "$URL" ] || fail "the labelling server did not start: $(cat "$T/server.log")"
echo "$URL" >&2

export LABEL_ARGS="--api-base $URL --model fake-labeller --concurrency 8" LABEL_FRACTION=1 CLF_FEATURES=hash CLF_ARGS="--estimator lgbm" \
  TOKENIZER=stdlib-8k SEQ_LEN=128 TOKENIZE_ARGS=--no-pack BENCHMARKS="-b humaneval --no-download" \
  CPUS=1 MEM=1G N=3 TRAIN=0
unset DATA_DIR WORK CORPUS RUN

queue() { squeue -h -r -o '%i %j %T %r' 2>/dev/null; }
wait_queue() {  # until this private cluster's queue is empty (every job here is ours)
  local i
  for ((i = 0; i < 600; i++)); do
    [ -z "$(queue)" ] && return 0
    sleep 1
  done
  queue >&2
  fail "the queue did not drain in 10 minutes"
}
check_logs() {  # WORK: every task's Slurm output file has its start line, a summary and exit 0
  local w=$1 f n=0
  for f in "$w"/logs/phi-*.out; do
    case $f in *phi-train-*) grep -q "train: done at step" "$f" || fail "$f: no training summary"; n=$((n + 1)); continue ;; esac
    grep -q '^\[recipe\] .* start on ' "$f" || fail "$f: no start line"
    grep -q '^\[recipe\] .*: records in ' "$f" || grep -q '^\[recipe\] classify-train.*: classify train: ' "$f" || fail "$f: no summary"
    grep -q '^\[recipe\] .*: exit 0 after ' "$f" || fail "$f: no 'exit 0' line"
    n=$((n + 1))
  done
  echo "$n"
}

step "1. a submission that fails part-way leaves nothing queued"
rc=0
(cd "$T/data" && WORK=f TRAIN=1 TRAIN_SBATCH="--gpus-per-node=0 --partition=no-such-partition" "$RECIPE" submit > "$T/f.out" 2> "$T/f.err") || rc=$?
cat "$T/f.err" >&2
[ "$rc" != 0 ] || fail "submit with a bad TRAIN_SBATCH exited 0"
[ -z "$(queue)" ] || { queue >&2; fail "jobs left queued after a failed submit"; }
[ ! -s "$T/f.out" ] || fail "a failed submit printed job ids: $(cat "$T/f.out")"
grep -q "cancelling the 5 job(s) this submit queued" "$T/f.err" || fail "the failed submit did not say what it cancelled"
[ ! -e "$T/data/f/labeled" ] || fail "a task of the failed submission ran"

step "1b. cancel: this WORK's jobs, and only those"
(cd "$T/data" && WORK=g "$RECIPE" submit > /dev/null && WORK=h "$RECIPE" submit > "$T/h.out")
(cd "$T/data" && WORK=g "$RECIPE" cancel >&2)
sleep 1
names=$(squeue -h -r -o '%k' | sort -u)
[ "$names" = "phitools-recipe $T/data/h" ] || fail "after cancelling g the queue holds: $names"
(cd "$T/data" && WORK=h "$RECIPE" cancel >&2)
wait_queue

step "2. happy path: submitted from the data directory, relative paths, training last"
(cd "$T/data" && WORK=a TRAIN=1 TRAIN_SBATCH="--gpus-per-node=0 --cpus-per-task=1 --mem=2G" NPROC=1 CONFIG=tiny.toml \
  TRAIN_ARGS="--device cpu" "$RECIPE" submit > "$T/a.out")
cat "$T/a.out" >&2
[ "$(wc -l < "$T/a.out")" = 6 ] || fail "submit printed $(wc -l < "$T/a.out") job ids, not 6"
[ "$(tail -n 1 "$T/a.out" | cut -d' ' -f1)" = train ] || fail "the train job is not last"
wait_queue
(cd "$T/data" && WORK=a TRAIN=1 "$RECIPE" status >&2) || fail "status after the happy path is not complete"
nlogs=$(check_logs "$T/data/a")
[ "$nlogs" = 14 ] || fail "$nlogs task logs in a/logs, not 4 arrays x 3 + 2 jobs"
(cd "$T/data" && WORK=a TRAIN=1 "$RECIPE" submit > "$T/a2.out")
[ ! -s "$T/a2.out" ] || fail "a re-run of a complete chain submitted: $(cat "$T/a2.out")"

step "3. label task 1 of 3 killed mid-run, recovered by re-running submit"
recipe_rel=$(realpath --relative-to="$T/elsewhere" "$RECIPE")
# one request at a time: task 1's ~30 requests take ~6 s, time to kill it half-way
b() { (cd "$T/elsewhere" && DATA_DIR=../data WORK=b LABEL_ARGS="--api-base $URL --model fake-labeller --concurrency 1" \
  "$recipe_rel" "$@"); }
answers() {  # answers in a label task's request cache so far
  "$PY" -c 'import sqlite3, sys
try:
    print(sqlite3.connect(sys.argv[1], timeout=5).execute("select count(*) from answers").fetchone()[0])
except sqlite3.Error:
    print(0)' "$1"
}
b submit > "$T/b.out"
cat "$T/b.out" >&2
label_job=$(awk '$1 == "label" { print $2 }' "$T/b.out")
b submit > "$T/b-again.out"
[ ! -s "$T/b-again.out" ] || fail "submit while the chain is in flight submitted again: $(cat "$T/b-again.out")"
cache1=$T/data/b/cache/label-1-of-3.sqlite
for ((i = 0; i < 600; i++)); do
  [ -f "$cache1" ] && [ "$(answers "$cache1")" -ge 5 ] && break
  sleep 0.1
done
grep -qx "${label_job}_1 RUNNING" <<< "$(squeue -h -r -o '%i %T')" || fail "label task 1 is not running"
scancel "${label_job}_1"
wait_queue   # the dependants are cancelled with it (--kill-on-invalid-dep), not left pending forever
before=$(answers "$cache1")
echo "label task 1 was killed with $before answers in its request cache" >&2
rc=0
b status > "$T/b-status.txt" 2>&1 || rc=$?
cat "$T/b-status.txt" >&2
[ "$rc" = 1 ] || fail "status after the kill exited $rc, not 1"
grep -Eq '^label +3 +2 +0 +0 +1  1$' "$T/b-status.txt" || fail "status does not show label task 1 failed"
grep -Eq 'label task 1: exited exit=[0-9]+ signal=TERM' "$T/b-status.txt" || fail "status does not say how task 1 ended"
grep -Eq '^tokenize +3 +0 +0 +0 +0  0-2$' "$T/b-status.txt" || fail "status does not show tokenize missing"
# a pending job left by an older submit, waiting forever on the failed task (DependencyNeverSatisfied)
stale=$(sbatch --parsable --job-name=phi-apply --comment="phitools-recipe $T/data/b" --array=2 -o /dev/null \
  --dependency="afterok:${label_job}_1" --wrap true)
for ((i = 0; i < 60; i++)); do
  grep -qx "${stale}_2 DependencyNeverSatisfied" <<< "$(squeue -h -r -o '%i %r')" && break
  sleep 0.5
done
grep -qx "${stale}_2 DependencyNeverSatisfied" <<< "$(squeue -h -r -o '%i %r')" || fail "the injected job is not DependencyNeverSatisfied"
b submit > "$T/b2.out" 2> "$T/b2.err"
cat "$T/b2.out" "$T/b2.err" >&2
grep -q "^label .*submitted --array=1 (N=3): job" "$T/b2.err" || fail "submit did not resubmit exactly task 1 of 3"
grep -q "cancelling 1 pending job(s) that waited on failed or replaced jobs: ${stale}_2" "$T/b2.err" ||
  fail "submit did not cancel the stale pending job"
wait_queue
b status >&2 || fail "status after the recovery is not complete"
grep -Eq '^\[recipe\] label task 1 of 3: exit [0-9]+ \(SIGTERM\)' "$T"/data/b/logs/phi-label-"${label_job}"_1.out ||
  fail "the killed task's log does not record its end"
cached=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["llm"]["usage"]["cached"])' \
  "$T/data/b/labeled/manifest-00001-of-00003.json")
echo "the re-run of label task 1 took $cached answers from its cache (the killed attempt had $before)" >&2
if [ "$before" -lt 1 ] || [ "$cached" -lt "$before" ]; then fail "the re-run re-sent requests its cache held"; fi

step "4. unsharded: local, N=1"
(cd "$T/data" && WORK=c N=1 "$RECIPE" local 2> "$T/c.err") || { tail -n 20 "$T/c.err" >&2; fail "local N=1 failed"; }

step "5. outputs"
(cd "$T/data" && "$PY" "$HERE/compare_outputs.py" same a b && "$PY" "$HERE/compare_outputs.py" union a c) >&2 ||
  fail "outputs differ"
step "passed"
echo "selftest: passed in $(($(date +%s) - T0))s" >&2
