# Raft messages, log-entry records, metadata snapshots and commands (cluster/).
kv_fuzz_target(NAME raft SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_raft.c LIBS kv_cluster)
