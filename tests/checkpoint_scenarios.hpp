// Multi-process checkpoint scenarios, run against any store spec (dir:..., etcd:...).
// Nodes are separate processes (tests/checkpoint_node.cpp), each with its own hive.
#pragma once

#include "process_util.hpp"
#include "test_support.hpp"

#include <quorumreg/hive.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>

namespace qr_test {

struct node_run {
    int status = -1;
    std::string out;
    std::map<std::string, std::uint32_t> values;
    std::string report;
};

inline std::vector<std::string> node_argv(const std::string& spec, const std::filesystem::path& hive,
                                          const std::string& name, int ttl_ms, std::vector<std::string> cmd) {
    std::vector<std::string> a{QUORUMREG_CHECKPOINT_NODE, spec, hive.string(), name, std::to_string(ttl_ms)};
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
}

/// Runs a node command to completion and parses "NAME=VALUE" and "report ..." lines.
inline node_run run_node(const std::string& spec, const std::filesystem::path& hive, const std::string& name,
                         int ttl_ms, std::vector<std::string> cmd) {
    child_process p(node_argv(spec, hive, name, ttl_ms, std::move(cmd)));
    node_run r;
    std::string line;
    while (p.read_some(r.out, 100000)) {
    }
    r.status = p.wait();
    std::istringstream in(r.out);
    while (std::getline(in, line)) {
        if (line.rfind("report ", 0) == 0) r.report = line.substr(7);
        auto eq = line.find('=');
        if (eq != std::string::npos && line.find(' ') == std::string::npos)
            r.values[line.substr(0, eq)] = static_cast<std::uint32_t>(std::stoul(line.substr(eq + 1)));
    }
    return r;
}

/// Failover: node A writes 1000 keys in random batches and is SIGKILLed at a random point;
/// node B brings the resource online once A's lease expired and has every flushed change.
inline void checkpoint_failover_rounds(const std::string& spec, const std::filesystem::path& root, int rounds,
                                       int ttl_ms, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    MESSAGE("failover on " << spec << ": " << rounds << " rounds, seed " << seed);
    REQUIRE(run_node(spec, root / "A", "A", ttl_ms, {"register"}).status == 0);
    for (int round = 0; round < rounds; ++round) {
        std::uint32_t acked = 0;
        {
            child_process a(
                node_argv(spec, root / "A", "A", ttl_ms, {"writer", std::to_string(rng() % 100000), "1000"}));
            std::string out;
            auto kill_after = std::chrono::milliseconds(50 + rng() % 700);
            auto until = std::chrono::steady_clock::now() + kill_after;
            while (std::chrono::steady_clock::now() < until)
                a.read_some(out, 5);
            a.kill(SIGKILL);
            a.wait();
            a.read_all(out);
            std::istringstream in(out);
            std::string word;
            std::uint32_t n;
            while (in >> word) {
                if (word == "acked" && in >> n) acked = std::max(acked, n);
            }
        }
        auto b = run_node(spec, root / "B", "B", ttl_ms, {"dump"});
        REQUIRE_MESSAGE(b.status == 0, "round " << round << ": " << b.out);
        std::uint32_t last = b.values.count("last") ? b.values["last"] : 0;
        CHECK_MESSAGE(last >= acked, "round " << round << ": acked batch " << acked << " but B has " << last);
        for (std::uint32_t i = 1; i <= last; ++i)
            REQUIRE_MESSAGE(b.values.count("b" + std::to_string(i)),
                            "round " << round << ": batch " << i << " missing");
        CHECK_FALSE(b.values.count("b" + std::to_string(last + 1)));
        // Next round starts clean: A and B both take the resource from the store.
        std::filesystem::remove_all(root / "A");
        std::filesystem::remove_all(root / "B");
        quorumreg::hive reset(root / "A"); // (empty hive: A restores from the store next time)
    }
}

/// Offline edits on B with each policy.
inline void checkpoint_offline_edit_policies(const std::string& spec, const std::filesystem::path& root, int ttl_ms) {
    REQUIRE(run_node(spec, root / "A", "A", ttl_ms, {"set", "Port", "1"}).status == 0);
    REQUIRE(run_node(spec, root / "A", "A", ttl_ms, {"register"}).status == 0);
    auto first = run_node(spec, root / "B", "B", ttl_ms, {"dump"});
    REQUIRE(first.values["Port"] == 1);
    REQUIRE(run_node(spec, root / "A", "A", ttl_ms, {"set", "Port", "2"}).status == 0);
    auto edit_b = [&](std::uint32_t v) {
        quorumreg::hive h(root / "B");
        h.set_value("Software/App", "Port", quorumreg::value::dword(v));
    };
    edit_b(99); // edited on B while the resource is offline
    auto rejected = run_node(spec, root / "B", "B", ttl_ms, {"dump", "reject"});
    CHECK(rejected.status != 0);
    CHECK(rejected.out.find("edited while offline") != std::string::npos);
    {
        quorumreg::hive h(root / "B");
        CHECK(h.get_value("Software/App", "Port").as_dword() == 99); // untouched
    }
    auto preserved = run_node(spec, root / "B", "B", ttl_ms, {"dump", "preserve"});
    CHECK(preserved.status == 0);
    CHECK(preserved.report.find("conflicts=1") != std::string::npos);
    CHECK(preserved.values["Port"] == 2);
    edit_b(77);
    auto adopted = run_node(spec, root / "B", "B", ttl_ms, {"dump", "adopt_local"});
    CHECK(adopted.report.find("adopted=1") != std::string::npos);
    CHECK(adopted.values["Port"] == 77);
    auto c = run_node(spec, root / "C", "C", ttl_ms, {"dump"});
    CHECK(c.values["Port"] == 77);
}

/// Stale owner: A is SIGSTOPped past its lease; B takes over and writes; A resumes and writes:
/// A's write is rejected (fenced) and B's data is intact.
inline void checkpoint_stale_owner(const std::string& spec, const std::filesystem::path& root, int ttl_ms) {
    REQUIRE(run_node(spec, root / "A", "A", ttl_ms, {"register"}).status == 0);
    const auto go = root / "A-resume";
    child_process a(node_argv(spec, root / "A", "A", ttl_ms, {"stale", go.string()}));
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (out.find("ready") == std::string::npos && std::chrono::steady_clock::now() < deadline)
        a.read_some(out, 50);
    REQUIRE(out.find("ready") != std::string::npos);
    a.kill(SIGSTOP);
    auto b = run_node(spec, root / "B", "B", ttl_ms, {"set", "owner", "2"}); // waits for A's lease to expire
    CHECK(b.status == 0);
    std::ofstream{go}; // A writes as soon as it runs again
    a.kill(SIGCONT);
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (out.find("fenced") == std::string::npos && out.find("accepted") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline)
        a.read_some(out, 50);
    CHECK_MESSAGE(out.find("fenced") != std::string::npos, out);
    // Bounded: a node that does not finish is killed (and the check above has failed).
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (::waitpid(a.pid(), nullptr, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline)
        a.read_some(out, 50);
    a.kill(SIGKILL);
    auto c = run_node(spec, root / "C", "C", ttl_ms, {"dump"});
    CHECK(c.values["owner"] == 2);
}

} // namespace qr_test
