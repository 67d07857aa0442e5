// The monitor process side: loads resource plugins and runs their entry points on behalf of
// the controller. Runs inside `quorumreg_monitor` (or inside an application that re-executes
// itself and calls quorumreg::run_monitor_if_requested first thing in main()).
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/detail/monitor_protocol.hpp>
#include <quorumreg/detail/monitor_sha256.hpp>
#include <quorumreg/detail/monitor_spawn.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/monitor_entry.hpp>
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
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg::detail {

/// What loading a plugin for one type produced.
struct loaded_plugin {
    std::error_code ec;
    std::string message;
    const quorumreg_resource_functions* functions = nullptr;
    std::string sha256; ///< SHA-256 of the bytes actually mapped (empty: nothing was mapped)
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

/// Test seams of load_plugin: called after the library file is opened (before its bytes are
/// copied) and after the copy is hashed (before dlopen). Tests swap or rewrite the file there to
/// show that only the verified bytes can ever be loaded.
struct load_hooks {
    std::function<void()> after_open;
    std::function<void()> before_dlopen;
};

/// Largest library the monitor copies into memory.
inline constexpr std::size_t max_plugin_bytes = std::size_t(512) << 20;

/// Loads exactly the bytes that were verified: opens `path` once, checks that the opened file
/// lies inside `dirs` (resolved through /proc/self/fd, so a symlink swapped in after a path check
/// does not count), copies it into a memfd, seals the memfd (no write, shrink or grow, no further
/// seals), hashes the memfd's content and compares it with `expected` (which must be a SHA-256:
/// no hash, no load), and only then dlopen()s "/proc/self/fd/N" of that memfd. A library
/// replaced or rewritten at any point cannot change what is loaded; a mismatch is detected
/// before anything is mapped, so no constructor of unverified bytes ever runs.
///
/// The memfd of a loaded object is never closed: glibc recognises loaded objects by name, and a
/// reused descriptor number would make a later "/proc/self/fd/N" resolve to the earlier object.
/// Keeping it open makes every load's path unique, so a re-registered library in the same
/// monitor really runs its new code.
inline loaded_plugin load_plugin(const std::string& path, const std::string& type, const std::string& expected,
                                 const std::vector<std::filesystem::path>& dirs, const load_hooks* hooks = nullptr) {
    loaded_plugin out;
    if (!is_sha256_hex(expected)) {
        out.ec = errc::plugin_hash_mismatch;
        out.message = "no valid SHA-256 given for \"" + path + "\": refusing to load unverified code";
        return out;
    }
    if (path.empty() || path.front() != '/') {
        out.ec = errc::plugin_not_allowed;
        out.message = "\"" + path + "\" is not an absolute path";
        return out;
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        out.ec = (e == ENOENT || e == ENOTDIR) ? make_error_code(errc::plugin_missing)
                                               : make_error_code(errc::plugin_load_failed);
        out.message = "cannot open \"" + path + "\": " + std::generic_category().message(e);
        return out;
    }
    struct fd_guard {
        int fd;
        ~fd_guard() {
            if (fd >= 0) ::close(fd);
        }
    } src{fd};
    {
        std::error_code lec;
        auto real = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), lec);
        if (lec || !path_inside_dirs(real, dirs)) {
            out.ec = errc::plugin_not_allowed;
            out.message = "\"" + path + "\" (" + (lec ? lec.message() : real.string()) +
                          ") is outside the monitor's plugin directories";
            return out;
        }
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        out.ec = errc::plugin_load_failed;
        out.message = "\"" + path + "\" is not a regular file";
        return out;
    }
    if (hooks && hooks->after_open) hooks->after_open();
    // Named after the file it copies ("/memfd:qr:<path>" in /proc/self/maps and readlink), so
    // diagnostics — and a plugin asking where it came from — still see the library's path.
    std::string mem_name = "qr:" + path.substr(0, 240);
    fd_guard mem{::memfd_create(mem_name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)};
    if (mem.fd < 0) {
        out.ec = errc::plugin_load_failed;
        out.message = std::string("memfd_create failed: ") + std::generic_category().message(errno);
        return out;
    }
    std::size_t total = 0;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            out.ec = errc::plugin_load_failed;
            out.message = "cannot read \"" + path + "\": " + std::generic_category().message(errno);
            return out;
        }
        if (n == 0) break;
        total += static_cast<std::size_t>(n);
        if (total > max_plugin_bytes) {
            out.ec = errc::plugin_load_failed;
            out.message = "\"" + path + "\" is larger than " + std::to_string(max_plugin_bytes) + " bytes";
            return out;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = ::write(mem.fd, buf + done, static_cast<std::size_t>(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                out.ec = errc::plugin_load_failed;
                out.message = std::string("cannot copy the library: ") + std::generic_category().message(errno);
                return out;
            }
            done += w;
        }
    }
    if (::fcntl(mem.fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
        ::lseek(mem.fd, 0, SEEK_SET) != 0) {
        out.ec = errc::plugin_load_failed;
        out.message = std::string("cannot seal the library copy: ") + std::generic_category().message(errno);
        return out;
    }
    std::error_code hec;
    auto actual = sha256_fd(mem.fd, hec);
    if (hec) {
        out.ec = errc::plugin_load_failed;
        out.message = "cannot hash the copy of \"" + path + "\": " + hec.message();
        return out;
    }
    if (actual != expected) {
        out.ec = errc::plugin_hash_mismatch;
        out.message = "\"" + path + "\" has SHA-256 " + actual + ", registered " + expected;
        return out;
    }
    if (hooks && hooks->before_dlopen) hooks->before_dlopen();
    const std::string mapped = "/proc/self/fd/" + std::to_string(mem.fd);
    void* handle = ::dlopen(mapped.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* why = ::dlerror();
        out.ec = errc::plugin_load_failed;
        out.message = "dlopen \"" + path + "\" failed: " + (why ? why : "unknown reason");
        return out;
    }
    out.sha256 = actual; // what is mapped: the sealed copy's bytes
    // From here the object is mapped under `mapped`: the memfd stays open for good (see above).
    const int memfd = mem.fd;
    mem.fd = -1;
    auto reject = [&](errc e, std::string why) {
        out.ec = e;
        out.message = std::move(why);
        out.sha256.clear();
        ::dlclose(handle);
        // Still loaded (NODELETE, unique symbols)? Then its name must stay unique: keep the fd.
        if (void* still = ::dlopen(mapped.c_str(), RTLD_NOW | RTLD_NOLOAD))
            ::dlclose(still);
        else
            ::close(memfd);
        return out;
    };
    void* sym = ::dlsym(handle, QUORUMREG_RESOURCE_STARTUP_SYMBOL);
    if (!sym)
        return reject(errc::plugin_load_failed, "\"" + path + "\" does not export " QUORUMREG_RESOURCE_STARTUP_SYMBOL);
    quorumreg_resource_startup_fn startup = nullptr;
    static_assert(sizeof(startup) == sizeof(sym));
    std::memcpy(&startup, &sym, sizeof sym); // object-to-function pointer, as POSIX dlsym requires
    const quorumreg_resource_functions* f = startup(QUORUMREG_RESOURCE_API_VERSION, type.c_str(), &monitor_services());
    if (!f) {
        out.ec = errc::plugin_type_mismatch;
        out.message = "\"" + path + "\" does not implement resource type \"" + type + "\" (startup returned NULL)";
        return out; // its code has run; it stays mapped under its unique name
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
    monitor_host(std::unique_ptr<monitor_channel> ch, pid_t parent, std::chrono::milliseconds heartbeat,
                 std::vector<std::filesystem::path> dirs)
        : ch_(std::move(ch)), parent_(parent), heartbeat_(heartbeat), dirs_(std::move(dirs)) {
        loader_.slot = ch_->board_slot(next_slot_++);
        wake_[0] = wake_[1] = -1;
        if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
    }

    [[noreturn]] void run() {
        using clock = std::chrono::steady_clock;
        auto next_hb = clock::now();
        bool broken = false; // the channel descriptor was closed or replaced (by a plugin)
        while (true) {
            if (::getppid() != parent_) std::_Exit(0); // controller gone: nothing to serve
            auto now = clock::now();
            if (!broken && now >= next_hb) {
                monitor_msg hb;
                hb.kind = monitor_msg_kind::heartbeat;
                post_reply(hb);
                next_hb = now + heartbeat_;
            }
            if (!broken && flush() == channel_io::closed) broken = true;
            if (shutting_down_.load() && outbox_empty()) std::_Exit(0);
            if (broken) {
                // Whoever broke the channel, the controller sees EOF and kills this process;
                // until then only the parent check runs.
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            pollfd p[2] = {{ch_->fd(), POLLIN, 0}, {wake_[0], POLLIN, 0}};
            {
                std::lock_guard lk(out_mu_);
                if (!outbox_.empty()) p[0].events |= POLLOUT;
            }
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_hb - clock::now()).count();
            int r = ::poll(p, wake_[0] >= 0 ? 2 : 1, static_cast<int>(std::clamp<long long>(wait, 0, 100)));
            if (r < 0) continue;
            if (p[1].revents & POLLIN) {
                char drain[256];
                while (::read(wake_[0], drain, sizeof drain) > 0) {
                }
            }
            if (p[0].revents & POLLNVAL) {
                broken = true;
                continue;
            }
            if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            while (true) {
                std::string_view payload;
                auto io = ch_->receive(payload);
                if (io == channel_io::again) break;
                if (io == channel_io::closed) {
                    if (::getppid() != parent_) std::_Exit(0);
                    broken = true;
                    break;
                }
                monitor_msg m;
                if (io == channel_io::violation ||
                    decode_monitor_msg(payload, m, monitor_peer::controller) != nullptr) {
                    // Our own controller does not send garbage: version skew or a plugin writing
                    // to our descriptor. Nothing sensible can follow.
                    std::fprintf(stderr, "quorumreg_monitor: malformed request from the controller\n");
                    std::_Exit(7);
                }
                dispatch(m);
                wipe(m);
            }
        }
    }

private:
    struct hosted {
        const quorumreg_resource_functions* fns = nullptr;
        quorumreg_resource_t handle = nullptr;
        serial_worker worker;
    };

    void post_reply(const monitor_msg& m) {
        {
            std::lock_guard lk(out_mu_);
            outbox_.push_back(encode_monitor_msg(m));
        }
        if (wake_[1] >= 0) (void)!::write(wake_[1], "w", 1);
    }
    bool outbox_empty() {
        std::lock_guard lk(out_mu_);
        return outbox_.empty();
    }
    channel_io flush() {
        std::lock_guard lk(out_mu_);
        while (!outbox_.empty()) {
            auto io = ch_->send(outbox_.front());
            if (io == channel_io::again) return io;
            wipe(outbox_.front()); // may hold control output
            outbox_.pop_front();
            if (io == channel_io::closed) return io;
        }
        return channel_io::done;
    }
    void reply(const monitor_msg& req, std::error_code ec, std::string message = {}, bool flag = false,
               std::string output = {}) {
        monitor_msg r;
        r.kind = monitor_msg_kind::reply;
        r.req = req.req;
        r.res = req.res;
        r.code = ec ? ec.value() : 0;
        r.flag = flag;
        r.a = std::move(message);
        // The controller rejects non-UTF-8 text: a plugin's bytes in a message are escaped.
        if (!valid_utf8_text(r.a)) {
            std::string esc;
            for (unsigned char c : r.a)
                esc += (c >= 0x20 && c < 0x7F) ? std::string(1, static_cast<char>(c)) : "?";
            r.a = std::move(esc);
        }
        r.b = std::move(output);
        post_reply(r);
        wipe(r);
    }
    static std::string fold(const std::string& s) { return ascii_folded(s); }
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
                    lp = load_plugin(m.b, m.a, m.c, dirs_);
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
            h->worker.post([this, h, m = monitor_msg(m)]() mutable {
                struct wiper {
                    monitor_msg& m;
                    ~wiper() { wipe(m); } // the parameters
                } w{m};
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
            h->worker.post([this, h, m = monitor_msg(m)]() mutable {
                call(*h, m);
                wipe(m); // control input
            });
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
            struct zero_out {
                char* p;
                ~zero_out() {
                    volatile char* v = p;
                    for (std::size_t i = 0; i < monitor_max_control; ++i)
                        v[i] = 0;
                }
            } z{out};
            int rc = h.fns->control(h.handle, static_cast<std::uint32_t>(m.code), m.b.data(), m.b.size(), out,
                                    sizeof out, &written);
            if (rc == QUORUMREG_STATUS_UNSUPPORTED || rc == QUORUMREG_STATUS_INVALID_ARGUMENT)
                return reply(m, errc::invalid_argument,
                             "control code " + std::to_string(m.code) + " returned " + std::to_string(rc));
            if (rc != 0) return reply(m, errc::resource_failed, "control returned " + std::to_string(rc));
            return reply(m, {}, {}, false, std::string(out, std::min(written, sizeof out)));
        }
        default: return reply(m, errc::invalid_argument, "unexpected call");
        }
    }

    std::unique_ptr<monitor_channel> ch_;
    pid_t parent_;
    std::chrono::milliseconds heartbeat_;
    std::vector<std::filesystem::path> dirs_; ///< re-checked on every load (the controller's are not trusted)
    int wake_[2];                             ///< workers wake the I/O loop when they post a reply
    std::mutex out_mu_;
    std::deque<std::string> outbox_;
    std::mutex mu_;
    std::map<std::string, const quorumreg_resource_functions*> types_; // folded type name
    std::map<std::uint64_t, std::unique_ptr<hosted>> resources_;
    std::size_t next_slot_ = 0; // only the I/O thread creates workers
    serial_worker loader_;
    std::atomic<bool> shutting_down_{false};
};

/// Closes every inherited descriptor from `first` up, so a monitor never holds the application's
/// files, sockets or file locks (only its channel and board, fds 3 and 4, are kept).
inline void close_inherited_fds(int first) {
#if defined(__GLIBC__) && ((__GLIBC__ > 2) || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    ::close_range(static_cast<unsigned>(first), ~0U, 0);
#else
    for (int fd = first; fd < 1024; ++fd)
        ::close(fd);
#endif
}

/// The spelling before monitor_entry_options became public.
using monitor_entry_options = quorumreg::monitor_entry_options;

/// Exit codes of the monitor entry point.
inline constexpr int monitor_exit_usage = 2;      ///< wrong arguments
inline constexpr int monitor_exit_parent = 3;     ///< not started by the named parent
inline constexpr int monitor_exit_channel = 4;    ///< fds 3/4 are not a controller channel
inline constexpr int monitor_exit_privileged = 5; ///< refused: privileges differ from the caller's
inline constexpr int monitor_exit_unverified = 6; ///< refused (probe): no valid hash / outside dirs

/// Whether the entry point must refuse to run: real and effective ids differ, or the kernel
/// marked the exec secure (AT_SECURE: setuid, setgid, file capabilities, LSM transitions).
inline bool monitor_must_refuse(uid_t ruid, uid_t euid, gid_t rgid, gid_t egid, unsigned long at_secure,
                                const monitor_entry_options& o) noexcept {
    if (o.allow_privileged) return false;
    return ruid != euid || rgid != egid || at_secure != 0;
}

/// Probe mode: prints the marker and "ok" or "err <code> <message>", and exits.
inline int run_probe(const std::string& library, const std::string& type, const std::string& sha256,
                     const std::vector<std::filesystem::path>& dirs) {
    auto lp = load_plugin(library, type, sha256, dirs);
    if (lp.ec)
        std::printf("\n%serr %d %s\n", probe_marker, lp.ec.value(), lp.message.c_str());
    else
        std::printf("\n%sok\n", probe_marker);
    std::fflush(stdout);
    std::_Exit(0); // skip plugin destructors: the probe only answers whether loading works
}

/// Monitor entry point. Returns std::nullopt when argv does not ask for a monitor.
///   probe:   PROG --quorumreg-probe LIBRARY TYPE SHA256 [PLUGIN_DIR...]
///   monitor: PROG --quorumreg-monitor PARENT_PID HEARTBEAT_MS [PLUGIN_DIR...]   (fds 3 and 4:
///            the channel and board the controller created)
/// Every mode re-checks what it is told: the hash must be a SHA-256 and the library must lie in
/// one of the directories (none given: nothing loads).
inline std::optional<int> run_monitor_main(int argc, char** argv, const monitor_entry_options& opts = {}) {
    if (argc < 2) return std::nullopt;
    std::string mode = argv[1];
    if (mode != probe_flag && mode != monitor_flag) return std::nullopt;
    if (monitor_must_refuse(::getuid(), ::geteuid(), ::getgid(), ::getegid(), ::getauxval(AT_SECURE), opts)) {
        std::fprintf(stderr, "quorumreg_monitor: refusing to run with privileges that differ from the caller's "
                             "(setuid/setgid/capabilities); the embedding program must opt in "
                             "(monitor_entry_options::allow_privileged)\n");
        return monitor_exit_privileged;
    }
    // A stderr (or a pipe a plugin writes to) whose reader is gone must cost an EPIPE, not the
    // monitor and a plugin's blame. Plugin children inherit the ignored SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    if (mode == probe_flag) {
        // Its own process group (the registry kills the group: children a plugin forks go too),
        // and it dies with the thread that waits for it.
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (argc < 5) {
            std::fprintf(stderr, "usage: %s %s LIBRARY TYPE SHA256 [PLUGIN_DIR...]\n", argv[0], probe_flag);
            return monitor_exit_usage;
        }
        close_inherited_fds(3);
        std::vector<std::filesystem::path> dirs(argv + 5, argv + argc);
        std::string library = argv[2], sha = argv[4];
        if (!is_sha256_hex(sha)) {
            std::fprintf(stderr, "quorumreg_monitor: refusing to probe \"%s\": no valid SHA-256 given\n", argv[2]);
            std::printf("\n%serr %d no valid SHA-256 given: refusing to load unverified code\n", probe_marker,
                        static_cast<int>(errc::plugin_hash_mismatch));
            std::fflush(stdout);
            return monitor_exit_unverified;
        }
        std::error_code ec;
        auto real = std::filesystem::weakly_canonical(library, ec);
        if (ec || !path_inside_dirs(real, dirs)) {
            std::fprintf(stderr, "quorumreg_monitor: refusing to probe \"%s\": outside the plugin directories\n",
                         argv[2]);
            std::printf("\n%serr %d \"%s\" is outside the plugin directories\n", probe_marker,
                        static_cast<int>(errc::plugin_not_allowed), argv[2]);
            std::fflush(stdout);
            return monitor_exit_unverified;
        }
        return run_probe(library, argv[3], sha, dirs); // load_plugin re-checks both on the opened file
    }
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s %s PARENT_PID HEARTBEAT_MS [PLUGIN_DIR...]\n", argv[0], monitor_flag);
        return monitor_exit_usage;
    }
    auto parent = static_cast<pid_t>(std::atoi(argv[2]));
    ::prctl(PR_SET_PDEATHSIG, SIGKILL); // the controller is our reason to live
    if (::getppid() != parent) return monitor_exit_parent;
    close_inherited_fds(5);
    auto ch = monitor_channel::adopt(monitor_channel_fd, monitor_board_fd);
    if (!ch) {
        std::fprintf(stderr, "quorumreg_monitor: fds 3 and 4 are not a controller channel and board\n");
        return monitor_exit_channel;
    }
    auto hb = std::chrono::milliseconds(std::max(1, std::atoi(argv[3])));
    std::vector<std::filesystem::path> dirs(argv + 4, argv + argc);
    monitor_host host(std::move(ch), parent, hb, std::move(dirs));
    host.run();
}

} // namespace quorumreg::detail
