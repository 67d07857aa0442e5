# Checkpoint manager and cluster writer: in-process semantics on memory_store; multi-process
# failover, offline-edit and stale-owner scenarios on the directory store (and on etcd in
# test_checkpoint_etcd, with a real 3-member cluster).
add_executable(checkpoint_node checkpoint_node.cpp)
target_link_libraries(checkpoint_node PRIVATE quorumreg_etcd_separate quorumreg_warnings)

add_executable(cluster_node cluster_node.cpp)
target_link_libraries(cluster_node PRIVATE quorumreg_etcd_separate quorumreg_warnings)

quorumreg_test_group(test_checkpoint SOURCES test_checkpoint.cpp test_checkpoint_parts.cpp test_cluster_writer.cpp)
target_compile_definitions(test_checkpoint PRIVATE QUORUMREG_CHECKPOINT_NODE="$<TARGET_FILE:checkpoint_node>"
                                                   QUORUMREG_CLUSTER_NODE="$<TARGET_FILE:cluster_node>")
add_dependencies(test_checkpoint checkpoint_node cluster_node)
quorumreg_suite(test_checkpoint checkpoint LABELS checkpoint TIMEOUT 900)
quorumreg_suite(test_checkpoint checkpoint_parts LABELS checkpoint TIMEOUT 120)
quorumreg_suite(test_checkpoint cluster_writer LABELS dependency TIMEOUT 600)

quorumreg_test_group(test_checkpoint_etcd SOURCES test_checkpoint_etcd.cpp LIBS quorumreg_etcd_separate)
target_compile_definitions(test_checkpoint_etcd PRIVATE QUORUMREG_CHECKPOINT_NODE="$<TARGET_FILE:checkpoint_node>")
add_dependencies(test_checkpoint_etcd checkpoint_node)
quorumreg_suite(test_checkpoint_etcd checkpoint_etcd LABELS "checkpoint;etcd" TIMEOUT 900 RUN_SERIAL)
quorumreg_suite(test_checkpoint_etcd cluster_writer_etcd LABELS "dependency;etcd" TIMEOUT 600 RUN_SERIAL)
