// Checkpoints: save (online + add_checkpoint of a 100k-value subtree) and restore (online on a
// second node) beside the physical limit — a raw sequential write + fsync of the same number of
// bytes in the same directory — and write-through changes/s. Ratios are reported as counters
// (ratio_to_raw = raw time / checkpoint time; >= 0.5 is the goal).
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

fs::path bench_dir() {
    std::random_device rd;
    auto p = fs::temp_directory_path() / ("qr-bench-cp-" + std::to_string(rd()));
    fs::create_directories(p);
    return p;
}

void fill(quorumreg::hive& h, int values) {
    quorumreg::transaction txn;
    for (int i = 0; i < values; ++i)
        txn.set_value("Software/Bench/K" + std::to_string(i % 1000), "v" + std::to_string(i),
                      quorumreg::value::string(std::string(32, static_cast<char>('a' + i % 26))));
    h.commit(txn);
}

double raw_write_fsync_seconds(const fs::path& dir, std::size_t bytes) {
    std::string data(bytes, 'x');
    auto t0 = clock_type::now();
    int fd = ::open((dir / "raw").c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    std::size_t done = 0;
    while (done < data.size()) {
        auto n = ::write(fd, data.data() + done, data.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    ::fsync(fd);
    ::close(fd);
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void BM_checkpoint_save_restore(benchmark::State& state) {
    const int values = static_cast<int>(state.range(0));
    double save_s = 0, restore_s = 0, raw_s = 0;
    std::size_t bytes = 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto dir = bench_dir();
        {
            quorumreg::directory_store quorum(dir / "quorum", {.create = true});
            quorumreg::hive a(dir / "a");
            fill(a, values);
            bytes = a.export_subtree("Software/Bench").size();
            quorumreg::checkpoint_manager cpa(a, quorum, {.node = "a"});
            state.ResumeTiming();
            auto t0 = clock_type::now();
            cpa.add_checkpoint("Bench", "Software/Bench"); // one full checkpoint
            save_s += std::chrono::duration<double>(clock_type::now() - t0).count();
            quorumreg::hive b(dir / "b");
            quorumreg::checkpoint_manager cpb(b, quorum, {.node = "b"});
            t0 = clock_type::now();
            cpb.online("Bench"); // fetch, verify, restore in one hive transaction
            restore_s += std::chrono::duration<double>(clock_type::now() - t0).count();
            state.PauseTiming();
            cpb.offline("Bench");
            raw_s += raw_write_fsync_seconds(dir, bytes);
        }
        fs::remove_all(dir);
        state.ResumeTiming();
    }
    auto n = static_cast<double>(state.iterations());
    state.counters["bytes"] = static_cast<double>(bytes);
    state.counters["save_ms"] = 1000 * save_s / n;
    state.counters["restore_ms"] = 1000 * restore_s / n;
    state.counters["raw_ms"] = 1000 * raw_s / n;
    state.counters["save_ratio_to_raw"] = raw_s / save_s;
    state.counters["restore_ratio_to_raw"] = raw_s / restore_s;
}
// 1000: the smoke size (ctest); 100000: the goal row.
BENCHMARK(BM_checkpoint_save_restore)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_checkpoint_write_through(benchmark::State& state) {
    auto dir = bench_dir();
    {
        quorumreg::directory_store quorum(dir / "quorum", {.create = true});
        quorumreg::hive a(dir / "a");
        quorumreg::checkpoint_manager cp(a, quorum, {.node = "a"});
        cp.add_checkpoint("Bench", "Software/Bench");
        cp.online("Bench");
        std::uint32_t i = 0;
        for (auto _ : state) {
            a.set_value("Software/Bench", "v" + std::to_string(i % 100), quorumreg::value::dword(i));
            ++i;
            if (i % 100 == 0) cp.flush("Bench"); // every change durable in the store
        }
        cp.flush("Bench");
        cp.offline("Bench");
        state.counters["generations"] = static_cast<double>(cp.history("Bench", "Software/Bench").back().generation);
    }
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_checkpoint_write_through)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
