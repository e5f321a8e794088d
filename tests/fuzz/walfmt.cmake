# WAL segments and snapshot chunks as recovery reads them (io/walfmt).
kv_fuzz_target(NAME walfmt SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_walfmt.c LIBS kv_io)
