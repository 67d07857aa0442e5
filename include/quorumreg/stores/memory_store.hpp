// quorumreg — memory_store: an in-process quorum store with fault injection.
//
// Deterministic and fast: the backend for unit tests of everything built on quorum_store
// (checkpoints, the cluster hive, ownership locks). Its fault injection reproduces what the
// real backends do when things go wrong — failed operations, slow operations, dropped watches,
// loss of quorum, and writes whose outcome is unknown — so callers' recovery paths can be
// tested without killing etcd members.
//
// @code
// quorumreg::memory_store store;
// auto r = store.put("cfg/port", "8080");
// store.put_if("cfg/port", "8081", r);              // compare-and-swap on mod_revision
// store.fail_next(1, quorumreg::errc::quorum_unavailable);
// std::error_code ec;
// store.get("cfg/port", ec);                        // ec == errc::quorum_unavailable
// @endcode
#pragma once

#include <quorumreg/detail/store_state.hpp>
#include <quorumreg/quorum_store.hpp>
#include <quorumreg/stores/store_limits.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace quorumreg {

/// Options of a memory_store.
struct memory_store_options {
    std::string name = "memory";                   ///< shown by describe() as "mem:<name>"
    std::chrono::milliseconds deadline{5000};      ///< per-operation deadline (see quorum_store)
    std::size_t history_limit = 100000;            ///< watch history kept (events); 0: unlimited
    std::chrono::milliseconds reaper_interval{10}; ///< upper bound on lease-expiry latency
    store_limits limits{};                         ///< key and value size limits
};

/// In-process quorum_store with fault injection. Thread-safe. Leases run on
/// std::chrono::steady_clock; expired leases are reaped lazily by every operation and by a
/// small reaper thread (which also delivers watch events), so watches see lease keys vanish.
///
/// @code
/// quorumreg::memory_store store;
/// store.set_deadline(std::chrono::milliseconds(100));
/// store.set_quorum_lost(true);      // every call now fails with quorum_unavailable after 100 ms
/// store.set_quorum_lost(false);
/// store.unknown_outcome_next(1);    // the next write is applied but reports unknown_outcome
/// @endcode
class memory_store final : public quorum_store {
public:
    /// An empty store at revision 1; starts the reaper thread.
    explicit memory_store(memory_store_options opts = {}) : opts_(std::move(opts)), deadline_(opts_.deadline) {
        worker_ = std::thread([this] { run(); });
    }
    ~memory_store() override {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    memory_store(const memory_store&) = delete;
    memory_store& operator=(const memory_store&) = delete;

    // ---- history ----------------------------------------------------------------------------

    /// Discards watch history before `rev` (etcd's compaction): a later watch from an older
    /// revision receives errc::watch_canceled. Compacting past the current revision is
    /// errc::invalid_argument.
    void compact(store_revision rev, std::error_code& ec) {
        ec.clear();
        std::lock_guard lk(mu_);
        if (rev > state_.rev || rev < 0) {
            ec = errc::invalid_argument;
            last_error_detail() = "compaction revision " + std::to_string(rev) + " is beyond the current revision " +
                                  std::to_string(state_.rev);
            return;
        }
        history_.compact(rev);
    }
    /// Throwing form of compact(rev, ec).
    void compact(store_revision rev) {
        thrown("compact", "", [&](std::error_code& ec) {
            compact(rev, ec);
            return 0;
        });
    }

    /// Number of watches currently active (ended or destroyed ones are not counted).
    std::size_t watch_count() const { return watchers_->size(); }

    // ---- fault injection ----------------------------------------------------------------------

    /// The next `n` operations fail with `code` and change nothing.
    void fail_next(std::size_t n, std::error_code code) {
        std::lock_guard lk(fault_mu_);
        fail_count_ = n;
        fail_code_ = code;
    }
    /// fail_next with a quorumreg code.
    void fail_next(std::size_t n, errc code) { fail_next(n, make_error_code(code)); }

    /// Adds `d` to every operation. A delay at or beyond the deadline makes reads fail with
    /// deadline_exceeded and writes report unknown_outcome (they are applied, as a slow etcd
    /// leader would).
    void set_delay(std::chrono::milliseconds d) {
        std::lock_guard lk(fault_mu_);
        delay_ = d;
    }

    /// Ends every active watch: each handler receives `code` once and the watch stops
    /// (what a client sees when its watch stream is canceled server-side).
    void drop_watches(errc code = errc::watch_canceled) {
        watchers_->fail_all(make_error_code(code));
        wake();
    }

    /// While lost, every operation waits up to the deadline for quorum to return, then fails
    /// with quorum_unavailable (and changes nothing). Leases do not expire while quorum is
    /// lost (nobody can reap them); their clocks keep running.
    void set_quorum_lost(bool lost) {
        {
            std::lock_guard lk(fault_mu_);
            quorum_lost_ = lost;
        }
        fault_cv_.notify_all();
    }

    /// The next `n` writes are applied but report errc::unknown_outcome.
    void unknown_outcome_next(std::size_t n) {
        std::lock_guard lk(fault_mu_);
        unknown_count_ = n;
    }

    /// Removes all pending fault injections (fail_next, delay, quorum loss, unknown outcome).
    void clear_faults() {
        {
            std::lock_guard lk(fault_mu_);
            fail_count_ = 0;
            unknown_count_ = 0;
            delay_ = {};
            quorum_lost_ = false;
        }
        fault_cv_.notify_all();
    }

private:
    // ---- quorum_store hooks (reached through its public interface) ---------------------------

    std::string do_describe() const override { return "mem:" + opts_.name; }

    /// A random id per object (every memory_store is a store of its own). Not subject to
    /// fault injection: it is fixed at construction, nothing is fetched.
    std::string do_identity(std::error_code& ec) override {
        ec.clear();
        return identity_;
    }

    std::optional<key_value> do_get(std::string_view key, std::error_code& ec) override {
        if (!enter(false, key, false, ec)) return std::nullopt;
        std::lock_guard lk(mu_);
        reap_locked();
        const auto* kv = state_.find(key);
        if (!kv) return std::nullopt;
        return *kv;
    }

    range_result do_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                          std::error_code& ec) override {
        if (!enter(false, prefix, true, ec)) return {};
        std::lock_guard lk(mu_);
        reap_locked();
        return state_.range(prefix, start_after, limit);
    }

    // put and erase: quorum_store's one-operation commits.

    txn_result do_commit(const store_txn& txn, std::error_code& ec) override {
        ec.clear();
        if (!detail::store_check_txn(txn, opts_.limits, ec, last_error_detail())) return {};
        if (!enter(true, {}, true, ec)) return {};
        txn_result res;
        {
            std::lock_guard lk(mu_);
            reap_locked();
            res.succeeded = state_.evaluate(txn.compares);
            std::vector<detail::store_mutation> muts;
            if (!state_.resolve(res.succeeded ? txn.on_success : txn.on_failure, muts, ec, last_error_detail()))
                return {};
            apply_locked(muts);
            res.revision = state_.rev;
        }
        wake();
        finish_write(ec);
        return res;
    }

    store_revision do_revision(std::error_code& ec) override {
        if (!enter(false, {}, true, ec)) return 0;
        std::lock_guard lk(mu_);
        reap_locked();
        return state_.rev;
    }

    [[nodiscard]] subscription do_watch(std::string_view prefix, store_revision from_revision, watch_handler handler,
                                        std::error_code& ec) override {
        if (!handler) {
            ec = errc::invalid_argument;
            last_error_detail() = "empty watch handler";
            return {};
        }
        if (from_revision < 0) {
            ec = errc::invalid_argument;
            last_error_detail() = "negative revision";
            return {};
        }
        if (!enter(false, prefix, true, ec)) return {};
        subscription s;
        {
            std::lock_guard lk(mu_);
            reap_locked();
            store_revision next = from_revision == 0 ? state_.rev + 1 : from_revision;
            s = watchers_->add(std::string(prefix), next, std::move(handler));
        }
        wake();
        return s;
    }

    lease_id do_grant_lease(std::chrono::milliseconds ttl, std::error_code& ec) override {
        ec.clear();
        if (ttl.count() <= 0) {
            ec = errc::invalid_argument;
            last_error_detail() = "lease TTL must be positive";
            return 0;
        }
        if (!enter(true, {}, true, ec)) return 0;
        lease_id id;
        {
            std::lock_guard lk(mu_);
            id = state_.next_lease++;
            detail::store_lease l;
            l.id = id;
            l.ttl_ms = ttl.count();
            l.expiry_ms = now_ms() + ttl.count();
            state_.leases.emplace(id, std::move(l));
        }
        wake();
        finish_write(ec);
        return id;
    }

    void do_keep_alive(lease_id lease, std::error_code& ec) override {
        if (!enter(true, {}, true, ec)) return;
        {
            std::lock_guard lk(mu_);
            reap_locked();
            auto it = state_.leases.find(lease);
            if (it == state_.leases.end()) {
                ec = errc::lease_expired;
                last_error_detail() = "lease " + std::to_string(lease) + " is gone";
                return;
            }
            it->second.expiry_ms = now_ms() + it->second.ttl_ms;
        }
    }

    void do_revoke_lease(lease_id lease, std::error_code& ec) override {
        if (!enter(true, {}, true, ec)) return;
        {
            std::lock_guard lk(mu_);
            reap_locked();
            revoke_locked(lease);
        }
        wake();
        finish_write(ec);
    }

    std::chrono::milliseconds do_lease_ttl(lease_id lease, std::error_code& ec) override {
        if (!enter(false, {}, true, ec)) return {};
        std::lock_guard lk(mu_);
        reap_locked();
        auto it = state_.leases.find(lease);
        if (it == state_.leases.end()) {
            ec = errc::lease_expired;
            last_error_detail() = "lease " + std::to_string(lease) + " is gone";
            return {};
        }
        return std::chrono::milliseconds(std::max<std::int64_t>(0, it->second.expiry_ms - now_ms()));
    }

    void do_set_deadline(std::chrono::milliseconds d) override {
        std::lock_guard lk(fault_mu_);
        deadline_ = d;
    }

    std::chrono::milliseconds do_deadline() const override {
        std::lock_guard lk(fault_mu_);
        return deadline_;
    }

    static std::int64_t now_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }

    /// Common entry of every operation: key check, injected faults. `write` ops sent after a
    /// deadline-length delay go on to be applied and finish_write() reports unknown_outcome.
    bool enter(bool write, std::string_view key, bool allow_empty, std::error_code& ec) {
        ec.clear();
        timed_out_write_ = false; // never carried over from an earlier operation that failed
        auto& detail = last_error_detail();
        if (!allow_empty || !key.empty())
            if (!detail::store_check_key(key, allow_empty, opts_.limits, ec, detail)) return false;
        std::unique_lock lk(fault_mu_);
        auto deadline = deadline_;
        if (fail_count_ > 0) {
            --fail_count_;
            ec = fail_code_;
            detail = "injected failure";
            return false;
        }
        if (quorum_lost_) {
            if (!fault_cv_.wait_for(lk, deadline, [&] { return !quorum_lost_; })) {
                ec = errc::quorum_unavailable;
                detail = "injected loss of quorum";
                return false;
            }
        }
        auto delay = delay_;
        lk.unlock();
        if (delay.count() > 0) {
            if (delay >= deadline) {
                std::this_thread::sleep_for(deadline);
                if (!write) {
                    ec = errc::deadline_exceeded;
                    detail = "injected delay beyond the deadline";
                    return false;
                }
                timed_out_write_ = true; // this thread's write goes on and reports unknown_outcome
            } else {
                std::this_thread::sleep_for(delay);
            }
        }
        return true;
    }

    void finish_write(std::error_code& ec) {
        if (ec) return;
        if (timed_out_write_) {
            timed_out_write_ = false;
            ec = errc::unknown_outcome;
            last_error_detail() = "deadline passed after the write was sent";
            return;
        }
        std::lock_guard lk(fault_mu_);
        if (unknown_count_ > 0) {
            --unknown_count_;
            ec = errc::unknown_outcome;
            last_error_detail() = "injected unknown outcome (the write was applied)";
        }
    }

    void wake() {
        {
            std::lock_guard lk(mu_);
            wake_ = true;
        }
        cv_.notify_all();
    }

    void apply_locked(const std::vector<detail::store_mutation>& muts) {
        if (muts.empty()) return;
        std::vector<watch_event> evs;
        state_.apply(state_.rev + 1, muts, &evs);
        history_.append(evs);
        history_.bound(opts_.history_limit);
    }

    void revoke_locked(lease_id id) {
        auto muts = state_.lease_erasures(id);
        apply_locked(muts);
        state_.leases.erase(id);
    }

    void reap_locked() {
        {
            std::lock_guard lk(fault_mu_);
            if (quorum_lost_) return;
        }
        auto now = now_ms();
        while (const auto* l = state_.earliest_lease()) {
            if (l->expiry_ms > now) break;
            revoke_locked(l->id);
        }
    }

    void run() {
        std::unique_lock lk(mu_);
        while (!stop_) {
            reap_locked();
            lk.unlock();
            watchers_->pump([this](const std::string& prefix, store_revision next, std::vector<watch_event>& out,
                                   store_revision& next_after) {
                std::lock_guard g(mu_);
                if (!history_.collect(prefix, next, out)) return false;
                next_after = std::max(next, state_.rev + 1);
                return true;
            });
            lk.lock();
            if (stop_) break;
            // Wake for new events or to reap leases.
            cv_.wait_for(lk, opts_.reaper_interval, [&] { return wake_ || stop_; });
            wake_ = false;
        }
    }

    memory_store_options opts_;
    std::string identity_ = detail::random_store_identity();
    mutable std::mutex mu_; // state_, history_
    std::condition_variable cv_;
    detail::store_state state_;
    detail::store_history history_;
    std::shared_ptr<detail::store_watchers> watchers_ = std::make_shared<detail::store_watchers>();
    bool stop_ = false;
    bool wake_ = false;

    mutable std::mutex fault_mu_;
    std::condition_variable fault_cv_;
    std::chrono::milliseconds deadline_;
    std::size_t fail_count_ = 0;
    std::error_code fail_code_;
    std::size_t unknown_count_ = 0;
    std::chrono::milliseconds delay_{0};
    bool quorum_lost_ = false;
    static inline thread_local bool timed_out_write_ = false;

    std::thread worker_; // last: starts after every member above is constructed
};

} // namespace quorumreg
