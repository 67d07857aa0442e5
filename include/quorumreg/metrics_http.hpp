// An HTTP endpoint that serves a metrics_registry to Prometheus (GET /metrics).
//
//   quorumreg::metrics_server srv(quorumreg::default_metrics(), {.port = 9464});
//   // scrape_configs: - targets: ["127.0.0.1:9464"]
//
// - Opt-in like the etcd backend: it pulls in Boost.Beast, so only programs that include this
//   header (and link quorumreg::metrics_http) pay for it. It binds 127.0.0.1 unless told
//   otherwise; metrics name resources and nodes, so exposing them wider is a decision.
// - One thread of its own; each connection has a 10 s deadline for its request, requests are
//   capped at 8 KiB, only GET and HEAD of `path` are served (404 elsewhere, 405 for other
//   methods). A bind failure throws quorumreg::error (errc::io_error, the address and the OS
//   reason in the message).
// - The destructor (or stop()) closes the listener and open connections and joins the thread.
#pragma once

#include <quorumreg/error.hpp>
#include <quorumreg/metrics.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace quorumreg {

/// Where a metrics_server listens.
struct metrics_server_options {
    std::string address = "127.0.0.1"; ///< the IP address to bind (loopback by default)
    std::uint16_t port = 0;            ///< 0: an ephemeral port (see metrics_server::port())
    std::string path = "/metrics";     ///< the one path served (others get 404)
};

/// Serves a metrics_registry in Prometheus text format over HTTP (Boost.Beast), on its own
/// thread, until stopped or destroyed.
class metrics_server {
public:
    /// Binds and starts serving `metrics` (which must outlive the server); throws
    /// quorumreg::error for a bad address or a port that cannot be bound.
    explicit metrics_server(const metrics_registry& metrics, metrics_server_options opts = {})
        : metrics_(metrics), opts_(std::move(opts)), acceptor_(io_) {
        namespace asio = boost::asio;
        boost::system::error_code bec;
        auto addr = asio::ip::make_address(opts_.address, bec);
        if (bec) {
            throw error(make_error_code(errc::invalid_argument),
                        "metrics endpoint: \"" + opts_.address + "\" is not an IP address");
        }
        asio::ip::tcp::endpoint ep(addr, opts_.port);
        acceptor_.open(ep.protocol(), bec);
        if (!bec) acceptor_.set_option(asio::socket_base::reuse_address(true), bec);
        if (!bec) acceptor_.bind(ep, bec);
        if (!bec) acceptor_.listen(asio::socket_base::max_listen_connections, bec);
        if (bec) {
            throw error(make_error_code(errc::io_error), "metrics endpoint: listen on " + opts_.address + ":" +
                                                             std::to_string(opts_.port) + ": " + bec.message());
        }
        port_ = acceptor_.local_endpoint().port();
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }

    metrics_server(const metrics_server&) = delete;
    metrics_server& operator=(const metrics_server&) = delete;
    ~metrics_server() { stop(); }

    /// The port actually bound (useful with port 0).
    std::uint16_t port() const noexcept { return port_; }

    /// Stops accepting, closes connections and joins the thread; idempotent.
    void stop() {
        if (!thread_.joinable()) return;
        boost::asio::post(io_, [this] {
            boost::system::error_code ignored;
            acceptor_.close(ignored);
            io_.stop(); // connections still open are destroyed with io_
        });
        thread_.join();
    }

private:
    class session : public std::enable_shared_from_this<session> {
    public:
        session(boost::asio::ip::tcp::socket s, const metrics_server& owner) : stream_(std::move(s)), owner_(owner) {}

        void start() { read(); }

    private:
        void read() {
            req_ = {};
            parser_.emplace();
            parser_->header_limit(8 * 1024);
            parser_->body_limit(8 * 1024);
            stream_.expires_after(std::chrono::seconds(10));
            boost::beast::http::async_read(stream_, buffer_, *parser_,
                                           [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                               if (ec) return self->close();
                                               self->req_ = self->parser_->release();
                                               self->respond();
                                           });
        }

        void respond() {
            namespace http = boost::beast::http;
            res_ = {};
            res_.version(req_.version());
            res_.keep_alive(req_.keep_alive());
            res_.set(http::field::server, "quorumreg");
            std::string_view target(req_.target().data(), req_.target().size());
            auto q = target.find('?');
            if (q != std::string_view::npos) target = target.substr(0, q);
            if (target != owner_.opts_.path) {
                res_.result(http::status::not_found);
                res_.set(http::field::content_type, "text/plain");
                res_.body() = "not found; metrics are at " + owner_.opts_.path + "\n";
            } else if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
                res_.result(http::status::method_not_allowed);
                res_.set(http::field::allow, "GET, HEAD");
            } else {
                res_.result(http::status::ok);
                res_.set(http::field::content_type, metrics_registry::content_type);
                res_.body() = owner_.metrics_.render();
            }
            res_.prepare_payload();
            // HEAD: the headers (Content-Length included) of a GET, without the body.
            if (req_.method() == http::verb::head) res_.body().clear();
            http::async_write(stream_, res_, [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                if (ec || !self->res_.keep_alive()) return self->close();
                self->read();
            });
        }

        void close() {
            boost::beast::error_code ignored;
            stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
            stream_.close();
        }

        boost::beast::tcp_stream stream_;
        const metrics_server& owner_;
        boost::beast::flat_buffer buffer_;
        std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
        boost::beast::http::request<boost::beast::http::string_body> req_;
        boost::beast::http::response<boost::beast::http::string_body> res_;
    };

    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
            if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
            if (!ec) std::make_shared<session>(std::move(s), *this)->start();
            accept();
        });
    }

    const metrics_registry& metrics_;
    metrics_server_options opts_;
    boost::asio::io_context io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::thread thread_;
};

} // namespace quorumreg
