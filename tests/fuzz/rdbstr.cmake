# DUMP payloads as RESTORE reads them (io/rdbstr): any bytes from a client.
kv_fuzz_target(NAME rdbstr SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_rdbstr.c LIBS kv_io)
