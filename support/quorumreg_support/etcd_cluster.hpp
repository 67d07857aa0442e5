// A real etcd cluster (Debian's /usr/bin/etcd, 3.4) on 127.0.0.1, for tests, benchmarks and the
// demo (`quorumreg_demo --store etcd`). Not installed: harness code, not library API.
//
// Every member gets free ports (found by binding port 0), a fresh data directory and the run's
// unique --initial-cluster-token, so stale members of an earlier run can never join. Members are
// tracked by PID: they can be killed (SIGKILL), frozen (SIGSTOP), resumed and restarted with the
// same data dir and ports. Teardown is by PID (SIGTERM, then SIGKILL after a short timeout) from
// the destructor and, as a backstop, from an atexit handler; each member also gets
// PR_SET_PDEATHSIG so a crashed test binary cannot leave etcd processes behind.
//
// Deliberately independent of the library under test: readiness is checked with a plain POSIX
// socket and HTTP/1.0, not with Beast.
#pragma once

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace qr_support {

namespace etcd_detail {

/// PIDs and directories alive in this process, cleaned by an atexit handler if a test exits
/// without running destructors (std::exit from a failed assertion, for instance).
struct leftovers {
    std::mutex mu;
    std::set<pid_t> pids;
    std::set<std::string> dirs;

    static leftovers& get() {
        static leftovers* l = [] {
            auto* p = new leftovers; // never destroyed: the atexit handler may run late
            std::atexit([] { leftovers::get().clean(); });
            return p;
        }();
        return *l;
    }
    void clean() {
        std::set<pid_t> ps;
        std::set<std::string> ds;
        {
            std::lock_guard lk(mu);
            ps.swap(pids);
            ds.swap(dirs);
        }
        for (pid_t p : ps) {
            ::kill(p, SIGCONT);
            ::kill(p, SIGKILL);
            ::waitpid(p, nullptr, 0);
        }
        for (auto& d : ds) {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    }
};

/// A port that was free a moment ago (bound to port 0 and released).
inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        throw std::runtime_error("bind(0) failed");
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    int port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

/// GET `path` on 127.0.0.1:port with HTTP/1.0; returns the body or "" on any failure.
inline std::string http_get(int port, const std::string& path, std::chrono::milliseconds timeout) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return {};
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    auto end = std::chrono::steady_clock::now() + timeout;
    auto left = [&] {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
        return static_cast<int>(std::max<long long>(ms, 0));
    };
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return {};
    }
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, left()) != 1) {
        ::close(fd);
        return {};
    }
    int err = 0;
    socklen_t el = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        ::close(fd);
        return {};
    }
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        ::close(fd);
        return {};
    }
    char buf[4096];
    while (true) {
        pollfd q{fd, POLLIN, 0};
        if (::poll(&q, 1, left()) != 1) {
            ::close(fd);
            return {};
        }
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    auto pos = out.find("\r\n\r\n");
    return pos == std::string::npos ? std::string() : out.substr(pos + 4);
}

} // namespace etcd_detail

/// A running etcd cluster of `n` members on 127.0.0.1; stopped and removed on destruction.
///
/// @code
/// qr_support::etcd_cluster c(3);       // waits until every member is healthy
/// auto urls = c.client_urls();         // "http://127.0.0.1:PORT", one per member
/// c.kill_member(0);                    // kill -9
/// c.restart_member(0);                 // same ports, same data dir
/// @endcode
class etcd_cluster {
public:
    /// TLS for the client side: each member then also listens on https://127.0.0.1:<tls_port>
    /// (its plain http:// client URL stays, for readiness checks and etcdctl).
    struct tls_files {
        std::string cert_file, key_file; ///< the members' server certificate and key (PEM)
        std::string trusted_ca_file;     ///< CA for client certificates (with client_cert_auth)
        bool client_cert_auth = false;   ///< require a client certificate on https://
    };

    struct member {
        std::string name;
        int client_port = 0, peer_port = 0, metrics_port = 0, tls_port = 0;
        pid_t pid = -1;
        std::filesystem::path data_dir;
        std::filesystem::path log_file;
    };

    /// Starts `n` members and waits until all are healthy. Data and logs go to a fresh folder
    /// under `parent` (empty: $QUORUMREG_TEST_TMP, else the system temp directory).
    /// `extra_args` are appended to every member's command line (e.g. "--auth-token-ttl=2").
    explicit etcd_cluster(int n = 3, std::optional<tls_files> tls = std::nullopt,
                          std::chrono::seconds ready_timeout = std::chrono::seconds(60),
                          const std::filesystem::path& parent = {}, std::vector<std::string> extra_args = {})
        : tls_(std::move(tls)), extra_args_(std::move(extra_args)) {
        const char* base = std::getenv("QUORUMREG_TEST_TMP");
        std::filesystem::path root = !parent.empty() ? parent
                                     : base          ? std::filesystem::path(base)
                                                     : std::filesystem::temp_directory_path();
        std::random_device rd;
        token_ = "qr-" + std::to_string(::getpid()) + "-" + std::to_string(rd()) + std::to_string(rd());
        root_ = root / ("etcd-" + token_);
        std::filesystem::create_directories(root_);
        {
            auto& l = etcd_detail::leftovers::get();
            std::lock_guard lk(l.mu);
            l.dirs.insert(root_.string());
        }
        std::set<int> used;
        auto port = [&] {
            for (int i = 0; i < 100; ++i) {
                int p = etcd_detail::free_port();
                if (used.insert(p).second) return p;
            }
            throw std::runtime_error("no free port");
        };
        for (int i = 0; i < n; ++i) {
            member m;
            m.name = "m" + std::to_string(i + 1);
            m.client_port = port();
            m.peer_port = port();
            m.metrics_port = port();
            if (tls_) m.tls_port = port();
            m.data_dir = root_ / (m.name + ".etcd");
            m.log_file = root_ / (m.name + ".log");
            members_.push_back(m);
        }
        for (int i = 0; i < n; ++i)
            start(i);
        if (!wait_ready(ready_timeout)) {
            std::string logs = tail_logs();
            teardown();
            throw std::runtime_error("etcd cluster did not become ready:\n" + logs);
        }
    }

    ~etcd_cluster() { teardown(); }
    etcd_cluster(const etcd_cluster&) = delete;
    etcd_cluster& operator=(const etcd_cluster&) = delete;

    std::size_t size() const { return members_.size(); }
    const member& at(std::size_t i) const { return members_.at(i); }
    std::string client_url(std::size_t i) const {
        return "http://127.0.0.1:" + std::to_string(members_.at(i).client_port);
    }
    /// https:// client URL of member i (only with tls_files).
    std::string tls_url(std::size_t i, const std::string& host = "127.0.0.1") const {
        return "https://" + host + ":" + std::to_string(members_.at(i).tls_port);
    }
    std::vector<std::string> client_urls() const {
        std::vector<std::string> v;
        for (std::size_t i = 0; i < members_.size(); ++i)
            v.push_back(client_url(i));
        return v;
    }
    /// Index of the member listening on `port`, or -1.
    int member_of_port(int port) const {
        for (std::size_t i = 0; i < members_.size(); ++i)
            if (members_[i].client_port == port) return static_cast<int>(i);
        return -1;
    }

    bool alive(std::size_t i) {
        auto& m = members_.at(i);
        if (m.pid <= 0) return false;
        if (::waitpid(m.pid, nullptr, WNOHANG) == 0) return true;
        forget(m.pid);
        m.pid = -1;
        return false;
    }

    /// /health of member i says true and its process is alive.
    bool healthy(std::size_t i, std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) {
        if (!alive(i)) return false;
        auto body = etcd_detail::http_get(members_[i].client_port, "/health", timeout);
        return body.find("\"health\":\"true\"") != std::string::npos && alive(i);
    }

    /// Polls until every running member is healthy.
    bool wait_ready(std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            bool all = true;
            for (std::size_t i = 0; i < members_.size() && all; ++i)
                all = healthy(i);
            if (all) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return false;
    }

    /// kill -9 member i and reap it.
    void kill_member(std::size_t i) { signal_and_reap(i, SIGKILL); }
    /// Freezes member i (SIGSTOP): its sockets stay open but it answers nothing.
    void stop_member(std::size_t i) {
        if (members_.at(i).pid > 0) ::kill(members_[i].pid, SIGSTOP);
    }
    /// Resumes a frozen member.
    void continue_member(std::size_t i) {
        if (members_.at(i).pid > 0) ::kill(members_[i].pid, SIGCONT);
    }
    /// Starts member i again with its data dir and ports (kills it first if still running).
    void restart_member(std::size_t i) {
        if (members_.at(i).pid > 0) signal_and_reap(i, SIGKILL);
        start(i);
    }

    /// Last lines of each member's log, for failure messages.
    std::string tail_logs(std::size_t max_bytes = 2000) const {
        std::string out;
        for (auto& m : members_) {
            std::FILE* f = std::fopen(m.log_file.c_str(), "rb");
            if (!f) continue;
            std::string s;
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
                s.append(buf, n);
            std::fclose(f);
            if (s.size() > max_bytes) s = s.substr(s.size() - max_bytes);
            out += "--- " + m.name + " ---\n" + s + "\n";
        }
        return out;
    }

private:
    void start(std::size_t i) {
        auto& m = members_[i];
        std::string cluster;
        for (auto& o : members_) {
            if (!cluster.empty()) cluster += ",";
            cluster += o.name + "=http://127.0.0.1:" + std::to_string(o.peer_port);
        }
        std::string c = "http://127.0.0.1:" + std::to_string(m.client_port);
        if (tls_) c += ",https://127.0.0.1:" + std::to_string(m.tls_port);
        std::string p = "http://127.0.0.1:" + std::to_string(m.peer_port);
        std::string metrics = "http://127.0.0.1:" + std::to_string(m.metrics_port);
        std::vector<std::string> args = {"/usr/bin/etcd",
                                         "--name",
                                         m.name,
                                         "--data-dir",
                                         m.data_dir.string(),
                                         "--listen-client-urls",
                                         c,
                                         "--advertise-client-urls",
                                         c,
                                         "--listen-peer-urls",
                                         p,
                                         "--initial-advertise-peer-urls",
                                         p,
                                         "--initial-cluster",
                                         cluster,
                                         "--initial-cluster-state",
                                         "new",
                                         "--initial-cluster-token",
                                         token_,
                                         "--listen-metrics-urls",
                                         metrics,
                                         "--logger=zap",
                                         "--log-outputs=stderr",
                                         "--log-level=warn"};
        if (tls_) {
            args.insert(args.end(), {"--cert-file", tls_->cert_file, "--key-file", tls_->key_file});
            if (!tls_->trusted_ca_file.empty()) args.insert(args.end(), {"--trusted-ca-file", tls_->trusted_ca_file});
            if (tls_->client_cert_auth) args.push_back("--client-cert-auth");
        }
        args.insert(args.end(), extra_args_.begin(), extra_args_.end());
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t parent = ::getpid();
        pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            int fd = ::open(m.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
                ::close(fd);
            }
            int devnull = ::open("/dev/null", O_RDONLY);
            if (devnull >= 0) ::dup2(devnull, 0);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        m.pid = pid;
        auto& l = etcd_detail::leftovers::get();
        std::lock_guard lk(l.mu);
        l.pids.insert(pid);
    }

    void forget(pid_t pid) {
        auto& l = etcd_detail::leftovers::get();
        std::lock_guard lk(l.mu);
        l.pids.erase(pid);
    }

    void signal_and_reap(std::size_t i, int sig) {
        auto& m = members_.at(i);
        if (m.pid <= 0) return;
        ::kill(m.pid, SIGCONT);
        ::kill(m.pid, sig);
        ::waitpid(m.pid, nullptr, 0);
        forget(m.pid);
        m.pid = -1;
    }

    void teardown() {
        for (auto& m : members_)
            if (m.pid > 0) {
                ::kill(m.pid, SIGCONT);
                ::kill(m.pid, SIGTERM);
            }
        auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        for (auto& m : members_) {
            while (m.pid > 0) {
                if (::waitpid(m.pid, nullptr, WNOHANG) != 0) {
                    forget(m.pid);
                    m.pid = -1;
                    break;
                }
                if (std::chrono::steady_clock::now() >= end) {
                    ::kill(m.pid, SIGKILL);
                    ::waitpid(m.pid, nullptr, 0);
                    forget(m.pid);
                    m.pid = -1;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
        std::error_code ec;
        if (!root_.empty()) {
            std::filesystem::remove_all(root_, ec);
            auto& l = etcd_detail::leftovers::get();
            std::lock_guard lk(l.mu);
            l.dirs.erase(root_.string());
        }
    }

    std::optional<tls_files> tls_;
    std::vector<std::string> extra_args_;
    std::string token_;
    std::filesystem::path root_;
    std::vector<member> members_;
};

} // namespace qr_support
