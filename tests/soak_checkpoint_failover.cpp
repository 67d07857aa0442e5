// Soak: checkpoint failover on a real 3-member etcd cluster (issue 10; `make soak`).
//
//   soak_checkpoint_failover [ROUNDS]   (also $QUORUMREG_SOAK_ROUNDS; default 500)
//
// The harness starts etcd on 127.0.0.1 (qr_support::etcd_cluster). Each round, node A
// (tests/checkpoint_node, a separate process with its own hive) brings resource "App" online
// and commits random batches to Software/App, flushing the checkpoint after some of them and
// printing "acked N" only after flush() returned; batch N sets bN and last = N. A is killed
// with SIGKILL at a random moment; node B (another process, another hive) brings "App" online
// once A's lease expired and dumps the subtree. Counts:
// - acked: batches acknowledged by a flush (numbering continues across rounds, so per round
//   the highest acked N minus the last batch the store held before the round);
// - lost: acked batches B does not have (last < acked N, or a bI missing for I <= last);
// - corrupt: B fails to come online, or has a batch newer than its own "last".
// Ends with exactly one line "acked=N lost=L corrupt=C"; exit status 0 only if L == C == 0.
#include <quorumreg/hive.hpp>

#include <quorumreg_support/child_process.hpp>
#include <quorumreg_support/etcd_cluster.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using qr_support::child_process;

namespace {

constexpr int ttl_ms = 1000;

std::vector<std::string> node_argv(const std::string& spec, const fs::path& hive, const std::string& name,
                                   std::vector<std::string> cmd) {
    std::vector<std::string> a{QUORUMREG_CHECKPOINT_NODE, spec, hive.string(), name, std::to_string(ttl_ms)};
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
}

struct node_run {
    int status = -1;
    std::string out;
    std::map<std::string, std::uint32_t> values;
};

node_run run_node(const std::string& spec, const fs::path& hive, const std::string& name,
                  std::vector<std::string> cmd) {
    child_process p(node_argv(spec, hive, name, std::move(cmd)));
    node_run r;
    while (p.read_some(r.out, 100000)) {
    }
    r.status = p.wait();
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (eq != std::string::npos && line.find(' ') == std::string::npos)
            r.values[line.substr(0, eq)] = static_cast<std::uint32_t>(std::stoul(line.substr(eq + 1)));
    }
    return r;
}

} // namespace

int main(int argc, char** argv) {
    long rounds = 500;
    if (const char* e = std::getenv("QUORUMREG_SOAK_ROUNDS")) rounds = std::atol(e);
    if (argc > 1) rounds = std::atol(argv[1]);
    std::uint64_t acked = 0, lost = 0, corrupt = 0;
    try {
        qr_support::etcd_cluster cluster(3);
        std::string spec = "etcd:";
        for (auto& u : cluster.client_urls())
            spec += (spec.size() > 5 ? "," : "") + u;
        qr_support::temp_folder tmp("soak-cp");
        fs::path root = tmp.path();
        std::mt19937_64 rng(std::random_device{}());
        std::printf("soak_checkpoint_failover: %ld rounds on %s\n", rounds, spec.c_str());
        std::fflush(stdout);
        auto reg = run_node(spec, root / "A", "A", {"register"});
        if (reg.status != 0) {
            std::printf("register failed: %s\n", reg.out.c_str());
            std::printf("acked=0 lost=0 corrupt=1\n");
            return 1;
        }
        auto t0 = std::chrono::steady_clock::now();
        std::uint32_t base = 0; // the last batch the store held when the round began
        for (long round = 1; round <= rounds; ++round) {
            std::uint32_t round_acked = 0;
            {
                child_process a(node_argv(spec, root / "A", "A", {"writer", std::to_string(rng() % 100000), "1000"}));
                std::string out;
                auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50 + rng() % 700);
                while (std::chrono::steady_clock::now() < until)
                    a.read_some(out, 5);
                a.kill(SIGKILL);
                a.wait();
                a.read_all(out);
                std::istringstream in(out);
                std::string word;
                std::uint32_t n = 0;
                while (in >> word)
                    if (word == "acked" && in >> n) round_acked = std::max(round_acked, n);
            }
            // Batch numbers continue across rounds (A restores "last" from the store).
            if (round_acked > base) acked += round_acked - base;
            auto b = run_node(spec, root / "B", "B", {"dump"});
            if (b.status != 0) {
                std::printf("round %ld: B could not take over: %s\n", round, b.out.c_str());
                ++corrupt;
            } else {
                std::uint32_t last = b.values.count("last") ? b.values["last"] : 0;
                base = last;
                for (std::uint32_t i = 1; i <= round_acked; ++i)
                    if (!b.values.count("b" + std::to_string(i))) ++lost;
                if (last < round_acked)
                    std::printf("round %ld: batch %u was acknowledged but B has only %u\n", round, round_acked, last);
                for (std::uint32_t i = round_acked + 1; i <= last; ++i)
                    if (!b.values.count("b" + std::to_string(i))) {
                        std::printf("round %ld: B has last=%u but not b%u\n", round, last, i);
                        ++corrupt;
                    }
                if (b.values.count("b" + std::to_string(last + 1))) {
                    std::printf("round %ld: B has b%u beyond its last=%u\n", round, last + 1, last);
                    ++corrupt;
                }
            }
            // Next round starts clean: A and B both take the resource from the store.
            fs::remove_all(root / "A");
            fs::remove_all(root / "B");
            quorumreg::hive reset(root / "A");
            if (round % 10 == 0 || round == rounds) {
                auto s =
                    std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();
                std::printf("round %ld/%ld: acked %llu lost %llu corrupt %llu (%llds)\n", round, rounds,
                            static_cast<unsigned long long>(acked), static_cast<unsigned long long>(lost),
                            static_cast<unsigned long long>(corrupt), static_cast<long long>(s));
                std::fflush(stdout);
            }
        }
    } catch (const std::exception& e) {
        std::printf("soak_checkpoint_failover: %s\n", e.what());
        ++corrupt;
    }
    std::printf("acked=%llu lost=%llu corrupt=%llu\n", static_cast<unsigned long long>(acked),
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(corrupt));
    return lost == 0 && corrupt == 0 ? 0 : 1;
}
