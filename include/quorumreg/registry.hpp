// quorumreg — the registry: a hierarchical, typed key/value store.
//
// @code
// quorumreg::registry reg;
// reg.set_value("Software/Contoso/App", "Port", quorumreg::value::dword(8080));
// auto port = reg.get_value("SOFTWARE\\contoso\\app", "port").as_dword(); // names fold case
// auto sub = reg.watch("Software/Contoso", quorumreg::watch_scope::subtree,
//                      [](const quorumreg::change_event& e) { /* ... */ });
// @endcode
//
// Threading contract (basic_registry and hive alike):
// - Every member function may be called concurrently from any thread. Reads take a shared
//   lock, commits an exclusive one; a reader sees each transaction entirely or not at all.
// - Watch callbacks run on the thread that committed the change (or, while another thread is
//   already delivering, on that thread), after the registry's locks are released: a callback
//   may read, write, watch or drop its own subscription. Events reach callbacks in revision
//   order. Callbacks of one subscription never run concurrently.
// - Destroying a subscription waits for a running callback on another thread to finish.
#pragma once

#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/registry_types.hpp>
#include <quorumreg/value.hpp>

#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

namespace detail {

/// A watch's filter: the folded path components and the scope.
struct watch_filter {
    std::vector<std::string> parts; // folded
    watch_scope scope;
};

/// Does `ev` concern a watch on `f`? Both sides are compared folded.
template <class Traits>
bool watch_matches(const watch_filter& f, const change_event& ev, const std::vector<std::string>& ev_parts) {
    const auto& w = f.parts;
    // Deleting or replacing an ancestor (or the key itself) affects every watch below it.
    bool ev_is_prefix = ev_parts.size() <= w.size() && std::equal(ev_parts.begin(), ev_parts.end(), w.begin());
    if (ev_is_prefix && (ev.kind == change_kind::key_deleted || ev.kind == change_kind::subtree_replaced)) return true;
    bool under = ev_parts.size() >= w.size() && std::equal(w.begin(), w.end(), ev_parts.begin());
    if (!under) return false;
    if (f.scope == watch_scope::subtree) return true;
    if (ev_parts.size() == w.size()) return true; // the key itself
    // A direct subkey appearing or disappearing.
    return ev_parts.size() == w.size() + 1 &&
           (ev.kind == change_kind::key_created || ev.kind == change_kind::key_deleted);
}

template <class Traits> std::vector<std::string> folded_parts(std::string_view path) {
    std::vector<std::string> out;
    std::size_t start = 0;
    if (path.empty()) return out;
    while (true) {
        auto end = path.find_first_of("\\/", start);
        std::string f;
        Traits::fold(path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start), f);
        out.push_back(std::move(f));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return out;
}

/// Delivers events in revision order outside the engine's locks (see the threading contract).
template <class Traits> class event_dispatcher {
public:
    using hub_type = watch_hub<change_event, watch_filter>;

    event_dispatcher() : hub_(std::make_shared<hub_type>()) {}

    subscription subscribe(watch_filter f, std::function<void(const change_event&)> cb) {
        return hub_->subscribe(std::move(f), std::move(cb));
    }
    bool has_subscribers() const { return !hub_->empty(); }

    /// Call while still holding the engine's write lock, so queue order = revision order.
    void enqueue(std::vector<change_event>&& events) {
        if (events.empty()) return;
        std::lock_guard lk(mu_);
        for (auto& e : events)
            queue_.push_back(std::move(e));
    }

    /// Call after releasing the engine's locks.
    void drain() {
        std::unique_lock lk(mu_);
        if (dispatching_) return; // the thread already delivering will pick ours up
        dispatching_ = true;
        while (!queue_.empty()) {
            change_event ev = std::move(queue_.front());
            queue_.pop_front();
            lk.unlock();
            auto parts = folded_parts<Traits>(ev.key_path);
            hub_->deliver(
                ev, [&](const watch_filter& f, const change_event& e) { return watch_matches<Traits>(f, e, parts); });
            lk.lock();
        }
        dispatching_ = false;
    }

private:
    std::shared_ptr<hub_type> hub_;
    std::mutex mu_;
    std::deque<change_event> queue_;
    bool dispatching_ = false;
};

/// Engine-generic code inside the library (the checkpoint manager) reads a consistent view of
/// any engine's tree through this, so the engine hooks stay private to registry_api.
struct engine_access {
    template <class Engine, class F> static auto read(const Engine& e, F&& f) { return e.read(std::forward<F>(f)); }
};

} // namespace detail

/// The registry API, shared by every engine (in-memory basic_registry, durable hive).
/// `Derived` provides:
/// - `template <class F> auto read(F&& f) const` calling f(const detail::registry_tree<Traits>&)
///   under a shared lock (after catching up with other processes, for the hive);
/// - `std::uint64_t do_commit(const std::vector<operation>&, std::error_code&, std::string& why)`;
/// - `subscription do_watch(detail::watch_filter, std::function<void(const change_event&)>)`.
template <class Derived, class Traits> class registry_api {
public:
    using traits_type = Traits;                                      ///< how names compare
    using tree_type = detail::registry_tree<Traits>;                 ///< the in-memory tree (internal)
    using watch_callback = std::function<void(const change_event&)>; ///< see watch()

    // ---- writes (each is a one-operation transaction) -------------------------------------

    /// Creates `path` and any missing parents; no-op if it exists.
    void create_key(std::string_view path) { run_one(transaction().create_key(path)); }
    /// Non-throwing form: errors go to `ec`.
    void create_key(std::string_view path, std::error_code& ec) { run_one(transaction().create_key(path), ec); }

    /// Deletes `path` and everything below it. errc::key_not_found if absent.
    void delete_key(std::string_view path) { run_one(transaction().delete_key(path)); }
    /// Non-throwing form: errors go to `ec`.
    void delete_key(std::string_view path, std::error_code& ec) { run_one(transaction().delete_key(path), ec); }

    /// Creates or overwrites a value; creates missing keys. The empty name is the key's default value.
    void set_value(std::string_view path, std::string_view name, value v) {
        run_one(transaction().set_value(path, name, std::move(v)));
    }
    /// Non-throwing form: errors go to `ec`.
    void set_value(std::string_view path, std::string_view name, value v, std::error_code& ec) {
        run_one(transaction().set_value(path, name, std::move(v)), ec);
    }

    /// Deletes a value. errc::key_not_found / errc::value_not_found if absent.
    void delete_value(std::string_view path, std::string_view name) { run_one(transaction().delete_value(path, name)); }
    /// Non-throwing form: errors go to `ec`.
    void delete_value(std::string_view path, std::string_view name, std::error_code& ec) {
        run_one(transaction().delete_value(path, name), ec);
    }

    /// Applies every operation of `txn` or none; returns the new revision (the current one for
    /// an empty transaction). The error names the failing operation.
    std::uint64_t commit(const transaction& txn) {
        std::error_code ec;
        std::string why;
        auto rev = self().do_commit(txn.operations(), ec, why);
        if (ec) throw error(ec, "commit: " + why);
        return rev;
    }
    /// Non-throwing form: errors go to `ec`.
    std::uint64_t commit(const transaction& txn, std::error_code& ec) {
        std::string why;
        return self().do_commit(txn.operations(), ec, why);
    }

    /// Replaces everything under `path` with an encoded subtree from export_subtree().
    void import_subtree(std::string_view path, std::string_view encoded) {
        run_one(transaction().replace_subtree(path, std::string(encoded)));
    }
    /// Non-throwing form: errors go to `ec`.
    void import_subtree(std::string_view path, std::string_view encoded, std::error_code& ec) {
        run_one(transaction().replace_subtree(path, std::string(encoded)), ec);
    }

    // ---- reads ------------------------------------------------------------------------------

    /// Whether key `path` exists (errc::invalid_path for a malformed path).
    bool key_exists(std::string_view path) const {
        return throwing("key_exists", path, [&](auto& ec) { return key_exists(path, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    bool key_exists(std::string_view path, std::error_code& ec) const {
        return with_key<bool>(path, ec, true, [](const auto* n, std::error_code&) { return n != nullptr; });
    }

    /// The value `name` of key `path`; errc::key_not_found / errc::value_not_found if absent.
    value get_value(std::string_view path, std::string_view name) const {
        return throwing(
            "get_value", path, [&](auto& ec) { return get_value(path, name, ec); }, name);
    }
    /// Non-throwing form: errors go to `ec`.
    value get_value(std::string_view path, std::string_view name, std::error_code& ec) const {
        return with_key<value>(path, ec, false, [&](const auto* n, std::error_code& e) -> value {
            auto it = n->values.find(tree_type::fold(name));
            if (it == n->values.end()) {
                e = errc::value_not_found;
                return {};
            }
            return it->second.data;
        });
    }

    /// Like get_value, but an absent key or value is std::nullopt rather than an error.
    std::optional<value> find_value(std::string_view path, std::string_view name) const {
        std::error_code ec;
        auto v = get_value(path, name, ec);
        if (ec == errc::key_not_found || ec == errc::value_not_found) return std::nullopt;
        detail::throw_if(ec, "find_value \"" + std::string(path) + "\"");
        return v;
    }

    /// Names of the direct subkeys (stored case), in folded-name order.
    std::vector<std::string> subkeys(std::string_view path) const {
        return throwing("subkeys", path, [&](auto& ec) { return subkeys(path, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<std::string> subkeys(std::string_view path, std::error_code& ec) const {
        return with_key<std::vector<std::string>>(path, ec, false, [](const auto* n, std::error_code&) {
            std::vector<std::string> out;
            out.reserve(n->children.size());
            for (auto& [k, c] : n->children)
                out.push_back(c->name);
            return out;
        });
    }

    /// The key's values (stored-case names), in folded-name order.
    std::vector<value_entry> values(std::string_view path) const {
        return throwing("values", path, [&](auto& ec) { return values(path, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<value_entry> values(std::string_view path, std::error_code& ec) const {
        return with_key<std::vector<value_entry>>(path, ec, false, [](const auto* n, std::error_code&) {
            std::vector<value_entry> out;
            out.reserve(n->values.size());
            for (auto& [k, slot] : n->values)
                out.push_back({slot.name, slot.data});
            return out;
        });
    }

    /// Name, last-write revision and counts of a key.
    key_info info(std::string_view path) const {
        return throwing("info", path, [&](auto& ec) { return info(path, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    key_info info(std::string_view path, std::error_code& ec) const {
        return with_key<key_info>(path, ec, false, [](const auto* n, std::error_code&) {
            return key_info{n->name, n->revision, n->children.size(), n->values.size()};
        });
    }

    /// Revision of the last committed transaction (0 for a new registry).
    std::uint64_t revision() const {
        return self().read([](const tree_type& t) { return t.revision(); });
    }

    /// Encodes `path`'s values and subkeys (without revisions) in quorumreg's compact,
    /// versioned, CRC-checked subtree format. Equal content encodes to equal bytes.
    std::string export_subtree(std::string_view path) const {
        return throwing("export_subtree", path, [&](auto& ec) { return export_subtree(path, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::string export_subtree(std::string_view path, std::error_code& ec) const {
        return with_key<std::string>(
            path, ec, false, [](const auto* n, std::error_code&) { return tree_type::encode_subtree(*n, false); });
    }

    // ---- watches ------------------------------------------------------------------------------

    /// Calls `cb` for every committed change to `path` (scope key) or anywhere below it (scope
    /// subtree). The key need not exist yet. The callback stops when the subscription dies.
    [[nodiscard]] subscription watch(std::string_view path, watch_scope scope, watch_callback cb) {
        std::error_code ec;
        auto s = watch(path, scope, std::move(cb), ec);
        detail::throw_if(ec, "watch \"" + std::string(path) + "\"");
        return s;
    }
    /// Non-throwing form: errors go to `ec`.
    [[nodiscard]] subscription watch(std::string_view path, watch_scope scope, watch_callback cb, std::error_code& ec) {
        std::vector<std::string_view> parts;
        ec = detail::split_path(path, self().read([](const tree_type& t) { return t.limits(); }), parts);
        if (ec) return {};
        return self().do_watch({detail::folded_parts<Traits>(path), scope}, std::move(cb));
    }

protected:
    ~registry_api() = default;

private:
    Derived& self() noexcept { return static_cast<Derived&>(*this); }
    const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

    void run_one(const transaction& txn) {
        std::error_code ec;
        std::string why;
        self().do_commit(txn.operations(), ec, why);
        if (ec) throw error(ec, why);
    }
    void run_one(const transaction& txn, std::error_code& ec) {
        std::string why;
        self().do_commit(txn.operations(), ec, why);
    }

    template <class F> auto throwing(const char* op, std::string_view path, F&& f, std::string_view name = {}) const {
        std::error_code ec;
        auto r = f(ec);
        if (ec) {
            std::string what = std::string(op) + " \"" + std::string(path) + "\"";
            if (!name.empty()) what += " \"" + std::string(name) + "\"";
            throw error(ec, what);
        }
        return r;
    }

    /// Runs f(node*, ec) on the key at `path` under the read lock. Missing key: with
    /// `allow_missing`, f gets nullptr; otherwise ec = key_not_found.
    template <class R, class F>
    R with_key(std::string_view path, std::error_code& ec, bool allow_missing, F&& f) const {
        ec.clear();
        return self().read([&](const tree_type& t) -> R {
            std::vector<std::string_view> parts;
            if ((ec = detail::split_path(path, t.limits(), parts))) return R{};
            const auto* n = t.find(parts);
            if (!n && !allow_missing) {
                ec = errc::key_not_found;
                return R{};
            }
            return f(n, ec);
        });
    }
};

/// The in-memory registry engine. See the threading contract at the top of this file.
template <class Traits = case_insensitive_traits>
class basic_registry : public registry_api<basic_registry<Traits>, Traits> {
    friend class registry_api<basic_registry<Traits>, Traits>;
    friend struct detail::engine_access;

public:
    using tree_type = detail::registry_tree<Traits>; ///< the in-memory tree (internal)

    /// An empty in-memory registry at revision 0.
    explicit basic_registry(registry_limits limits = {}) : tree_(limits) {}
    basic_registry(const basic_registry&) = delete;
    basic_registry& operator=(const basic_registry&) = delete;

    /// The limits every write is checked against.
    const registry_limits& limits() const noexcept { return tree_.limits(); }

private:
    // ---- engine hooks for registry_api (private: the registry interface is the way in) ----
    template <class F> auto read(F&& f) const {
        std::shared_lock lk(mu_);
        return f(tree_);
    }

    std::uint64_t do_commit(const std::vector<operation>& ops, std::error_code& ec, std::string& why) {
        std::vector<change_event> events;
        std::uint64_t rev;
        {
            std::unique_lock lk(mu_);
            ec = tree_.apply(ops, events, why);
            rev = tree_.revision();
            if (!ec) events_.enqueue(std::move(events));
        }
        if (!ec) events_.drain();
        return ec ? 0 : rev;
    }

    subscription do_watch(detail::watch_filter f, std::function<void(const change_event&)> cb) {
        return events_.subscribe(std::move(f), std::move(cb));
    }

    mutable std::shared_mutex mu_;
    tree_type tree_;
    detail::event_dispatcher<Traits> events_;
};

/// The default registry: case-insensitive, case-preserving names.
using registry = basic_registry<case_insensitive_traits>;

} // namespace quorumreg
