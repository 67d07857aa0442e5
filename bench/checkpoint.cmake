# Checkpoint save/restore of a 100k-value subtree beside a raw sequential write+fsync of the same
# bytes, and write-through changes/s (directory store).
quorumreg_benchmark(bench_checkpoint SOURCES bench_checkpoint.cpp SMOKE_ARGS --benchmark_min_time=0.01)
