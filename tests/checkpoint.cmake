# Checkpoint manager: in-process semantics on memory_store; multi-process failover on the
# directory store (and on etcd, in test_checkpoint_etcd when the etcd backend is available).
quorumreg_test_group(test_checkpoint SOURCES test_checkpoint.cpp)
quorumreg_suite(test_checkpoint checkpoint LABELS checkpoint TIMEOUT 900)
