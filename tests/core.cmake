# Core: error model, registry, durable hive.
add_executable(hive_child hive_child.cpp)
target_link_libraries(hive_child PRIVATE quorumreg::quorumreg quorumreg_warnings)

quorumreg_test_group(test_core SOURCES test_error.cpp test_registry.cpp test_hive.cpp test_sealing.cpp)
target_compile_definitions(test_core PRIVATE QUORUMREG_HIVE_CHILD="$<TARGET_FILE:hive_child>")
add_dependencies(test_core hive_child)
quorumreg_suite(test_core error)
quorumreg_suite(test_core registry)
quorumreg_suite(test_core hive TIMEOUT 900)
quorumreg_suite(test_core hive_parts LABELS hive)
quorumreg_suite(test_core sealing LABELS secret)
