# Raft messages, log-entry records, metadata snapshots and commands (cluster/).
kv_fuzz_target(NAME raft SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_raft.c LIBS kv_cluster)
# A Raft node stepped with arbitrary peer messages built as structs (no checksums).
kv_fuzz_target(NAME raft_step SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_raft_step.c
               LIBS kv_cluster)
