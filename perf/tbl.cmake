# bench_tbl: ns per operation and bytes per key of the partition hash table (engine/).
# Run pinned: taskset -c 1 build/release/perf/bench_tbl [keys...]
add_executable(bench_tbl ${CMAKE_CURRENT_SOURCE_DIR}/bench_tbl.c)
target_link_libraries(bench_tbl PRIVATE kv_engine PkgConfig::XXHASH)
