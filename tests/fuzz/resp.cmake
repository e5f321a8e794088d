# The RESP request parser under random bytes and random buffer cuts.
kv_fuzz_target(NAME resp SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_resp.c LIBS kv_proto)
target_include_directories(fuzz_resp PRIVATE ${PROJECT_SOURCE_DIR}/tests/unit/proto)
