// dependency_graph benchmarks, each beside Boost.Graph on the same graph in the same run.
//
// Graphs: n nodes, 3n random edges "i depends on j" with j before i in a hidden order (so the
// graph is a DAG), nodes declared in a shuffled order (so the maintained topological order
// has real work to do). Sizes 10k, 100k, 1M.
//
// - waves/<n>: dependency_graph::start_waves() vs boost::topological_sort on an
//   adjacency_list<vecS, vecS, directedS> holding the same edges. Counters: ours_ms, boost_ms
//   (both measured in every iteration, interleaved) and ratio = ours / boost (goal <= 0.5).
// - insert_in_order/<n>, insert_shuffled/<n>: cycle-checked add_dependency of all 3n edges,
//   one call each, into a graph that already holds the n nodes, declared in a topological
//   order (the usual case: things are declared after what they need) or shuffled (the worst
//   case for the maintained order). Counters: median_ns and p99_ns per insertion (goal:
//   median <= 2000 ns at 100k), mean_ns, and boost_batch_ns = per-edge cost of the batch
//   alternative (Boost add_edge of every edge, then one topological_sort to detect a cycle).
// - bulk_load/<n>: add_dependencies() of all edges at once (one O(V+E) cycle check) vs Boost
//   add_edge + topological_sort.
// - reject/<n>: add_dependency of an edge that closes a cycle (rejected, graph unchanged).
#include <quorumreg/dependency_graph.hpp>

#include <benchmark/benchmark.h>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/topological_sort.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using bgraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;

struct workload {
    std::uint32_t n = 0;
    std::vector<std::uint32_t> hidden;                          // a topological order
    std::vector<std::uint32_t> declare;                         // node declaration order (shuffled)
    std::vector<std::pair<std::uint32_t, std::uint32_t>> edges; // (dependent, dependency)
};

const workload& make_workload(std::uint32_t n) {
    static std::map<std::uint32_t, std::unique_ptr<workload>> cache;
    auto& slot = cache[n];
    if (slot) return *slot;
    slot = std::make_unique<workload>();
    auto& w = *slot;
    w.n = n;
    std::mt19937_64 rng(12345 + n);
    std::vector<std::uint32_t> hidden(n);
    for (std::uint32_t i = 0; i < n; ++i)
        hidden[i] = i;
    std::shuffle(hidden.begin(), hidden.end(), rng); // hidden[k] = the node at hidden position k
    w.hidden = hidden;
    w.declare = hidden;
    std::shuffle(w.declare.begin(), w.declare.end(), rng);
    w.edges.reserve(std::size_t{3} * n);
    for (std::size_t k = 0; k < std::size_t{3} * n; ++k) {
        auto i = static_cast<std::uint32_t>(1 + rng() % (n - 1));
        // Mostly local dependencies (as service graphs are), some long-range ones.
        std::uint32_t j = rng() % 4 == 0 ? static_cast<std::uint32_t>(rng() % i)
                                         : (i > 64 ? i - 1 - static_cast<std::uint32_t>(rng() % 64)
                                                   : static_cast<std::uint32_t>(rng() % i));
        w.edges.emplace_back(hidden[i], hidden[j]);
    }
    return w;
}

quorumreg::dependency_graph<std::uint32_t> build_ours(const workload& w) {
    quorumreg::dependency_graph<std::uint32_t> g;
    g.reserve(w.n);
    for (auto v : w.declare)
        g.add_node(v);
    g.add_dependencies(w.edges);
    return g;
}

bgraph build_boost(const workload& w) {
    bgraph g(w.n);
    // Edge dependency -> dependent, so that topological order = start order.
    for (auto [a, b] : w.edges)
        boost::add_edge(b, a, g);
    return g;
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

void waves(benchmark::State& state) {
    const auto& w = make_workload(static_cast<std::uint32_t>(state.range(0)));
    auto ours = build_ours(w);
    auto theirs = build_boost(w);
    std::vector<bgraph::vertex_descriptor> topo;
    topo.reserve(w.n);
    double ours_ms = 0, boost_ms = 0;
    std::size_t waves_count = 0;
    for (auto _ : state) {
        auto t0 = clock_type::now();
        auto result = ours.start_waves();
        ours_ms += ms_since(t0);
        waves_count = result.size();
        benchmark::DoNotOptimize(result.data());
        state.PauseTiming();
        { auto drop = std::move(result); } // freeing the result is not part of either measurement
        state.ResumeTiming();
        auto t1 = clock_type::now();
        topo.clear();
        boost::topological_sort(theirs, std::back_inserter(topo));
        boost_ms += ms_since(t1);
        benchmark::DoNotOptimize(topo.data());
    }
    const auto it = static_cast<double>(state.iterations());
    state.counters["ours_ms"] = ours_ms / it;
    state.counters["boost_ms"] = boost_ms / it;
    state.counters["ratio"] = ours_ms / boost_ms;
    state.counters["waves"] = static_cast<double>(waves_count);
    state.counters["edges"] = static_cast<double>(ours.edge_count());
}

void insert(benchmark::State& state, bool shuffled) {
    const auto& w = make_workload(static_cast<std::uint32_t>(state.range(0)));
    std::vector<std::uint32_t> samples;
    samples.reserve(w.edges.size());
    double boost_batch_ns = 0, total_ns = 0;
    std::size_t rounds = 0;
    for (auto _ : state) {
        state.PauseTiming();
        quorumreg::dependency_graph<std::uint32_t> g;
        g.reserve(w.n);
        for (auto v : shuffled ? w.declare : w.hidden)
            g.add_node(v);
        samples.clear();
        state.ResumeTiming();
        for (auto [a, b] : w.edges) {
            auto t0 = clock_type::now();
            g.add_dependency(a, b);
            samples.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count()));
        }
        state.PauseTiming();
        for (auto s : samples)
            total_ns += s;
        auto t1 = clock_type::now();
        {
            auto theirs = build_boost(w);
            std::vector<bgraph::vertex_descriptor> topo;
            boost::topological_sort(theirs, std::back_inserter(topo)); // throws not_a_dag on a cycle
            benchmark::DoNotOptimize(topo.data());
        }
        boost_batch_ns += std::chrono::duration<double, std::nano>(clock_type::now() - t1).count();
        ++rounds;
        state.ResumeTiming();
    }
    std::sort(samples.begin(), samples.end());
    state.counters["median_ns"] = samples[samples.size() / 2];
    state.counters["p99_ns"] = samples[samples.size() * 99 / 100];
    state.counters["mean_ns"] = total_ns / static_cast<double>(rounds * w.edges.size());
    state.counters["boost_batch_ns"] = boost_batch_ns / static_cast<double>(rounds * w.edges.size());
    state.SetItemsProcessed(static_cast<std::int64_t>(rounds * w.edges.size()));
}

void insert_in_order(benchmark::State& state) { insert(state, false); }
void insert_shuffled(benchmark::State& state) { insert(state, true); }

void bulk_load(benchmark::State& state) {
    const auto& w = make_workload(static_cast<std::uint32_t>(state.range(0)));
    double ours_ms = 0, boost_ms = 0;
    for (auto _ : state) {
        auto t0 = clock_type::now();
        {
            auto g = build_ours(w);
            benchmark::DoNotOptimize(g.size());
        }
        ours_ms += ms_since(t0);
        auto t1 = clock_type::now();
        {
            auto theirs = build_boost(w);
            std::vector<bgraph::vertex_descriptor> topo;
            boost::topological_sort(theirs, std::back_inserter(topo));
            benchmark::DoNotOptimize(topo.data());
        }
        boost_ms += ms_since(t1);
    }
    const auto it = static_cast<double>(state.iterations());
    state.counters["ours_ms"] = ours_ms / it;
    state.counters["boost_ms"] = boost_ms / it;
    state.counters["ratio"] = ours_ms / boost_ms;
}

void reject(benchmark::State& state) {
    const auto& w = make_workload(static_cast<std::uint32_t>(state.range(0)));
    auto g = build_ours(w);
    // Close cycles along existing edges: "dependency depends on dependent" for random edges.
    std::mt19937 rng(7);
    std::size_t rejected = 0;
    for (auto _ : state) {
        auto [a, b] = w.edges[rng() % w.edges.size()];
        std::error_code ec;
        g.add_dependency(b, a, ec);
        rejected += ec == quorumreg::errc::dependency_cycle;
    }
    state.counters["rejected"] = static_cast<double>(rejected) / static_cast<double>(state.iterations());
}

} // namespace

BENCHMARK(waves)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);
BENCHMARK(insert_in_order)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->Iterations(2);
// One repetition whatever --benchmark_repetitions says: a run is 3n timed insertions (the median
// is over those), and at 100k it takes minutes (the mean insertion is ~500x the median).
BENCHMARK(insert_shuffled)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(1);
BENCHMARK(bulk_load)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);
BENCHMARK(reject)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
