#!/usr/bin/env bash
# Usage: worker.sh NAME [WAIT_PID]. Waits for WAIT_PID (if given) to end, then takes jobs from queue.txt one at
# a time (flock), until the queue is empty.
cd /work/c1/runs/c1
[ -n "$2" ] && while kill -0 "$2" 2>/dev/null; do sleep 15; done
while true; do
  job=$(flock queue.lock bash -c 'head -n1 queue.txt; sed -i 1d queue.txt')
  [ -z "$job" ] && break
  echo "$(date -u +%H:%M:%S) $1 start $job" >> worker.log
  set -- "$1" "$2"; read -r recipe seed fold <<< "$job"
  bash job.sh $recipe $seed $fold > "${recipe}_s${seed}_f${fold}.log" 2>&1
  echo "$(date -u +%H:%M:%S) $1 done $job rc=$?" >> worker.log
done
