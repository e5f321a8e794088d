# perf/limit: the physical-limit reference server (limit_server). kvd's network path
# with a fixed reply for every command; benchmarks compare kvd and redis-server to it.
find_package(Threads REQUIRED)
file(GLOB limit_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/limit/*.c)
list(SORT limit_sources)
add_executable(limit_server ${limit_sources})
target_include_directories(limit_server PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/limit)
target_link_libraries(limit_server PRIVATE kv_common PkgConfig::URING Threads::Threads)
target_compile_options(limit_server PRIVATE -fno-omit-frame-pointer) # readable flame graphs
