// quorumreg — service_controller: start and stop services in dependency order.
//
// @code
// quorumreg::service_controller ctl;                     // 4 worker threads, steady clock
// ctl.add_service("cluster", {.start = [] { /* join the cluster */ }, .stop = [] { /* leave */ }});
// ctl.add_service("name_mapping", {.start = [] { /* ... */ }});
// ctl.add_dependency("name_mapping", "cluster");         // Q320331: never before the cluster
// ctl.start("name_mapping");                             // starts cluster first, then name_mapping
// auto sub = ctl.observe([](const quorumreg::service_event& e) { std::cout << e << "\n"; });
// ctl.stop("cluster");                                   // stops name_mapping first
// @endcode
//
// Model. Services are nodes of a dependency_graph<std::string> (see dependency_graph.hpp for
// "required" vs "ordered_after" and OR-groups). Each service has a start and a stop action,
// either synchronous callables or callables returning a std::future<void>; an action fails by
// throwing. States: offline, online_pending, online, offline_pending, failed (with an error code
// and a reason that names the root cause).
// - start(x) brings up what x requires first, independent services in parallel on the worker
//   pool. An OR-group is satisfied by any member: one already online is preferred, else the
//   members are tried in declared order, falling back to the next when one fails. x waits for
//   services it is ordered_after only when those are starting anyway. A service whose
//   dependency cannot come online fails without being started, with errc::dependency_failed
//   (or errc::unsatisfiable for an OR-group) and a reason naming the root cause.
// - stop(x) stops first everything online that cannot stay online without x (an OR-group
//   with another member online keeps its dependent up), dependents before dependencies.
// - A pending state longer than the service's pending_timeout fails it with errc::timeout.
// - report_failure(x) (e.g. a health check failed) applies x's restart policy: at most
//   `threshold` restarts within `period` (defaults 3 within 15 minutes, as WSFC); only x and
//   what cannot stay online without it are stopped (dependents first, then x's own stop
//   action, since a failed health check does not mean nothing runs) and restarted, never its
//   dependencies or unrelated services. A restart whose start fails is tried again while the
//   budget lasts (not one that timed out: it is undone if it completes). Past the threshold x
//   stays failed (errc::restart_limit) and its dependents fail or fall back to another
//   OR-group member. If x's stop action fails or times out, x is not started again (it may
//   still run) and stays failed with that error.
// - Replication is a service like any other: set_replication_service() names it, and a service
//   declares with service_options::writes that it writes replicated keys, either requiring the
//   replication service (replicated_writes::after_replication: it is then made a required
//   dependency) or journaling its writes until replication is online
//   (replicated_writes::journaled, for a pre-init journal writer that observes the controller).
//
// Threading contract.
// - Every member function may be called from any thread.
// - start, stop and restart block until done; such operations (and the recovery started by
//   report_failure, and graph changes) run one at a time, so each sees a stable graph. Within
//   one operation independent services start or stop in parallel on the pool
//   (service_controller_options::threads).
// - report_failure never blocks: recovery runs on the controller's supervisor thread;
//   wait_idle() waits for it.
// - Actions run on pool threads. An action is never launched for a service whose previous
//   action has not returned, even after a timeout: the late action keeps its pool thread
//   until it returns, its result is ignored, and a start that succeeds late is undone with
//   the service's stop action before anything else runs for it.
// - Observers run outside the controller's locks, one state change at a time, in the order
//   the changes happened, on the thread that made the change; start, stop and restart return
//   only after the observers have seen the changes they made. They may call state(), status(),
//   report_failure() and drop their own subscription; calling an operation that would wait for
//   the current one (start, stop, restart, add_*, remove_service, set_replication_service)
//   from an observer fails with errc::invalid_argument instead of deadlocking.
// - The destructor waits for running actions and the supervisor thread.
#pragma once

#include <quorumreg/dependency_graph.hpp>
#include <quorumreg/service_clock.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/lifecycle.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace quorumreg {

/// A service's state: the lifecycle_state every started-and-watched thing of quorumreg has.
using service_state = lifecycle_state;

/// How a service relates to replication of cluster-wide keys (see set_replication_service).
enum class replicated_writes : std::uint8_t {
    none,              ///< writes no replicated keys
    after_replication, ///< requires the replication service (made a required dependency)
    journaled,         ///< may start first; its writes are journaled until replication is online
};

/// Per-service settings.
struct service_options {
    /// Longest time in online_pending or offline_pending (WSFC's PendingTimeout: 3 minutes).
    std::chrono::milliseconds pending_timeout{180000};
    restart_policy restart{};                           ///< automatic restarts after a failure
    replicated_writes writes = replicated_writes::none; ///< its place relative to replication
};

/// A start or stop action: a callable returning void, or a std::future<void> (or anything with
/// .get()) that the controller waits for. It reports failure by throwing. Empty = no-op.
///
/// @code
/// quorumreg::service_action sync = [] { mount("/data"); };
/// quorumreg::service_action async = [] { return std::async(std::launch::async, [] { warm_cache(); }); };
/// @endcode
class service_action {
public:
    /// The no-op action.
    service_action() = default;
    /// Wraps `f`: a callable returning void, or returning a future the controller waits on.
    template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, service_action> && std::invocable<std::decay_t<F>&>)
        service_action(F&& f) { // NOLINT(google-explicit-constructor,bugprone-forwarding-reference-overload): written
                                // inline; constrained
        using R = std::invoke_result_t<std::decay_t<F>&>;
        if constexpr (std::is_void_v<R>) {
            fn_ = std::forward<F>(f);
        } else {
            static_assert(
                requires(R r) { r.get(); }, "an action returns void or a future");
            fn_ = [g = std::decay_t<F>(std::forward<F>(f))]() mutable { g().get(); };
        }
    }
    /// Runs the action (and waits for its future); rethrows what it throws.
    void operator()() const {
        if (fn_) fn_();
    }
    /// Whether there is an action (false: a no-op).
    explicit operator bool() const noexcept { return static_cast<bool>(fn_); }

private:
    std::function<void()> fn_;
};

/// What add_service needs: the two actions and the options.
///
/// @code
/// ctl.add_service("db", {.start = [] { db_open(); }, .stop = [] { db_close(); },
///                        .options = {.pending_timeout = std::chrono::seconds(30)}});
/// @endcode
struct service_definition {
    service_action start;      ///< brings it online (throws on failure)
    service_action stop;       ///< takes it offline
    service_options options{}; ///< timeouts, restarts, replication
};

/// A snapshot of one service.
struct service_status {
    service_state state = service_state::offline; ///< where it is in its lifecycle
    std::error_code error;                        ///< why it failed (empty unless failed)
    std::string reason;                           ///< human text; for a dependency failure it names the root cause
    std::string root_cause;                       ///< the service where the failure started (itself if it failed alone)
    std::size_t restarts_in_period = 0;           ///< automatic restarts within the restart policy's period
};

/// One state change, as delivered to observers.
struct service_event {
    std::string service;                         ///< whose state changed
    service_state from = service_state::offline; ///< the state before
    service_state to = service_state::offline;   ///< the state after
    std::error_code error;                       ///< set when `to` is failed
    std::string reason;                          ///< human text (e.g. the failing dependency)
};
inline std::ostream& operator<<(std::ostream& os, const service_event& e) {
    os << e.service << ": " << e.from << " -> " << e.to;
    if (!e.reason.empty()) os << " (" << e.reason << ")";
    return os;
}

/// Controller-wide settings.
struct service_controller_options {
    std::size_t threads = 4;                ///< worker threads running actions (at least 1)
    std::shared_ptr<service_clock> clock{}; ///< default: steady_service_clock
};
/// The old name, kept for one release (option structs are named after their class).
using controller_options [[deprecated("renamed service_controller_options")]] = service_controller_options;

/// Starts and stops services in dependency order. See the file comment for the model and the
/// threading contract.
///
/// @code
/// auto clock = std::make_shared<quorumreg::fake_service_clock>();
/// quorumreg::service_controller ctl({.threads = 2, .clock = clock});
/// ctl.add_service("db", {.start = [] {}, .stop = [] {}});
/// ctl.add_service("web", {.start = [] {}, .stop = [] {}});
/// ctl.add_dependency("web", "db");
/// std::error_code ec;
/// ctl.start("web", ec);                 // db, then web
/// ctl.report_failure("db", "probe failed");
/// ctl.wait_idle();                      // db and web restarted (1 of 3 within 15 minutes)
/// @endcode
class service_controller {
public:
    using clock_type = service_clock;                           ///< the time source's interface
    using time_point = service_clock::time_point;               ///< the time source's time
    using observer = std::function<void(const service_event&)>; ///< see observe()

    /// A controller with no services; starts its worker threads.
    explicit service_controller(service_controller_options opts = {})
        : clock_(opts.clock ? std::move(opts.clock) : std::make_shared<steady_service_clock>()),
          pool_(std::max<std::size_t>(1, opts.threads)), hub_(std::make_shared<hub_type>()) {
        clock_token_ = clock_->subscribe([this] {
            std::lock_guard lk(mu_);
            ++changes_; // time jumped: waiting operations re-check their deadlines now
            cv_.notify_all();
        });
        supervisor_ = std::thread([this] { supervise(); });
    }
    ~service_controller() {
        {
            std::lock_guard lk(mu_);
            closing_ = true;
        }
        cv_.notify_all();
        supervisor_.join();
        pool_.join();
        clock_->unsubscribe(clock_token_);
    }
    service_controller(const service_controller&) = delete;
    service_controller& operator=(const service_controller&) = delete;

    // ---- configuration -----------------------------------------------------------------------

    /// Adds a service (offline). errc::already_exists if the name is taken, errc::invalid_argument
    /// for an empty name.
    void add_service(const std::string& name, service_definition def) {
        std::error_code ec;
        add_service(name, std::move(def), ec);
        detail::throw_if(ec, "add_service \"" + name + "\"");
    }
    /// Non-throwing form: errors go to `ec`.
    void add_service(const std::string& name, service_definition def, std::error_code& ec) {
        auto jl = job_lock(ec);
        if (ec) return;
        std::lock_guard lk(mu_);
        if (name.empty()) {
            ec = make_error_code(errc::invalid_argument);
            return;
        }
        if (svcs_.count(name)) {
            ec = make_error_code(errc::already_exists);
            return;
        }
        if (def.options.writes == replicated_writes::after_replication && replication_ && *replication_ != name) {
            graph_.add_dependency(name, *replication_, dependency_kind::required, ec);
            if (ec) return;
        }
        graph_.add_node(name);
        svcs_.emplace(name, svc(std::move(def)));
    }

    /// Removes an offline or failed service and its edges. errc::not_found if unknown,
    /// errc::invalid_argument if it is online or pending.
    void remove_service(const std::string& name) {
        std::error_code ec;
        remove_service(name, ec);
        detail::throw_if(ec, "remove_service \"" + name + "\"");
    }
    /// Non-throwing form: errors go to `ec`.
    void remove_service(const std::string& name, std::error_code& ec) {
        auto jl = job_lock(ec);
        if (ec) return;
        std::lock_guard lk(mu_);
        auto it = svcs_.find(name);
        if (it == svcs_.end()) {
            ec = make_error_code(errc::not_found);
            return;
        }
        if (it->second.state != service_state::offline && it->second.state != service_state::failed) {
            ec = make_error_code(errc::invalid_argument);
            return;
        }
        svcs_.erase(it);
        graph_.remove_node(name);
        if (replication_ == name) replication_.reset();
    }

    /// "dependent requires dependency" (see dependency_kind::required). The names need not be
    /// services yet; starting a service whose dependency is still undefined fails it.
    /// errc::dependency_cycle (naming the cycle) leaves everything unchanged.
    void add_dependency(const std::string& dependent, const std::string& dependency) {
        std::error_code ec;
        std::vector<std::string> cycle;
        edit([&] { graph_.add_dependency(dependent, dependency, dependency_kind::required, ec, &cycle); }, ec);
        throw_edge(ec, "add_dependency", dependent, {dependency}, cycle);
    }
    /// Non-throwing form: errors go to `ec`.
    void add_dependency(const std::string& dependent, const std::string& dependency, std::error_code& ec) {
        edit([&] { graph_.add_dependency(dependent, dependency, dependency_kind::required, ec); }, ec);
    }
    /// "dependent is ordered after dependency": order only (see dependency_kind::ordered_after).
    void add_order_after(const std::string& dependent, const std::string& dependency) {
        std::error_code ec;
        std::vector<std::string> cycle;
        edit([&] { graph_.add_dependency(dependent, dependency, dependency_kind::ordered_after, ec, &cycle); }, ec);
        throw_edge(ec, "add_order_after", dependent, {dependency}, cycle);
    }
    /// Non-throwing form: errors go to `ec`.
    void add_order_after(const std::string& dependent, const std::string& dependency, std::error_code& ec) {
        edit([&] { graph_.add_dependency(dependent, dependency, dependency_kind::ordered_after, ec); }, ec);
    }
    /// "dependent requires (members[0] or members[1] or ...)", tried in this order.
    void add_any_of(const std::string& dependent, const std::vector<std::string>& members) {
        std::error_code ec;
        std::vector<std::string> cycle;
        edit([&] { graph_.add_any_of(dependent, members, ec, &cycle); }, ec);
        throw_edge(ec, "add_any_of", dependent, members, cycle);
    }
    /// Non-throwing form: errors go to `ec`.
    void add_any_of(const std::string& dependent, const std::vector<std::string>& members, std::error_code& ec) {
        edit([&] { graph_.add_any_of(dependent, members, ec); }, ec);
    }
    /// Removes `dependency` from every group of `dependent`.
    void remove_dependency(const std::string& dependent, const std::string& dependency) {
        std::error_code ec;
        remove_dependency(dependent, dependency, ec);
        detail::throw_if(ec, "remove_dependency \"" + dependent + "\" on \"" + dependency + "\"");
    }
    /// Non-throwing form; errc::not_found if there was no such dependency.
    void remove_dependency(const std::string& dependent, const std::string& dependency, std::error_code& ec) {
        edit(
            [&] {
                if (graph_.remove_dependency(dependent, dependency) == 0) ec = make_error_code(errc::not_found);
            },
            ec);
    }

    /// Names the replication service. Every service declared with
    /// replicated_writes::after_replication (before or after this call) gets a required
    /// dependency on it. errc::dependency_cycle if that would close a cycle (nothing changes).
    void set_replication_service(const std::string& name) {
        std::error_code ec;
        set_replication_service(name, ec);
        detail::throw_if(ec, "set_replication_service \"" + name + "\"");
    }
    /// Non-throwing form: errors go to `ec`.
    void set_replication_service(const std::string& name, std::error_code& ec) {
        auto jl = job_lock(ec);
        if (ec) return;
        std::lock_guard lk(mu_);
        auto copy = graph_;
        for (auto& [n, s] : svcs_) {
            if (n == name || s.def.options.writes != replicated_writes::after_replication) continue;
            copy.add_dependency(n, name, dependency_kind::required, ec);
            if (ec) return;
        }
        graph_ = std::move(copy);
        graph_.add_node(name);
        replication_ = name;
    }
    /// The replication service, if one was named.
    std::optional<std::string> replication_service() const {
        std::lock_guard lk(mu_);
        return replication_;
    }
    /// How `name` relates to replication (replicated_writes::none for unknown services).
    replicated_writes writes_replicated_keys(const std::string& name) const {
        std::lock_guard lk(mu_);
        auto it = svcs_.find(name);
        return it == svcs_.end() ? replicated_writes::none : it->second.def.options.writes;
    }
    /// Services that write replicated keys, in name order.
    std::vector<std::string> replicated_writers() const {
        std::lock_guard lk(mu_);
        std::vector<std::string> out;
        for (auto& [n, s] : svcs_)
            if (s.def.options.writes != replicated_writes::none) out.push_back(n);
        std::sort(out.begin(), out.end());
        return out;
    }

    /// A copy of the dependency graph (for queries and DOT export).
    dependency_graph<std::string> graph() const {
        std::lock_guard lk(mu_);
        return graph_;
    }

    // ---- operations --------------------------------------------------------------------------

    /// Brings `name` online, its requirements first. Blocks until it is online or failed.
    /// Throws quorumreg::error with the service's error code; what() carries its reason.
    void start(const std::string& name) { throw_on_failure(&service_controller::start_impl, "start", name); }
    /// Non-throwing form: errors go to `ec`.
    void start(const std::string& name, std::error_code& ec) {
        std::string why;
        start_impl(name, ec, why);
    }

    /// Takes `name` offline after everything that cannot stay online without it. Blocks.
    void stop(const std::string& name) { throw_on_failure(&service_controller::stop_impl, "stop", name); }
    /// Non-throwing form: errors go to `ec`.
    void stop(const std::string& name, std::error_code& ec) {
        std::string why;
        stop_impl(name, ec, why);
    }

    /// Stops `name` and what cannot stay online without it, then starts them again (only
    /// those that were online). Does not count against the restart policy.
    void restart(const std::string& name) { throw_on_failure(&service_controller::restart_impl, "restart", name); }
    /// Non-throwing form: errors go to `ec`.
    void restart(const std::string& name, std::error_code& ec) {
        std::string why;
        restart_impl(name, ec, why);
    }

    /// Reports that an online service has failed (a health check, a crashed monitor). Returns
    /// at once; the restart policy is applied on the supervisor thread. Ignored unless the
    /// service is online when the report is handled.
    void report_failure(const std::string& name, std::string reason) {
        {
            std::lock_guard lk(mu_);
            reports_.emplace_back(name, std::move(reason));
        }
        cv_.notify_all();
    }

    /// Waits (real time) until no operation or recovery is running or queued. False on timeout.
    bool wait_idle(std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
        std::unique_lock lk(mu_);
        return idle_cv_.wait_for(lk, timeout, [&] { return reports_.empty() && !recovering_; });
    }

    // ---- queries -----------------------------------------------------------------------------

    /// The state of `name`; errc::not_found if unknown.
    service_state state(const std::string& name) const { return status(name).state; }
    /// State, error, reason and restart count of `name`; errc::not_found if unknown.
    service_status status(const std::string& name) const {
        std::error_code ec;
        auto r = status(name, ec);
        detail::throw_if(ec, "status \"" + name + "\"");
        return r;
    }
    /// Non-throwing form: errors go to `ec`.
    service_status status(const std::string& name, std::error_code& ec) const {
        std::lock_guard lk(mu_);
        auto it = svcs_.find(name);
        if (it == svcs_.end()) {
            ec = make_error_code(errc::not_found);
            return {};
        }
        ec.clear();
        const svc& s = it->second;
        return {s.state, s.ec, s.reason, s.root, s.restarts.size()};
    }
    /// Whether a service `name` was added (and not removed).
    bool contains(const std::string& name) const {
        std::lock_guard lk(mu_);
        return svcs_.count(name) != 0;
    }
    /// Every service, in name order.
    std::vector<std::string> services() const {
        std::lock_guard lk(mu_);
        std::vector<std::string> out;
        for (auto& [n, s] : svcs_)
            out.push_back(n);
        std::sort(out.begin(), out.end());
        return out;
    }

    /// Observes every state change (RAII: the callback stops when the subscription dies).
    subscription observe(observer cb) { return hub_->subscribe(std::string{}, std::move(cb)); }
    /// Observes the state changes of one service.
    subscription observe(const std::string& name, observer cb) { return hub_->subscribe(name, std::move(cb)); }

private:
    struct svc {
        explicit svc(service_definition d) : def(std::move(d)) {}
        service_definition def;
        service_state state = service_state::offline;
        std::error_code ec;
        std::string reason;
        std::string root;        // where the failure started
        std::string root_reason; // and what it was
        restart_window<time_point> restarts;
        time_point deadline{};
        std::uint64_t gen = 0;       // bumped per launched action; stale completions are ignored
        std::uint64_t in_flight = 0; // id of the action that has not returned yet (maybe timed out); 0: none
        std::uint64_t gen_job = 0;   // the operation that last launched or failed it
    };

    /// Bookkeeping of one operation (under mu_).
    struct job {
        std::vector<std::string> order; // wanted services, in the order they were wanted
        std::unordered_set<std::string> wanted;
        std::unordered_set<std::string> terminal;                         // failed during this operation: not retried
        std::unordered_map<std::string, std::vector<std::size_t>> choice; // OR-group member in use
        std::vector<std::string> targets;
        void want(const std::string& n) {
            if (wanted.insert(n).second) order.push_back(n);
        }
    };

    using hub_type = detail::watch_hub<service_event, std::string>;

    /// Runs one of the *_impl operations and throws quorumreg::error naming the operation, the
    /// service and, when known, the reason (the failed service's root cause).
    void throw_on_failure(void (service_controller::*op)(const std::string&, std::error_code&, std::string&),
                          const char* verb, const std::string& name) {
        std::error_code ec;
        std::string why;
        (this->*op)(name, ec, why);
        if (ec) throw error(ec, std::string(verb) + " \"" + name + "\"" + (why.empty() ? "" : ": " + why));
    }
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    static bool& in_observer() {
        thread_local bool flag = false;
        return flag;
    }

    std::unique_lock<std::mutex> job_lock(std::error_code& ec) {
        ec.clear();
        if (in_observer()) {
            ec = make_error_code(errc::invalid_argument); // would wait for the running operation
            return {};
        }
        return std::unique_lock(job_mu_);
    }

    template <class F> void edit(F&& f, std::error_code& ec) {
        auto jl = job_lock(ec);
        if (ec) return;
        std::lock_guard lk(mu_);
        f();
    }

    void throw_edge(const std::error_code& ec, const char* op, const std::string& dependent,
                    const std::vector<std::string>& members, const std::vector<std::string>& cycle) const {
        if (!ec) return;
        std::string s = std::string(op) + " \"" + dependent + "\" on ";
        for (std::size_t i = 0; i < members.size(); ++i)
            s += (i ? " or \"" : "\"") + members[i] + "\"";
        if (!cycle.empty()) {
            s += ": would create the cycle ";
            for (std::size_t i = 0; i < cycle.size(); ++i)
                s += (i ? " -> " : "") + cycle[i];
        }
        throw error(ec, s);
    }

    // ---- state changes and events (call with mu_ held) -----------------------------------

    void set_state(const std::string& name, svc& s, service_state to, std::error_code ec = {},
                   std::string reason = {}) {
        service_event ev{name, s.state, to, ec, reason};
        ++changes_;
        s.state = to;
        s.ec = ec;
        s.reason = std::move(reason);
        if (to != service_state::failed) {
            s.root.clear();
            s.root_reason.clear();
        }
        {
            std::lock_guard el(ev_mu_);
            events_.push_back(std::move(ev));
        }
        cv_.notify_all();
    }
    void fail(const std::string& name, svc& s, std::error_code ec, std::string reason) {
        set_state(name, s, service_state::failed, ec, reason);
        s.root = name;
        s.root_reason = std::move(reason);
    }
    void fail_dependent(const std::string& name, svc& s, std::error_code ec, std::string reason,
                        const std::string& root, const std::string& root_reason) {
        set_state(name, s, service_state::failed, ec, std::move(reason));
        s.root = root;
        s.root_reason = root_reason;
    }

    /// Delivers queued events, in order, outside mu_ (call without mu_ held). With `all`, also
    /// waits until events being delivered by another thread are done, so that an operation
    /// returns only after its observers have seen its changes.
    void drain_events(bool all = false) {
        std::unique_lock el(ev_mu_);
        while (delivering_) {
            if (!all || in_observer()) return; // the thread delivering will pick ours up
            ev_idle_.wait(el);
        }
        delivering_ = true;
        while (!events_.empty()) {
            service_event ev = std::move(events_.front());
            events_.pop_front();
            el.unlock();
            bool was = in_observer();
            in_observer() = true;
            hub_->deliver(ev, [](const std::string& f, const service_event& e) { return f.empty() || f == e.service; });
            in_observer() = was;
            el.lock();
        }
        delivering_ = false;
        ev_idle_.notify_all();
    }

    // ---- actions ---------------------------------------------------------------------------

    /// Runs an action, turning what it throws into an error code and a reason.
    static std::error_code run_action(const service_action& act, std::string& why) noexcept {
        try {
            act();
            return {};
        } catch (const std::system_error& e) {
            why = e.what();
            return e.code();
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
            why = "unknown exception";
        }
        return make_error_code(errc::resource_failed);
    }

    /// Call only when !s.in_flight (the operations wait for that first).
    void launch(const std::string& name, svc& s, bool starting) {
        set_state(name, s, starting ? service_state::online_pending : service_state::offline_pending);
        s.deadline = clock_->now() + s.def.options.pending_timeout;
        auto gen = ++s.gen;
        auto flight = ++action_ids_;
        s.in_flight = flight;
        service_action act = starting ? s.def.start : s.def.stop;
        service_action undo = starting ? s.def.stop : service_action{};
        boost::asio::post(pool_, [this, name, gen, flight, act, undo, starting] {
            std::string why;
            std::error_code ec = run_action(act, why);
            bool late = false;
            {
                std::lock_guard lk(mu_);
                auto it = svcs_.find(name);
                if (it != svcs_.end() && it->second.gen == gen) {
                    svc& t = it->second;
                    auto pending = starting ? service_state::online_pending : service_state::offline_pending;
                    if (t.state == pending) {
                        if (ec)
                            fail(name, t, ec, std::string(starting ? "start failed: " : "stop failed: ") + why);
                        else
                            set_state(name, t, starting ? service_state::online : service_state::offline);
                    } else {
                        late = true;
                    }
                } else {
                    late = true;
                }
                // Settled in the same step as the state: whoever sees the result also sees the
                // action returned (a failed start's retry must not take it for a timed-out one).
                if (!late && it->second.in_flight == flight) it->second.in_flight = 0;
            }
            // A start that succeeded after the controller gave up on it: the service runs although
            // the controller says it does not. Undo it before anything else runs for it.
            if (late && starting && !ec) {
                std::string ignored;
                (void)run_action(undo, ignored);
            }
            {
                std::lock_guard lk(mu_);
                auto it = svcs_.find(name);
                if (it != svcs_.end() && it->second.in_flight == flight) it->second.in_flight = 0;
                ++changes_; // operations waiting for the action to return look again
            }
            cv_.notify_all();
            drain_events();
        });
    }

    /// Waits until `name` is not pending (its action returned or timed out) and, with
    /// `returned`, until its action has returned (mu_ held through lk). False if it is gone.
    bool wait_settled(const std::string& name, std::unique_lock<std::mutex>& lk, bool returned) {
        while (true) {
            check_timeouts();
            auto it = svcs_.find(name);
            if (it == svcs_.end()) return false;
            if (!pending(it->second.state) && (!returned || !it->second.in_flight)) return true;
            wait_for_change(lk);
        }
    }

    static bool pending(service_state s) { return is_pending(s); }

    void check_timeouts() {
        auto now = clock_->now();
        for (auto& [n, s] : svcs_) {
            if (!pending(s.state) || now < s.deadline) continue;
            bool starting = s.state == service_state::online_pending;
            ++s.gen; // the late completion, if any, is ignored
            auto secs = std::chrono::duration<double>(s.def.options.pending_timeout).count();
            std::string what = starting ? "start" : "stop";
            fail(n, s, make_error_code(errc::timeout),
                 what + " did not finish within the pending timeout (" + format_seconds(secs) + ")");
        }
    }
    static std::string format_seconds(double secs) {
        std::ostringstream os;
        os << secs << " s";
        return os.str();
    }

    /// Waits for a state change or the next deadline (mu_ held through lk).
    void wait_for_change(std::unique_lock<std::mutex>& lk) {
        const auto seen = changes_;
        lk.unlock();
        drain_events();
        lk.lock();
        if (changes_ != seen) return; // changed while events were delivered: look again now
        auto limit = std::chrono::milliseconds(50);
        auto now = clock_->now();
        for (auto& [n, s] : svcs_)
            if (pending(s.state)) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(s.deadline - now);
                limit = std::min(limit, std::max(left, std::chrono::milliseconds(1)));
            }
        cv_.wait_for(lk, limit, [&] { return changes_ != seen; });
    }

    // ---- start -----------------------------------------------------------------------------

    enum class verdict { ready, wait, failed };

    /// Can `name` be launched now, must it wait, or can it never come online in this job?
    verdict evaluate(const std::string& name, job& j, std::error_code& ec, std::string& reason, std::string& root,
                     std::string& root_reason) {
        auto groups = graph_.dependency_groups(name);
        auto& choice = j.choice[name];
        choice.resize(groups.size(), npos);
        bool wait = false;
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const auto& g = groups[gi];
            if (g.kind == dependency_kind::ordered_after) {
                for (const auto& m : g.members) {
                    auto it = svcs_.find(m);
                    if (it == svcs_.end()) continue;
                    auto st = it->second.state;
                    if (pending(st) || (j.wanted.count(m) && !j.terminal.count(m) && st != service_state::online))
                        wait = true;
                }
                continue;
            }
            bool satisfied = false;
            for (const auto& m : g.members) {
                auto it = svcs_.find(m);
                satisfied = satisfied || (it != svcs_.end() && it->second.state == service_state::online);
            }
            if (satisfied) continue;
            auto usable = [&](const std::string& m) { return svcs_.count(m) && !j.terminal.count(m); };
            std::size_t& c = choice[gi];
            if (c != npos && usable(g.members[c])) {
                wait = true; // the chosen member is on its way
                continue;
            }
            // Prefer a member that is already coming up, else the first usable in declared order.
            std::size_t found = npos;
            for (std::size_t k = 0; k < g.members.size() && found == npos; ++k)
                if (usable(g.members[k]) && (pending(svcs_.at(g.members[k]).state) || j.wanted.count(g.members[k])))
                    found = k;
            for (std::size_t k = 0; k < g.members.size() && found == npos; ++k)
                if (usable(g.members[k])) found = k;
            if (found != npos) {
                c = found;
                j.want(g.members[found]);
                wait = true;
                continue;
            }
            // Nothing left: name the root cause (the last member in declared order that failed).
            std::string last_root, last_reason;
            for (const auto& m : g.members) {
                auto it = svcs_.find(m);
                if (it == svcs_.end()) {
                    last_root = m;
                    last_reason = "service is not defined";
                } else {
                    last_root = it->second.root.empty() ? m : it->second.root;
                    last_reason = it->second.root_reason.empty() ? it->second.reason : it->second.root_reason;
                }
            }
            root = last_root;
            root_reason = last_reason;
            std::string cause = "(root cause: \"" + root + "\": " + root_reason + ")";
            if (g.members.size() == 1) {
                ec = make_error_code(errc::dependency_failed);
                bool undefined = !svcs_.count(g.members[0]);
                reason = "dependency \"" + g.members[0] + "\"" + (undefined ? " is not defined" : " failed " + cause);
            } else {
                ec = make_error_code(errc::unsatisfiable);
                reason = "no member of (";
                for (std::size_t k = 0; k < g.members.size(); ++k)
                    reason += (k ? " or \"" : "\"") + g.members[k] + "\"";
                reason += ") could come online " + cause;
            }
            return verdict::failed;
        }
        return wait ? verdict::wait : verdict::ready;
    }

    /// Runs a start job until its targets are online or failed and nothing it launched is
    /// still pending (mu_ held through lk).
    void run_start(job& j, std::unique_lock<std::mutex>& lk) {
        for (auto& t : j.targets)
            j.want(t);
        while (true) {
            check_timeouts();
            auto done = [&](const std::string& n) {
                auto it = svcs_.find(n);
                return it == svcs_.end() || it->second.state == service_state::online || j.terminal.count(n) ||
                       (it->second.state == service_state::failed && j.terminal.count(n));
            };
            // A failure of something this job launched is final for the job.
            for (auto& n : j.order) {
                auto it = svcs_.find(n);
                if (it != svcs_.end() && it->second.state == service_state::failed && it->second.gen_job == job_id_)
                    j.terminal.insert(n);
            }
            bool targets_done = std::all_of(j.targets.begin(), j.targets.end(), done);
            bool progress = false;
            if (!targets_done) {
                for (std::size_t i = 0; i < j.order.size(); ++i) {
                    std::string n = j.order[i];
                    auto it = svcs_.find(n);
                    if (it == svcs_.end() || j.terminal.count(n)) continue;
                    svc& s = it->second;
                    if (s.state != service_state::offline && s.state != service_state::failed) continue;
                    if (s.in_flight) continue; // a timed-out action has not returned: wait for it
                    std::error_code ec;
                    std::string reason, root, root_reason;
                    auto v = evaluate(n, j, ec, reason, root, root_reason);
                    if (v == verdict::failed) {
                        fail_dependent(n, s, ec, reason, root, root_reason);
                        s.gen_job = job_id_;
                        j.terminal.insert(n);
                        progress = true;
                    } else if (v == verdict::ready) {
                        s.gen_job = job_id_;
                        launch(n, s, true);
                        progress = true;
                    }
                }
                targets_done = std::all_of(j.targets.begin(), j.targets.end(), done);
            }
            bool busy = std::any_of(j.order.begin(), j.order.end(), [&](const std::string& n) {
                auto it = svcs_.find(n);
                return it != svcs_.end() && pending(it->second.state);
            });
            if (targets_done && !busy) break;
            if (progress) continue; // a failure may cascade at once; launches are already running
            wait_for_change(lk);
        }
    }

    // ---- stop ------------------------------------------------------------------------------

    /// `roots` plus every online service that cannot stay online once they are down, in start
    /// order (mu_ held).
    std::vector<std::string> stop_set(const std::set<std::string>& roots) const {
        std::set<std::string> down(roots.begin(), roots.end());
        std::vector<std::string> out;
        for (const auto& n : graph_.start_order()) {
            if (down.count(n)) {
                out.push_back(n);
                continue;
            }
            auto it = svcs_.find(n);
            if (it == svcs_.end() || (it->second.state != service_state::online && !pending(it->second.state)))
                continue;
            bool must = false;
            for (const auto& g : graph_.dependency_groups(n)) {
                if (g.kind != dependency_kind::required) continue;
                bool touches = false, alive = false;
                for (const auto& m : g.members) {
                    touches = touches || down.count(m);
                    auto mt = svcs_.find(m);
                    alive = alive || (!down.count(m) && mt != svcs_.end() && mt->second.state == service_state::online);
                }
                must = must || (touches && !alive);
            }
            if (must) {
                down.insert(n);
                out.push_back(n);
            }
        }
        return out;
    }

    /// Stops every service of `set` (start order), dependents first (mu_ held through lk).
    void run_stop(const std::vector<std::string>& set, std::unique_lock<std::mutex>& lk) {
        std::set<std::string> in(set.begin(), set.end());
        std::set<std::string> handled;
        while (true) {
            check_timeouts();
            const std::size_t handled_before = handled.size();
            for (auto rit = set.rbegin(); rit != set.rend(); ++rit) {
                const auto& n = *rit;
                auto it = svcs_.find(n);
                if (it == svcs_.end() || handled.count(n)) continue;
                svc& s = it->second;
                // A failed service whose timed-out start has not returned is cleared below at once:
                // the late start undoes itself. Only an online one can still be finishing.
                if (pending(s.state) || (s.in_flight && s.state == service_state::online)) continue;
                if (s.state == service_state::offline) {
                    handled.insert(n);
                    continue;
                }
                // Wait until nothing in the set that depends on (or is ordered after) n is up.
                bool blocked = false;
                for (const auto& d : graph_.dependents_of(n)) {
                    if (!in.count(d) || d == n) continue;
                    auto dt = svcs_.find(d);
                    if (dt != svcs_.end() && (dt->second.state == service_state::online || pending(dt->second.state)))
                        blocked = true;
                }
                if (blocked) continue;
                handled.insert(n);
                if (s.state == service_state::online)
                    launch(n, s, false);
                else
                    set_state(n, s, service_state::offline); // failed: nothing runs; clear it
            }
            bool busy = std::any_of(set.begin(), set.end(), [&](const std::string& n) {
                auto it = svcs_.find(n);
                return it != svcs_.end() && pending(it->second.state);
            });
            if (handled.size() == in.size() && !busy) break;
            if (handled.size() != handled_before) continue;
            wait_for_change(lk);
        }
    }

    // ---- operations ------------------------------------------------------------------------

    void result_of(const std::string& name, std::error_code& ec, std::string& why) {
        auto it = svcs_.find(name);
        if (it == svcs_.end()) {
            ec = make_error_code(errc::not_found);
            return;
        }
        ec = it->second.ec;
        why = it->second.reason;
    }

    /// The skeleton of a user's start, stop or restart of `name`: one job at a time, under
    /// the lock, errc::not_found for an unknown name; `run(lk)` does the work and leaves `ec`
    /// set from the service's state. Events are delivered after the lock is released.
    template <class F> void user_job(const std::string& name, std::error_code& ec, F&& run) {
        auto jl = job_lock(ec);
        if (ec) return;
        {
            std::unique_lock lk(mu_);
            if (!svcs_.count(name)) {
                ec = make_error_code(errc::not_found);
                return;
            }
            ++job_id_;
            run(lk);
        }
        drain_events(true);
    }
    /// `ec` (and `why`) from whether `name` reached `wanted`.
    void settle(const std::string& name, service_state wanted, std::error_code& ec, std::string& why) {
        if (svcs_.at(name).state == wanted)
            ec.clear();
        else
            result_of(name, ec, why);
    }

    void start_impl(const std::string& name, std::error_code& ec, std::string& why) {
        user_job(name, ec, [&](std::unique_lock<std::mutex>& lk) {
            job j;
            j.targets = {name};
            run_start(j, lk);
            settle(name, service_state::online, ec, why);
        });
    }

    void stop_impl(const std::string& name, std::error_code& ec, std::string& why) {
        user_job(name, ec, [&](std::unique_lock<std::mutex>& lk) {
            run_stop(stop_set({name}), lk);
            settle(name, service_state::offline, ec, why);
        });
    }

    void restart_impl(const std::string& name, std::error_code& ec, std::string& why) {
        user_job(name, ec, [&](std::unique_lock<std::mutex>& lk) {
            auto set = stop_set({name});
            job j;
            j.targets.push_back(name);
            for (auto& n : set)
                if (n != name && svcs_.at(n).state == service_state::online) j.targets.push_back(n);
            run_stop(set, lk);
            if (svcs_.at(name).state != service_state::offline) {
                result_of(name, ec, why);
                return;
            }
            ++job_id_;
            run_start(j, lk);
            settle(name, service_state::online, ec, why);
        });
    }

    /// Applies the restart policy to a reported failure (supervisor thread, job_mu_ held).
    void recover(const std::string& name, const std::string& reason, std::unique_lock<std::mutex>& lk) {
        auto it = svcs_.find(name);
        if (it == svcs_.end() || it->second.state != service_state::online) return;
        ++job_id_;
        fail(name, it->second, make_error_code(errc::resource_failed), reason);
        auto set = stop_set({name});
        std::vector<std::string> dependents;
        for (auto& n : set)
            if (n != name && svcs_.at(n).state == service_state::online) dependents.push_back(n);
        set.erase(std::remove(set.begin(), set.end(), name), set.end());
        run_stop(set, lk); // dependents first, then x itself: a failed probe does not mean nothing runs
        if (!wait_settled(name, lk, true)) return; // x was online: at most a moment
        launch(name, svcs_.at(name), false);
        if (!wait_settled(name, lk, false)) return; // a stop that times out leaves x failed
        std::string last = reason;
        bool may_start = svcs_.at(name).state == service_state::offline; // else its stop failed: it may still run
        // Each attempt spends one restart of the budget; a start that fails is tried again while
        // budget is left, at most `threshold` times for this report however the window moves.
        for (unsigned attempt = 0;; ++attempt) {
            svc& s = svcs_.at(name);
            const auto& pol = s.def.options.restart;
            auto now = clock_->now();
            s.restarts.trim(now, pol.period); // status() reports the window as of now either way
            job j;
            j.targets = dependents;
            if (may_start && attempt < pol.threshold && s.restarts.try_restart(now, pol)) {
                j.targets.insert(j.targets.begin(), name);
            } else {
                if (may_start) {
                    auto secs = std::chrono::duration<double>(pol.period).count();
                    fail(name, s, make_error_code(errc::restart_limit),
                         "restart limit reached (" + std::to_string(pol.threshold) + " restarts within " +
                             format_seconds(secs) + "); last failure: " + last);
                }
                j.terminal.insert(name);
                ++job_id_;
                run_start(j, lk); // the dependents fail with the root cause or fall back
                return;
            }
            ++job_id_;
            run_start(j, lk);
            auto found = svcs_.find(name);
            if (found == svcs_.end()) return;
            svc& after = found->second;
            // Retry only x's own start failures whose action returned (a start that timed out may
            // still come up; it is undone when it does); a failed dependency of x is its own matter.
            if (after.state != service_state::failed || after.root != name || after.in_flight) return;
            last = after.reason;
        }
    }

    void supervise() {
        std::unique_lock lk(mu_);
        while (true) {
            cv_.wait_for(lk, std::chrono::milliseconds(50), [&] { return closing_ || !reports_.empty(); });
            if (closing_) return;
            if (reports_.empty()) continue;
            recovering_ = true;
            lk.unlock();
            {
                std::unique_lock jl(job_mu_);
                lk.lock();
                while (!reports_.empty()) {
                    auto [name, reason] = std::move(reports_.front());
                    reports_.pop_front();
                    recover(name, reason, lk);
                }
                lk.unlock();
            }
            drain_events(true);
            lk.lock();
            if (reports_.empty()) recovering_ = false;
            idle_cv_.notify_all();
        }
    }

    std::shared_ptr<service_clock> clock_;
    std::uint64_t clock_token_ = 0;
    boost::asio::thread_pool pool_;
    std::shared_ptr<hub_type> hub_;

    std::mutex job_mu_; // one operation at a time (taken before mu_)
    mutable std::mutex mu_;
    std::condition_variable cv_;      // a state changed, time jumped, a report arrived
    std::condition_variable idle_cv_; // recovery finished
    dependency_graph<std::string> graph_;
    std::map<std::string, svc> svcs_;
    std::optional<std::string> replication_;
    std::deque<std::pair<std::string, std::string>> reports_;
    bool recovering_ = false;
    bool closing_ = false;
    std::uint64_t job_id_ = 0;
    std::uint64_t action_ids_ = 0;
    std::uint64_t changes_ = 0; // state changes and clock jumps so far (wakes waiting operations)

    std::mutex ev_mu_;
    std::deque<service_event> events_;
    std::condition_variable ev_idle_;
    bool delivering_ = false;

    std::thread supervisor_;
};

} // namespace quorumreg
