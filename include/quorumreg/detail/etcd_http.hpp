// HTTP/1.1 transport for the etcd store: one keep-alive connection (plain TCP or TLS) driven
// synchronously by its own io_context, with a hard deadline on every step through
// beast::tcp_stream's expiry. Included only by <quorumreg/stores/etcd_store.hpp>.
//
// Why synchronous-over-async: a per-connection io_context run to completion gives each call a
// real deadline (tcp_stream timeouts only apply to asynchronous operations) without a shared
// event loop thread, and a pooled connection is used by one thread at a time.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace quorumreg::detail::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using clock = std::chrono::steady_clock;

/// One member's client URL, split.
struct endpoint {
    std::string url; ///< as given, e.g. "http://127.0.0.1:2379"
    std::string host;
    std::string port;
    bool tls = false;
};

/// Parses "http://host:port" or "https://host:port" (a trailing '/' is tolerated; no path).
inline std::optional<endpoint> parse_endpoint(std::string_view url) {
    endpoint e;
    e.url = std::string(url);
    std::string_view rest;
    if (url.starts_with("http://")) {
        rest = url.substr(7);
    } else if (url.starts_with("https://")) {
        rest = url.substr(8);
        e.tls = true;
    } else {
        return std::nullopt;
    }
    while (!rest.empty() && rest.back() == '/')
        rest.remove_suffix(1);
    if (rest.empty() || rest.find('/') != std::string_view::npos) return std::nullopt;
    std::string_view host = rest, port = e.tls ? "443" : "80";
    if (rest.front() == '[') { // [v6]:port
        auto close = rest.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') return std::nullopt;
            port = rest.substr(close + 2);
        }
    } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (host.empty() || port.empty()) return std::nullopt;
    for (char c : port)
        if (c < '0' || c > '9') return std::nullopt;
    e.host = std::string(host);
    e.port = std::string(port);
    return e;
}

/// How far a request got: decides whether a failed write may have been applied.
enum class stage { not_sent, sent };

/// Outcome of one HTTP exchange.
struct http_result {
    beast::error_code net; ///< transport failure (timeout: beast::error::timeout)
    stage reached = stage::not_sent;
    unsigned status = 0; ///< HTTP status when a response arrived
    std::string body;
    bool timed_out() const { return net == beast::error::timeout; }
};

/// A single HTTP/1.1 keep-alive connection to one endpoint.
class connection {
public:
    connection(const endpoint& ep, std::size_t index, std::shared_ptr<ssl::context> tls)
        : ep_(ep), index_(index), tls_ctx_(std::move(tls)) {}

    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection() { close(); }

    std::size_t endpoint_index() const { return index_; }
    bool is_open() const { return plain_ || secure_; }

    /// True if the idle connection can be reused: open and the peer has not closed it (a
    /// readable idle socket means EOF, a reset, or stray bytes: in every case drop it).
    bool reusable() {
        if (!is_open()) return false;
        int fd = static_cast<int>(lowest().socket().native_handle());
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, 0);
        if (r != 0 || buffer_.size() != 0) {
            close();
            return false;
        }
        return true;
    }

    void close() {
        beast::error_code ec;
        if (secure_) {
            beast::get_lowest_layer(*secure_).socket().close(ec);
            secure_.reset();
        }
        if (plain_) {
            plain_->socket().close(ec);
            plain_.reset();
        }
        buffer_.clear();
    }

    /// Sends one request and reads the whole response before `deadline`.
    http_result exchange(http::verb verb, std::string_view target, std::string body,
                         const std::vector<std::pair<std::string, std::string>>& headers, clock::time_point deadline) {
        http_result r;
        if (!is_open()) {
            r.net = open(deadline);
            if (r.net) {
                close();
                return r;
            }
        }
        auto req = make_request(verb, target, std::move(body), headers);
        lowest().expires_at(deadline);
        r.reached = stage::sent;
        http::response_parser<http::string_body> parser;
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        r.net = run([&](auto&& h) { with_stream([&](auto& s) { http::async_write(s, req, h); }); });
        if (!r.net) {
            lowest().expires_at(deadline);
            r.net = run([&](auto&& h) { with_stream([&](auto& s) { http::async_read(s, buffer_, parser, h); }); });
        }
        if (r.net) {
            close();
            return r;
        }
        auto& res = parser.get();
        r.status = res.result_int();
        r.body = std::move(res.body());
        if (!res.keep_alive()) close();
        return r;
    }

    /// Streaming request (watch, lease keep-alive): sends the request, then feeds every complete
    /// newline-delimited line of the chunked response to `on_line` until it returns false, the
    /// peer closes, `stop()` returns true (checked every `poll` interval) or the stream stays
    /// silent: after `idle_timeout` without any bytes, `on_idle` (if set) decides whether to
    /// keep waiting (true) or to give up with beast::error::timeout (false, or no `on_idle`).
    /// Returns the HTTP status and, for a non-200 answer, its body. The connection is closed
    /// afterwards (a stream is never reused).
    http_result stream(std::string_view target, std::string body,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       clock::time_point connect_deadline, const std::function<bool(std::string_view)>& on_line,
                       const std::function<bool()>& stop, std::chrono::milliseconds idle_timeout,
                       const std::function<bool()>& on_idle = {},
                       std::chrono::milliseconds poll = std::chrono::milliseconds(100)) {
        http_result r;
        if (!is_open()) {
            r.net = open(connect_deadline);
            if (r.net) {
                close();
                return r;
            }
        }
        auto req = make_request(http::verb::post, target, std::move(body), headers);
        lowest().expires_at(connect_deadline);
        r.reached = stage::sent;
        r.net = run([&](auto&& h) { with_stream([&](auto& s) { http::async_write(s, req, h); }); });
        http::response_parser<http::string_body> parser;
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        std::string pending;
        bool want_more = true;
        auto last_bytes = clock::now();
        auto chunk_cb = [&](std::uint64_t, std::string_view data, beast::error_code&) -> std::size_t {
            last_bytes = clock::now();
            pending.append(data.data(), data.size());
            std::size_t pos;
            while (want_more && (pos = pending.find('\n')) != std::string::npos) {
                std::string line = pending.substr(0, pos);
                pending.erase(0, pos + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (!line.empty() && !on_line(line)) want_more = false;
            }
            return data.size();
        };
        parser.on_chunk_body(chunk_cb);
        if (!r.net) {
            lowest().expires_at(connect_deadline);
            r.net =
                run([&](auto&& h) { with_stream([&](auto& s) { http::async_read_header(s, buffer_, parser, h); }); });
        }
        if (!r.net) {
            r.status = parser.get().result_int();
            if (r.status != 200) {
                r.net = run([&](auto&& h) { with_stream([&](auto& s) { http::async_read(s, buffer_, parser, h); }); });
                r.body = std::move(parser.get().body());
                close();
                return r;
            }
            // Silence is measured here, not with the stream's expiry: that one closes the
            // socket, and on_idle may decide the stream is still good.
            last_bytes = clock::now();
            while (want_more && !parser.is_done()) {
                bool done = false;
                beast::error_code ec;
                lowest().expires_never();
                with_stream([&](auto& s) {
                    http::async_read_some(s, buffer_, parser, [&](beast::error_code e, std::size_t) {
                        ec = e;
                        done = true;
                        last_bytes = clock::now();
                    });
                });
                ioc_.restart();
                while (!done) {
                    ioc_.run_for(poll);
                    if (done) break;
                    bool give_up = stop && stop();
                    if (!give_up && idle_timeout.count() > 0 && clock::now() - last_bytes >= idle_timeout) {
                        if (on_idle && on_idle())
                            last_bytes = clock::now();
                        else
                            give_up = true;
                    }
                    if (give_up) {
                        bool stopped = stop && stop();
                        lowest().cancel();
                        ioc_.restart();
                        ioc_.run();
                        done = true;
                        want_more = false;
                        ec = stopped ? beast::error_code{} : beast::error_code(beast::error::timeout);
                    }
                }
                if (ec) {
                    r.net = ec;
                    break;
                }
            }
            if (!pending.empty() && want_more && !r.net) on_line(pending);
        }
        close();
        return r;
    }

private:
    beast::tcp_stream& lowest() { return secure_ ? beast::get_lowest_layer(*secure_) : *plain_; }

    template <class F> void with_stream(F&& f) {
        if (secure_)
            f(*secure_);
        else
            f(*plain_);
    }

    template <class Start> beast::error_code run(Start&& start) {
        beast::error_code result = asio::error::would_block;
        start([&](beast::error_code ec, auto&&...) { result = ec; });
        ioc_.restart();
        ioc_.run();
        return result;
    }

    beast::error_code open(clock::time_point deadline) {
        close();
        beast::error_code ec;
        std::vector<tcp::endpoint> addrs;
        auto addr = asio::ip::make_address(ep_.host, ec);
        if (!ec) {
            addrs.emplace_back(addr, static_cast<unsigned short>(std::stoi(ep_.port)));
        } else {
            tcp::resolver resolver(ioc_);
            tcp::resolver::results_type results;
            beast::error_code rec = asio::error::would_block;
            resolver.async_resolve(ep_.host, ep_.port, [&](beast::error_code e, tcp::resolver::results_type res) {
                rec = e;
                results = std::move(res);
            });
            ioc_.restart();
            ioc_.run_until(deadline);
            if (rec == asio::error::would_block) {
                resolver.cancel();
                ioc_.restart();
                ioc_.run();
                return beast::error::timeout;
            }
            if (rec) return rec;
            for (auto& e : results)
                addrs.push_back(e.endpoint());
        }
        if (ep_.tls) {
            secure_.emplace(ioc_, *tls_ctx_);
            // SNI and host name verification need the name, not the address.
            beast::error_code ipec;
            (void)asio::ip::make_address(ep_.host, ipec);
            if (ipec) (void)SSL_set_tlsext_host_name(secure_->native_handle(), ep_.host.c_str());
            secure_->set_verify_callback(ssl::host_name_verification(ep_.host));
        } else {
            plain_.emplace(ioc_);
        }
        lowest().expires_at(deadline);
        beast::error_code cec = asio::error::would_block;
        lowest().async_connect(addrs, [&](beast::error_code e, const tcp::endpoint&) { cec = e; });
        ioc_.restart();
        ioc_.run();
        if (cec) return cec;
        lowest().socket().set_option(tcp::no_delay(true), ec);
        // Keep-alive probes find a peer that vanished without a FIN (power loss, cut link) on
        // idle pooled connections and streams: first probe after 5 s idle, dead after 3 more.
        lowest().socket().set_option(asio::socket_base::keep_alive(true), ec);
        int fd = static_cast<int>(lowest().socket().native_handle());
        int idle = 5, intvl = 2, cnt = 3;
        (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        if (secure_) {
            lowest().expires_at(deadline);
            auto hec = run([&](auto&& h) { secure_->async_handshake(ssl::stream_base::client, h); });
            if (hec) return hec;
        }
        return {};
    }

    http::request<http::string_body> make_request(http::verb verb, std::string_view target, std::string body,
                                                  const std::vector<std::pair<std::string, std::string>>& headers) {
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, ep_.host + ":" + ep_.port);
        req.set(http::field::content_type, "application/json");
        req.keep_alive(true);
        for (auto& [k, v] : headers)
            req.set(k, v);
        req.body() = std::move(body);
        req.prepare_payload();
        return req;
    }

    endpoint ep_;
    std::size_t index_;
    std::shared_ptr<ssl::context> tls_ctx_;
    asio::io_context ioc_{1};
    std::optional<beast::tcp_stream> plain_;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
    beast::flat_buffer buffer_;
};

} // namespace quorumreg::detail::etcd
