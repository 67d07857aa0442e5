# Dependency graph and service controller (label "dependency").
quorumreg_test_group(test_graph SOURCES test_dependency_graph.cpp)
quorumreg_suite(test_graph dependency_graph LABELS dependency)
