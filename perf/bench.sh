#!/usr/bin/env bash
# perf/bench.sh BUILD_DIR: what `make bench` runs. It builds the benchmark binaries in
# BUILD_DIR, then runs perf/compare (kvd against redis-server and limit_server, pinned
# to core 0 with the client on core 1) with each client, kvbench and redis-benchmark,
# with persistence off for both servers, then with kvbench and appendfsync always for
# both (kvd's WAL against Redis's AOF), then perf/durability.py (kvd appendfsync always
# against kvd appendfsync no and Redis appendfsync always; restart time with 10M keys
# against Redis loading an RDB), then perf/eviction.py (SET throughput while evicting at
# a 64 MB maxmemory, kvd against redis-server), then perf/tracking.py (client-side
# caching: tracking readers and a writer, kvd against redis-server), then
# perf/functions.py (FCALL and EVALSHA against INCR, kvd against redis-server), and
# appends the tables to docs/PERFORMANCE.md.
#
# Environment: RUNS (3) runs per cell and server; COMPARE_ARGS extra perf/compare
# arguments (e.g. "--servers redis,kvd --pipelines 16"); APPEND (docs/PERFORMANCE.md,
# empty: print only); DURABILITY_ARGS extra perf/durability.py arguments (e.g. "--part a"
# or "--keys 1000000").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${1:-build/release}
runs=${RUNS:-3}
append=${APPEND-docs/PERFORMANCE.md}

cd "$root"
cmake --build "$build" --target kvd kvbench limit_server

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "bench: redis-server and redis-benchmark are needed (apt-get install redis-server)" >&2
    exit 1
fi

extra=()
if [ -n "$append" ]; then
    extra+=(--append "$append")
fi
# shellcheck disable=SC2086 # COMPARE_ARGS is split into arguments on purpose
for client in kvbench redis-benchmark; do
    /usr/bin/python3 perf/compare --build "$build" --runs "$runs" --client "$client" \
        "${extra[@]}" ${COMPARE_ARGS:-}
done
# shellcheck disable=SC2086 # COMPARE_ARGS is split into arguments on purpose
/usr/bin/python3 perf/compare --build "$build" --runs "$runs" --client kvbench \
    --fsync always --servers redis,kvd "${extra[@]}" ${COMPARE_ARGS:-}
# shellcheck disable=SC2086 # DURABILITY_ARGS is split into arguments on purpose
/usr/bin/python3 perf/durability.py --build "$build" "${extra[@]}" ${DURABILITY_ARGS:-}
/usr/bin/python3 perf/eviction.py --build "$build" --runs "$runs" "${extra[@]}"
/usr/bin/python3 perf/tracking.py --build "$build" --runs "$runs" "${extra[@]}"
/usr/bin/python3 perf/functions.py --build "$build" --runs "$runs" "${extra[@]}"
