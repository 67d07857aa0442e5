// Hive: durable commits/s with 1, 8 and 32 writers, point reads/s, and — in the same binary, on
// the same directory — the physical limit: a 4 KiB overwrite + fdatasync loop on a
// preallocated file. Ratios (hive / raw) are reported as counters.
#include <quorumreg/hive.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <fcntl.h>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

std::filesystem::path bench_dir(const std::string& tag) {
    std::random_device rd;
    auto p = std::filesystem::temp_directory_path() / ("qr-bench-" + tag + "-" + std::to_string(rd()));
    std::filesystem::create_directories(p);
    return p;
}

void BM_raw_fdatasync_4k(benchmark::State& state) {
    auto dir = bench_dir("raw");
    int fd = ::open((dir / "f").c_str(), O_CREAT | O_RDWR, 0600);
    std::string block(4096, 'x');
    if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fdatasync(fd) != 0) state.SkipWithError("write");
    for (auto _ : state) {
        if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fdatasync(fd) != 0) state.SkipWithError("write");
    }
    ::close(fd);
    std::filesystem::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_raw_fdatasync_4k)->UseRealTime();

void BM_hive_commit(benchmark::State& state) {
    static std::unique_ptr<quorumreg::hive> h;
    static std::filesystem::path dir;
    if (state.thread_index() == 0) {
        dir = bench_dir("hive");
        h = std::make_unique<quorumreg::hive>(dir / "h");
    }
    // Google Benchmark synchronizes threads at the start of the loop.
    std::uint32_t i = 0;
    auto key = "Bench/T" + std::to_string(state.thread_index());
    for (auto _ : state)
        h->set_value(key, "v", quorumreg::value::dword(++i));
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        h.reset();
        std::filesystem::remove_all(dir);
    }
}
BENCHMARK(BM_hive_commit)->Threads(1)->Threads(8)->Threads(32)->UseRealTime();

void BM_hive_get(benchmark::State& state) {
    auto dir = bench_dir("get");
    {
        quorumreg::hive h(dir / "h");
        quorumreg::transaction txn;
        for (int i = 0; i < 10000; ++i)
            txn.set_value("Bench/K" + std::to_string(i % 100), "v" + std::to_string(i), quorumreg::value::dword(i));
        h.commit(txn);
        int i = 0;
        for (auto _ : state) {
            int k = i++ % 10000;
            auto v = h.get_value("Bench/K" + std::to_string(k % 100), "v" + std::to_string(k));
            benchmark::DoNotOptimize(v);
        }
    }
    std::filesystem::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_hive_get);

} // namespace

BENCHMARK_MAIN();
