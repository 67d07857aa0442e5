// Embedded quorum stores: directory_store compare-and-swap puts/s beside the raw cost of
// durability (an append + fsync loop on a file in the SAME directory, same run), and
// memory_store puts/s. Each CAS is one committed write: take the file lock, read what other
// writers appended, evaluate the compare, append one CRC'd frame, fsync.
//
// The directory is $QUORUMREG_BENCH_DIR if set, else ./bench-stores-tmp under the working
// directory (not /tmp, which may be tmpfs and make fsync free). It is removed afterwards.
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

fs::path bench_dir() {
    const char* env = std::getenv("QUORUMREG_BENCH_DIR");
    fs::path p = env ? fs::path(env) : fs::current_path() / "bench-stores-tmp";
    fs::create_directories(p);
    return p;
}

double raw_fsync_rate = 0; // appends/s measured by BM_raw_append_fsync in this run

/// The peer: append a 64-byte record and fsync, in a loop, in the same directory.
void BM_raw_append_fsync(benchmark::State& state) {
    auto dir = bench_dir() / "raw";
    fs::create_directories(dir);
    auto file = dir / "raw.log";
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        state.SkipWithError("cannot create the raw file");
        return;
    }
    std::string record(64, 'r');
    off_t off = 0;
    for (auto _ : state) {
        if (::pwrite(fd, record.data(), record.size(), off) != static_cast<ssize_t>(record.size()) ||
            ::fsync(fd) != 0) {
            state.SkipWithError("write/fsync failed");
            break;
        }
        off += static_cast<off_t>(record.size());
    }
    ::close(fd);
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
    state.counters["appends_per_s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

/// Compare-and-swap puts on one key (each conditional on the previous revision).
void BM_directory_cas_put(benchmark::State& state) {
    auto dir = bench_dir() / "dirstore";
    fs::remove_all(dir);
    quorumreg::directory_store_options o;
    o.keep_revisions = 10000;
    o.create = true;
    auto t0 = std::chrono::steady_clock::now();
    std::int64_t done = 0;
    {
        quorumreg::directory_store s(dir, o);
        std::string value(static_cast<std::size_t>(state.range(0)), 'v');
        auto rev = s.put("bench/key", value);
        t0 = std::chrono::steady_clock::now();
        for (auto _ : state) {
            rev = s.put_if("bench/key", value, rev);
            ++done;
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
    state.counters["cas_per_s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    if (raw_fsync_rate > 0 && secs > 0)
        state.counters["ratio_to_raw_fsync"] = (static_cast<double>(done) / secs) / raw_fsync_rate;
}

/// Unconditional get (a read: shared lock, stat of the log, in-memory lookup).
void BM_directory_get(benchmark::State& state) {
    auto dir = bench_dir() / "dirget";
    fs::remove_all(dir);
    {
        quorumreg::directory_store s(dir, {.create = true});
        s.put("bench/key", std::string(100, 'v'));
        for (auto _ : state)
            benchmark::DoNotOptimize(s.get("bench/key"));
    }
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}

void BM_memory_put(benchmark::State& state) {
    quorumreg::memory_store s;
    std::string value(100, 'v');
    auto rev = s.put("bench/key", value);
    for (auto _ : state)
        rev = s.put_if("bench/key", value, rev);
    state.SetItemsProcessed(state.iterations());
}

// The raw loop runs first so the CAS benchmark can report its ratio to it.
void raw_then_record(benchmark::State& state) {
    auto t0 = std::chrono::steady_clock::now();
    BM_raw_append_fsync(state);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 0 && state.iterations() > 0) raw_fsync_rate = static_cast<double>(state.iterations()) / secs;
}

BENCHMARK(raw_then_record)->Name("raw_append_fsync")->UseRealTime();
BENCHMARK(BM_directory_cas_put)->Arg(100)->Arg(4096)->UseRealTime();
BENCHMARK(BM_directory_get)->UseRealTime();
BENCHMARK(BM_memory_put);

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    std::error_code ec;
    if (!std::getenv("QUORUMREG_BENCH_DIR")) fs::remove(fs::current_path() / "bench-stores-tmp", ec); // if empty
    return 0;
}
