// quorumreg — cluster_writer: writes to cluster-wide keys that never get lost because the
// replication service was not up yet (KB Q320331, fixed by design).
//
// @code
// quorumreg::cluster_writer names(local_hive, {.node = "node1"});
// names.put("name_mapping/alice", "uid=1000");   // replication not online: journaled durably
// controller.add_service("cluster", {.start = [&] { names.attach(store); },
//                                    .stop  = [&] { names.detach(); }});
// controller.start("cluster");                   // attach(): the journal is replayed in order
// @endcode
//
// Semantics
// - While detached (the replication service is not online), put()/erase() append to a
//   pre-init journal in the local hive: durable before the call returns, ordered by a
//   sequence number. Each entry records the store revision of the key this node last saw
//   (its base), or 0 if the key must not exist (never seen, or last seen erased).
// - attach(store) replays the journal in order. Each entry is a transaction conditional on
//   the key still being at its base: applied if nobody changed it meanwhile, else it is a
//   conflict — the store keeps the other writer's value, the local value is kept as a
//   conflict record in the hive (listed by conflicts()), and observers are told. A later entry
//   for the same key continues from where the replay of the earlier one left it (after an
//   erase: "must not exist"); once a key conflicted, the entries journaled before the conflict
//   was found conflict too. Nothing is silently overwritten or dropped. An unreachable store
//   stops the replay (the rest stays journaled) and attach reports the error, so the
//   replication service fails to start.
// - Replay exactly once: each entry's store transaction also creates a marker
//   `<applied_prefix><journal id>/<sequence>` and requires it to be absent; the hive then notes
//   the entry done (journal entry deleted, the key's replay state recorded) in one hive
//   transaction. A replay cut between the two (store unreachable, unknown outcome, crash) finds
//   the marker on the next attach(): the entry counts as applied, never as a conflict with
//   itself, and is never applied twice. Markers are swept after a complete replay. The
//   journal id is 128 random bits made when the journal is first written.
// - While attached, put()/erase() go to the store directly (errors are reported, not queued).
// - Store keys live under options.prefix; journal, conflicts and base revisions under
//   options.local_key in the hive.
//
// Threading
// - Every member may be called from any thread. One writer serializes put/erase/get/attach/
//   detach/pending on one mutex: a put() issued while attach() replays waits for the replay
//   and then goes to the store, so a node's writes keep their order.
// - on_conflict handlers run on the thread that called attach(), after the replay and
//   outside the writer's locks (they may call back into the writer).
// - Writers on one hive with the same local_key (threads, several instances, processes)
//   share one journal: each journaled write takes its sequence number in an optimistic hive
//   transaction (the counter's key must be unchanged and the entry absent, else it retries),
//   so no two writes share a number. Replays of one journal are serialized within a process;
//   processes sharing a journal must not attach() at the same time (give each its own
//   local_key).
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/quorum_store.hpp>

#include <charconv>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quorumreg {

/// Settings of a cluster_writer.
struct cluster_writer_options {
    std::string node = "node";                          ///< recorded in conflict records
    std::string prefix = "quorumreg/cluster/";          ///< store prefix of the cluster-wide keys
    std::string local_key = "QuorumReg\\ClusterWriter"; ///< hive key for journal, bases, conflicts
    /// Store prefix of the replay markers (outside `prefix`, so listings of the cluster-wide keys
    /// never show them).
    std::string applied_prefix = "quorumreg/cluster-applied/";
};

/// A journaled write that could not be applied because the key changed in the store.
struct write_conflict {
    std::uint64_t sequence = 0;         ///< journal sequence of the local write
    std::string key;                    ///< the store key
    std::optional<std::string> local;   ///< the local value (nullopt: the local write was an erase)
    std::optional<std::string> remote;  ///< the store's value at replay (nullopt: erased)
    store_revision remote_revision = 0; ///< the store key's mod_revision at replay
    std::string node;                   ///< the node that journaled the write
};

/// A write waiting in the pre-init journal.
struct pending_write {
    std::uint64_t sequence = 0;       ///< its journal sequence (replay order)
    std::string key;                  ///< the store key
    std::optional<std::string> value; ///< nullopt: erase
    store_revision base = 0;          ///< as journaled; 0: the key must not exist
};

namespace detail {
/// One replay mutex per (hive object, local_key) in this process: two writers sharing a
/// journal never replay it at the same time.
inline std::shared_ptr<std::mutex> journal_replay_mutex(const void* hive, const std::string& local_key) {
    static std::mutex mu;
    static std::map<std::pair<const void*, std::string>, std::weak_ptr<std::mutex>> all;
    std::lock_guard lk(mu);
    for (auto it = all.begin(); it != all.end();)
        it = it->second.expired() ? all.erase(it) : std::next(it);
    auto& slot = all[{hive, local_key}];
    auto m = slot.lock();
    if (!m) slot = m = std::make_shared<std::mutex>();
    return m;
}
} // namespace detail

/// Writes cluster-wide keys through a local journal while replication is down (see the header
/// comment; `cluster_writer` is basic_cluster_writer<hive>).
template <class Hive = hive> class basic_cluster_writer {
public:
    using conflict_handler = std::function<void(const write_conflict&)>; ///< see on_conflict()

    /// `local` must outlive the writer.
    explicit basic_cluster_writer(Hive& local, cluster_writer_options opts = {})
        : hive_(local), opts_(std::move(opts)), observers_(std::make_shared<hub>()),
          replay_mu_(detail::journal_replay_mutex(&local, opts_.local_key)) {}

    basic_cluster_writer(const basic_cluster_writer&) = delete;
    basic_cluster_writer& operator=(const basic_cluster_writer&) = delete;

    /// Writes `value` to cluster-wide `key`: journaled while detached, direct while attached.
    void put(std::string_view key, std::string_view value) {
        run("put", key, [&](std::error_code& ec) { write(key, std::string(value), ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    void put(std::string_view key, std::string_view value, std::error_code& ec) { write(key, std::string(value), ec); }

    /// Erases `key` in the store, or journals the erase while detached (as put()).
    void erase(std::string_view key) {
        run("erase", key, [&](std::error_code& ec) { write(key, std::nullopt, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    void erase(std::string_view key, std::error_code& ec) { write(key, std::nullopt, ec); }

    /// The value as this node knows it: the store's while attached; while detached, the newest
    /// journaled write, else nullopt (unknown until replication is up).
    std::optional<std::string> get(std::string_view key) {
        std::error_code ec;
        auto v = get(key, ec);
        detail::throw_if(ec, "cluster_writer get \"" + std::string(key) + "\"");
        return v;
    }
    /// Non-throwing form: errors go to `ec`.
    std::optional<std::string> get(std::string_view key, std::error_code& ec) {
        ec.clear();
        std::lock_guard lk(mu_);
        if (store_) {
            auto kv = store_->get(opts_.prefix + std::string(key), ec);
            if (ec || !kv) return std::nullopt;
            return kv->value;
        }
        std::optional<std::string> out;
        for (auto& p : pending_locked(ec))
            if (p.key == key) out = p.value;
        return out;
    }

    /// The replication service came online: replay the journal in order, then write directly.
    void attach(quorum_store& store) {
        run("attach", "", [&](std::error_code& ec) { attach(store, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    void attach(quorum_store& store, std::error_code& ec) {
        ec.clear();
        std::vector<write_conflict> found;
        {
            std::lock_guard lk(mu_);
            std::lock_guard replay(*replay_mu_);
            auto entries = pending_locked(ec);
            if (ec) return;
            if (!entries.empty()) ensure_journal_id(ec); // a journal written before ids existed
            if (ec) return;
            for (auto& p : entries) {
                replay_one(store, p, found, ec);
                if (ec) break; // the rest stays journaled, in order
            }
            if (!ec && !entries.empty()) sweep_markers(store);
            if (!ec) store_ = &store;
        }
        for (auto& c : found)
            notify(c);
    }

    /// The replication service went offline: later writes are journaled again.
    void detach() {
        std::lock_guard lk(mu_);
        store_ = nullptr;
    }

    /// Whether writes go straight to the store (attach() succeeded and detach() was not called).
    bool attached() const {
        std::lock_guard lk(mu_);
        return store_ != nullptr;
    }

    /// Writes still waiting in the journal, in order.
    std::vector<pending_write> pending() {
        std::error_code ec;
        auto v = pending(ec);
        detail::throw_if(ec, "cluster_writer pending");
        return v;
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<pending_write> pending(std::error_code& ec) {
        ec.clear();
        std::lock_guard lk(mu_);
        return pending_locked(ec);
    }

    /// Conflicts kept so far (durable in the hive until discarded). A record that cannot be
    /// read (not written by a cluster_writer) is errc::corrupt_data, naming it.
    std::vector<write_conflict> conflicts() {
        std::error_code ec;
        std::string why;
        auto v = conflicts(ec, why);
        if (ec) throw error(ec, "cluster_writer conflicts" + (why.empty() ? std::string() : ": " + why));
        return v;
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<write_conflict> conflicts(std::error_code& ec) {
        std::string why;
        return conflicts(ec, why);
    }

    /// Forgets a conflict record once it has been dealt with; errc::not_found if there is none
    /// with that sequence number.
    void discard_conflict(std::uint64_t sequence) {
        std::error_code ec;
        discard_conflict(sequence, ec);
        if (ec) throw error(ec, "cluster_writer discard_conflict " + std::to_string(sequence));
    }
    /// Non-throwing form: errors go to `ec`.
    void discard_conflict(std::uint64_t sequence, std::error_code& ec) {
        ec.clear();
        hive_.delete_key(opts_.local_key + "\\Conflicts\\" + seq_name(sequence), ec);
        if (ec == errc::key_not_found) ec = errc::not_found;
    }

    /// Observers of conflicts found during replay (called after the replay, outside locks).
    [[nodiscard]] subscription on_conflict(conflict_handler h) { return observers_->subscribe(0, std::move(h)); }

private:
    using hub = detail::watch_hub<write_conflict, int>;

    /// Where the replay of a key stands, kept in the hive (Bases\<key>) so that a replay cut
    /// half way resumes exactly where it stopped.
    struct key_line {
        store_revision revision = 0; ///< the base for the key's next write; 0: must not exist
        std::uint64_t through = 0;   ///< journal entry whose replay set this (0: a direct write)
        std::uint64_t horizon = 0;   ///< if that replay conflicted: entries below this conflict too
    };

    /// Retries of an optimistic hive transaction that lost to another writer (each loss means
    /// another writer made progress, so this bound is never reached in practice).
    static constexpr int max_attempts = 10000;

    std::vector<write_conflict> conflicts(std::error_code& ec, std::string& why) {
        ec.clear();
        std::vector<write_conflict> out;
        auto root = opts_.local_key + "\\Conflicts";
        auto names = hive_.subkeys(root, ec);
        if (ec == errc::key_not_found) { // no conflict was ever kept
            ec.clear();
            return out;
        }
        if (ec) return out;
        for (auto& name : names) {
            auto k = root + "\\" + name;
            write_conflict c;
            auto [end, perr] = std::from_chars(name.data(), name.data() + name.size(), c.sequence);
            try {
                if (perr != std::errc() || end != name.data() + name.size()) throw error(errc::corrupt_data);
                c.key = str(k, "key");
                if (auto v = hive_.find_value(k, "local")) c.local = bytes(*v);
                if (auto v = hive_.find_value(k, "remote")) c.remote = bytes(*v);
                c.remote_revision = static_cast<store_revision>(hive_.get_value(k, "remote_revision").as_qword());
                c.node = str(k, "node");
            } catch (const std::exception&) {
                ec = errc::corrupt_data;
                why = "\"" + k + "\" is not a conflict record";
                out.clear();
                return out;
            }
            out.push_back(std::move(c));
        }
        return out;
    }

    static std::string seq_name(std::uint64_t s) { return detail::fixed_decimal(s); }
    static std::string bytes(const value& v) {
        auto& b = v.as_binary();
        return std::string(b.begin(), b.end());
    }
    static std::string random_id() { return detail::random_hex_id(); }
    std::string str(const std::string& k, const char* name) { return hive_.get_value(k, name).as_string(); }
    std::string base_key(std::string_view key) const { return opts_.local_key + "\\Bases\\" + detail::key_escape(key); }
    std::string entry_key(std::uint64_t seq) const { return opts_.local_key + "\\Journal\\" + seq_name(seq); }
    std::uint64_t qword_or(const std::string& k, const char* name, std::uint64_t dflt) {
        auto v = hive_.find_value(k, name);
        return v ? v->as_qword() : dflt;
    }
    /// Last-write revision of a hive key; 0 if absent (require_revision's "must not exist").
    std::uint64_t key_revision(const std::string& k) {
        std::error_code ec;
        auto info = hive_.info(k, ec);
        return ec ? 0 : info.revision;
    }

    template <class F> void run(const char* op, std::string_view key, F&& f) {
        std::error_code ec;
        f(ec);
        if (ec)
            throw error(ec, std::string("cluster_writer ") + op + (key.empty() ? "" : " \"" + std::string(key) + "\""));
    }

    void write(std::string_view key, std::optional<std::string> v, std::error_code& ec) {
        ec.clear();
        if (key.empty()) {
            ec = errc::invalid_argument;
            return;
        }
        std::lock_guard lk(mu_);
        if (store_) {
            auto full = opts_.prefix + std::string(key);
            auto rev = v ? store_->put(full, *v, 0, ec) : store_->erase(full, ec);
            if (!ec) remember_base(key, v ? rev : 0); // after an erase the key must not exist
            return;
        }
        // Durable pre-init journal: entry and counter in one hive transaction, which holds only
        // if no other writer on this journal took a number meanwhile (else: read again, retry).
        const auto& root = opts_.local_key;
        for (int attempt = 0; attempt < max_attempts; ++attempt) {
            auto root_rev = key_revision(root);
            std::uint64_t seq = qword_or(root, "next", 1);
            auto entry = entry_key(seq);
            transaction txn;
            txn.require_revision(root, root_rev).require_revision(entry, 0);
            if (!hive_.find_value(root, "journal_id")) txn.set_value(root, "journal_id", value::string(random_id()));
            txn.set_value(root, "next", value::qword(seq + 1))
                .set_value(entry, "key", value::string(std::string(key)))
                .set_value(entry, "base", value::qword(qword_or(base_key(key), "revision", 0)));
            if (v) txn.set_value(entry, "value", value::binary(*v));
            hive_.commit(txn, ec);
            if (ec != errc::revision_mismatch) return;
        }
    }

    void remember_base(std::string_view key, store_revision rev) {
        std::error_code ec;
        hive_.commit(line_ops(transaction{}, key, {rev, 0, 0}), ec);
    }

    transaction line_ops(transaction txn, std::string_view key, const key_line& l) const {
        auto k = base_key(key);
        txn.set_value(k, "revision", value::qword(static_cast<std::uint64_t>(l.revision)))
            .set_value(k, "through", value::qword(l.through))
            .set_value(k, "horizon", value::qword(l.horizon));
        return txn;
    }

    key_line line_of(std::string_view key) {
        auto k = base_key(key);
        return {static_cast<store_revision>(qword_or(k, "revision", 0)), qword_or(k, "through", 0),
                qword_or(k, "horizon", 0)};
    }

    std::vector<pending_write> pending_locked(std::error_code& ec) {
        std::vector<pending_write> out;
        auto root = opts_.local_key + "\\Journal";
        auto names = hive_.subkeys(root, ec);
        if (ec == errc::key_not_found) {
            ec.clear();
            return out;
        }
        for (auto& name : names) { // zero-padded: lexical order is journal order
            auto k = root + "\\" + name;
            pending_write p;
            p.sequence = std::stoull(name);
            p.key = str(k, "key");
            if (auto v = hive_.find_value(k, "value")) p.value = bytes(*v);
            p.base = static_cast<store_revision>(hive_.get_value(k, "base").as_qword());
            out.push_back(std::move(p));
        }
        return out;
    }

    /// The journal's id, made once: markers of different journals (nodes) must never meet.
    void ensure_journal_id(std::error_code& ec) {
        const auto& root = opts_.local_key;
        for (int attempt = 0; attempt < max_attempts; ++attempt) {
            if (hive_.find_value(root, "journal_id")) return;
            transaction txn;
            txn.require_revision(root, key_revision(root)).set_value(root, "journal_id", value::string(random_id()));
            hive_.commit(txn, ec);
            if (ec != errc::revision_mismatch) return;
        }
    }

    std::string markers_prefix() {
        auto id = hive_.find_value(opts_.local_key, "journal_id");
        return opts_.applied_prefix + (id ? id->as_string() : std::string("-")) + "/";
    }

    /// Replays one entry: its store write (with its marker) if its base still holds, else a
    /// conflict; then notes it done in the hive. Safe to repeat after any interruption.
    void replay_one(quorum_store& store, const pending_write& p, std::vector<write_conflict>& found,
                    std::error_code& ec) {
        auto full = opts_.prefix + p.key;
        auto marker = markers_prefix() + seq_name(p.sequence);
        // The key's line continues from an earlier entry's replay (also one cut short before).
        auto line = line_of(p.key);
        bool continues = line.through != 0 && line.through < p.sequence;
        store_revision base = continues ? line.revision : p.base;
        bool forced = continues && p.sequence < line.horizon; // journaled before the conflict was found
        bool applied = false;
        store_revision applied_rev = 0;
        if (!forced) {
            store_txn t;
            t.compares.push_back(base ? key_compare::mod_revision_is(full, base) : key_compare::absent(full));
            t.compares.push_back(key_compare::absent(marker));
            t.on_success.push_back(p.value ? store_op::put(full, *p.value) : store_op::erase(full));
            t.on_success.push_back(store_op::put(marker, p.key));
            auto res = store.commit(t, ec);
            if (!ec && res.succeeded) {
                applied = true;
                applied_rev = res.revision;
            } else if (!ec || ec == errc::unknown_outcome) {
                // Our marker decides: present means this entry was applied (now or before a cut).
                std::error_code rec;
                auto m = store.get(marker, rec);
                if (rec) {
                    if (!ec) ec = rec;
                    return; // stays journaled
                }
                if (m) {
                    ec.clear();
                    applied = true;
                    applied_rev = m->mod_revision; // same transaction as the key's write
                } else if (ec) {
                    return; // not applied (yet): stays journaled; the retry is conditional too
                }
            }
            if (ec) return;
        }
        const auto& root = opts_.local_key;
        for (int attempt = 0; attempt < max_attempts; ++attempt) {
            transaction done;
            std::uint64_t horizon = 0;
            if (!applied) {
                // Entries journaled before this conflict was found (below the counter, read under
                // this revision check) were made without knowing the other writer's value. The
                // check comes first: the ops below may change the key's revision themselves.
                done.require_revision(root, key_revision(root));
                horizon = qword_or(root, "next", p.sequence + 1);
            }
            done.delete_key(entry_key(p.sequence)); // fails if already noted
            std::optional<write_conflict> c;
            if (applied) {
                done = line_ops(std::move(done), p.key, {p.value ? applied_rev : 0, p.sequence, 0});
            } else {
                auto kv = store.get(full, ec);
                if (ec) return;
                c.emplace();
                c->sequence = p.sequence;
                c->key = p.key;
                c->local = p.value;
                if (kv) c->remote = kv->value;
                c->remote_revision = kv ? kv->mod_revision : 0;
                c->node = opts_.node;
                auto ck = root + "\\Conflicts\\" + seq_name(p.sequence);
                done.set_value(ck, "key", value::string(p.key))
                    .set_value(ck, "remote_revision", value::qword(static_cast<std::uint64_t>(c->remote_revision)))
                    .set_value(ck, "node", value::string(opts_.node));
                if (c->local) done.set_value(ck, "local", value::binary(*c->local));
                if (c->remote) done.set_value(ck, "remote", value::binary(*c->remote));
                // Later writes base on what the store holds.
                done = line_ops(std::move(done), p.key, {c->remote_revision, p.sequence, horizon});
            }
            hive_.commit(done, ec);
            if (ec == errc::revision_mismatch) continue; // a write was journaled meanwhile
            if (ec == errc::key_not_found && !hive_.key_exists(entry_key(p.sequence))) {
                ec.clear(); // another writer on this journal noted it
                return;
            }
            if (!ec && c) found.push_back(std::move(*c));
            return;
        }
    }

    /// The journal is fully replayed: its markers are no longer needed (best effort; a failed
    /// sweep leaves markers that the next complete replay sweeps).
    void sweep_markers(quorum_store& store) {
        store_txn t;
        t.on_success.push_back(store_op::erase_prefix(markers_prefix()));
        std::error_code ec;
        store.commit(t, ec);
    }

    void notify(const write_conflict& c) {
        observers_->deliver(c, [](int, const write_conflict&) { return true; });
    }

    Hive& hive_;
    cluster_writer_options opts_;
    mutable std::mutex mu_;
    quorum_store* store_ = nullptr;
    std::shared_ptr<hub> observers_;
    std::shared_ptr<std::mutex> replay_mu_;
};

using cluster_writer = basic_cluster_writer<hive>;

} // namespace quorumreg
