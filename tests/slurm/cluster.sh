#!/usr/bin/env bash
# A private one-node Slurm cluster from Debian's slurm-wlm and munge, for testing the recipe for real.
#
#   tests/slurm/cluster.sh up DIR      # start munged, slurmctld and slurmd (no systemd); prints `export SLURM_CONF=...`
#   tests/slurm/cluster.sh down DIR    # stop exactly the daemons `up` started (their pids are in DIR/pids/)
#
# Everything lives under DIR: its own munge key and socket, slurm.conf (this host's name, CPUs and memory,
# select/cons_tres, proctrack/linuxproc), free ports, state, spool and logs. Nothing system-wide is touched, so it
# can run beside a real Slurm or another copy of itself. slurmd runs jobs as their owner, so this needs root;
# `up` exits 3 (and says why) when root, munged or the Slurm daemons are missing.
set -euo pipefail

die() { echo "cluster.sh: $1" >&2; exit "${2:-1}"; }

up() {
  local dir=$1
  [ "$(id -u)" = 0 ] || die "needs root (slurmd starts jobs as their user)" 3
  local b
  for b in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$b" > /dev/null || die "$b not found (apt-get install -y slurm-wlm munge)" 3
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/pids" "$dir/state" "$dir/spool" "$dir/log"
  [ -z "$(ls -A "$dir/pids")" ] || die "$dir already runs a cluster (tests/slurm/cluster.sh down $dir)"

  # munge: a fresh key, a private socket
  head -c 1024 /dev/urandom > "$dir/munge.key"
  chmod 600 "$dir/munge.key"
  munged --foreground --force --socket="$dir/munge.sock" --key-file="$dir/munge.key" \
    --pid-file="$dir/munged.pid" --seed-file="$dir/munge.seed" > "$dir/log/munged.log" 2>&1 &
  echo $! > "$dir/pids/munged"
  wait_for "munged's socket" test -S "$dir/munge.sock"

  local host cpus mem ports
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  ports=$(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
  read -r ctld_port d_port <<< "$ports"
  cat > "$dir/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh: a one-node test cluster
ClusterName=phitest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=200000
KillWait=5
MinJobAge=${MIN_JOB_AGE:-300}
DefMemPerCPU=512
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -D -i -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 &
  echo $! > "$dir/pids/slurmctld"
  slurmd -D -f "$SLURM_CONF" -N "$host" > "$dir/log/slurmd.out" 2>&1 &
  echo $! > "$dir/pids/slurmd"
  if ! wait_for "the node to come up" node_idle; then
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    down "$dir"
    die "the cluster did not come up (logs above)"
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

queue_empty() { [ -z "$(squeue -h -o %i 2>/dev/null)" ]; }

node_idle() { grep -qx 'idle' <<< "$(sinfo -h -o '%t' 2> /dev/null)"; }

wait_for() {  # WHAT CMD...: poll up to 30 s
  local what=$1 i
  shift
  for ((i = 0; i < 150; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  echo "cluster.sh: timed out waiting for $what" >&2
  return 1
}

down() {  # cancel the cluster's jobs, then TERM (KILL after 10 s) exactly the daemons `up` recorded
  local dir=$1 name pid i
  [ -d "$dir/pids" ] || return 0
  if [ -f "$dir/pids/slurmctld" ] && [ -f "$dir/slurm.conf" ]; then
    # every job in this private cluster is ours: let slurmd end their steps before it stops
    export SLURM_CONF="$dir/slurm.conf"
    scancel --user="$(id -un)" 2>/dev/null || true
    wait_for "the queue to empty" queue_empty || true
  fi
  for name in slurmd slurmctld munged; do
    [ -f "$dir/pids/$name" ] || continue
    pid=$(cat "$dir/pids/$name")
    if [ -d "/proc/$pid" ] && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
      if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir/pids/$name"
  done
}

case ${1:-} in
  up) up "${2:?usage: cluster.sh up DIR}" ;;
  down) down "${2:?usage: cluster.sh down DIR}" ;;
  *) die "usage: cluster.sh up|down DIR" 2 ;;
esac
