# Registry point reads and commits beside a std::map + shared_mutex peer.
quorumreg_benchmark(bench_registry SOURCES bench_registry.cpp SMOKE_ARGS --benchmark_min_time=0.01)
