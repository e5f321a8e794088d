#!/usr/bin/env bash
# Run every libFuzzer target in BUILD_DIR/tests/fuzz for SECONDS each, starting from
# its seed corpus (read-only; new inputs go to a scratch directory). A crash stops
# the run, leaves the reproducer in tests/fuzz/ and exits non-zero.
set -uo pipefail
build=${1:?build dir}
secs=${2:-60}
src=$(cd "$(dirname "$0")" && pwd)
shopt -s nullglob
targets=("$build"/tests/fuzz/fuzz_*)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets in $build/tests/fuzz"; exit 1; }
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t"); name=${name#fuzz_}
  scratch=$(mktemp -d)
  log=$(mktemp)
  dict=()
  [ -f "$src/corpus/$name.dict" ] && dict=(-dict="$src/corpus/$name.dict")
  echo "fuzz: $name for ${secs}s"
  "$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$src/" \
       "${dict[@]}" "$scratch" "$src/corpus/$name" >"$log" 2>&1
  status=$?
  grep -E 'stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY' "$log"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $name failed (status $status)"
    exit 1
  fi
  rm -rf "$scratch" "$log"
done
echo "fuzz: all targets ran clean"
