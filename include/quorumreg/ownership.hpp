// quorumreg — ownership: one fenced-lease primitive, used by checkpoints, cluster_writer and
// resource hosting alike.
//
// An `ownership` object takes a named lock key in a quorum store for this node: it grants a
// lease, creates the lock key attached to it (waiting for a previous owner's lease to end, up
// to a timeout) and keeps the lease alive on its own thread. It yields a fencing token (the
// lock key's create_revision: put `key_compare::create_revision_is(key, token)` into every
// transaction the owner commits) and writes the one owner-record format
// (encode_owner_record: "<node>#<lease>").
//
// Fencing stops a stale owner's store writes, not its side effects elsewhere (serving clients
// after a pause). Two rules protect those (Chubby's and Consul's lock-delay, client-go's renew
// deadline):
// - Local deadline. The owner is valid() only until `send time of the last successful
//   keep-alive + ttl - margin`, measured on its own clock (steady_clock by default). Past it,
//   valid() is false at once (also in a process just resumed from SIGSTOP, before any thread
//   has run) and on_lost is called, once. A keep-alive answered "lease gone" ends ownership
//   immediately. The store cannot end the lease before `ttl` after that send (the store
//   receives the keep-alive after it was sent), so the owner stops `margin` before anyone
//   else can take over.
// - Takeover grace. acquire() reports success only `takeover_grace` (default: margin) after it
//   took the lock key, keeping the lease alive meanwhile, unless the previous owner released
//   cleanly. An absent lock key cannot tell a release from an expiry reaped a moment ago, so
//   release() records the token it gave up in "<key>.released" and the lock transaction
//   records the newest token in "<key>.holder" (both without a lease); they match only after
//   a release.
//
// Timing (defaults): keep-alive every ttl/3, retried every ttl/10 after a failure; margin
// 2/5 ttl, so the local deadline is 0.6 ttl after the last successful send and on_lost fires
// at most 0.6 ttl - ttl/3 < ttl/3 after the first failed renewal was sent. A keep-alive
// blocked inside the store (an unreachable etcd holds it up to the store's deadline) does not
// delay on_lost: a separate watchdog thread watches the deadline.
// Tolerated clock behaviour: no wall clock is used. Rate drift between the owner's clock and
// the store's (or observer's) clock of up to margin / (2 ttl - margin), 25% with the defaults.
//
// Threads: keep-alives on one thread, the deadline watchdog (which calls on_lost) on another;
// both are joined by release() and the destructor. on_lost must not call release() or destroy
// the object (it runs on the watchdog thread); it should stop the owner's work. Every other
// member is thread-safe. The clock seam (options.now) lets a simulator drive the deadlines:
// waits sleep on the real clock for the durations the seam's clock computes, and
// clock_advanced() makes the threads look again after the simulator moved its clock.
//
// @code
// quorumreg::ownership_options o;
// o.node = "node-a";
// o.ttl = std::chrono::seconds(10);
// o.on_lost = [&](std::error_code) { service.stop(); };
// quorumreg::ownership own(store, "locks/sql", o);
// own.acquire(std::chrono::seconds(30));           // throws quorumreg::error on failure
// store_txn t;
// t.compares.push_back(quorumreg::key_compare::create_revision_is("locks/sql", own.token()));
// ...
// if (own.valid()) serve();                          // side effects only while valid()
// own.release();                                     // fenced: deletes only our lock key
// @endcode
#pragma once

#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace quorumreg {

/// Options of an ownership.
struct ownership_options {
    std::string node;                                ///< written into the owner record
    std::chrono::milliseconds ttl{10000};            ///< the lease's TTL in the store
    std::chrono::milliseconds keep_alive_interval{}; ///< 0: ttl / 3
    std::chrono::milliseconds retry_interval{};      ///< after a failed keep-alive; 0: ttl / 10
    std::chrono::milliseconds margin{};              ///< local deadline = last send + ttl - margin; 0: 2/5 ttl
    std::chrono::milliseconds takeover_grace{-1};    ///< wait after taking the key; < 0: margin
    std::chrono::milliseconds poll_interval{};       ///< lock-key re-check while waiting; 0: ttl / 10
    /// Called once, on the watchdog thread, when ownership ends without release():
    /// errc::ownership_lost (deadline passed) or errc::lease_expired (the store said so).
    std::function<void(std::error_code)> on_lost{};
    /// The clock seam (null: steady_clock::now).
    std::function<std::chrono::steady_clock::time_point()> now{};
};

/// A fenced lease on one lock key. Not copyable or movable (its threads refer to it).
/// acquire() and release() of one object must not run concurrently with each other.
class ownership {
public:
    using clock = std::chrono::steady_clock; ///< the local clock deadlines are kept on

    /// Not acquired yet: call acquire(). `store` must outlive the object.
    ownership(quorum_store& store, std::string lock_key, ownership_options opts = {})
        : store_(store), key_(std::move(lock_key)), opts_(std::move(opts)) {
        using std::chrono::milliseconds;
        if (opts_.ttl.count() <= 0) opts_.ttl = milliseconds(10000);
        auto ttl = opts_.ttl.count();
        if (opts_.keep_alive_interval.count() <= 0)
            opts_.keep_alive_interval = milliseconds(std::max<long long>(1, ttl / 3));
        if (opts_.retry_interval.count() <= 0) opts_.retry_interval = milliseconds(std::max<long long>(1, ttl / 10));
        if (opts_.margin.count() <= 0 || opts_.margin >= opts_.ttl) opts_.margin = milliseconds(ttl * 2 / 5);
        if (opts_.takeover_grace.count() < 0) opts_.takeover_grace = opts_.margin;
        if (opts_.poll_interval.count() <= 0) opts_.poll_interval = milliseconds(std::max<long long>(1, ttl / 10));
    }
    ~ownership() {
        std::error_code ec;
        release(ec);
    }
    ownership(const ownership&) = delete;
    ownership& operator=(const ownership&) = delete;

    /// Takes the lock, waiting up to `timeout` for another owner's lease to end. Returns true
    /// once valid(). errc::deadline_exceeded if the key stayed held; errc::ownership_lost if
    /// the lease ended during the takeover grace; a store error as the store reported it.
    /// errc::already_exists if this object already owns (release() first).
    bool acquire(std::chrono::milliseconds timeout, std::error_code& ec) {
        ec.clear();
        {
            std::lock_guard lk(mu_);
            if (token_ != 0) {
                ec = errc::already_exists;
                return false;
            }
            stop_ = false;
            lost_ = false;
        }
        auto until = now() + timeout;
        auto sent = now();
        lease_id lease = store_.grant_lease(opts_.ttl, ec);
        if (ec) return false;
        store_revision token = 0;
        bool clean = false;
        while (true) {
            token = try_take(lease, clean, ec);
            if (!ec) break;
            if (ec == errc::lease_expired) { // our lease ended while we waited: a fresh one
                sent = now();
                lease = store_.grant_lease(opts_.ttl, ec);
                if (ec) return false;
                continue;
            }
            if (ec != errc::already_exists) {
                std::error_code ignored;
                store_.revoke_lease(lease, ignored);
                return false;
            }
            // Held by another lease: keep ours alive and look again.
            auto t = now();
            if (t >= until) {
                std::error_code ignored;
                store_.revoke_lease(lease, ignored);
                ec = errc::deadline_exceeded;
                return false;
            }
            auto send = now();
            store_.keep_alive(lease, ec);
            if (!ec) sent = send;
            ec.clear();
            sleep_for(std::min(opts_.poll_interval, std::chrono::duration_cast<std::chrono::milliseconds>(until - t)));
        }
        {
            std::lock_guard lk(mu_);
            lease_ = lease;
            token_ = token;
            deadline_ = sent + opts_.ttl - opts_.margin;
            refreshed_ = sent;
            lost_ = false;
            lost_code_.clear();
            stop_ = false;
        }
        renewer_ = std::thread([this] { renew_loop(); });
        watchdog_ = std::thread([this] { watch_loop(); });
        // Takeover grace: a previous owner whose lease we saw end has been invalid for at
        // least this long before we report success. Not needed after a clean release.
        if (!clean) sleep_for(opts_.takeover_grace);
        std::error_code lost;
        {
            std::lock_guard lk(mu_);
            if (!lost_ && !stop_ && now() < deadline_) {
                acquired_ = true;
                return true;
            }
            lost = lost_code_ ? lost_code_ : make_error_code(errc::ownership_lost);
        }
        std::error_code ignored;
        release(ignored);
        ec = lost;
        return false;
    }
    /// Throwing form of acquire.
    void acquire(std::chrono::milliseconds timeout) {
        std::error_code ec;
        acquire(timeout, ec);
        detail::throw_if(ec, "acquire ownership of \"" + key_ + "\" on " + store_.describe());
    }

    /// True while this object owns the lock: acquired, not released, and the local deadline
    /// (last successful keep-alive's send time + ttl - margin) not passed on this clock.
    bool valid() const {
        std::lock_guard lk(mu_);
        return acquired_ && !lost_ && now() < deadline_;
    }
    /// valid().
    bool is_owner() const { return valid(); }

    /// The fencing token (the lock key's create_revision); 0 before acquire and after release.
    store_revision token() const {
        std::lock_guard lk(mu_);
        return token_;
    }
    /// The lease the lock key is attached to (0 when not owning).
    lease_id lease() const {
        std::lock_guard lk(mu_);
        return lease_;
    }
    /// What the lock key holds while we own it.
    owner_record record() const {
        std::lock_guard lk(mu_);
        return {opts_.node, lease_};
    }
    /// The lock key.
    const std::string& key() const noexcept { return key_; }
    /// The local deadline now in force.
    clock::time_point deadline() const {
        std::lock_guard lk(mu_);
        return deadline_;
    }

    /// Gives the lock up: stops the keep-alives, deletes the lock key only if our token still
    /// owns it (release_lock is fenced), revokes the lease. No-op when not owning; on_lost is
    /// not called. Must not be called from on_lost.
    void release(std::error_code& ec) {
        ec.clear();
        lease_id lease = 0;
        store_revision token = 0;
        {
            std::lock_guard lk(mu_);
            stop_ = true;
            acquired_ = false;
            lease = std::exchange(lease_, 0);
            token = std::exchange(token_, 0);
        }
        cv_.notify_all();
        if (renewer_.joinable()) renewer_.join();
        if (watchdog_.joinable()) watchdog_.join();
        if (token != 0) {
            // Fenced: deletes only our lock key, and records that we gave it up (the next
            // owner then needs no takeover grace).
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(key_, token));
            t.on_success.push_back(store_op::erase(key_));
            t.on_success.push_back(store_op::put(released_key(), std::to_string(token)));
            store_.commit(t, ec);
        }
        if (lease != 0) {
            std::error_code rec;
            store_.revoke_lease(lease, rec);
            if (!ec) ec = rec;
        }
    }
    /// Throwing form of release(ec).
    void release() {
        std::error_code ec;
        release(ec);
        detail::throw_if(ec, "release ownership of \"" + key_ + "\" on " + store_.describe());
    }

    /// Stops the keep-alives without giving the lock up, as a crash would: the lease expires
    /// in the store, and the next owner waits out the takeover grace. For an owner that must
    /// not hand over what it could not make durable. on_lost is not called.
    void abandon() {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
            acquired_ = false;
            lease_ = 0;
            token_ = 0;
        }
        cv_.notify_all();
        if (renewer_.joinable()) renewer_.join();
        if (watchdog_.joinable()) watchdog_.join();
    }

    /// Tells the threads that the seam's clock moved (a simulator's step): they re-read it and
    /// act on a passed deadline at once. Not needed with the default steady_clock.
    void clock_advanced() { cv_.notify_all(); }

private:
    clock::time_point now() const { return opts_.now ? opts_.now() : clock::now(); }

    // Beside the lock key: "<key>.holder" is put (without a lease) in the transaction that
    // takes the lock, so its mod_revision is the newest token ever issued; "<key>.released"
    // holds the token release() gave up. Equal: the last owner released cleanly and nobody can
    // still believe it owns, so acquire() skips the takeover grace.
    std::string holder_key() const { return key_ + ".holder"; }
    std::string released_key() const { return key_ + ".released"; }

    /// One attempt to take the lock for `lease`: its token, or 0 with errc::already_exists
    /// (held, or another owner came and went meanwhile: look again), errc::lease_expired, or a
    /// store error. `clean`: the previous owner released.
    store_revision try_take(lease_id lease, bool& clean, std::error_code& ec) {
        auto holder = store_.get(holder_key(), ec);
        if (ec) return 0;
        std::optional<key_value> released;
        if (holder) released = store_.get(released_key(), ec);
        if (ec) return 0;
        clean = !holder || (released && released->value == std::to_string(holder->mod_revision));
        store_txn t;
        t.compares.push_back(key_compare::absent(key_));
        t.compares.push_back(holder ? key_compare::mod_revision_is(holder_key(), holder->mod_revision)
                                    : key_compare::absent(holder_key()));
        t.on_success.push_back(store_op::put(key_, encode_owner_record({opts_.node, lease}), lease));
        t.on_success.push_back(store_op::put(holder_key(), opts_.node));
        auto res = store_.commit(t, ec);
        const bool unknown = ec == errc::unknown_outcome || ec == errc::deadline_exceeded;
        if (ec && !unknown) return 0;
        ec.clear();
        auto kv = store_.get(key_, ec);
        if (ec) return 0;
        if (kv && kv->lease == lease) {
            if (!res.succeeded) clean = false; // taken by an attempt whose answer was lost: be careful
            return kv->create_revision;
        }
        if (!kv && res.succeeded) { // expired between the two calls
            ec = errc::lease_expired;
            return 0;
        }
        ec = errc::already_exists;
        return 0;
    }

    void sleep_for(std::chrono::milliseconds d) {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, d, [&] { return stop_ || lost_; });
    }

    /// Marks ownership lost (once); the watchdog calls on_lost.
    void lose(std::error_code why) {
        {
            std::lock_guard lk(mu_);
            if (lost_) return;
            lost_ = true;
            lost_code_ = why;
        }
        cv_.notify_all();
    }

    void renew_loop() {
        std::unique_lock lk(mu_);
        // Due one interval after the lease was last refreshed, not after acquire()'s take
        // returned: a slow take must not push the first renewal past the deadline.
        auto next = refreshed_ + opts_.keep_alive_interval;
        while (!stop_ && !lost_) {
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now());
            if (wait.count() > 0) {
                cv_.wait_for(lk, wait, [&] { return stop_ || lost_ || now() >= next; });
                continue;
            }
            lease_id lease = lease_;
            lk.unlock();
            auto send = now();
            std::error_code ec;
            store_.keep_alive(lease, ec);
            lk.lock();
            if (stop_) return;
            if (!lost_ && now() >= deadline_) {
                // The deadline passed while the call ran: ownership ended then, and a late
                // success does not revive it (on_lost is due; the watchdog calls it).
                lost_ = true;
                lost_code_ = errc::ownership_lost;
            }
            if (lost_) {
                lk.unlock();
                cv_.notify_all();
                return;
            }
            if (!ec) {
                // Measured from the send: the store extended the lease no earlier than this.
                deadline_ = std::max(deadline_, send + opts_.ttl - opts_.margin);
                next = send + opts_.keep_alive_interval;
            } else if (ec == errc::lease_expired) {
                lk.unlock();
                lose(ec);
                return;
            } else {
                next = now() + opts_.retry_interval;
            }
        }
    }

    void watch_loop() {
        std::unique_lock lk(mu_);
        while (!stop_) {
            if (!lost_ && now() >= deadline_) {
                lost_ = true;
                lost_code_ = errc::ownership_lost;
            }
            if (lost_) {
                auto cb = opts_.on_lost;
                auto code = lost_code_;
                lk.unlock();
                cv_.notify_all(); // the renewer stops too
                if (cb) cb(code);
                return;
            }
            auto wait =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now()) + std::chrono::milliseconds(1);
            cv_.wait_for(lk, wait, [&] { return stop_ || lost_ || now() >= deadline_; });
        }
    }

    quorum_store& store_;
    std::string key_;
    ownership_options opts_;

    mutable std::mutex mu_; // everything below
    std::condition_variable cv_;
    lease_id lease_ = 0;
    store_revision token_ = 0;
    clock::time_point deadline_{};
    clock::time_point refreshed_{}; ///< send time of the grant or keep-alive acquire() last saw succeed
    bool acquired_ = false;
    bool lost_ = false;
    bool stop_ = false;
    std::error_code lost_code_;
    std::thread renewer_;
    std::thread watchdog_;
};

} // namespace quorumreg
