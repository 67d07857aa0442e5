// The monitor process side: loads resource plugins and runs their entry points on behalf of
// the controller. Runs inside `quorumreg_monitor` (or inside an application that re-executes
// itself and calls quorumreg::run_monitor_if_requested first thing in main()).
#pragma once

#include <quorumreg/detail/monitor_protocol.hpp>
#include <quorumreg/detail/monitor_sha256.hpp>
#include <quorumreg/detail/monitor_spawn.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/resource_api.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg::detail {

/// What loading a plugin for one type produced.
struct loaded_plugin {
    std::error_code ec;
    std::string message;
    const quorumreg_resource_functions* functions = nullptr;
};

inline void monitor_log(int level, const char* type_name, const char* message) {
    static std::mutex mu;
    static const char* names[] = {"error", "warning", "info", "debug"};
    std::lock_guard lk(mu);
    std::fprintf(stderr, "[quorumreg_monitor %d] %s %s: %s\n", static_cast<int>(::getpid()),
                 (level >= 0 && level <= 3) ? names[level] : "log", type_name ? type_name : "-",
                 message ? message : "");
}

inline const quorumreg_monitor_services& monitor_services() {
    static const quorumreg_monitor_services s{sizeof(quorumreg_monitor_services), QUORUMREG_RESOURCE_API_VERSION,
                                              &monitor_log};
    return s;
}

/// Opens `path`, checks its SHA-256 against `expected` (empty: no check), dlopen()s it, and
/// makes sure the file loaded is the file that was hashed (same device, inode, size and mtime
/// before and after: a replace during the load is reported as a mismatch, never run silently),
/// then resolves the startup symbol and asks it for `type`.
///
/// Why not dlopen("/proc/self/fd/N") of the hashed descriptor: glibc recognises already-loaded
/// objects by name first, and descriptor numbers are reused, so a second plugin loaded through
/// the same "/proc/self/fd/N" would silently resolve to the first one.
inline loaded_plugin load_plugin(const std::string& path, const std::string& type, const std::string& expected) {
    loaded_plugin out;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        out.ec = (e == ENOENT || e == ENOTDIR) ? make_error_code(errc::plugin_missing)
                                               : make_error_code(errc::plugin_load_failed);
        out.message = "cannot open \"" + path + "\": " + std::generic_category().message(e);
        return out;
    }
    struct stat before {};
    ::fstat(fd, &before);
    std::error_code hec;
    auto actual = sha256_fd(fd, hec);
    ::close(fd);
    if (hec) {
        out.ec = errc::plugin_load_failed;
        out.message = "cannot read \"" + path + "\": " + hec.message();
        return out;
    }
    if (!expected.empty() && actual != expected) {
        out.ec = errc::plugin_hash_mismatch;
        out.message = "\"" + path + "\" has SHA-256 " + actual + ", registered " + expected;
        return out;
    }
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* why = ::dlerror();
        out.ec = errc::plugin_load_failed;
        out.message = "dlopen \"" + path + "\" failed: " + (why ? why : "unknown reason");
        return out;
    }
    struct stat after {};
    if (::stat(path.c_str(), &after) != 0 || after.st_dev != before.st_dev || after.st_ino != before.st_ino ||
        after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
        out.ec = errc::plugin_hash_mismatch;
        out.message = "\"" + path + "\" changed on disk while it was being loaded";
        return out;
    }
    void* sym = ::dlsym(handle, QUORUMREG_RESOURCE_STARTUP_SYMBOL);
    if (!sym) {
        out.ec = errc::plugin_load_failed;
        out.message = "\"" + path + "\" does not export " QUORUMREG_RESOURCE_STARTUP_SYMBOL;
        return out;
    }
    quorumreg_resource_startup_fn startup = nullptr;
    static_assert(sizeof(startup) == sizeof(sym));
    std::memcpy(&startup, &sym, sizeof sym); // object-to-function pointer, as POSIX dlsym requires
    const quorumreg_resource_functions* f = startup(QUORUMREG_RESOURCE_API_VERSION, type.c_str(), &monitor_services());
    if (!f) {
        out.ec = errc::plugin_type_mismatch;
        out.message = "\"" + path + "\" does not implement resource type \"" + type + "\" (startup returned NULL)";
        return out;
    }
    if (f->api_version < 1 || f->api_version > QUORUMREG_RESOURCE_API_VERSION ||
        f->struct_size < offsetof(quorumreg_resource_functions, control) || !f->open || !f->close || !f->online ||
        !f->offline || !f->terminate || !f->looks_alive || !f->is_alive) {
        out.ec = errc::plugin_type_mismatch;
        out.message = "\"" + path + "\" returned an incomplete or incompatible entry-point table for \"" + type +
                      "\" (api_version " + std::to_string(f->api_version) + ")";
        return out;
    }
    out.functions = f;
    return out;
}

/// A thread that runs jobs one at a time, in order (one per hosted resource).
class serial_worker {
public:
    serial_worker() : thread_([this] { run(); }) { thread_.detach(); }
    /// This worker's "executing now" slot in the controller-owned board (null: none left).
    std::atomic<std::uint64_t>* slot = nullptr;
    void post(std::function<void()> job) {
        {
            std::lock_guard lk(mu_);
            jobs_.push_back(std::move(job));
        }
        cv_.notify_one();
    }

private:
    void run() {
        while (true) {
            std::function<void()> job;
            {
                std::unique_lock lk(mu_);
                cv_.wait(lk, [&] { return !jobs_.empty(); });
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }
    // Workers are detached and never joined: the monitor leaves with _exit(), because a
    // thread stuck inside a plugin call cannot be joined.
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::thread thread_;
};

/// Marks a request as executing inside plugin code for the duration of a scope.
class executing_mark {
public:
    executing_mark(std::atomic<std::uint64_t>* slot, std::uint64_t req) : slot_(slot) {
        if (slot_) slot_->store(req, std::memory_order_release);
    }
    ~executing_mark() {
        if (slot_) slot_->store(0, std::memory_order_release);
    }
    executing_mark(const executing_mark&) = delete;
    executing_mark& operator=(const executing_mark&) = delete;

private:
    std::atomic<std::uint64_t>* slot_;
};

/// The long-lived monitor: serves requests from the controller until told to shut down or
/// until its parent (the controller) is gone.
class monitor_host {
public:
    monitor_host(std::unique_ptr<monitor_channel> ch, pid_t parent, std::chrono::milliseconds heartbeat)
        : ch_(std::move(ch)), parent_(parent), heartbeat_(heartbeat) {
        loader_.slot = ch_->board_slot(next_slot_++);
    }

    [[noreturn]] void run() {
        using clock = std::chrono::steady_clock;
        auto next_hb = clock::now();
        auto idle_sleep = std::chrono::microseconds(100);
        monitor_msg m;
        while (true) {
            bool active = false;
            while (ch_->try_receive(m)) {
                active = true;
                dispatch(m);
                m = monitor_msg{};
            }
            if (flush()) active = true;
            auto now = clock::now();
            if (now >= next_hb) {
                monitor_msg hb;
                hb.kind = monitor_msg_kind::heartbeat;
                post_reply(hb);
                next_hb = now + heartbeat_;
                flush();
            }
            if (shutting_down_.load() && outbox_empty()) std::_Exit(0);
            if (::getppid() != parent_) std::_Exit(0); // controller gone: nothing to serve
            idle_sleep =
                active ? std::chrono::microseconds(100) : std::min(idle_sleep * 2, std::chrono::microseconds(2000));
            std::this_thread::sleep_for(idle_sleep);
        }
    }

private:
    struct hosted {
        const quorumreg_resource_functions* fns = nullptr;
        quorumreg_resource_t handle = nullptr;
        serial_worker worker;
    };

    void post_reply(const monitor_msg& m) {
        std::lock_guard lk(out_mu_);
        outbox_.push_back(encode_monitor_msg(m));
    }
    bool outbox_empty() {
        std::lock_guard lk(out_mu_);
        return outbox_.empty();
    }
    bool flush() {
        std::lock_guard lk(out_mu_);
        bool any = false;
        while (!outbox_.empty() && ch_->try_send(outbox_.front())) {
            outbox_.pop_front();
            any = true;
        }
        return any;
    }
    void reply(const monitor_msg& req, std::error_code ec, std::string message = {}, bool flag = false) {
        monitor_msg r;
        r.kind = monitor_msg_kind::reply;
        r.req = req.req;
        r.res = req.res;
        r.code = ec ? ec.value() : 0;
        r.flag = flag;
        r.a = std::move(message);
        post_reply(r);
    }
    static std::string fold(const std::string& s) {
        std::string f;
        for (char c : s)
            f.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
        return f;
    }
    const quorumreg_resource_functions* type_functions(const std::string& type) {
        std::lock_guard lk(mu_);
        auto it = types_.find(fold(type));
        return it == types_.end() ? nullptr : it->second;
    }
    hosted* find(std::uint64_t id) {
        std::lock_guard lk(mu_);
        auto it = resources_.find(id);
        return it == resources_.end() ? nullptr : it->second.get();
    }

    void dispatch(const monitor_msg& m) {
        switch (m.kind) {
        case monitor_msg_kind::load_type:
            loader_.post([this, m] {
                loaded_plugin lp;
                {
                    executing_mark mark(loader_.slot, m.req);
                    lp = load_plugin(m.b, m.a, m.c);
                }
                if (!lp.ec) {
                    std::lock_guard lk(mu_);
                    types_[fold(m.a)] = lp.functions;
                }
                reply(m, lp.ec, lp.message);
            });
            return;
        case monitor_msg_kind::open: {
            hosted* h = nullptr;
            {
                std::lock_guard lk(mu_);
                auto& slot = resources_[m.res];
                if (!slot) {
                    slot = std::make_unique<hosted>();
                    slot->worker.slot = ch_->board_slot(next_slot_++);
                }
                h = slot.get();
            }
            h->worker.post([this, h, m] {
                auto* f = type_functions(m.a);
                if (!f) return reply(m, errc::plugin_load_failed, "type \"" + m.a + "\" is not loaded in this monitor");
                if (h->handle) return reply(m, {}); // already open: opening is idempotent
                h->fns = f;
                {
                    executing_mark mark(h->worker.slot, m.req);
                    h->handle = f->open(m.b.c_str(), m.c.c_str());
                }
                if (!h->handle) return reply(m, errc::resource_failed, "open returned NULL");
                reply(m, {});
            });
            return;
        }
        case monitor_msg_kind::shutdown:
            reply(m, {});
            shutting_down_ = true;
            return;
        case monitor_msg_kind::control:
        case monitor_msg_kind::close:
        case monitor_msg_kind::online:
        case monitor_msg_kind::offline:
        case monitor_msg_kind::terminate:
        case monitor_msg_kind::looks_alive:
        case monitor_msg_kind::is_alive: {
            hosted* h = find(m.res);
            if (!h) return reply(m, errc::not_found, "resource is not open in this monitor");
            h->worker.post([this, h, m] { call(*h, m); });
            return;
        }
        default: reply(m, errc::invalid_argument, std::string("unexpected message ") + monitor_msg_name(m.kind));
        }
    }

    void call(hosted& h, const monitor_msg& m) {
        if (!h.handle) return reply(m, errc::not_found, "resource is not open");
        executing_mark mark(h.worker.slot, m.req);
        switch (m.kind) {
        case monitor_msg_kind::close:
            h.fns->close(h.handle);
            h.handle = nullptr;
            return reply(m, {});
        case monitor_msg_kind::online: {
            int rc = h.fns->online(h.handle);
            return rc == 0 ? reply(m, {}) : reply(m, errc::resource_failed, "online returned " + std::to_string(rc));
        }
        case monitor_msg_kind::offline: {
            int rc = h.fns->offline(h.handle);
            return rc == 0 ? reply(m, {}) : reply(m, errc::resource_failed, "offline returned " + std::to_string(rc));
        }
        case monitor_msg_kind::terminate: h.fns->terminate(h.handle); return reply(m, {});
        case monitor_msg_kind::looks_alive: return reply(m, {}, {}, h.fns->looks_alive(h.handle) != 0);
        case monitor_msg_kind::is_alive: return reply(m, {}, {}, h.fns->is_alive(h.handle) != 0);
        case monitor_msg_kind::control: {
            if (h.fns->struct_size < sizeof(quorumreg_resource_functions) || !h.fns->control)
                return reply(m, errc::invalid_argument, "the plugin has no control entry point");
            char out[monitor_max_control];
            std::size_t written = 0;
            int rc = h.fns->control(h.handle, static_cast<std::uint32_t>(m.code), m.b.data(), m.b.size(), out,
                                    sizeof out, &written);
            if (rc == QUORUMREG_STATUS_UNSUPPORTED || rc == QUORUMREG_STATUS_INVALID_ARGUMENT)
                return reply(m, errc::invalid_argument,
                             "control code " + std::to_string(m.code) + " returned " + std::to_string(rc));
            if (rc != 0) return reply(m, errc::resource_failed, "control returned " + std::to_string(rc));
            return reply(m, {}, std::string(out, std::min(written, sizeof out)));
        }
        default: return reply(m, errc::invalid_argument, "unexpected call");
        }
    }

    std::unique_ptr<monitor_channel> ch_;
    pid_t parent_;
    std::chrono::milliseconds heartbeat_;
    std::mutex out_mu_;
    std::deque<std::string> outbox_;
    std::mutex mu_;
    std::map<std::string, const quorumreg_resource_functions*> types_; // folded type name
    std::map<std::uint64_t, std::unique_ptr<hosted>> resources_;
    std::size_t next_slot_ = 0; // only the I/O thread creates workers
    serial_worker loader_;
    std::atomic<bool> shutting_down_{false};
};

/// Closes every inherited descriptor above stderr, so a monitor never holds the application's
/// files, sockets or file locks.
inline void close_inherited_fds() {
#if defined(__GLIBC__) && ((__GLIBC__ > 2) || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    ::close_range(3, ~0U, 0);
#else
    for (int fd = 3; fd < 1024; ++fd)
        ::close(fd);
#endif
}

/// Probe mode: prints the marker and "ok" or "err <code> <message>", and exits.
inline int run_probe(const std::string& library, const std::string& type, const std::string& sha256) {
    auto lp = load_plugin(library, type, sha256);
    if (lp.ec)
        std::printf("\n%serr %d %s\n", probe_marker, lp.ec.value(), lp.message.c_str());
    else
        std::printf("\n%sok\n", probe_marker);
    std::fflush(stdout);
    std::_Exit(0); // skip plugin destructors: the probe only answers whether loading works
}

/// Monitor entry point. Returns std::nullopt when argv does not ask for a monitor.
inline std::optional<int> run_monitor_main(int argc, char** argv) {
    if (argc < 2) return std::nullopt;
    std::string mode = argv[1];
    if (mode == probe_flag) {
        if (argc != 5) {
            std::fprintf(stderr, "usage: %s %s LIBRARY TYPE SHA256\n", argv[0], probe_flag);
            return 2;
        }
        close_inherited_fds();
        return run_probe(argv[2], argv[3], argv[4]);
    }
    if (mode != monitor_flag) return std::nullopt;
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s %s QUEUE_BASE PARENT_PID HEARTBEAT_MS\n", argv[0], monitor_flag);
        return 2;
    }
    auto parent = static_cast<pid_t>(std::atoi(argv[3]));
    ::prctl(PR_SET_PDEATHSIG, SIGKILL); // the controller is our reason to live
    if (::getppid() != parent) return 3;
    close_inherited_fds();
    std::unique_ptr<monitor_channel> ch;
    try {
        ch = monitor_channel::open(argv[2]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quorumreg_monitor: cannot open queues %s: %s\n", argv[2], e.what());
        return 4;
    }
    auto hb = std::chrono::milliseconds(std::max(1, std::atoi(argv[4])));
    monitor_host host(std::move(ch), parent, hb);
    host.run();
}

} // namespace quorumreg::detail
