# etcd_store: single and batched (transaction) puts beside a raw keep-alive HTTP put loop, against
# a 3-member etcd cluster the binary starts itself (tests/etcd_cluster.hpp; needs /usr/bin/etcd).
quorumreg_benchmark(bench_etcd SOURCES bench_etcd.cpp LIBS quorumreg_etcd_separate $<TARGET_NAME_IF_EXISTS:quorumreg_support>
                    SMOKE_ARGS --benchmark_min_time=0.01)
