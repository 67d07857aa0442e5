# Dependency graph and service controller (label "dependency").
quorumreg_test_group(test_graph SOURCES test_dependency_graph.cpp test_service_controller.cpp)
quorumreg_suite(test_graph dependency_graph LABELS dependency)
quorumreg_suite(test_graph service_controller LABELS dependency)
