#!/usr/bin/env bash
# .ci/slurm/stop-slurm.sh - stop the daemons start-slurm.sh started (by the
# PIDs it recorded; nothing else), after cancelling the jobs left in the queue.
set -uo pipefail
BASE=${NASFLOW_SLURM_BASE:-/tmp/nasflow-slurm}
PIDS=$BASE/pids
ours() { local f=$PIDS/$1.pid; [ -s "$f" ] && [ "$(cat /proc/"$(cat "$f")"/comm 2>/dev/null)" = "$1" ]; }
if ours slurmctld; then
  left=$(squeue -h -o %A 2>/dev/null)
  [ -n "$left" ] && scancel $left 2>/dev/null
  for _ in $(seq 50); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
fi
for d in slurmd slurmctld munged; do
  if ours $d; then
    p=$(cat "$PIDS/$d.pid"); kill "$p"
    for _ in $(seq 50); do [ -d /proc/"$p" ] || break; sleep 0.2; done
    [ -d /proc/"$p" ] && kill -9 "$p"
    echo "[stop-slurm] stopped $d ($p)"
  fi
  rm -f "$PIDS/$d.pid"
done
exit 0
