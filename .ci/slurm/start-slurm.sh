#!/usr/bin/env bash
# .ci/slurm/start-slurm.sh - a real one-node Slurm on 127.0.0.1 for nasflow's
# integration test (tests/slurm.rs). Debian 12 packages (slurmctld, slurmd,
# slurm-client, munge), no systemd, run as root. Safe to run twice: it only
# starts what is not already answering, and records the PIDs of what it
# started in $NASFLOW_SLURM_BASE/pids so stop-slurm.sh stops exactly those.
#
# No accounting database (sacct fails): nasflow then reads how a job ended
# from `scontrol show job`, which keeps finished jobs for MinJobAge.
set -euo pipefail
BASE=${NASFLOW_SLURM_BASE:-/tmp/nasflow-slurm}
PIDS=$BASE/pids
say() { echo "[start-slurm] $*"; }
fail() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (it installs packages and starts daemons)"
# until SECONDS CMD...: retry CMD every 0.2 s
until_ok() { local n=$(( $1 * 5 )); shift; until "$@" >/dev/null 2>&1; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.2; done; }
# ours NAME: true when the pid we recorded for NAME is alive and is NAME
ours() { local f=$PIDS/$1.pid; [ -s "$f" ] && [ "$(cat /proc/"$(cat "$f")"/comm 2>/dev/null)" = "$1" ]; }

# 1. packages (blocking the init scripts, which would start stock daemons)
need=""
for p in munge slurm-client slurmctld slurmd; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  say "installing:$need"
  blocked=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; blocked=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  [ $blocked = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
mkdir -p "$PIDS" "$BASE/log" "$BASE/ctld" "$BASE/d" /etc/slurm

# 2. munge (authentication between the daemons and the client commands)
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  until_ok 10 sh -c 'munge -n | unmunge' || fail "munged did not answer"
  cp /run/munge/munged.pid "$PIDS/munged.pid"
  say "munged started"
fi

# 3. slurm.conf: one node, one partition. DefMemPerCPU so that a job does not
# take the whole node's memory (jobs would run one at a time); no scheduling
# delay so a test's jobs start within a second.
cpus=$(nproc)
mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
per=$(( mem / cpus )); [ $per -gt 1024 ] && per=1024
conf="# written by nasflow .ci/slurm/start-slurm.sh
ClusterName=nasflow-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$per
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=3600
KillWait=2
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/d
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]; then
  if [ -f /etc/slurm/slurm.conf ] && ! head -1 /etc/slurm/slurm.conf | grep -q "^# written by nasflow"; then
    # Someone else's configuration: a cluster that answers is not ours to replace.
    if sinfo -h >/dev/null 2>&1; then say "a Slurm with another configuration answers already: using it"; exit 0; fi
    cp -p /etc/slurm/slurm.conf /etc/slurm/slurm.conf.before-nasflow
  fi
  printf '%s\n' "$conf" > /etc/slurm/slurm.conf
  # daemons we started earlier read the old file: restart them
  for d in slurmd slurmctld; do ours $d && kill "$(cat "$PIDS/$d.pid")" && sleep 1; done
fi

# 4. daemons (Slurm's own pid files land in $PIDS: they are ours)
if ! ours slurmctld; then
  slurmctld || fail "slurmctld did not start (see $BASE/log/slurmctld.log)"
  until_ok 30 sh -c 'scontrol ping | grep -q UP' || fail "slurmctld does not answer (see $BASE/log/slurmctld.log)"
  say "slurmctld started"
fi
if ! ours slurmd; then
  slurmd -N localhost || fail "slurmd did not start (see $BASE/log/slurmd.log)"
  say "slurmd started"
fi
usable() { sinfo -h -n localhost -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }
if ! until_ok 30 usable; then
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  until_ok 10 usable || fail "the node is not usable: $(sinfo -h -N -o '%N %T %E')"
fi
say "ready: $(sinfo -h -o '%P %a %D %T')"
