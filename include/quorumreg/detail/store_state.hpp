// The in-memory model shared by the embedded quorum store backends (memory_store and
// directory_store): key validation, the key space with etcd-style revisions, leases,
// transaction evaluation, the watch history and the watcher dispatcher.
//
// Why shared: both backends must have exactly the semantics documented in quorum_store.hpp,
// and the directory store is, at heart, this same state machine replayed from a log file.
// Keeping one implementation means one place to get revision/version bookkeeping right.
#pragma once

#include <quorumreg/stores/store_limits.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quorumreg::detail {

/// The spelling before store_limits became public.
using store_limits = quorumreg::store_limits;

/// Checks a key (or, with `allow_empty`, a prefix). Sets ec and `detail` on failure.
inline bool store_check_key(std::string_view key, bool allow_empty, const store_limits& lim, std::error_code& ec,
                            std::string& detail) {
    if (key.empty() && !allow_empty) {
        ec = errc::invalid_argument;
        detail = "empty key";
        return false;
    }
    if (key.size() > lim.max_key_bytes) {
        ec = errc::name_too_long;
        detail =
            "key of " + std::to_string(key.size()) + " bytes exceeds the limit of " + std::to_string(lim.max_key_bytes);
        return false;
    }
    if (key.find('\0') != std::string_view::npos) {
        ec = errc::invalid_argument;
        detail = "key contains a NUL byte";
        return false;
    }
    return true;
}

inline bool store_check_value(std::string_view value, const store_limits& lim, std::error_code& ec,
                              std::string& detail) {
    if (value.size() > lim.max_value_bytes) {
        ec = errc::value_too_large;
        detail = "value of " + std::to_string(value.size()) + " bytes exceeds the limit of " +
                 std::to_string(lim.max_value_bytes);
        return false;
    }
    return true;
}

/// Validates a whole transaction before anything is evaluated, so bad input never changes
/// stored bytes. Like etcd, a branch may not write the same key twice (nor put a key that an
/// erase_prefix of the same branch covers): the outcome would depend on op order.
inline bool store_check_txn(const store_txn& t, const store_limits& lim, std::error_code& ec, std::string& detail) {
    for (const auto& c : t.compares)
        if (!store_check_key(c.key, false, lim, ec, detail)) return false;
    for (const auto* branch : {&t.on_success, &t.on_failure}) {
        std::set<std::string_view> written;
        std::vector<std::string_view> prefixes;
        for (const auto& op : *branch) {
            bool prefix = op.what == store_op::kind::erase_prefix;
            if (!store_check_key(op.key, prefix, lim, ec, detail)) return false;
            if (op.what == store_op::kind::put && !store_check_value(op.value, lim, ec, detail)) return false;
            if (op.lease < 0) {
                ec = errc::invalid_argument;
                detail = "negative lease id";
                return false;
            }
            if (prefix) {
                prefixes.push_back(op.key);
            } else if (!written.insert(op.key).second) {
                ec = errc::invalid_argument;
                detail = "key \"" + op.key + "\" written twice in one transaction branch";
                return false;
            }
        }
        for (auto p : prefixes)
            for (auto k : written)
                if (k.substr(0, p.size()) == p) {
                    ec = errc::invalid_argument;
                    detail = "key \"" + std::string(k) + "\" is both written and covered by erase_prefix \"" +
                             std::string(p) + "\" in one transaction branch";
                    return false;
                }
    }
    return true;
}

inline bool store_has_prefix(std::string_view key, std::string_view prefix) noexcept {
    return key.size() >= prefix.size() && key.compare(0, prefix.size(), prefix) == 0;
}

/// One lease. memory_store: `expiry_ms` is the expiry on steady_clock. directory_store:
/// `expiry_ms` is the renewal stamp in the lease record (the writer's clock + TTL, strictly
/// increasing with every keep-alive so that each renewal is an observable change) and is never
/// compared with anyone's clock; `observed_ms` is when THIS process last saw the record change,
/// on its own steady_clock (not stored), and the lease expires for it at
/// store_lease_observed_expiry (issue 15, defect 10).
struct store_lease {
    lease_id id = 0;
    std::int64_t ttl_ms = 0;
    std::int64_t expiry_ms = 0;
    std::int64_t observed_ms = 0;
    std::set<std::string, std::less<>> keys;
};

/// The observer's margin on top of the TTL: 1/50 of it (2%), for rate drift between the
/// renewer's and the observer's monotonic clocks (one machine: one CLOCK_MONOTONIC, no drift).
inline std::int64_t store_lease_observer_margin(std::int64_t ttl_ms) noexcept { return ttl_ms / 50; }

/// When a lease expires for an observer that last saw its record change at observed_ms.
inline std::int64_t store_lease_observed_expiry(const store_lease& l) noexcept {
    return l.observed_ms + l.ttl_ms + store_lease_observer_margin(l.ttl_ms);
}

/// Milliseconds on steady_clock: the observer clock of lease expiry.
inline std::int64_t store_steady_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// A resolved write: what a transaction branch does to concrete keys.
struct store_mutation {
    bool erase = false;
    std::string key;
    std::string value;
    lease_id lease = 0;
};

/// The key space, leases and revision counter.
class store_state {
public:
    std::map<std::string, key_value, std::less<>> kvs;
    std::map<lease_id, store_lease> leases;
    store_revision rev = 1; ///< etcd starts a fresh cluster at revision 1
    lease_id next_lease = 1;

    const key_value* find(std::string_view key) const {
        auto it = kvs.find(key);
        return it == kvs.end() ? nullptr : &it->second;
    }

    bool holds(const key_compare& c) const {
        const auto* kv = find(c.key);
        switch (c.what) {
        case key_compare::target::exists: return kv != nullptr;
        case key_compare::target::absent: return kv == nullptr;
        // A missing key has mod/create revision 0 (etcd's convention).
        case key_compare::target::mod_revision_is: return (kv ? kv->mod_revision : 0) == c.revision;
        case key_compare::target::create_revision_is: return (kv ? kv->create_revision : 0) == c.revision;
        case key_compare::target::value_is: return kv != nullptr && kv->value == c.value;
        }
        return false;
    }

    bool evaluate(const std::vector<key_compare>& cs) const {
        return std::all_of(cs.begin(), cs.end(), [&](const key_compare& c) { return holds(c); });
    }

    /// Resolves a branch into concrete mutations: erase_prefix expands to the keys present,
    /// erasing an absent key is dropped. Fails with lease_expired if a put names an unknown lease.
    bool resolve(const std::vector<store_op>& ops, std::vector<store_mutation>& out, std::error_code& ec,
                 std::string& detail) const {
        for (const auto& op : ops) {
            switch (op.what) {
            case store_op::kind::put:
                if (op.lease != 0 && !leases.count(op.lease)) {
                    ec = errc::lease_expired;
                    detail = "lease " + std::to_string(op.lease) + " is not granted (expired, revoked or unknown)";
                    return false;
                }
                out.push_back({false, op.key, op.value, op.lease});
                break;
            case store_op::kind::erase:
                if (find(op.key)) out.push_back({true, op.key, {}, 0});
                break;
            case store_op::kind::erase_prefix:
                for (auto it = kvs.lower_bound(op.key); it != kvs.end() && store_has_prefix(it->first, op.key); ++it)
                    out.push_back({true, it->first, {}, 0});
                break;
            }
        }
        return true;
    }

    /// Applies mutations at revision `r` (> rev), appending the events they cause.
    void apply(store_revision r, const std::vector<store_mutation>& muts, std::vector<watch_event>* events) {
        for (const auto& m : muts) {
            auto it = kvs.find(m.key);
            if (m.erase) {
                if (it == kvs.end()) continue;
                detach(it->second);
                kvs.erase(it);
                if (events) {
                    watch_event ev;
                    ev.what = watch_event::kind::erase;
                    ev.kv.key = m.key;
                    ev.kv.mod_revision = r;
                    ev.revision = r;
                    events->push_back(std::move(ev));
                }
                continue;
            }
            if (it == kvs.end()) {
                key_value kv;
                kv.key = m.key;
                kv.create_revision = r;
                it = kvs.emplace(m.key, std::move(kv)).first;
            } else {
                detach(it->second);
            }
            auto& kv = it->second;
            kv.value = m.value;
            kv.mod_revision = r;
            kv.version += 1;
            kv.lease = m.lease;
            if (m.lease != 0) {
                auto l = leases.find(m.lease);
                if (l != leases.end()) l->second.keys.insert(m.key);
            }
            if (events) events->push_back({watch_event::kind::put, kv, r});
        }
        rev = std::max(rev, r);
    }

    /// Mutations that delete every key attached to `id`.
    std::vector<store_mutation> lease_erasures(lease_id id) const {
        std::vector<store_mutation> out;
        auto l = leases.find(id);
        if (l == leases.end()) return out;
        for (const auto& k : l->second.keys)
            out.push_back({true, k, {}, 0});
        return out;
    }

    range_result range(std::string_view prefix, std::string_view start_after, std::size_t limit) const {
        range_result r;
        r.revision = rev;
        auto it =
            (!start_after.empty() && start_after >= prefix) ? kvs.upper_bound(start_after) : kvs.lower_bound(prefix);
        for (; it != kvs.end() && store_has_prefix(it->first, prefix); ++it) {
            if (limit != 0 && r.kvs.size() == limit) {
                r.more = true;
                break;
            }
            r.kvs.push_back(it->second);
        }
        return r;
    }

    /// The lease that expires first for this observer (observed_ms + TTL + margin), or nullptr.
    const store_lease* earliest_observed_lease() const {
        const store_lease* best = nullptr;
        for (const auto& [id, l] : leases)
            if (!best || store_lease_observed_expiry(l) < store_lease_observed_expiry(*best)) best = &l;
        return best;
    }

    /// The lease with the earliest expiry, or nullptr.
    const store_lease* earliest_lease() const {
        const store_lease* best = nullptr;
        for (const auto& [id, l] : leases)
            if (!best || l.expiry_ms < best->expiry_ms) best = &l;
        return best;
    }

private:
    void detach(const key_value& kv) {
        if (kv.lease == 0) return;
        auto l = leases.find(kv.lease);
        if (l != leases.end()) l->second.keys.erase(kv.key);
    }
};

/// Events kept for watch(prefix, from_revision): every event with revision >= first().
class store_history {
public:
    std::deque<watch_event> events;
    store_revision first_available = 1; ///< a watch from an earlier revision is canceled

    void append(const std::vector<watch_event>& evs) { events.insert(events.end(), evs.begin(), evs.end()); }

    /// Drops events older than `r`; watches from before `r` then get watch_canceled.
    void compact(store_revision r) {
        while (!events.empty() && events.front().revision < r)
            events.pop_front();
        first_available = std::max(first_available, r);
    }

    /// Keeps at most `limit` events (0: unlimited), compacting whole revisions.
    void bound(std::size_t limit) {
        if (limit == 0 || events.size() <= limit) return;
        compact(events[events.size() - limit].revision);
    }

    /// Events under `prefix` with revision >= from, in order. False if history from `from`
    /// is gone.
    bool collect(std::string_view prefix, store_revision from, std::vector<watch_event>& out) const {
        if (from < first_available) return false;
        auto it = std::lower_bound(events.begin(), events.end(), from,
                                   [](const watch_event& e, store_revision r) { return e.revision < r; });
        for (; it != events.end(); ++it)
            if (store_has_prefix(it->kv.key, prefix)) out.push_back(*it);
        return true;
    }
};

/// The watches of one store object. Delivery happens on the store's single delivery thread
/// (pump()), so each watch sees its events in revision order and its callbacks never overlap;
/// nothing here holds a store lock while a callback runs, so callbacks may use the store.
class store_watchers final : public hub_base, public std::enable_shared_from_this<store_watchers> {
public:
    struct watcher : subscription_state_base {
        std::string prefix;
        store_revision next = 1; ///< first revision not yet delivered
        watch_handler handler;
        std::error_code pending; ///< an error to deliver (ends the watch)
    };

    subscription add(std::string prefix, store_revision next, watch_handler h) {
        auto w = std::make_shared<watcher>();
        w->prefix = std::move(prefix);
        w->next = next;
        w->handler = std::move(h);
        {
            std::lock_guard lk(mu_);
            list_.push_back(w);
        }
        return subscription(w, weak_from_this());
    }

    void remove(const subscription_state_base* s) noexcept override {
        std::lock_guard lk(mu_);
        std::erase_if(list_, [&](const auto& p) { return p.get() == s; });
    }

    std::size_t size() const {
        std::lock_guard lk(mu_);
        return list_.size();
    }

    /// Ends every watch with `code` at the next pump (fault injection, shutdown).
    void fail_all(std::error_code code) {
        std::lock_guard lk(mu_);
        for (auto& w : list_)
            if (!w->pending) w->pending = code;
    }

    /// Delivers pending events. `fetch(prefix, next, events, next_after)` fills events from
    /// the history under the store's lock and returns false if history from `next` is gone;
    /// `next_after` receives the revision to continue from. Returns true if anything ran.
    template <class Fetch> bool pump(Fetch&& fetch) {
        std::vector<std::shared_ptr<watcher>> snapshot;
        {
            std::lock_guard lk(mu_);
            snapshot = list_;
        }
        bool any = false;
        for (auto& w : snapshot) {
            std::vector<watch_event> evs;
            std::error_code ec;
            store_revision next_after = w->next;
            {
                std::lock_guard lk(mu_);
                ec = w->pending;
            }
            if (!ec && !fetch(w->prefix, w->next, evs, next_after)) ec = errc::watch_canceled;
            w->next = next_after;
            if (!ec && evs.empty()) continue;
            {
                std::unique_lock lk(w->mu);
                if (!w->active) continue;
                w->running = std::this_thread::get_id();
            }
            any = true;
            try {
                w->handler(evs, ec);
            } catch (...) {
                // A throwing handler is the subscriber's bug; other watches must still run.
            }
            {
                std::lock_guard lk(w->mu);
                w->running = std::thread::id{};
            }
            w->idle.notify_all();
            if (ec) remove(w.get()); // the watch has ended
        }
        return any;
    }

private:
    mutable std::mutex mu_;
    std::vector<std::shared_ptr<watcher>> list_;
};

} // namespace quorumreg::detail
