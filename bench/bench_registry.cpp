// Registry: point reads and single-value commits, beside std::map<std::string, ...> with a
// shared_mutex (the obvious hand-rolled peer) in the same run.
#include <quorumreg/registry.hpp>

#include <benchmark/benchmark.h>

#include <map>
#include <shared_mutex>
#include <string>

namespace {

void fill(quorumreg::registry& reg, int n) {
    quorumreg::transaction txn;
    for (int i = 0; i < n; ++i)
        txn.set_value("Software/Bench/K" + std::to_string(i % 100), "v" + std::to_string(i),
                      quorumreg::value::dword(i));
    reg.commit(txn);
}

void BM_registry_get(benchmark::State& state) {
    quorumreg::registry reg;
    fill(reg, static_cast<int>(state.range(0)));
    int i = 0;
    for (auto _ : state) {
        int k = i++ % static_cast<int>(state.range(0));
        auto v = reg.get_value("Software/Bench/K" + std::to_string(k % 100), "v" + std::to_string(k));
        benchmark::DoNotOptimize(v);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_registry_get)->Arg(10000);

void BM_peer_map_get(benchmark::State& state) {
    std::map<std::string, std::uint32_t> m;
    std::shared_mutex mu;
    for (int i = 0; i < state.range(0); ++i)
        m["software/bench/k" + std::to_string(i % 100) + "\\v" + std::to_string(i)] = static_cast<std::uint32_t>(i);
    int i = 0;
    for (auto _ : state) {
        int k = i++ % static_cast<int>(state.range(0));
        std::shared_lock lk(mu);
        auto it = m.find("software/bench/k" + std::to_string(k % 100) + "\\v" + std::to_string(k));
        benchmark::DoNotOptimize(it);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_peer_map_get)->Arg(10000);

void BM_registry_set(benchmark::State& state) {
    quorumreg::registry reg;
    int i = 0;
    for (auto _ : state) {
        ++i;
        reg.set_value("Software/Bench/K" + std::to_string(i % 100), "v", quorumreg::value::dword(i));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_registry_set);

} // namespace

BENCHMARK_MAIN();
