# Simulation and linearizability checking (label "simulation").
# The reference histories are not part of the project (they are Porcupine's test data): tests
# read them from the shared folder beside the checkout, or from where this cache variable (or
# the environment variable of the same name, at run time) points, and skip when absent.
set(QUORUMREG_REFERENCE_HISTORIES "${PROJECT_SOURCE_DIR}/../shared/linearizability/jepsen-etcd"
    CACHE PATH "Jepsen etcd histories with verdicts.txt (../shared/linearizability/jepsen-etcd)")

# A client process that records its operations for the checker (tests/test_histories.cpp).
add_executable(history_worker history_worker.cpp)
target_link_libraries(history_worker PRIVATE quorumreg_etcd_separate quorumreg_warnings)

quorumreg_test_group(test_simulation SOURCES test_lincheck.cpp test_histories.cpp LIBS quorumreg_etcd_separate)
target_compile_definitions(test_simulation PRIVATE QUORUMREG_REFERENCE_HISTORIES="${QUORUMREG_REFERENCE_HISTORIES}"
                           QR_HISTORY_WORKER="$<TARGET_FILE:history_worker>")
add_dependencies(test_simulation history_worker)
quorumreg_suite(test_simulation lincheck LABELS simulation TIMEOUT 120)
quorumreg_suite(test_simulation histories LABELS simulation TIMEOUT 300)
quorumreg_suite(test_simulation histories_etcd LABELS "simulation;etcd" TIMEOUT 300 RUN_SERIAL)

# The command-line tool on all 60 reference histories: the known verdict for each, in under
# 10 s in total (the test's timeout).
if(QUORUMREG_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/CMakeLists.txt)
  add_test(NAME lincheck_reference
           COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:quorumreg_lincheck> -DDIR=${QUORUMREG_REFERENCE_HISTORIES}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/lincheck_reference.cmake)
  set_tests_properties(lincheck_reference PROPERTIES LABELS "simulation;lincheck" TIMEOUT 10
                       SKIP_REGULAR_EXPRESSION "SKIP: no reference histories")
endif()
