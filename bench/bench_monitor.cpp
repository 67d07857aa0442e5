// Resource monitor recovery: time from kill -9 of a monitor hosting N resources to all N online
// again in a new monitor (types re-resolved from the store, library re-hashed and reloaded,
// resources reopened and brought online), N = 1 and 100, median over repetitions.
//
// Peer, measured in the same run and reported as ratio_to_cold_start: a cold start of the same
// N resources (controller created, first monitor spawned, type loaded, all brought online) — the
// floor recovery cannot beat, since it does the same work after noticing the death.
// detect_ms is the time from the kill to the controller's first state change (waitpid tick).
#include <quorumreg/resource_monitor.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <signal.h>

namespace {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

struct fixture {
    quorumreg::memory_store store;
    std::unique_ptr<quorumreg::resource_type_registry> types;
    std::unique_ptr<quorumreg::monitor_controller> ctl;
    std::vector<std::string> names;

    explicit fixture(int n) {
        quorumreg::resource_type_registry_options o;
        o.plugin_directories = {QR_BENCH_PLUGIN_DIR};
        o.monitor_command = {QR_BENCH_MONITOR_EXE};
        types = std::make_unique<quorumreg::resource_type_registry>(store, o);
        quorumreg::resource_type_info t;
        t.name = "GoodType";
        t.library = std::string(QR_BENCH_PLUGIN_DIR) + "/qr_bench_plugin_good.so";
        types->register_type(t);
        for (int i = 0; i < n; ++i)
            names.push_back("r" + std::to_string(i));
    }
    /// Creates the controller and brings everything online; returns the elapsed seconds.
    double cold_start() {
        auto t0 = clk::now();
        quorumreg::monitor_controller_options mo;
        mo.monitor_command = {QR_BENCH_MONITOR_EXE};
        ctl = std::make_unique<quorumreg::monitor_controller>(*types, mo);
        for (auto& n : names) {
            ctl->add_resource({n, "GoodType", ""});
            ctl->online(n);
        }
        for (auto& n : names)
            if (!ctl->wait_for(n, quorumreg::resource_state::online, 120s))
                throw std::runtime_error("cold start timed out");
        return std::chrono::duration<double>(clk::now() - t0).count();
    }
};

void BM_monitor_recovery(benchmark::State& state) {
    fixture f(static_cast<int>(state.range(0)));
    double cold = f.cold_start();
    double detect_total = 0, recover_total = 0;
    std::int64_t runs = 0;
    for (auto _ : state) {
        int pid = f.ctl->status(f.names.front()).monitor_pid;
        auto t0 = clk::now();
        ::kill(pid, SIGKILL);
        f.ctl->wait_until(
            f.names.front(), [&](const quorumreg::resource_status& s) { return s.monitor_pid != pid; }, 120s);
        auto t_detect = clk::now();
        for (auto& n : f.names) {
            bool ok = f.ctl->wait_until(
                n,
                [&](const quorumreg::resource_status& s) {
                    return s.state == quorumreg::resource_state::online && s.monitor_pid != pid && s.monitor_pid != 0;
                },
                120s);
            if (!ok) {
                state.SkipWithError("recovery timed out");
                return;
            }
        }
        double secs = std::chrono::duration<double>(clk::now() - t0).count();
        state.SetIterationTime(secs);
        detect_total += std::chrono::duration<double>(t_detect - t0).count();
        recover_total += secs;
        ++runs;
    }
    state.counters["cold_start_ms"] = cold * 1e3;
    state.counters["detect_ms"] = runs ? detect_total / static_cast<double>(runs) * 1e3 : 0;
    state.counters["ratio_to_cold_start"] = runs ? (recover_total / static_cast<double>(runs)) / cold : 0;
}

} // namespace

BENCHMARK(BM_monitor_recovery)
    ->Arg(1)
    ->Arg(100)
    ->Iterations(1)
    ->Repetitions(9)
    ->ReportAggregatesOnly(true)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
