# dependency_graph: start waves and cycle-checked insertion beside Boost.Graph (header-only).
quorumreg_benchmark(bench_dependency_graph SOURCES bench_dependency_graph.cpp
                    SMOKE_ARGS "--benchmark_filter=/10000(/|$)" --benchmark_min_time=0.01)
