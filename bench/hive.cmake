# Hive durable commits (1/8/32 writers) and point reads beside a raw 4 KiB overwrite+fdatasync loop.
quorumreg_benchmark(bench_hive SOURCES bench_hive.cpp SMOKE_ARGS --benchmark_min_time=0.01)
