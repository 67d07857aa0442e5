# Checkpoint manager and cluster writer: in-process semantics on memory_store; multi-process
# failover on the directory store.
quorumreg_test_group(test_checkpoint SOURCES test_checkpoint.cpp test_cluster_writer.cpp)
quorumreg_suite(test_checkpoint checkpoint LABELS checkpoint TIMEOUT 900)
quorumreg_suite(test_checkpoint cluster_writer LABELS dependency TIMEOUT 600)
