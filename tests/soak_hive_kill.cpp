// Soak: the hive under kill -9, round after round (issue 10; `make soak`, docs/reliability.md).
//
//   soak_hive_kill [ROUNDS] [DIR]     (ROUNDS also from $QUORUMREG_SOAK_ROUNDS; default 10000)
//
// Each round forks a child (no exec: rounds are cheap) that opens the hive — recovering from
// the previous round's kill — and commits transactions as fast as it can, each setting
// Soak/K\n<seq % 512> = seq and Soak\last = seq, and writing seq to a pipe only after commit()
// returned (the acknowledgement). The parent kills it with SIGKILL at a random moment (often
// during open/recovery, sometimes mid-compaction: the snapshot threshold is small), reopens
// the hive and checks:
// - lost: an acknowledged seq whose effect is missing (Soak\last below the last acked seq, or
//   a name whose value is older than its last acked seq);
// - corrupt: the hive does not open, or a value that no commit wrote (seq % 512 != name, or
//   newer than Soak\last).
// Ends with exactly one line "acked=N lost=L corrupt=C"; exit status 0 only if L == C == 0.
#include <quorumreg/hive.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace quorumreg;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t names = 512;

[[noreturn]] void child(const fs::path& dir, std::uint32_t start, int ack_fd) {
    try {
        hive_options o;
        o.snapshot_threshold = 16 * 1024; // compactions every few rounds, so kills land in them too
        hive h(dir, o);
        for (std::uint32_t seq = start;; ++seq) {
            transaction t;
            t.set_value("Soak/K", "n" + std::to_string(seq % names), value::dword(seq));
            t.set_value("Soak", "last", value::dword(seq));
            h.commit(t);
            if (::write(ack_fd, &seq, sizeof seq) != static_cast<ssize_t>(sizeof seq)) ::_exit(3);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "soak_hive_kill child: %s\n", e.what());
        ::_exit(2);
    }
}

/// Appends the acknowledgements waiting in the pipe to `acks`; false at end of file.
bool drain(int fd, std::vector<std::uint32_t>& acks, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return true;
    std::uint32_t buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    // Writes of 4 bytes to a pipe are atomic, so reads return whole acknowledgements.
    acks.insert(acks.end(), buf, buf + n / static_cast<ssize_t>(sizeof(std::uint32_t)));
    return true;
}

} // namespace

int main(int argc, char** argv) {
    long rounds = 10000;
    if (const char* e = std::getenv("QUORUMREG_SOAK_ROUNDS")) rounds = std::atol(e);
    if (argc > 1) rounds = std::atol(argv[1]);
    fs::path root = argc > 2 ? fs::path(argv[2])
                             : fs::path(std::getenv("QUORUMREG_TEST_TMP") ? std::getenv("QUORUMREG_TEST_TMP")
                                                                          : fs::temp_directory_path().string()) /
                                   ("soak-hive-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root);
    auto dir = root / "hive";
    std::mt19937_64 rng(std::random_device{}());
    std::printf("soak_hive_kill: %ld rounds in %s\n", rounds, dir.c_str());
    std::fflush(stdout);

    std::map<std::uint32_t, std::uint32_t> acked_of; // name index -> last acked seq
    std::uint32_t last_acked = 0, next = 1;
    std::uint64_t acked = 0, lost = 0, corrupt = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long round = 1; round <= rounds; ++round) {
        int fds[2];
        if (::pipe(fds) != 0) return 4;
        std::fflush(stdout);
        pid_t pid = ::fork();
        if (pid < 0) return 4;
        if (pid == 0) {
            ::close(fds[0]);
            child(dir, next, fds[1]);
        }
        ::close(fds[1]);
        // Kill soon after the start (inside open/recovery) in a third of the rounds.
        auto delay = std::chrono::microseconds(rng() % 3 == 0 ? rng() % 3000 : 3000 + rng() % 40000);
        auto until = std::chrono::steady_clock::now() + delay;
        std::vector<std::uint32_t> acks;
        while (std::chrono::steady_clock::now() < until) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (!drain(fds[0], acks, static_cast<int>(std::max<long>(0, left.count())))) break;
        }
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        while (drain(fds[0], acks, 0)) {
        }
        ::close(fds[0]);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            std::printf("round %ld: the child failed on its own (status %d)\n", round, status);
            ++corrupt;
        }
        for (auto seq : acks) {
            ++acked;
            acked_of[seq % names] = seq;
            last_acked = std::max(last_acked, seq);
        }
        try {
            hive h(dir);
            auto lv = h.find_value("Soak", "last");
            std::uint32_t last = lv ? lv->as_dword() : 0;
            if (last < last_acked) {
                std::printf("round %ld: last is %u but %u was acknowledged\n", round, last, last_acked);
                lost += last_acked - last;
            }
            std::map<std::string, std::uint32_t> got;
            std::error_code vec; // key_not_found until the first commit
            for (auto& v : h.values("Soak/K", vec)) {
                std::uint32_t seq = v.data.as_dword();
                got[v.name] = seq;
                if (v.name != "n" + std::to_string(seq % names) || seq > last) {
                    std::printf("round %ld: %s = %u was never written (last %u)\n", round, v.name.c_str(), seq, last);
                    ++corrupt;
                }
            }
            if (vec && vec != errc::key_not_found) throw error(vec, "values \"Soak/K\"");
            for (auto& [idx, seq] : acked_of) {
                auto it = got.find("n" + std::to_string(idx));
                if (it == got.end() || it->second < seq) {
                    std::printf("round %ld: n%u lost acknowledged seq %u\n", round, idx, seq);
                    ++lost;
                }
            }
            next = std::max(last, last_acked) + 1;
        } catch (const std::exception& e) {
            std::printf("round %ld: reopen failed: %s\n", round, e.what());
            ++corrupt;
            break; // nothing sensible to continue from
        }
        if (round % 500 == 0 || round == rounds) {
            auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();
            std::printf("round %ld/%ld: acked %llu lost %llu corrupt %llu (%llds)\n", round, rounds,
                        static_cast<unsigned long long>(acked), static_cast<unsigned long long>(lost),
                        static_cast<unsigned long long>(corrupt), static_cast<long long>(s));
            std::fflush(stdout);
        }
    }
    std::error_code ec;
    fs::remove_all(root, ec);
    std::printf("acked=%llu lost=%llu corrupt=%llu\n", static_cast<unsigned long long>(acked),
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(corrupt));
    return lost == 0 && corrupt == 0 ? 0 : 1;
}
