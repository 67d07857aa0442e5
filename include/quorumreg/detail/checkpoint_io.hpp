// quorumreg — checkpoint reads and writes shared by checkpoint_manager and its per-resource
// agents: the local hive's copy of a subtree, this node's records, and the fenced store
// writes of generations and conflict records.
#pragma once

#include <quorumreg/checkpoint/format.hpp>
#include <quorumreg/checkpoint/layout.hpp>
#include <quorumreg/checkpoint/types.hpp>
#include <quorumreg/detail/crypto.hpp>
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>
#include <quorumreg/registry.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quorumreg::detail {

/// One registered subtree as a writer sees it.
struct checkpoint_subtree : checkpoint_subtree_name {
    std::uint64_t generation = 0;
    store_revision latest_mod = 0; // mod_revision of the latest pointer (0: none yet)
    digest256 hash{};
    bool absent = true;
};

/// Local content of a subtree (read in one consistent read with the others).
struct checkpoint_local_copy {
    bool exists = false;
    std::string content;
    digest256 hash{};
    /// Last-write revision of every key of the subtree when read (the root with 0 when absent).
    /// Any change under the subtree changes one of them: a value set or deleted touches its
    /// key, a key created or deleted touches its parent. require_revision on all of them makes
    /// a commit conditional on the subtree being unchanged since this read.
    std::vector<std::pair<std::string, std::uint64_t>> revisions;
};

/// Warm-standby cache of checkpoint blobs (follow()): the newest blob seen per subtree, with
/// the store revision that wrote it. A generation and its latest pointer are written in one
/// transaction, so a cached blob is served only when its revision is the pointer's
/// mod_revision: after a remove and re-add restarts the numbering (a new blob under an old
/// key), or after events were missed, the blob is fetched instead. One entry per subtree.
class checkpoint_blob_cache {
public:
    /// A generation blob written at `revision` (watch put event, or a re-read).
    void put(const std::string& key, std::string blob, store_revision revision) {
        auto at = key.rfind("/g/");
        if (at == std::string::npos) return;
        std::lock_guard lk(mu_);
        auto& e = latest_[key.substr(0, at + 1)];
        if (e.revision >= revision) return; // older than what is kept
        e = entry{key, std::move(blob), revision};
    }
    /// A key under a data prefix was deleted: a generation pruned, or the subtree removed.
    void erase(const std::string& key) {
        std::lock_guard lk(mu_);
        auto at = key.rfind("/g/");
        if (at != std::string::npos) {
            auto it = latest_.find(key.substr(0, at + 1));
            if (it != latest_.end() && it->second.key == key) latest_.erase(it);
            return;
        }
        const std::string_view suffix = "/latest";
        if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0)
            latest_.erase(key.substr(0, key.size() - suffix.size() + 1)); // the subtree is gone
    }
    /// The blob under `key` if it is the one written at `revision`.
    std::optional<std::string> find(const std::string& key, store_revision revision) {
        auto at = key.rfind("/g/");
        if (at == std::string::npos || revision == 0) return std::nullopt;
        std::lock_guard lk(mu_);
        auto it = latest_.find(key.substr(0, at + 1));
        if (it == latest_.end() || it->second.key != key || it->second.revision != revision) return std::nullopt;
        ++hits_;
        return it->second.blob;
    }
    std::size_t size() const {
        std::lock_guard lk(mu_);
        return latest_.size();
    }
    std::size_t hits() const {
        std::lock_guard lk(mu_);
        return hits_;
    }

private:
    struct entry {
        std::string key;
        std::string blob;
        store_revision revision = 0;
    };
    mutable std::mutex mu_;
    std::map<std::string, entry> latest_; // by subtree data prefix (…/data/<subtree>/)
    std::size_t hits_ = 0;
};

inline std::uint64_t checkpoint_now_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

template <class Hive> class checkpoint_io {
public:
    using traits_type = typename Hive::traits_type;
    using tree_type = registry_tree<traits_type>;

    checkpoint_io(Hive& h, quorum_store& s, const checkpoint_options& o)
        : hive(h), store(s), opts(o), layout(o.prefix) {}

    Hive& hive;
    quorum_store& store;
    const checkpoint_options& opts;
    checkpoint_layout layout;
    std::shared_ptr<checkpoint_blob_cache> cache = std::make_shared<checkpoint_blob_cache>();

    std::error_code make_subtree(std::string_view path, checkpoint_subtree& s, std::string& why) const {
        auto limits = engine_access::read(hive, [](const tree_type& t) { return t.limits(); });
        return make_checkpoint_subtree_name<traits_type>(path, limits, s, why);
    }

    std::string latest_key(std::string_view r, const checkpoint_subtree& s) const {
        return layout.latest_key(r, s.esc);
    }
    std::string gen_key(std::string_view r, const checkpoint_subtree& s, std::uint64_t g) const {
        return layout.generation_key(r, s.esc, g);
    }
    std::string meta_path(std::string_view r, const checkpoint_subtree& s) const {
        return opts.local_meta_key + "\\" + hex_encode(sha256(std::string(r) + std::string(1, '\0') + s.canonical));
    }

    /// Local content of `subtrees`, in one consistent read; returns the hive revision read at.
    std::uint64_t read_local(const std::vector<checkpoint_subtree*>& subtrees,
                             std::vector<checkpoint_local_copy>& out) {
        out.assign(subtrees.size(), {});
        return engine_access::read(hive, [&](const tree_type& t) {
            std::vector<std::string_view> parts;
            for (std::size_t i = 0; i < subtrees.size(); ++i) {
                split_path(subtrees[i]->path, t.limits(), parts);
                if (const auto* n = t.find(parts)) {
                    out[i].exists = true;
                    out[i].content = tree_type::encode_subtree(*n, false);
                    collect_revisions(*n, subtrees[i]->path, out[i].revisions);
                } else {
                    out[i].revisions.emplace_back(subtrees[i]->path, 0);
                }
                out[i].hash = sha256(out[i].content);
            }
            return t.revision();
        });
    }

    template <class Node>
    static void collect_revisions(const Node& n, const std::string& path,
                                  std::vector<std::pair<std::string, std::uint64_t>>& out) {
        out.emplace_back(path, n.revision);
        for (const auto& [k, c] : n.children)
            collect_revisions(*c, path + "\\" + c->name, out);
    }

    /// Makes `txn` fail with errc::revision_mismatch unless `local` is unchanged since read.
    static void require_unchanged(transaction& txn, const checkpoint_local_copy& local) {
        for (const auto& [path, rev] : local.revisions)
            txn.require_revision(path, rev);
    }

    /// Reads the latest-generation pointer of `s`. False if there is none yet.
    bool read_pointer(std::string_view r, checkpoint_subtree& s, std::error_code& ec) {
        auto latest = store.get(latest_key(r, s), ec);
        if (ec || !latest) {
            s.generation = 0;
            s.latest_mod = 0;
            return false;
        }
        s.latest_mod = latest->mod_revision;
        s.generation = std::stoull(latest->value);
        return true;
    }

    /// The latest stored checkpoint of `s` (nullopt if none yet).
    std::optional<checkpoint_blob> read_latest(std::string_view r, checkpoint_subtree& s, std::error_code& ec,
                                               std::string& why) {
        if (!read_pointer(r, s, ec)) return std::nullopt;
        auto blob = fetch_generation(r, s, s.generation, s.latest_mod, ec, why);
        if (ec) return std::nullopt;
        return blob;
    }

    /// Generation `g` of `s`; `written_at` (the latest pointer's mod_revision when g is the
    /// latest, else 0) lets a warm-standby copy be used.
    checkpoint_blob fetch_generation(std::string_view r, const checkpoint_subtree& s, std::uint64_t g,
                                     store_revision written_at, std::error_code& ec, std::string& why) {
        auto key = gen_key(r, s, g);
        std::string bytes;
        if (auto cached = cache->find(key, written_at)) bytes = std::move(*cached);
        if (bytes.empty()) {
            auto kv = store.get(key, ec);
            if (ec) return {};
            if (!kv) {
                ec = errc::not_found;
                why = "generation " + std::to_string(g) + " of \"" + s.path + "\" is not in the store";
                return {};
            }
            bytes = std::move(kv->value);
        }
        checkpoint_blob b;
        std::string w;
        if ((ec = decode_checkpoint(bytes, opts.cluster_key, b, w))) {
            why = "generation " + std::to_string(g) + " of \"" + s.path + "\": " + w;
            if (g > 1) why += "; older generations remain available through restore()";
        }
        return b;
    }

    /// Writes `content` as the next generation of `s`, conditional on the fencing token and on
    /// the latest pointer being where we last saw it. Safe to retry after unknown_outcome.
    std::error_code write_generation(std::string_view r, store_revision token, checkpoint_subtree& s, bool exists,
                                     const std::string& content, std::string& why) {
        checkpoint_blob b;
        b.resource = std::string(r);
        b.subtree = s.path;
        b.writer = opts.node;
        b.time_ms = checkpoint_now_ms();
        b.absent = !exists;
        b.content = exists ? content : std::string();
        const auto digest = sha256(b.content); // once, not once per attempt and again after
        for (int attempt = 0; attempt < 5; ++attempt) {
            b.generation = s.generation + 1;
            auto blob = encode_checkpoint(b, opts.cluster_key, &digest);
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
            t.compares.push_back(s.latest_mod ? key_compare::mod_revision_is(latest_key(r, s), s.latest_mod)
                                              : key_compare::absent(latest_key(r, s)));
            t.on_success.push_back(store_op::put(gen_key(r, s, b.generation), blob));
            t.on_success.push_back(store_op::put(latest_key(r, s), std::to_string(b.generation)));
            if (b.generation > opts.history)
                t.on_success.push_back(store_op::erase(gen_key(r, s, b.generation - opts.history)));
            std::error_code ec;
            auto res = store.commit(t, ec);
            if (ec == errc::unknown_outcome || ec == errc::deadline_exceeded) {
                // Re-read before deciding: the write may have been applied.
                std::error_code rec;
                auto latest = store.get(latest_key(r, s), rec);
                if (!rec && latest && latest->value == std::to_string(b.generation)) {
                    auto g = store.get(gen_key(r, s, b.generation), rec);
                    if (!rec && g && g->value == blob) {
                        s.generation = b.generation;
                        s.latest_mod = latest->mod_revision;
                        s.hash = digest;
                        s.absent = b.absent;
                        return {};
                    }
                }
                if (rec) {
                    why = "outcome of checkpoint write unknown and the store cannot be read";
                    return ec;
                }
                continue;
            }
            if (ec) {
                why = "write checkpoint of \"" + s.path + "\"";
                return ec;
            }
            if (res.succeeded) {
                s.generation = b.generation;
                s.latest_mod = res.revision;
                s.hash = digest;
                s.absent = b.absent;
                return {};
            }
            // A compare failed: lost ownership, or the pointer moved (re-read and retry).
            auto owner = store.get(layout.owner_key(r), ec);
            if (ec) return ec;
            if (!owner || owner->create_revision != token) {
                why = "ownership of \"" + std::string(r) + "\" was lost (lease expired or taken over); write rejected";
                return errc::fenced;
            }
            auto latest = store.get(latest_key(r, s), ec);
            if (ec) return ec;
            s.latest_mod = latest ? latest->mod_revision : 0;
            s.generation = latest ? std::stoull(latest->value) : 0;
        }
        why = "checkpoint pointer of \"" + s.path + "\" keeps changing";
        return errc::compare_failed;
    }

    /// Stores `local` as a conflict record of `s`, fenced by `token`.
    std::error_code write_conflict(std::string_view r, store_revision token, const checkpoint_subtree& s,
                                   const checkpoint_local_copy& local, conflict_record& c, std::string& why) {
        checkpoint_blob b;
        b.resource = std::string(r);
        b.subtree = s.path;
        b.writer = opts.node;
        b.time_ms = checkpoint_now_ms();
        b.absent = !local.exists;
        b.content = local.content;
        c.id = std::to_string(b.time_ms) + "-" + key_escape(opts.node) + "-" + hex_encode(local.hash).substr(0, 8);
        c.subtree = s.path;
        c.node = opts.node;
        c.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(b.time_ms));
        c.sha256 = hex_encode(local.hash);
        store_txn t;
        t.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
        t.on_success.push_back(
            store_op::put(layout.conflict_key(r, s.esc, c.id), encode_checkpoint(b, opts.cluster_key)));
        std::error_code ec;
        auto res = store.commit(t, ec);
        if (ec) {
            why = "save conflict record";
            return ec;
        }
        if (!res.succeeded) {
            why = "ownership was lost";
            return errc::fenced;
        }
        return {};
    }

    /// Records in the local hive what this node last checkpointed/restored for `s`.
    void add_meta_ops(transaction& txn, std::string_view r, const checkpoint_subtree& s, const digest256& hash) const {
        auto mp = meta_path(r, s);
        txn.set_value(mp, "resource", value::string(std::string(r)));
        txn.set_value(mp, "subtree", value::string(s.path));
        txn.set_value(mp, "hash", value::binary(std::string_view(reinterpret_cast<const char*>(hash.data()), 32)));
        txn.set_value(mp, "generation", value::qword(s.generation));
    }
    std::optional<std::uint64_t> recorded_generation(std::string_view r, const checkpoint_subtree& s) {
        auto v = hive.find_value(meta_path(r, s), "generation");
        if (!v || v->type() != value_type::qword) return std::nullopt;
        return v->as_qword();
    }
    /// Hive key whose value "token" says this node holds `r` online (set with the restore,
    /// deleted by a successful offline(); still there after a crash).
    std::string online_marker_path(std::string_view r) const {
        return opts.local_meta_key + "\\Online\\" + hex_encode(sha256(std::string(r)));
    }
    std::optional<digest256> recorded_hash(std::string_view r, const checkpoint_subtree& s) {
        auto v = hive.find_value(meta_path(r, s), "hash");
        if (!v || v->type() != value_type::binary || v->as_binary().size() != 32) return std::nullopt;
        digest256 d{};
        std::copy(v->as_binary().begin(), v->as_binary().end(), d.begin());
        return d;
    }
};

} // namespace quorumreg::detail
