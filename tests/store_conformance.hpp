// The quorum_store conformance suite: the same cases run against every backend.
//
// Adding a backend is one line in its test file, inside its TEST_SUITE:
//
//     QR_STORE_CONFORMANCE(my_backend);
//
// where `my_backend` is a default-constructible fixture type with
//   - `std::unique_ptr<quorumreg::quorum_store> make()`: a store client (several calls on one
//     fixture must reach the SAME store — the cases use that for "another client" checks);
//   - `static constexpr std::chrono::milliseconds short_ttl`: the shortest lease TTL the
//     backend honours (etcd rounds small TTLs up; the embedded stores take ~200 ms);
// and a doctest name: `TYPE_TO_STRING(my_backend);` (optional, makes test names readable).
// Cases do not assume an empty store: each writes under its own key prefix and checks
// revisions relative to what it observed.
#pragma once

#include <quorumreg/quorum_store.hpp>

#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qr_test {

/// Collects watch events; wait_for() polls with a deadline instead of sleeping blindly.
class event_sink {
public:
    quorumreg::watch_handler handler() {
        return [this](const std::vector<quorumreg::watch_event>& evs, std::error_code ec) {
            std::lock_guard lk(mu_);
            for (const auto& e : evs)
                events_.push_back(e);
            if (ec) error_ = ec;
            ++batches_;
            cv_.notify_all();
        };
    }
    /// Waits until at least `n` events arrived (or an error); returns a copy of all events.
    std::vector<quorumreg::watch_event> wait_for(std::size_t n,
                                                 std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, timeout, [&] { return events_.size() >= n || error_; });
        return events_;
    }
    std::error_code wait_error(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, timeout, [&] { return bool(error_); });
        return error_;
    }
    std::vector<quorumreg::watch_event> events() {
        std::lock_guard lk(mu_);
        return events_;
    }
    std::error_code error() {
        std::lock_guard lk(mu_);
        return error_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<quorumreg::watch_event> events_;
    std::error_code error_;
    std::size_t batches_ = 0;
};

/// Polls `pred` until true or `timeout`; returns its last value.
template <class Pred> bool eventually(Pred&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (pred()) return true;
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

namespace conformance {

using namespace quorumreg;
using namespace std::chrono_literals;

template <class B> void get_put_erase() {
    B b;
    auto s = b.make();
    const std::string k = "conf/gpe/key";
    auto before = s->revision();
    CHECK_FALSE(s->get(k).has_value());

    auto r1 = s->put(k, "one");
    CHECK(r1 > before);
    auto kv = s->get(k);
    REQUIRE(kv.has_value());
    CHECK(kv->key == k);
    CHECK(kv->value == "one");
    CHECK(kv->create_revision == r1);
    CHECK(kv->mod_revision == r1);
    CHECK(kv->version == 1);
    CHECK(kv->lease == 0);

    auto r2 = s->put(k, std::string("two\0bytes", 9));
    CHECK(r2 > r1);
    kv = s->get(k);
    REQUIRE(kv.has_value());
    CHECK(kv->value == std::string("two\0bytes", 9)); // values are byte strings
    CHECK(kv->create_revision == r1);
    CHECK(kv->mod_revision == r2);
    CHECK(kv->version == 2);

    auto r3 = s->erase(k);
    CHECK(r3 > r2);
    CHECK_FALSE(s->get(k).has_value());
    // Erasing an absent key changes nothing and returns the current revision.
    CHECK(s->erase(k) == s->revision());
    CHECK(s->revision() == r3);

    // Re-creating starts a new generation: version 1, a new create_revision.
    auto r4 = s->put(k, "again");
    kv = s->get(k);
    REQUIRE(kv.has_value());
    CHECK(kv->create_revision == r4);
    CHECK(kv->version == 1);

    // A second client sees the same data.
    auto s2 = b.make();
    auto kv2 = s2->get(k);
    REQUIRE(kv2.has_value());
    CHECK(*kv2 == *kv);
}

template <class B> void revisions_monotonic() {
    B b;
    auto s = b.make();
    store_revision last = s->revision();
    for (int i = 0; i < 20; ++i) {
        auto r = s->put("conf/mono/k" + std::to_string(i % 3), std::to_string(i));
        CHECK(r > last);
        last = r;
    }
    CHECK(s->revision() == last);
    // A transaction writing several keys advances the revision once; all share it.
    store_txn t;
    t.on_success = {store_op::put("conf/mono/a", "1"), store_op::put("conf/mono/b", "2")};
    auto res = s->commit(t);
    CHECK(res.succeeded);
    CHECK(res.revision == last + 1);
    CHECK(s->get("conf/mono/a")->mod_revision == res.revision);
    CHECK(s->get("conf/mono/b")->mod_revision == res.revision);
    // A transaction that writes nothing does not advance it.
    store_txn none;
    none.compares.push_back(key_compare::exists("conf/mono/none"));
    auto res2 = s->commit(none);
    CHECK_FALSE(res2.succeeded);
    CHECK(res2.revision == res.revision);
    CHECK(s->revision() == res.revision);
}

template <class B> void range_paging_and_prefixes() {
    B b;
    auto s = b.make();
    const std::string p = "conf/range/";
    for (auto k : {"a", "a/1", "a/2", "a/3", "ab", "b", "b/1"})
        s->put(p + k, k);
    s->put("conf/rangf", "outside"); // shares "conf/rang" but not the prefix

    auto names = [&](const std::vector<key_value>& kvs) {
        std::vector<std::string> out;
        for (const auto& kv : kvs)
            out.push_back(kv.key.substr(p.size()));
        return out;
    };
    CHECK(names(s->list(p + "a")) == std::vector<std::string>{"a", "a/1", "a/2", "a/3", "ab"});
    CHECK(names(s->list(p + "a/")) == std::vector<std::string>{"a/1", "a/2", "a/3"});
    CHECK(names(s->list(p + "b")) == std::vector<std::string>{"b", "b/1"});
    CHECK(s->list(p + "c").empty());
    CHECK(s->list(p).size() == 7);

    // Paging: limit 2 walks everything exactly once, in key order.
    std::vector<std::string> walked;
    std::string after;
    int pages = 0;
    while (true) {
        auto page = s->range(p, after, 2);
        CHECK(page.kvs.size() <= 2);
        CHECK(page.revision >= 1);
        for (const auto& kv : page.kvs)
            walked.push_back(kv.key.substr(p.size()));
        ++pages;
        if (!page.more) break;
        REQUIRE_FALSE(page.kvs.empty());
        after = page.kvs.back().key;
        REQUIRE(pages < 10);
    }
    CHECK(pages == 4);
    CHECK(walked == std::vector<std::string>{"a", "a/1", "a/2", "a/3", "ab", "b", "b/1"});

    auto first = s->range(p, {}, 3);
    CHECK(first.more);
    CHECK(first.kvs.size() == 3);
    auto exact = s->range(p + "b", {}, 2);
    CHECK_FALSE(exact.more); // exactly `limit` keys remain: no more
    CHECK(exact.kvs.size() == 2);
    auto tail = s->range(p, p + "ab", 0);
    CHECK(names(tail.kvs) == std::vector<std::string>{"b", "b/1"});
    CHECK_FALSE(tail.more);
}

template <class B> void compare_and_swap() {
    B b;
    auto s = b.make();
    const std::string k = "conf/cas/k";
    auto r1 = s->create(k, "v1");
    CHECK(r1 > 0);
    std::error_code ec;
    s->create(k, "other", 0, ec);
    CHECK(ec == errc::compare_failed);
    CHECK(s->get(k)->value == "v1");
    CHECK(code_of([&] { s->create(k, "x"); }) == errc::compare_failed);

    auto r2 = s->put_if(k, "v2", r1);
    CHECK(r2 > r1);
    s->put_if(k, "stale", r1, 0, ec);
    CHECK(ec == errc::compare_failed);
    CHECK(s->get(k)->value == "v2");
    // expected 0: only if absent.
    s->put_if(k, "absent?", 0, 0, ec);
    CHECK(ec == errc::compare_failed);
    auto r3 = s->put_if("conf/cas/new", "n", 0);
    CHECK(r3 > r2);

    s->erase_if(k, r1, ec);
    CHECK(ec == errc::compare_failed);
    CHECK(s->get(k).has_value());
    s->erase_if(k, r2, ec);
    CHECK_FALSE(ec);
    CHECK_FALSE(s->get(k).has_value());
}

template <class B> void transactions_all_or_nothing() {
    B b;
    auto s = b.make();
    const std::string p = "conf/txn/";
    auto ra = s->put(p + "a", "1");
    s->put(p + "b", "2");

    // Success branch: every compare holds, all writes land at one revision.
    store_txn t;
    t.compares = {key_compare::mod_revision_is(p + "a", ra), key_compare::value_is(p + "b", "2"),
                  key_compare::absent(p + "c"), key_compare::exists(p + "b")};
    t.on_success = {store_op::put(p + "a", "10"), store_op::erase(p + "b"), store_op::put(p + "c", "30")};
    t.on_failure = {store_op::put(p + "failed", "yes")};
    auto res = s->commit(t);
    CHECK(res.succeeded);
    CHECK(s->get(p + "a")->value == "10");
    CHECK_FALSE(s->get(p + "b").has_value());
    CHECK(s->get(p + "c")->value == "30");
    CHECK(s->get(p + "c")->mod_revision == res.revision);
    CHECK(s->get(p + "a")->mod_revision == res.revision);
    CHECK_FALSE(s->get(p + "failed").has_value());

    // One compare fails: no success write happens, the failure branch runs.
    store_txn f;
    f.compares = {key_compare::value_is(p + "a", "10"), key_compare::mod_revision_is(p + "c", ra)};
    f.on_success = {store_op::put(p + "a", "lost"), store_op::put(p + "d", "lost")};
    f.on_failure = {store_op::put(p + "failed", "yes"), store_op::erase(p + "c")};
    auto before = s->revision();
    auto res2 = s->commit(f);
    CHECK_FALSE(res2.succeeded);
    CHECK(res2.revision == before + 1);
    CHECK(s->get(p + "a")->value == "10");
    CHECK_FALSE(s->get(p + "d").has_value());
    CHECK(s->get(p + "failed")->value == "yes");
    CHECK_FALSE(s->get(p + "c").has_value());

    // create_revision compare and a compare on an absent key's revision (0).
    auto kva = *s->get(p + "a");
    store_txn c;
    c.compares = {key_compare::create_revision_is(p + "a", kva.create_revision),
                  key_compare::mod_revision_is(p + "nothing", 0)};
    c.on_success = {store_op::put(p + "e", "5")};
    CHECK(s->commit(c).succeeded);
    CHECK(s->get(p + "e").has_value());
}

template <class B> void erase_prefix_op() {
    B b;
    auto s = b.make();
    const std::string p = "conf/ep/";
    for (auto k : {"x/1", "x/2", "x/3/deep", "xy", "y"})
        s->put(p + k, "v");
    store_txn t;
    t.on_success = {store_op::erase_prefix(p + "x/")};
    auto before = s->revision();
    auto res = s->commit(t);
    CHECK(res.succeeded);
    CHECK(res.revision == before + 1);
    auto left = s->list(p);
    REQUIRE(left.size() == 2);
    CHECK(left[0].key == p + "xy");
    CHECK(left[1].key == p + "y");
    // Erasing a prefix with no keys writes nothing.
    store_txn t2;
    t2.on_success = {store_op::erase_prefix(p + "none/")};
    CHECK(s->commit(t2).revision == res.revision);
}

template <class B> void watch_replays_from_revision() {
    B b;
    auto s = b.make();
    const std::string p = "conf/wr/";
    auto r1 = s->put(p + "a", "1");
    s->put("conf/wr-outside", "no"); // not under the prefix
    s->put(p + "b", "2");
    s->erase(p + "a");
    store_txn t;
    t.on_success = {store_op::put(p + "c", "3"), store_op::put(p + "d", "4")};
    s->commit(t);

    event_sink sink;
    auto sub = s->watch(p, r1, sink.handler());
    auto evs = sink.wait_for(5);
    REQUIRE(evs.size() == 5);
    CHECK(evs[0].what == watch_event::kind::put);
    CHECK(evs[0].kv.key == p + "a");
    CHECK(evs[0].kv.value == "1");
    CHECK(evs[0].revision == r1);
    CHECK(evs[1].kv.key == p + "b");
    CHECK(evs[2].what == watch_event::kind::erase);
    CHECK(evs[2].kv.key == p + "a");
    CHECK(evs[2].kv.mod_revision == evs[2].revision);
    CHECK(evs[3].kv.key == p + "c");
    CHECK(evs[4].kv.key == p + "d");
    CHECK(evs[3].revision == evs[4].revision);
    for (std::size_t i = 1; i < evs.size(); ++i)
        CHECK(evs[i].revision >= evs[i - 1].revision);

    // Live events continue after the replay, exactly once.
    auto r6 = s->put(p + "e", "5");
    evs = sink.wait_for(6);
    REQUIRE(evs.size() == 6);
    CHECK(evs[5].revision == r6);
    CHECK(evs[5].kv.version == 1);
    std::this_thread::sleep_for(100ms); // give a duplicate delivery the chance to show up
    CHECK(sink.events().size() == 6);
    CHECK_FALSE(sink.error());

    // A watch from the middle starts exactly there.
    event_sink mid;
    auto sub2 = s->watch(p, evs[3].revision, mid.handler());
    auto m = mid.wait_for(3);
    REQUIRE(m.size() == 3);
    CHECK(m[0].kv.key == p + "c");
    CHECK(m[2].revision == r6);
}

template <class B> void watch_live_events() {
    B b;
    auto s = b.make();
    auto writer = b.make(); // another client writes
    const std::string p = "conf/wl/";
    event_sink sink;
    auto sub = s->watch(p, 0, sink.handler());
    std::vector<store_revision> revs;
    for (int i = 0; i < 10; ++i)
        revs.push_back(writer->put(p + "k" + std::to_string(i), std::to_string(i)));
    writer->put("conf/wl-other", "ignored");
    writer->erase(p + "k0");
    auto evs = sink.wait_for(11);
    REQUIRE(evs.size() == 11);
    for (int i = 0; i < 10; ++i) {
        CHECK(evs[i].kv.key == p + "k" + std::to_string(i));
        CHECK(evs[i].revision == revs[i]);
        CHECK(evs[i].kv.mod_revision == revs[i]);
    }
    CHECK(evs[10].what == watch_event::kind::erase);

    // After the subscription is destroyed, no more callbacks.
    sub.reset();
    writer->put(p + "after", "x");
    std::this_thread::sleep_for(100ms);
    CHECK(sink.events().size() == 11);
}

template <class B> void lease_revoke_deletes_keys() {
    B b;
    auto s = b.make();
    const std::string p = "conf/lr/";
    auto lease = s->grant_lease(30s);
    CHECK(lease != 0);
    std::error_code ec;
    CHECK(s->lease_ttl(lease, ec) > 0ms);
    CHECK_FALSE(ec);
    s->put(p + "a", "1", lease);
    s->put(p + "b", "2", lease);
    s->put(p + "c", "3");
    CHECK(s->get(p + "a")->lease == lease);
    event_sink sink;
    auto sub = s->watch(p, 0, sink.handler());
    s->revoke_lease(lease);
    CHECK_FALSE(s->get(p + "a").has_value());
    CHECK_FALSE(s->get(p + "b").has_value());
    CHECK(s->get(p + "c").has_value());
    auto evs = sink.wait_for(2);
    REQUIRE(evs.size() == 2);
    CHECK(evs[0].what == watch_event::kind::erase);
    CHECK(evs[1].what == watch_event::kind::erase);
    s->keep_alive(lease, ec);
    CHECK(ec == errc::lease_expired);
    s->lease_ttl(lease, ec);
    CHECK(ec == errc::lease_expired);
    s->put(p + "d", "x", lease, ec);
    CHECK(ec == errc::lease_expired);
    CHECK_FALSE(s->get(p + "d").has_value());
    s->revoke_lease(lease, ec); // revoking an unknown lease is not an error
    CHECK_FALSE(ec);
    // Re-attaching a key to no lease detaches it.
    auto l2 = s->grant_lease(30s);
    s->put(p + "e", "1", l2);
    s->put(p + "e", "2", 0);
    s->revoke_lease(l2);
    CHECK(s->get(p + "e").has_value());
}

template <class B> void lease_expiry_deletes_keys() {
    B b;
    auto s = b.make();
    const std::string p = "conf/le/";
    event_sink sink;
    auto sub = s->watch(p, 0, sink.handler());
    auto lease = s->grant_lease(B::short_ttl);
    s->put(p + "owned", "1", lease);
    CHECK(eventually([&] { return !s->get(p + "owned").has_value(); }));
    auto evs = sink.wait_for(2);
    REQUIRE(evs.size() == 2);
    CHECK(evs[1].what == watch_event::kind::erase);
    CHECK(evs[1].kv.key == p + "owned");
    std::error_code ec;
    s->keep_alive(lease, ec);
    CHECK(ec == errc::lease_expired);
}

template <class B> void keep_alive_extends() {
    B b;
    auto s = b.make();
    const std::string k = "conf/ka/k";
    auto lease = s->grant_lease(B::short_ttl * 2);
    s->put(k, "1", lease);
    auto until = std::chrono::steady_clock::now() + B::short_ttl * 6;
    while (std::chrono::steady_clock::now() < until) {
        s->keep_alive(lease);
        CHECK(s->get(k).has_value());
        std::this_thread::sleep_for(B::short_ttl / 4);
    }
    s->keep_alive(lease);
    CHECK(s->get(k).has_value());
    std::error_code ec;
    auto ttl = s->lease_ttl(lease, ec);
    CHECK_FALSE(ec);
    CHECK(ttl > 0ms);
    CHECK(ttl <= B::short_ttl * 2);
    s->revoke_lease(lease);
    CHECK_FALSE(s->get(k).has_value());
}

template <class B> void ownership_lock_and_fencing() {
    B b;
    auto s = b.make();
    auto other = b.make();
    const std::string lk = "conf/lock/owner";
    auto la = s->grant_lease(30s);
    auto lb = other->grant_lease(30s);
    auto token = s->acquire_lock(lk, la);
    CHECK(token > 0);
    CHECK(s->get(lk)->create_revision == token);
    CHECK(s->acquire_lock(lk, la) == token); // re-entrant for the same lease
    std::error_code ec;
    other->acquire_lock(lk, lb, ec);
    CHECK(ec == errc::already_exists);

    // The fencing token works as a compare.
    store_txn fenced;
    fenced.compares = {key_compare::create_revision_is(lk, token)};
    fenced.on_success = {store_op::put("conf/lock/data", "by-a")};
    CHECK(s->commit(fenced).succeeded);

    // A stale token does not release the current owner's lock.
    other->release_lock(lk, token - 1, ec);
    CHECK_FALSE(ec);
    CHECK(s->get(lk).has_value());
    s->release_lock(lk, token, ec);
    CHECK_FALSE(ec);
    CHECK_FALSE(s->get(lk).has_value());

    auto token_b = other->acquire_lock(lk, lb);
    CHECK(token_b > token);
    // The old owner's fenced write is now refused.
    CHECK_FALSE(s->commit(fenced).succeeded);
    CHECK(s->get("conf/lock/data")->value == "by-a");
    // And its late release is a no-op.
    s->release_lock(lk, token, ec);
    CHECK_FALSE(ec);
    CHECK(s->get(lk)->create_revision == token_b);

    // Revoking the owner's lease frees the lock.
    other->revoke_lease(lb);
    CHECK_FALSE(s->get(lk).has_value());
    CHECK(s->acquire_lock(lk, la) > token_b);
    s->revoke_lease(la);
}

template <class B> void bad_input_errors() {
    B b;
    auto s = b.make();
    s->put("conf/err/k", "keep");
    auto rev = s->revision();
    std::error_code ec;
    s->put("", "v", 0, ec);
    CHECK(ec == errc::invalid_argument);
    s->get("", ec);
    CHECK(ec == errc::invalid_argument);
    s->erase("", ec);
    CHECK(ec == errc::invalid_argument);
    s->create("", "v", 0, ec);
    CHECK(ec == errc::invalid_argument);

    // The throwing form names the operation.
    try {
        s->put("", "v");
        FAIL("put with an empty key did not throw");
    } catch (const quorumreg::error& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("put") != std::string::npos);
    }
    // A transaction with one bad op changes nothing.
    store_txn t;
    t.on_success = {store_op::put("conf/err/k", "overwritten"), store_op::put("", "bad")};
    s->commit(t, ec);
    CHECK(ec == errc::invalid_argument);
    CHECK(s->get("conf/err/k")->value == "keep");
    CHECK(s->revision() == rev);

    s->grant_lease(0ms, ec);
    CHECK(ec == errc::invalid_argument);
    s->keep_alive(987654321, ec);
    CHECK(ec == errc::lease_expired);
}

/// Every fallible member has a throwing form, and what it throws names the operation, the key
/// (or lease) and the store, and changes nothing.
template <class B> void throwing_forms_name_what_failed() {
    B b;
    auto s = b.make();
    const std::string k = "conf/throw/k";
    auto r1 = s->put(k, "v1");
    auto r2 = s->put(k, "v2");
    try {
        s->erase_if(k, r1);
        FAIL("erase_if with a stale revision did not throw");
    } catch (const quorumreg::error& e) {
        CHECK(e.code() == errc::compare_failed);
        const std::string what = e.what();
        CHECK(what.find("erase_if \"" + k + "\"") != std::string::npos);
        CHECK(what.find(s->describe()) != std::string::npos);
    }
    CHECK(s->get(k)->value == "v2");
    CHECK(s->erase_if(k, r2) > r2);
    CHECK_FALSE(s->get(k).has_value());

    auto lease = s->grant_lease(30s);
    CHECK(s->lease_ttl(lease) > 0ms);
    CHECK(s->lease_ttl(lease) <= 30s);
    s->revoke_lease(lease);
    try {
        s->lease_ttl(lease);
        FAIL("lease_ttl of a revoked lease did not throw");
    } catch (const quorumreg::error& e) {
        CHECK(e.code() == errc::lease_expired);
        CHECK(std::string(e.what()).find("lease_ttl \"" + std::to_string(lease) + "\"") != std::string::npos);
    }

    // release_lock: a stale token is a no-op, never an error, and never deletes the new owner's lock.
    auto l1 = s->grant_lease(30s);
    auto token = s->acquire_lock("conf/throw/lock", l1, "node-a");
    s->release_lock("conf/throw/lock", token);
    auto l2 = s->grant_lease(30s);
    auto token2 = s->acquire_lock("conf/throw/lock", l2, "node-b");
    CHECK(token2 != token);
    s->release_lock("conf/throw/lock", token);
    REQUIRE(s->get("conf/throw/lock").has_value());
    CHECK(s->get("conf/throw/lock")->lease == l2);
    s->revoke_lease(l1);
    s->revoke_lease(l2);
}

} // namespace conformance
} // namespace qr_test

#define QR_STORE_CONFORMANCE_CASE(title, fn, ...)                                                                      \
    TEST_CASE_TEMPLATE("conformance: " title, B, __VA_ARGS__) { qr_test::conformance::fn<B>(); }

/// Registers every conformance case for the given backend fixture type(s).
#define QR_STORE_CONFORMANCE(...)                                                                                      \
    QR_STORE_CONFORMANCE_CASE("get, put and erase", get_put_erase, __VA_ARGS__)                                        \
    QR_STORE_CONFORMANCE_CASE("revisions are monotonic", revisions_monotonic, __VA_ARGS__)                             \
    QR_STORE_CONFORMANCE_CASE("range paging and prefix boundaries", range_paging_and_prefixes, __VA_ARGS__)            \
    QR_STORE_CONFORMANCE_CASE("compare-and-swap", compare_and_swap, __VA_ARGS__)                                       \
    QR_STORE_CONFORMANCE_CASE("transactions are all-or-nothing", transactions_all_or_nothing, __VA_ARGS__)             \
    QR_STORE_CONFORMANCE_CASE("erase_prefix", erase_prefix_op, __VA_ARGS__)                                            \
    QR_STORE_CONFORMANCE_CASE("watch replays from a revision", watch_replays_from_revision, __VA_ARGS__)               \
    QR_STORE_CONFORMANCE_CASE("watch delivers live events", watch_live_events, __VA_ARGS__)                            \
    QR_STORE_CONFORMANCE_CASE("lease revoke deletes its keys", lease_revoke_deletes_keys, __VA_ARGS__)                 \
    QR_STORE_CONFORMANCE_CASE("lease expiry deletes its keys", lease_expiry_deletes_keys, __VA_ARGS__)                 \
    QR_STORE_CONFORMANCE_CASE("keep_alive extends a lease", keep_alive_extends, __VA_ARGS__)                           \
    QR_STORE_CONFORMANCE_CASE("ownership lock and fencing token", ownership_lock_and_fencing, __VA_ARGS__)             \
    QR_STORE_CONFORMANCE_CASE("bad input gets a clear error", bad_input_errors, __VA_ARGS__)                           \
    QR_STORE_CONFORMANCE_CASE("throwing forms name what failed", throwing_forms_name_what_failed, __VA_ARGS__)
