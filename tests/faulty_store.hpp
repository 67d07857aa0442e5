// A quorum_store client that forwards to another store and injects faults on demand; shared
// by the ownership and checkpoint tests, on any backend.
#pragma once

#include <quorumreg/quorum_store.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qr_test {

using namespace quorumreg;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// A client that forwards to another store, with faults: failing keep-alives (as if the store
/// were unreachable for this client), slow commits (a write stuck in retries), watches the
/// store ends with an error (history compacted) and watches that stall without one.
class faulty_store final : public quorum_store {
public:
    explicit faulty_store(quorum_store& inner) : inner_(inner) {}

    std::atomic<bool> fail_keep_alive{false};
    std::atomic<int> commit_delay_ms{0};
    std::atomic<int> keep_alives{0};
    /// Called with each commit before it is forwarded (set it before the store is shared).
    std::function<void(const store_txn&)> before_commit;

    /// Send time of the first keep-alive failed on purpose (time_point{} if none yet).
    steady_clock::time_point first_failed_keep_alive() {
        std::lock_guard lk(mu_);
        return first_failed_;
    }
    /// When the last successful create-only commit (acquire_lock's) returned.
    steady_clock::time_point last_create() {
        std::lock_guard lk(mu_);
        return last_create_;
    }

    /// From the `n`-th commit on (0: the next one) every call fails, as if this client had
    /// crashed or been cut off for good. With `deliver` that n-th commit still reaches the
    /// store and only its answer is lost (errc::unknown_outcome).
    void cut_after(int n, bool deliver = false) {
        std::lock_guard lk(mu_);
        cut_at_ = n;
        deliver_cut_ = deliver;
    }
    /// True once the cut happened.
    bool was_cut() const { return cut_.load(); }

    std::string do_describe() const override { return "faulty(" + inner_.describe() + ")"; }
    std::string do_identity(std::error_code& ec) override { return inner_.identity(ec); }
    std::optional<key_value> do_get(std::string_view key, std::error_code& ec) override {
        if (cut(ec)) return std::nullopt;
        return inner_.get(key, ec);
    }
    range_result do_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                          std::error_code& ec) override {
        if (cut(ec)) return {};
        return inner_.range(prefix, start_after, limit, ec);
    }
    store_revision do_put(std::string_view key, std::string_view value, lease_id lease, std::error_code& ec) override {
        if (cut(ec)) return 0;
        return inner_.put(key, value, lease, ec);
    }
    store_revision do_erase(std::string_view key, std::error_code& ec) override {
        if (cut(ec)) return 0;
        return inner_.erase(key, ec);
    }
    txn_result do_commit(const store_txn& txn, std::error_code& ec) override {
        {
            std::unique_lock lk(mu_);
            if (cut_) {
                ec = errc::quorum_unavailable;
                return {};
            }
            if (cut_at_ >= 0 && cut_at_-- == 0) {
                cut_ = true;
                bool deliver = deliver_cut_;
                lk.unlock();
                if (deliver) {
                    std::error_code lost;
                    inner_.commit(txn, lost);
                }
                ec = deliver ? errc::unknown_outcome : errc::quorum_unavailable;
                return {};
            }
        }
        if (before_commit) before_commit(txn);
        if (int d = commit_delay_ms.load(); d > 0) std::this_thread::sleep_for(milliseconds(d));
        auto r = inner_.commit(txn, ec);
        bool create = txn.compares.size() == 1 && txn.compares[0].what == key_compare::target::absent;
        if (!ec && r.succeeded && create) {
            std::lock_guard lk(mu_);
            last_create_ = steady_clock::now();
        }
        return r;
    }
    store_revision do_revision(std::error_code& ec) override { return inner_.revision(ec); }
    subscription do_watch(std::string_view prefix, store_revision from, watch_handler h, std::error_code& ec) override {
        auto w = std::make_shared<watch_slot>();
        w->handler = std::move(h);
        auto sub = inner_.watch(
            prefix, from,
            [w, this](const std::vector<watch_event>& evs, std::error_code wec) {
                std::lock_guard lk(w->mu);
                if (w->ended || stall_watches) return;
                w->handler(evs, wec);
            },
            ec);
        if (ec) return {};
        {
            std::lock_guard lk(mu_);
            watches_.push_back(w);
            ++watches_started;
        }
        // The consumer's handle: dropping it also retires the slot, so end_watches() never
        // calls a handler whose owner is gone.
        struct slot_state final : detail::subscription_state_base {
            subscription inner;
            std::shared_ptr<watch_slot> slot;
            ~slot_state() override {
                inner.reset();
                std::lock_guard lk(slot->mu);
                slot->ended = true;
            }
        };
        auto st = std::make_shared<slot_state>();
        st->inner = std::move(sub);
        st->slot = w;
        return subscription(std::move(st), {});
    }
    /// Ends every watch started so far with `code`, as the store does when history is compacted.
    void end_watches(std::error_code code = errc::watch_canceled) {
        std::vector<std::shared_ptr<watch_slot>> ws;
        {
            std::lock_guard lk(mu_);
            ws.swap(watches_);
        }
        for (auto& w : ws) {
            std::lock_guard lk(w->mu);
            if (w->ended) continue;
            w->ended = true;
            w->handler({}, code);
        }
    }
    /// While set, watches deliver nothing and do not end (a stream that hangs).
    std::atomic<bool> stall_watches{false};
    std::atomic<int> watches_started{0};
    lease_id do_grant_lease(milliseconds ttl, std::error_code& ec) override {
        if (cut(ec)) return 0;
        return inner_.grant_lease(ttl, ec);
    }
    void do_keep_alive(lease_id lease, std::error_code& ec) override {
        if (cut(ec)) return;
        auto sent = steady_clock::now();
        if (fail_keep_alive) {
            std::lock_guard lk(mu_);
            if (first_failed_ == steady_clock::time_point{}) first_failed_ = sent;
            ec = errc::quorum_unavailable;
            return;
        }
        inner_.keep_alive(lease, ec);
        if (!ec) ++keep_alives;
    }
    void do_revoke_lease(lease_id lease, std::error_code& ec) override {
        if (cut(ec)) return;
        inner_.revoke_lease(lease, ec);
    }
    milliseconds do_lease_ttl(lease_id lease, std::error_code& ec) override { return inner_.lease_ttl(lease, ec); }
    void do_set_deadline(milliseconds d) override { inner_.set_deadline(d); }
    milliseconds do_deadline() const override { return inner_.deadline(); }

private:
    bool cut(std::error_code& ec) const {
        if (!cut_) return false;
        ec = errc::quorum_unavailable;
        return true;
    }
    struct watch_slot {
        std::mutex mu;
        bool ended = false;
        watch_handler handler;
    };
    quorum_store& inner_;
    std::mutex mu_;
    std::vector<std::shared_ptr<watch_slot>> watches_;
    steady_clock::time_point first_failed_{};
    steady_clock::time_point last_create_{};
    int cut_at_ = -1; // guarded by mu_
    bool deliver_cut_ = false;
    std::atomic<bool> cut_{false};
};

} // namespace qr_test
