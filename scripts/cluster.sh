#!/usr/bin/env bash
# A real SLURM cluster and PostgreSQL server on this one machine, for the lab's cluster paths and their tests.
#
#   scripts/cluster.sh up       install (Debian packages, once) and start everything; seconds once installed
#   scripts/cluster.sh status   what runs; prints the Optuna storage URL (postgresql+psycopg://...) on a line of its own
#   scripts/cluster.sh down     stop everything `up` started (no stray processes)
#   scripts/cluster.sh run -- CMD...   up if not running, CMD, then down again if this call started it (even when
#                                      CMD fails); exits with CMD's status. `make test` runs pytest this way.
#
# What it starts (no systemd needed: daemons are started directly, each with a pid file under $LAB_CLUSTER_DIR):
#   munged; MariaDB (127.0.0.1 and a socket) holding SLURM's accounting, and slurmdbd on it, so `sacct` answers and
#   submitit can tell a failed or cancelled job from a running one; slurmctld; two slurmd on this host: `lab-node1`
#   (CPUs = nproc, partition `lab`, the default) and `lab-node2` (with lab-node1 in partition `multinode`, for 2-node
#   DDP); PostgreSQL 127.0.0.1 only, with a database and user `lab` for Optuna studies.
# On a real cluster none of this is yours to run: see docs/cluster.md (partition, account, GPUs, shared filesystem).
set -euo pipefail

STATE=${LAB_CLUSTER_DIR:-/var/lib/lab-cluster}
PG_PORT=${LAB_PG_PORT:-55432}
DB_PORT=${LAB_MARIADB_PORT:-53306}
PG_USER=lab
PG_PASSWORD=${LAB_PG_PASSWORD:-lab}
PG_DB=lab
SLURM_CONF=/etc/slurm/slurm.conf
MARK="# written by the lab's scripts/cluster.sh"
NODES=(lab-node1 lab-node2)
PACKAGES=(slurm-wlm slurmdbd munge postgresql mariadb-server)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
storage_url() { echo "postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"; }

# ---------------------------------------------------------------------------------------------------------- install
install() {
  local missing=()
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null || missing+=(slurm-wlm)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v munged >/dev/null || missing+=(munge)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}; run as root (it installs them with apt-get)."
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get here: install ${PACKAGES[*]} yourself."
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  # policy-rc.d: the packages' own init scripts must not start daemons; this script starts them its own way
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.lab && chmod +x /usr/sbin/policy-rc.d.lab
  local had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.lab /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.lab
}

# ---------------------------------------------------------------------------------------------------------- helpers
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up within ${secs}s; its log is under $STATE/log/"
}

stop_pid() {  # stop_pid PIDFILE NAME
  local f=$1 pid
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

# ---------------------------------------------------------------------------------------------------------- configs
write_configs() {
  if [ -f "$SLURM_CONF" ] && ! grep -qF "$MARK" "$SLURM_CONF"; then
    die "$SLURM_CONF exists and is not the lab's: this machine has its own SLURM. Use it directly (docs/cluster.md)."
  fi
  local cpus mem host
  cpus=$(nproc); host=$(hostname)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /etc/slurm "$STATE"/{log,slurmctld,slurmd-lab-node1,slurmd-lab-node2}
  cat > "$SLURM_CONF" <<EOF
$MARK
ClusterName=lab
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# a requeued job starts again after cred_expire (120 s by default)
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
# no cgroups in a container without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
KillWait=10
InactiveLimit=0
SchedulerParameters=sched_interval=2,bf_interval=2
# accounting in slurmdbd: sacct answers (submitit reads job states with it)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
NodeName=lab-node1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=lab-node2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=lab Nodes=lab-node1 Default=YES MaxTime=INFINITE State=UP
PartitionName=multinode Nodes=lab-node1,lab-node2 MaxTime=INFINITE State=UP
EOF
  cat > /etc/slurm/cgroup.conf <<EOF
$MARK
CgroupPlugin=cgroup/v1
EOF
  cat > /etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  # the second node's name must resolve to this host (Lightning's DDP takes its main address from SLURM_NODELIST)
  if ! grep -q "lab-node2" /etc/hosts; then
    [ -z "$(tail -c 1 /etc/hosts)" ] || echo >> /etc/hosts  # the file may not end with a newline
    printf '127.0.0.1 lab-node1 lab-node2 %s\n' "$MARK" >> /etc/hosts
  fi
}

# ---------------------------------------------------------------------------------------------------------- daemons
start_munge() {
  pid_alive "$STATE/munged.pid" && return 0
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge:munge /run/munge /var/log/munge /var/lib/munge
  rm -f /run/munge/munged.lab.pid
  runuser -u munge -- munged --pid-file=/run/munge/munged.lab.pid 2>>"$STATE/log/munged.log" || true
  # munged writes its pid file as the munge user: copy it beside the others
  wait_for 10 munged test -s /run/munge/munged.lab.pid
  cp /run/munge/munged.lab.pid "$STATE/munged.pid"
  wait_for 10 munged munge -n
}

start_mariadb() {
  local dir=$STATE/mariadb
  if ! pid_alive "$STATE/mariadb.pid"; then
    if [ ! -d "$dir/mysql" ]; then
      mkdir -p "$dir"; chown mysql:mysql "$dir"
      mariadb-install-db --user=mysql --datadir="$dir" --auth-root-authentication-method=socket \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
    fi
    mkdir -p "$STATE/run"; chown mysql:mysql "$STATE/run"
    nohup mariadbd --user=mysql --datadir="$dir" --socket="$STATE/run/mariadb.sock" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadb.pid" --log-error="$STATE/log/mariadb.log" \
      --innodb-buffer-pool-size=64M --skip-name-resolve >/dev/null 2>&1 &
    echo $! > "$STATE/mariadb.pid"
    wait_for 30 MariaDB mariadb --socket="$STATE/run/mariadb.sock" -e "SELECT 1"
  fi
  mariadb --socket="$STATE/run/mariadb.sock" -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurm() {
  if ! pid_alive "$STATE/slurmdbd.pid"; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -i -Q add cluster lab >/dev/null 2>&1 || true
  if ! pid_alive "$STATE/slurmctld.pid"; then
    slurmctld
    wait_for 30 slurmctld scontrol ping
  fi
  local node
  for node in "${NODES[@]}"; do
    pid_alive "$STATE/slurmd-$node.pid" || slurmd -N "$node"
  done
  for node in "${NODES[@]}"; do  # a node left DOWN by an earlier stop comes back
    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
  done
  wait_for 60 "the SLURM nodes" sh -c '[ "$(sinfo -h -N -p multinode -t idle,mix,alloc -o %N | sort -u | wc -l)" = 2 ]'
}

start_postgres() {
  local bin dir=$STATE/postgres
  bin=$(pg_bin)
  mkdir -p "$STATE/pgsock"; chown postgres:postgres "$STATE/pgsock"
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir" --auth-local=peer --auth-host=scram-sha-256 -U postgres \
      >"$STATE/log/initdb.log" 2>&1
  fi
  if ! runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    touch "$STATE/log/postgres.log"; chown postgres:postgres "$STATE/log/postgres.log"
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -l "$STATE/log/postgres.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $STATE/pgsock -c max_connections=200" >/dev/null
  fi
  local psql=("$bin/psql" -h "$STATE/pgsock" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$(runuser -u postgres -- "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" != 1 ]; then
    runuser -u postgres -- "${psql[@]}" -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  if [ "$(runuser -u postgres -- "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" != 1 ]; then
    runuser -u postgres -- "${psql[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

up() {
  install
  [ "$(id -u)" = 0 ] || die "run as root: it starts system daemons (SLURM, munge, MariaDB, PostgreSQL)."
  write_configs
  start_munge
  start_mariadb
  start_slurm
  start_postgres
  log "up: SLURM (sinfo below) and PostgreSQL at $(storage_url)"
  sinfo >&2
}

down() {
  [ -d "$STATE" ] || return 0
  if command -v scancel >/dev/null && pid_alive "$STATE/slurmctld.pid"; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true  # no job left running on the nodes
    for _ in $(seq 50); do [ -z "$(squeue -h -t running,completing 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  local node
  for node in "${NODES[@]}"; do stop_pid "$STATE/slurmd-$node.pid"; done
  pkill -f '^slurmstepd' 2>/dev/null || true
  stop_pid "$STATE/slurmctld.pid"
  stop_pid "$STATE/slurmdbd.pid"
  if [ -f "$STATE/postgres/PG_VERSION" ] && runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$STATE/postgres" status >/dev/null 2>&1; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$STATE/postgres" -m fast -w stop >/dev/null \
      || log "PostgreSQL did not stop cleanly; see $STATE/log/postgres.log"
  fi
  stop_pid "$STATE/mariadb.pid"
  stop_pid "$STATE/munged.pid"; rm -f /run/munge/munged.lab.pid
  log "down"
}

status() {  # exit status 0 when everything runs
  local all=0 name state
  for name in munged mariadb slurmdbd slurmctld slurmd-lab-node1 slurmd-lab-node2; do
    if pid_alive "$STATE/$name.pid"; then state=up; else state=down; all=1; fi
    printf '%-18s %s\n' "$name:" "$state"
  done
  if runuser -u postgres -- "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then state=up
  else state=down; all=1; fi
  printf '%-18s %s\n' "postgresql:" "$state"
  [ $all = 1 ] || sinfo
  echo "Optuna storage (hydra.sweeper.storage):"
  storage_url
  return $all
}

is_up() { status >/dev/null 2>&1; }

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  url) storage_url ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: $0 run -- COMMAND..."
    started=0
    # stop what this call started however CMD ends (failure, Ctrl-C, CI's kill), a half-started cluster included
    trap '[ $started = 1 ] && (down || log "stopping the cluster failed")' EXIT
    trap 'exit 130' INT; trap 'exit 143' TERM
    if ! is_up; then
      started=1
      # outside CI, a machine where the services cannot start (not root, no apt) still runs the other tests: the
      # cluster tests skip, saying so; in CI they must run
      if ! bash "$0" up; then  # its own process, so that `set -e` holds inside it
        [ -z "${CI:-}" ] || die "the cluster did not come up (CI=$CI): the cluster tests cannot run"
        log "the cluster did not come up: tests marked 'cluster' will be skipped"
      fi
    fi
    rc=0
    "$@" || rc=$?
    exit $rc ;;
  *) echo "usage: $0 up|down|status|url|run -- CMD..." >&2; exit 2 ;;
esac
