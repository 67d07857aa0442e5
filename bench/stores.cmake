# Embedded stores: directory_store CAS puts/s beside a raw append+fsync loop in the same
# directory (same run; the CAS benchmark reports ratio_to_raw_fsync), directory gets, and
# memory_store puts/s.
quorumreg_benchmark(bench_stores SOURCES bench_stores.cpp
                    SMOKE_ARGS --benchmark_min_time=0.01)
