// etcd_store against a real 3-member etcd cluster on 127.0.0.1: the conformance suite, member
// failures (one down, two down, restart), a watch resuming across the restart of the member it
// is connected to, chunked large values, error mapping, and username/password authentication.
#include <quorumreg/stores/etcd_store.hpp>

#include "test_support.hpp"
#include "etcd_cluster.hpp"
#include "store_conformance.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

using namespace quorumreg;
using namespace std::chrono_literals;

namespace {

/// The cluster shared by the conformance cases, chunking and error tests (started once).
qr_test::etcd_cluster& shared_cluster() {
    static qr_test::etcd_cluster c(3);
    return c;
}

etcd_store_options options_for(const std::vector<std::string>& urls, std::chrono::milliseconds deadline = 5s) {
    etcd_store_options o;
    o.endpoints = urls;
    o.deadline = deadline;
    return o;
}

/// Conformance fixture: every make() is a new client of the same cluster.
struct etcd_backend {
    // etcd rounds lease TTLs up to its minimum (1.5 s with default timing, as whole seconds).
    static constexpr std::chrono::milliseconds short_ttl{2000};
    std::unique_ptr<quorum_store> make() {
        return std::make_unique<etcd_store>(options_for(shared_cluster().client_urls()));
    }
};

/// Runs a command line, returns its exit status.
int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(g());
    return s;
}

template <class F> std::chrono::milliseconds timed(F&& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

} // namespace

TYPE_TO_STRING(etcd_backend);

TEST_SUITE("etcd_store") {

    QR_STORE_CONFORMANCE(etcd_backend);

    TEST_CASE("etcd: options are validated") {
        etcd_store_options o;
        o.endpoints = {"127.0.0.1:2379"};
        CHECK(qr_test::code_of([&] { etcd_store s(o); }) == errc::invalid_argument);
        o.endpoints = {};
        std::error_code ec;
        CHECK(etcd_store::open(o, ec) == nullptr);
        CHECK(ec == errc::invalid_argument);
        o.endpoints = {"https://127.0.0.1:1"};
        o.tls.ca_file = "/nonexistent/ca.pem";
        CHECK(qr_test::code_of([&] { etcd_store s(o); }) == errc::invalid_argument);
        o.endpoints = {"http://127.0.0.1:2379", "http://[::1]:2379/"};
        o.tls = {};
        auto s = etcd_store::open(o, ec);
        REQUIRE(s);
        CHECK_FALSE(ec);
        CHECK(s->describe() == "etcd:http://127.0.0.1:2379,http://[::1]:2379/");
    }

    TEST_CASE("etcd: unreachable endpoints report quorum_unavailable within the deadline") {
        auto p1 = qr_test::etcd_detail::free_port(), p2 = qr_test::etcd_detail::free_port();
        etcd_store s(
            options_for({"http://127.0.0.1:" + std::to_string(p1), "http://127.0.0.1:" + std::to_string(p2)}, 800ms));
        std::error_code ec;
        auto took = timed([&] { s.get("k", ec); });
        CHECK(ec == errc::quorum_unavailable);
        CHECK(took < 800ms + 2s);
        took = timed([&] { s.put("k", "v", 0, ec); });
        CHECK(ec == errc::quorum_unavailable); // never sent: a definite failure
        CHECK(took < 800ms + 2s);
        // The throwing form names the operation, the store and keeps the transport's message.
        try {
            s.put("some/key", "v");
            FAIL("no exception");
        } catch (const quorumreg::error& e) {
            std::string w = e.what();
            CHECK(w.find("put \"some/key\"") != std::string::npos);
            CHECK(w.find("etcd:http://127.0.0.1:") != std::string::npos);
            CHECK(w.find("refused") != std::string::npos);
        }
    }

    TEST_CASE("etcd: chunked large values round-trip and switch atomically") {
        auto& c = shared_cluster();
        etcd_store s(options_for(c.client_urls(), 30s));
        const std::string k = "chunks/big";
        const std::string a = random_bytes(5 * 1024 * 1024 + 123, 1);
        const std::string b = random_bytes(5 * 1024 * 1024 - 77, 2);

        auto r1 = s.put(k, a);
        auto kv = s.get(k);
        REQUIRE(kv);
        CHECK(kv->value.size() == a.size());
        CHECK(kv->value == a);
        CHECK(kv->mod_revision == r1);
        CHECK(kv->version == 1);

        // A second client with a different chunk namespace sees the raw layout: a manifest in the
        // key and the chunks under the reserved prefix.
        auto raw_opts = options_for(c.client_urls(), 30s);
        raw_opts.chunk_prefix = "\x01raw-view/";
        etcd_store raw(raw_opts);
        const std::string cp = etcd_store_options{}.chunk_prefix;
        auto chunks = raw.list(cp);
        CHECK(chunks.size() == 6); // 5 MiB + 123 bytes in 1 MiB chunks
        // ...which the store itself hides from listings and gets.
        for (auto& e : s.list(""))
            CHECK_FALSE(e.key.starts_with(cp));
        CHECK_FALSE(s.get(chunks.front().key).has_value());
        auto listed = s.list("chunks/");
        REQUIRE(listed.size() == 1);
        CHECK(listed[0].value == a);

        // Readers racing an overwrite see the old or the new value, never a mix.
        std::atomic<bool> done{false};
        std::atomic<int> reads{0}, torn{0};
        std::thread reader([&] {
            etcd_store rs(options_for(c.client_urls(), 30s));
            while (!done) {
                std::error_code ec;
                auto v = rs.get(k, ec);
                if (ec || !v) continue;
                if (v->value != a && v->value != b) ++torn;
                ++reads;
            }
        });
        qr_test::event_sink sink;
        auto sub = s.watch(k, r1 + 1, sink.handler());
        auto r2 = s.put_if(k, b, r1);
        CHECK(r2 > r1);
        CHECK(qr_test::eventually([&] { return reads.load() >= 3; }, 60s));
        done = true;
        reader.join();
        CHECK(torn == 0);
        CHECK(s.get(k)->value == b);
        auto evs = sink.wait_for(1, 60s);
        REQUIRE(evs.size() >= 1);
        CHECK(evs[0].kv.value == b); // watches reassemble too
        CHECK(evs[0].revision == r2);
        for (auto& e : evs)
            CHECK_FALSE(e.kv.key.starts_with(cp));

        // Old chunks are gone: only the new set (5 chunks) remains.
        CHECK(raw.list(cp).size() == 5);

        // A transaction whose inline values exceed etcd's request limit chunks the largest ones.
        store_txn t;
        t.compares = {key_compare::value_is(k, b)};
        for (int i = 0; i < 3; ++i)
            t.on_success.push_back(store_op::put("chunks/t" + std::to_string(i), random_bytes(900 * 1024, 10 + i)));
        auto tr = s.commit(t);
        CHECK(tr.succeeded);
        for (int i = 0; i < 3; ++i)
            CHECK(s.get("chunks/t" + std::to_string(i))->value == random_bytes(900 * 1024, 10 + i));
        CHECK(s.get("chunks/t0")->mod_revision == tr.revision);

        // A compare on a large value works (evaluated by pinning the mod_revision).
        store_txn f;
        f.compares = {key_compare::value_is(k, a)};
        f.on_success = {store_op::put("chunks/should-not", "x")};
        CHECK_FALSE(s.commit(f).succeeded);
        CHECK_FALSE(s.get("chunks/should-not").has_value());

        // A small value that happens to look like a manifest round-trips as itself.
        std::string tricky = std::string("\0\xffquorumreg-chunked-v1\n", 23) + "id=x\nsize=1\nchunks=1\nsha256=00\n";
        s.put("chunks/tricky", tricky);
        CHECK(s.get("chunks/tricky")->value == tricky);

        // Deleting removes the chunks as well.
        store_txn del;
        del.on_success = {store_op::erase_prefix("chunks/")};
        CHECK(s.commit(del).succeeded);
        CHECK(s.list("chunks/").empty());
        CHECK(raw.list(cp).empty());
        CHECK(s.collect_garbage(0) == 0);
    }

    TEST_CASE("etcd: error mapping") {
        auto& c = shared_cluster();
        etcd_store s(options_for(c.client_urls()));
        std::error_code ec;

        SUBCASE("unknown lease") {
            s.put("err/lease", "v", 0x7fff0001, ec);
            CHECK(ec == errc::lease_expired);
            try {
                s.put("err/lease", "v", 0x7fff0001);
                FAIL("no exception");
            } catch (const quorumreg::error& e) {
                CHECK(std::string(e.what()).find("requested lease not found") != std::string::npos); // etcd's text
            }
            s.lease_ttl(0x7fff0001, ec);
            CHECK(ec == errc::lease_expired);
        }
        SUBCASE("watch from a compacted revision is canceled") {
            auto r = s.put("err/compact", "1");
            s.put("err/compact", "2");
            auto r3 = s.put("err/compact", "3");
            REQUIRE(run("ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + c.client_url(0) + " compact " +
                        std::to_string(r3)) == 0);
            qr_test::event_sink sink;
            auto sub = s.watch("err/compact", r, sink.handler());
            CHECK(sink.wait_error(30s) == errc::watch_canceled);
            CHECK(sink.events().empty());
            // A watch from after the compaction works.
            qr_test::event_sink ok;
            auto sub2 = s.watch("err/compact", r3, ok.handler());
            auto evs = ok.wait_for(1);
            REQUIRE(evs.size() == 1);
            CHECK(evs[0].kv.value == "3");
        }
        SUBCASE("values over the limits") {
            auto o = options_for(c.client_urls());
            o.max_value_size = 1000;
            etcd_store small(o);
            small.put("err/big", std::string(1001, 'x'), 0, ec);
            CHECK(ec == errc::value_too_large);
            CHECK_FALSE(small.get("err/big").has_value());
            // With chunking pushed out of reach, etcd's own limit shows through as value_too_large.
            o = options_for(c.client_urls());
            o.inline_limit = 8 * 1024 * 1024;
            o.txn_budget = 8 * 1024 * 1024;
            etcd_store nochunk(o);
            nochunk.put("err/big", std::string(2 * 1024 * 1024, 'x'), 0, ec);
            CHECK(ec == errc::value_too_large);
            CHECK_FALSE(s.get("err/big").has_value());
        }
        SUBCASE("a key in the reserved chunk namespace is refused") {
            s.put(etcd_store_options{}.chunk_prefix + "x", "v", 0, ec);
            CHECK(ec == errc::invalid_argument);
        }
        SUBCASE("etcd's rejection of a malformed transaction") {
            store_txn t; // the same key twice: etcd refuses the whole transaction
            t.on_success = {store_op::put("err/dup", "1"), store_op::put("err/dup", "2")};
            s.commit(t, ec);
            CHECK(ec == errc::invalid_argument);
            CHECK_FALSE(s.get("err/dup").has_value());
        }
    }

    TEST_CASE("etcd: one member down, then two, then back: no acknowledged write lost") {
        qr_test::etcd_cluster c(3);
        etcd_store s(options_for(c.client_urls(), 2s));
        std::map<std::string, std::string> acked; // key -> value of every acknowledged write
        std::set<std::string> maybe;              // keys written with an unknown outcome
        int n = 0;
        auto write = [&](std::error_code& ec) {
            std::string k = "fault/k" + std::to_string(n), v = "v" + std::to_string(n);
            ++n;
            s.put(k, v, 0, ec);
            if (!ec)
                acked[k] = v;
            else if (ec == errc::unknown_outcome)
                maybe.insert(k);
            return ec;
        };
        std::error_code ec;
        for (int i = 0; i < 5; ++i)
            REQUIRE_FALSE(write(ec));

        // One member killed: operations go on (a leader election may refuse a few, definitely).
        c.kill_member(0);
        CHECK(qr_test::eventually([&] { return !write(ec); }, 30s));
        for (int i = 0; i < 10; ++i) {
            CHECK_FALSE(write(ec));
            CHECK_FALSE(s.get("fault/k0", ec) == std::nullopt);
            CHECK_FALSE(ec);
        }

        // Two killed: no quorum. Every operation fails within the deadline, with the right error.
        c.kill_member(1);
        for (int i = 0; i < 3; ++i) {
            auto took = timed([&] { write(ec); });
            MESSAGE("two members down: put -> " << ec.message() << " after " << took.count() << " ms");
            CHECK((ec == errc::quorum_unavailable || ec == errc::unknown_outcome));
            CHECK(took < 2s + 1500ms);
            took = timed([&] { s.get("fault/k0", ec); });
            CHECK(ec == errc::quorum_unavailable);
            CHECK(took < 2s + 1500ms);
            took = timed([&] { s.revision(ec); });
            CHECK(ec == errc::quorum_unavailable);
            CHECK(took < 2s + 1500ms);
        }
        // A write refused for lack of a leader never lands; one with an unknown outcome may.
        c.restart_member(0);
        c.restart_member(1);
        CHECK(c.wait_ready(60s));

        // The same store object recovers.
        CHECK(qr_test::eventually([&] { return !write(ec); }, 30s));
        for (int i = 0; i < 5; ++i)
            CHECK_FALSE(write(ec));
        for (auto& [k, v] : acked) {
            auto kv = s.get(k, ec);
            CHECK_FALSE(ec);
            REQUIRE(kv.has_value());
            CHECK(kv->value == v);
        }
        // Every key present is either acknowledged or of unknown outcome: nothing invented.
        for (auto& kv : s.list("fault/"))
            CHECK((acked.count(kv.key) == 1 || maybe.count(kv.key) == 1));

        // The cluster converges: each member alone reports the same revision and data.
        auto rev = s.revision();
        for (std::size_t i = 0; i < c.size(); ++i) {
            etcd_store one(options_for({c.client_url(i)}, 5s));
            CHECK(qr_test::eventually([&] {
                std::error_code e;
                auto r = one.revision(e);
                return !e && r >= rev;
            }));
            CHECK(one.list("fault/").size() == s.list("fault/").size());
        }
    }

    TEST_CASE("etcd: a watch resumes across a restart of its member without missing or repeating events") {
        qr_test::etcd_cluster c(3);
        // The watcher lists member 0 first, so its stream goes there; the writer avoids member 0.
        etcd_store watcher(options_for(c.client_urls(), 3s));
        etcd_store writer(options_for({c.client_url(1), c.client_url(2)}, 3s));
        const std::string p = "resume/";
        auto start = writer.put(p + "first", "0");
        qr_test::event_sink sink;
        auto sub = watcher.watch(p, start, sink.handler());
        REQUIRE(sink.wait_for(1).size() == 1);

        std::atomic<bool> stop{false};
        std::vector<store_revision> acked;
        std::mutex acked_mu;
        std::thread w([&] {
            int i = 0;
            while (!stop) {
                std::error_code ec;
                auto r = writer.put(p + "k" + std::to_string(i++), "x", 0, ec);
                if (!ec) {
                    std::lock_guard lk(acked_mu);
                    acked.push_back(r);
                }
                std::this_thread::sleep_for(20ms);
            }
        });
        auto count_acked = [&] {
            std::lock_guard lk(acked_mu);
            return acked.size();
        };
        CHECK(qr_test::eventually([&] { return count_acked() >= 10; }, 30s));
        CHECK(watcher.watch_reconnects() == 0);
        c.kill_member(0); // the watch's connection drops
        CHECK(qr_test::eventually([&] { return watcher.watch_reconnects() >= 1; }, 30s));
        auto before_restart = count_acked();
        CHECK(qr_test::eventually([&] { return count_acked() >= before_restart + 10; }, 60s));
        c.restart_member(0);
        CHECK(c.wait_ready(60s));
        auto after_restart = count_acked();
        CHECK(qr_test::eventually([&] { return count_acked() >= after_restart + 10; }, 60s));
        stop = true;
        w.join();

        // Everything under the prefix, as the store now has it, must have arrived exactly once.
        auto all = writer.list(p);
        auto evs = sink.wait_for(all.size(), 60s);
        std::this_thread::sleep_for(200ms);
        evs = sink.events();
        CHECK_FALSE(sink.error());
        REQUIRE(evs.size() == all.size());
        for (std::size_t i = 1; i < evs.size(); ++i)
            CHECK(evs[i].revision > evs[i - 1].revision);
        std::set<store_revision> seen;
        for (auto& e : evs)
            seen.insert(e.revision);
        for (auto& kv : all)
            CHECK(seen.count(kv.mod_revision) == 1);
        std::lock_guard lk(acked_mu);
        for (auto r : acked)
            CHECK(seen.count(r) == 1);
    }

    TEST_CASE("etcd: a frozen member (SIGSTOP) is skipped by reads and then by writes") {
        qr_test::etcd_cluster c(3);
        etcd_store s(options_for(c.client_urls(), 3s)); // member 0 is tried first
        auto r = s.put("frozen/k", "1");
        c.stop_member(0);
        std::error_code ec;
        // The read gives member 0 at most half its time, then moves on. If member 0 was the
        // leader, the others may still be electing one when the read reaches them (election
        // timeout 1-2 s): quorum_unavailable within the deadline is then the right answer, and a
        // read shortly after succeeds. Never a wrong value, never past the deadline.
        bool read_ok = false;
        for (int attempt = 0; attempt < 10 && !read_ok; ++attempt) {
            std::optional<key_value> kv;
            auto took = timed([&] { kv = s.get("frozen/k", ec); });
            CHECK(took < 3s + 1500ms);
            CHECK((!ec || ec == errc::quorum_unavailable));
            if (!ec) {
                REQUIRE(kv.has_value());
                CHECK(kv->mod_revision == r);
                read_ok = true;
            }
        }
        CHECK(read_ok);
        // Writes now go to a live member. (Had one been sent to the frozen member first, its
        // outcome would be unknown, never a plain failure.)
        bool ok = qr_test::eventually(
            [&] {
                s.put("frozen/k", "2", 0, ec);
                CHECK((!ec || ec == errc::unknown_outcome || ec == errc::quorum_unavailable));
                return !ec;
            },
            60s);
        CHECK(ok);
        CHECK(s.get("frozen/k")->value == "2");
        c.continue_member(0);
        CHECK(c.wait_ready(60s));
    }

    TEST_CASE("etcd: username and password authentication") {
        qr_test::etcd_cluster c(1);
        const std::string ep = "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + c.client_url(0);
        REQUIRE(run(ep + " user add root:rootpw") == 0);
        REQUIRE(run(ep + " user add app:apppw") == 0);
        REQUIRE(run(ep + " role add app-role") == 0);
        REQUIRE(run(ep + " role grant-permission app-role --prefix=true readwrite app/") == 0);
        REQUIRE(run(ep + " user grant-role app app-role") == 0);
        REQUIRE(run(ep + " auth enable") == 0);

        auto o = options_for(c.client_urls());
        o.username = "app";
        o.password = "apppw";
        etcd_store app(o);
        auto r = app.put("app/x", "1");
        CHECK(app.get("app/x")->mod_revision == r);
        std::error_code ec;
        app.put("other/x", "1", 0, ec);
        CHECK(ec == errc::permission_denied);

        // Watches need the permission too; a refused one ends with permission_denied.
        qr_test::event_sink own, other;
        auto sub_own = app.watch("app/", 0, own.handler());
        app.put("app/y", "2");
        CHECK(own.wait_for(1).size() == 1);
        auto sub_other = app.watch("other/", r, other.handler());
        CHECK(other.wait_error(30s) == errc::permission_denied);

        etcd_store anon(options_for(c.client_urls()));
        anon.get("app/x", ec);
        CHECK(ec == errc::unauthenticated);

        o.password = "wrong";
        etcd_store bad(o);
        bad.get("app/x", ec);
        CHECK(ec == errc::unauthenticated);
    }

    TEST_CASE("etcd: TLS with CA verification and client certificates") {
        qr_test::temp_dir pki("etcd-pki");
        const std::string d = pki.str();
        const std::string ec_key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        REQUIRE(run("openssl req -x509" + ec_key + " -keyout " + d + "/ca.key -out " + d +
                    "/ca.pem -days 2 -subj /CN=qr-test-ca") == 0);
        auto issue = [&](const std::string& name, const std::string& ext) {
            std::FILE* f = std::fopen((d + "/" + name + ".ext").c_str(), "w");
            REQUIRE(f);
            std::fputs(ext.c_str(), f);
            std::fclose(f);
            REQUIRE(run("openssl req" + ec_key + " -keyout " + d + "/" + name + ".key -out " + d + "/" + name +
                        ".csr -subj /CN=" + name) == 0);
            REQUIRE(run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.pem -CAkey " + d +
                        "/ca.key -CAcreateserial -out " + d + "/" + name + ".pem -days 2 -extfile " + d + "/" + name +
                        ".ext") == 0);
        };
        issue("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
        issue("client", "extendedKeyUsage=clientAuth\n");

        qr_test::etcd_cluster::tls_files tls{d + "/server.pem", d + "/server.key", d + "/ca.pem", true};
        qr_test::etcd_cluster c(1, tls);

        etcd_store_options o;
        o.endpoints = {c.tls_url(0)};
        o.deadline = 5s;
        o.tls.ca_file = d + "/ca.pem";
        o.tls.cert_file = d + "/client.pem";
        o.tls.key_file = d + "/client.key";
        etcd_store s(o);
        auto r = s.put("tls/k", "secret");
        CHECK(s.get("tls/k")->mod_revision == r);
        qr_test::event_sink sink;
        auto sub = s.watch("tls/", r, sink.handler());
        REQUIRE(sink.wait_for(1).size() == 1);
        CHECK(sink.events()[0].kv.value == "secret");

        // Host name verification by DNS name works as well.
        auto by_name = o;
        by_name.endpoints = {c.tls_url(0, "localhost")};
        CHECK(etcd_store(by_name).get("tls/k")->value == "secret");

        // Without a client certificate the member refuses the handshake.
        auto no_cert = o;
        no_cert.tls.cert_file.clear();
        no_cert.tls.key_file.clear();
        no_cert.deadline = 1500ms;
        std::error_code ec;
        etcd_store(no_cert).get("tls/k", ec);
        CHECK(ec);

        // A member whose certificate does not chain to the configured CA is not trusted...
        auto wrong_ca = o;
        wrong_ca.tls.ca_file = d + "/client.pem"; // a valid PEM, but not the issuer
        wrong_ca.deadline = 1500ms;
        try {
            etcd_store(wrong_ca).get("tls/k");
            FAIL("untrusted member accepted");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::quorum_unavailable);
            CHECK(std::string(e.what()).find("certificate verify failed") != std::string::npos);
        }
        // ...unless verification is explicitly off.
        wrong_ca.tls.verify = false;
        CHECK(etcd_store(wrong_ca).get("tls/k")->value == "secret");
    }

} // TEST_SUITE

// Issue 17: error mapping, transaction size, token expiry and the watch revision guard.
TEST_SUITE("etcd_limits") {

    TEST_CASE("defect 2: the watch guard reports duplicates, backward revisions and gaps") {
        using detail::etcd::watch_guard;
        auto ev = [](std::string k, store_revision r) {
            watch_event e;
            e.kv.key = std::move(k);
            e.kv.mod_revision = r;
            e.revision = r;
            return e;
        };
        std::string d;
        watch_guard g(10);
        CHECK_FALSE(g.begin_stream(10, d));
        CHECK_FALSE(g.check({ev("a", 10), ev("b", 10), ev("c", 12)}, d)); // one txn, then another
        CHECK(g.next() == 13);
        // A duplicate after a reconnect (etcd #15271-style): an error, not a silent skip.
        CHECK_FALSE(g.begin_stream(13, d));
        CHECK(g.check({ev("c", 12)}, d) == errc::watch_out_of_order);
        CHECK(d.find("12") != std::string::npos);
        // Backward within one response; the same key twice at one revision.
        watch_guard g2(1);
        CHECK(g2.check({ev("a", 5), ev("b", 4)}, d) == errc::watch_out_of_order);
        watch_guard g3(1);
        CHECK(g3.check({ev("a", 5), ev("a", 5)}, d) == errc::watch_out_of_order);
        // A gap: resuming after the next revision, or history compacted past it.
        watch_guard g4(20);
        CHECK(g4.begin_stream(25, d) == errc::watch_out_of_order);
        watch_guard g5(20);
        CHECK(g5.compacted(30, d) == errc::watch_canceled);
        CHECK(d.find("30") != std::string::npos);
        CHECK(d.find("20") != std::string::npos);
        CHECK(g5.next() == 20); // nothing was skipped silently
    }

    TEST_CASE("defect 3: resource exhausted (gRPC 8) is quota_exceeded with etcd's message, not value_too_large") {
        using detail::etcd::core;
        // The gateway's reply to a put under the NOSPACE alarm: HTTP 429, code 8.
        CHECK(core::map_code(8, "etcdserver: mvcc: database space exceeded", 429) == errc::quota_exceeded);
        CHECK(core::map_code(8, "etcdserver: too many requests", 429) == errc::quota_exceeded);
        // A message over gRPC's own size limit stays value_too_large.
        CHECK(core::map_code(8, "grpc: received message larger than max (2097300 vs. 2097152)", 429) ==
              errc::value_too_large);
        CHECK(std::string(make_error_code(errc::quota_exceeded).message()).find("quota") != std::string::npos);

        // The real thing: one member with a 4 MiB backend quota, filled until NOSPACE.
        qr_test::etcd_cluster c(1, std::nullopt, std::chrono::seconds(60), {}, {"--quota-backend-bytes=4194304"});
        etcd_store s(options_for(c.client_urls()));
        std::string big = random_bytes(700 * 1024, 3);
        std::error_code ec;
        for (int i = 0; i < 40 && !ec; ++i)
            s.put("quota/k" + std::to_string(i), big, 0, ec);
        CHECK(ec == errc::quota_exceeded);
        CHECK(etcd_store::error_detail().find("database space exceeded") != std::string::npos);
    }

    TEST_CASE("defect 4: the transaction budget counts compare values and both branches together") {
        etcd_store s(options_for(shared_cluster().client_urls()));
        const std::string k = "budget/k";
        std::string a = random_bytes(600 * 1024, 4), b = random_bytes(600 * 1024, 5), f = random_bytes(600 * 1024, 6);
        s.put(k, a);
        // 1.8 MB in one request (compare value + success put + failure put): over etcd's 1.5 MiB.
        store_txn t;
        t.compares.push_back(key_compare::value_is(k, a));
        t.on_success.push_back(store_op::put(k, b));
        t.on_failure.push_back(store_op::put(k + "/failed", f));
        std::error_code ec;
        auto r = s.commit(t, ec);
        CHECK_FALSE(ec);
        CHECK(r.succeeded);
        auto kv = s.get(k);
        REQUIRE(kv.has_value());
        CHECK(kv->value == b);
        CHECK_FALSE(s.get(k + "/failed").has_value());
        // The compare still decides: a stale expected value fails the transaction.
        r = s.commit(t, ec);
        CHECK_FALSE(ec);
        CHECK_FALSE(r.succeeded);
        CHECK(s.get(k + "/failed")->value == f);
    }

    TEST_CASE("defect 5: expired and outdated auth tokens are renewed; only safe calls are retried") {
        qr_test::etcd_cluster c(1, std::nullopt, std::chrono::seconds(60), {}, {"--auth-token-ttl=2"});
        const std::string ep = "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + c.client_url(0);
        REQUIRE(run(ep + " user add root:rootpw") == 0);
        REQUIRE(run(ep + " user add app:apppw") == 0);
        REQUIRE(run(ep + " role add app-role") == 0);
        REQUIRE(run(ep + " role grant-permission app-role --prefix=true readwrite app/") == 0);
        REQUIRE(run(ep + " user grant-role app app-role") == 0);
        REQUIRE(run(ep + " auth enable") == 0);
        const std::string root = ep + " --user=root:rootpw";
        auto o = options_for(c.client_urls());
        o.username = "app";
        o.password = "apppw";
        etcd_store app(o);
        auto r1 = app.put("app/x", "1");
        std::this_thread::sleep_for(std::chrono::milliseconds(3000)); // the token expires (TTL 2 s)
        std::error_code ec;
        auto kv = app.get("app/x", ec);
        CHECK_FALSE(ec);
        REQUIRE(kv.has_value());
        CHECK(kv->mod_revision == r1);

        // A change to the auth store during the run: calls go on. (With simple tokens etcd 3.4
        // stamps each request with the current auth revision, so "revision of authentication
        // store is old" only shows in a race; its mapping is checked below, expiry is real.)
        REQUIRE(run(root + " user add u1:pw") == 0);
        kv = app.get("app/x", ec);
        CHECK_FALSE(ec);
        REQUIRE(kv.has_value());
        CHECK(detail::etcd::token_refused(3, "etcdserver: revision of authentication store is old"));
        CHECK(detail::etcd::core::map_code(3, "etcdserver: revision of authentication store is old", 400) ==
              errc::unauthenticated);
        std::this_thread::sleep_for(std::chrono::milliseconds(3000));
        auto r2 = app.put_if("app/x", "2", r1, 0, ec); // conditional: retried after renewal
        CHECK_FALSE(ec);
        CHECK(r2 > r1);
        REQUIRE(run(root + " user add u2:pw") == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(3000));
        app.put("app/x", "3", 0, ec); // unconditional: refused, token renewed, not repeated
        CHECK(ec == errc::unauthenticated);
        CHECK(etcd_store::error_detail().find("not applied") != std::string::npos);
        CHECK(app.get("app/x")->value == "2");
        app.put("app/x", "4", 0, ec); // the renewed token works
        CHECK_FALSE(ec);
        CHECK(app.get("app/x")->value == "4");
    }
}
