# Resource monitors: kill -9 to all-online-again time for N = 1 and 100 (median of 9), beside a
# cold start of the same resources in the same run (ratio_to_cold_start).
set(QR_BENCH_PLUGIN_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins)
add_library(qr_bench_plugin_good MODULE ${PROJECT_SOURCE_DIR}/tests/plugins/test_plugin.c)
target_compile_definitions(qr_bench_plugin_good PRIVATE QR_PLUGIN_KIND=1)
target_include_directories(qr_bench_plugin_good PRIVATE ${PROJECT_SOURCE_DIR}/include)
set_target_properties(qr_bench_plugin_good PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${QR_BENCH_PLUGIN_DIR}
                      C_VISIBILITY_PRESET hidden)
if(NOT TARGET quorumreg_monitor)
  add_executable(quorumreg_monitor ${PROJECT_SOURCE_DIR}/tools/quorumreg_monitor.cpp)
  target_link_libraries(quorumreg_monitor PRIVATE quorumreg::quorumreg quorumreg_warnings)
endif()
quorumreg_benchmark(bench_monitor SOURCES bench_monitor.cpp
                    SMOKE_ARGS --benchmark_repetitions=1)
target_compile_definitions(bench_monitor PRIVATE
  QR_BENCH_PLUGIN_DIR="${QR_BENCH_PLUGIN_DIR}"
  QR_BENCH_MONITOR_EXE="$<TARGET_FILE:quorumreg_monitor>")
add_dependencies(bench_monitor qr_bench_plugin_good quorumreg_monitor)
