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

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <set>
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
    checkpoint_manager_options o{.node = "A"};
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
    checkpoint_manager_options oa{.node = "A"};
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

/// Defect 5: one hive transaction that changes several subtrees reaches the store all or
/// nothing. The owner's link is cut at each of its store commits in turn (crash or partition;
/// with `deliver`, that commit still lands and only its answer is lost); the next owner must
/// restore a state that existed, every subtree old or every subtree new, and the new one if the
/// owner's flush() had returned. `per_txn` 1 forces the staged manifest path.
inline void checkpoint_defect5_atomic_batches(quorumreg::quorum_store& store, const std::filesystem::path& root,
                                              std::size_t per_txn, bool deliver, std::chrono::milliseconds ttl) {
    using namespace quorumreg;
    using namespace std::chrono_literals;
    for (int cut = 0;; ++cut) {
        auto tag = std::to_string(per_txn) + (deliver ? "d" : "c") + std::to_string(cut);
        // A fresh resource per cut on the same store; its subtrees must not overlap earlier ones.
        const std::vector<std::string> subtrees = {"App" + tag + "\\A", "App" + tag + "\\B", "App" + tag + "\\C"};
        auto dir = root / tag;
        std::filesystem::create_directories(dir);
        const std::string resource = "R" + tag;
        faulty_store link(store);
        bool acknowledged = false;
        {
            hive a(dir / "A");
            checkpoint_manager_options o{.node = "A"};
            o.lease_ttl = ttl;
            o.batch_subtrees = per_txn;
            o.offline_timeout = 300ms;
            o.retry_interval = 20ms;
            checkpoint_manager ca(a, link, o);
            for (auto& s : subtrees) {
                a.set_value(s, "v", value::dword(1));
                ca.add_checkpoint(resource, s);
            }
            ca.online(resource);
            link.cut_after(cut, deliver);
            transaction t;
            for (auto& s : subtrees)
                t.set_value(s, "v", value::dword(2));
            a.commit(t);
            std::error_code ec;
            auto until = std::chrono::steady_clock::now() + 10s;
            do // once cut nothing can succeed: stop waiting then
                ca.flush(resource, 50ms, ec);
            while (ec == errc::deadline_exceeded && !link.was_cut() && std::chrono::steady_clock::now() < until);
            acknowledged = !ec;
        } // offline fails once cut: abandoned as in a crash, its lease left to expire
        hive b(dir / "B");
        checkpoint_manager_options ob{.node = "B"};
        ob.lease_ttl = ttl; // its takeover grace is 2/5 of its own TTL
        checkpoint_manager cb(b, store, ob);
        online_options oo;
        oo.wait_for_owner = ttl * 4 + 5s;
        cb.online(resource, oo);
        std::set<std::uint32_t> seen;
        for (auto& s : subtrees)
            seen.insert(b.get_value(s, "v").as_dword());
        const std::string how = deliver ? " (delivered, answer lost)" : "";
        INFO("cut at store commit " << cut << how << ", " << per_txn << " subtree(s) per transaction");
        CHECK_MESSAGE(seen.size() == 1, "the next owner restored part of a batch: a state that never existed");
        if (acknowledged) CHECK_MESSAGE(*seen.begin() == 2, "an acknowledged batch was lost");
        // A blob staged for a batch that never switched is not a generation yet.
        CHECK(cb.history(resource, subtrees[0]).back().generation == *seen.begin());
        cb.offline(resource);
        if (!link.was_cut()) break; // the sequence ended before this cut point: every point tried
    }
}

/// Defect 7: keep-alives never wait behind writes. Every store write of the owner is made
/// slower than the lease TTL: the owner stays online and its flush succeeds, and no other node
/// can take over meanwhile. Then its keep-alives fail: is_online() turns false and on_lost
/// fires before the lease could end in the store, and the next owner has every flushed change.
inline void checkpoint_defect7_slow_writes(quorumreg::quorum_store& store, const std::filesystem::path& root,
                                           std::chrono::milliseconds ttl) {
    using namespace quorumreg;
    using namespace std::chrono_literals;
    std::filesystem::create_directories(root);
    faulty_store link(store);
    hive a(root / "A"), b(root / "B");
    checkpoint_manager_options oa{.node = "A"};
    oa.lease_ttl = ttl;
    std::atomic<int> lost{0};
    oa.on_lost = [&](std::string_view, std::error_code) { ++lost; };
    checkpoint_manager ca(a, link, oa);
    checkpoint_manager_options ob{.node = "B"};
    ob.lease_ttl = ttl;
    checkpoint_manager cb(b, store, ob);
    a.set_value("App", "v", value::dword(1));
    ca.add_checkpoint("R", "App");
    ca.online("R");
    link.commit_delay_ms = static_cast<int>(ttl.count() * 3 / 2); // each write outlasts the TTL
    a.set_value("App", "v", value::dword(2));
    std::error_code ec;
    ca.flush("R", ttl * 10, ec);
    CHECK_MESSAGE(!ec, "a write slower than the lease TTL fenced its owner: " << ec.message());
    CHECK(ca.is_online("R"));
    CHECK(lost.load() == 0);
    CHECK(code_of([&] { cb.online("R"); }) == errc::already_exists);
    link.commit_delay_ms = 0;

    link.fail_keep_alive = true; // the store is unreachable for A's keep-alives
    auto t0 = steady_clock::now();
    REQUIRE(eventually([&] { return !ca.is_online("R"); }, ttl * 4));
    auto went = steady_clock::now() - t0;
    CHECK_MESSAGE(went < ttl, "is_online() stayed true until the lease could have ended in the store");
    CHECK(eventually([&] { return lost.load() == 1; }, ttl * 2));
    CHECK(code_of([&] { ca.flush("R", 1s); }) == errc::fenced);
    online_options oo;
    oo.wait_for_owner = ttl * 4 + 5s;
    cb.online("R", oo);
    CHECK(b.get_value("App", "v").as_dword() == 2);
    cb.offline("R");
    ca.offline("R", ec); // cleans up; reports the loss
    CHECK(ec == errc::fenced);
    CHECK(lost.load() == 1);
}

} // namespace qr_test
