# Failover: a real owner node process (this binary re-executed) killed with kill -9, a standby
# online with its data, against the lease TTL (directory store). The smoke run uses a 300 ms TTL.
quorumreg_benchmark(bench_failover SOURCES bench_failover.cpp SMOKE_ARGS --benchmark_filter=/300/)
