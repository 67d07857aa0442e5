#include <quorumreg/checkpoint.hpp>

#include "checkpoint_scenarios.hpp"
#include "test_support.hpp"

#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

using namespace quorumreg;
using namespace std::chrono_literals;

namespace {

/// Creates a directory store at `dir` (the node processes only open it) and returns its spec.
std::string new_dir_store(const std::filesystem::path& dir) {
    directory_store_options o;
    o.create = true;
    directory_store made(dir, o);
    return "dir:" + dir.string();
}

/// A node: its own hive directory and checkpoint manager, sharing one quorum store.
struct node {
    hive local;
    checkpoint_manager cp;
    node(const std::filesystem::path& dir, quorum_store& store, const std::string& name,
         checkpoint_manager_options o = {})
        : local(dir / name), cp(local, store, with_name(o, name)) {}
    static checkpoint_manager_options with_name(checkpoint_manager_options o, const std::string& name) {
        o.node = name;
        if (o.lease_ttl == checkpoint_manager_options{}.lease_ttl) o.lease_ttl = 2000ms;
        return o;
    }
};

const char* app = "Software/Contoso/App";

} // namespace

namespace {

/// Runs `scenario(store, dir)` on a memory store, then on a new directory store, each with a
/// directory of its own under one temporary directory named after `tag`.
template <class F> void on_embedded_stores(const char* tag, F&& scenario) {
    qr_test::temp_dir dir(tag);
    {
        quorumreg::memory_store store;
        scenario(store, dir.path() / "mem");
    }
    quorumreg::directory_store_options o;
    o.create = true;
    quorumreg::directory_store store(dir.path() / "quorum", o);
    scenario(store, dir.path() / "dir");
}

} // namespace

TEST_SUITE("checkpoint") {

    TEST_CASE("registering checkpoints at once; failover restores the latest keys") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        CHECK(a.cp.checkpoints("App") == std::vector<std::string>{app});
        auto h = a.cp.history("App", app);
        REQUIRE(h.size() == 1);
        CHECK(h[0].writer == "A");

        auto rep = a.cp.online("App");
        CHECK(rep.conflicts.empty());
        a.local.set_value(app, "Port", value::dword(2));
        a.local.set_value(std::string(app) + "/Sub", "Name", value::string("x"));
        a.cp.flush("App");
        a.cp.offline("App");

        auto rb = b.cp.online("App");
        CHECK(rb.restored == std::vector<std::string>{app});
        CHECK(b.local.get_value(app, "Port").as_dword() == 2);
        CHECK(b.local.get_value(std::string(app) + "/Sub", "Name").as_string() == "x");
        b.cp.offline("App");
    }

    TEST_CASE("write-through coalesces changes but keeps every one") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A", {.coalesce_delay = 30ms});
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        for (int i = 0; i < 200; ++i)
            a.local.set_value(app, "v" + std::to_string(i), value::dword(i));
        a.cp.flush("App");
        auto h = a.cp.history("App", app);
        CHECK(h.back().generation < 100); // coalesced
        a.cp.offline("App");
        node b(dir.path(), store, "B");
        b.cp.online("App");
        CHECK(b.local.values(app).size() == 200);
    }

    TEST_CASE("only the owner can bring a resource online; a waiting node gets it after release") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        try {
            b.cp.online("App");
            FAIL("expected already_exists");
        } catch (const error& e) {
            CHECK(e.code() == errc::already_exists);
            CHECK(std::string(e.what()).find("owned by node \"A\"") != std::string::npos);
        }
        std::thread releaser([&] {
            std::this_thread::sleep_for(100ms);
            a.cp.offline("App");
        });
        b.cp.online("App", {.wait_for_owner = 10s});
        releaser.join();
        CHECK(b.cp.is_online("App"));
    }

    TEST_CASE("offline edits: preserve keeps the local copy as a conflict record") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        b.cp.online("App");
        b.cp.offline("App"); // B has the quorum copy and a record of it
        a.cp.online("App");
        a.local.set_value(app, "Port", value::dword(2));
        a.cp.offline("App");
        // Manual edit on B while the resource is offline (Q174070's lost edit).
        b.local.set_value(app, "Port", value::dword(99));
        auto rep = b.cp.online("App");
        REQUIRE(rep.conflicts.size() == 1);
        CHECK(b.local.get_value(app, "Port").as_dword() == 2); // quorum copy restored
        auto list = b.cp.conflicts("App");
        REQUIRE(list.size() == 1);
        CHECK(list[0].node == "B");
        CHECK(list[0].subtree == app);
        registry scratch;
        scratch.import_subtree("X", b.cp.conflict_content("App", list[0].id));
        CHECK(scratch.get_value("X", "Port").as_dword() == 99); // the local edit is not lost
        b.cp.discard_conflict("App", list[0].id);
        CHECK(b.cp.conflicts("App").empty());
    }

    TEST_CASE("offline edits: reject fails online and changes nothing") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        b.local.set_value(app, "Port", value::dword(7)); // B never had it: a divergent local copy
        std::error_code ec;
        b.cp.online("App", {.policy = offline_edit_policy::reject}, ec);
        CHECK(ec == errc::checkpoint_conflict);
        CHECK_FALSE(b.cp.is_online("App"));
        CHECK(b.local.get_value(app, "Port").as_dword() == 7);
        CHECK(b.cp.history("App", app).size() == 1);
        // The resource is free again: A can bring it online.
        a.cp.online("App");
        CHECK(a.cp.is_online("App"));
    }

    TEST_CASE("offline edits: adopt_local makes the local copy the checkpoint, keeping the old one") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        b.local.set_value(app, "Port", value::dword(7));
        auto rep = b.cp.online("App", {.policy = offline_edit_policy::adopt_local});
        CHECK(rep.adopted == std::vector<std::string>{app});
        b.cp.offline("App");
        a.cp.online("App");
        CHECK(a.local.get_value(app, "Port").as_dword() == 7);
        auto h = a.cp.history("App", app);
        REQUIRE(h.size() == 2);
        CHECK(h[0].writer == "A");
        CHECK(h[1].writer == "B");
    }

    TEST_CASE("a node with no local copy and no record just restores") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        auto rep = b.cp.online("App", {.policy = offline_edit_policy::reject});
        CHECK(rep.conflicts.empty());
        CHECK(b.local.get_value(app, "Port").as_dword() == 1);
    }

    TEST_CASE("fencing: a stale owner's writes are rejected, never merged") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        auto token_a = a.cp.fencing_token("App");
        // A's lease vanishes (as if A was paused past its TTL); B takes over and writes.
        auto owner = store.get("quorumreg/checkpoints/App/owner");
        REQUIRE(owner);
        store.revoke_lease(owner->lease);
        b.cp.online("App", {.wait_for_owner = 5s});
        CHECK(b.cp.fencing_token("App") > token_a);
        b.local.set_value(app, "Owner", value::string("B"));
        b.cp.flush("App");
        // A resumes and writes: rejected with a distinct error.
        a.local.set_value(app, "Owner", value::string("A"));
        std::error_code ec;
        a.cp.flush("App", 10s, ec);
        CHECK(ec == errc::fenced);
        b.cp.offline("App");
        node c(dir.path(), store, "C");
        c.cp.online("App");
        CHECK(c.local.get_value(app, "Owner").as_string() == "B");
    }

    TEST_CASE("history: roll back a bad edit to an earlier generation") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A", {.history = 3});
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app); // generation 1
        a.cp.online("App");
        for (std::uint32_t p = 2; p <= 5; ++p) {
            a.local.set_value(app, "Port", value::dword(p));
            a.cp.flush("App");
        }
        auto h = a.cp.history("App", app);
        REQUIRE(h.size() == 3); // only the last three generations are kept
        CHECK(h.front().generation == 3);
        CHECK(h.back().generation == 5);
        a.cp.restore("App", app, 4); // Port 4
        CHECK(a.local.get_value(app, "Port").as_dword() == 4);
        CHECK(a.cp.history("App", app).back().generation == 6);
        a.cp.offline("App");
        // Restore while offline goes straight to the store.
        a.cp.restore("App", app, 5);
        node b(dir.path(), store, "B");
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 5);
    }

    TEST_CASE("a corrupt latest checkpoint is a clear error; an older one is used only on request") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        a.local.set_value(app, "Port", value::dword(2));
        a.cp.offline("App");
        auto latest = store.list("quorumreg/checkpoints/App/data/");
        std::string gen_key;
        for (auto& kv : latest)
            if (kv.key.find("/g/") != std::string::npos) gen_key = kv.key; // newest last
        auto bytes = store.get(gen_key)->value;
        bytes[bytes.size() / 2] ^= 0x20;
        store.put(gen_key, bytes);
        node b(dir.path(), store, "B");
        try {
            b.cp.online("App");
            FAIL("expected checkpoint_corrupt");
        } catch (const error& e) {
            CHECK(e.code() == errc::checkpoint_corrupt);
            CHECK(std::string(e.what()).find("older generations remain available") != std::string::npos);
        }
        CHECK_FALSE(b.cp.is_online("App"));
        CHECK_FALSE(b.local.key_exists(app)); // nothing half-restored
        b.cp.restore("App", app, 1);
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 1);
    }

    TEST_CASE("checkpoints carry an HMAC under the cluster key; a tampered one is rejected") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A", {.cluster_key = "s3cret"});
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        auto kvs = store.list("quorumreg/checkpoints/App/data/");
        std::string key;
        for (auto& kv : kvs)
            if (kv.key.find("/g/") != std::string::npos) key = kv.key;
        detail::checkpoint_blob blob;
        std::string why;
        CHECK_FALSE(detail::decode_checkpoint(store.get(key)->value, "s3cret", blob, why));
        CHECK(detail::decode_checkpoint(store.get(key)->value, "other", blob, why) == errc::checkpoint_corrupt);
        CHECK(why.find("HMAC") != std::string::npos);
        // An attacker rewrites the content and fixes up SHA-256 and CRC, but cannot forge the HMAC.
        blob.content = registry().export_subtree("");
        store.put(key, detail::encode_checkpoint(blob, "attacker-key"));
        node b(dir.path(), store, "B", {.cluster_key = "s3cret"});
        std::error_code ec;
        b.cp.online("App", {}, ec);
        CHECK(ec == errc::checkpoint_corrupt);
    }

    TEST_CASE("transient store failures are retried; nothing acknowledged is lost") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A", {.retry_interval = 20ms});
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        a.local.set_value(app, "Port", value::dword(5));
        store.fail_next(3, errc::quorum_unavailable);
        a.cp.flush("App", 10s);
        store.unknown_outcome_next(1);
        a.local.set_value(app, "Port", value::dword(6));
        a.cp.flush("App", 10s);
        a.cp.offline("App");
        node b(dir.path(), store, "B");
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 6);
    }

    TEST_CASE("defect 6: flush() is not lost when the pass in flight ends short of the flush target") {
        // A directory store whose next log write waits until released, so the worker's pass is
        // provably in flight (it read the hive before the flush target) when flush() asks.
        struct held_write : file_io {
            std::mutex mu;
            std::condition_variable cv;
            bool armed = false, holding = false, released = false;
            ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
                std::unique_lock lk(mu);
                if (armed) {
                    armed = false;
                    holding = true;
                    cv.notify_all();
                    cv.wait(lk, [&] { return released; });
                }
                lk.unlock();
                return file_io::pwrite(fd, b, n, o);
            }
            bool wait_holding(std::chrono::milliseconds t) {
                std::unique_lock lk(mu);
                return cv.wait_for(lk, t, [&] { return holding; });
            }
            void release() {
                std::lock_guard lk(mu);
                released = true;
                cv.notify_all();
            }
        };
        qr_test::temp_dir dir("cp");
        auto io = std::make_shared<held_write>();
        directory_store_options so;
        so.create = true;
        so.io = io;
        directory_store store(dir.path() / "quorum", so);
        node a(dir.path(), store, "A", {.lease_ttl = 60s}); // no keep-alive wakes the worker meanwhile
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        a.cp.flush("App", 10s);
        {
            std::lock_guard lk(io->mu);
            io->armed = true;
        }
        a.local.set_value(app, "Port", value::dword(1)); // the worker's pass reads this, then waits
        REQUIRE(io->wait_holding(10s));
        a.local.set_value("Software/Elsewhere", "X", value::dword(2)); // after that pass's read
        std::thread releaser([&] {
            std::this_thread::sleep_for(300ms); // flush() has asked by then
            io->release();
        });
        auto t0 = std::chrono::steady_clock::now();
        std::error_code ec;
        a.cp.flush("App", 3s, ec); // before the fix: deadline_exceeded after the whole 3 s
        releaser.join();
        CHECK_FALSE(ec);
        CHECK(std::chrono::steady_clock::now() - t0 < 2500ms);
        a.cp.offline("App");
        node b(dir.path(), store, "B");
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 1);
    }

    TEST_CASE("several subtrees restore together; registration while online is picked up") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.cp.add_checkpoint("App", "S1");
        a.cp.online("App");
        b.cp.add_checkpoint("App", "S2"); // from another node while A owns it
        a.local.set_value("S1", "x", value::dword(1));
        a.local.set_value("S2", "y", value::dword(2));
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            a.cp.flush("App");
            bool ok = false;
            for (auto& g : a.cp.history("App", "S2"))
                ok |= !g.absent && g.writer == "A";
            if (ok) break;
            std::this_thread::sleep_for(10ms);
        }
        a.cp.offline("App");
        std::uint64_t events = 0;
        auto sub = b.local.watch("", watch_scope::subtree, [&](const change_event&) { ++events; });
        b.cp.online("App");
        CHECK(b.local.get_value("S1", "x").as_dword() == 1);
        CHECK(b.local.get_value("S2", "y").as_dword() == 2);
        std::error_code ec;
        a.cp.add_checkpoint("App", "S1/Inner", ec);
        CHECK(ec == errc::checkpoint_overlap); // overlaps S1
        a.cp.add_checkpoint("App", "QuorumReg/Checkpoints/X", ec);
        CHECK(ec == errc::checkpoint_overlap);
    }

    TEST_CASE("two resources never checkpoint overlapping subtrees, even when they register at once") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        qr_test::faulty_store link(store);
        node a(dir.path(), link, "A"), b(dir.path(), store, "B");
        auto refused = [](auto&& add) -> std::string {
            try {
                add();
            } catch (const quorumreg::error& e) {
                CHECK(e.code() == errc::checkpoint_overlap);
                return e.what();
            }
            return "(accepted)";
        };
        auto has = [](const std::string& text, const char* part) {
            INFO("message: " << text);
            CHECK(text.find(part) != std::string::npos);
        };
        a.cp.add_checkpoint("R1", "Software/Contoso/SQL");
        a.cp.add_checkpoint("R1", "Software/Contoso/SQL"); // idempotent
        has(refused([&] { b.cp.add_checkpoint("R2", "Software/Contoso/SQL"); }), "of resource \"R1\"");
        has(refused([&] { b.cp.add_checkpoint("R3", "Software"); }), "Software/Contoso/SQL");
        has(refused([&] { b.cp.add_checkpoint("R2", "SOFTWARE/contoso/sql/Inner"); }), "\"R1\"");
        has(refused([&] { a.cp.add_checkpoint("R1", "Software/Contoso/SQL/Inner"); }), "of this resource");
        b.cp.add_checkpoint("R2", "Software/Contoso/Web"); // a sibling is fine
        CHECK(b.cp.checkpoints("R2").size() == 1);
        CHECK(b.cp.checkpoints("R3").empty());

        // A registers R1's subtree while B registers an overlapping one for R2 between A's
        // overlap check and A's commit: exactly one of them may win.
        bool raced = false;
        link.before_commit = [&](const store_txn& t) {
            bool registers = false;
            for (auto& op : t.on_success)
                registers |= op.key.find("/subtrees/") != std::string::npos;
            if (!registers || raced) return;
            raced = true;
            b.cp.add_checkpoint("R2", "Software/Race");
        };
        auto why = refused([&] { a.cp.add_checkpoint("R1", "Software/Race/Deep"); });
        link.before_commit = nullptr;
        CHECK(raced);
        has(why, "of resource \"R2\"");
        CHECK(a.cp.checkpoints("R1").size() == 1);
        CHECK(b.cp.checkpoints("R2").size() == 2);
    }

    TEST_CASE("an operator's change sticks: edit_checkpoint offline and online, adopt and discard conflicts") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        a.cp.add_checkpoint("App", "Software/Contoso/Other");
        auto latest_port = [&]() -> std::uint32_t {
            auto content = a.cp.catalog().generation_content("App", app);
            REQUIRE(content);
            registry r;
            r.import_subtree(app, *content);
            return r.get_value(app, "Port").as_dword();
        };
        auto code_why = [](auto&& f) -> std::pair<std::error_code, std::string> {
            try {
                f();
            } catch (const quorumreg::error& e) {
                return {e.code(), e.what()};
            }
            return {};
        };

        // Offline everywhere: a new generation, written by B, that A's next online() restores.
        transaction set2000;
        set2000.set_value(app, "Port", value::dword(2000));
        auto before = a.cp.history("App", app).size();
        b.cp.edit_checkpoint("App", set2000);
        CHECK(a.cp.history("App", app).size() == before + 1);
        CHECK(a.cp.history("App", app).back().writer == "B");
        CHECK(latest_port() == 2000);
        a.cp.online("App");
        CHECK(a.local.get_value(app, "Port").as_dword() == 2000);
        CHECK(a.cp.conflicts("App").empty()); // not an offline edit: nothing preserved

        // Online on A: B is refused and told where to go; A's own edit goes through its hive.
        transaction set3000;
        set3000.set_value(app, "Port", value::dword(3000));
        auto [owned, owned_why] = code_why([&] { b.cp.edit_checkpoint("App", set3000); });
        CHECK(owned == errc::already_exists);
        CHECK(owned_why.find("owned by node \"A\"") != std::string::npos);
        a.cp.edit_checkpoint("App", set3000);
        CHECK(a.local.get_value(app, "Port").as_dword() == 3000);
        CHECK(latest_port() == 3000);

        // Bad edits are refused and change no stored byte.
        auto bytes = store.list("");
        transaction outside, spans, revision;
        outside.set_value("Software/Elsewhere", "x", value::dword(1));
        spans.set_value(app, "x", value::dword(1)).set_value("Software/Contoso/Other", "y", value::dword(1));
        revision.require_revision(app, 1).set_value(app, "x", value::dword(1));
        CHECK(code_why([&] { b.cp.edit_checkpoint("App", outside); }).first == errc::not_found);
        CHECK(code_why([&] { b.cp.edit_checkpoint("App", spans); }).first == errc::invalid_argument);
        CHECK(code_why([&] { b.cp.edit_checkpoint("App", revision); }).first == errc::invalid_argument);
        CHECK(code_why([&] { b.cp.edit_checkpoint("App", transaction{}); }).first == errc::invalid_argument);
        CHECK(store.list("") == bytes);
        a.cp.offline("App");

        // An offline edit on A is preserved as a conflict record at its next online(); adopting it
        // makes it the content (through A's hive, A being online), and the record goes.
        a.local.set_value(app, "Port", value::dword(42));
        a.cp.online("App");
        CHECK(a.local.get_value(app, "Port").as_dword() == 3000);
        auto cs = a.cp.conflicts("App");
        REQUIRE(cs.size() == 1);
        a.cp.adopt_conflict("App", cs[0].id);
        CHECK(a.local.get_value(app, "Port").as_dword() == 42);
        CHECK(latest_port() == 42);
        CHECK(a.cp.conflicts("App").empty());
        a.cp.offline("App");

        // Discarding one leaves the checkpoint as it is.
        a.local.set_value(app, "Port", value::dword(7));
        a.cp.online("App");
        cs = a.cp.conflicts("App");
        REQUIRE(cs.size() == 1);
        CHECK(code_why([&] { b.cp.discard_conflict("App", "no-such-id"); }).first == errc::not_found);
        b.cp.discard_conflict("App", cs[0].id);
        CHECK(a.cp.conflicts("App").empty());
        CHECK(latest_port() == 42);
        a.cp.offline("App");
        // The offline adopt path: a conflict adopted by B while nobody owns the resource.
        a.local.set_value(app, "Port", value::dword(9));
        a.cp.online("App");
        a.cp.offline("App");
        cs = b.cp.conflicts("App");
        REQUIRE(cs.size() == 1);
        b.cp.adopt_conflict("App", cs[0].id);
        CHECK(latest_port() == 9);
        CHECK(a.cp.history("App", app).back().writer == "B");
    }

    TEST_CASE("a resource's offline-edit policy is kept in the store and applied by every node") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.local.set_value(app, "Port", value::dword(1));
        a.cp.add_checkpoint("App", app);
        CHECK_FALSE(a.cp.catalog().offline_edit_policy_of("App"));
        b.cp.set_offline_edit_policy("App", offline_edit_policy::reject);
        CHECK(a.cp.catalog().offline_edit_policy_of("App") == offline_edit_policy::reject);
        a.local.set_value(app, "Port", value::dword(2)); // an offline edit
        std::error_code ec;
        a.cp.online("App", {}, ec); // no policy named: the resource's applies
        CHECK(ec == errc::checkpoint_conflict);
        CHECK(a.local.get_value(app, "Port").as_dword() == 2);            // reject changes nothing
        a.cp.online("App", {.policy = offline_edit_policy::adopt_local}); // a named one wins
        CHECK(a.local.get_value(app, "Port").as_dword() == 2);
        a.cp.offline("App");
        store.put("quorumreg/checkpoints/App/policy", "sometimes");
        a.local.set_value(app, "Port", value::dword(3));
        a.cp.online("App", {}, ec);
        CHECK(ec == errc::checkpoint_corrupt);
        CHECK(a.local.get_value(app, "Port").as_dword() == 3);
    }

    TEST_CASE("warm standby serves failover from its cache") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A"), b(dir.path(), store, "B");
        a.cp.add_checkpoint("App", app);
        auto follow = b.cp.follow("App");
        a.cp.online("App");
        a.local.set_value(app, "Port", value::dword(9));
        a.cp.flush("App");
        a.cp.offline("App");
        std::this_thread::sleep_for(50ms); // watch delivery
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 9);
        CHECK(b.cp.cache_hits() >= 1);
    }

    TEST_CASE("deleting a resource deletes its checkpoints") {
        qr_test::temp_dir dir("cp");
        memory_store store;
        node a(dir.path(), store, "A");
        a.cp.add_checkpoint("App", app);
        a.cp.add_checkpoint("Other", "X");
        a.cp.delete_resource("App");
        CHECK(store.list("quorumreg/checkpoints/App/").empty());
        CHECK_FALSE(store.list("quorumreg/checkpoints/Other/").empty());
        std::error_code ec;
        a.cp.flush("App", 1s, ec);
        CHECK(ec == errc::not_online);
        a.cp.remove_checkpoint("Other", "X");
        CHECK(a.cp.checkpoints("Other").empty());
    }

    TEST_CASE("checkpoint format rejects corruption and names survive escaping") {
        detail::checkpoint_blob b;
        b.resource = "R/../x";
        b.subtree = "A\\B";
        b.generation = 3;
        b.writer = "n";
        b.content = "payload";
        auto enc = detail::encode_checkpoint(b, "");
        detail::checkpoint_blob back;
        std::string why;
        REQUIRE_FALSE(detail::decode_checkpoint(enc, "", back, why));
        CHECK(back.resource == b.resource);
        CHECK(back.generation == 3);
        for (std::size_t i = 0; i < enc.size(); ++i) {
            auto bad = enc;
            bad[i] ^= 0x04;
            CHECK(detail::decode_checkpoint(bad, "", back, why));
        }
        CHECK(detail::key_escape("a/../b") == "a%2F..%2Fb");
        CHECK(detail::key_escape(std::string("x\0y", 3)) == "x%00y");
    }

    TEST_CASE("checkpoint_manager: a store re-created in place is identity_mismatch, not a fresh quorum") {
        qr_test::temp_dir dir("cp-id");
        auto path = dir.path() / "quorum";
        hive local(dir.path() / "node");
        std::string first;
        {
            directory_store_options o;
            o.create = true;
            directory_store store(path, o);
            first = store.identity();
            checkpoint_manager cp(local, store, {.node = "A"});
            local.set_value(app, "Port", value::dword(1));
            cp.add_checkpoint("App", app);
        }
        {
            directory_store store(path); // the same store: accepted on every construction
            checkpoint_manager cp(local, store, {.node = "A"});
            CHECK(cp.checkpoints("App") == std::vector<std::string>{app});
        }
        CHECK(local.get_value("QuorumReg/Checkpoints", "StoreIdentity").as_string() == first);
        // The log is deleted and someone creates a store there again: it is empty, and not ours.
        std::filesystem::remove(path / directory_store::log_file_name);
        directory_store_options o;
        o.create = true;
        directory_store again(path, o);
        try {
            checkpoint_manager cp(local, again, {.node = "A"});
            FAIL("a node started on a store with another identity");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::identity_mismatch);
            CHECK(std::string(e.what()).find("store identity changed: recorded " + first + ", store has " +
                                             again.identity()) != std::string::npos);
        }
        memory_store other; // any other store too
        CHECK(qr_test::code_of([&] { checkpoint_manager cp(local, other, {}); }) == errc::identity_mismatch);
    }

    TEST_CASE("defect 4: online() does not overwrite an edit made while it runs (memory and directory store)") {
        on_embedded_stores(
            "cp-d4", [&](auto& store, const auto& dir) { qr_test::checkpoint_defect4_edit_during_online(store, dir); });
    }

    TEST_CASE("defect 5: a write-through batch reaches the store all or nothing, cut at every commit (memory and "
              "directory store)") {
        using namespace std::chrono_literals;
        qr_test::temp_dir dir("cp-d5");
        for (std::size_t per_txn : {std::size_t(32), std::size_t(1)})
            for (bool deliver : {false, true}) {
                CAPTURE(per_txn);
                CAPTURE(deliver);
                memory_store mem;
                qr_test::checkpoint_defect5_atomic_batches(mem, dir.path() / "mem", per_txn, deliver, 300ms);
                directory_store_options o;
                o.create = true;
                auto quorum = dir.path() / ("quorum-" + std::to_string(per_txn) + (deliver ? "d" : "c"));
                directory_store store(quorum, o);
                qr_test::checkpoint_defect5_atomic_batches(store, dir.path() / "dir", per_txn, deliver, 300ms);
            }
    }

    TEST_CASE("defect 7: keep-alives never wait behind a slow write; on_lost fires before a takeover (memory and "
              "directory store)") {
        using namespace std::chrono_literals;
        on_embedded_stores("cp-d7", [&](auto& store, const auto& dir) {
            qr_test::checkpoint_defect7_slow_writes(store, dir, 1500ms);
        });
    }

    TEST_CASE("defect 8: an ended or stalled registration watch is resubscribed (memory and directory store)") {
        on_embedded_stores(
            "cp-d8", [&](auto& store, const auto& dir) { qr_test::checkpoint_defect8_registration_watch(store, dir); });
    }

    TEST_CASE("defect 8: follow() resubscribes when its watch ends (memory and directory store)") {
        on_embedded_stores("cp-d8f", [&](auto& store, const auto& dir) {
            qr_test::checkpoint_defect8_follow_resubscribes(store, dir);
        });
    }

    TEST_CASE("defect 9: follow() never serves an old generation and keeps one blob per subtree (memory and "
              "directory store)") {
        on_embedded_stores(
            "cp-d9", [&](auto& store, const auto& dir) { qr_test::checkpoint_defect9_follow_generations(store, dir); });
    }

    TEST_CASE("defect 11: offline() keeps ownership when its final checkpoint fails") {
        qr_test::temp_dir dir("cp-d11");
        memory_store store;
        checkpoint_manager_options o;
        o.offline_timeout = 300ms;
        node a(dir.path(), store, "A", o), b(dir.path(), store, "B");
        a.cp.add_checkpoint("App", app);
        a.cp.online("App");
        store.fail_next(1000000, errc::quorum_unavailable);
        a.local.set_value(app, "Port", value::dword(5)); // acknowledged here, not yet in the store
        std::error_code ec;
        a.cp.offline("App", ec);
        CHECK(ec == errc::deadline_exceeded); // the final flush did not get through
        CHECK_MESSAGE(a.cp.is_online("App"), "offline() gave up ownership with a change not in the store");
        store.clear_faults();
        CHECK(b.cp.online("App", {}, ec).restored.empty());
        CHECK(ec == errc::already_exists); // A still owns it
        a.cp.offline("App");
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 5);
    }

    TEST_CASE("defect 11: a crash-restarted owner pushes its own unpushed commits as its own") {
        qr_test::temp_dir dir("cp-d11");
        memory_store store;
        checkpoint_manager_options o;
        o.offline_timeout = 200ms;
        o.lease_ttl = 500ms;
        {
            node a(dir.path(), store, "A", o);
            a.local.set_value(app, "Port", value::dword(1));
            a.cp.add_checkpoint("App", app);
            a.cp.online("App");
            store.fail_next(1000000, errc::quorum_unavailable);
            a.local.set_value(app, "Port", value::dword(2)); // committed locally, never pushed
        } // "crash": the manager goes away without a successful offline()
        store.clear_faults();
        node a(dir.path(), store, "A", o);
        auto report = a.cp.online("App", {.wait_for_owner = 5s}); // the old lease expires meanwhile
        CHECK_MESSAGE(report.conflicts.empty(), "its own commit was taken for an offline edit");
        CHECK(a.cp.conflicts("App").empty());
        CHECK(a.local.get_value(app, "Port").as_dword() == 2);
        auto h = a.cp.history("App", app);
        REQUIRE(h.size() == 2);
        CHECK(h.back().writer == "A");
        a.cp.offline("App");
        node b(dir.path(), store, "B");
        b.cp.online("App");
        CHECK(b.local.get_value(app, "Port").as_dword() == 2);
    }

    TEST_CASE("directory store, separate processes: failover after kill -9 keeps every flushed change") {
        qr_test::temp_dir dir("cp-proc");
        auto seed = std::random_device{}();
        qr_test::checkpoint_failover_rounds(new_dir_store(dir.path() / "quorum"), dir.path(), 5, 600, seed);
    }

    TEST_CASE("directory store, separate processes: offline edits under each policy") {
        qr_test::temp_dir dir("cp-proc");
        qr_test::checkpoint_offline_edit_policies(new_dir_store(dir.path() / "quorum"), dir.path(), 1000);
    }

    TEST_CASE("directory store, separate processes: a SIGSTOPped owner is fenced") {
        qr_test::temp_dir dir("cp-proc");
        qr_test::checkpoint_stale_owner(new_dir_store(dir.path() / "quorum"), dir.path(), 600);
    }
}
