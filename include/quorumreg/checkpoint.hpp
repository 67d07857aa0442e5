// quorumreg — checkpoint manager: registry subtrees of a resource replicated through the
// quorum store so that whichever node brings the resource online gets the latest keys, and
// no change is ever silently lost (KB Q174070, strengthened).
//
// @code
// quorumreg::hive local("/var/lib/node1/hive");
// quorumreg::directory_store quorum("/shared/quorum");
// quorumreg::checkpoint_manager cp(local, quorum, {.node = "node1"});
// cp.add_checkpoint("SQL", "Software/Contoso/SQL");  // checkpointed at once
// cp.online("SQL");            // take ownership, restore the latest checkpoint, write through
// local.set_value("Software/Contoso/SQL", "Port", quorumreg::value::dword(1433));
// cp.flush("SQL");             // returns once the change is durable in the quorum store
// cp.offline("SQL");           // final checkpoint, release ownership
// @endcode
//
// Semantics
// - Ownership: online() takes the resource's lock through `ownership` (ownership.hpp): a
//   store lease kept alive on threads of its own, so no write delays a keep-alive; the lock's
//   create revision is the fencing token. Every checkpoint write is a store transaction
//   conditional on that token, so a node that lost its lease (expired, or taken over after a
//   pause) gets errc::fenced and its writes are never applied. Past the local deadline
//   (last successful keep-alive + 0.6 lease_ttl) is_online() is false and
//   checkpoint_manager_options::on_lost is called, before any other node can take over.
// - Batches: everything one write-through pass found changed (read at one hive revision)
//   reaches the store all or nothing, in commit order: one transaction, or staged blobs
//   switched through a manifest when the batch has more than batch_subtrees subtrees.
// - online() restores every registered subtree from its latest checkpoint in ONE hive
//   transaction, then writes through: each committed change under a subtree is checkpointed,
//   coalesced for at most checkpoint_manager_options::coalesce_delay, in commit order. flush() waits
//   until everything the hive had committed when it was called is durable in the store.
// - Offline edits: each node records in its hive the SHA-256 of what it last checkpointed or
//   restored. If at online() the local subtree differs from that record and from the quorum
//   copy, the policy decides: reject (online fails with errc::checkpoint_conflict),
//   preserve (default: the local copy is kept in the store as a conflict record, then the
//   quorum copy is restored) or adopt_local (the local copy becomes the new checkpoint; the
//   previous one stays in history). Neither side is ever silently dropped.
// - History: the last checkpoint_manager_options::history generations per subtree are kept, listed
//   with writer node and time, and can be restored (the restore is itself a new generation).
// - Format: "QRCP" header naming resource, subtree, generation, writer node and time, the
//   SHA-256 of the content (the registry's subtree encoding), an optional HMAC-SHA-256 under
//   the cluster key, and a CRC-32C. A corrupt latest generation fails online() with
//   errc::checkpoint_corrupt; older generations are used only through restore().
//
// Parts (this header includes them all, so existing users compile unchanged):
// - checkpoint/types.hpp    options, policies and result types;
// - checkpoint/format.hpp   the "QRCP" on-store blob (encode/decode);
// - checkpoint/layout.hpp   the store key layout, the one place that names keys (qreg uses it);
// - checkpoint/catalog.hpp  read-only catalog: resources, subtrees, history, conflicts (no hive);
// - detail/checkpoint_decision.hpp  the offline-edit decision, a pure function;
// - detail/checkpoint_io.hpp        local reads, this node's records, fenced generation writes;
// - detail/checkpoint_agent.hpp     the per-resource worker (write-through, keep-alive).
// Public parts are what tools and observers need without a manager; detail parts are the
// manager's implementation, split so each can be read and tested on its own.
#pragma once

#include <quorumreg/checkpoint/catalog.hpp>
#include <quorumreg/checkpoint/format.hpp>
#include <quorumreg/checkpoint/layout.hpp>
#include <quorumreg/checkpoint/types.hpp>
#include <quorumreg/detail/checkpoint_agent.hpp>
#include <quorumreg/detail/checkpoint_decision.hpp>
#include <quorumreg/detail/checkpoint_io.hpp>
#include <quorumreg/detail/resilient_watch.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/ownership.hpp>
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
#include <thread>
#include <vector>

namespace quorumreg {

/// Checkpoints chosen subtrees of a node's hive to a quorum store and restores them on online()
/// (see the header comment; `checkpoint_manager` is basic_checkpoint_manager<hive>).
template <class Hive = hive> class basic_checkpoint_manager {
public:
    using traits_type = typename Hive::traits_type;       ///< the hive's name comparison
    using tree_type = detail::registry_tree<traits_type>; ///< the in-memory tree (internal)

    /// `local` and `store` must outlive the manager. The store's identity is recorded in the
    /// hive (value StoreIdentity of local_meta_key) the first time and checked on every later
    /// construction: a store replaced or re-created in its place (a typo, another share, an
    /// emptied log re-created) is errc::identity_mismatch rather than a second, empty quorum.
    basic_checkpoint_manager(Hive& local, quorum_store& store, checkpoint_manager_options opts = {})
        : hive_(local), store_(store), opts_(std::move(opts)), io_(local, store, opts_),
          catalog_(store, opts_.prefix, opts_.cluster_key, hive_limits(local)) {
        if (opts_.history == 0) opts_.history = 1;
        auto id = store_.identity();
        auto recorded = hive_.find_value(opts_.local_meta_key, "StoreIdentity");
        if (!recorded) {
            hive_.set_value(opts_.local_meta_key, "StoreIdentity", value::string(id));
        } else if (recorded->as_string() != id) {
            auto shown = [](const std::string& s) { return s.empty() ? std::string("(none)") : s; };
            throw error(errc::identity_mismatch, "store identity changed: recorded " + shown(recorded->as_string()) +
                                                     ", store has " + shown(id) + " (" + store_.describe() + ")");
        }
    }

    /// Takes every resource this manager holds offline (best effort; errors are swallowed:
    /// call offline() yourself to see them).
    ~basic_checkpoint_manager() {
        std::vector<std::string> names;
        {
            std::lock_guard lk(mu_);
            for (auto& [n, r] : online_)
                names.push_back(n);
        }
        for (auto& n : names) {
            std::error_code ec;
            offline(n, ec);
        }
        // What could not go offline (its final checkpoint failed) is abandoned as in a crash:
        // workers stopped, ownership left to expire, the online marker kept, so that this
        // node's next online() pushes the unpushed commits (defect 11).
        std::map<std::string, std::shared_ptr<agent>> left;
        {
            std::lock_guard lk(mu_);
            left.swap(online_);
        }
        for (auto& [n, st] : left) {
            st->stop();
            st->own->abandon();
        }
    }

    basic_checkpoint_manager(const basic_checkpoint_manager&) = delete;
    basic_checkpoint_manager& operator=(const basic_checkpoint_manager&) = delete;

    /// The options it was made with.
    const checkpoint_manager_options& options() const noexcept { return opts_; }
    /// The read-only view of this manager's checkpoints (same prefix and cluster key).
    const basic_checkpoint_catalog<traits_type>& catalog() const noexcept { return catalog_; }

    // ---- registration -----------------------------------------------------------------------

    /// Registers `subtree` for `resource` and checkpoints it at once: from this node's copy if
    /// the resource is online here or free (a short ownership is taken for it); if another
    /// node owns it, that node checkpoints it as soon as it sees the registration.
    void add_checkpoint(std::string_view resource, std::string_view subtree) {
        run("add_checkpoint", resource, subtree,
            [&](std::error_code& ec, std::string& why) { add_checkpoint(resource, subtree, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void add_checkpoint(std::string_view resource, std::string_view subtree, std::error_code& ec) {
        std::string why;
        add_checkpoint(resource, subtree, ec, why);
    }

    /// Unregisters `subtree` and deletes its checkpoint data (generations and conflicts).
    void remove_checkpoint(std::string_view resource, std::string_view subtree) {
        run("remove_checkpoint", resource, subtree,
            [&](std::error_code& ec, std::string& why) { remove_checkpoint(resource, subtree, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void remove_checkpoint(std::string_view resource, std::string_view subtree, std::error_code& ec) {
        std::string why;
        remove_checkpoint(resource, subtree, ec, why);
    }

    /// Registered subtrees of `resource` (as registered).
    std::vector<std::string> checkpoints(std::string_view resource) {
        return run_r("checkpoints", resource, {},
                     [&](std::error_code& ec, std::string&) { return checkpoints(resource, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<std::string> checkpoints(std::string_view resource, std::error_code& ec) {
        return catalog_.checkpoints(resource, ec);
    }

    // ---- online / offline ---------------------------------------------------------------------

    /// Takes ownership of `resource`, restores its subtrees and starts writing through.
    online_report online(std::string_view resource, online_options o = {}) {
        return run_r("online", resource, {},
                     [&](std::error_code& ec, std::string& why) { return online(resource, o, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    online_report online(std::string_view resource, online_options o, std::error_code& ec) {
        std::string why;
        return online(resource, o, ec, why);
    }

    /// Flushes, saves a final checkpoint (when the content changed) and releases ownership.
    void offline(std::string_view resource) {
        run("offline", resource, {}, [&](std::error_code& ec, std::string& why) { offline(resource, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void offline(std::string_view resource, std::error_code& ec) {
        std::string why;
        offline(resource, ec, why);
    }

    /// True while `resource` is online here and its ownership valid: false as soon as the
    /// local deadline passed without a successful keep-alive (before any other node can take
    /// over), though offline() is still needed to clean up.
    bool is_online(std::string_view resource) const {
        std::lock_guard lk(mu_);
        auto it = online_.find(std::string(resource));
        return it != online_.end() && it->second->own->valid();
    }

    /// The resource's fencing token while online here (0 otherwise).
    store_revision fencing_token(std::string_view resource) const {
        std::lock_guard lk(mu_);
        auto it = online_.find(std::string(resource));
        return it == online_.end() ? 0 : it->second->token;
    }

    /// Waits until every change the hive had committed when called is durable in the store.
    /// errc::fenced if ownership was lost; errc::deadline_exceeded after `timeout`.
    void flush(std::string_view resource, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        run("flush", resource, {}, [&](std::error_code& ec, std::string& why) { flush(resource, timeout, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void flush(std::string_view resource, std::chrono::milliseconds timeout, std::error_code& ec) {
        std::string why;
        flush(resource, timeout, ec, why);
    }

    // ---- history, restore, conflicts ------------------------------------------------------------

    /// Stored generations of `subtree`, oldest first.
    std::vector<checkpoint_generation> history(std::string_view resource, std::string_view subtree) {
        return run_r("history", resource, subtree,
                     [&](std::error_code& ec, std::string& why) { return history(resource, subtree, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<checkpoint_generation> history(std::string_view resource, std::string_view subtree,
                                               std::error_code& ec) {
        std::string why;
        return history(resource, subtree, ec, why);
    }

    /// Makes generation `generation` of `subtree` current again, as a new generation (nothing is
    /// overwritten). Online here: applied to the local hive, then written through. Offline: a
    /// short ownership is taken and the store is updated.
    void restore(std::string_view resource, std::string_view subtree, std::uint64_t generation) {
        run("restore", resource, subtree,
            [&](std::error_code& ec, std::string& why) { restore(resource, subtree, generation, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void restore(std::string_view resource, std::string_view subtree, std::uint64_t generation, std::error_code& ec) {
        std::string why;
        restore(resource, subtree, generation, ec, why);
    }

    // ---- operator changes: make a change to checkpointed keys stick --------------------------

    /// Sets what online() does with offline edits of `resource` when its caller names no
    /// policy, on every node (it is kept in the store; delete_resource() removes it).
    void set_offline_edit_policy(std::string_view resource, offline_edit_policy policy) {
        run("set_offline_edit_policy", resource, to_string(policy),
            [&](std::error_code& ec, std::string&) { set_offline_edit_policy(resource, policy, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    void set_offline_edit_policy(std::string_view resource, offline_edit_policy policy, std::error_code& ec) {
        store_.put(layout().policy_key(resource), to_string(policy), 0, ec);
    }

    /// Applies `edit` to the checkpointed content of `resource` (the way an operator changes a
    /// setting so that the next online() keeps it, instead of an offline edit of one node's
    /// hive). Every operation must lie inside one registered subtree (else not_found, or
    /// invalid_argument when it spans two); require_revision is refused. Online here: applied
    /// to this hive and flushed. Offline: a short ownership is taken and a new generation is
    /// made from the latest one, which the next online() restores. Online on another node:
    /// already_exists, "owned by node X" (make the change there, or take the resource offline).
    void edit_checkpoint(std::string_view resource, const transaction& edit) {
        run("edit_checkpoint", resource, {},
            [&](std::error_code& ec, std::string& why) { edit_checkpoint(resource, edit, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void edit_checkpoint(std::string_view resource, const transaction& edit, std::error_code& ec) {
        std::string why;
        edit_checkpoint(resource, edit, ec, why);
    }

    /// Makes conflict record `id` (a preserved local copy) the subtree's content, through
    /// edit_checkpoint(), then removes the record.
    void adopt_conflict(std::string_view resource, std::string_view id) {
        run("adopt_conflict", resource, id,
            [&](std::error_code& ec, std::string& why) { adopt_conflict(resource, id, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void adopt_conflict(std::string_view resource, std::string_view id, std::error_code& ec) {
        std::string why;
        adopt_conflict(resource, id, ec, why);
    }

    /// Removes conflict record `id` (not_found if there is none); the checkpoint is unchanged.
    void discard_conflict(std::string_view resource, std::string_view id) {
        run("discard_conflict", resource, id,
            [&](std::error_code& ec, std::string& why) { discard_conflict(resource, id, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void discard_conflict(std::string_view resource, std::string_view id, std::error_code& ec) {
        std::string why;
        discard_conflict(resource, id, ec, why);
    }

    /// Conflict records kept for `resource`.
    std::vector<conflict_record> conflicts(std::string_view resource) {
        return run_r("conflicts", resource, {},
                     [&](std::error_code& ec, std::string&) { return conflicts(resource, ec); });
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<conflict_record> conflicts(std::string_view resource, std::error_code& ec) {
        return catalog_.conflicts(resource, ec);
    }

    /// The preserved local copy (registry subtree encoding: import_subtree() it anywhere).
    std::string conflict_content(std::string_view resource, std::string_view id) {
        return run_r("conflict_content", resource, id, [&](std::error_code& ec, std::string& why) {
            return catalog_.conflict_content(resource, id, ec, why);
        });
    }
    /// Non-throwing form: errors go to `ec`.
    std::string conflict_content(std::string_view resource, std::string_view id, std::error_code& ec) {
        std::string why;
        return catalog_.conflict_content(resource, id, ec, why);
    }

    /// Deletes every checkpoint, registration and conflict of `resource` (as WSFC does when a
    /// resource is deleted). Fails with already_exists while another node owns it.
    void delete_resource(std::string_view resource) {
        run("delete_resource", resource, {},
            [&](std::error_code& ec, std::string& why) { delete_resource(resource, ec, why); });
    }
    /// Non-throwing form: errors go to `ec`.
    void delete_resource(std::string_view resource, std::error_code& ec) {
        std::string why;
        delete_resource(resource, ec, why);
    }

    /// Warm standby: keep the newest blob of each subtree of `resource` in memory, used by a later
    /// online() only if the latest pointer names it (same write revision; never an old
    /// generation). A watch the store ends is resubscribed and re-read. Stops with the subscription.
    [[nodiscard]] subscription follow(std::string_view resource) {
        std::error_code ec;
        auto s = follow(resource, ec);
        detail::throw_if(ec, "follow \"" + std::string(resource) + "\"");
        return s;
    }
    /// Non-throwing form: errors go to `ec`.
    [[nodiscard]] subscription follow(std::string_view resource, std::error_code& ec) {
        ec.clear();
        auto cache = io_.cache;
        auto prefix = layout().data_prefix(resource);
        auto on_events = [cache](const std::vector<watch_event>& evs) {
            for (auto& e : evs) {
                if (e.what == watch_event::kind::erase)
                    cache->erase(e.kv.key);
                else if (checkpoint_layout::is_generation_key(e.kv.key))
                    cache->put(e.kv.key, e.kv.value, e.revision);
            }
        };
        auto& store = store_;
        auto resync = [cache, prefix, &store] {
            std::error_code lec;
            auto kvs = store.list(prefix, lec);
            if (lec) return; // the next write or resync fills it
            std::map<std::string_view, const key_value*> by_key;
            for (auto& kv : kvs)
                by_key.emplace(kv.key, &kv);
            const std::string_view latest = "/latest";
            for (auto& kv : kvs) {
                if (kv.key.size() <= latest.size() ||
                    kv.key.compare(kv.key.size() - latest.size(), latest.size(), latest) != 0)
                    continue;
                std::uint64_t g = 0;
                auto [p, perr] = std::from_chars(kv.value.data(), kv.value.data() + kv.value.size(), g);
                if (perr != std::errc{} || p != kv.value.data() + kv.value.size()) continue;
                auto key = kv.key.substr(0, kv.key.size() - latest.size() + 1) + "g/" + detail::gen_key_suffix(g);
                auto blob = by_key.find(key);
                if (blob != by_key.end() && blob->second->mod_revision == kv.mod_revision)
                    cache->put(key, blob->second->value, kv.mod_revision);
            }
        };
        detail::resilient_watch::options wo;
        wo.retry = opts_.retry_interval;
        auto w = std::make_unique<detail::resilient_watch>(store_, prefix, on_events, resync, wo, ec);
        if (ec) return {};
        resync(); // what was written before the watch began
        return detail::make_subscription(std::move(w));
    }
    /// Blobs served from the warm-standby cache so far (for tests and metrics).
    std::size_t cache_hits() const { return io_.cache->hits(); }
    /// Subtrees with a blob in the warm-standby cache (at most one blob each).
    std::size_t cached_blobs() const { return io_.cache->size(); }

private:
    using subtree_state = detail::checkpoint_subtree;
    using local_copy = detail::checkpoint_local_copy;
    using agent = detail::checkpoint_agent<Hive>;

    const checkpoint_layout& layout() const noexcept { return io_.layout; }
    static registry_limits hive_limits(Hive& h) {
        return detail::engine_access::read(h, [](const tree_type& t) { return t.limits(); });
    }
    std::string owner_key(std::string_view r) const { return layout().owner_key(r); }

    template <class F> void run(const char* op, std::string_view resource, std::string_view obj, F&& f) {
        std::error_code ec;
        std::string why;
        f(ec, why);
        if (ec) throw error(ec, describe(op, resource, obj, why));
    }
    template <class F> auto run_r(const char* op, std::string_view resource, std::string_view obj, F&& f) {
        std::error_code ec;
        std::string why;
        auto r = f(ec, why);
        if (ec) throw error(ec, describe(op, resource, obj, why));
        return r;
    }
    static std::string describe(const char* op, std::string_view resource, std::string_view obj,
                                const std::string& why) {
        std::string s = std::string(op) + " \"" + std::string(resource) + "\"";
        if (!obj.empty()) s += " \"" + std::string(obj) + "\"";
        if (!why.empty()) s += " (" + why + ")";
        return s;
    }

    std::shared_ptr<agent> find_online(std::string_view r) const {
        std::lock_guard lk(mu_);
        auto it = online_.find(std::string(r));
        return it == online_.end() ? nullptr : it->second;
    }

    /// Short ownership for operations on a resource that is not online here.
    struct temp_owner {
        explicit temp_owner(quorum_store& s) : store(s) {}
        temp_owner(const temp_owner&) = delete;
        temp_owner& operator=(const temp_owner&) = delete;
        quorum_store& store;
        lease_id lease = 0;
        store_revision token = 0;
        std::string key{};
        ~temp_owner() {
            std::error_code ec;
            if (token) store.release_lock(key, token, ec);
            if (lease) store.revoke_lease(lease, ec);
        }
    };
    std::error_code take_temp(std::string_view r, temp_owner& t, std::string& why) {
        std::error_code ec;
        t.key = owner_key(r);
        t.lease = store_.grant_lease(opts_.lease_ttl, ec);
        if (ec) return ec;
        t.token = store_.acquire_lock(t.key, t.lease, ec);
        if (ec == errc::already_exists) why = "resource is owned by " + owner_name(r);
        if (ec) return ec;
        std::vector<store_revision> mods; // a batch the last owner left half switched (defect 5)
        io_.complete_manifest(r, t.token, mods, ec, why);
        return ec;
    }
    std::string owner_name(std::string_view r) {
        std::error_code ec;
        auto kv = store_.get(owner_key(r), ec);
        return kv ? "node \"" + kv->value.substr(0, kv->value.find('#')) + "\"" : "another node";
    }

    /// One registration attempt; true when another registration raced it (nothing was done).
    bool register_once(std::string_view r, subtree_state& s, std::error_code& ec, std::string& why) {
        bool registered = false;
        auto fence = io_.registration_check(r, s, registered, ec, why);
        if (ec || registered) return false; // already registered: idempotent
        store_txn reg;
        io_.fence_registration(reg, fence);
        reg.on_success.push_back(store_op::put(layout().registration_key(r, s.esc), s.path));
        if (auto st = find_online(r)) {
            // Online here: register under our token and let the worker checkpoint it.
            reg.compares.push_back(key_compare::create_revision_is(owner_key(r), st->token));
            auto res = store_.commit(reg, ec);
            if (ec) return false;
            if (!res.succeeded) {
                auto kv = store_.get(owner_key(r), ec);
                if (!ec && kv && kv->create_revision == st->token) return true; // the fence moved
                if (!ec) ec = errc::fenced;
                why = "ownership was lost";
                return false;
            }
            st->request_rescan(true);
            flush(r, std::chrono::seconds(30), ec, why);
            return false;
        }
        temp_owner t(store_);
        ec = take_temp(r, t, why);
        if (ec == errc::already_exists) {
            // Owned elsewhere: register; the owner picks it up through its registration watch.
            ec.clear();
            why.clear();
            auto res = store_.commit(reg, ec);
            return !ec && !res.succeeded;
        }
        if (ec) return false;
        reg.compares.push_back(key_compare::create_revision_is(t.key, t.token));
        auto res = store_.commit(reg, ec);
        if (ec) return false;
        if (!res.succeeded) return true; // the fence moved: our temporary token holds until t ends
        std::vector<local_copy> local;
        std::vector<subtree_state*> one{&s};
        io_.read_local(one, local);
        io_.read_pointer(r, s, ec);
        if (ec) return false;
        if ((ec = io_.write_generation(r, t.token, s, local[0].exists, local[0].content, why))) return false;
        transaction meta;
        io_.add_meta_ops(meta, r, s, s.hash);
        hive_.commit(meta, ec);
        return false;
    }

    // ---- operations ---------------------------------------------------------------------------

    void add_checkpoint(std::string_view r, std::string_view subtree, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = io_.make_subtree(subtree, s, why))) return;
        subtree_state meta_probe;
        std::string ignored;
        if (!io_.make_subtree(opts_.local_meta_key, meta_probe, ignored) &&
            io_.overlaps(s.canonical, meta_probe.canonical)) {
            why = "overlaps the checkpoint manager's own records at " + opts_.local_meta_key;
            ec = errc::checkpoint_overlap;
            return;
        }
        // A registration commits only if no other one landed since the overlap check; a lost
        // race checks again (against the winner's subtree).
        for (int attempt = 0; attempt < 16; ++attempt)
            if (!register_once(r, s, ec, why) || ec) return;
        ec = errc::unknown_outcome;
        why = "registrations kept changing while checking for overlaps; try again";
    }

    void remove_checkpoint(std::string_view r, std::string_view subtree, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = io_.make_subtree(subtree, s, why))) return;
        auto reg = store_.get(layout().registration_key(r, s.esc), ec);
        if (ec) return;
        if (!reg) {
            ec = errc::not_found;
            why = "not registered";
            return;
        }
        store_txn t;
        t.on_success.push_back(store_op::erase(layout().registration_key(r, s.esc)));
        t.on_success.push_back(store_op::erase_prefix(layout().subtree_data_prefix(r, s.esc)));
        store_.commit(t, ec);
        if (ec) return;
        if (auto st = find_online(r)) st->request_rescan(false);
        transaction meta;
        meta.delete_key(io_.meta_path(r, s));
        std::error_code mec;
        hive_.commit(meta, mec); // absent record is fine
    }

    online_report online(std::string_view r, const online_options& o, std::error_code& ec, std::string& why) {
        ec.clear();
        online_report report;
        std::lock_guard op(op_mu_);
        if (find_online(r)) return report;
        auto st = std::make_shared<agent>(io_, std::string(r));
        // The fenced lease, kept alive on its own threads (defect 7). on_lost runs on its
        // watchdog thread; the agent outlives it (its ownership is destroyed first).
        ownership_options oo;
        oo.node = opts_.node;
        oo.ttl = opts_.lease_ttl;
        oo.on_lost = [self = st.get(), user = opts_.on_lost, name = std::string(r)](std::error_code why) {
            self->lost(why);
            if (user) user(name, why);
        };
        st->own = std::make_unique<ownership>(store_, owner_key(r), std::move(oo));
        st->own->acquire(o.wait_for_owner, ec);
        if (ec) {
            if (ec == errc::deadline_exceeded) {
                ec = errc::already_exists;
                why = "owned by " + owner_name(r);
            } else {
                why = "take ownership";
            }
            return report;
        }
        st->lease = st->own->lease();
        st->token = st->own->token();
        auto release = [&] {
            std::error_code e;
            st->own->release(e);
        };
        // Before any pointer is read: finish a batch the last owner left half switched, so no
        // subtree is restored newer than another of the same batch (defect 5).
        std::vector<store_revision> mods;
        io_.complete_manifest(r, st->token, mods, ec, why);
        if (ec) {
            release();
            return report;
        }
        auto regs = store_.list(layout().subtrees_prefix(r), ec);
        if (ec) {
            why = "list registered subtrees";
            release();
            return report;
        }
        for (auto& kv : regs) {
            subtree_state s;
            std::string w;
            if (!io_.make_subtree(kv.value, s, w)) st->subtrees.push_back(std::move(s));
        }
        // An edit committed after the read below fails the restore commit (revision_mismatch):
        // read and decide again, so the edit is judged (kept as a conflict record under
        // preserve) instead of being overwritten (issue 15, defect 4).
        constexpr int attempts = 5;
        std::uint64_t rev = 0;
        for (int attempt = 1;; ++attempt) {
            report.restored.clear();
            rev = restore_attempt(*st, r, o, report, ec, why);
            if (ec == errc::revision_mismatch && attempt < attempts) continue;
            if (ec == errc::revision_mismatch) {
                ec = errc::checkpoint_conflict;
                why = "the local subtrees keep changing while online() restores them";
            } else if (ec && why.empty()) {
                why = "restore into the local hive";
            }
            break;
        }
        if (ec) {
            release();
            return report;
        }
        st->written_rev = rev;
        st->start();
        std::lock_guard lk(mu_);
        online_[st->name] = st;
        return report;
    }

    /// One read-decide-restore pass of online(); returns the restore's hive revision.
    /// errc::revision_mismatch: a subtree changed after it was read (nothing restored).
    std::uint64_t restore_attempt(agent& ag, std::string_view r, const online_options& o, online_report& report,
                                  std::error_code& ec, std::string& why) {
        auto* st = &ag;
        std::vector<subtree_state*> ptrs;
        for (auto& s : st->subtrees)
            ptrs.push_back(&s);
        std::vector<local_copy> local;
        io_.read_local(ptrs, local);

        const bool unclean = hive_.find_value(io_.online_marker_path(r), "token").has_value();
        auto policy = o.policy ? *o.policy : offline_edit_policy::preserve;
        if (!o.policy) {
            auto stored = catalog_.offline_edit_policy_of(r, ec, why);
            if (ec) return 0;
            if (stored) policy = *stored;
        }
        transaction restore_txn;
        for (auto& l : local) // defect 4: applies only if nothing changed under a subtree since read
            detail::checkpoint_io<Hive>::require_unchanged(restore_txn, l); // first: ops apply in order
        std::vector<std::string> rejected;
        std::vector<detail::checkpoint_write> adopt;
        for (std::size_t i = 0; i < st->subtrees.size(); ++i) {
            auto& s = st->subtrees[i];
            auto blob = io_.read_latest(r, s, ec, why);
            if (ec) return 0;
            detail::offline_edit_inputs in;
            in.local_exists = local[i].exists;
            in.local_hash = local[i].hash;
            in.recorded_hash = io_.recorded_hash(r, s);
            in.quorum_exists = blob.has_value();
            if (blob) {
                in.quorum_absent = blob->absent;
                in.quorum_hash = blob->content_sha256; // verified by decode_checkpoint
                s.hash = in.quorum_hash;
                s.absent = blob->absent;
            }
            in.policy = policy;
            in.unclean_shutdown = unclean;
            in.recorded_generation = io_.recorded_generation(r, s);
            in.quorum_generation = s.generation;
            switch (detail::decide_offline_edit(in)) {
            case detail::offline_edit_decision::reject: rejected.push_back(s.path); continue;
            case detail::offline_edit_decision::first_checkpoint:
            case detail::offline_edit_decision::push_own:
            case detail::offline_edit_decision::adopt_local:
                // The local copy becomes the next (or first) generation: written below, with the
                // other adopted subtrees in one batch.
                adopt.push_back({&s, local[i].exists, &local[i].content});
                continue;
            case detail::offline_edit_decision::preserve_then_restore: {
                // Keep the local copy in the store before it is replaced.
                conflict_record c;
                if ((ec = io_.write_conflict(r, st->token, s, local[i], c, why))) return 0;
                report.conflicts.push_back(std::move(c));
                add_restore(restore_txn, s, local[i], *blob, report);
                break;
            }
            case detail::offline_edit_decision::restore: add_restore(restore_txn, s, local[i], *blob, report); break;
            case detail::offline_edit_decision::keep: break;
            }
            io_.add_meta_ops(restore_txn, r, s, in.quorum_hash);
        }
        if (!rejected.empty()) {
            ec = errc::checkpoint_conflict;
            why = "edited while offline:";
            for (auto& p : rejected)
                why += " \"" + p + "\"";
            why += " (policy reject; bring it online with preserve or adopt_local)";
            return 0;
        }
        bool manifest_left = false;
        if ((ec = io_.write_batch(r, st->token, adopt, manifest_left, why))) {
            if (manifest_left) { // complete it now, so the next owner's restore is not half of it
                std::error_code mec;
                std::string mwhy;
                std::vector<store_revision> mods;
                io_.complete_manifest(r, st->token, mods, mec, mwhy);
            }
            return 0;
        }
        for (auto& w : adopt) {
            io_.add_meta_ops(restore_txn, r, *w.subtree, w.subtree->hash);
            if (std::find(report.adopted.begin(), report.adopted.end(), w.subtree->path) == report.adopted.end())
                report.adopted.push_back(w.subtree->path); // once, also when a retry adopts it again
        }
        restore_txn.set_value(io_.online_marker_path(r), "token", value::qword(st->token));
        if (opts_.before_restore_commit) opts_.before_restore_commit(r);
        // One hive transaction: every subtree restored together, with this node's records.
        why.clear();
        return hive_.commit(restore_txn, ec);
    }

    static void add_restore(transaction& txn, const subtree_state& s, const local_copy& local,
                            const detail::checkpoint_blob& blob, online_report& report) {
        if (blob.absent) {
            if (local.exists) txn.delete_key(s.path);
        } else {
            txn.replace_subtree(s.path, blob.content);
        }
        report.restored.push_back(s.path);
    }

    void flush(std::string_view r, std::chrono::milliseconds timeout, std::error_code& ec, std::string& why) {
        ec.clear();
        auto st = find_online(r);
        if (!st) {
            ec = errc::not_online;
            return;
        }
        st->flush(hive_.revision(), timeout, ec, why);
    }

    void offline(std::string_view r, std::error_code& ec, std::string& why) {
        ec.clear();
        std::lock_guard op(op_mu_);
        auto st = find_online(r);
        if (!st) {
            ec = errc::not_online;
            return;
        }
        // Final checkpoint: everything committed so far (write_through skips unchanged content).
        // If it fails while we still own the resource, we stay online (the worker keeps
        // retrying) and keep ownership: releasing would let another node restore a copy that
        // lacks changes already acknowledged here (issue 15, defect 11). Call offline() again.
        flush(r, opts_.offline_timeout, ec, why);
        if (ec && ec != errc::fenced) {
            why = "final checkpoint not durable; still online here, ownership kept (" + why + ")";
            return;
        }
        st->stop();
        {
            std::lock_guard lk(mu_);
            online_.erase(std::string(r));
        }
        if (!ec) {
            transaction clean; // a clean offline: the next online() is not after a crash
            clean.delete_key(io_.online_marker_path(r));
            std::error_code mec;
            hive_.commit(clean, mec);
        }
        std::error_code rec;
        st->own->release(rec);
    }

    std::vector<checkpoint_generation> history(std::string_view r, std::string_view subtree, std::error_code& ec,
                                               std::string& why) {
        subtree_state s;
        if ((ec = io_.make_subtree(subtree, s, why))) return {};
        return catalog_.history(r, s.path, ec, why);
    }

    void restore(std::string_view r, std::string_view subtree, std::uint64_t g, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = io_.make_subtree(subtree, s, why))) return;
        auto blob = io_.fetch_generation(r, s, g, 0, ec, why); // an explicit generation: always from the store
        if (ec) return;
        if (is_online(r)) {
            transaction t;
            if (blob.absent)
                t.delete_key(s.path);
            else
                t.replace_subtree(s.path, blob.content);
            if (blob.absent && !hive_.key_exists(s.path)) return;
            hive_.commit(t, ec);
            if (ec) return;
            flush(r, std::chrono::seconds(30), ec, why);
            return;
        }
        temp_owner t(store_);
        if ((ec = take_temp(r, t, why))) return;
        io_.read_pointer(r, s, ec);
        if (ec) return;
        ec = io_.write_generation(r, t.token, s, !blob.absent, blob.content, why);
    }

    void edit_checkpoint(std::string_view r, const transaction& edit, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = edit_target(r, edit, s, why))) return;
        if (find_online(r)) {
            hive_.commit(edit, ec); // written through like any other local change
            if (!ec) flush(r, std::chrono::seconds(30), ec, why);
            return;
        }
        temp_owner t(store_);
        if ((ec = take_temp(r, t, why))) {
            if (ec == errc::already_exists)
                why += ": make the change on that node (its hive writes through) or take the resource offline first";
            return;
        }
        // The latest generation, edited in a scratch registry: the new generation is exactly
        // the old content plus `edit`.
        basic_registry<traits_type> scratch(hive_limits(hive_));
        auto latest = io_.read_latest(r, s, ec, why);
        if (ec) return;
        if (latest && !latest->absent) scratch.import_subtree(s.path, latest->content, ec);
        if (ec) return;
        try {
            scratch.commit(edit);
        } catch (const error& e) {
            ec = e.code();
            why = e.what();
            return;
        }
        bool exists = scratch.key_exists(s.path);
        ec = io_.write_generation(r, t.token, s, exists, exists ? scratch.export_subtree(s.path) : std::string(), why);
    }

    /// The registered subtree that holds every operation of `edit`.
    std::error_code edit_target(std::string_view r, const transaction& edit, subtree_state& out, std::string& why) {
        if (edit.empty()) {
            why = "the edit is empty";
            return errc::invalid_argument;
        }
        std::error_code ec;
        std::vector<subtree_state> subtrees;
        std::string ignored;
        for (auto& path : catalog_.checkpoints(r, ec)) {
            subtree_state c;
            if (!io_.make_subtree(path, c, ignored)) subtrees.push_back(std::move(c));
        }
        if (ec) return ec;
        const subtree_state* target = nullptr;
        for (const auto& op : edit.operations()) {
            if (op.kind == op_kind::require_revision) {
                why = "require_revision has no meaning in a checkpoint edit";
                return errc::invalid_argument;
            }
            subtree_state p;
            if ((ec = io_.make_subtree(op.path, p, why))) return ec;
            const subtree_state* in = nullptr;
            for (const auto& c : subtrees)
                if (io_.within(p.canonical, c.canonical)) in = &c;
            if (!in) {
                why = "\"" + op.path + "\" is not inside a checkpointed subtree of this resource";
                return errc::not_found;
            }
            if (target && target != in) {
                why = "the edit spans the subtrees \"" + target->path + "\" and \"" + in->path +
                      "\"; change one subtree per edit";
                return errc::invalid_argument;
            }
            target = in;
        }
        out = *target;
        return {};
    }

    void adopt_conflict(std::string_view r, std::string_view id, std::error_code& ec, std::string& why) {
        ec.clear();
        auto records = catalog_.conflicts(r, ec);
        if (ec) return;
        auto rec = std::find_if(records.begin(), records.end(), [&](const auto& c) { return c.id == id; });
        if (rec == records.end()) {
            ec = errc::not_found;
            why = "no conflict record with this id";
            return;
        }
        auto content = catalog_.conflict_content(r, id, ec, why);
        if (ec) return;
        transaction t;
        t.replace_subtree(rec->subtree, std::move(content));
        edit_checkpoint(r, t, ec, why);
        if (!ec) discard_conflict(r, id, ec, why);
    }

    void discard_conflict(std::string_view r, std::string_view id, std::error_code& ec, std::string& why) {
        ec.clear();
        auto key = catalog_.conflict_key(r, id, ec);
        if (ec == errc::not_found) why = "no conflict record with this id";
        if (!ec) store_.erase(key, ec);
    }

    void delete_resource(std::string_view r, std::error_code& ec, std::string& why) {
        ec.clear();
        if (is_online(r)) {
            std::shared_ptr<agent> st;
            {
                std::lock_guard lk(mu_);
                st = online_.at(std::string(r));
                online_.erase(std::string(r));
            }
            st->stop();
            transaction clean;
            clean.delete_key(io_.online_marker_path(r));
            std::error_code mec;
            hive_.commit(clean, mec);
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(owner_key(r), st->token));
            t.on_success.push_back(store_op::erase_prefix(layout().resource_prefix(r)));
            auto res = store_.commit(t, ec);
            std::error_code rec;
            st->own->release(rec); // the lock key went with the prefix: this revokes the lease
            if (!ec && !res.succeeded) {
                ec = errc::fenced;
                why = "ownership was lost";
            }
            return;
        }
        temp_owner t(store_);
        if ((ec = take_temp(r, t, why))) return;
        store_txn txn;
        txn.compares.push_back(key_compare::create_revision_is(t.key, t.token));
        txn.on_success.push_back(store_op::erase_prefix(layout().resource_prefix(r)));
        auto res = store_.commit(txn, ec);
        if (!ec && !res.succeeded) {
            ec = errc::fenced;
            why = "ownership was lost";
        }
        t.token = 0; // the lock key went with the prefix
    }

    Hive& hive_;
    quorum_store& store_;
    checkpoint_manager_options opts_;
    detail::checkpoint_io<Hive> io_; // refers to opts_ (declared before it)
    basic_checkpoint_catalog<traits_type> catalog_;
    mutable std::mutex mu_; // online_
    std::mutex op_mu_;      // serializes online/offline
    std::map<std::string, std::shared_ptr<agent>> online_;
};

/// The checkpoint manager over the default hive.
using checkpoint_manager = basic_checkpoint_manager<hive>;

} // namespace quorumreg
