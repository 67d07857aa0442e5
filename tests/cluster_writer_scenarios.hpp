// The cluster_writer regression scenarios of issue 15, run on the directory and memory stores
// (test_cluster_writer.cpp) and on a real etcd cluster (test_checkpoint_etcd.cpp).
#pragma once

#include <quorumreg/cluster_writer.hpp>
#include <quorumreg/detail/file_io.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace qr_test {

/// A file-call seam for the hive or the directory store: fails writes (EIO) on request, or
/// runs a hook after a write, so a test can cut a replay at an exact point.
struct write_faults : quorumreg::file_io {
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

/// The quorum store a scenario runs on, with a switch that makes it unreachable.
struct cw_quorum {
    virtual ~cw_quorum() = default;
    virtual quorumreg::quorum_store& store() = 0;
    virtual void set_reachable(bool up) = 0;
    std::optional<std::string> value_of(const std::string& key) {
        auto kv = store().get("quorumreg/cluster/" + key);
        if (!kv) return std::nullopt;
        return kv->value;
    }
};

/// A node's hive opened through a fault seam.
inline quorumreg::hive_options through(write_faults& io) {
    quorumreg::hive_options o;
    o.io = &io;
    return o;
}

/// defect 1: erase then put while detached is applied, not a false conflict
inline void cw_defect1_erase_then_put(cw_quorum& q, const std::filesystem::path& dir) {
    using namespace quorumreg;
    hive h(dir / "n1");
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

/// defect 2: a replay cut by an unreachable store resumes without conflicting with itself
inline void cw_defect2_unreachable_half_way(cw_quorum& q, const std::filesystem::path& dir) {
    using namespace quorumreg;
    write_faults hio;
    hive h(dir / "n1", through(hio));
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
    // The first entry was applied before the cut. The second was not acknowledged; a frozen
    // etcd still holds the request and may apply it on resuming: either way it counts once.
    auto mid = q.value_of("k");
    CHECK((mid == "1" || mid == "2"));
    w.attach(q.store());
    CHECK(w.conflicts().empty());
    CHECK(w.pending().empty());
    CHECK(q.value_of("k") == "2");
    CHECK(q.value_of("other") == "3");
}

/// defect 2: a crash between the store commit and the hive's note applies the entry exactly once
inline void cw_defect2_crash_before_note(cw_quorum& q, const std::filesystem::path& dir) {
    using namespace quorumreg;
    {
        write_faults hio;
        hive h(dir / "n1", through(hio));
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
        hive h(dir / "n1");
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
        hive h(dir / "n1", through(hio));
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
        hive h(dir / "n1");
        cluster_writer w(h, {.node = "n1"});
        w.attach(q.store());
        CHECK(w.pending().empty());
        CHECK(w.conflicts().empty());
        CHECK_FALSE(q.value_of("fresh")); // not applied a second time
    }
}

/// defect 3: two writers on one hive never share a journal sequence number
inline void cw_defect3_two_writers(cw_quorum& q, const std::filesystem::path& dir) {
    using namespace quorumreg;
    hive h(dir / "n1");
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

} // namespace qr_test
