# Hive durable commits (1/8/32 writers) and point reads beside a raw 4 KiB overwrite+fdatasync
# loop, SQLite (WAL, synchronous=FULL) and LMDB (durable commits; point reads).
quorumreg_benchmark(bench_hive SOURCES bench_hive.cpp LIBS SQLite::SQLite3 qr_bench_lmdb
                    SMOKE_ARGS --benchmark_min_time=0.01)
