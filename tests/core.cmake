# Core: error model, registry, durable hive.
quorumreg_test_group(test_core SOURCES test_error.cpp test_registry.cpp)
quorumreg_suite(test_core error)
quorumreg_suite(test_core registry)
