# Simulated power cuts (issue 14): the hive and the directory store behind
# support/quorumreg_support/powercut_disk.hpp, at least 2,000 seeded cuts per engine (label
# "powerloss"). The same scenarios at length: soak_powerloss (tests/soak.cmake, make soak).
quorumreg_test_group(test_powerloss SOURCES test_powerloss.cpp)
quorumreg_suite(test_powerloss powerloss LABELS powerloss TIMEOUT 900)
