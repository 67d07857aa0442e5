// quorumreg — the quorum store interface: the shared, authoritative place where checkpoints
// and the cluster hive live.
//
// Design choice: an abstract interface rather than a C++20 concept. Applications and the qreg
// tool pick the backend at run time (`--store dir:PATH` / `--store etcd:URL,...`), the etcd
// backend's Beast/Asio code then stays out of every translation unit that does not open one,
// and the cost of a virtual call is nothing next to an fsync or a network round trip.
//
// Semantics are identical across backends (one conformance suite runs against all of them):
// - Keys and values are byte strings. Every successful write advances one store-wide,
//   monotonic revision (etcd's model); a key remembers create_revision, mod_revision and
//   version (number of writes since creation).
// - Writes are compare-and-swap capable and multi-key transactions are all-or-nothing.
// - A write whose deadline passes after the request may have reached the store reports
//   errc::unknown_outcome, never a plain failure: re-read before retrying. Retries done inside
//   the library are conditional (on a revision) or idempotent.
// - Loss of quorum reports errc::quorum_unavailable within the configured deadline.
// - watch(prefix, from_revision) delivers every event with revision >= from_revision in
//   revision order, exactly once, resuming internally after disconnects; if history was
//   compacted past from_revision, the callback receives errc::watch_canceled and the watch ends.
// - Leases: keys attached to a lease vanish when it expires or is revoked. A named lock is a
//   key created only if absent, attached to the caller's lease; its create_revision is the
//   fencing token, usable as a compare (key_compare::create_revision_is) in transactions.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/subscription.hpp>
#include <quorumreg/error.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

namespace detail {
/// 128 random bits as 32 hex digits: the identity of a newly created store.
inline std::string random_store_identity() { return random_hex_id(); }
} // namespace detail

/// A store-wide revision: every write that changes something advances it (etcd's revision).
using store_revision = std::int64_t;
/// A lease's id (0: no lease).
using lease_id = std::int64_t;

/// One stored key.
struct key_value {
    std::string key;                    ///< the key, bytes
    std::string value;                  ///< the value, bytes
    store_revision create_revision = 0; ///< revision of the write that created it
    store_revision mod_revision = 0;    ///< revision of its last write
    std::int64_t version = 0;           ///< writes since creation (1 after create)
    lease_id lease = 0;                 ///< 0: not attached to a lease
    /// Member-wise equality.
    friend bool operator==(const key_value&, const key_value&) = default;
};

/// A condition on one key, evaluated atomically inside a transaction.
struct key_compare {
    /// What is compared (one factory each, below).
    enum class target { exists, absent, mod_revision_is, create_revision_is, value_is };
    std::string key;              ///< the key compared
    target what = target::exists; ///< the condition
    store_revision revision = 0;  ///< mod_revision_is / create_revision_is
    std::string value;            ///< value_is

    /// The key exists.
    static key_compare exists(std::string k) { return {std::move(k), target::exists, 0, {}}; }
    /// The key does not exist.
    static key_compare absent(std::string k) { return {std::move(k), target::absent, 0, {}}; }
    /// The key's last write was at revision `r` (a compare-and-swap on a version seen).
    static key_compare mod_revision_is(std::string k, store_revision r) {
        return {std::move(k), target::mod_revision_is, r, {}};
    }
    /// The key was created at revision `r` (a fencing token: the same lock, not a new one).
    static key_compare create_revision_is(std::string k, store_revision r) {
        return {std::move(k), target::create_revision_is, r, {}};
    }
    /// The key exists with exactly the value `v`.
    static key_compare value_is(std::string k, std::string v) {
        return {std::move(k), target::value_is, 0, std::move(v)};
    }
};

/// A write inside a transaction.
struct store_op {
    /// The three writes (one factory each, below).
    enum class kind { put, erase, erase_prefix };
    kind what = kind::put; ///< which write
    std::string key;       ///< the prefix for erase_prefix
    std::string value;     ///< put only
    lease_id lease = 0;    ///< put only: attach the key to this lease (0: none)

    /// Writes `v` at `k`, attached to lease `l` (0: none).
    static store_op put(std::string k, std::string v, lease_id l = 0) {
        return {kind::put, std::move(k), std::move(v), l};
    }
    /// Deletes `k` (absent: nothing happens).
    static store_op erase(std::string k) { return {kind::erase, std::move(k), {}, 0}; }
    /// Deletes every key starting with `p`.
    static store_op erase_prefix(std::string p) { return {kind::erase_prefix, std::move(p), {}, 0}; }
};

/// A transaction: if every compare holds, apply `on_success`, else `on_failure`, atomically.
struct store_txn {
    std::vector<key_compare> compares; ///< all must hold for on_success to run
    std::vector<store_op> on_success;  ///< applied if every compare holds
    std::vector<store_op> on_failure;  ///< applied otherwise
};

/// What commit() did: which branch ran, and the revision after it.
struct txn_result {
    bool succeeded = false;      ///< did every compare hold?
    store_revision revision = 0; ///< store revision after the transaction
};

/// One page of a prefix listing.
struct range_result {
    std::vector<key_value> kvs;  ///< in key order
    bool more = false;           ///< more keys follow; continue with start_after = kvs.back().key
    store_revision revision = 0; ///< store revision the page was read at
};

/// One change seen by a watch.
struct watch_event {
    /// A key written, or a key deleted (also by lease expiry).
    enum class kind { put, erase };
    kind what = kind::put;       ///< which of the two
    key_value kv;                ///< for erase: key and mod_revision (the deletion's revision)
    store_revision revision = 0; ///< revision of the write that caused the event
};

/// Watch callback: events in revision order; a non-empty error_code ends the watch
/// (errc::watch_canceled when history from the requested revision is gone).
using watch_handler = std::function<void(const std::vector<watch_event>&, std::error_code)>;

/// Who holds an ownership lock: the value of every lock key (acquire_lock, checkpoint owner
/// keys, ownership). One format, written by encode_owner_record and read by
/// decode_owner_record only: "<node>#<lease in decimal>" (the node may itself contain '#').
struct owner_record {
    std::string node;   ///< the owner's node name ("" if the taker gave none)
    lease_id lease = 0; ///< the lease the lock key is attached to
    /// Member-wise equality.
    friend bool operator==(const owner_record&, const owner_record&) = default;
};

inline std::string encode_owner_record(const owner_record& r) { return r.node + "#" + std::to_string(r.lease); }

/// Parses a lock key's value. A bare decimal lease (what acquire_lock wrote before the one
/// format) decodes as {"", lease}, never as a node name; anything else without a valid
/// "#<lease>" suffix is std::nullopt.
inline std::optional<owner_record> decode_owner_record(std::string_view v) {
    auto hash = v.rfind('#');
    auto digits = hash == std::string_view::npos ? v : v.substr(hash + 1);
    if (digits.empty() || digits.front() < '0' || digits.front() > '9') return std::nullopt;
    lease_id lease = 0; // etcd's lease ids use all 63 bits: up to 19 digits
    auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), lease);
    if (err != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
    owner_record r;
    if (hash != std::string_view::npos) r.node = std::string(v.substr(0, hash));
    r.lease = lease;
    return r;
}

/// The quorum store interface. Thread-safe: every member may be called concurrently.
/// Non-throwing overloads are the primitive; the throwing ones wrap them.
///
/// A non-virtual public interface over protected virtual `do_*` hooks: a backend overrides
/// the hooks and inherits every public overload (no `using` lists, no forwarding shims), and
/// the base is the one place where a call could be checked or counted.
class quorum_store {
public:
    virtual ~quorum_store() = default;

    /// Human description, e.g. "dir:/srv/quorum" or "etcd:http://127.0.0.1:2379,...".
    std::string describe() const { return do_describe(); }

    /// The store's identity: an id written when the store was created, the same for every
    /// client of one store and different for a store re-created in its place. Nodes record it
    /// and check it on every start (checkpoint_manager: errc::identity_mismatch).
    std::string identity(std::error_code& ec) { return do_identity(ec); }

    /// The key, or std::nullopt if absent.
    std::optional<key_value> get(std::string_view key, std::error_code& ec) { return do_get(key, ec); }

    /// Keys starting with `prefix`, in key order, strictly after `start_after` (empty: from the
    /// start), at most `limit` (0: no limit).
    range_result range(std::string_view prefix, std::string_view start_after, std::size_t limit, std::error_code& ec) {
        return do_range(prefix, start_after, limit, ec);
    }

    /// Unconditional put; returns the new store revision.
    store_revision put(std::string_view key, std::string_view value, lease_id lease, std::error_code& ec) {
        return do_put(key, value, lease, ec);
    }

    /// Deletes one key; returns the new revision, or the current one if the key was absent.
    store_revision erase(std::string_view key, std::error_code& ec) { return do_erase(key, ec); }

    /// All-or-nothing conditional transaction. A compare that does not hold is not an error:
    /// the result says succeeded = false (and on_failure ran).
    txn_result commit(const store_txn& txn, std::error_code& ec) { return do_commit(txn, ec); }

    /// Current store revision.
    store_revision revision(std::error_code& ec) { return do_revision(ec); }

    /// Watch every key under `prefix` from `from_revision` (0: from now). The handler runs on a
    /// store-owned thread; the subscription's destruction stops it (see subscription.hpp).
    [[nodiscard]] subscription watch(std::string_view prefix, store_revision from_revision, watch_handler handler,
                                     std::error_code& ec) {
        return do_watch(prefix, from_revision, std::move(handler), ec);
    }

    // ---- leases and ownership -----------------------------------------------------------------

    /// A lease that expires `ttl` after its last keep-alive. Returns its id.
    lease_id grant_lease(std::chrono::milliseconds ttl, std::error_code& ec) { return do_grant_lease(ttl, ec); }
    /// Extends the lease by its TTL; errc::lease_expired if it is gone.
    void keep_alive(lease_id lease, std::error_code& ec) { do_keep_alive(lease, ec); }
    /// Ends the lease now, deleting its keys; revoking an unknown lease is not an error.
    void revoke_lease(lease_id lease, std::error_code& ec) { do_revoke_lease(lease, ec); }
    /// Remaining time to live; errc::lease_expired if it is gone.
    std::chrono::milliseconds lease_ttl(lease_id lease, std::error_code& ec) { return do_lease_ttl(lease, ec); }

    /// Deadline applied to each operation (default 5 s). Loss of quorum or an unreachable store
    /// is reported within it.
    void set_deadline(std::chrono::milliseconds d) { do_set_deadline(d); }
    /// The per-operation deadline now in force.
    std::chrono::milliseconds deadline() const { return do_deadline(); }

    // ---- helpers built on the primitives above (same for every backend) -----------------------

    /// Create-only put: succeeds only if `key` is absent. Returns the new revision, or
    /// errc::compare_failed if the key exists.
    store_revision create(std::string_view key, std::string_view value, lease_id lease, std::error_code& ec) {
        store_txn t;
        t.compares.push_back(key_compare::absent(std::string(key)));
        t.on_success.push_back(store_op::put(std::string(key), std::string(value), lease));
        return checked(t, ec);
    }

    /// Compare-and-swap on mod_revision: succeeds only if `key`'s mod_revision is `expected`
    /// (0: the key must be absent). errc::compare_failed otherwise.
    store_revision put_if(std::string_view key, std::string_view value, store_revision expected, lease_id lease,
                          std::error_code& ec) {
        store_txn t;
        t.compares.push_back(expected == 0 ? key_compare::absent(std::string(key))
                                           : key_compare::mod_revision_is(std::string(key), expected));
        t.on_success.push_back(store_op::put(std::string(key), std::string(value), lease));
        return checked(t, ec);
    }

    /// Deletes `key` only if its mod_revision is `expected`; errc::compare_failed otherwise.
    store_revision erase_if(std::string_view key, store_revision expected, std::error_code& ec) {
        store_txn t;
        t.compares.push_back(key_compare::mod_revision_is(std::string(key), expected));
        t.on_success.push_back(store_op::erase(std::string(key)));
        return checked(t, ec);
    }

    /// Every key under `prefix` (all pages).
    std::vector<key_value> list(std::string_view prefix, std::error_code& ec) {
        std::vector<key_value> out;
        std::string after;
        while (true) {
            auto page = range(prefix, after, 1000, ec);
            if (ec) return {};
            for (auto& kv : page.kvs)
                out.push_back(std::move(kv));
            if (!page.more || out.empty()) return out;
            after = out.back().key;
        }
    }

    /// Takes the named ownership lock for `lease`: creates `lock_key` attached to the lease if
    /// absent, its value the owner record of (`node`, `lease`) (encode_owner_record). Returns the
    /// fencing token (the key's create_revision). If another lease holds it,
    /// errc::already_exists. Taking a lock the same lease already holds returns its token.
    store_revision acquire_lock(std::string_view lock_key, lease_id lease, std::string_view node, std::error_code& ec) {
        store_txn t;
        t.compares.push_back(key_compare::absent(std::string(lock_key)));
        t.on_success.push_back(
            store_op::put(std::string(lock_key), encode_owner_record({std::string(node), lease}), lease));
        commit(t, ec);
        if (ec) return 0;
        auto kv = get(lock_key, ec);
        if (ec) return 0;
        if (!kv) { // expired between the two calls
            ec = errc::lease_expired;
            return 0;
        }
        if (kv->lease != lease) {
            ec = errc::already_exists;
            return 0;
        }
        return kv->create_revision;
    }
    /// acquire_lock with no node name (the record then names only the lease).
    store_revision acquire_lock(std::string_view lock_key, lease_id lease, std::error_code& ec) {
        return acquire_lock(lock_key, lease, {}, ec);
    }

    /// Releases the lock if `token` still owns it (a stale token is a no-op: never deletes a
    /// newer owner's lock).
    void release_lock(std::string_view lock_key, store_revision token, std::error_code& ec) {
        store_txn t;
        t.compares.push_back(key_compare::create_revision_is(std::string(lock_key), token));
        t.on_success.push_back(store_op::erase(std::string(lock_key)));
        commit(t, ec);
    }

protected:
    /// Runs `f(ec)` and throws quorumreg::error if it set `ec`: the one wrapper behind every
    /// throwing form (what() = operation, key, store and the backend's detail).
    template <class F> auto thrown(const char* op, std::string_view key, F&& f) {
        std::error_code ec;
        last_error_detail().clear();
        auto r = f(ec);
        if (ec) {
            std::string what = std::string(op);
            if (!key.empty()) what += " \"" + std::string(key) + "\"";
            what += " on " + describe();
            if (!last_error_detail().empty()) what += " (" + last_error_detail() + ")";
            throw error(ec, what);
        }
        return r;
    }

public:
    // ---- throwing forms --------------------------------------------------------------------------
    /** @name Throwing forms
     *  Each is the `std::error_code&` overload of the same name with the same contract, throwing
     *  quorumreg::error instead of setting the code; what() names the operation, the key (or
     *  lease) and the store, followed by the backend's own text, e.g. `put "cfg/port" on
     *  dir:/srv/q (write /srv/q/quorumreg.log: No space left on device)`. */
    ///@{
    /// Throwing form of identity(ec); every member of this group is the `error_code&` overload
    /// of its name, throwing quorumreg::error (operation, key or lease, store, backend text).
    std::string identity() {
        return thrown("identity", "", [&](std::error_code& ec) { return identity(ec); });
    }
    std::optional<key_value> get(std::string_view key) {
        return thrown("get", key, [&](std::error_code& ec) { return get(key, ec); });
    }
    range_result range(std::string_view prefix, std::string_view start_after = {}, std::size_t limit = 0) {
        return thrown("range", prefix, [&](std::error_code& ec) { return range(prefix, start_after, limit, ec); });
    }
    std::vector<key_value> list(std::string_view prefix) {
        return thrown("list", prefix, [&](std::error_code& ec) { return list(prefix, ec); });
    }
    store_revision put(std::string_view key, std::string_view value, lease_id lease = 0) {
        return thrown("put", key, [&](std::error_code& ec) { return put(key, value, lease, ec); });
    }
    store_revision erase(std::string_view key) {
        return thrown("erase", key, [&](std::error_code& ec) { return erase(key, ec); });
    }
    txn_result commit(const store_txn& txn) {
        return thrown("commit", "", [&](std::error_code& ec) { return commit(txn, ec); });
    }
    store_revision revision() {
        return thrown("revision", "", [&](std::error_code& ec) { return revision(ec); });
    }
    store_revision create(std::string_view key, std::string_view value, lease_id lease = 0) {
        return thrown("create", key, [&](std::error_code& ec) { return create(key, value, lease, ec); });
    }
    store_revision put_if(std::string_view key, std::string_view value, store_revision expected, lease_id lease = 0) {
        return thrown("put_if", key, [&](std::error_code& ec) { return put_if(key, value, expected, lease, ec); });
    }
    store_revision erase_if(std::string_view key, store_revision expected) {
        return thrown("erase_if", key, [&](std::error_code& ec) { return erase_if(key, expected, ec); });
    }
    [[nodiscard]] subscription watch(std::string_view prefix, store_revision from_revision, watch_handler h) {
        return thrown("watch", prefix,
                      [&](std::error_code& ec) { return watch(prefix, from_revision, std::move(h), ec); });
    }
    lease_id grant_lease(std::chrono::milliseconds ttl) {
        return thrown("grant_lease", "", [&](std::error_code& ec) { return grant_lease(ttl, ec); });
    }
    void keep_alive(lease_id lease) {
        thrown("keep_alive", std::to_string(lease), [&](std::error_code& ec) {
            keep_alive(lease, ec);
            return 0;
        });
    }
    void revoke_lease(lease_id lease) {
        thrown("revoke_lease", std::to_string(lease), [&](std::error_code& ec) {
            revoke_lease(lease, ec);
            return 0;
        });
    }
    std::chrono::milliseconds lease_ttl(lease_id lease) {
        return thrown("lease_ttl", std::to_string(lease), [&](std::error_code& ec) { return lease_ttl(lease, ec); });
    }
    store_revision acquire_lock(std::string_view lock_key, lease_id lease, std::string_view node = {}) {
        return thrown("acquire_lock", lock_key,
                      [&](std::error_code& ec) { return acquire_lock(lock_key, lease, node, ec); });
    }
    void release_lock(std::string_view lock_key, store_revision token) {
        thrown("release_lock", lock_key, [&](std::error_code& ec) {
            release_lock(lock_key, token, ec);
            return 0;
        });
    }

    ///@}

protected:
    // ---- the backend hooks: one per primitive above, same contract ---------------------------
    /** @name Backend hooks
     *  What a backend overrides: one hook per primitive of the public interface, with that
     *  primitive's contract (`do_get` is get(key, ec), and so on). Called only through the
     *  public members. */
    ///@{
    /// Hook of describe(); every member of this group is the hook of the public member named
    /// without `do_`, with its contract.
    virtual std::string do_describe() const = 0;
    virtual std::string do_identity(std::error_code& ec) = 0;
    virtual std::optional<key_value> do_get(std::string_view key, std::error_code& ec) = 0;
    virtual range_result do_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                                  std::error_code& ec) = 0;
    /// Default: a one-operation commit (a backend with a cheaper native put overrides it).
    virtual store_revision do_put(std::string_view key, std::string_view value, lease_id lease, std::error_code& ec) {
        store_txn t;
        t.on_success.push_back(store_op::put(std::string(key), std::string(value), lease));
        return one_op_revision(commit(t, ec), ec);
    }
    /// Default: a one-operation commit.
    virtual store_revision do_erase(std::string_view key, std::error_code& ec) {
        store_txn t;
        t.on_success.push_back(store_op::erase(std::string(key)));
        return one_op_revision(commit(t, ec), ec);
    }
    virtual txn_result do_commit(const store_txn& txn, std::error_code& ec) = 0;
    virtual store_revision do_revision(std::error_code& ec) = 0;
    virtual subscription do_watch(std::string_view prefix, store_revision from_revision, watch_handler handler,
                                  std::error_code& ec) = 0;
    virtual lease_id do_grant_lease(std::chrono::milliseconds ttl, std::error_code& ec) = 0;
    virtual void do_keep_alive(lease_id lease, std::error_code& ec) = 0;
    virtual void do_revoke_lease(lease_id lease, std::error_code& ec) = 0;
    virtual std::chrono::milliseconds do_lease_ttl(lease_id lease, std::error_code& ec) = 0;
    virtual void do_set_deadline(std::chrono::milliseconds d) = 0;
    virtual std::chrono::milliseconds do_deadline() const = 0;
    ///@}

    /// The revision a one-operation write reports: the commit's, also when its outcome is
    /// unknown (the write may have been applied); 0 on any other failure.
    static store_revision one_op_revision(const txn_result& r, const std::error_code& ec) {
        return ec && ec != errc::unknown_outcome ? 0 : r.revision;
    }

    /// Runs a single-branch transaction and maps "compare did not hold" to errc::compare_failed.
    store_revision checked(const store_txn& t, std::error_code& ec) {
        auto r = commit(t, ec);
        if (ec) return 0;
        if (!r.succeeded) {
            ec = errc::compare_failed;
            return 0;
        }
        return r.revision;
    }

    /// Backends record the backend's own error text here (kept for people, shown by the
    /// throwing forms). Thread-local: it describes the calling thread's last failure.
    static std::string& last_error_detail() {
        thread_local std::string detail;
        return detail;
    }
};

} // namespace quorumreg
