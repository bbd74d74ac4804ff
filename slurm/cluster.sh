#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests, CI and for trying the Slurm path by hand.
#
#   bash slurm/cluster.sh install             apt-get install slurmctld slurmd slurm-client munge (if missing)
#   bash slurm/cluster.sh start               install if needed, start munged, slurmctld, slurmd; wait until idle
#   bash slurm/cluster.sh stop [--cancel-jobs] stop slurmd, slurmctld (and munged if this script started it)
#   bash slurm/cluster.sh status              print sinfo/squeue; exit 0 if healthy, 1 if not
#
# Needs root and Debian/Ubuntu packages (Slurm 22.05 on Debian 12). No systemd: daemons are started directly.
#
# Choices:
# - Accounting: no slurmdbd/MariaDB. `sacct` then fails ("accounting storage is disabled") and submitit would
#   report every job as UNKNOWN (a job that dies without a result makes job.result() wait forever). Instead
#   slurm/sacct_shim.sh is installed as /usr/local/bin/sacct (before /usr/bin in PATH). It answers sacct's
#   `-o FIELDS --parsable2 -j IDS` queries (what submitit sends) from `scontrol show job` (jobs are kept
#   MinJobAge=3600 s after they end) and, for older jobs, from the jobcomp/filetxt log
#   /var/log/slurm/jobcomp.log. When slurm.conf enables accounting_storage/slurmdbd, the shim just execs
#   the real /usr/bin/sacct. Starting slurmdbd+MariaDB would cost a larger install and slower start for
#   nothing the tests need.
# - CPUs: the node is declared with CPUs=max(nproc, 8) (SlurmdParameters=config_overrides), override with
#   LLADA_SLURM_CPUS. On a 2-core machine this lets arrays of 4+ small 1-CPU jobs run at once
#   (oversubscribing the real cores); TaskPlugin=task/none does no CPU binding, so nothing is pinned.
# - SelectTypeParameters=CR_CPU (memory is NOT a consumable resource; with CR_*_Memory and no DefMemPerCPU
#   every job would take the whole node's memory and jobs would run one at a time).
# - Slurm 22.05 has no CgroupPlugin=disabled: no cgroup.conf, ProctrackType=proctrack/linuxproc,
#   TaskPlugin=task/none. Memory limits are not enforced.
# - AuthInfo=cred_expire=10: a requeued job can start again after ~10 s instead of 120 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
STATE_DIR=/run/llada-slurm # markers of what this script started
SHIM_SRC="$HERE/sacct_shim.sh"
SHIM_DST=/usr/local/bin/sacct
MARKER="# Managed by llada_lightning slurm/cluster.sh; rewritten on each start."
PACKAGES=(slurmctld slurmd slurm-client munge)
START_TIMEOUT="${LLADA_SLURM_START_TIMEOUT:-60}"

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { echo "[cluster.sh] $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "'$1' needs root (it installs packages, writes /etc/slurm and starts daemons)"
}

# ---------------------------------------------------------------------------------------------------- install
missing_packages() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || echo "$p"
  done
}

cmd_install() {
  local missing
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]})) || return 0
  need_root install
  command -v apt-get >/dev/null || {
    log "ERROR: apt-get not found; install ${missing[*]} by hand"
    exit 3
  }
  log "installing ${missing[*]} (apt-get) ..."
  local t0=$SECONDS aptlog policy_tmp=0
  aptlog=$(mktemp /tmp/cluster-sh-apt.XXXXXX)
  # Keep maintainer scripts from starting daemons through invoke-rc.d (without systemd they would start
  # with no slurm.conf); we start them ourselves.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_tmp=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install --no-install-recommends)
  local ok=0
  if "${apt[@]}" "${missing[@]}" >"$aptlog" 2>&1; then
    ok=1
  else
    # Stale or missing package lists: update once and retry.
    log "apt-get install failed; running apt-get update and retrying"
    if apt-get -qq -o DPkg::Lock::Timeout=300 update >>"$aptlog" 2>&1 && "${apt[@]}" "${missing[@]}" >>"$aptlog" 2>&1; then ok=1; fi
  fi
  ((policy_tmp)) && rm -f /usr/sbin/policy-rc.d
  if ((!ok)); then
    tail -n 20 "$aptlog" >&2
    log "ERROR: could not install ${missing[*]} (log: $aptlog)"
    exit 3
  fi
  rm -f "$aptlog"
  log "installed in $((SECONDS - t0)) s"
}

# ------------------------------------------------------------------------------------------------------ munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_ok; then return 0; fi
  local key=/etc/munge/munge.key
  mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge "$LOG_DIR"
  if [[ ! -s $key ]]; then
    log "creating munge key $key"
    if ! mungekey --create --keyfile="$key" 2>/dev/null; then
      dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
  fi
  local pidfile=/run/munge/munged.pid
  if pid_alive "$pidfile" munged; then
    log "munged is running but not answering; restarting it"
    kill_pidfile "$pidfile" munged
  fi
  log "starting munged"
  if id munge >/dev/null 2>&1; then
    chown munge:munge /etc/munge "$key" /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge
    chmod 400 "$key"
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOG_DIR/munged.stdout" 2>&1
  else
    chmod 400 "$key"
    /usr/sbin/munged --force </dev/null >>"$LOG_DIR/munged.stdout" 2>&1
  fi
  touch "$STATE_DIR/munged.started"
  local i
  for ((i = 0; i < 50; i++)); do
    munge_ok && return 0
    sleep 0.2
  done
  tail -n 20 "$LOG_DIR/munged.stdout" /var/log/munge/munged.log >&2 2>/dev/null || true
  die "munged did not start"
}

# ---------------------------------------------------------------------------------------------------- daemons
# pid_alive PIDFILE NAME: the pid file names a live process called NAME.
pid_alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm ]] || return 1
  [[ $(</proc/"$pid"/comm) == "$2" ]] || return 1
  # A zombie (exited, not yet reaped: some container inits never reap) is not alive.
  local stat
  stat=$(</proc/"$pid"/stat) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# kill_pidfile PIDFILE NAME: SIGTERM the process named in PIDFILE, wait up to 15 s, then SIGKILL.
kill_pidfile() {
  local pid i
  pid_alive "$1" "$2" || return 0
  pid=$(<"$1")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 75; i++)); do
    pid_alive "$1" "$2" || {
      rm -f "$1"
      return 0
    }
    sleep 0.2
  done
  log "$2 (pid $pid) did not stop after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
  rm -f "$1"
}

node_name() { hostname -s; }

node_cpus() {
  local n
  n=$(nproc)
  if [[ -n ${LLADA_SLURM_CPUS:-} ]]; then
    [[ $LLADA_SLURM_CPUS =~ ^[1-9][0-9]*$ ]] || die "LLADA_SLURM_CPUS must be a positive integer"
    echo "$LLADA_SLURM_CPUS"
  elif ((n < 8)); then
    echo 8
  else
    echo "$n"
  fi
}

node_memory_mb() {
  # About 90 % of MemTotal (slurmd refuses a RealMemory above what it measures).
  awk '/^MemTotal:/ { m = int($2 / 1024 * 0.9); if (m < 256) m = 256; print m }' /proc/meminfo
}

render_conf() {
  local node cpus mem
  node=$(node_name)
  cpus=$(node_cpus)
  mem=$(node_memory_mb)
  cat <<EOF
$MARKER
# Single-node cluster: see slurm/README.md.
ClusterName=llada
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (Slurm 22.05 has no CgroupPlugin=disabled; there is no cgroup.conf).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: /usr/local/bin/sacct (slurm/sacct_shim.sh) answers from scontrol and the jobcomp log.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=3600
JobRequeue=1
# CPUs may exceed the real core count (see the top of slurm/cluster.sh).
SlurmdParameters=config_overrides
NodeName=${node} NodeAddr=127.0.0.1 NodeHostname=${node} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
}

# write_conf: writes slurm.conf if needed; sets CONF_CHANGED=1 if it changed, 0 if it was up to date.
# (Not called in an `if`: set -e is off there, and a failing $(...) would go unnoticed.)
write_conf() {
  local new
  CONF_CHANGED=0
  node_cpus >/dev/null # validates LLADA_SLURM_CPUS
  new=$(render_conf)
  if [[ -f $CONF ]] && [[ $(<"$CONF") == "$new" ]]; then return 0; fi
  CONF_CHANGED=1
  mkdir -p "$CONF_DIR"
  if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    local bak
    bak="$CONF.bak.$(date +%Y%m%d-%H%M%S)"
    cp -p "$CONF" "$bak"
    log "an existing $CONF not written by this script was saved as $bak"
  fi
  printf '%s\n' "$new" >"$CONF.tmp"
  chmod 644 "$CONF.tmp"
  mv -f "$CONF.tmp" "$CONF"
  log "wrote $CONF"
}

install_shim() {
  [[ -f $SHIM_SRC ]] || die "missing $SHIM_SRC"
  if ! cmp -s "$SHIM_SRC" "$SHIM_DST"; then
    mkdir -p "$(dirname "$SHIM_DST")"
    install -m 755 "$SHIM_SRC" "$SHIM_DST"
    log "installed the sacct shim as $SHIM_DST"
  fi
}

ensure_hostname_resolves() {
  local node
  node=$(node_name)
  if ! getent hosts "$node" >/dev/null 2>&1; then
    log "adding '127.0.0.1 $node' to /etc/hosts (the host name did not resolve)"
    echo "127.0.0.1 $node" >>/etc/hosts
  fi
}

# node_state: the node's state as sinfo prints it (e.g. idle, mixed, down*, drained), or empty.
node_state() { sinfo -h -N -n "$(node_name)" -o '%T' 2>/dev/null | head -n1 || true; }

healthy() {
  pid_alive "$CTLD_PID" slurmctld || return 1
  pid_alive "$SLURMD_PID" slurmd || return 1
  scontrol ping >/dev/null 2>&1 || return 1
  case "$(node_state)" in
  idle | mixed | allocated | completing) return 0 ;;
  *) return 1 ;;
  esac
}

show_logs() {
  local f
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.stdout" "$LOG_DIR/slurmd.stdout"; do
    if [[ -s $f ]]; then
      echo "----- tail $f" >&2
      tail -n 15 "$f" >&2
    fi
  done
}

start_daemons() {
  mkdir -p "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
  if ! pid_alive "$CTLD_PID" slurmctld; then
    log "starting slurmctld"
    slurmctld -i </dev/null >"$LOG_DIR/slurmctld.stdout" 2>&1 || {
      show_logs
      die "slurmctld failed to start"
    }
  fi
  if ! pid_alive "$SLURMD_PID" slurmd; then
    log "starting slurmd"
    slurmd </dev/null >"$LOG_DIR/slurmd.stdout" 2>&1 || {
      show_logs
      die "slurmd failed to start"
    }
  fi
}

wait_healthy() {
  local t0=$SECONDS state resumed=0
  while ((SECONDS - t0 < START_TIMEOUT)); do
    if healthy; then return 0; fi
    state=$(node_state)
    # A node left down/drained by an earlier run: resume it once slurmd is up.
    if ((!resumed)) && ((SECONDS - t0 >= 3)) && [[ $state =~ ^(down|drain|drained|draining|fail)$ ]]; then
      log "node is '$state'; resuming it"
      scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true
      resumed=1
    fi
    sleep 0.5
  done
  echo "----- sinfo" >&2
  sinfo -N -l >&2 2>&1 || true
  show_logs
  die "the cluster did not become healthy within ${START_TIMEOUT} s (node state: '$(node_state)')"
}

cmd_start() {
  need_root start
  cmd_install
  local t0=$SECONDS
  mkdir -p "$STATE_DIR"
  ensure_hostname_resolves
  start_munge
  install_shim
  write_conf
  if ((CONF_CHANGED)); then
    if pid_alive "$CTLD_PID" slurmctld || pid_alive "$SLURMD_PID" slurmd; then
      log "slurm.conf changed: restarting the daemons"
      stop_daemons
    fi
  elif healthy; then
    log "already running and healthy"
    return 0
  fi
  start_daemons
  wait_healthy
  log "cluster up in $((SECONDS - t0)) s: node $(node_name), $(node_cpus) CPUs, partition debug"
}

stop_daemons() {
  kill_pidfile "$SLURMD_PID" slurmd
  kill_pidfile "$CTLD_PID" slurmctld
}

cmd_stop() {
  local cancel=0
  [[ ${1:-} == --cancel-jobs ]] && cancel=1
  need_root stop
  if ((cancel)) && pid_alive "$CTLD_PID" slurmctld; then
    local ids
    ids=$(squeue -h -t pending,running,suspended,configuring,completing -o '%A' 2>/dev/null | tr '\n' ' ')
    if [[ -n ${ids// /} ]]; then
      log "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids || true
      sleep 2
    fi
  fi
  stop_daemons
  if [[ -f $STATE_DIR/munged.started ]]; then
    kill_pidfile /run/munge/munged.pid munged
    rm -f "$STATE_DIR/munged.started"
  fi
  if pgrep -x slurmstepd >/dev/null 2>&1; then
    log "note: job steps (slurmstepd) are still running; 'stop --cancel-jobs' cancels jobs first"
  fi
  log "stopped"
}

cmd_status() {
  local rc=0
  if healthy; then
    echo "slurm: healthy (node $(node_name), state $(node_state))"
  else
    rc=1
    echo "slurm: NOT healthy"
    pid_alive "$CTLD_PID" slurmctld && echo "  slurmctld: running" || echo "  slurmctld: not running"
    pid_alive "$SLURMD_PID" slurmd && echo "  slurmd: running" || echo "  slurmd: not running"
    munge_ok 2>/dev/null && echo "  munged: running" || echo "  munged: not running"
  fi
  if scontrol ping >/dev/null 2>&1; then
    sinfo || true
    squeue || true
  fi
  return "$rc"
}

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
