// Definitions for detail/etcd_http.hpp: the Beast/Asio side of the etcd transport. Included by
// that header (header-only builds) or by <quorumreg/src.hpp> (QUORUMREG_SEPARATE_COMPILATION).
#pragma once

#include <quorumreg/detail/etcd_http.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <limits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <utility>

namespace quorumreg::detail::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

QUORUMREG_DECL bool http_result::timed_out() const { return net == beast::error::timeout; }

QUORUMREG_DECL std::shared_ptr<ssl::context> make_tls_context(const std::string& ca_file, const std::string& cert_file,
                                                              const std::string& key_file, bool verify,
                                                              std::string& detail) {
    auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
    boost::system::error_code ec;
    if (ca_file.empty())
        tls->set_default_verify_paths(ec);
    else
        tls->load_verify_file(ca_file, ec);
    if (!ec && !cert_file.empty()) tls->use_certificate_chain_file(cert_file, ec);
    if (!ec && !key_file.empty()) tls->use_private_key_file(key_file, ssl::context::pem, ec);
    if (ec) {
        detail = "TLS setup: " + ec.message();
        return nullptr;
    }
    tls->set_verify_mode(verify ? ssl::verify_peer : ssl::verify_none);
    return tls;
}

class connection::impl {
public:
    impl(const endpoint& ep, std::shared_ptr<ssl::context> tls) : ep_(ep), tls_ctx_(std::move(tls)) {}

    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    ~impl() { close(); }

    bool is_open() const { return plain_ || secure_; }

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

    http_result exchange(http::verb verb, std::string_view target, std::string body, const header_list& headers,
                         clock::time_point deadline) {
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

    http_result stream(std::string_view target, std::string body, const header_list& headers,
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
                                                  const header_list& headers) {
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
    std::shared_ptr<ssl::context> tls_ctx_;
    asio::io_context ioc_{1};
    std::optional<beast::tcp_stream> plain_;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
    beast::flat_buffer buffer_;
};

QUORUMREG_DECL connection::connection(const endpoint& ep, std::size_t index, std::shared_ptr<ssl::context> tls)
    : impl_(std::make_unique<impl>(ep, std::move(tls))), index_(index) {}

QUORUMREG_DECL connection::~connection() = default;

QUORUMREG_DECL bool connection::is_open() const { return impl_->is_open(); }

QUORUMREG_DECL bool connection::reusable() { return impl_->reusable(); }

QUORUMREG_DECL void connection::close() { impl_->close(); }

QUORUMREG_DECL http_result connection::exchange(method verb, std::string_view target, std::string body,
                                                const header_list& headers, clock::time_point deadline) {
    return impl_->exchange(verb == method::get ? http::verb::get : http::verb::post, target, std::move(body), headers,
                           deadline);
}

QUORUMREG_DECL http_result connection::stream(std::string_view target, std::string body, const header_list& headers,
                                              clock::time_point connect_deadline,
                                              const std::function<bool(std::string_view)>& on_line,
                                              const std::function<bool()>& stop, std::chrono::milliseconds idle_timeout,
                                              const std::function<bool()>& on_idle, std::chrono::milliseconds poll) {
    return impl_->stream(target, std::move(body), headers, connect_deadline, on_line, stop, idle_timeout, on_idle,
                         poll);
}

} // namespace quorumreg::detail::etcd
