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
//   (its base), or 0 if it never saw the key.
// - attach(store) replays the journal in order. Each entry is a transaction conditional on
//   the key still being at its base revision: applied if nobody changed it meanwhile, else
//   it is a conflict — the store keeps the other writer's value, the local value is kept as a
//   conflict record in the hive (listed by conflicts()), and observers are told. Nothing is
//   silently overwritten or dropped. An unreachable store stops the replay (the rest stays
//   journaled) and attach reports the error, so the replication service fails to start.
// - While attached, put()/erase() go to the store directly (errors are reported, not queued).
// - Store keys live under options.prefix; journal, conflicts and base revisions under
//   options.local_key in the hive.
#pragma once

#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/quorum_store.hpp>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

struct cluster_writer_options {
    std::string node = "node";                          ///< recorded in conflict records
    std::string prefix = "quorumreg/cluster/";          ///< store prefix of the cluster-wide keys
    std::string local_key = "QuorumReg\\ClusterWriter"; ///< hive key for journal, bases, conflicts
};

/// A journaled write that could not be applied because the key changed in the store.
struct write_conflict {
    std::uint64_t sequence = 0; ///< journal sequence of the local write
    std::string key;
    std::optional<std::string> local;  ///< the local value (nullopt: the local write was an erase)
    std::optional<std::string> remote; ///< the store's value at replay (nullopt: erased)
    store_revision remote_revision = 0;
    std::string node;
};

/// A write waiting in the pre-init journal.
struct pending_write {
    std::uint64_t sequence = 0;
    std::string key;
    std::optional<std::string> value; ///< nullopt: erase
    store_revision base = 0;
};

template <class Hive = hive> class basic_cluster_writer {
public:
    using conflict_handler = std::function<void(const write_conflict&)>;

    /// `local` must outlive the writer.
    explicit basic_cluster_writer(Hive& local, cluster_writer_options opts = {})
        : hive_(local), opts_(std::move(opts)), observers_(std::make_shared<hub>()) {}

    basic_cluster_writer(const basic_cluster_writer&) = delete;
    basic_cluster_writer& operator=(const basic_cluster_writer&) = delete;

    /// Writes `value` to cluster-wide `key`: journaled while detached, direct while attached.
    void put(std::string_view key, std::string_view value) {
        run("put", key, [&](std::error_code& ec) { write(key, std::string(value), ec); });
    }
    void put(std::string_view key, std::string_view value, std::error_code& ec) { write(key, std::string(value), ec); }

    void erase(std::string_view key) {
        run("erase", key, [&](std::error_code& ec) { write(key, std::nullopt, ec); });
    }
    void erase(std::string_view key, std::error_code& ec) { write(key, std::nullopt, ec); }

    /// The value as this node knows it: the store's while attached; while detached, the newest
    /// journaled write, else nullopt (unknown until replication is up).
    std::optional<std::string> get(std::string_view key) {
        std::error_code ec;
        auto v = get(key, ec);
        detail::throw_if(ec, "cluster_writer get \"" + std::string(key) + "\"");
        return v;
    }
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
    void attach(quorum_store& store, std::error_code& ec) {
        ec.clear();
        std::vector<write_conflict> found;
        {
            std::lock_guard lk(mu_);
            auto entries = pending_locked(ec);
            if (ec) return;
            std::map<std::string, std::optional<store_revision>> line; // per key: where our last replay left it
            for (auto& p : entries) {
                replay_one(store, p, line, found, ec);
                if (ec) break; // the rest stays journaled, in order
            }
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

    bool attached() const {
        std::lock_guard lk(mu_);
        return store_ != nullptr;
    }

    /// Writes still waiting in the journal, in order.
    std::vector<pending_write> pending() {
        std::error_code ec;
        std::lock_guard lk(mu_);
        auto v = pending_locked(ec);
        detail::throw_if(ec, "cluster_writer pending");
        return v;
    }

    /// Conflicts kept so far (durable in the hive until discarded).
    std::vector<write_conflict> conflicts() {
        std::vector<write_conflict> out;
        std::error_code ec;
        auto root = opts_.local_key + "\\Conflicts";
        for (auto& name : hive_.subkeys(root, ec)) {
            auto k = root + "\\" + name;
            write_conflict c;
            c.sequence = std::stoull(name);
            c.key = str(k, "key");
            if (auto v = hive_.find_value(k, "local")) c.local = bytes(*v);
            if (auto v = hive_.find_value(k, "remote")) c.remote = bytes(*v);
            c.remote_revision = static_cast<store_revision>(hive_.get_value(k, "remote_revision").as_qword());
            c.node = str(k, "node");
            out.push_back(std::move(c));
        }
        return out;
    }

    /// Forgets a conflict record once it has been dealt with.
    void discard_conflict(std::uint64_t sequence) {
        hive_.delete_key(opts_.local_key + "\\Conflicts\\" + seq_name(sequence));
    }

    /// Observers of conflicts found during replay (called after the replay, outside locks).
    [[nodiscard]] subscription on_conflict(conflict_handler h) { return observers_->subscribe(0, std::move(h)); }

private:
    using hub = detail::watch_hub<write_conflict, int>;

    static std::string seq_name(std::uint64_t s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(s));
        return buf;
    }
    static std::string bytes(const value& v) {
        auto& b = v.as_binary();
        return std::string(b.begin(), b.end());
    }
    std::string str(const std::string& k, const char* name) { return hive_.get_value(k, name).as_string(); }
    std::string base_key(std::string_view key) const { return opts_.local_key + "\\Bases\\" + detail::key_escape(key); }

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
            if (!ec) remember_base(key, rev);
            return;
        }
        // Durable pre-init journal: entry and counter in one hive transaction.
        auto counter = hive_.find_value(opts_.local_key, "next");
        std::uint64_t seq = counter ? counter->as_qword() : 1;
        auto entry = opts_.local_key + "\\Journal\\" + seq_name(seq);
        auto base = hive_.find_value(base_key(key), "revision");
        transaction txn;
        txn.set_value(opts_.local_key, "next", value::qword(seq + 1))
            .set_value(entry, "key", value::string(std::string(key)))
            .set_value(entry, "base", value::qword(base ? base->as_qword() : 0));
        if (v) txn.set_value(entry, "value", value::binary(*v));
        hive_.commit(txn, ec);
    }

    void remember_base(std::string_view key, store_revision rev) {
        std::error_code ec;
        hive_.set_value(base_key(key), "revision", value::qword(static_cast<std::uint64_t>(rev)), ec);
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

    /// Replays one entry. A later local write to the same key continues from where the
    /// previous replay of that key left it (`line`); once a key conflicted, its later local
    /// writes conflict too (they were made without knowing the other writer's value).
    void replay_one(quorum_store& store, const pending_write& p,
                    std::map<std::string, std::optional<store_revision>>& line, std::vector<write_conflict>& found,
                    std::error_code& ec) {
        auto full = opts_.prefix + p.key;
        store_revision base = p.base;
        auto it = line.find(p.key);
        if (it != line.end()) base = it->second.value_or(-1);
        txn_result res; // base < 0: a forced conflict, nothing is written
        if (base >= 0) {
            store_txn t;
            t.compares.push_back(base ? key_compare::mod_revision_is(full, base) : key_compare::absent(full));
            t.on_success.push_back(p.value ? store_op::put(full, *p.value) : store_op::erase(full));
            res = store.commit(t, ec);
        }
        if (ec == errc::unknown_outcome) {
            // Re-read: applied if the key now holds exactly our write.
            std::error_code rec;
            auto kv = store.get(full, rec);
            if (rec) return;
            bool applied = p.value ? (kv && kv->value == *p.value) : !kv;
            if (!applied) return; // stays journaled; attach reports unknown_outcome
            ec.clear();
            res.succeeded = true;
            res.revision = kv ? kv->mod_revision : 0;
        }
        if (ec) return;
        auto entry = opts_.local_key + "\\Journal\\" + seq_name(p.sequence);
        transaction done;
        done.delete_key(entry);
        if (res.succeeded) {
            line[p.key] = res.revision;
            done.set_value(base_key(p.key), "revision", value::qword(static_cast<std::uint64_t>(res.revision)));
        } else {
            line[p.key] = std::nullopt;
            auto kv = store.get(full, ec);
            if (ec) return;
            write_conflict c;
            c.sequence = p.sequence;
            c.key = p.key;
            c.local = p.value;
            if (kv) c.remote = kv->value;
            c.remote_revision = kv ? kv->mod_revision : 0;
            c.node = opts_.node;
            auto ck = opts_.local_key + "\\Conflicts\\" + seq_name(p.sequence);
            done.set_value(ck, "key", value::string(p.key))
                .set_value(ck, "remote_revision", value::qword(static_cast<std::uint64_t>(c.remote_revision)))
                .set_value(ck, "node", value::string(opts_.node));
            if (c.local) done.set_value(ck, "local", value::binary(*c.local));
            if (c.remote) done.set_value(ck, "remote", value::binary(*c.remote));
            // Later local writes to this key now base on what the store holds.
            done.set_value(base_key(p.key), "revision", value::qword(static_cast<std::uint64_t>(c.remote_revision)));
            found.push_back(std::move(c));
        }
        hive_.commit(done, ec);
    }

    void notify(const write_conflict& c) {
        observers_->deliver(c, [](int, const write_conflict&) { return true; });
    }

    Hive& hive_;
    cluster_writer_options opts_;
    mutable std::mutex mu_;
    quorum_store* store_ = nullptr;
    std::shared_ptr<hub> observers_;
};

using cluster_writer = basic_cluster_writer<hive>;

} // namespace quorumreg
