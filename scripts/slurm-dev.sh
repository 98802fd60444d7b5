#!/usr/bin/env bash
# A single-node Slurm cluster for trying `runner sweep --slurm` and for the tests.
#
#   scripts/slurm-dev.sh start    install (when root and missing), configure, start munged, slurmctld, slurmd
#   scripts/slurm-dev.sh status   say what runs and whether the node takes jobs
#   scripts/slurm-dev.sh stop     stop only the daemons this script started
#
# Everything lives under $SLURM_DEV_DIR (default /tmp/runner-slurm-dev): slurm.conf, state, logs,
# pid files. Starting twice is harmless: running daemons are kept. Exits 0 when the node takes
# jobs, 2 when Slurm cannot be had here (not root and not installed, no apt), 1 on other failures.
set -euo pipefail

DIR="${SLURM_DEV_DIR:-/tmp/runner-slurm-dev}"
CONF="$DIR/etc/slurm.conf"

say() { echo "slurm-dev: $*" >&2; }

alive() { # alive PIDFILE
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    say "Slurm is not installed and this is not root: cannot install it"; exit 2
  fi
  if ! command -v apt-get >/dev/null; then
    say "Slurm is not installed and there is no apt-get to install it"; exit 2
  fi
  say "installing slurmctld slurmd slurm-client munge"
  apt-get update -qq >/dev/null || true
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null; then
    say "apt-get install failed"; exit 2
  fi
}

configure() {
  mkdir -p "$DIR/etc" "$DIR/state/ctld" "$DIR/state/d" "$DIR/log" "$DIR/run"
  local node cpus mem host
  host="$(hostname -s)"
  # The node line as slurmd sees this machine (CPUs, sockets, memory).
  node="$(slurmd -C 2>/dev/null | head -n 1 || true)"
  if [ -z "$node" ]; then
    cpus="$(nproc)"
    node="NodeName=$host CPUs=$cpus"
  fi
  # Leave room for the system: the memory slurmd reports, less 10%.
  mem="$(echo "$node" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
  if [ -n "$mem" ]; then
    node="$(echo "$node" | sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/")"
  fi
  cat >"$CONF.tmp" <<EOF
ClusterName=runnerdev
SlurmctldHost=$host
SlurmctldPort=${SLURM_DEV_CTLD_PORT:-6817}
SlurmdPort=${SLURM_DEV_D_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
DependencyParameters=kill_invalid_depend
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
MaxArraySize=10001
KillWait=5
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  if alive "$DIR/run/munged.pid"; then return 0; fi
  if pgrep -x munged >/dev/null 2>&1 && [ -S /run/munge/munge.socket.2 ]; then
    return 0 # a munged we did not start already serves this machine
  fi
  mkdir -p /run/munge
  chown munge:munge /run/munge 2>/dev/null || true
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1 || true; fi
    if [ ! -s /etc/munge/munge.key ]; then
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  if [ "$(id -u)" = 0 ]; then
    su -s /bin/sh munge -c "munged --pid-file=/run/munge/dev-munged.pid" 9>&- \
      || { say "munged did not start"; exit 1; }
    cp /run/munge/dev-munged.pid "$DIR/run/munged.pid"
  else
    munged 9>&- || { say "munged did not start"; exit 1; }
    pgrep -nx munged >"$DIR/run/munged.pid"
  fi
}

start_daemons() {
  export SLURM_CONF="$CONF"
  if ! alive "$DIR/run/slurmctld.pid"; then
    slurmctld -f "$CONF" 9>&- || { say "slurmctld did not start: $(tail -n 5 "$DIR/log/slurmctld.log" 2>/dev/null)"; exit 1; }
  fi
  if ! alive "$DIR/run/slurmd.pid"; then
    slurmd -f "$CONF" 9>&- || { say "slurmd did not start: $(tail -n 5 "$DIR/log/slurmd.log" 2>/dev/null)"; exit 1; }
  fi
  # Wait until the node takes jobs.
  local i
  for i in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
      say "up (SLURM_CONF=$CONF)"
      return 0
    fi
    if [ "$i" = 10 ]; then scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true; fi
    sleep 0.5
  done
  say "the node does not take jobs: $(sinfo -h 2>&1 | head -n 3)"
  exit 1
}

stop() {
  local name
  for name in slurmd slurmctld munged; do
    if alive "$DIR/run/$name.pid"; then
      kill "$(cat "$DIR/run/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 40); do alive "$DIR/run/$name.pid" || break; sleep 0.25; done
    fi
    rm -f "$DIR/run/$name.pid"
  done
  say "stopped"
}

case "${1:-}" in
  start)
    install
    mkdir -p "$DIR"
    # One start at a time (tests start it concurrently); the daemons do not inherit the lock.
    exec 9>"$DIR/.start.lock"
    flock 9
    [ -f "$CONF" ] || configure
    start_munge
    start_daemons
    echo "export SLURM_CONF=$CONF"
    ;;
  stop) stop ;;
  status)
    for name in munged slurmctld slurmd; do
      if alive "$DIR/run/$name.pid"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: not started here"; fi
    done
    [ -f "$CONF" ] && SLURM_CONF="$CONF" sinfo 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
