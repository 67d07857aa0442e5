// A TCP proxy on 127.0.0.1 for partition tests (issue 17): it sits between a client and one
// server (an etcd member) and can, on command, pass traffic, delay it, blackhole it (accept and
// keep connections, forward nothing, send no FIN: what a cut cable or a powered-off host looks
// like to the client) or reset every open connection (RST). heal() goes back to passing and
// forwards what was held back, as TCP would after a partition shorter than its retransmission
// timeout. Not installed: harness code, not library API.
//
// One io_context on the proxy's own thread does all the work; commands are posted to it and
// wait until they are in effect, so "blackhole(); write()" never races the proxy.
#pragma once

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace qr_support {

class tcp_proxy {
public:
    enum class mode { pass, delay, blackhole };

    /// Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:target_port.
    explicit tcp_proxy(int target_port)
        : target_(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(target_port)),
          acceptor_(ioc_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
        port_ = acceptor_.local_endpoint().port();
        accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~tcp_proxy() { stop(); }
    tcp_proxy(const tcp_proxy&) = delete;
    tcp_proxy& operator=(const tcp_proxy&) = delete;

    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    void pass() { set(mode::pass, std::chrono::milliseconds(0)); }
    /// Every chunk of data waits `d` before it is forwarded (order is kept).
    void delay(std::chrono::milliseconds d) { set(mode::delay, d); }
    /// Accept and keep connections, forward nothing in either direction, close nothing.
    void blackhole() { set(mode::blackhole, std::chrono::milliseconds(0)); }
    /// Back to pass; data held by a blackhole is forwarded now.
    void heal() { pass(); }
    /// Closes every open connection with an RST (SO_LINGER 0) on both sides; new ones pass.
    void reset() {
        command([this] {
            mode_ = mode::pass;
            auto all = sessions_;
            for (auto& s : all)
                close(s, true);
            release_parked();
        });
    }
    /// Connections currently open through the proxy.
    std::size_t connections() {
        std::size_t n = 0;
        command([&] { n = sessions_.size(); });
        return n;
    }
    /// Stops accepting, closes every connection and joins the thread (idempotent).
    void stop() {
        if (!thread_.joinable()) return;
        boost::asio::post(ioc_, [this] {
            boost::system::error_code ec;
            acceptor_.close(ec);
            auto all = sessions_;
            for (auto& s : all)
                close(s, false);
            parked_.clear();
            ioc_.stop();
        });
        thread_.join();
    }

private:
    using tcp = boost::asio::ip::tcp;

    struct session {
        explicit session(boost::asio::io_context& ioc) : client(ioc), upstream(ioc) {}
        tcp::socket client, upstream;
        std::array<std::array<char, 16384>, 2> buf{};
        bool closed = false;
    };
    using session_ptr = std::shared_ptr<session>;

    template <class F> void command(F&& f) {
        std::promise<void> done;
        boost::asio::post(ioc_, [&] {
            f();
            done.set_value();
        });
        done.get_future().wait();
    }

    void set(mode m, std::chrono::milliseconds d) {
        command([this, m, d] {
            mode_ = m;
            delay_ = d;
            if (m != mode::blackhole) release_parked();
        });
    }

    void release_parked() {
        auto p = std::move(parked_);
        parked_.clear();
        for (auto& f : p)
            f();
    }

    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
            if (ec) return; // closed by stop()
            auto s = std::make_shared<session>(ioc_);
            s->client = std::move(sock);
            sessions_.insert(s);
            s->upstream.async_connect(target_, [this, s](boost::system::error_code cec) {
                if (cec) return close(s, false); // server down: the client sees EOF
                pump(s, 0);
                pump(s, 1);
            });
            accept();
        });
    }

    // Direction 0: client -> upstream; 1: upstream -> client.
    void pump(const session_ptr& s, int dir) {
        if (s->closed) return;
        auto& src = dir == 0 ? s->client : s->upstream;
        src.async_read_some(boost::asio::buffer(s->buf[static_cast<std::size_t>(dir)]),
                            [this, s, dir](boost::system::error_code ec, std::size_t n) {
                                if (ec) return close(s, false);
                                forward(s, dir, n, false);
                            });
    }

    void forward(const session_ptr& s, int dir, std::size_t n, bool delayed) {
        if (s->closed) return;
        if (mode_ == mode::blackhole) {
            parked_.push_back([this, s, dir, n] { forward(s, dir, n, false); });
            return;
        }
        if (mode_ == mode::delay && !delayed && delay_.count() > 0) {
            auto t = std::make_shared<boost::asio::steady_timer>(ioc_, delay_);
            t->async_wait([this, s, dir, n, t](boost::system::error_code ec) {
                if (!ec) forward(s, dir, n, true);
            });
            return;
        }
        auto& dst = dir == 0 ? s->upstream : s->client;
        boost::asio::async_write(dst, boost::asio::buffer(s->buf[static_cast<std::size_t>(dir)], n),
                                 [this, s, dir](boost::system::error_code ec, std::size_t) {
                                     if (ec) return close(s, false);
                                     pump(s, dir);
                                 });
    }

    void close(const session_ptr& s, bool rst) {
        if (s->closed) return;
        s->closed = true;
        boost::system::error_code ec;
        for (auto* sock : {&s->client, &s->upstream}) {
            if (!sock->is_open()) continue;
            if (rst) sock->set_option(tcp::socket::linger(true, 0), ec);
            sock->close(ec);
        }
        sessions_.erase(s);
    }

    boost::asio::io_context ioc_{1};
    tcp::endpoint target_;
    tcp::acceptor acceptor_;
    int port_ = 0;
    mode mode_ = mode::pass;
    std::chrono::milliseconds delay_{0};
    std::set<session_ptr> sessions_;
    std::vector<std::function<void()>> parked_;
    std::thread thread_;
};

} // namespace qr_support
