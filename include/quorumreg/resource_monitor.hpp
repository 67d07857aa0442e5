// quorumreg — resource monitors: plugins hosted in separate, crash-recoverable processes.
//
// A monitor_controller owns resources (a name, a registered type, a parameter string) and the
// monitor processes that host them. Each monitor is a child process (`quorumreg_monitor`, or the
// application re-executing itself, see run_monitor_if_requested) that dlopen()s plugin libraries
// and runs their entry points; the controller talks to it over a socketpair with framed,
// bounds-checked messages (a monitor that sends anything malformed is killed and blamed with
// monitor_protocol_violation) and watches it with waitpid() and heartbeats.
//
// When a monitor dies (crash, kill -9) or a call into it exceeds the type's deadlock timeout
// (the controller then kills it), every resource it hosted is re-hosted: the controller starts a
// new monitor, re-resolves each resource's type FROM THE STORE (resource_type_registry::lookup;
// never from monitor memory, which is gone), has the monitor reload the library after checking
// its SHA-256, reopens the resource and brings it back to its target state, under the restart
// policy. A plugin that took its monitor down twice within the restart period is moved to a
// monitor of its own. A library that is missing, unloadable or changed is reported with that
// reason (plugin_missing, plugin_load_failed, plugin_hash_mismatch); a resource's type name is
// never lost (Q242398).
//
// @code
// quorumreg::resource_type_registry types(store, type_options);
// quorumreg::monitor_controller ctl(types);
// ctl.add_resource({"cache1", "Contoso.Cache", "/etc/contoso/cache1.conf"});
// ctl.online("cache1");                                   // asynchronous, like ClusterResourceOnline
// ctl.wait_for("cache1", quorumreg::resource_state::online, std::chrono::seconds(30));
// auto s = ctl.status("cache1");                          // state, type, library, monitor pid, errors
// @endcode
#pragma once

#include <quorumreg/detail/monitor_host.hpp>
#include <quorumreg/detail/monitor_protocol.hpp>
#include <quorumreg/detail/monitor_spawn.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/lifecycle.hpp>
#include <quorumreg/monitor_entry.hpp>
#include <quorumreg/resource_types.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace quorumreg {

/// Runs the monitor (or registration probe) if argv asks for one, and returns its exit code;
/// std::nullopt otherwise. `quorumreg_monitor` is just this call. An application that prefers to
/// re-execute itself as its own monitor calls it first thing in main() and sets
/// monitor_controller_options::monitor_command = {"/proc/self/exe"}.
/// @code
/// int main(int argc, char** argv) {
///     if (auto rc = quorumreg::run_monitor_if_requested(argc, argv)) return *rc;
///     ... // the application proper
/// }
/// @endcode
/// A monitor refuses to run when its privileges differ from its caller's (setuid/setgid binary,
/// file capabilities: exit code 5) unless the program opts in with `allow_privileged`.
inline std::optional<int> run_monitor_if_requested(int argc, char** argv, const monitor_entry_options& options = {}) {
    return detail::run_monitor_main(argc, argv, options);
}

/// A resource's state: the lifecycle_state every started-and-watched thing of quorumreg has.
using resource_state = lifecycle_state;

/// A resource to host.
struct resource_spec {
    std::string name;         ///< unique (ASCII case-insensitive) within the controller
    std::string type;         ///< a registered resource type name
    std::string parameters;   ///< opaque string handed to the plugin's open() (<= 3000 bytes)
    bool own_monitor = false; ///< host it in a monitor of its own (MSCS SeparateMonitor)
};

/// A resource's observable status.
struct resource_status {
    std::string name;                                ///< the resource
    std::string type;                                ///< the type name; never empty, whatever happened to the library
    std::string library;                             ///< as last resolved from the store
    std::string library_sha256;                      ///< as last resolved from the store
    store_revision type_revision = 0;                ///< store revision of the registration last resolved
    resource_state state = resource_state::offline;  ///< where it is now
    resource_state target = resource_state::offline; ///< online or offline: what the user asked for
    std::error_code error;                           ///< why it is failed or being restored (empty when healthy)
    std::string reason;                              ///< the same in words
    std::error_code last_failure;                    ///< the most recent failure, kept after recovery
    std::string last_failure_reason;                 ///< the same in words
    std::uint64_t monitor = 0;                       ///< id of the hosting monitor (0: none)
    int monitor_pid = 0;                             ///< its process id (0: none)
    bool dedicated_monitor = false;                  ///< hosted in a monitor of its own (requested or isolated)
    unsigned restarts = 0;                           ///< restarts counted within the current restart period
    unsigned recoveries = 0;                         ///< times re-hosted because its monitor died
};

/// A monitor process as seen by the controller.
struct monitor_process_info {
    std::uint64_t id = 0;               ///< the controller's id for it (resource_status::monitor)
    int pid = 0;                        ///< its process id
    std::string role;                   ///< "shared", "type:<folded type>" (isolated plugin) or "resource:<name>"
    std::vector<std::string> resources; ///< the resources it hosts now
};

/// Controller options.
struct monitor_controller_options {
    /// Program that runs monitors; empty: the registry's monitor_command().
    std::vector<std::string> monitor_command;
    /// How often the controller checks waitpid(), heartbeats, call deadlines and polling.
    std::chrono::milliseconds supervision_interval{5};
    /// How often a monitor sends a heartbeat.
    std::chrono::milliseconds heartbeat_interval{20};
    /// A monitor silent this long is considered hung and killed. Death itself is seen through
    /// waitpid() within supervision_interval; heartbeats catch a frozen (e.g. stopped) process.
    std::chrono::milliseconds heartbeat_timeout{2000};
    /// Grace for a new monitor's first heartbeat (process start on a loaded machine).
    std::chrono::milliseconds startup_timeout{15000};
    /// Restart policy of every resource (WSFC RestartThreshold / RestartPeriod defaults), the
    /// same type as a service's.
    restart_policy restart{};
    /// A plugin that takes its monitor down this many times within restart.period gets its own.
    unsigned isolate_after_crashes = 2;
    /// How long the destructor waits for monitors to exit before killing them.
    std::chrono::milliseconds shutdown_grace{2000};
    /// When the store cannot be reached to resolve a type (quorum lost, deadline, I/O), the
    /// resource stays online_pending with that error and is retried this often.
    std::chrono::milliseconds store_retry_interval{500};
    /// A monitor hosting no resource for this long is shut down (a new one starts on demand).
    std::chrono::milliseconds idle_monitor_timeout{10000};
};
/// The old name, kept for one release (option structs are named after their class).
using monitor_options [[deprecated("renamed monitor_controller_options")]] = monitor_controller_options;

/// Owns resources and the monitor processes hosting them. Thread-safe; all work happens on one
/// internal thread, so public calls are short. State-change callbacks run on that thread and may
/// call any member.
class monitor_controller {
public:
    using clock = std::chrono::steady_clock; ///< timeouts and restart windows

    /// @param types the registry the controller resolves types from; must outlive it.
    explicit monitor_controller(resource_type_registry& types, monitor_controller_options options = {});
    /// Stops every monitor (graceful shutdown, then SIGKILL after shutdown_grace). Resources are
    /// not taken offline first; call offline() and wait if they need a graceful stop.
    ~monitor_controller();
    monitor_controller(const monitor_controller&) = delete;
    monitor_controller& operator=(const monitor_controller&) = delete;

    /// Adds an offline resource. invalid_argument (bad name/parameters), already_exists,
    /// or the type lookup's error (not_found if the type is not registered).
    void add_resource(const resource_spec& spec);
    /// Non-throwing form: errors go to `ec`.
    void add_resource(const resource_spec& spec, std::error_code& ec);

    /// Takes the resource down (terminate), closes it and forgets it; asynchronous.
    void remove_resource(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    void remove_resource(std::string_view name, std::error_code& ec);

    /// Sets the target state to online and starts getting there (asynchronous). A failed
    /// resource is retried with a fresh restart budget. not_found for an unknown resource.
    void online(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    void online(std::string_view name, std::error_code& ec);

    /// Sets the target state to offline and starts getting there (asynchronous).
    void offline(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    void offline(std::string_view name, std::error_code& ec);

    /// The resource's current status; not_found if unknown.
    resource_status status(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    resource_status status(std::string_view name, std::error_code& ec);

    /// Every resource's status, by name.
    std::vector<resource_status> statuses();

    /// Waits until `pred(status)` holds for the resource, or `timeout` passes; returns whether it held.
    bool wait_until(std::string_view name, const std::function<bool(const resource_status&)>& pred,
                    std::chrono::milliseconds timeout);
    /// Waits until the resource is in `state`.
    bool wait_for(std::string_view name, resource_state state, std::chrono::milliseconds timeout) {
        return wait_until(
            name, [state](const resource_status& s) { return s.state == state; }, timeout);
    }

    /// Calls the plugin's optional `control` entry point for the resource and returns its output
    /// (at most 1024 bytes; input at most 1024 bytes). Blocks until the plugin answers; runs on the
    /// resource's worker thread in order with its other calls and under the deadlock timeout.
    /// Errors: not_found, not_online (the resource is not open in a monitor), invalid_argument (input
    /// too large, no control entry point, or the plugin rejected the code), resource_failed,
    /// monitor_crashed / monitor_deadlock (the monitor died during the call). Must not be called
    /// from a state-change callback (it would wait for the thread that runs the callback).
    /// @code
    /// auto out = ctl.control("cache1", 7, "flush");
    /// @endcode
    std::string control(std::string_view name, std::uint32_t code, std::string_view input = {});
    /// Non-throwing form: errors go to `ec`.
    std::string control(std::string_view name, std::uint32_t code, std::string_view input, std::error_code& ec);

    /// The running monitor processes.
    std::vector<monitor_process_info> monitors();

    /// Called with every status change (on the controller's thread).
    void on_state_change(std::function<void(const resource_status&)> callback);

private:
    using msg = detail::monitor_msg;
    using kind = detail::monitor_msg_kind;

    struct inbox {
        std::mutex mu;
        std::condition_variable cv;
        std::deque<std::function<void()>> jobs;
    };
    struct monitor_io {
        std::unique_ptr<detail::monitor_channel> ch;
        int wake[2] = {-1, -1};                      ///< the engine wakes the I/O thread when it queues a frame
        std::size_t max_heartbeats_per_second = 600; ///< more is a flood (a protocol violation)
        std::mutex mu;
        std::deque<std::string> outbox;
        std::atomic<bool> stop{false};
        std::atomic<bool> exited{false};
        std::atomic<std::int64_t> last_seen_ns{0};
        std::atomic<bool> heard{false};
        std::thread thread;
        void notify() const noexcept {
            if (wake[1] >= 0) (void)!::write(wake[1], "w", 1);
        }
        ~monitor_io() {
            for (auto& s : outbox)
                detail::wipe(s);
            for (int fd : wake)
                if (fd >= 0) ::close(fd);
        }
    };
    struct pending_call {
        std::string res;       ///< folded resource name; empty for load_type
        std::string type_fold; ///< the plugin this call runs in
        kind what = kind::online;
        clock::time_point deadline;
        std::function<void(std::error_code, std::string)> done; ///< control(): the waiting caller
    };
    struct control_req {
        std::uint32_t code = 0;
        std::string input;
        std::function<void(std::error_code, std::string)> done;
    };
    struct type_slot {
        bool loaded = false;
        resource_type_info info;
        std::vector<std::string> waiters; ///< folded resource names waiting for the load
    };
    struct mon_rec {
        std::uint64_t id = 0;
        pid_t pid = -1;
        std::string role;
        std::shared_ptr<monitor_io> io;
        std::map<std::string, type_slot> types; ///< by folded type name
        std::map<std::uint64_t, pending_call> calls;
        clock::time_point started;
        bool killed = false;
        errc kill_reason = errc::monitor_crashed;
        std::string kill_detail;
        std::set<std::string> deadlocked; ///< folded resource names whose call timed out
        std::string deadlocked_type;      ///< type whose load timed out
        bool reaped = false;
        bool retiring = false; ///< idle, asked to shut down: takes no new resources
        std::optional<clock::time_point> idle_since;
        int wait_status = 0;
        std::optional<clock::time_point> channel_closed; ///< EOF on its channel (process maybe alive)
    };
    struct res_rec {
        resource_spec spec;
        std::string fold;
        std::string type_fold;
        std::uint64_t wire_id = 0; ///< resource id on the wire
        resource_status st;
        resource_type_info type; ///< last resolution from the store
        std::uint64_t mon = 0;   ///< hosting monitor id (0: none)
        std::uint64_t inflight = 0;
        bool opened = false;
        bool waiting_load = false;
        bool need_terminate = false;
        bool removing = false;
        bool erased = false; ///< forgotten; its node waits in graveyard_ until the current job ends
        clock::time_point next_looks, next_is;
        restart_window<clock::time_point> restart_times;
        std::optional<clock::time_point> retry_at; ///< store unreachable: drive again then
        std::deque<control_req> controls;          ///< control() calls waiting for their turn
    };

    template <class F> auto on_engine(F&& f) -> decltype(f()) {
        if (std::this_thread::get_id() == engine_id_) return f();
        using R = decltype(f());
        auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
        auto fut = task->get_future();
        post([task] { (*task)(); });
        return fut.get();
    }
    /// Runs `f(resource)` on the engine thread; errc::not_found for an unknown name, and,
    /// unless `even_removing`, for one being removed.
    template <class F> std::error_code on_resource(std::string_view name, bool even_removing, F&& f) {
        auto folded = fold(name);
        return on_engine([&]() -> std::error_code {
            res_rec* r = find_res(folded);
            if (!r || (r->removing && !even_removing)) return errc::not_found;
            return f(*r);
        });
    }
    void post(std::function<void()> job) {
        {
            std::lock_guard lk(inbox_->mu);
            inbox_->jobs.push_back(std::move(job));
        }
        inbox_->cv.notify_one();
    }
    static std::string fold(std::string_view s) { return resource_type_registry::fold(s); }
    static std::string& detail_() {
        thread_local std::string d;
        return d;
    }
    template <class F> auto thrown(const char* op, std::string_view name, F&& f) {
        std::error_code ec;
        detail_().clear();
        auto r = f(ec);
        if (ec) {
            std::string what = std::string(op) + " \"" + std::string(name) + "\"";
            if (!detail_().empty()) what += ": " + detail_();
            throw error(ec, what);
        }
        return r;
    }

    void engine_loop();
    void supervise();
    void drive(res_rec& r);
    /// After a state change inside drive(): did a callback remove the resource, start a call for
    /// it, or change its target? Then the caller must not go on with what it was about to do.
    static bool taken_over(const res_rec& r, resource_state target) {
        return r.erased || r.inflight || r.waiting_load || r.st.target != target;
    }
    void publish(res_rec& r);
    void set_state(res_rec& r, resource_state s, std::error_code ec = {}, std::string reason = {});
    void fail_hard(res_rec& r, std::error_code ec, std::string reason);
    void failure(res_rec& r, std::error_code ec, const std::string& reason);
    std::uint64_t send(mon_rec& m, res_rec* r, kind k, const std::string& type_fold, std::chrono::milliseconds timeout,
                       std::string a = {}, std::string b = {}, std::string c = {}, std::int32_t code = 0,
                       std::function<void(std::error_code, std::string)> done = {});
    void pump_controls(res_rec& r);
    static void fail_controls(res_rec& r, std::error_code ec, const std::string& why);
    mon_rec* find_mon(std::uint64_t id) {
        auto it = mons_.find(id);
        return it == mons_.end() ? nullptr : &it->second;
    }
    res_rec* find_res(const std::string& f) {
        auto it = res_.find(f);
        return it == res_.end() ? nullptr : &it->second;
    }
    mon_rec* monitor_for(const std::string& role, const std::string& type_fold, const resource_type_info& t,
                         std::error_code& ec, std::string& why);
    /// Whether `m` has no library of the type yet, or exactly registration `t` (loaded or loading).
    static bool same_registration(const mon_rec& m, const std::string& type_fold, const resource_type_info& t) {
        auto it = m.types.find(type_fold);
        if (it == m.types.end() || (!it->second.loaded && it->second.waiters.empty())) return true;
        auto& i = it->second.info;
        return i.revision == t.revision && i.sha256 == t.sha256 && i.library == t.library;
    }
    void kill_monitor(mon_rec& m, errc reason, std::string detail);
    void on_monitor_death(std::uint64_t id);
    void on_reply(std::uint64_t mon_id, const msg& m);
    void stop_io(mon_rec& m);
    void erase_resource(res_rec& r);
    static void io_loop(std::shared_ptr<monitor_io> io, std::shared_ptr<inbox> box, monitor_controller* self,
                        std::uint64_t mon_id);
    static void io_loop_body(monitor_io& io, inbox& box, monitor_controller* self, std::uint64_t mon_id);
    void on_violation(std::uint64_t mon_id, const std::string& what);
    void on_channel_closed(std::uint64_t mon_id);

    resource_type_registry& types_;
    monitor_controller_options opts_;
    std::vector<std::string> command_;
    std::shared_ptr<inbox> inbox_ = std::make_shared<inbox>();

    // Engine-thread state.
    std::map<std::string, res_rec> res_;
    // Records erased while a caller up the stack (drive, failure, on_monitor_death — a callback
    // may remove a resource from inside any of them) still holds a reference: freed between jobs.
    std::vector<std::map<std::string, res_rec>::node_type> graveyard_;
    std::map<std::uint64_t, mon_rec> mons_;
    std::map<std::string, std::deque<clock::time_point>> type_crashes_;
    std::set<std::string> isolated_types_;
    std::uint64_t next_req_ = 1, next_mon_ = 1, next_wire_ = 1;
    bool shutting_down_ = false;
    bool engine_done_ = false;
    std::optional<clock::time_point> store_down_until_; ///< last lookup found the store unreachable
    std::error_code store_down_ec_;
    clock::time_point shutdown_deadline_;
    std::function<void(const resource_status&)> callback_;

    // Published snapshot (any thread).
    std::mutex snap_mu_;
    std::condition_variable snap_cv_;
    std::map<std::string, resource_status> snapshot_;

    std::thread::id engine_id_;
    std::thread engine_;

    // Store writes the engine does not wait for (verification records): a store stalled by an
    // election must not delay the handling of replies and turn them into false deadlock kills.
    std::mutex bg_mu_;
    std::condition_variable bg_cv_;
    std::deque<std::function<void()>> bg_jobs_;
    bool bg_stop_ = false;
    std::thread bg_;
    void post_store_write(std::function<void()> job) {
        {
            std::lock_guard lk(bg_mu_);
            bg_jobs_.push_back(std::move(job));
        }
        bg_cv_.notify_one();
    }
};

// ==== implementation ===========================================================================

inline monitor_controller::monitor_controller(resource_type_registry& types, monitor_controller_options options)
    : types_(types), opts_(std::move(options)) {
    command_ = opts_.monitor_command.empty() ? types_.monitor_command() : opts_.monitor_command;
    std::promise<void> started;
    auto ready = started.get_future();
    engine_ = std::thread([this, &started] {
        engine_id_ = std::this_thread::get_id();
        started.set_value();
        engine_loop();
    });
    ready.wait();
    bg_ = std::thread([this] {
        std::unique_lock lk(bg_mu_);
        while (true) {
            bg_cv_.wait(lk, [&] { return bg_stop_ || !bg_jobs_.empty(); });
            if (bg_stop_) return; // best-effort records still queued are dropped
            auto job = std::move(bg_jobs_.front());
            bg_jobs_.pop_front();
            lk.unlock();
            job();
            lk.lock();
        }
    });
}

inline monitor_controller::~monitor_controller() {
    post([this] {
        shutting_down_ = true;
        shutdown_deadline_ = clock::now() + opts_.shutdown_grace;
        for (auto& [id, m] : mons_) {
            (void)id;
            send(m, nullptr, kind::shutdown, {}, opts_.shutdown_grace);
        }
    });
    engine_.join();
    {
        std::lock_guard lk(bg_mu_);
        bg_stop_ = true;
    }
    bg_cv_.notify_one();
    bg_.join();
}

inline void monitor_controller::engine_loop() {
    while (!engine_done_) {
        std::deque<std::function<void()>> jobs;
        {
            std::unique_lock lk(inbox_->mu);
            inbox_->cv.wait_for(lk, opts_.supervision_interval, [&] { return !inbox_->jobs.empty(); });
            jobs.swap(inbox_->jobs);
        }
        for (auto& j : jobs) {
            j();
            graveyard_.clear();
        }
        supervise();
        graveyard_.clear();
    }
}

// The I/O thread of one monitor: the only code that touches bytes the monitor wrote. Nothing may
// escape it (an exception here would be std::terminate of the application): whatever goes wrong
// — a malformed frame, a flood, an allocation failure while decoding — becomes a blame of that
// monitor (on_violation), and the thread ends.
// NOLINTNEXTLINE(performance-unnecessary-value-param): the thread's own references keep both alive
inline void monitor_controller::io_loop(std::shared_ptr<monitor_io> io, std::shared_ptr<inbox> box,
                                        monitor_controller* self, std::uint64_t mon_id) {
    auto report = [&](std::string what) noexcept {
        try {
            std::lock_guard lk(box->mu);
            box->jobs.push_back([self, mon_id, w = std::move(what)] { self->on_violation(mon_id, w); });
        } catch (...) {
            // Out of memory even for the report: the monitor's heartbeat timeout still catches it.
        }
        box->cv.notify_one();
    };
    try {
        io_loop_body(*io, *box, self, mon_id);
    } catch (const std::exception& e) {
        report(std::string("the controller's I/O failed: ") + e.what());
    } catch (...) {
        report("the controller's I/O failed");
    }
    io->exited = true;
}

inline void monitor_controller::io_loop_body(monitor_io& io, inbox& box, monitor_controller* self,
                                             std::uint64_t mon_id) {
    auto deliver = [&](std::function<void()> job) {
        {
            std::lock_guard lk(box.mu);
            box.jobs.push_back(std::move(job));
        }
        box.cv.notify_one();
    };
    // Floods are judged by counts, not by how fast this thread reads: heartbeats beyond a generous
    // multiple of the configured rate, or more replies than requests ever sent.
    auto window_start = clock::now();
    std::size_t heartbeats_in_window = 0;
    std::uint64_t sent = 0, replies = 0;
    std::deque<std::string> batch;
    while (!io.stop.load()) {
        {
            std::lock_guard lk(io.mu);
            while (!io.outbox.empty()) {
                batch.push_back(std::move(io.outbox.front()));
                io.outbox.pop_front();
            }
        }
        bool closed = false;
        while (!batch.empty()) {
            auto r = io.ch->send(batch.front());
            if (r == detail::channel_io::again) break;
            detail::wipe(batch.front()); // parameters, control input
            batch.pop_front();
            if (r == detail::channel_io::done) ++sent;
            if (r == detail::channel_io::closed) {
                closed = true;
                break;
            }
        }
        pollfd p[2] = {{io.ch->fd(), static_cast<short>(POLLIN | (batch.empty() ? 0 : POLLOUT)), 0},
                       {io.wake[0], POLLIN, 0}};
        if (!closed && ::poll(p, 2, 50) < 0) continue;
        if (p[1].revents & POLLIN) {
            char drain[256];
            while (::read(io.wake[0], drain, sizeof drain) > 0) {
            }
        }
        if (!closed && !(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        while (!closed) {
            std::string_view payload;
            auto r = io.ch->receive(payload);
            if (r == detail::channel_io::again) break;
            if (r == detail::channel_io::closed) {
                closed = true;
                break;
            }
            if (r == detail::channel_io::violation) {
                deliver([self, mon_id, w = std::string(io.ch->what())] { self->on_violation(mon_id, w); });
                return;
            }
            msg m;
            if (const char* bad = detail::decode_monitor_msg(payload, m, detail::monitor_peer::monitor)) {
                deliver([self, mon_id, w = std::string(bad)] { self->on_violation(mon_id, w); });
                return;
            }
            auto now = clock::now();
            if (now - window_start >= std::chrono::seconds(1)) {
                window_start = now;
                heartbeats_in_window = 0;
            }
            if (m.kind == kind::heartbeat ? ++heartbeats_in_window > io.max_heartbeats_per_second : ++replies > sent) {
                deliver([self, mon_id, hb = m.kind == kind::heartbeat] {
                    self->on_violation(mon_id, hb ? "flood: heartbeats far above the configured rate"
                                                  : "flood: more replies than requests");
                });
                return;
            }
            io.last_seen_ns = now.time_since_epoch().count();
            io.heard = true;
            if (m.kind == kind::heartbeat) continue;
            deliver([self, mon_id, m = std::move(m)]() mutable {
                self->on_reply(mon_id, m);
                detail::wipe(m); // control output
            });
        }
        if (closed) {
            deliver([self, mon_id] { self->on_channel_closed(mon_id); });
            return;
        }
    }
}

// A monitor broke the protocol: nothing it sends can be trusted any more. Kill it; its death is
// then handled like a crash (blame from the board, else the calls in flight) with this cause.
inline void monitor_controller::on_violation(std::uint64_t mon_id, const std::string& what) {
    mon_rec* m = find_mon(mon_id);
    if (!m || m->killed || m->reaped) return;
    kill_monitor(*m, errc::monitor_protocol_violation,
                 "monitor pid " + std::to_string(m->pid) + " violated the monitor protocol (" + what + "); killed");
}

// EOF on the channel: normally the monitor is exiting (waitpid reports it within a few ms). If it
// is still alive after a grace period it closed or replaced its descriptor: a violation
// (supervise() checks).
inline void monitor_controller::on_channel_closed(std::uint64_t mon_id) {
    if (mon_rec* m = find_mon(mon_id); m && !m->channel_closed) m->channel_closed = clock::now();
}

inline void monitor_controller::publish(res_rec& r) {
    if (r.erased) return;
    resource_status copy = r.st;
    {
        std::lock_guard lk(snap_mu_);
        snapshot_[r.fold] = copy;
    }
    snap_cv_.notify_all();
    if (callback_) callback_(copy);
}

inline void monitor_controller::set_state(res_rec& r, resource_state s, std::error_code ec, std::string reason) {
    r.st.state = s;
    r.st.error = ec;
    r.st.reason = std::move(reason);
    if (ec) {
        r.st.last_failure = ec;
        r.st.last_failure_reason = r.st.reason;
    }
    publish(r);
}

// A failure no restart can fix by itself (type unregistered, library missing/changed/unloadable):
// the resource is failed with the reason until someone calls online() again.
inline void monitor_controller::fail_hard(res_rec& r, std::error_code ec, std::string reason) {
    fail_controls(r, ec, reason);
    if (auto* m = find_mon(r.mon); m && r.opened && !r.inflight)
        send(*m, &r, kind::terminate, r.type_fold, r.type.deadlock_timeout);
    set_state(r, resource_state::failed, ec, std::move(reason));
}

// A failure of the resource itself (a call failed, IsAlive said no, its call crashed or hung the
// monitor): restart under the policy (threshold within period), else failed.
inline void monitor_controller::failure(res_rec& r, std::error_code ec, const std::string& reason) {
    auto now = clock::now();
    if (!r.restart_times.try_restart(now, opts_.restart)) {
        r.st.restarts = static_cast<unsigned>(r.restart_times.size());
        fail_hard(r, ec,
                  reason + "; restart threshold reached (" + std::to_string(opts_.restart.threshold) + " within " +
                      std::to_string(opts_.restart.period.count()) + " ms)");
        return;
    }
    r.st.restarts = static_cast<unsigned>(r.restart_times.size());
    r.need_terminate = r.mon != 0 && r.opened;
    set_state(r, resource_state::online_pending, ec, reason + "; restarting");
    drive(r);
}

inline std::uint64_t monitor_controller::send(mon_rec& m, res_rec* r, kind k, const std::string& type_fold,
                                              std::chrono::milliseconds timeout, std::string a, std::string b,
                                              std::string c, std::int32_t code,
                                              std::function<void(std::error_code, std::string)> done) {
    msg out;
    out.kind = k;
    out.code = code;
    out.req = next_req_++;
    out.res = r ? r->wire_id : 0;
    out.a = std::move(a);
    out.b = std::move(b);
    out.c = std::move(c);
    if (k != kind::shutdown) {
        pending_call pc;
        pc.res = r ? r->fold : std::string();
        pc.type_fold = type_fold;
        pc.what = k;
        pc.deadline = clock::now() + timeout;
        pc.done = std::move(done);
        m.calls[out.req] = std::move(pc);
        if (r) r->inflight = out.req;
    }
    {
        std::lock_guard lk(m.io->mu);
        m.io->outbox.push_back(detail::encode_monitor_msg(out));
    }
    m.io->notify();
    detail::wipe(out); // parameters and control input do not linger in freed memory
    return out.req;
}

inline monitor_controller::mon_rec* monitor_controller::monitor_for(const std::string& role,
                                                                    const std::string& type_fold,
                                                                    const resource_type_info& t, std::error_code& ec,
                                                                    std::string& why) {
    for (auto& [id, m] : mons_) {
        (void)id;
        if (m.role == role && !m.killed && !m.reaped && !m.retiring && same_registration(m, type_fold, t)) return &m;
    }
    auto io = std::make_shared<monitor_io>();
    std::error_code cec;
    io->ch = detail::monitor_channel::create(cec);
    if (!io->ch || ::pipe2(io->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        ec = errc::io_error;
        why = "cannot create the monitor's channel: " + (cec ? cec.message() : std::string("pipe failed"));
        return nullptr;
    }
    auto argv = command_;
    argv.insert(argv.end(), {detail::monitor_flag, std::to_string(::getpid()),
                             std::to_string(std::max<std::int64_t>(1, opts_.heartbeat_interval.count()))});
    for (auto& d : types_.plugin_directories()) // the monitor re-checks every load against them
        argv.push_back(d.string());
    // Ten times the configured heartbeat rate (plus slack) is a flood, however fast we read.
    io->max_heartbeats_per_second =
        100 + static_cast<std::size_t>(10000 / std::max<std::int64_t>(1, opts_.heartbeat_interval.count()));
    // Spawned from the controller's own thread, which lives exactly as long as the controller:
    // the monitor's PR_SET_PDEATHSIG follows the spawning *thread*, so it fires when the
    // controller is gone, not when some short-lived caller thread ends.
    std::error_code sec;
    pid_t pid = detail::spawn_process(
        argv, -1, sec,
        {{io->ch->peer_fd(), detail::monitor_channel_fd}, {io->ch->board_fd(), detail::monitor_board_fd}});
    io->ch->close_peer();
    if (pid < 0) {
        ec = errc::monitor_crashed;
        why = "cannot start the monitor program \"" + argv[0] + "\": " + sec.message();
        return nullptr;
    }
    auto id = next_mon_++;
    auto& m = mons_[id];
    m.id = id;
    m.pid = pid;
    m.role = role;
    m.io = io;
    m.started = clock::now();
    io->last_seen_ns = m.started.time_since_epoch().count();
    io->thread = std::thread(&monitor_controller::io_loop, io, inbox_, this, id);
    return &m;
}

inline void monitor_controller::kill_monitor(mon_rec& m, errc reason, std::string detail) {
    if (m.killed || m.reaped) return;
    m.killed = true;
    m.kill_reason = reason;
    m.kill_detail = std::move(detail);
    ::kill(-m.pid, SIGKILL); // its process group: children its plugins forked die with it
    ::kill(m.pid, SIGKILL);
}

inline void monitor_controller::stop_io(mon_rec& m) {
    if (!m.io) return;
    m.io->stop = true;
    m.io->notify();
    // The I/O thread blocks only in poll() (50 ms at most, woken at once here); socket I/O cannot be
    // left locked by a dying peer, so it is always joined.
    if (m.io->thread.joinable()) m.io->thread.join();
    m.io.reset();
}

inline void monitor_controller::erase_resource(res_rec& r) {
    if (r.erased) return;
    r.erased = true;
    fail_controls(r, errc::not_found, "the resource was removed");
    auto f = r.fold;
    {
        std::lock_guard lk(snap_mu_);
        snapshot_.erase(f);
    }
    snap_cv_.notify_all();
    // Not freed yet: the caller (or a caller further up, if a callback removed it) may still
    // hold `r`. The name is free for a new resource at once.
    graveyard_.push_back(res_.extract(f));
}

inline void monitor_controller::drive(res_rec& r) {
    if (shutting_down_ || r.erased || r.inflight || r.waiting_load) return;
    mon_rec* m = find_mon(r.mon);
    if (m && (m->killed || m->reaped)) return; // its death is being handled; drive() runs again then
    if (!m) {
        r.mon = 0;
        r.opened = false;
    }
    auto tmo = r.type.deadlock_timeout;
    if (r.st.target == resource_state::offline) {
        if (m && r.opened) {
            if (r.need_terminate) {
                r.need_terminate = false;
                send(*m, &r, kind::terminate, r.type_fold, tmo);
                return;
            }
            if (r.st.state == resource_state::online || r.st.state == resource_state::online_pending) {
                set_state(r, resource_state::offline_pending);
                if (taken_over(r, resource_state::offline)) return;
                send(*m, &r, kind::offline, r.type_fold, tmo);
                return;
            }
            if (r.removing) {
                send(*m, &r, kind::close, r.type_fold, tmo);
                return;
            }
        }
        if (r.removing) return erase_resource(r);
        if (r.st.state != resource_state::offline && r.st.state != resource_state::failed)
            set_state(r, resource_state::offline);
        return;
    }
    if (r.st.state == resource_state::failed) return; // until online() is called again
    if (!m || !r.opened) {
        // Re-resolve the type from the store before every open: the monitor that knew it may be
        // gone, and the registration may have changed since (what runs is what the registry says).
        std::error_code ec;
        resource_type_info t;
        // While the store is known to be unreachable, do not block this thread on it once per
        // resource: one lookup per retry interval tells whether it is back.
        if (store_down_until_ && clock::now() < *store_down_until_)
            ec = store_down_ec_;
        else
            t = types_.lookup(r.spec.type, ec);
        if (ec == errc::quorum_unavailable || ec == errc::deadline_exceeded || ec == errc::unknown_outcome ||
            ec == errc::backend_error || ec == errc::io_error || ec == errc::lock_failed) {
            // The store is unreachable, not the type unknown: keep trying; the type name stays.
            if (!store_down_until_ || clock::now() >= *store_down_until_) {
                store_down_until_ = clock::now() + opts_.store_retry_interval;
                store_down_ec_ = ec;
            }
            r.retry_at = *store_down_until_;
            set_state(r, resource_state::online_pending, ec,
                      "resource type \"" + r.spec.type + "\" cannot be read from the store now (" + ec.message() +
                          "); retrying");
            return;
        }
        store_down_until_.reset();
        if (ec) {
            return fail_hard(
                r, ec, "resource type \"" + r.spec.type + "\" cannot be resolved from the store: " + ec.message());
        }
        r.type = t;
        r.st.library = t.library;
        r.st.library_sha256 = t.sha256;
        r.st.type_revision = t.revision;
        if (auto e = types_.check_allowed(t.library)) {
            return fail_hard(r, e, "\"" + t.library + "\" is outside this node's plugin directories");
        }
        std::string role = "shared";
        if (r.spec.own_monitor || (t.flags & separate_monitor))
            role = "resource:" + r.fold;
        else if (isolated_types_.count(r.type_fold))
            role = "type:" + r.type_fold;
        tmo = t.deadlock_timeout;
        // A monitor that has another registration of this type loaded (or loading) runs other
        // code: the resource is not opened there.
        if (m && (m->role != role || !same_registration(*m, r.type_fold, t))) m = nullptr;
        if (!m) {
            std::string why;
            m = monitor_for(role, r.type_fold, t, ec, why);
            if (!m) return fail_hard(r, ec, why);
            r.mon = m->id;
            r.opened = false;
            r.st.monitor = m->id;
            r.st.monitor_pid = m->pid;
            r.st.dedicated_monitor = role != "shared";
            publish(r);
            if (taken_over(r, resource_state::online)) return drive(r);
        }
    }
    auto& slot = m->types[r.type_fold];
    if (!slot.loaded) {
        if (slot.waiters.empty()) {
            slot.info = r.type;
            send(*m, nullptr, kind::load_type, r.type_fold, tmo, r.type.name, r.type.library, r.type.sha256);
        }
        slot.waiters.push_back(r.fold);
        r.waiting_load = true;
        if (r.st.state != resource_state::online_pending)
            set_state(r, resource_state::online_pending, r.st.error, r.st.reason);
        return;
    }
    if (!r.opened) {
        if (r.st.state != resource_state::online_pending) {
            set_state(r, resource_state::online_pending, r.st.error, r.st.reason);
            if (taken_over(r, resource_state::online)) return drive(r);
        }
        send(*m, &r, kind::open, r.type_fold, tmo, r.type.name, r.spec.name, r.spec.parameters);
        return;
    }
    if (r.need_terminate) {
        r.need_terminate = false;
        send(*m, &r, kind::terminate, r.type_fold, tmo);
        return;
    }
    if (r.st.state != resource_state::online) {
        if (r.st.state != resource_state::online_pending) {
            set_state(r, resource_state::online_pending, r.st.error, r.st.reason);
            if (taken_over(r, resource_state::online)) return drive(r);
        }
        send(*m, &r, kind::online, r.type_fold, tmo);
    }
}

inline void monitor_controller::on_reply(std::uint64_t mon_id, const msg& rep) {
    mon_rec* m = find_mon(mon_id);
    if (!m || rep.kind != kind::reply) return;
    auto it = m->calls.find(rep.req);
    if (it == m->calls.end()) return;
    pending_call pc = std::move(it->second);
    m->calls.erase(it);
    std::error_code ec = rep.code ? make_error_code(static_cast<errc>(rep.code)) : std::error_code{};
    auto now = clock::now();
    if (pc.done) pc.done(ec, pc.what == kind::control && !ec ? rep.b : rep.a); // b: control output

    if (pc.what == kind::load_type) {
        auto sit = m->types.find(pc.type_fold);
        if (sit == m->types.end()) return;
        auto waiters = std::move(sit->second.waiters);
        sit->second.waiters.clear();
        auto info = sit->second.info;
        // The verification record is best effort (the store may be unreachable) and written off
        // this thread.
        if (!ec) {
            sit->second.loaded = true;
            post_store_write([&types = types_, info] {
                std::error_code sec;
                types.record_verification(info, {}, "loaded by a monitor", info.sha256, sec);
            });
        } else {
            m->types.erase(sit);
            post_store_write([&types = types_, info, ec, why = rep.a] {
                std::error_code sec;
                types.record_verification(info, ec, why, {}, sec);
            });
        }
        for (auto& w : waiters) {
            res_rec* r = find_res(w);
            if (!r || !r->waiting_load || r->mon != mon_id) continue;
            r->waiting_load = false;
            if (ec && !r->removing) // a resource removed meanwhile is forgotten, not failed
                fail_hard(*r, ec, "library of type \"" + r->spec.type + "\": " + rep.a);
            else
                drive(*r);
        }
        return;
    }

    res_rec* r = find_res(pc.res);
    if (!r || r->mon != mon_id || r->inflight != rep.req) return;
    r->inflight = 0;
    switch (pc.what) {
    case kind::open:
        if (ec) return failure(*r, ec, "open failed: " + rep.a);
        r->opened = true;
        return drive(*r);
    case kind::online:
        if (ec) return failure(*r, ec, "online failed: " + rep.a);
        if (r->st.target == resource_state::online) {
            r->next_looks = now + r->type.looks_alive_interval;
            r->next_is = now + r->type.is_alive_interval;
            set_state(*r, resource_state::online);
        }
        return drive(*r);
    case kind::offline:
        set_state(*r, resource_state::offline, ec, ec ? "offline failed: " + rep.a : std::string());
        if (ec) r->need_terminate = true;
        return drive(*r);
    case kind::terminate:
        if (r->st.target == resource_state::offline &&
            (r->st.state == resource_state::online || r->st.state == resource_state::online_pending))
            set_state(*r, resource_state::offline);
        return drive(*r);
    case kind::control: return drive(*r);
    case kind::close:
        r->opened = false;
        if (r->removing) return erase_resource(*r);
        return drive(*r);
    case kind::looks_alive:
        if (r->st.state != resource_state::online || r->st.target != resource_state::online) return drive(*r);
        if (!ec && rep.flag) {
            r->next_looks = now + r->type.looks_alive_interval;
            return drive(*r); // the target may have changed while the poll ran
        }
        // LooksAlive said no: confirm with IsAlive right away (WSFC semantics).
        send(*m, r, kind::is_alive, r->type_fold, r->type.deadlock_timeout);
        return;
    case kind::is_alive:
        if (r->st.state != resource_state::online || r->st.target != resource_state::online) return drive(*r);
        if (!ec && rep.flag) {
            r->next_is = now + r->type.is_alive_interval;
            r->next_looks = now + r->type.looks_alive_interval;
            return drive(*r);
        }
        return failure(*r, ec ? ec : make_error_code(errc::resource_failed),
                       "IsAlive reported the resource is not alive" + (rep.a.empty() ? std::string() : ": " + rep.a));
    default: return;
    }
}

inline void monitor_controller::on_monitor_death(std::uint64_t id) {
    mon_rec* m = find_mon(id);
    if (!m) return;
    errc cause = m->killed ? m->kill_reason : errc::monitor_crashed;
    std::string why;
    if (m->killed) {
        why = m->kill_detail;
    } else if (WIFSIGNALED(m->wait_status)) {
        why = "monitor pid " + std::to_string(m->pid) + " died with signal " + std::to_string(WTERMSIG(m->wait_status));
    } else {
        why = "monitor pid " + std::to_string(m->pid) + " exited with status " +
              std::to_string(WIFEXITED(m->wait_status) ? WEXITSTATUS(m->wait_status) : -1);
    }
    // Blame: after a deadlock kill, the calls that timed out; after a crash, every call that was
    // running in it (one of them brought it down).
    std::set<std::string> blamed_res, blamed_types;
    std::map<std::string, kind> blamed_call;
    if (cause == errc::monitor_deadlock) {
        blamed_res = m->deadlocked;
        for (auto& [req, pc] : m->calls) {
            (void)req;
            if (blamed_res.count(pc.res) || (pc.res.empty() && pc.type_fold == m->deadlocked_type)) {
                blamed_types.insert(pc.type_fold);
                blamed_call[pc.res] = pc.what;
            }
        }
    } else {
        // The board says which calls were inside plugin code when the monitor died: blame those.
        // If none was (a plugin's own thread crashed it, or it was killed from outside), fall back
        // to the calls in flight, preferring anything but health polls — a bystander's LooksAlive
        // is often in flight by coincidence.
        std::set<std::uint64_t> executing;
        if (m->io && m->io->ch)
            for (auto req : m->io->ch->executing())
                executing.insert(req);
        bool precise =
            std::any_of(m->calls.begin(), m->calls.end(), [&](auto& c) { return executing.count(c.first) > 0; });
        auto is_poll = [](kind k) { return k == kind::looks_alive || k == kind::is_alive; };
        bool only_polls =
            std::all_of(m->calls.begin(), m->calls.end(), [&](auto& c) { return is_poll(c.second.what); });
        for (auto& [req, pc] : m->calls) {
            if (precise ? executing.count(req) == 0 : (!only_polls && is_poll(pc.what))) continue;
            if (!pc.res.empty()) blamed_res.insert(pc.res);
            blamed_types.insert(pc.type_fold);
            blamed_call[pc.res] = pc.what;
        }
    }
    // A load that crashed or hung takes the resources waiting for it along (else they would
    // retry the same load forever without ever being counted).
    for (auto& [req, pc] : m->calls) {
        (void)req;
        if (!pc.res.empty() || !blamed_types.count(pc.type_fold)) continue;
        if (auto sit = m->types.find(pc.type_fold); sit != m->types.end()) {
            for (auto& w : sit->second.waiters) {
                blamed_res.insert(w);
                blamed_call[w] = kind::load_type;
            }
        }
    }
    auto now = clock::now();
    for (auto& t : blamed_types) {
        auto& q = type_crashes_[t];
        q.push_back(now);
        while (!q.empty() && now - q.front() > opts_.restart.period)
            q.pop_front();
        if (q.size() >= opts_.isolate_after_crashes) isolated_types_.insert(t);
    }
    for (auto& [req, pc] : m->calls) {
        (void)req;
        if (pc.done) pc.done(make_error_code(cause), why);
    }
    std::vector<std::string> affected;
    for (auto& [f, r] : res_)
        if (r.mon == id) affected.push_back(f);
    stop_io(*m);
    mons_.erase(id);
    if (shutting_down_) {
        for (auto& f : affected)
            if (res_rec* r = find_res(f)) fail_controls(*r, errc::closed, "the controller is shutting down");
        return;
    }
    for (auto& f : affected) {
        res_rec* r = find_res(f);
        if (!r || r->mon != id) continue; // removed, or already re-driven, by a callback
        r->mon = 0;
        r->opened = false;
        r->inflight = 0;
        r->waiting_load = false;
        r->need_terminate = false;
        r->st.monitor = 0;
        r->st.monitor_pid = 0;
        ++r->st.recoveries;
        fail_controls(*r, make_error_code(cause), why);
        if (r->removing) {
            erase_resource(*r);
            continue;
        }
        if (blamed_res.count(f)) {
            auto c = blamed_call.find(f);
            failure(*r, cause,
                    why + (c != blamed_call.end() ? std::string(" during ") + detail::monitor_msg_name(c->second)
                                                  : std::string()));
            continue;
        }
        if (r->st.state == resource_state::failed) {
            publish(*r);
            continue;
        }
        if (r->st.target == resource_state::online) {
            set_state(*r, resource_state::online_pending, make_error_code(cause),
                      why + "; re-hosting in a new monitor");
        } else {
            set_state(*r, resource_state::offline);
        }
        drive(*r);
    }
}

inline void monitor_controller::supervise() {
    // Replies that arrived while this thread was busy (a slow store lookup, a callback) count as
    // arrived: handle them before judging any deadline.
    std::deque<std::function<void()>> arrived;
    {
        std::lock_guard lk(inbox_->mu);
        arrived.swap(inbox_->jobs);
    }
    for (auto& j : arrived) {
        j();
        graveyard_.clear();
    }
    auto now = clock::now();
    std::vector<std::uint64_t> dead;
    for (auto& [id, m] : mons_) {
        if (!m.reaped) {
            int status = 0;
            pid_t p = ::waitpid(m.pid, &status, WNOHANG);
            if (p == m.pid || (p < 0 && errno == ECHILD)) {
                m.reaped = true;
                m.wait_status = status;
                // What its plugins forked must not outlive it. The group id cannot have been reused:
                // Linux keeps a pid that is the id of a live process group.
                ::kill(-m.pid, SIGKILL);
            }
        }
        if (m.reaped) {
            dead.push_back(id);
            continue;
        }
        if (m.killed) continue;
        if (shutting_down_) {
            if (now > shutdown_deadline_) kill_monitor(m, errc::monitor_crashed, "shutdown grace expired");
            continue;
        }
        if (m.channel_closed && !m.retiring && now - *m.channel_closed > std::chrono::milliseconds(250)) {
            kill_monitor(m, errc::monitor_protocol_violation,
                         "monitor pid " + std::to_string(m.pid) + " closed its channel but kept running (killed)");
            continue;
        }
        auto seen = clock::time_point(clock::duration(m.io->last_seen_ns.load()));
        auto limit = m.io->heard ? opts_.heartbeat_timeout : std::max(opts_.heartbeat_timeout, opts_.startup_timeout);
        if (now - seen > limit) {
            kill_monitor(m, errc::monitor_crashed,
                         "monitor pid " + std::to_string(m.pid) + " sent no heartbeat for " +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - seen).count()) +
                             " ms (killed)");
            continue;
        }
        for (auto& [req, pc] : m.calls) {
            (void)req;
            if (now <= pc.deadline) continue;
            std::string who = pc.res.empty() ? "load of type \"" + pc.type_fold + "\"" : "resource \"" + pc.res + "\"";
            if (pc.res.empty()) m.deadlocked_type = pc.type_fold;
            for (auto& [req2, pc2] : m.calls) {
                (void)req2;
                if (!pc2.res.empty() && pc2.deadline < now) m.deadlocked.insert(pc2.res);
            }
            kill_monitor(m, errc::monitor_deadlock,
                         std::string(detail::monitor_msg_name(pc.what)) + " of " + who +
                             " exceeded the deadlock timeout; monitor pid " + std::to_string(m.pid) + " killed");
            break;
        }
    }
    for (auto id : dead)
        on_monitor_death(id);
    if (!shutting_down_) {
        std::set<std::uint64_t> busy;
        for (auto& [f, r] : res_) {
            (void)f;
            if (r.mon) busy.insert(r.mon);
        }
        for (auto& [id, m] : mons_) {
            if (m.killed || m.reaped || m.retiring) continue;
            if (busy.count(id) || !m.calls.empty()) {
                m.idle_since.reset();
                continue;
            }
            if (!m.idle_since) m.idle_since = now;
            if (now - *m.idle_since >= opts_.idle_monitor_timeout) {
                m.retiring = true;
                send(m, nullptr, kind::shutdown, {}, opts_.shutdown_grace);
            }
        }
    }
    if (shutting_down_) {
        if (mons_.empty()) {
            for (auto& [f, r] : res_) {
                (void)f;
                fail_controls(r, errc::closed, "the controller is shutting down");
            }
            engine_done_ = true;
        }
        return;
    }
    std::vector<std::string> retry;
    for (auto& [f, r] : res_)
        if (r.retry_at && now >= *r.retry_at) retry.push_back(f);
    for (auto& f : retry)
        if (res_rec* r = find_res(f)) {
            r->retry_at.reset();
            drive(*r);
        }
    // Waiting control() calls, then health polling.
    for (auto& [f, r] : res_) {
        (void)f;
        pump_controls(r);
        if (r.st.state != resource_state::online || r.inflight || r.st.target != resource_state::online) continue;
        mon_rec* m = find_mon(r.mon);
        if (!m || m->killed || m->reaped) continue;
        if (now >= r.next_is)
            send(*m, &r, kind::is_alive, r.type_fold, r.type.deadlock_timeout);
        else if (now >= r.next_looks)
            send(*m, &r, kind::looks_alive, r.type_fold, r.type.deadlock_timeout);
    }
}

// ---- public API ---------------------------------------------------------------------------------

inline void monitor_controller::add_resource(const resource_spec& spec, std::error_code& ec) {
    ec.clear();
    if (resource_type_registry::validate_name(spec.name)) {
        ec = errc::invalid_argument;
        detail_() = "a resource name is 1..255 bytes without control characters, '/' or '\\'";
        return;
    }
    if (spec.parameters.size() > detail::monitor_max_parameters) {
        ec = errc::invalid_argument;
        detail_() = "parameters longer than " + std::to_string(detail::monitor_max_parameters) + " bytes";
        return;
    }
    std::string why;
    // The lookup runs on the caller's thread: the engine never waits for the store here.
    std::error_code lec;
    auto t = types_.lookup(spec.type, lec);
    ec = on_engine([&]() -> std::error_code {
        auto f = fold(spec.name);
        if (res_.count(f)) {
            why = "a resource with this name exists";
            return errc::already_exists;
        }
        if (lec) {
            why = "resource type \"" + spec.type + "\": " + lec.message();
            return lec;
        }
        auto& r = res_[f];
        r.spec = spec;
        r.fold = f;
        r.type_fold = fold(spec.type);
        r.wire_id = next_wire_++;
        r.type = t;
        r.st.name = spec.name;
        r.st.type = spec.type;
        r.st.library = t.library;
        r.st.library_sha256 = t.sha256;
        r.st.type_revision = t.revision;
        publish(r);
        return {};
    });
    if (ec) detail_() = why;
}

inline void monitor_controller::add_resource(const resource_spec& spec) {
    thrown("add_resource", spec.name, [&](std::error_code& ec) {
        add_resource(spec, ec);
        return 0;
    });
}

inline void monitor_controller::remove_resource(std::string_view name, std::error_code& ec) {
    ec = on_resource(name, true, [&](res_rec& r) -> std::error_code {
        r.removing = true;
        r.st.target = resource_state::offline;
        if (r.opened && !r.inflight) r.need_terminate = true;
        drive(r);
        return {};
    });
}

inline void monitor_controller::remove_resource(std::string_view name) {
    thrown("remove_resource", name, [&](std::error_code& ec) {
        remove_resource(name, ec);
        return 0;
    });
}

inline void monitor_controller::online(std::string_view name, std::error_code& ec) {
    ec = on_resource(name, false, [&](res_rec& r) -> std::error_code {
        r.st.target = resource_state::online;
        if (r.st.state == resource_state::failed) {
            r.restart_times.clear();
            r.st.restarts = 0;
            r.st.state = resource_state::offline;
            r.st.error.clear();
            r.st.reason.clear();
        }
        publish(r);
        drive(r);
        return {};
    });
}

inline void monitor_controller::online(std::string_view name) {
    thrown("online", name, [&](std::error_code& ec) {
        online(name, ec);
        return 0;
    });
}

inline void monitor_controller::offline(std::string_view name, std::error_code& ec) {
    ec = on_resource(name, false, [&](res_rec& r) -> std::error_code {
        r.st.target = resource_state::offline;
        if (r.st.state == resource_state::failed) {
            r.st.state = resource_state::offline;
            r.st.error.clear();
            r.st.reason.clear();
        }
        publish(r);
        drive(r);
        return {};
    });
}

inline void monitor_controller::offline(std::string_view name) {
    thrown("offline", name, [&](std::error_code& ec) {
        offline(name, ec);
        return 0;
    });
}

inline resource_status monitor_controller::status(std::string_view name, std::error_code& ec) {
    ec.clear();
    std::lock_guard lk(snap_mu_);
    auto it = snapshot_.find(fold(name));
    if (it == snapshot_.end()) {
        ec = errc::not_found;
        return {};
    }
    return it->second;
}

inline resource_status monitor_controller::status(std::string_view name) {
    return thrown("status", name, [&](std::error_code& ec) { return status(name, ec); });
}

inline std::vector<resource_status> monitor_controller::statuses() {
    std::lock_guard lk(snap_mu_);
    std::vector<resource_status> out;
    for (auto& [f, s] : snapshot_) {
        (void)f;
        out.push_back(s);
    }
    return out;
}

inline bool monitor_controller::wait_until(std::string_view name,
                                           const std::function<bool(const resource_status&)>& pred,
                                           std::chrono::milliseconds timeout) {
    auto f = fold(name);
    std::unique_lock lk(snap_mu_);
    return snap_cv_.wait_for(lk, timeout, [&] {
        auto it = snapshot_.find(f);
        return it != snapshot_.end() && pred(it->second);
    });
}

inline void monitor_controller::pump_controls(res_rec& r) {
    if (r.inflight || r.waiting_load || r.controls.empty() || !r.opened) return;
    mon_rec* m = find_mon(r.mon);
    if (!m || m->killed || m->reaped) return;
    auto c = std::move(r.controls.front());
    r.controls.pop_front();
    send(*m, &r, kind::control, r.type_fold, r.type.deadlock_timeout, {}, std::move(c.input), {},
         static_cast<std::int32_t>(c.code), std::move(c.done));
}

inline void monitor_controller::fail_controls(res_rec& r, std::error_code ec, const std::string& why) {
    auto pending = std::move(r.controls);
    r.controls.clear();
    for (auto& c : pending)
        c.done(ec, why);
}

inline std::string monitor_controller::control(std::string_view name, std::uint32_t code, std::string_view input,
                                               std::error_code& ec) {
    ec.clear();
    if (input.size() > detail::monitor_max_control) {
        ec = errc::invalid_argument;
        detail_() = "control input longer than " + std::to_string(detail::monitor_max_control) + " bytes";
        return {};
    }
    if (std::this_thread::get_id() == engine_id_) {
        ec = errc::invalid_argument;
        detail_() = "control() cannot be called from a state-change callback";
        return {};
    }
    using result = std::pair<std::error_code, std::string>;
    auto prom = std::make_shared<std::promise<result>>();
    auto fut = prom->get_future();
    post([this, f = fold(name), code, in = std::string(input), prom]() mutable {
        auto done = [prom](std::error_code e, std::string out) { prom->set_value({e, std::move(out)}); };
        res_rec* r = find_res(f);
        if (!r || r->removing) return done(errc::not_found, "no such resource");
        mon_rec* m = find_mon(r->mon);
        if (!m || !r->opened || m->killed || m->reaped)
            return done(errc::not_online, "the resource is not open in a monitor");
        r->controls.push_back({code, std::move(in), done});
        pump_controls(*r);
    });
    auto [e, out] = fut.get();
    if (e) {
        ec = e;
        detail_() = out;
        return {};
    }
    return out;
}

inline std::string monitor_controller::control(std::string_view name, std::uint32_t code, std::string_view input) {
    return thrown("control", name, [&](std::error_code& ec) { return control(name, code, input, ec); });
}

inline std::vector<monitor_process_info> monitor_controller::monitors() {
    return on_engine([&] {
        std::vector<monitor_process_info> out;
        for (auto& [id, m] : mons_) {
            if (m.reaped) continue;
            monitor_process_info mi;
            mi.id = id;
            mi.pid = m.pid;
            mi.role = m.role;
            for (auto& [f, r] : res_)
                if (r.mon == id) mi.resources.push_back(r.spec.name);
            out.push_back(std::move(mi));
        }
        return out;
    });
}

inline void monitor_controller::on_state_change(std::function<void(const resource_status&)> callback) {
    on_engine([&] {
        callback_ = std::move(callback);
        return 0;
    });
}

} // namespace quorumreg
