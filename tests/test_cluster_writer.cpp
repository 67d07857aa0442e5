#include <quorumreg/cluster_writer.hpp>

#include "cluster_writer_scenarios.hpp"
#include "process_util.hpp"
#include "test_support.hpp"

#include <quorumreg/stores/directory_store.hpp>
#include <fstream>
#include <set>

#include <quorumreg/stores/memory_store.hpp>

using namespace quorumreg;

namespace {

/// The stores the issue 15 scenarios run on here ("dir": a directory store created for the
/// test, whose log writes can be failed; "mem": the in-process store).
struct local_quorum : qr_test::cw_quorum {
    std::shared_ptr<qr_test::write_faults> io = std::make_shared<qr_test::write_faults>();
    std::unique_ptr<quorum_store> owned;
    memory_store* mem = nullptr;
    local_quorum(std::string_view kind, const std::filesystem::path& dir) {
        if (kind == "dir") {
            directory_store_options o;
            o.create = true;
            o.io = io;
            owned = std::make_unique<directory_store>(dir / "quorum", o);
        } else {
            auto m = std::make_unique<memory_store>();
            mem = m.get();
            owned = std::move(m);
        }
    }
    quorum_store& store() override { return *owned; }
    void set_reachable(bool up) override {
        if (mem) {
            if (up)
                mem->clear_faults();
            else
                mem->fail_next(1000000, errc::quorum_unavailable);
        } else {
            io->unreachable = !up;
        }
    }
};

constexpr std::string_view store_kinds[] = {"dir", "mem"};

} // namespace

TEST_SUITE("cluster_writer") {

    TEST_CASE("writes before replication is online are journaled durably and replayed in order") {
        qr_test::temp_dir dir("cw");
        memory_store store;
        {
            hive h(dir.path() / "n1");
            cluster_writer w(h, {.node = "n1"});
            w.put("map/alice", "1000");
            w.put("map/bob", "1001");
            w.put("map/alice", "1002"); // a later write to the same key wins, in order
            w.erase("map/carol");
            CHECK(w.pending().size() == 4);
            CHECK(w.get("map/alice") == "1002");
            CHECK(store.list("quorumreg/cluster/").empty()); // nothing reached the store yet
        }                                                    // the process "restarts": the journal is in the hive
        hive h(dir.path() / "n1");
        cluster_writer w(h, {.node = "n1"});
        REQUIRE(w.pending().size() == 4);
        std::vector<write_conflict> seen;
        auto sub = w.on_conflict([&](const write_conflict& c) { seen.push_back(c); });
        w.attach(store);
        CHECK(w.attached());
        CHECK(w.pending().empty());
        CHECK(seen.empty());
        CHECK(store.get("quorumreg/cluster/map/alice")->value == "1002");
        CHECK(store.get("quorumreg/cluster/map/bob")->value == "1001");
        // Attached: writes go straight to the store.
        w.put("map/dave", "1003");
        CHECK(store.get("quorumreg/cluster/map/dave")->value == "1003");
        CHECK(w.get("map/dave") == "1003");
    }

    TEST_CASE("a key changed in the store meanwhile is a conflict: reported and kept, not overwritten") {
        qr_test::temp_dir dir("cw");
        memory_store store;
        hive h(dir.path() / "n1");
        cluster_writer w(h, {.node = "n1"});
        w.attach(store);
        w.put("map/alice", "1000"); // n1 knows alice at this revision
        w.detach();
        w.put("map/alice", "2000"); // journaled, based on what n1 saw
        w.put("map/alice", "2001"); // continues the same local line
        w.put("map/bob", "3000");
        store.put("quorumreg/cluster/map/alice", "9999"); // another node changed it meanwhile
        std::vector<write_conflict> seen;
        auto sub = w.on_conflict([&](const write_conflict& c) { seen.push_back(c); });
        w.attach(store);
        CHECK(store.get("quorumreg/cluster/map/alice")->value == "9999"); // not silently overwritten
        CHECK(store.get("quorumreg/cluster/map/bob")->value == "3000");
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].key == "map/alice");
        CHECK(seen[0].local == "2000");
        CHECK(seen[0].remote == "9999");
        auto kept = w.conflicts();
        REQUIRE(kept.size() == 2);
        CHECK(kept[1].local == "2001");
        CHECK(kept[1].node == "n1");
        w.discard_conflict(kept[0].sequence);
        CHECK(w.conflicts().size() == 1);
    }

    TEST_CASE("pending, conflicts and discard_conflict have error_code forms; bad records are errors, not crashes") {
        qr_test::temp_dir dir("cw");
        memory_store store;
        hive h(dir.path() / "n1");
        cluster_writer w(h, {.node = "n1"});
        w.attach(store);
        w.put("k", "1");
        w.detach();
        w.put("k", "2");
        std::error_code ec;
        CHECK(w.pending(ec).size() == 1);
        CHECK(!ec);
        store.put("quorumreg/cluster/k", "other"); // makes the journaled write a conflict
        w.attach(store);
        auto kept = w.conflicts(ec);
        CHECK(!ec);
        REQUIRE(kept.size() == 1);
        CHECK(w.conflicts().size() == 1);

        // An unknown sequence number: not_found in both forms, naming it; nothing is removed.
        w.discard_conflict(kept[0].sequence + 100, ec);
        CHECK(ec == errc::not_found);
        try {
            w.discard_conflict(kept[0].sequence + 100);
            FAIL("discarding an unknown conflict did not throw");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::not_found);
            CHECK(std::string(e.what()).find(std::to_string(kept[0].sequence + 100)) != std::string::npos);
        }
        CHECK(w.conflicts().size() == 1);

        // A record that is not one (a key an operator or a broken tool left): corrupt_data,
        // through the library's error, in both forms.
        h.create_key("QuorumReg\\ClusterWriter\\Conflicts\\not-a-number");
        auto listed = w.conflicts(ec);
        CHECK(ec == errc::corrupt_data);
        CHECK(listed.empty());
        CHECK_THROWS_AS(w.conflicts(), quorumreg::error);
        h.delete_key("QuorumReg\\ClusterWriter\\Conflicts\\not-a-number");

        w.discard_conflict(kept[0].sequence, ec);
        CHECK(!ec);
        CHECK(w.conflicts(ec).empty());
        CHECK(!ec);
    }

    TEST_CASE("a node that never saw a key conflicts with an existing one") {
        qr_test::temp_dir dir("cw");
        memory_store store;
        store.put("quorumreg/cluster/k", "remote");
        hive h(dir.path() / "n1");
        cluster_writer w(h);
        w.put("k", "local");
        w.attach(store);
        CHECK(store.get("quorumreg/cluster/k")->value == "remote");
        CHECK(w.conflicts().size() == 1);
    }

    TEST_CASE("an unreachable store stops the replay; the rest stays journaled in order") {
        qr_test::temp_dir dir("cw");
        memory_store store;
        hive h(dir.path() / "n1");
        cluster_writer w(h);
        w.put("a", "1");
        w.put("b", "2");
        w.put("c", "3");
        store.fail_next(1, errc::quorum_unavailable);
        std::error_code ec;
        w.attach(store, ec);
        CHECK(ec == errc::quorum_unavailable);
        CHECK_FALSE(w.attached());
        CHECK(w.pending().size() == 3);
        w.attach(store);
        CHECK(w.pending().empty());
        CHECK(store.get("quorumreg/cluster/c")->value == "3");
        // unknown outcome of a replayed write: re-read decides.
        w.detach();
        w.put("d", "4");
        store.unknown_outcome_next(1);
        w.attach(store);
        CHECK(store.get("quorumreg/cluster/d")->value == "4");
        CHECK(w.conflicts().empty());
    }

    TEST_CASE("bad input is rejected") {
        qr_test::temp_dir dir("cw");
        hive h(dir.path() / "n1");
        cluster_writer w(h);
        std::error_code ec;
        w.put("", "x", ec);
        CHECK(ec == errc::invalid_argument);
        CHECK(w.pending().empty());
    }

    TEST_CASE(
        "Q320331 across processes: writes made before the cluster service reach every node; a conflict is reported") {
        qr_test::temp_dir dir("cw-proc");
        auto spec = "dir:" + (dir.path() / "quorum").string();
        {
            directory_store_options create;
            create.create = true; // the nodes open it; opens never create
            directory_store made(dir.path() / "quorum", create);
        }
        auto go = (dir.path() / "go").string();
        qr_test::child_process node1({QUORUMREG_CLUSTER_NODE, spec, (dir.path() / "n1").string(), "n1", "names", go});
        std::string out;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (out.find("journaled") == std::string::npos && std::chrono::steady_clock::now() < deadline)
            node1.read_some(out, 50);
        CHECK(out.find("name_mapping online cluster offline journaled 2") != std::string::npos);
        {
            // Meanwhile another node changes bob through the store (its replication is up).
            directory_store store(dir.path() / "quorum");
            CHECK(store.list("quorumreg/cluster/").empty()); // nothing leaked before replication
            store.put("quorumreg/cluster/map/bob", "uid=2001");
        }
        std::ofstream(go).put('1');
        REQUIRE(node1.wait() == 0);
        node1.read_all(out);
        CHECK(out.find("cluster online journaled 0 conflicts 1") != std::string::npos);
        CHECK(out.find("conflict map/bob local=uid=1001 remote=uid=2001") != std::string::npos);
        // A third node sees the name-mapping writes, and bob keeps the other node's value.
        qr_test::child_process node3(
            {QUORUMREG_CLUSTER_NODE, spec, (dir.path() / "n3").string(), "n3", "read", "map/"});
        REQUIRE(node3.wait() == 0);
        std::string seen;
        node3.read_all(seen);
        CHECK(seen.find("map/alice=uid=1000") != std::string::npos);
        CHECK(seen.find("map/bob=uid=2001") != std::string::npos);
    }

    TEST_CASE("defect 1: erase then put while detached is applied, not a false conflict") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-defect");
            local_quorum q(kind, dir.path());
            qr_test::cw_defect1_erase_then_put(q, dir.path());
        }
    }

    TEST_CASE("defect 2: a replay cut by an unreachable store resumes without conflicting with itself") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-defect");
            local_quorum q(kind, dir.path());
            qr_test::cw_defect2_unreachable_half_way(q, dir.path());
        }
    }

    TEST_CASE("defect 2: a crash between the store commit and the hive's note applies the entry exactly once") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-defect");
            local_quorum q(kind, dir.path());
            qr_test::cw_defect2_crash_before_note(q, dir.path());
        }
    }

    TEST_CASE("defect 3: two writers on one hive never share a journal sequence number") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-defect");
            local_quorum q(kind, dir.path());
            qr_test::cw_defect3_two_writers(q, dir.path());
        }
    }

    TEST_CASE("defect 3: two processes journaling into one hive never share a journal sequence number") {
        qr_test::temp_dir dir("cw-d3-proc");
        {
            directory_store_options create;
            create.create = true;
            directory_store made(dir.path() / "quorum", create);
        }
        auto spec = "dir:" + (dir.path() / "quorum").string();
        auto hive_dir = (dir.path() / "n1").string();
        { hive made(hive_dir); } // created once, so the two processes only open it
        auto go = (dir.path() / "go").string();
        constexpr int per_writer = 40;
        auto n = std::to_string(per_writer);
        qr_test::child_process a({QUORUMREG_CLUSTER_NODE, spec, hive_dir, "n1", "journal", "a", n, go});
        qr_test::child_process b({QUORUMREG_CLUSTER_NODE, spec, hive_dir, "n1", "journal", "b", n, go});
        std::ofstream(go).put('1');
        REQUIRE(a.wait() == 0);
        REQUIRE(b.wait() == 0);
        hive h(hive_dir);
        cluster_writer w(h, {.node = "n1"});
        auto p = w.pending();
        CHECK(p.size() == 2 * per_writer);
        std::set<std::uint64_t> seqs;
        std::set<std::string> keys;
        for (auto& e : p) {
            seqs.insert(e.sequence);
            keys.insert(e.key);
        }
        CHECK(seqs.size() == p.size());
        CHECK(keys.size() == 2 * per_writer);
        directory_store store(dir.path() / "quorum");
        w.attach(store);
        CHECK(w.conflicts().empty());
        CHECK(store.list("quorumreg/cluster/").size() == 2 * per_writer);
    }
}
