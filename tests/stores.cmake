# Quorum stores: the conformance suite (memory and directory backends) and memory_store's
# fault injection (suite "store"); the directory store's multi-process tests (suite
# "directory_store"). The etcd backend's lines follow (owned by its engineer).
quorumreg_test_group(test_stores SOURCES test_store.cpp)
quorumreg_suite(test_stores store LABELS store TIMEOUT 900)

# etcd backend (real 3-member clusters on 127.0.0.1; needs /usr/bin/etcd from etcd-server).
quorumreg_test_group(test_etcd_store SOURCES test_etcd_store.cpp LIBS quorumreg::etcd)
quorumreg_suite(test_etcd_store etcd_store LABELS etcd store TIMEOUT 600 RUN_SERIAL)
quorumreg_test_group(test_directory_store SOURCES test_directory_store.cpp)
quorumreg_suite(test_directory_store directory_store LABELS store TIMEOUT 900)
