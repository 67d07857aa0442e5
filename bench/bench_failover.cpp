// Failover: the owner of a checkpointed resource is a real node process; it is killed with
// kill -9, and a standby on the same quorum (directory store) brings the resource online with
// the owner's data. Measured: kill -> standby's online() returned with every value restored.
//
// The peer is the lease TTL itself: a dead owner is only noticed when its lease expires (between
// 2/3 TTL and TTL after the kill, since the owner renews every TTL/3), so the goal is
// failover <= TTL + 200 ms — everything the library adds on top of the lease (polling for the
// expiry, fetching and verifying the checkpoint, restoring it in one hive transaction) must fit
// in 200 ms. Counter ttl_ms (the peer value) and over_ttl_ms (failover - TTL, may be negative).
//
// The owner is this binary re-executed: bench_failover --node DIR TTL_MS VALUES.
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <benchmark/benchmark.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace qr = quorumreg;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto subtree = "Software/Failover";
constexpr int values = 1000;

std::string value_name(int i) { return "v" + std::to_string(i); }

/// The owner node: seeds the subtree, brings the resource online (checkpointing it), says
/// "ready" and then holds ownership until it is killed.
int node_main(const fs::path& dir, std::chrono::milliseconds ttl, int n) {
    qr::hive local(dir / "A");
    qr::directory_store quorum(dir / "quorum", {.create = true}); // the standby opens it later
    qr::checkpoint_manager cp(local, quorum, {.node = "A", .lease_ttl = ttl});
    qr::transaction txn;
    for (int i = 0; i < n; ++i)
        txn.set_value(subtree, value_name(i), qr::value::dword(static_cast<std::uint32_t>(i)));
    local.commit(txn);
    if (cp.checkpoints("R").empty()) cp.add_checkpoint("R", subtree);
    cp.online("R", {.wait_for_owner = 60s});
    cp.flush("R");
    std::cout << "ready" << std::endl;
    while (true)
        std::this_thread::sleep_for(1s); // until kill -9
}

/// A child process running node_main; stdout through a pipe so we can wait for "ready".
class owner_process {
public:
    owner_process(const fs::path& dir, std::chrono::milliseconds ttl) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        auto exe = fs::read_symlink("/proc/self/exe").string();
        std::vector<std::string> args{exe, "--node", dir.string(), std::to_string(ttl.count()), std::to_string(values)};
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) {
            ::dup2(fds[1], 1);
            std::vector<char*> argv;
            for (auto& a : args)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        out_ = fds[0];
    }
    ~owner_process() {
        kill();
        if (out_ >= 0) ::close(out_);
    }
    owner_process(const owner_process&) = delete;
    owner_process& operator=(const owner_process&) = delete;

    bool wait_ready(std::chrono::milliseconds timeout) {
        auto deadline = clock_type::now() + timeout;
        std::string buf;
        while (buf.find("ready\n") == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
            if (left <= 0) return false;
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
            char chunk[256];
            auto n = ::read(out_, chunk, sizeof chunk);
            if (n <= 0) return false; // exited
            buf.append(chunk, static_cast<std::size_t>(n));
        }
        return true;
    }
    /// kill -9 and reap.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
};

fs::path bench_dir() {
    std::random_device rd;
    const char* env = std::getenv("QUORUMREG_BENCH_DIR");
    fs::path base = env ? fs::path(env) : fs::temp_directory_path();
    auto p = base / ("qr-bench-failover-" + std::to_string(rd()));
    fs::create_directories(p);
    return p;
}

void BM_failover_directory(benchmark::State& state) {
    const std::chrono::milliseconds ttl(state.range(0));
    double total_ms = 0;
    std::int64_t runs = 0;
    for (auto _ : state) {
        auto dir = bench_dir();
        {
            owner_process owner(dir, ttl);
            if (!owner.wait_ready(120s)) {
                state.SkipWithError("the owner node did not come online");
                break;
            }
            // The standby is prepared (hive and store open) before the owner dies.
            qr::hive standby(dir / "B");
            qr::directory_store quorum(dir / "quorum");
            qr::checkpoint_manager cp(standby, quorum, {.node = "B", .lease_ttl = ttl});
            auto t0 = clock_type::now();
            owner.kill();
            cp.online("R", {.wait_for_owner = 120s});
            auto secs = std::chrono::duration<double>(clock_type::now() - t0).count();
            bool complete = standby.get_value(subtree, value_name(values - 1)).as_dword() == values - 1 &&
                            standby.values(subtree).size() == static_cast<std::size_t>(values);
            if (!complete) {
                state.SkipWithError("the standby came online without the owner's data");
                break;
            }
            state.SetIterationTime(secs);
            total_ms += secs * 1e3;
            ++runs;
            cp.offline("R");
        }
        fs::remove_all(dir);
    }
    state.counters["ttl_ms"] = static_cast<double>(ttl.count());
    if (runs) state.counters["over_ttl_ms"] = total_ms / static_cast<double>(runs) - static_cast<double>(ttl.count());
}
// 300: the smoke size (ctest); 1000: the goal row.
BENCHMARK(BM_failover_directory)->Arg(300)->Arg(1000)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--node")
        return node_main(argv[2], std::chrono::milliseconds(std::atoll(argv[3])), std::atoi(argv[4]));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
