# Quorum stores: the conformance suite (memory and directory backends) and memory_store's
# fault injection (suite "store"); the directory store's multi-process tests (suite
# "directory_store"). The etcd backend registers its own group.
quorumreg_test_group(test_stores SOURCES test_store.cpp)
quorumreg_suite(test_stores store LABELS store TIMEOUT 900)
