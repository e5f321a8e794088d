# bench_resp: RESP parse and encode throughput (see perf/bench_resp.c).
add_executable(bench_resp ${CMAKE_CURRENT_SOURCE_DIR}/bench_resp.c)
target_link_libraries(bench_resp PRIVATE kv_proto mimalloc)
