# Checkpoint save/restore of a 100k-value subtree beside a raw sequential write+fsync of the same
# bytes, and write-through changes/s (directory store). The smoke run uses 1000 values.
quorumreg_benchmark(bench_checkpoint SOURCES bench_checkpoint.cpp
                    SMOKE_ARGS "--benchmark_filter=save_restore/1000/|write_through" --benchmark_min_time=0.01)
