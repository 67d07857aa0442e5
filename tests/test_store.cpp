// The quorum_store conformance suite against the embedded backends, plus memory_store's
// fault injection.
#include <quorumreg/stores/memory_store.hpp>
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/open_store.hpp>

#include "test_support.hpp"
#include "store_conformance.hpp"

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

using namespace quorumreg;
using namespace std::chrono_literals;

namespace {

/// One memory_store shared by every make() of a fixture (clients of the same store).
struct memory_backend {
    static constexpr std::chrono::milliseconds short_ttl{250};
    std::shared_ptr<memory_store> store = std::make_shared<memory_store>();

    struct client final : quorum_store {
        std::shared_ptr<memory_store> s;
        explicit client(std::shared_ptr<memory_store> p) : s(std::move(p)) {}
        std::string do_describe() const override { return s->describe(); }
        std::string do_identity(std::error_code& ec) override { return s->identity(ec); }
        std::optional<key_value> do_get(std::string_view k, std::error_code& ec) override { return s->get(k, ec); }
        range_result do_range(std::string_view p, std::string_view a, std::size_t l, std::error_code& ec) override {
            return s->range(p, a, l, ec);
        }
        store_revision do_put(std::string_view k, std::string_view v, lease_id l, std::error_code& ec) override {
            return s->put(k, v, l, ec);
        }
        store_revision do_erase(std::string_view k, std::error_code& ec) override { return s->erase(k, ec); }
        txn_result do_commit(const store_txn& t, std::error_code& ec) override { return s->commit(t, ec); }
        store_revision do_revision(std::error_code& ec) override { return s->revision(ec); }
        subscription do_watch(std::string_view p, store_revision f, watch_handler h, std::error_code& ec) override {
            return s->watch(p, f, std::move(h), ec);
        }
        lease_id do_grant_lease(std::chrono::milliseconds t, std::error_code& ec) override {
            return s->grant_lease(t, ec);
        }
        void do_keep_alive(lease_id l, std::error_code& ec) override { s->keep_alive(l, ec); }
        void do_revoke_lease(lease_id l, std::error_code& ec) override { s->revoke_lease(l, ec); }
        std::chrono::milliseconds do_lease_ttl(lease_id l, std::error_code& ec) override { return s->lease_ttl(l, ec); }
        void do_set_deadline(std::chrono::milliseconds d) override { s->set_deadline(d); }
        std::chrono::milliseconds do_deadline() const override { return s->deadline(); }
    };
    std::unique_ptr<quorum_store> make() { return std::make_unique<client>(store); }
};

/// A directory_store in a fresh temporary directory; every make() opens its own object on it.
struct directory_backend {
    static constexpr std::chrono::milliseconds short_ttl{500};
    qr_test::temp_dir dir{"dirstore"};
    std::unique_ptr<quorum_store> make() {
        directory_store_options o;
        o.create = true; // the first make() creates the store, later ones open it
        return std::make_unique<directory_store>(dir.path() / "q", o);
    }
};

} // namespace

TYPE_TO_STRING(memory_backend);
TYPE_TO_STRING(directory_backend);

TEST_SUITE("store") {

    QR_STORE_CONFORMANCE(memory_backend, directory_backend);

    TEST_CASE("memory_store: fail_next fails exactly N operations and changes nothing") {
        memory_store s;
        s.put("k", "v");
        auto rev = s.revision();
        s.fail_next(2, errc::backend_error);
        std::error_code ec;
        s.put("k", "changed", 0, ec);
        CHECK(ec == errc::backend_error);
        s.get("k", ec);
        CHECK(ec == errc::backend_error);
        CHECK(s.get("k")->value == "v");
        CHECK(s.revision() == rev);
        // The throwing form carries the injected code and names the store.
        s.fail_next(1, errc::permission_denied);
        try {
            s.put("k", "x");
            FAIL("no exception");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::permission_denied);
            CHECK(std::string(e.what()).find("mem:") != std::string::npos);
        }
    }

    TEST_CASE("memory_store: loss of quorum fails within the deadline and recovers") {
        memory_store s;
        s.put("k", "v");
        s.set_deadline(100ms);
        CHECK(s.deadline() == 100ms);
        s.set_quorum_lost(true);
        std::error_code ec;
        auto t0 = std::chrono::steady_clock::now();
        s.put("k", "lost", 0, ec);
        auto took = std::chrono::steady_clock::now() - t0;
        CHECK(ec == errc::quorum_unavailable);
        CHECK(took >= 100ms); // it waited for quorum to come back, up to the deadline
        s.get("k", ec);
        CHECK(ec == errc::quorum_unavailable);
        s.set_quorum_lost(false);
        CHECK(s.get("k")->value == "v"); // nothing acknowledged was lost, nothing unacknowledged applied

        // An operation waiting for quorum proceeds as soon as it returns.
        s.set_deadline(30s);
        s.set_quorum_lost(true);
        std::thread restore([&] {
            std::this_thread::sleep_for(50ms);
            s.set_quorum_lost(false);
        });
        s.put("k", "after", 0, ec);
        restore.join();
        CHECK_FALSE(ec);
        CHECK(s.get("k")->value == "after");
    }

    TEST_CASE("memory_store: unknown outcome means the write was applied") {
        memory_store s;
        auto r = s.put("k", "v1");
        s.unknown_outcome_next(1);
        std::error_code ec;
        s.put_if("k", "v2", r, 0, ec);
        CHECK(ec == errc::unknown_outcome);
        // Re-reading shows the write committed; a blind retry of the CAS would now fail safely.
        CHECK(s.get("k")->value == "v2");
        s.put_if("k", "v2", r, 0, ec);
        CHECK(ec == errc::compare_failed);
    }

    TEST_CASE("memory_store: a delay beyond the deadline") {
        memory_store s;
        s.set_deadline(50ms);
        s.set_delay(80ms);
        std::error_code ec;
        s.get("k", ec);
        CHECK(ec == errc::deadline_exceeded);
        s.put("k", "sent", 0, ec);
        CHECK(ec == errc::unknown_outcome); // sent before the deadline passed: may have committed
        s.set_delay(0ms);
        CHECK(s.get("k")->value == "sent");
        // A late write that then fails (unknown lease) reports that failure, and the next
        // operation does not inherit the lateness.
        s.set_delay(80ms);
        s.put("k", "x", 12345, ec);
        CHECK(ec == errc::lease_expired);
        s.set_delay(0ms);
        s.put("k", "sent", 0, ec);
        CHECK_FALSE(ec);
        s.set_delay(10ms); // below the deadline: just slower
        s.put("k", "slow", 0, ec);
        CHECK_FALSE(ec);
        s.clear_faults();
        CHECK(s.get("k")->value == "slow");
    }

    TEST_CASE("memory_store: drop_watches ends every watch with an error") {
        memory_store s;
        qr_test::event_sink a, b;
        auto sa = s.watch("a", 0, a.handler());
        auto sb = s.watch("b", 0, b.handler());
        CHECK(s.watch_count() == 2);
        s.drop_watches();
        CHECK(a.wait_error() == errc::watch_canceled);
        CHECK(b.wait_error() == errc::watch_canceled);
        CHECK(qr_test::eventually([&] { return s.watch_count() == 0; }));
        s.put("a/x", "1");
        std::this_thread::sleep_for(50ms);
        CHECK(a.events().empty());
        // A new watch from the last seen revision resumes without loss.
        qr_test::event_sink c;
        auto sc = s.watch("a", 1, c.handler());
        CHECK(c.wait_for(1).size() == 1);
    }

    TEST_CASE("memory_store: compaction cancels watches from older revisions") {
        memory_store s;
        auto r1 = s.put("k", "1");
        auto r2 = s.put("k", "2");
        auto r3 = s.put("k", "3");
        s.compact(r2);
        qr_test::event_sink old, ok;
        auto so = s.watch("k", r1, old.handler());
        CHECK(old.wait_error() == errc::watch_canceled);
        CHECK(old.events().empty());
        auto sk = s.watch("k", r2, ok.handler());
        auto evs = ok.wait_for(2);
        REQUIRE(evs.size() == 2);
        CHECK(evs[0].revision == r2);
        CHECK(evs[1].revision == r3);
        CHECK_FALSE(ok.error());
        std::error_code ec;
        s.compact(r3 + 10, ec);
        CHECK(ec == errc::invalid_argument);
    }

    TEST_CASE("memory_store: history_limit bounds the watch history") {
        memory_store_options o;
        o.history_limit = 5;
        memory_store s(o);
        store_revision first = 0;
        for (int i = 0; i < 20; ++i) {
            auto r = s.put("k", std::to_string(i));
            if (i == 0) first = r;
        }
        qr_test::event_sink old, recent;
        auto so = s.watch("k", first, old.handler());
        CHECK(old.wait_error() == errc::watch_canceled);
        auto sr = s.watch("k", s.revision() - 4, recent.handler());
        CHECK(recent.wait_for(5).size() == 5);
    }

    TEST_CASE("memory_store: the reaper expires leases without any further operation") {
        memory_store s;
        qr_test::event_sink sink;
        auto sub = s.watch("lock", 0, sink.handler());
        auto l = s.grant_lease(50ms);
        s.put("lock", "me", l);
        // No call on the store from here: the reaper thread must delete the key.
        auto evs = sink.wait_for(2);
        REQUIRE(evs.size() == 2);
        CHECK(evs[1].what == watch_event::kind::erase);
    }

    TEST_CASE("memory_store: a watch callback may use the store and drop its own subscription") {
        memory_store s;
        subscription sub;
        std::atomic<int> calls{0};
        std::atomic<bool> wrote{false};
        sub = s.watch("w/", 0, [&](const std::vector<watch_event>&, std::error_code) {
            ++calls;
            s.put("other", "from-callback");
            wrote = true;
            sub.reset();
        });
        s.put("w/1", "x");
        CHECK(qr_test::eventually([&] { return wrote.load(); }));
        s.put("w/2", "y");
        std::this_thread::sleep_for(50ms);
        CHECK(calls == 1);
        CHECK(s.get("other")->value == "from-callback");
    }

    TEST_CASE("memory_store: limits") {
        memory_store_options o;
        o.limits.max_key_bytes = 8;
        o.limits.max_value_bytes = 4;
        memory_store s(o);
        std::error_code ec;
        s.put("123456789", "v", 0, ec);
        CHECK(ec == errc::name_too_long);
        s.put("k", "12345", 0, ec);
        CHECK(ec == errc::value_too_large);
        s.put(std::string("a\0b", 3), "v", 0, ec);
        CHECK(ec == errc::invalid_argument);
        store_txn dup;
        dup.on_success = {store_op::put("k", "1"), store_op::put("k", "2")};
        s.commit(dup, ec);
        CHECK(ec == errc::invalid_argument);
        CHECK(s.list("").empty());
    }

    TEST_CASE("open_store and create_store take the error code last; a missing store is created by nothing else") {
        qr_test::temp_dir dir{"openstore"};
        const auto path = dir.path() / "q";
        const std::string spec = "dir:" + path.string();
        std::error_code ec;
        auto s = quorumreg::open_store(spec, 1500ms, ec);
        CHECK(ec == errc::not_found);
        CHECK(s == nullptr);
        CHECK_FALSE(std::filesystem::exists(path)); // a typo never becomes a new, empty store
        s = quorumreg::open_store(spec, ec);
        CHECK(ec == errc::not_found);
        CHECK_FALSE(std::filesystem::exists(path));

        auto c = quorumreg::create_store(spec, 1500ms, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(c != nullptr);
        CHECK(c->deadline() == 1500ms);
        c->put("k", "v");
        c.reset();
        quorumreg::create_store(spec, 1500ms, ec);
        CHECK(ec == errc::already_exists);

        s = quorumreg::open_store(spec, 2500ms, ec);
        REQUIRE_FALSE(ec);
        CHECK(s->deadline() == 2500ms);
        CHECK(s->get("k")->value == "v");
        s = quorumreg::open_store(spec, ec);
        REQUIRE_FALSE(ec);
        CHECK(s->deadline() == 5000ms);

        quorumreg::open_store("nfs:/x", 100ms, ec);
        CHECK(ec == errc::invalid_argument);
    }

} // TEST_SUITE
