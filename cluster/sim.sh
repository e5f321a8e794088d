#!/usr/bin/env bash
# Runs the deterministic Raft simulator over SEEDS seeds (make sim SEEDS=N).
#   bash cluster/sim.sh <build-dir> <seeds> [first-seed]
# Seeds are split across two processes. A failing seed is printed with the command
# that replays it with a readable trace.
set -uo pipefail
build=${1:?build dir}
seeds=${2:-20000}
first=${3:-1}
bin="$build/cluster/kvsim"
[ -x "$bin" ] || { echo "sim: $bin is not built"; exit 1; }
jobs=2
per=$(( (seeds + jobs - 1) / jobs ))
pids=()
logs=()
for ((j = 0; j < jobs; j++)); do
  start=$(( first + j * per ))
  n=$(( seeds - j * per ))
  (( n > per )) && n=$per
  (( n <= 0 )) && break
  log=$(mktemp)
  logs+=("$log")
  "$bin" --seed "$start" --seeds "$n" >"$log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "${logs[$i]}"
  rm -f "${logs[$i]}"
done
if [ "$status" -eq 0 ]; then
  echo "sim: all $seeds seeds passed"
else
  echo "sim: FAILED (see the seeds above; replay one with the command printed)"
fi
exit "$status"
