# Soak loops (issue 10; docs/reliability.md). Full length through `make soak`; here each is
# registered with a tiny round count as a quick smoke test (label "soak").
# Each executable ends with exactly one line "acked=N lost=L corrupt=C" and fails unless
# L == C == 0. Round counts: first argument or $QUORUMREG_SOAK_ROUNDS.
add_executable(soak_hive_kill soak_hive_kill.cpp)
target_link_libraries(soak_hive_kill PRIVATE quorumreg::quorumreg quorumreg_warnings)

add_executable(soak_checkpoint_failover soak_checkpoint_failover.cpp)
target_link_libraries(soak_checkpoint_failover PRIVATE quorumreg_etcd_separate quorumreg_support quorumreg_warnings)
target_compile_definitions(soak_checkpoint_failover PRIVATE QUORUMREG_CHECKPOINT_NODE="$<TARGET_FILE:checkpoint_node>")
add_dependencies(soak_checkpoint_failover checkpoint_node)

add_executable(soak_etcd_members soak_etcd_members.cpp)
target_link_libraries(soak_etcd_members PRIVATE quorumreg_etcd_separate quorumreg_support quorumreg_warnings)

# Simulated power cuts (issue 14): ends with "cuts=N acked=A lost=0 corrupt=0 refused=0".
add_executable(soak_powerloss soak_powerloss.cpp)
target_link_libraries(soak_powerloss PRIVATE quorumreg::quorumreg quorumreg_support quorumreg_warnings)

add_custom_target(quorumreg_soak_all DEPENDS soak_hive_kill soak_checkpoint_failover soak_etcd_members soak_powerloss)

function(quorumreg_soak_smoke name rounds)
  add_test(NAME ${name} COMMAND ${name} ${rounds})
  set_tests_properties(${name} PROPERTIES LABELS "soak" TIMEOUT 600 PASS_REGULAR_EXPRESSION "acked=[1-9][0-9]* lost=0 corrupt=0\n"
                       FAIL_REGULAR_EXPRESSION "stuck: "
                       ENVIRONMENT "QUORUMREG_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp")
endfunction()
quorumreg_soak_smoke(soak_hive_kill 20)
quorumreg_soak_smoke(soak_checkpoint_failover 2)
quorumreg_soak_smoke(soak_etcd_members 3)
add_test(NAME soak_powerloss COMMAND soak_powerloss 40 --seed 1)
set_tests_properties(soak_powerloss PROPERTIES LABELS "soak" TIMEOUT 600
                     PASS_REGULAR_EXPRESSION "cuts=[1-9][0-9]* acked=[1-9][0-9]* lost=0 corrupt=0 refused=0\n")
set_tests_properties(soak_checkpoint_failover soak_etcd_members PROPERTIES LABELS "soak;etcd" RUN_SERIAL TRUE)
