// Multi-process checkpoint scenarios, run against any store spec (dir:..., etcd:...).
// Nodes are separate processes (tests/checkpoint_node.cpp), each with its own hive.
#pragma once

#include "faulty_store.hpp"
#include "process_util.hpp"
#include "store_conformance.hpp" // eventually()
#include "test_support.hpp"

#include <quorumreg/checkpoint.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/registry.hpp>

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

// ---- in-process defect scenarios (issue 15), run on any quorum_store --------------------------

/// Defect 4: an edit committed while online() runs (after it read the local subtree, before
/// its restore commit) is not overwritten silently: it is kept as a conflict record.
inline void checkpoint_defect4_edit_during_online(quorumreg::quorum_store& store, const std::filesystem::path& root) {
    using namespace quorumreg;
    const char* app = "Software/Contoso/App";
    std::filesystem::create_directories(root);
    {
        hive a(root / "A");
        checkpoint_manager cp(a, store, {.node = "A"});
        a.set_value(app, "Port", value::dword(1));
        cp.add_checkpoint("App", app); // A's record: Port=1
    }
    {
        hive b(root / "B");
        checkpoint_manager cp(b, store, {.node = "B"});
        cp.online("App");
        b.set_value(app, "Port", value::dword(2));
        cp.offline("App"); // quorum: Port=2, so A's copy is stale and online() restores
    }
    hive a(root / "A");
    int edits = 0;
    checkpoint_options o{.node = "A"};
    o.before_restore_commit = [&](std::string_view) {
        if (edits++ == 0) a.set_value(app, "Admin", value::dword(7)); // the administrator's edit
    };
    checkpoint_manager cp(a, store, o);
    auto report = cp.online("App");
    CHECK(edits >= 1);
    registry expected; // what the admin's edit made of A's copy
    expected.set_value(app, "Port", value::dword(1));
    expected.set_value(app, "Admin", value::dword(7));
    auto conflicts = cp.conflicts("App");
    REQUIRE_MESSAGE(conflicts.size() == 1, "the edit made during online() was overwritten without a conflict record");
    CHECK(cp.conflict_content("App", conflicts[0].id) == expected.export_subtree(app));
    CHECK(report.conflicts.size() == 1);
    CHECK(a.get_value(app, "Port").as_dword() == 2); // the quorum copy, restored after all
    cp.offline("App");
}

/// Defect 8: the owner's registration watch ends (history compacted) and a subtree is then
/// registered on another node: the owner resubscribes, rescans and checkpoints it; and with a
/// watch that stalls without an error, the periodic re-list still finds the next one.
inline void checkpoint_defect8_registration_watch(quorumreg::quorum_store& store, const std::filesystem::path& root) {
    using namespace quorumreg;
    std::filesystem::create_directories(root);
    faulty_store owner_view(store);
    hive a(root / "A"), b(root / "B");
    checkpoint_options oa{.node = "A"};
    oa.registration_resync = std::chrono::milliseconds(500);
    checkpoint_manager ca(a, owner_view, oa);
    checkpoint_manager cb(b, store, {.node = "B"});
    a.set_value("S1", "x", value::dword(1));
    ca.add_checkpoint("App", "S1");
    ca.online("App");
    REQUIRE(eventually([&] { return owner_view.watches_started.load() >= 1; }));
    auto checkpointed_by_a = [&](const char* subtree) {
        return [&, subtree] {
            ca.flush("App");
            for (auto& g : cb.history("App", subtree))
                if (!g.absent && g.writer == "A") return true;
            return false;
        };
    };

    owner_view.end_watches(); // as etcd does when the watch's history was compacted
    a.set_value("S2", "y", value::dword(2));
    cb.add_checkpoint("App", "S2"); // registered elsewhere: the owner learns it from its watch
    CHECK_MESSAGE(eventually(checkpointed_by_a("S2"), std::chrono::seconds(5)),
                  "a subtree registered after the registration watch ended was never checkpointed");

    owner_view.stall_watches = true; // a stream that hangs without ending
    a.set_value("S3", "z", value::dword(3));
    cb.add_checkpoint("App", "S3");
    CHECK_MESSAGE(eventually(checkpointed_by_a("S3"), std::chrono::seconds(5)),
                  "a subtree registered while the watch stalled was never checkpointed");
    owner_view.stall_watches = false;
    ca.offline("App");
    cb.online("App");
    CHECK(b.get_value("S2", "y").as_dword() == 2);
    CHECK(b.get_value("S3", "z").as_dword() == 3);
    cb.offline("App");
}

/// Defect 8, follow(): the warm-standby watch ends; it is resubscribed, so the generation
/// written afterwards is still served from the cache on failover.
inline void checkpoint_defect8_follow_resubscribes(quorumreg::quorum_store& store, const std::filesystem::path& root) {
    using namespace quorumreg;
    const char* app = "Software/Contoso/App";
    std::filesystem::create_directories(root);
    faulty_store standby_view(store);
    hive a(root / "A"), b(root / "B");
    checkpoint_manager ca(a, store, {.node = "A"});
    checkpoint_manager cb(b, standby_view, {.node = "B"});
    ca.add_checkpoint("App", app);
    ca.online("App");
    a.set_value(app, "Port", value::dword(1));
    ca.flush("App");
    auto following = cb.follow("App");
    REQUIRE(eventually([&] { return standby_view.watches_started.load() >= 1; }));
    standby_view.end_watches();
    CHECK_MESSAGE(eventually([&] { return standby_view.watches_started.load() >= 2; }, std::chrono::seconds(5)),
                  "follow() did not resubscribe after its watch ended");
    a.set_value(app, "Port", value::dword(2));
    ca.flush("App");
    ca.offline("App");
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // watch delivery
    auto before = cb.cache_hits();
    cb.online("App");
    CHECK(b.get_value(app, "Port").as_dword() == 2);
    CHECK_MESSAGE(cb.cache_hits() > before, "the generation written after the watch ended was not in the cache");
    cb.offline("App");
}

/// Defect 9: after remove and re-add restart the generation numbers, online() restores what
/// the store's latest pointer names, never an old blob cached under the same key; the cache
/// holds one blob per subtree and drops it when the subtree is removed.
inline void checkpoint_defect9_follow_generations(quorumreg::quorum_store& store, const std::filesystem::path& root) {
    using namespace quorumreg;
    const char* app = "Software/Contoso/App";
    std::filesystem::create_directories(root);
    hive a(root / "A"), b(root / "B");
    checkpoint_manager ca(a, store, {.node = "A"});
    checkpoint_manager cb(b, store, {.node = "B"});
    ca.add_checkpoint("App", app);
    {
        auto following = cb.follow("App");
        ca.online("App");
        for (std::uint32_t v = 1; v <= 5; ++v) { // generations 1..5 at least, all seen by B
            a.set_value(app, "Port", value::dword(v));
            ca.flush("App");
        }
        ca.offline("App");
        std::this_thread::sleep_for(std::chrono::milliseconds(300)); // watch delivery
        CHECK(cb.cached_blobs() == 1);                               // the newest blob only, not one per generation
        ca.remove_checkpoint("App", app);
        CHECK_MESSAGE(eventually([&] { return cb.cached_blobs() == 0; }, std::chrono::seconds(5)),
                      "the cache kept the blob of a removed subtree");
        a.set_value(app, "Port", value::dword(1)); // what B saw as generation 1 before
        ca.add_checkpoint("App", app);
        ca.online("App");
        ca.flush("App");
        ca.offline("App");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    // Not following now: the re-added subtree's next generations reach B only through the store.
    ca.remove_checkpoint("App", app);
    a.set_value(app, "Port", value::dword(42));
    ca.add_checkpoint("App", app);
    ca.online("App");
    ca.flush("App");
    std::uint64_t newest = 0;
    for (auto& g : cb.history("App", app))
        newest = std::max(newest, g.generation);
    CHECK(newest >= 1);
    CHECK(newest <= 5); // numbering restarted: a key B's cache held before
    ca.offline("App");
    cb.online("App");
    CHECK_MESSAGE(b.get_value(app, "Port").as_dword() == 42, "online() restored an old generation from the cache");
    cb.offline("App");
}

} // namespace qr_test
