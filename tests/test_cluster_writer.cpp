#include <quorumreg/cluster_writer.hpp>

#include "process_util.hpp"
#include "test_support.hpp"

#include <quorumreg/stores/directory_store.hpp>
#include <fstream>

#include <quorumreg/stores/memory_store.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

using namespace quorumreg;

namespace {

/// A file-call seam for the hive or the directory store: fails writes (EIO) on request, or
/// runs a hook after a write, so a test can cut a replay at an exact point.
struct write_faults : detail::file_io {
    std::atomic<bool> unreachable{false}; ///< every pwrite fails
    std::atomic<int> fail_writes{0};      ///< the next N pwrites fail
    std::function<void()> after_write;    ///< runs (once) after the next successful pwrite
    std::mutex mu;

    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        if (unreachable || fail_writes.fetch_sub(1) > 0) {
            errno = EIO;
            return -1;
        }
        auto r = file_io::pwrite(fd, b, n, o);
        std::function<void()> hook;
        {
            std::lock_guard lk(mu);
            hook.swap(after_write);
        }
        if (hook) hook();
        return r;
    }
    void on_next_write(std::function<void()> f) {
        std::lock_guard lk(mu);
        after_write = std::move(f);
    }
};

/// The quorum store a regression test runs on ("dir": a directory store created for the test,
/// "mem": the in-process store), with a switch that makes it unreachable.
struct quorum {
    std::shared_ptr<write_faults> io = std::make_shared<write_faults>();
    std::unique_ptr<quorum_store> owned;
    memory_store* mem = nullptr;
    quorum(std::string_view kind, const std::filesystem::path& dir) {
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
    quorum_store& store() { return *owned; }
    void set_reachable(bool up) {
        if (mem) {
            if (up)
                mem->clear_faults();
            else
                mem->fail_next(1000000, errc::quorum_unavailable);
        } else {
            io->unreachable = !up;
        }
    }
    std::optional<std::string> value_of(const std::string& key) {
        auto kv = store().get("quorumreg/cluster/" + key);
        if (!kv) return std::nullopt;
        return kv->value;
    }
};

constexpr std::string_view store_kinds[] = {"dir", "mem"};

/// A node's hive opened through a fault seam.
hive_options through(write_faults& io) {
    hive_options o;
    o.io = &io;
    return o;
}

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
            qr_test::temp_dir dir("cw-d1");
            quorum q(kind, dir.path());
            hive h(dir.path() / "n1");
            cluster_writer w(h, {.node = "n1"});
            w.attach(q.store());
            w.put("k", "v0"); // n1 knows k at this revision
            w.put("gone", "x");
            w.erase("gone"); // an attached erase: the base is now "must not exist"
            w.detach();
            w.erase("k");
            w.put("k", "v1");      // continues from the erase: k must not exist
            w.erase("never");      // a key that never existed
            w.put("never", "n1");  // likewise
            w.put("gone", "back"); // after the attached erase
            std::vector<write_conflict> seen;
            auto sub = w.on_conflict([&](const write_conflict& c) { seen.push_back(c); });
            w.attach(q.store());
            CHECK(seen.empty());
            CHECK(w.conflicts().empty());
            CHECK(w.pending().empty());
            CHECK(q.value_of("k") == "v1");
            CHECK(q.value_of("never") == "n1");
            CHECK(q.value_of("gone") == "back");
        }
    }

    TEST_CASE("defect 2: a replay cut by an unreachable store resumes without conflicting with itself") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-d2");
            quorum q(kind, dir.path());
            write_faults hio;
            hive h(dir.path() / "n1", through(hio));
            cluster_writer w(h, {.node = "n1"});
            w.put("k", "1");
            w.put("k", "2"); // continues the line of the first entry
            w.put("other", "3");
            // The store goes away right after the first entry is applied and noted.
            hio.on_next_write([&] { q.set_reachable(false); });
            std::error_code ec;
            w.attach(q.store(), ec);
            CHECK(ec);
            CHECK(w.pending().size() == 2);
            q.set_reachable(true);
            CHECK(q.value_of("k") == "1"); // the first entry was applied before the cut
            w.attach(q.store());
            CHECK(w.conflicts().empty());
            CHECK(w.pending().empty());
            CHECK(q.value_of("k") == "2");
            CHECK(q.value_of("other") == "3");
        }
    }

    TEST_CASE("defect 2: a crash between the store commit and the hive's note applies the entry exactly once") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-d2");
            quorum q(kind, dir.path());
            {
                write_faults hio;
                hive h(dir.path() / "n1", through(hio));
                cluster_writer w(h, {.node = "n1"});
                w.put("k", "1");
                w.put("k", "2");
                w.put("once", "mine"); // a key nobody had: base "must not exist"
                hio.fail_writes = 1;   // the note of the first entry never reaches the hive
                std::error_code ec;
                w.attach(q.store(), ec);
                CHECK(ec);
                REQUIRE(w.pending().size() == 3);
                CHECK(q.value_of("k") == "1"); // applied in the store, not noted locally
            }                                  // the node "crashes" here and restarts below
            {
                hive h(dir.path() / "n1");
                cluster_writer w(h, {.node = "n1"});
                w.attach(q.store());
                CHECK(w.conflicts().empty());
                CHECK(w.pending().empty());
                CHECK(q.value_of("k") == "2");
                CHECK(q.value_of("once") == "mine");
            }
            // The same cut on an entry whose key another node erases before the restart: the
            // entry was applied once already; a second application would undo that erase.
            {
                write_faults hio;
                hive h(dir.path() / "n1", through(hio));
                cluster_writer w(h, {.node = "n1"});
                w.detach();
                w.put("fresh", "mine");
                hio.fail_writes = 1;
                std::error_code ec;
                w.attach(q.store(), ec);
                CHECK(ec);
                CHECK(q.value_of("fresh") == "mine");
            }
            q.store().erase("quorumreg/cluster/fresh"); // another node's later decision
            {
                hive h(dir.path() / "n1");
                cluster_writer w(h, {.node = "n1"});
                w.attach(q.store());
                CHECK(w.pending().empty());
                CHECK(w.conflicts().empty());
                CHECK_FALSE(q.value_of("fresh")); // not applied a second time
            }
        }
    }

    TEST_CASE("defect 3: two writers on one hive never share a journal sequence number") {
        for (auto kind : store_kinds) {
            CAPTURE(kind);
            qr_test::temp_dir dir("cw-d3");
            quorum q(kind, dir.path());
            hive h(dir.path() / "n1");
            cluster_writer w1(h, {.node = "n1"}), w2(h, {.node = "n1"}); // the default local_key
            constexpr int per_writer = 40;
            auto writes = [](cluster_writer& w, const std::string& tag) {
                for (int i = 0; i < per_writer; ++i)
                    w.put(tag + "/" + std::to_string(i), tag + std::to_string(i));
            };
            std::thread t1([&] { writes(w1, "a"); });
            std::thread t2([&] { writes(w2, "b"); });
            t1.join();
            t2.join();
            auto p = w1.pending();
            CHECK(p.size() == 2 * per_writer);
            std::set<std::uint64_t> seqs;
            std::set<std::string> keys;
            for (auto& e : p) {
                seqs.insert(e.sequence);
                keys.insert(e.key);
            }
            CHECK(seqs.size() == p.size());
            CHECK(keys.size() == 2 * per_writer);
            w1.attach(q.store());
            CHECK(w1.conflicts().empty());
            int found = 0;
            for (const char* tag : {"a", "b"})
                for (int i = 0; i < per_writer; ++i)
                    found += q.value_of(std::string(tag) + "/" + std::to_string(i)) == tag + std::to_string(i);
            CHECK(found == 2 * per_writer);
        }
    }
}
