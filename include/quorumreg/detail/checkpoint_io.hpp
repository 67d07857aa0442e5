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

#include <algorithm>
#include <charconv>
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

/// One subtree's part of a write-through batch: its new content (`content` must outlive the write).
struct checkpoint_write {
    checkpoint_subtree* subtree = nullptr;
    bool exists = false;
    const std::string* content = nullptr;
};

/// One line of a batch manifest: the generation a subtree's pointer switches to.
struct checkpoint_manifest_entry {
    std::string esc; ///< the subtree's key-escaped canonical name
    std::uint64_t generation = 0;
    bool absent = false;
    digest256 hash{};
};

/// "QRMANIFEST 1" then one line per entry: "<esc> <generation> <absent 0|1> <sha256 hex>".
inline std::string encode_checkpoint_manifest(const std::vector<checkpoint_manifest_entry>& entries) {
    std::string out = "QRMANIFEST 1\n";
    for (const auto& e : entries)
        out += e.esc + " " + std::to_string(e.generation) + (e.absent ? " 1 " : " 0 ") + hex_encode(e.hash) + "\n";
    return out;
}
inline bool decode_checkpoint_manifest(std::string_view text, std::vector<checkpoint_manifest_entry>& out) {
    out.clear();
    constexpr std::string_view head = "QRMANIFEST 1\n";
    if (text.substr(0, head.size()) != head) return false;
    text.remove_prefix(head.size());
    while (!text.empty()) {
        auto nl = text.find('\n');
        if (nl == std::string_view::npos) return false;
        auto line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        auto s1 = line.find(' '), s2 = line.find(' ', s1 + 1), s3 = line.find(' ', s2 + 1);
        if (s1 == 0 || s1 == std::string_view::npos || s2 == std::string_view::npos || s3 == std::string_view::npos)
            return false;
        checkpoint_manifest_entry e;
        e.esc = std::string(line.substr(0, s1));
        auto gen = line.substr(s1 + 1, s2 - s1 - 1);
        auto [p, perr] = std::from_chars(gen.data(), gen.data() + gen.size(), e.generation);
        auto absent = line.substr(s2 + 1, s3 - s2 - 1);
        if (perr != std::errc{} || p != gen.data() + gen.size() || e.generation == 0 ||
            (absent != "0" && absent != "1") || !hex_decode(line.substr(s3 + 1), e.hash))
            return false;
        e.absent = absent == "1";
        out.push_back(std::move(e));
    }
    return true;
}

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

    checkpoint_io(Hive& h, quorum_store& s, const checkpoint_manager_options& o)
        : hive(h), store(s), opts(o), layout(o.prefix) {}

    Hive& hive;
    quorum_store& store;
    const checkpoint_manager_options& opts;
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
    /// Checks `s` against every registered subtree, of every resource: already registered for
    /// `r` sets `registered`; an overlap is checkpoint_overlap naming the other subtree (two owners
    /// would restore over each other's keys). Returns the registrations fence to compare.
    store_revision registration_check(std::string_view r, const checkpoint_subtree& s, bool& registered,
                                      std::error_code& ec, std::string& why) const {
        registered = false;
        auto kvs = store.list(layout.prefix(), ec);
        if (ec) return 0;
        store_revision fence = 0;
        std::string ignored;
        for (auto& kv : kvs) {
            if (kv.key == layout.registrations_key()) fence = kv.mod_revision;
            auto owner = layout.resource_of(kv.key);
            if (!owner || !kv.key.starts_with(layout.subtrees_prefix(*owner))) continue;
            checkpoint_subtree o;
            if (make_subtree(kv.value, o, ignored)) continue;
            bool same_resource = *owner == r;
            if (same_resource && o.canonical == s.canonical) {
                registered = true;
                continue;
            }
            if (overlaps(o.canonical, s.canonical)) {
                why = "overlaps subtree \"" + kv.value + "\"" +
                      (same_resource ? std::string(" of this resource") : " of resource \"" + *owner + "\"");
                ec = errc::checkpoint_overlap;
                return 0;
            }
        }
        return fence;
    }
    /// Makes `t` commit only if no registration happened since registration_check() returned
    /// `fence`, and bumps the fence.
    void fence_registration(store_txn& t, store_revision fence) const {
        auto key = layout.registrations_key();
        t.compares.push_back(fence ? key_compare::mod_revision_is(key, fence) : key_compare::absent(key));
        t.on_success.push_back(store_op::put(key, ""));
    }
    /// True when canonical name `x` equals `y` or lies under it.
    static bool within(const std::string& x, const std::string& y) {
        return x == y || (x.size() > y.size() && x.compare(0, y.size(), y) == 0 && x[y.size()] == '\\');
    }
    /// True when `a` and `b` (canonical names) are equal or one lies under the other.
    static bool overlaps(const std::string& a, const std::string& b) { return within(a, b) || within(b, a); }

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
        // A batch of one: one transaction (per_txn() >= 1), so no manifest is ever left.
        std::vector<checkpoint_write> one{{&s, exists, &content}};
        bool manifest_left = false;
        return write_batch(r, token, one, manifest_left, why);
    }

    // ---- write-through batches (issue 15, defect 5) ----------------------------------------------
    // A batch is what one write-through pass found changed: every subtree read at one hive
    // revision. It reaches the store all-or-nothing: one transaction when it has at most
    // opts.batch_subtrees subtrees; else the blobs are staged (invisible: no pointer names
    // them), a manifest naming the new generations is written (the commit point) and the
    // pointers are switched in chunks. Whoever owns the resource next completes a manifest
    // left behind before it reads any pointer, so no reader restores part of a batch.

    /// Writes the next generation of every subtree in `batch`, fenced by `token`. On success
    /// each subtree's generation, pointer revision and hash are updated. `manifest_left` is
    /// set when an error came after a manifest may have been written: complete_manifest()
    /// must run before the next batch.
    std::error_code write_batch(std::string_view r, store_revision token, std::vector<checkpoint_write>& batch,
                                bool& manifest_left, std::string& why) {
        manifest_left = false;
        if (batch.empty()) return {};
        std::vector<checkpoint_blob> blobs;
        std::vector<digest256> digests;
        for (const auto& w : batch) {
            blobs.push_back(new_blob(r, *w.subtree, w.exists, *w.content));
            digests.push_back(sha256(blobs.back().content));
        }
        if (batch.size() <= per_txn()) return write_together(r, token, batch, blobs, digests, why);
        return write_staged(r, token, batch, blobs, digests, manifest_left, why);
    }

    /// Completes the batch named by a manifest a writer left behind (it failed or crashed after
    /// the commit point): switches the pointers, then erases the manifest. Run by every new
    /// owner before it reads a pointer, and by a writer whose own switch failed. Entries whose
    /// blob is gone (the subtree was removed since) are skipped. Returns the entries applied,
    /// with the pointer revisions in `mods`.
    std::vector<checkpoint_manifest_entry> complete_manifest(std::string_view r, store_revision token,
                                                             std::vector<store_revision>& mods, std::error_code& ec,
                                                             std::string& why) {
        mods.clear();
        auto kv = store.get(layout.manifest_key(r), ec);
        if (ec) {
            why = "read the batch manifest";
            return {};
        }
        if (!kv) return {};
        std::vector<checkpoint_manifest_entry> entries, live;
        if (!decode_checkpoint_manifest(kv->value, entries)) {
            ec = errc::checkpoint_corrupt;
            why = "the batch manifest " + layout.manifest_key(r) + " is unreadable";
            return {};
        }
        for (auto& e : entries) {
            auto blob = store.get(layout.generation_key(r, e.esc, e.generation), ec);
            if (ec) {
                why = "read a staged checkpoint blob";
                return {};
            }
            if (blob) live.push_back(std::move(e));
        }
        if ((ec = switch_pointers(r, token, live, mods, why))) return {};
        return live;
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

private:
    std::size_t per_txn() const { return std::max<std::size_t>(opts.batch_subtrees, 1); }

    checkpoint_blob new_blob(std::string_view r, const checkpoint_subtree& s, bool exists,
                             const std::string& content) const {
        checkpoint_blob b;
        b.resource = std::string(r);
        b.subtree = s.path;
        b.writer = opts.node;
        b.time_ms = checkpoint_now_ms();
        b.absent = !exists;
        b.content = exists ? content : std::string();
        return b;
    }

    static void written(checkpoint_subtree& s, const checkpoint_blob& b, const digest256& digest, store_revision mod) {
        s.generation = b.generation;
        s.latest_mod = mod;
        s.hash = digest;
        s.absent = b.absent;
    }

    /// errc::fenced (with `why`) unless `token` still owns `r`; a read error as it is.
    std::error_code still_owner(std::string_view r, store_revision token, std::string& why) {
        std::error_code ec;
        auto owner = store.get(layout.owner_key(r), ec);
        if (ec) return ec;
        if (!owner || owner->create_revision != token) {
            why = "ownership of \"" + std::string(r) + "\" was lost (lease expired or taken over); write rejected";
            return errc::fenced;
        }
        return {};
    }

    /// Commits `t` (its first compare is the fencing token). Only for idempotent transactions:
    /// an unknown outcome is retried as it is.
    std::error_code commit_fenced(std::string_view r, store_revision token, const store_txn& t, const char* what,
                                  store_revision& rev, std::string& why) {
        for (int attempt = 0; attempt < 5; ++attempt) {
            std::error_code ec;
            auto res = store.commit(t, ec);
            if (ec == errc::unknown_outcome || ec == errc::deadline_exceeded) continue;
            if (ec) {
                why = what;
                return ec;
            }
            if (res.succeeded) {
                rev = res.revision;
                return {};
            }
            if (auto fec = still_owner(r, token, why)) return fec;
            why = std::string(what) + ": a compare failed although the token still owns the resource";
            return errc::compare_failed;
        }
        why = std::string(what) + ": outcome unknown after 5 attempts";
        return errc::unknown_outcome;
    }

    /// The whole batch in one transaction, conditional on the token and on every pointer being
    /// where it was last seen.
    std::error_code write_together(std::string_view r, store_revision token, std::vector<checkpoint_write>& batch,
                                   std::vector<checkpoint_blob>& blobs, const std::vector<digest256>& digests,
                                   std::string& why) {
        std::vector<std::string> bytes(batch.size());
        for (int attempt = 0; attempt < 5; ++attempt) {
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
            for (std::size_t i = 0; i < batch.size(); ++i) {
                auto& s = *batch[i].subtree;
                auto& b = blobs[i];
                b.generation = s.generation + 1;
                bytes[i] = encode_checkpoint(b, opts.cluster_key, &digests[i]);
                t.compares.push_back(s.latest_mod ? key_compare::mod_revision_is(latest_key(r, s), s.latest_mod)
                                                  : key_compare::absent(latest_key(r, s)));
                t.on_success.push_back(store_op::put(gen_key(r, s, b.generation), bytes[i]));
                t.on_success.push_back(store_op::put(latest_key(r, s), std::to_string(b.generation)));
                if (b.generation > opts.history)
                    t.on_success.push_back(store_op::erase(gen_key(r, s, b.generation - opts.history)));
            }
            std::error_code ec;
            auto res = store.commit(t, ec);
            if (ec == errc::unknown_outcome || ec == errc::deadline_exceeded) {
                // Re-read before deciding: the batch may have been applied (all of it, or none).
                std::error_code rec;
                std::vector<store_revision> mods;
                for (std::size_t i = 0; i < batch.size() && !rec; ++i) {
                    auto& s = *batch[i].subtree;
                    auto latest = store.get(latest_key(r, s), rec);
                    if (rec || !latest || latest->value != std::to_string(blobs[i].generation)) break;
                    auto g = store.get(gen_key(r, s, blobs[i].generation), rec);
                    if (rec || !g || g->value != bytes[i]) break;
                    mods.push_back(latest->mod_revision);
                }
                if (rec) {
                    why = "outcome of checkpoint write unknown and the store cannot be read";
                    return ec;
                }
                if (mods.size() == batch.size()) {
                    for (std::size_t i = 0; i < batch.size(); ++i)
                        written(*batch[i].subtree, blobs[i], digests[i], mods[i]);
                    return {};
                }
                continue;
            }
            if (ec) {
                why = batch.size() == 1 ? "write checkpoint of \"" + batch[0].subtree->path + "\""
                                        : "write checkpoints of " + std::to_string(batch.size()) + " subtrees";
                return ec;
            }
            if (res.succeeded) {
                for (std::size_t i = 0; i < batch.size(); ++i)
                    written(*batch[i].subtree, blobs[i], digests[i], res.revision);
                return {};
            }
            // A compare failed: lost ownership, or a pointer moved (re-read and retry).
            if ((ec = still_owner(r, token, why))) return ec;
            for (auto& w : batch) {
                read_pointer(r, *w.subtree, ec);
                if (ec) return ec;
            }
        }
        why = batch.size() == 1 ? "checkpoint pointer of \"" + batch[0].subtree->path + "\" keeps changing"
                                : "checkpoint pointers keep changing";
        return errc::compare_failed;
    }

    /// A batch larger than one transaction: stage the blobs, write the manifest, switch.
    std::error_code write_staged(std::string_view r, store_revision token, std::vector<checkpoint_write>& batch,
                                 std::vector<checkpoint_blob>& blobs, const std::vector<digest256>& digests,
                                 bool& manifest_left, std::string& why) {
        std::vector<checkpoint_manifest_entry> entries;
        store_revision rev = 0;
        for (std::size_t first = 0; first < batch.size(); first += per_txn()) {
            store_txn t; // staged blobs: no pointer names them yet, so nobody reads them
            t.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
            for (std::size_t i = first; i < std::min(batch.size(), first + per_txn()); ++i) {
                auto& s = *batch[i].subtree;
                blobs[i].generation = s.generation + 1; // only this owner moves the pointers
                t.on_success.push_back(store_op::put(gen_key(r, s, blobs[i].generation),
                                                     encode_checkpoint(blobs[i], opts.cluster_key, &digests[i])));
                entries.push_back({s.esc, blobs[i].generation, blobs[i].absent, digests[i]});
            }
            if (auto ec = commit_fenced(r, token, t, "stage checkpoint blobs", rev, why)) return ec;
        }
        store_txn m;
        m.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
        m.on_success.push_back(store_op::put(layout.manifest_key(r), encode_checkpoint_manifest(entries)));
        manifest_left = true; // from here an error may leave a committed manifest behind
        if (auto ec = commit_fenced(r, token, m, "write the batch manifest", rev, why)) return ec;
        std::vector<store_revision> mods;
        if (auto ec = switch_pointers(r, token, entries, mods, why)) return ec;
        manifest_left = false;
        for (std::size_t i = 0; i < batch.size(); ++i)
            written(*batch[i].subtree, blobs[i], digests[i], mods[i]);
        return {};
    }

    /// Points each entry's subtree at its generation (pruning the oldest kept one), in chunks,
    /// then erases the manifest. Idempotent: safe to repeat after any failure.
    std::error_code switch_pointers(std::string_view r, store_revision token,
                                    const std::vector<checkpoint_manifest_entry>& entries,
                                    std::vector<store_revision>& mods, std::string& why) {
        mods.assign(entries.size(), 0);
        store_revision rev = 0;
        for (std::size_t first = 0; first < entries.size(); first += per_txn()) {
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
            auto last = std::min(entries.size(), first + per_txn());
            for (std::size_t i = first; i < last; ++i) {
                const auto& e = entries[i];
                t.on_success.push_back(store_op::put(layout.latest_key(r, e.esc), std::to_string(e.generation)));
                if (e.generation > opts.history)
                    t.on_success.push_back(
                        store_op::erase(layout.generation_key(r, e.esc, e.generation - opts.history)));
            }
            if (auto ec = commit_fenced(r, token, t, "switch checkpoint pointers", rev, why)) return ec;
            for (std::size_t i = first; i < last; ++i)
                mods[i] = rev;
        }
        store_txn done;
        done.compares.push_back(key_compare::create_revision_is(layout.owner_key(r), token));
        done.on_success.push_back(store_op::erase(layout.manifest_key(r)));
        return commit_fenced(r, token, done, "erase the batch manifest", rev, why);
    }
};

} // namespace quorumreg::detail
