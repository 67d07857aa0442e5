// Fuzz target: the etcd store's handling of gateway JSON responses — range (get, range,
// revision, garbage collection), put/delete, txn, lease grant/keep-alive/time-to-live/revoke
// and watch event streams — driven end to end through quorumreg::etcd_store against an
// in-process fake gateway on 127.0.0.1 that answers every request with the fuzz input. Also
// the codec pieces on their own: base64, int64 fields, chunk manifests.
//
// Input: byte 0 = operation (low 4 bits) and HTTP status (bits 4-6: 200 200 200 200 400 401
// 413 500), the rest is the response body. Streaming endpoints (watch, lease keep-alive) get
// the body as a chunked response, one JSON object per line, as grpc-gateway sends them.
// Invariants:
// - every operation returns, within its deadline, either a result or a quorumreg error code
//   (never an exception, a crash or a hang); watch handlers see only quorumreg codes;
// - base64_decode(base64_encode(x)) == x; a decodable base64 string re-encodes to a string
//   that decodes to the same bytes; parse_manifest(encode_manifest(m)) == m for every
//   manifest parse_manifest accepts.
#include <quorumreg/stores/etcd_store.hpp>

#include "fuzz_common.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace qr = quorumreg;
namespace etcd = quorumreg::detail::etcd;
using qr::errc;

namespace {

/// A minimal HTTP/1.1 server: every request gets the current response. One thread per
/// connection, so pooled idle connections never block a new one.
class fake_gateway {
public:
    fake_gateway() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 64) != 0) std::abort();
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        std::thread([this] { accept_loop(); }).detach();
    }

    unsigned short port() const { return port_; }

    void set(unsigned status, std::string body) {
        std::lock_guard lk(mu_);
        status_ = status;
        body_ = std::move(body);
    }

    /// Streamed responses completed and closed by the client so far.
    int streams_closed() {
        std::lock_guard lk(mu_);
        return streams_closed_;
    }
    bool wait_streams_closed(int n, std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return streams_closed_ >= n; });
    }

private:
    void accept_loop() {
        while (true) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            std::thread([this, c] { serve(c); }).detach();
        }
    }

    static bool send_all(int c, std::string_view s) {
        while (!s.empty()) {
            auto n = ::send(c, s.data(), s.size(), MSG_NOSIGNAL);
            if (n <= 0) return false;
            s.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    void serve(int c) {
        std::string buf;
        char tmp[4096];
        while (true) {
            std::size_t hdr_end;
            while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos) {
                auto n = ::recv(c, tmp, sizeof tmp, 0);
                if (n <= 0) return (void)::close(c);
                buf.append(tmp, static_cast<std::size_t>(n));
            }
            std::string head = buf.substr(0, hdr_end);
            std::size_t content_length = 0;
            for (auto p = head.find("\r\n"); p != std::string::npos; p = head.find("\r\n", p + 2)) {
                std::string_view line(head.data() + p + 2, head.size() - p - 2);
                line = line.substr(0, line.find("\r\n"));
                if (line.size() > 15 && ::strncasecmp(line.data(), "content-length:", 15) == 0)
                    content_length = std::strtoul(std::string(line.substr(15)).c_str(), nullptr, 10);
            }
            while (buf.size() < hdr_end + 4 + content_length) {
                auto n = ::recv(c, tmp, sizeof tmp, 0);
                if (n <= 0) return (void)::close(c);
                buf.append(tmp, static_cast<std::size_t>(n));
            }
            buf.erase(0, hdr_end + 4 + content_length);
            const bool stream = head.find(" /v3/watch ") != std::string::npos ||
                                head.find(" /v3/lease/keepalive ") != std::string::npos;
            unsigned status;
            std::string body;
            {
                std::lock_guard lk(mu_);
                status = status_;
                body = body_;
            }
            std::string reason = status == 200 ? "OK" : "Error";
            if (stream) {
                std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                                  "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                // One chunk per line, as the gateway flushes each message.
                std::string_view rest(body);
                while (!rest.empty()) {
                    auto nl = rest.find('\n');
                    auto piece = rest.substr(0, nl == std::string_view::npos ? rest.size() : nl + 1);
                    rest.remove_prefix(piece.size());
                    char size[32];
                    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
                    out += size;
                    out.append(piece);
                    out += "\r\n";
                }
                out += "0\r\n\r\n";
                send_all(c, out);
                // Wait for the client to close (it has then processed every line).
                while (::recv(c, tmp, sizeof tmp, 0) > 0) {
                }
                ::close(c);
                {
                    std::lock_guard lk(mu_);
                    ++streams_closed_;
                }
                cv_.notify_all();
                return;
            }
            std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + body;
            if (!send_all(c, out)) return (void)::close(c);
        }
    }

    int fd_ = -1;
    unsigned short port_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    unsigned status_ = 200;
    std::string body_;
    int streams_closed_ = 0;
};

fake_gateway& gateway() {
    static fake_gateway g;
    return g;
}

qr::etcd_store& store() {
    static qr::etcd_store s([] {
        qr::etcd_store_options o;
        o.endpoints = {"http://127.0.0.1:" + std::to_string(gateway().port())};
        o.deadline = std::chrono::milliseconds(50); // calls that retry until the deadline end quickly
        return o;
    }());
    return s;
}

void check(const std::error_code& ec, const char* what) { qr_fuzz::check_quorumreg_code(ec, what); }

void codec_invariants(std::string_view body) {
    auto enc = etcd::base64_encode(body);
    auto dec = etcd::base64_decode(enc);
    QR_FUZZ_CHECK(dec && *dec == body, "base64 round trip");
    if (auto d = etcd::base64_decode(body)) {
        auto again = etcd::base64_decode(etcd::base64_encode(*d));
        QR_FUZZ_CHECK(again && *again == *d, "base64 re-encode");
    }
    if (auto m = etcd::parse_manifest(body)) {
        auto m2 = etcd::parse_manifest(etcd::encode_manifest(*m));
        QR_FUZZ_CHECK(m2 && m2->id == m->id && m2->size == m->size && m2->chunks == m->chunks &&
                          m2->sha256 == m->sha256,
                      "manifest round trip");
    }
    boost::system::error_code jec;
    auto v = boost::json::parse(body, jec);
    if (jec || !v.is_object()) return;
    auto& o = v.get_object();
    (void)etcd::kv_from_json(o);
    auto code = etcd::get_i64(o, "code");
    check(etcd::core::map_code(code, etcd::get_str(o, "message"), 200), "map_code");
    if (auto kvs = etcd::get_arr(o, "kvs"))
        for (auto& kv : *kvs)
            if (kv.is_object()) (void)etcd::kv_from_json(kv.get_object());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 64 * 1024) return 0;
    static constexpr unsigned statuses[8] = {200, 200, 200, 200, 400, 401, 413, 500};
    const unsigned op = data[0] & 15;
    const unsigned status = statuses[(data[0] >> 4) & 7];
    std::string body(qr_fuzz::as_view(data + 1, size - 1));
    codec_invariants(body);

    auto& g = gateway();
    g.set(status, body);
    auto& s = store();
    std::error_code ec;
    switch (op) {
    case 0:
        (void)s.get("p/key", ec);
        check(ec, "get");
        break;
    case 1:
        (void)s.range("p/", "", 10, ec);
        check(ec, "range");
        break;
    case 2:
        (void)s.revision(ec);
        check(ec, "revision");
        break;
    case 3:
        (void)s.put("p/key", "value", 0, ec);
        check(ec, "put");
        break;
    case 4:
        (void)s.erase("p/key", ec);
        check(ec, "erase");
        break;
    case 5: {
        qr::store_txn t;
        t.compares.push_back(qr::key_compare::mod_revision_is("p/key", 3));
        t.compares.push_back(qr::key_compare::value_is("p/v", "x"));
        t.on_success.push_back(qr::store_op::put("p/key", "v"));
        t.on_success.push_back(qr::store_op::erase("p/other"));
        t.on_failure.push_back(qr::store_op::erase_prefix("p/x/"));
        (void)s.commit(t, ec);
        check(ec, "commit");
        break;
    }
    case 6:
        (void)s.grant_lease(std::chrono::seconds(5), ec);
        check(ec, "grant_lease");
        break;
    case 7:
        s.keep_alive(42, ec);
        check(ec, "keep_alive");
        break;
    case 8:
        s.revoke_lease(42, ec);
        check(ec, "revoke_lease");
        break;
    case 9:
        (void)s.lease_ttl(42, ec);
        check(ec, "lease_ttl");
        break;
    case 10: {
        const int before = g.streams_closed();
        std::atomic<int> calls{0};
        auto sub = s.watch(
            "p/", 1,
            [&](const std::vector<qr::watch_event>& evs, std::error_code wec) {
                check(wec, "watch handler");
                for (auto& e : evs)
                    QR_FUZZ_CHECK(e.what == qr::watch_event::kind::put || e.what == qr::watch_event::kind::erase);
                ++calls;
            },
            ec);
        check(ec, "watch");
        if (!ec) g.wait_streams_closed(before + 1, std::chrono::seconds(2));
        sub.reset();
        break;
    }
    case 11:
        (void)s.collect_garbage(0, ec);
        check(ec, "collect_garbage");
        break;
    case 12:
        (void)s.create("p/new", "v", 0, ec);
        check(ec, "create");
        break;
    default: break; // codec checks only
    }
    return 0;
}
