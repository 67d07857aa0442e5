// Partitions through a TCP proxy (issue 17): the proxy itself (suite "tcp_proxy"), and etcd_store
// with a proxy in front of every member's client URL (suite "etcd_partition"): silent members,
// compaction behind a reconnecting watch, blackholes while writers write and watchers watch,
// the client cut off from every member, and a member frozen past the election timeout.
//
// The issue asks for 30 s partitions; these use 6 s (longer than every deadline and the watch
// silence bound involved, so the same paths run) to keep the suite near a minute.
#include <quorumreg/stores/etcd_store.hpp>

#include <quorumreg_support/tcp_proxy.hpp>

#include "etcd_cluster.hpp"
#include "store_conformance.hpp"
#include "test_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace quorumreg;
using namespace std::chrono_literals;

namespace {

/// A POSIX echo server on 127.0.0.1 (one thread per connection), independent of Asio.
class echo_server {
public:
    echo_server() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        ::listen(fd_, 16);
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{fd_, POLLIN, 0};
                if (::poll(&p, 1, 50) != 1) continue;
                int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) continue;
                std::lock_guard lk(mu_);
                workers_.emplace_back([this, c] {
                    char buf[4096];
                    while (!stop_) {
                        pollfd q{c, POLLIN, 0};
                        if (::poll(&q, 1, 50) != 1) continue;
                        auto n = ::recv(c, buf, sizeof buf, 0);
                        if (n <= 0) break;
                        (void)::send(c, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
                    }
                    ::close(c);
                });
            }
        });
    }
    ~echo_server() {
        stop_ = true;
        thread_.join();
        std::lock_guard lk(mu_);
        for (auto& w : workers_)
            w.join();
        ::close(fd_);
    }
    int port() const { return port_; }

private:
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mu_;
    std::vector<std::thread> workers_;
};

int connect_to(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

/// Reads what arrives within `wait`: the bytes, or "<eof>" / "<reset>".
std::string read_within(int fd, std::chrono::milliseconds wait, std::size_t want) {
    std::string out;
    auto end = std::chrono::steady_clock::now() + wait;
    while (out.size() < want) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) != 1) break;
        char buf[4096];
        auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) return out + "<eof>";
        if (n < 0) return out + (errno == ECONNRESET ? "<reset>" : "<error>");
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

void send_all(int fd, const std::string& s) {
    REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size()));
}

/// A cluster with one proxy in front of each member's client URL.
struct proxied_cluster {
    explicit proxied_cluster(int n = 3, std::vector<std::string> extra = {})
        : c(n, std::nullopt, 60s, {}, std::move(extra)) {
        for (std::size_t i = 0; i < c.size(); ++i)
            px.push_back(std::make_unique<qr_support::tcp_proxy>(c.at(i).client_port));
    }
    std::vector<std::string> urls() const {
        std::vector<std::string> u;
        for (auto& p : px)
            u.push_back(p->url());
        return u;
    }
    qr_test::etcd_cluster c;
    std::vector<std::unique_ptr<qr_support::tcp_proxy>> px;
};

etcd_store_options opts(const std::vector<std::string>& urls, std::chrono::milliseconds deadline = 3s) {
    etcd_store_options o;
    o.endpoints = urls;
    o.deadline = deadline;
    return o;
}

/// Sink that also records etcd_store::error_detail() as the handler saw it.
struct detail_sink {
    qr_test::event_sink sink;
    std::mutex mu;
    std::string detail;
    watch_handler handler() {
        auto inner = sink.handler();
        return [this, inner](const std::vector<watch_event>& evs, std::error_code ec) {
            if (ec) {
                std::lock_guard lk(mu);
                detail = etcd_store::error_detail();
            }
            inner(evs, ec);
        };
    }
};

template <class F> std::chrono::milliseconds timed(F&& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

} // namespace

TEST_SUITE("tcp_proxy") {

    TEST_CASE("tcp_proxy: pass, delay, blackhole, heal and reset") {
        echo_server echo;
        qr_support::tcp_proxy proxy(echo.port());
        int fd = connect_to(proxy.port());
        send_all(fd, "hello");
        CHECK(read_within(fd, 2s, 5) == "hello");

        proxy.delay(300ms);
        std::string got;
        auto took = timed([&] {
            send_all(fd, "slow");
            got = read_within(fd, 3s, 4);
        });
        CHECK(got == "slow");
        CHECK(took >= 550ms); // delayed on the way there and on the way back

        // Blackhole: nothing comes back, the connection stays open (no FIN, no RST)...
        proxy.blackhole();
        send_all(fd, "held");
        CHECK(read_within(fd, 500ms, 4).empty());
        // ...new connections are accepted and kept, silent too.
        int fd2 = connect_to(proxy.port());
        send_all(fd2, "two");
        CHECK(read_within(fd2, 300ms, 3).empty());
        CHECK(proxy.connections() == 2);
        // Heal: what was held is delivered.
        proxy.heal();
        CHECK(read_within(fd, 2s, 4) == "held");
        CHECK(read_within(fd2, 2s, 3) == "two");

        // Reset: both connections get an RST.
        proxy.reset();
        CHECK(read_within(fd, 2s, 1) == "<reset>");
        CHECK(read_within(fd2, 2s, 1) == "<reset>");
        ::close(fd);
        ::close(fd2);
        CHECK(qr_test::eventually([&] { return proxy.connections() == 0; }, 2s));
        // New connections pass after a reset.
        int fd3 = connect_to(proxy.port());
        send_all(fd3, "again");
        CHECK(read_within(fd3, 2s, 5) == "again");
        ::close(fd3);
        proxy.stop();
        proxy.stop(); // idempotent
    }

    TEST_CASE("tcp_proxy: a dead upstream closes the client's connection") {
        int port = qr_support::etcd_detail::free_port(); // nothing listens there
        qr_support::tcp_proxy proxy(port);
        int fd = connect_to(proxy.port());
        CHECK(read_within(fd, 2s, 1) == "<eof>");
        ::close(fd);
    }
}

TEST_SUITE("etcd_partition") {

    TEST_CASE("defect 1: a watch on a silent member resumes on another member within the bound, exactly once") {
        proxied_cluster pc;
        etcd_store watcher(opts(pc.urls())); // member 0 first: its stream goes there
        etcd_store writer(opts({pc.c.client_url(1), pc.c.client_url(2)}));
        const std::string p = "silent/";
        auto start = writer.put(p + "first", "0");
        qr_test::event_sink sink;
        auto sub = watcher.watch(p, start, sink.handler());
        REQUIRE(sink.wait_for(1).size() == 1);

        pc.px[0]->blackhole();
        std::vector<store_revision> acked{start};
        for (int i = 0; i < 5; ++i)
            acked.push_back(writer.put(p + "k" + std::to_string(i), "v"));
        // Bound: watch_silence_timeout (3 s) + the probe of the silent member (1 s) + reconnect.
        auto evs = sink.wait_for(acked.size(), 8s);
        CHECK(evs.size() == acked.size()); // within the bound, not only after the heal
        pc.px[0]->heal();
        std::this_thread::sleep_for(300ms);
        evs = sink.events();
        CHECK_FALSE(sink.error());
        REQUIRE(evs.size() == acked.size());
        for (std::size_t i = 0; i < evs.size(); ++i)
            CHECK(evs[i].revision == acked[i]);
        CHECK(watcher.watch_reconnects() >= 1);
    }

    TEST_CASE("defect 2: compaction behind a reconnecting watch ends it with watch_canceled naming the compact "
              "revision; read-then-watch resumes") {
        proxied_cluster pc;
        etcd_store watcher(opts(pc.urls()));
        etcd_store writer(opts({pc.c.client_url(1), pc.c.client_url(2)}));
        const std::string p = "compact/";
        auto start = writer.put(p + "a", "1");
        detail_sink ds;
        auto sub = watcher.watch(p, start, ds.handler());
        REQUIRE(ds.sink.wait_for(1).size() == 1);
        pc.px[0]->blackhole();
        writer.put(p + "b", "2");
        auto last = writer.put(p + "c", "3");
        // Compact everything up to now: the watch must resume from b's revision, which is gone.
        REQUIRE(std::system(("ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + pc.c.client_url(1) + " compact " +
                             std::to_string(last) + " >/dev/null 2>&1")
                                .c_str()) == 0);
        CHECK(ds.sink.wait_error(10s) == errc::watch_canceled);
        pc.px[0]->heal();
        {
            std::lock_guard lk(ds.mu);
            CHECK(ds.detail.find("compact") != std::string::npos);
            CHECK(ds.detail.find(std::to_string(last)) != std::string::npos);
        }
        CHECK(ds.sink.events().size() == 1); // nothing after the gap was delivered as if complete

        // The documented pattern: read again, then watch from the read's revision + 1.
        auto page = watcher.range(p, "", 0);
        CHECK(page.kvs.size() == 3);
        qr_test::event_sink again;
        auto sub2 = watcher.watch(p, page.revision + 1, again.handler());
        auto r = writer.put(p + "d", "4");
        auto evs = again.wait_for(1, 10s);
        REQUIRE(evs.size() == 1);
        CHECK(evs[0].revision == r);
        CHECK_FALSE(again.error());
    }

    TEST_CASE("partition: the client's member blackholed 6 s under writers and watchers; the same store recovers") {
        proxied_cluster pc;
        etcd_store s(opts(pc.urls())); // member 0 is the client's first member
        const std::string p = "part/";
        auto start = s.put(p + "start", "0");
        qr_test::event_sink sink;
        auto sub = s.watch(p, start, sink.handler());
        REQUIRE(sink.wait_for(1).size() == 1);

        std::atomic<bool> stop{false};
        std::mutex mu;
        std::map<std::string, store_revision> acked{{p + "start", start}};
        std::atomic<int> slow{0};
        auto writer = [&](int t) {
            for (int i = 0; !stop; ++i) {
                std::error_code ec;
                auto k = p + "w" + std::to_string(t) + "-" + std::to_string(i);
                std::chrono::milliseconds took = timed([&] {
                    auto r = s.put(k, "v", 0, ec);
                    if (!ec) {
                        std::lock_guard lk(mu);
                        acked[k] = r;
                    }
                });
                if (took > 3s + 1s) ++slow; // deadline 3 s, plus scheduling slack
                CHECK((!ec || ec == errc::unknown_outcome || ec == errc::quorum_unavailable ||
                       ec == errc::deadline_exceeded));
                std::this_thread::sleep_for(20ms);
            }
        };
        std::thread w1(writer, 1), w2(writer, 2);
        auto count = [&] {
            std::lock_guard lk(mu);
            return acked.size();
        };
        CHECK(qr_test::eventually([&] { return count() >= 10; }, 20s));
        pc.px[0]->blackhole();
        auto blackholed_at = std::chrono::steady_clock::now();
        auto before = count();
        // Writes move on to the other members within their deadline.
        CHECK(qr_test::eventually([&] { return count() >= before + 10; }, 6s));
        std::this_thread::sleep_until(blackholed_at + 6s);
        pc.px[0]->heal();
        auto healed = count();
        CHECK(qr_test::eventually([&] { return count() >= healed + 10; }, 20s));
        stop = true;
        w1.join();
        w2.join();
        CHECK(slow == 0);

        // No acknowledged write lost; the watch saw every stored key exactly once, in order.
        auto all = s.list(p);
        std::map<std::string, store_revision> stored;
        for (auto& kv : all)
            stored[kv.key] = kv.mod_revision;
        for (const auto& entry : acked) { // no structured binding: clang 14 cannot capture one in INFO
            const auto& k = entry.first;
            INFO(k);
            CHECK(stored.count(k) == 1);
            if (stored.count(k)) CHECK(stored[k] == entry.second);
        }
        sink.wait_for(all.size(), 15s);
        std::this_thread::sleep_for(300ms);
        auto evs = sink.events();
        CHECK_FALSE(sink.error());
        CHECK(evs.size() == all.size());
        for (std::size_t i = 1; i < evs.size(); ++i)
            CHECK(evs[i].revision > evs[i - 1].revision);
    }

    TEST_CASE("partition: the client blackholed from every member gets quorum_unavailable or unknown_outcome "
              "within the deadline") {
        proxied_cluster pc;
        etcd_store s(opts(pc.urls(), 2s));
        s.put("cut/k", "1");
        for (auto& x : pc.px)
            x->blackhole();
        std::error_code ec;
        auto took = timed([&] { (void)s.get("cut/k", ec); });
        CHECK(ec == errc::quorum_unavailable);
        CHECK(took < 2s + 1s);
        took = timed([&] { (void)s.put("cut/k", "2", 0, ec); });
        CHECK((ec == errc::unknown_outcome || ec == errc::quorum_unavailable));
        CHECK(took < 2s + 1s);
        for (auto& x : pc.px)
            x->heal();
        store_revision acked = 0;
        CHECK(qr_test::eventually(
            [&] {
                acked = s.put("cut/k", "3", 0, ec);
                return !ec;
            },
            20s));
        // The put of "2" had an unknown outcome: its bytes may still sit in a proxy (as in a
        // router's queue) and reach etcd after the heal, even after the acknowledged "3". What
        // must hold is that the store says so in revision order: "3" is there, or "2" was
        // applied later than "3" was, never instead of it.
        auto kv = s.get("cut/k");
        REQUIRE(kv.has_value());
        if (kv->value == "2")
            CHECK(kv->mod_revision > acked);
        else
            CHECK(kv->value == "3");
        CHECK(kv->mod_revision >= acked);
    }

    TEST_CASE("partition: a member frozen past the election timeout, then resumed") {
        proxied_cluster pc;
        etcd_store s(opts(pc.urls()));
        qr_test::event_sink sink;
        auto start = s.put("freeze/a", "1");
        auto sub = s.watch("freeze/", start, sink.handler());
        REQUIRE(sink.wait_for(1).size() == 1);
        pc.c.stop_member(0);             // SIGSTOP the member the client and its watch use
        std::this_thread::sleep_for(2s); // election timeout is 1 s by default
        std::error_code ec;
        store_revision r = 0;
        CHECK(qr_test::eventually(
            [&] {
                r = s.put("freeze/b", "2", 0, ec);
                return !ec;
            },
            15s));
        // A put that ended unknown_outcome (sent to the frozen member) may have landed too: every
        // stored version of freeze/ must arrive once, in order, whatever the count.
        auto has = [&](store_revision want) {
            for (auto& e : sink.events())
                if (e.revision == want) return true;
            return false;
        };
        CHECK(qr_test::eventually([&] { return has(r); }, 10s));
        pc.c.continue_member(0);
        CHECK(pc.c.wait_ready(30s));
        auto r2 = s.put("freeze/c", "3");
        CHECK(qr_test::eventually([&] { return has(r2); }, 10s));
        auto evs = sink.events();
        CHECK(evs.back().revision == r2);
        for (std::size_t i = 1; i < evs.size(); ++i)
            CHECK(evs[i].revision > evs[i - 1].revision);
        CHECK_FALSE(sink.error());
    }
}
