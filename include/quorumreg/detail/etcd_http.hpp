// HTTP/1.1 transport for the etcd store: one keep-alive connection (plain TCP or TLS) driven
// synchronously by its own io_context, with a hard deadline on every step through
// beast::tcp_stream's expiry. Included only by <quorumreg/stores/etcd_store.hpp>.
//
// Why synchronous-over-async: a per-connection io_context run to completion gives each call a
// real deadline (tcp_stream timeouts only apply to asynchronous operations) without a shared
// event loop thread, and a pooled connection is used by one thread at a time.
//
// This header declares; detail/impl/etcd_http.ipp holds Beast and Asio (see detail/config.hpp
// for compiling it once).
#pragma once

#include <quorumreg/detail/config.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace boost::asio::ssl {
class context;
} // namespace boost::asio::ssl

namespace quorumreg::detail::etcd {

namespace ssl = boost::asio::ssl;
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
    boost::system::error_code net; ///< transport failure (timeout: beast::error::timeout)
    stage reached = stage::not_sent;
    unsigned status = 0; ///< HTTP status when a response arrived
    std::string body;
    QUORUMREG_DECL bool timed_out() const;
};

/// The HTTP methods the store uses.
enum class method { get, post };

using header_list = std::vector<std::pair<std::string, std::string>>;

/// A TLS client context: the CA file (empty: the system's default paths), an optional client
/// certificate chain and key, and whether the peer is verified. nullptr and `detail` set when
/// a file cannot be used.
QUORUMREG_DECL std::shared_ptr<ssl::context> make_tls_context(const std::string& ca_file, const std::string& cert_file,
                                                              const std::string& key_file, bool verify,
                                                              std::string& detail);

/// A single HTTP/1.1 keep-alive connection to one endpoint.
class connection {
public:
    QUORUMREG_DECL connection(const endpoint& ep, std::size_t index, std::shared_ptr<ssl::context> tls);
    QUORUMREG_DECL ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    std::size_t endpoint_index() const { return index_; }
    QUORUMREG_DECL bool is_open() const;

    /// True if the idle connection can be reused: open and the peer has not closed it (a
    /// readable idle socket means EOF, a reset, or stray bytes: in every case drop it).
    QUORUMREG_DECL bool reusable();

    QUORUMREG_DECL void close();

    /// Sends one request and reads the whole response before `deadline`.
    QUORUMREG_DECL http_result exchange(method verb, std::string_view target, std::string body,
                                        const header_list& headers, clock::time_point deadline);

    /// Streaming request (watch, lease keep-alive): sends the request, then feeds every complete
    /// newline-delimited line of the chunked response to `on_line` until it returns false, the
    /// peer closes, `stop()` returns true (checked every `poll` interval) or the stream stays
    /// silent: after `idle_timeout` without any bytes, `on_idle` (if set) decides whether to
    /// keep waiting (true) or to give up with beast::error::timeout (false, or no `on_idle`).
    /// Returns the HTTP status and, for a non-200 answer, its body. The connection is closed
    /// afterwards (a stream is never reused).
    QUORUMREG_DECL http_result stream(std::string_view target, std::string body, const header_list& headers,
                                      clock::time_point connect_deadline,
                                      const std::function<bool(std::string_view)>& on_line,
                                      const std::function<bool()>& stop, std::chrono::milliseconds idle_timeout,
                                      const std::function<bool()>& on_idle = {},
                                      std::chrono::milliseconds poll = std::chrono::milliseconds(100));

private:
    class impl;
    std::unique_ptr<impl> impl_;
    std::size_t index_;
};

} // namespace quorumreg::detail::etcd

#if !defined(QUORUMREG_SEPARATE_COMPILATION)
#include <quorumreg/detail/impl/etcd_http.ipp>
#endif
