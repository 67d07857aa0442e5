# Quorum stores: the conformance suite (memory and directory backends) and memory_store's
# fault injection (suite "store"); the directory store's multi-process tests (suite
# "directory_store"). The etcd backend's lines follow (owned by its engineer).
quorumreg_test_group(test_stores SOURCES test_store.cpp test_api.cpp LIBS quorumreg_etcd_separate) # open_store names etcd too
quorumreg_suite(test_stores store LABELS store TIMEOUT 900)
# The API's shape (issue 20): the store's hooks, option names, the public/detail line.
quorumreg_suite(test_stores api LABELS api TIMEOUT 120)

# etcd backend (real 3-member clusters on 127.0.0.1; needs /usr/bin/etcd from etcd-server).
quorumreg_test_group(test_etcd_store SOURCES test_etcd_store.cpp test_partition.cpp LIBS quorumreg_etcd_separate)
quorumreg_suite(test_etcd_store etcd_store LABELS etcd store TIMEOUT 600 RUN_SERIAL)
# ownership_node: the lease holder/taker and side-effect owner processes of the lease-skew
# (issue 15 defect 10, under libfaketime) and ownership SIGSTOP tests.
add_executable(ownership_node ownership_node.cpp)
target_link_libraries(ownership_node PRIVATE quorumreg::quorumreg quorumreg_warnings)

quorumreg_test_group(test_directory_store SOURCES test_directory_store.cpp)
# libfaketime (Debian's libfaketime, pulled in by faketime) is preloaded straight into the
# skewed node; see the defect 10 tests for why not through the faketime wrapper.
find_file(QUORUMREG_LIBFAKETIME libfaketime.so.1 PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/faketime
          /usr/lib/x86_64-linux-gnu/faketime /usr/lib/faketime NO_DEFAULT_PATH)
if(NOT QUORUMREG_LIBFAKETIME)
  set(QUORUMREG_LIBFAKETIME /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1) # the test reports it missing
endif()
target_compile_definitions(test_directory_store PRIVATE QUORUMREG_OWNERSHIP_NODE="$<TARGET_FILE:ownership_node>"
                                                        QUORUMREG_LIBFAKETIME="${QUORUMREG_LIBFAKETIME}")
add_dependencies(test_directory_store ownership_node)
quorumreg_suite(test_directory_store directory_store LABELS store TIMEOUT 900)

# The fenced-lease primitive (ownership.hpp) on the memory store, the directory store and a
# real 3-member etcd cluster.
quorumreg_test_group(test_ownership SOURCES test_ownership.cpp LIBS quorumreg_etcd_separate)
target_compile_definitions(test_ownership PRIVATE QUORUMREG_OWNERSHIP_NODE="$<TARGET_FILE:ownership_node>")
add_dependencies(test_ownership ownership_node)
quorumreg_suite(test_ownership ownership LABELS "ownership;checkpoint" TIMEOUT 300 RUN_SERIAL)

# Partitions through a TCP proxy (issue 17): the proxy alone, then etcd behind one per member
# (tests/test_partition.cpp, built into test_etcd_store).
quorumreg_suite(test_etcd_store tcp_proxy LABELS partition TIMEOUT 120)
quorumreg_suite(test_etcd_store etcd_partition LABELS partition etcd TIMEOUT 300 RUN_SERIAL)
quorumreg_suite(test_etcd_store etcd_limits LABELS etcd store TIMEOUT 300 RUN_SERIAL)
