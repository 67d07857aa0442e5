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
// - Ownership: online() grants a store lease and takes the resource's ownership lock; the
//   lock's create revision is the fencing token. Every checkpoint write is a store
//   transaction conditional on that token, so a node that lost its lease (expired, or taken
//   over after a pause) gets errc::fenced and its writes are never applied.
// - online() restores every registered subtree from its latest checkpoint in ONE hive
//   transaction, then writes through: each committed change under a subtree is checkpointed,
//   coalesced for at most checkpoint_options::coalesce_delay, in commit order. flush() waits
//   until everything the hive had committed when it was called is durable in the store.
// - Offline edits: each node records in its hive the SHA-256 of what it last checkpointed or
//   restored. If at online() the local subtree differs from that record and from the quorum
//   copy, the policy decides: reject (online fails with errc::checkpoint_conflict),
//   preserve (default: the local copy is kept in the store as a conflict record, then the
//   quorum copy is restored) or adopt_local (the local copy becomes the new checkpoint; the
//   previous one stays in history). Neither side is ever silently dropped.
// - History: the last checkpoint_options::history generations per subtree are kept, listed
//   with writer node and time, and can be restored (the restore is itself a new generation).
// - Format: "QRCP" header naming resource, subtree, generation, writer node and time, the
//   SHA-256 of the content (the registry's subtree encoding), an optional HMAC-SHA-256 under
//   the cluster key, and a CRC-32C. A corrupt latest generation fails online() with
//   errc::checkpoint_corrupt; older generations are used only through restore().
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/crypto.hpp>
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/quorum_store.hpp>
#include <quorumreg/registry.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace quorumreg {

/// What online() does with a local subtree that was edited while the resource was offline.
enum class offline_edit_policy {
    reject,      ///< online fails with errc::checkpoint_conflict; nothing changes
    preserve,    ///< keep the local copy as a conflict record, restore the quorum copy (default)
    adopt_local, ///< the local copy becomes the new checkpoint (the old one stays in history)
};

struct checkpoint_options {
    std::string node = "node";                             ///< this node's name (recorded as writer)
    std::string prefix = "quorumreg/checkpoints/";         ///< store key prefix
    std::chrono::milliseconds lease_ttl{10000};            ///< ownership lease
    std::chrono::milliseconds coalesce_delay{50};          ///< max delay before a change is written
    std::chrono::milliseconds retry_interval{100};         ///< retry after a transient store error
    std::size_t history = 10;                              ///< generations kept per subtree
    std::string cluster_key{};                             ///< non-empty: HMAC-SHA-256 every checkpoint
    std::string local_meta_key = "QuorumReg\\Checkpoints"; ///< hive key for this node's records
};

struct online_options {
    offline_edit_policy policy = offline_edit_policy::preserve;
    /// How long to wait for another owner's lease to expire (0: fail at once with already_exists).
    std::chrono::milliseconds wait_for_owner{0};
};

/// One stored checkpoint generation.
struct checkpoint_generation {
    std::uint64_t generation = 0;
    std::string subtree;
    std::string writer; ///< node that wrote it
    std::chrono::system_clock::time_point time;
    std::string sha256;  ///< hex digest of the content
    bool absent = false; ///< the subtree did not exist when checkpointed
};

/// A local copy that diverged from the quorum, kept instead of being dropped.
struct conflict_record {
    std::string id;
    std::string subtree;
    std::string node;
    std::chrono::system_clock::time_point time;
    std::string sha256;
};

/// What online() did.
struct online_report {
    std::vector<std::string> restored;      ///< subtrees restored from the quorum
    std::vector<std::string> adopted;       ///< local copies that became the checkpoint
    std::vector<conflict_record> conflicts; ///< local copies preserved as conflict records
};

namespace detail {

struct checkpoint_blob {
    std::string resource;
    std::string subtree;
    std::uint64_t generation = 0;
    std::string writer;
    std::uint64_t time_ms = 0;
    bool absent = false;
    std::string content;        ///< registry subtree encoding (empty when absent)
    digest256 content_sha256{}; ///< SHA-256 of content, set by decode_checkpoint (saves hashing it again)
};

inline constexpr std::string_view checkpoint_magic = "QRCP";
inline constexpr std::uint8_t checkpoint_format_version = 1;

/// `content_digest`: SHA-256 of b.content when the caller already has it (hashing megabytes
/// twice per save is measurable); nullptr computes it.
inline std::string encode_checkpoint(const checkpoint_blob& b, std::string_view cluster_key,
                                     const digest256* content_digest = nullptr) {
    std::string out;
    out.reserve(b.content.size() + b.resource.size() + b.subtree.size() + b.writer.size() + 128);
    byte_writer w(out);
    w.raw(checkpoint_magic);
    w.u8(checkpoint_format_version);
    w.u8(static_cast<std::uint8_t>((b.absent ? 1 : 0) | (cluster_key.empty() ? 0 : 2)));
    w.str(b.resource);
    w.str(b.subtree);
    w.varint(b.generation);
    w.str(b.writer);
    w.u64le(b.time_ms);
    auto digest = content_digest ? *content_digest : sha256(b.content);
    w.raw(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
    w.str(b.content);
    if (!cluster_key.empty()) {
        auto mac = hmac_sha256(cluster_key, out);
        w.raw(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
    }
    w.u32le(crc32c(out));
    return out;
}

/// Decodes and verifies a checkpoint. Every failure is errc::checkpoint_corrupt (or
/// unsupported_version) with `why` saying which check failed.
inline std::error_code decode_checkpoint(std::string_view in, std::string_view cluster_key, checkpoint_blob& b,
                                         std::string& why, std::string* sha_hex = nullptr) {
    if (in.size() < 4 + 2 + 4 || in.substr(0, 4) != checkpoint_magic) {
        why = "not a checkpoint";
        return errc::checkpoint_corrupt;
    }
    byte_reader tail(in.substr(in.size() - 4));
    if (crc32c(in.data(), in.size() - 4) != tail.u32le()) {
        why = "checksum mismatch";
        return errc::checkpoint_corrupt;
    }
    std::string_view body = in.substr(0, in.size() - 4);
    byte_reader r(body);
    r.raw(4);
    auto version = r.u8();
    auto flags = r.u8();
    if (version != checkpoint_format_version) {
        why = "format version " + std::to_string(version);
        return errc::unsupported_version;
    }
    b.absent = flags & 1;
    bool has_mac = flags & 2;
    b.resource = std::string(r.str());
    b.subtree = std::string(r.str());
    b.generation = r.varint();
    b.writer = std::string(r.str());
    b.time_ms = r.u64le();
    auto digest = r.raw(32);
    b.content = std::string(r.str());
    std::size_t signed_len = r.position();
    auto mac = has_mac ? r.raw(32) : std::string_view{};
    if (!r.ok() || r.remaining() != 0) {
        why = "truncated or malformed";
        return errc::checkpoint_corrupt;
    }
    auto actual = sha256(b.content);
    if (std::string_view(reinterpret_cast<const char*>(actual.data()), 32) != digest) {
        why = "content does not match its SHA-256";
        return errc::checkpoint_corrupt;
    }
    if (!cluster_key.empty()) {
        if (!has_mac) {
            why = "not authenticated (no HMAC) but a cluster key is configured";
            return errc::checkpoint_corrupt;
        }
        auto expected = hmac_sha256(cluster_key, body.substr(0, signed_len));
        digest256 got{};
        std::copy(mac.begin(), mac.end(), reinterpret_cast<char*>(got.data()));
        if (!digest_equal(expected, got)) {
            why = "HMAC mismatch (tampered, or written with another cluster key)";
            return errc::checkpoint_corrupt;
        }
    }
    b.content_sha256 = actual;
    if (sha_hex) *sha_hex = hex_encode(actual);
    return {};
}

inline std::string gen_key_suffix(std::uint64_t g) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(g));
    return buf;
}

} // namespace detail

template <class Hive = hive> class basic_checkpoint_manager {
public:
    using traits_type = typename Hive::traits_type;
    using tree_type = detail::registry_tree<traits_type>;

    /// `local` and `store` must outlive the manager. The store's identity is recorded in the
    /// hive (value StoreIdentity of local_meta_key) the first time and checked on every later
    /// construction: a store replaced or re-created in its place (a typo, another share, an
    /// emptied log re-created) is errc::identity_mismatch rather than a second, empty quorum.
    basic_checkpoint_manager(Hive& local, quorum_store& store, checkpoint_options opts = {})
        : hive_(local), store_(store), opts_(std::move(opts)) {
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
    }

    basic_checkpoint_manager(const basic_checkpoint_manager&) = delete;
    basic_checkpoint_manager& operator=(const basic_checkpoint_manager&) = delete;

    const checkpoint_options& options() const noexcept { return opts_; }

    // ---- registration -----------------------------------------------------------------------

    /// Registers `subtree` for `resource` and checkpoints it at once: from this node's copy if
    /// the resource is online here or free (a short ownership is taken for it); if another
    /// node owns it, that node checkpoints it as soon as it sees the registration.
    void add_checkpoint(std::string_view resource, std::string_view subtree) {
        run("add_checkpoint", resource, subtree,
            [&](std::error_code& ec, std::string& why) { add_checkpoint(resource, subtree, ec, why); });
    }
    void add_checkpoint(std::string_view resource, std::string_view subtree, std::error_code& ec) {
        std::string why;
        add_checkpoint(resource, subtree, ec, why);
    }

    /// Unregisters `subtree` and deletes its checkpoint data (generations and conflicts).
    void remove_checkpoint(std::string_view resource, std::string_view subtree) {
        run("remove_checkpoint", resource, subtree,
            [&](std::error_code& ec, std::string& why) { remove_checkpoint(resource, subtree, ec, why); });
    }
    void remove_checkpoint(std::string_view resource, std::string_view subtree, std::error_code& ec) {
        std::string why;
        remove_checkpoint(resource, subtree, ec, why);
    }

    /// Registered subtrees of `resource` (as registered).
    std::vector<std::string> checkpoints(std::string_view resource) {
        return run_r("checkpoints", resource, {},
                     [&](std::error_code& ec, std::string&) { return checkpoints(resource, ec); });
    }
    std::vector<std::string> checkpoints(std::string_view resource, std::error_code& ec) {
        auto kvs = store_.list(res_prefix(resource) + "subtrees/", ec);
        std::vector<std::string> out;
        for (auto& kv : kvs)
            out.push_back(kv.value);
        return out;
    }

    // ---- online / offline ---------------------------------------------------------------------

    /// Takes ownership of `resource`, restores its subtrees and starts writing through.
    online_report online(std::string_view resource, online_options o = {}) {
        return run_r("online", resource, {},
                     [&](std::error_code& ec, std::string& why) { return online(resource, o, ec, why); });
    }
    online_report online(std::string_view resource, online_options o, std::error_code& ec) {
        std::string why;
        return online(resource, o, ec, why);
    }

    /// Flushes, saves a final checkpoint (when the content changed) and releases ownership.
    void offline(std::string_view resource) {
        run("offline", resource, {}, [&](std::error_code& ec, std::string& why) { offline(resource, ec, why); });
    }
    void offline(std::string_view resource, std::error_code& ec) {
        std::string why;
        offline(resource, ec, why);
    }

    bool is_online(std::string_view resource) const {
        std::lock_guard lk(mu_);
        return online_.count(std::string(resource)) != 0;
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
    void restore(std::string_view resource, std::string_view subtree, std::uint64_t generation, std::error_code& ec) {
        std::string why;
        restore(resource, subtree, generation, ec, why);
    }

    /// Conflict records kept for `resource`.
    std::vector<conflict_record> conflicts(std::string_view resource) {
        return run_r("conflicts", resource, {},
                     [&](std::error_code& ec, std::string&) { return conflicts(resource, ec); });
    }
    std::vector<conflict_record> conflicts(std::string_view resource, std::error_code& ec) {
        std::vector<conflict_record> out;
        auto kvs = store_.list(res_prefix(resource) + "conflicts/", ec);
        if (ec) return out;
        for (auto& kv : kvs) {
            detail::checkpoint_blob b;
            std::string why, sha;
            if (detail::decode_checkpoint(kv.value, opts_.cluster_key, b, why, &sha)) continue;
            out.push_back({kv.key.substr(kv.key.rfind('/') + 1), b.subtree, b.writer, from_ms(b.time_ms), sha});
        }
        return out;
    }

    /// The preserved local copy (registry subtree encoding: import_subtree() it anywhere).
    std::string conflict_content(std::string_view resource, std::string_view id) {
        return run_r("conflict_content", resource, id,
                     [&](std::error_code& ec, std::string& why) { return conflict_content(resource, id, ec, why); });
    }
    std::string conflict_content(std::string_view resource, std::string_view id, std::error_code& ec) {
        std::string why;
        return conflict_content(resource, id, ec, why);
    }

    /// Deletes a conflict record once it has been dealt with.
    void discard_conflict(std::string_view resource, std::string_view id) {
        run("discard_conflict", resource, id,
            [&](std::error_code& ec, std::string&) { discard_conflict(resource, id, ec); });
    }
    void discard_conflict(std::string_view resource, std::string_view id, std::error_code& ec) {
        auto key = find_conflict_key(resource, id, ec);
        if (!ec) store_.erase(key, ec);
    }

    /// Deletes every checkpoint, registration and conflict of `resource` (as WSFC does when a
    /// resource is deleted). Fails with already_exists while another node owns it.
    void delete_resource(std::string_view resource) {
        run("delete_resource", resource, {},
            [&](std::error_code& ec, std::string& why) { delete_resource(resource, ec, why); });
    }
    void delete_resource(std::string_view resource, std::error_code& ec) {
        std::string why;
        delete_resource(resource, ec, why);
    }

    /// Warm standby: keep the latest checkpoint blobs of `resource` in memory as they are
    /// written, so a later online() here does not fetch them. Stops with the subscription.
    [[nodiscard]] subscription follow(std::string_view resource) {
        std::error_code ec;
        auto s = follow(resource, ec);
        detail::throw_if(ec, "follow \"" + std::string(resource) + "\"");
        return s;
    }
    [[nodiscard]] subscription follow(std::string_view resource, std::error_code& ec) {
        auto prefix = res_prefix(resource) + "data/";
        auto cache = cache_;
        return store_.watch(
            prefix, 0,
            [cache](const std::vector<watch_event>& evs, std::error_code) {
                std::lock_guard lk(cache->mu);
                for (auto& e : evs)
                    if (e.what == watch_event::kind::put && e.kv.key.find("/g/") != std::string::npos)
                        cache->blobs[e.kv.key] = e.kv.value;
            },
            ec);
    }
    /// Blobs served from the warm-standby cache so far (for tests and metrics).
    std::size_t cache_hits() const { return cache_->hits.load(); }

private:
    struct subtree_state {
        std::string path;      // as registered
        std::string canonical; // folded, '\'-separated
        std::string esc;       // key-escaped canonical
        std::uint64_t generation = 0;
        store_revision latest_mod = 0; // mod_revision of the latest pointer (0: none yet)
        detail::digest256 hash{};
        bool absent = true;
    };

    struct resource_state {
        std::string name;
        lease_id lease = 0;
        store_revision token = 0;
        std::vector<subtree_state> subtrees;
        std::vector<subscription> watches;
        subscription registration_watch;
        std::thread worker;
        std::mutex mu;
        std::condition_variable cv;
        bool dirty = false;
        bool flush_requested = false;
        std::uint64_t flush_target = 0; // hive revision the newest flush() waits for
        bool stopping = false;
        bool rescan = false; // registrations changed
        std::chrono::steady_clock::time_point first_dirty{};
        std::uint64_t written_rev = 0;
        std::error_code failure; // sticky (fenced)
        std::string failure_why;
    };

    struct blob_cache {
        std::mutex mu;
        std::map<std::string, std::string> blobs;
        std::atomic<std::size_t> hits{0};
    };

    // ---- helpers ----------------------------------------------------------------------------

    static std::chrono::system_clock::time_point from_ms(std::uint64_t ms) {
        return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
    }
    static std::uint64_t now_ms() {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count());
    }

    std::string res_prefix(std::string_view resource) const {
        return opts_.prefix + detail::key_escape(resource) + "/";
    }
    std::string owner_key(std::string_view r) const { return res_prefix(r) + "owner"; }
    std::string reg_key(std::string_view r, const subtree_state& s) const {
        return res_prefix(r) + "subtrees/" + s.esc;
    }
    std::string latest_key(std::string_view r, const subtree_state& s) const {
        return res_prefix(r) + "data/" + s.esc + "/latest";
    }
    std::string gen_key(std::string_view r, const subtree_state& s, std::uint64_t g) const {
        return res_prefix(r) + "data/" + s.esc + "/g/" + detail::gen_key_suffix(g);
    }
    std::string meta_path(std::string_view r, const subtree_state& s) const {
        return opts_.local_meta_key + "\\" +
               detail::hex_encode(detail::sha256(std::string(r) + std::string(1, '\0') + s.canonical));
    }

    std::error_code make_subtree(std::string_view path, subtree_state& s, std::string& why) const {
        std::vector<std::string_view> parts;
        auto limits = detail::engine_access::read(hive_, [](const tree_type& t) { return t.limits(); });
        if (auto ec = detail::split_path(path, limits, parts, &why)) return ec;
        if (parts.empty()) {
            why = "the root key cannot be checkpointed";
            return errc::invalid_argument;
        }
        s.path = std::string(path);
        s.canonical.clear();
        for (auto p : parts) {
            if (!s.canonical.empty()) s.canonical.push_back('\\');
            traits_type::fold(p, s.canonical);
        }
        s.esc = detail::key_escape(s.canonical);
        return {};
    }

    static bool overlaps(const std::string& a, const std::string& b) {
        auto under = [](const std::string& x, const std::string& y) {
            return x == y || (x.size() > y.size() && x.compare(0, y.size(), y) == 0 && x[y.size()] == '\\');
        };
        return under(a, b) || under(b, a);
    }

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

    /// Local content of a subtree and the hive revision it was read at, in one consistent read.
    struct local_copy {
        bool exists = false;
        std::string content;
        detail::digest256 hash{};
    };
    std::uint64_t read_local(const std::vector<subtree_state*>& subtrees, std::vector<local_copy>& out) {
        out.assign(subtrees.size(), {});
        return detail::engine_access::read(hive_, [&](const tree_type& t) {
            std::vector<std::string_view> parts;
            for (std::size_t i = 0; i < subtrees.size(); ++i) {
                detail::split_path(subtrees[i]->path, t.limits(), parts);
                if (const auto* n = t.find(parts)) {
                    out[i].exists = true;
                    out[i].content = tree_type::encode_subtree(*n, false);
                }
                out[i].hash = detail::sha256(out[i].content);
            }
            return t.revision();
        });
    }

    /// Reads the latest-generation pointer of `s`. False if there is none yet.
    bool read_pointer(std::string_view r, subtree_state& s, std::error_code& ec) {
        auto latest = store_.get(latest_key(r, s), ec);
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
    std::optional<detail::checkpoint_blob> read_latest(std::string_view r, subtree_state& s, std::error_code& ec,
                                                       std::string& why) {
        if (!read_pointer(r, s, ec)) return std::nullopt;
        auto blob = fetch_generation(r, s, s.generation, ec, why);
        if (ec) return std::nullopt;
        return blob;
    }

    detail::checkpoint_blob fetch_generation(std::string_view r, const subtree_state& s, std::uint64_t g,
                                             std::error_code& ec, std::string& why) {
        auto key = gen_key(r, s, g);
        std::string bytes;
        {
            std::lock_guard lk(cache_->mu);
            auto it = cache_->blobs.find(key);
            if (it != cache_->blobs.end()) {
                bytes = it->second;
                ++cache_->hits;
            }
        }
        if (bytes.empty()) {
            auto kv = store_.get(key, ec);
            if (ec) return {};
            if (!kv) {
                ec = errc::not_found;
                why = "generation " + std::to_string(g) + " of \"" + s.path + "\" is not in the store";
                return {};
            }
            bytes = std::move(kv->value);
        }
        detail::checkpoint_blob b;
        std::string w;
        if ((ec = detail::decode_checkpoint(bytes, opts_.cluster_key, b, w))) {
            why = "generation " + std::to_string(g) + " of \"" + s.path + "\": " + w;
            if (g > 1) why += "; older generations remain available through restore()";
        }
        return b;
    }

    /// Writes `content` as the next generation of `s`, conditional on the fencing token and on
    /// the latest pointer being where we last saw it. Safe to retry after unknown_outcome.
    std::error_code write_generation(std::string_view r, store_revision token, subtree_state& s, bool exists,
                                     const std::string& content, std::string& why) {
        detail::checkpoint_blob b;
        b.resource = std::string(r);
        b.subtree = s.path;
        b.writer = opts_.node;
        b.time_ms = now_ms();
        b.absent = !exists;
        b.content = exists ? content : std::string();
        const auto digest = detail::sha256(b.content); // once, not once per attempt and again after
        for (int attempt = 0; attempt < 5; ++attempt) {
            b.generation = s.generation + 1;
            auto blob = detail::encode_checkpoint(b, opts_.cluster_key, &digest);
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(owner_key(r), token));
            t.compares.push_back(s.latest_mod ? key_compare::mod_revision_is(latest_key(r, s), s.latest_mod)
                                              : key_compare::absent(latest_key(r, s)));
            t.on_success.push_back(store_op::put(gen_key(r, s, b.generation), blob));
            t.on_success.push_back(store_op::put(latest_key(r, s), std::to_string(b.generation)));
            if (b.generation > opts_.history)
                t.on_success.push_back(store_op::erase(gen_key(r, s, b.generation - opts_.history)));
            std::error_code ec;
            auto res = store_.commit(t, ec);
            if (ec == errc::unknown_outcome || ec == errc::deadline_exceeded) {
                // Re-read before deciding: the write may have been applied.
                std::error_code rec;
                auto latest = store_.get(latest_key(r, s), rec);
                if (!rec && latest && latest->value == std::to_string(b.generation)) {
                    auto g = store_.get(gen_key(r, s, b.generation), rec);
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
            auto owner = store_.get(owner_key(r), ec);
            if (ec) return ec;
            if (!owner || owner->create_revision != token) {
                why = "ownership of \"" + std::string(r) + "\" was lost (lease expired or taken over); write rejected";
                return errc::fenced;
            }
            auto latest = store_.get(latest_key(r, s), ec);
            if (ec) return ec;
            s.latest_mod = latest ? latest->mod_revision : 0;
            s.generation = latest ? std::stoull(latest->value) : 0;
        }
        why = "checkpoint pointer of \"" + s.path + "\" keeps changing";
        return errc::compare_failed;
    }

    /// Records in the local hive what this node last checkpointed/restored for each subtree.
    void add_meta_ops(transaction& txn, std::string_view r, const subtree_state& s,
                      const detail::digest256& hash) const {
        auto mp = meta_path(r, s);
        txn.set_value(mp, "resource", value::string(std::string(r)));
        txn.set_value(mp, "subtree", value::string(s.path));
        txn.set_value(mp, "hash", value::binary(std::string_view(reinterpret_cast<const char*>(hash.data()), 32)));
        txn.set_value(mp, "generation", value::qword(s.generation));
    }
    std::optional<detail::digest256> recorded_hash(std::string_view r, const subtree_state& s) {
        auto v = hive_.find_value(meta_path(r, s), "hash");
        if (!v || v->type() != value_type::binary || v->as_binary().size() != 32) return std::nullopt;
        detail::digest256 d{};
        std::copy(v->as_binary().begin(), v->as_binary().end(), d.begin());
        return d;
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
        return ec;
    }
    std::string owner_name(std::string_view r) {
        std::error_code ec;
        auto kv = store_.get(owner_key(r), ec);
        return kv ? "node \"" + kv->value.substr(0, kv->value.find('#')) + "\"" : "another node";
    }

    // ---- operations ---------------------------------------------------------------------------

    void add_checkpoint(std::string_view r, std::string_view subtree, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = make_subtree(subtree, s, why))) return;
        subtree_state meta_probe;
        std::string ignored;
        if (!make_subtree(opts_.local_meta_key, meta_probe, ignored) && overlaps(s.canonical, meta_probe.canonical)) {
            why = "overlaps the checkpoint manager's own records at " + opts_.local_meta_key;
            ec = errc::invalid_argument;
            return;
        }
        auto existing = store_.list(res_prefix(r) + "subtrees/", ec);
        if (ec) return;
        for (auto& kv : existing) {
            subtree_state o;
            if (make_subtree(kv.value, o, ignored)) continue;
            if (o.canonical == s.canonical) return; // already registered: idempotent
            if (overlaps(o.canonical, s.canonical)) {
                why = "overlaps registered subtree \"" + kv.value + "\"";
                ec = errc::invalid_argument;
                return;
            }
        }
        std::shared_ptr<resource_state> st;
        {
            std::lock_guard lk(mu_);
            auto it = online_.find(std::string(r));
            if (it != online_.end()) st = it->second;
        }
        if (st) {
            // Online here: register under our token and let the worker checkpoint it.
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(owner_key(r), st->token));
            t.on_success.push_back(store_op::put(reg_key(r, s), s.path));
            auto res = store_.commit(t, ec);
            if (ec) return;
            if (!res.succeeded) {
                ec = errc::fenced;
                why = "ownership was lost";
                return;
            }
            {
                std::lock_guard lk(st->mu);
                st->rescan = true;
                st->flush_requested = true;
            }
            st->cv.notify_all();
            flush(r, std::chrono::seconds(30), ec, why);
            return;
        }
        temp_owner t(store_);
        ec = take_temp(r, t, why);
        if (ec == errc::already_exists) {
            // Owned elsewhere: register; the owner picks it up through its registration watch.
            ec.clear();
            why.clear();
            store_.put(reg_key(r, s), s.path, 0, ec);
            return;
        }
        if (ec) return;
        store_txn reg;
        reg.compares.push_back(key_compare::create_revision_is(t.key, t.token));
        reg.on_success.push_back(store_op::put(reg_key(r, s), s.path));
        if ((store_.commit(reg, ec), ec)) return;
        std::vector<local_copy> local;
        std::vector<subtree_state*> one{&s};
        read_local(one, local);
        read_pointer(r, s, ec);
        if (ec) return;
        if ((ec = write_generation(r, t.token, s, local[0].exists, local[0].content, why))) return;
        transaction meta;
        add_meta_ops(meta, r, s, s.hash);
        hive_.commit(meta, ec);
    }

    void remove_checkpoint(std::string_view r, std::string_view subtree, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = make_subtree(subtree, s, why))) return;
        auto reg = store_.get(reg_key(r, s), ec);
        if (ec) return;
        if (!reg) {
            ec = errc::not_found;
            why = "not registered";
            return;
        }
        store_txn t;
        t.on_success.push_back(store_op::erase(reg_key(r, s)));
        t.on_success.push_back(store_op::erase_prefix(res_prefix(r) + "data/" + s.esc + "/"));
        store_.commit(t, ec);
        if (ec) return;
        std::shared_ptr<resource_state> st;
        {
            std::lock_guard lk(mu_);
            auto it = online_.find(std::string(r));
            if (it != online_.end()) st = it->second;
        }
        if (st) {
            std::lock_guard lk(st->mu);
            st->rescan = true;
            st->cv.notify_all();
        }
        transaction meta;
        meta.delete_key(meta_path(r, s));
        std::error_code mec;
        hive_.commit(meta, mec); // absent record is fine
    }

    online_report online(std::string_view r, const online_options& o, std::error_code& ec, std::string& why) {
        ec.clear();
        online_report report;
        std::lock_guard op(op_mu_);
        {
            std::lock_guard lk(mu_);
            if (online_.count(std::string(r))) return report;
        }
        auto st = std::make_shared<resource_state>();
        st->name = std::string(r);
        st->lease = store_.grant_lease(opts_.lease_ttl, ec);
        if (ec) {
            why = "grant ownership lease";
            return report;
        }
        auto release = [&] {
            std::error_code e;
            if (st->token) store_.release_lock(owner_key(r), st->token, e);
            store_.revoke_lease(st->lease, e);
        };
        auto deadline = std::chrono::steady_clock::now() + o.wait_for_owner;
        while (true) {
            // The lock's value names the owner for people: "<node>#<lease>".
            store_txn t;
            t.compares.push_back(key_compare::absent(owner_key(r)));
            t.on_success.push_back(
                store_op::put(owner_key(r), opts_.node + "#" + std::to_string(st->lease), st->lease));
            auto res = store_.commit(t, ec);
            if (ec) {
                why = "take ownership";
                release();
                return report;
            }
            if (res.succeeded) {
                auto kv = store_.get(owner_key(r), ec);
                if (ec || !kv || kv->lease != st->lease) {
                    if (!ec) ec = errc::lease_expired;
                    why = "ownership lock vanished";
                    release();
                    return report;
                }
                st->token = kv->create_revision;
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                ec = errc::already_exists;
                why = "owned by " + owner_name(r);
                release();
                return report;
            }
            // Keep our lease alive while we wait for the owner's to expire.
            std::error_code kec;
            store_.keep_alive(st->lease, kec);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }

        auto regs = store_.list(res_prefix(r) + "subtrees/", ec);
        if (ec) {
            why = "list registered subtrees";
            release();
            return report;
        }
        for (auto& kv : regs) {
            subtree_state s;
            std::string w;
            if (!make_subtree(kv.value, s, w)) st->subtrees.push_back(std::move(s));
        }
        std::vector<subtree_state*> ptrs;
        for (auto& s : st->subtrees)
            ptrs.push_back(&s);
        std::vector<local_copy> local;
        read_local(ptrs, local);

        transaction restore_txn;
        std::vector<std::string> rejected;
        for (std::size_t i = 0; i < st->subtrees.size(); ++i) {
            auto& s = st->subtrees[i];
            auto blob = read_latest(r, s, ec, why);
            if (ec) {
                release();
                return report;
            }
            if (!blob) {
                // Registered but never checkpointed: this node's copy is the first checkpoint.
                if ((ec = write_generation(r, st->token, s, local[i].exists, local[i].content, why))) {
                    release();
                    return report;
                }
                add_meta_ops(restore_txn, r, s, s.hash);
                report.adopted.push_back(s.path);
                continue;
            }
            auto quorum_hash = blob->content_sha256; // verified by decode_checkpoint
            s.hash = quorum_hash;
            s.absent = blob->absent;
            bool same = local[i].exists == !blob->absent && local[i].hash == quorum_hash;
            auto recorded = recorded_hash(r, s);
            bool diverged = !same && (recorded ? *recorded != local[i].hash : local[i].exists);
            if (diverged) {
                if (o.policy == offline_edit_policy::reject) {
                    rejected.push_back(s.path);
                    continue;
                }
                if (o.policy == offline_edit_policy::adopt_local) {
                    if ((ec = write_generation(r, st->token, s, local[i].exists, local[i].content, why))) {
                        release();
                        return report;
                    }
                    add_meta_ops(restore_txn, r, s, s.hash);
                    report.adopted.push_back(s.path);
                    continue;
                }
                // preserve: keep the local copy in the store before it is replaced.
                conflict_record c;
                if ((ec = write_conflict(r, st->token, s, local[i], c, why))) {
                    release();
                    return report;
                }
                report.conflicts.push_back(std::move(c));
            }
            if (!same) {
                if (blob->absent) {
                    if (local[i].exists) restore_txn.delete_key(s.path);
                } else {
                    restore_txn.replace_subtree(s.path, blob->content);
                }
                report.restored.push_back(s.path);
            }
            add_meta_ops(restore_txn, r, s, quorum_hash);
        }
        if (!rejected.empty()) {
            ec = errc::checkpoint_conflict;
            why = "edited while offline:";
            for (auto& p : rejected)
                why += " \"" + p + "\"";
            why += " (policy reject; bring it online with preserve or adopt_local)";
            release();
            return report;
        }
        // One hive transaction: every subtree restored together, with this node's records.
        auto rev = hive_.commit(restore_txn, ec);
        if (ec) {
            why = "restore into the local hive";
            release();
            return report;
        }
        st->written_rev = rev;
        start(st);
        return report;
    }

    std::error_code write_conflict(std::string_view r, store_revision token, const subtree_state& s,
                                   const local_copy& local, conflict_record& c, std::string& why) {
        detail::checkpoint_blob b;
        b.resource = std::string(r);
        b.subtree = s.path;
        b.writer = opts_.node;
        b.time_ms = now_ms();
        b.absent = !local.exists;
        b.content = local.content;
        c.id = std::to_string(b.time_ms) + "-" + detail::key_escape(opts_.node) + "-" +
               detail::hex_encode(local.hash).substr(0, 8);
        c.subtree = s.path;
        c.node = opts_.node;
        c.time = from_ms(b.time_ms);
        c.sha256 = detail::hex_encode(local.hash);
        store_txn t;
        t.compares.push_back(key_compare::create_revision_is(owner_key(r), token));
        t.on_success.push_back(store_op::put(res_prefix(r) + "conflicts/" + s.esc + "/" + c.id,
                                             detail::encode_checkpoint(b, opts_.cluster_key)));
        std::error_code ec;
        auto res = store_.commit(t, ec);
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

    void start(const std::shared_ptr<resource_state>& st) {
        for (auto& s : st->subtrees)
            st->watches.push_back(watch_subtree(st, s.path));
        std::weak_ptr<resource_state> weak = st;
        std::error_code ec;
        st->registration_watch = store_.watch(
            res_prefix(st->name) + "subtrees/", 0,
            [weak](const std::vector<watch_event>&, std::error_code) {
                if (auto s = weak.lock()) {
                    std::lock_guard lk(s->mu);
                    s->rescan = true;
                    s->cv.notify_all();
                }
            },
            ec);
        st->worker = std::thread([this, st] { worker(st); });
        std::lock_guard lk(mu_);
        online_[st->name] = st;
    }

    subscription watch_subtree(const std::shared_ptr<resource_state>& st, const std::string& path) {
        std::weak_ptr<resource_state> weak = st;
        return hive_.watch(path, watch_scope::subtree, [weak](const change_event&) {
            if (auto s = weak.lock()) {
                std::lock_guard lk(s->mu);
                if (!s->dirty) {
                    s->dirty = true;
                    s->first_dirty = std::chrono::steady_clock::now();
                }
                s->cv.notify_all();
            }
        });
    }

    /// Picks up subtrees registered (or removed) while online.
    void rescan(const std::shared_ptr<resource_state>& st) {
        std::error_code ec;
        auto regs = store_.list(res_prefix(st->name) + "subtrees/", ec);
        if (ec) return;
        std::vector<subtree_state> next;
        std::vector<subscription> watches;
        for (auto& kv : regs) {
            subtree_state s;
            std::string w;
            if (make_subtree(kv.value, s, w)) continue;
            bool known = false;
            for (auto& o : st->subtrees)
                if (o.canonical == s.canonical) {
                    next.push_back(o);
                    known = true;
                }
            if (!known) {
                read_pointer(st->name, s, ec);
                s.hash = {}; // unknown: force a first write from this node's copy
                s.absent = false;
                next.push_back(std::move(s));
            }
        }
        for (auto& s : next)
            watches.push_back(watch_subtree(st, s.path));
        st->subtrees = std::move(next);
        st->watches = std::move(watches);
    }

    void worker(std::shared_ptr<resource_state> st) {
        using clock = std::chrono::steady_clock;
        auto keepalive_every = std::max(opts_.lease_ttl / 3, std::chrono::milliseconds(1));
        auto next_keepalive = clock::now() + keepalive_every;
        std::unique_lock lk(st->mu);
        while (!st->stopping) {
            auto due = st->dirty ? st->first_dirty + opts_.coalesce_delay : clock::time_point::max();
            auto wake = std::min(due, next_keepalive);
            if (!st->flush_requested && !st->rescan) st->cv.wait_until(lk, wake);
            if (st->stopping) break;
            auto now = clock::now();
            if (now >= next_keepalive && !st->failure) {
                lk.unlock();
                std::error_code ec;
                store_.keep_alive(st->lease, ec);
                lk.lock();
                if (ec == errc::lease_expired) {
                    st->failure = errc::fenced;
                    st->failure_why = "ownership lease expired";
                    st->cv.notify_all();
                }
                next_keepalive = clock::now() + (ec ? keepalive_every / 4 : keepalive_every);
            }
            bool write_now = st->flush_requested || st->rescan || (st->dirty && clock::now() >= due);
            if (!write_now || st->failure) {
                if (st->failure) st->flush_requested = false;
                continue;
            }
            bool do_rescan = st->rescan;
            st->rescan = false;
            st->dirty = false;
            lk.unlock();
            if (do_rescan) rescan(st);
            std::string why;
            auto ec = write_through(st, why);
            lk.lock();
            if (ec == errc::fenced) {
                st->failure = ec;
                st->failure_why = why;
            } else if (ec) {
                // Transient: keep it dirty and retry shortly.
                if (!st->dirty) {
                    st->dirty = true;
                    st->first_dirty = clock::now() - opts_.coalesce_delay + opts_.retry_interval;
                }
            } else if (st->written_rev >= st->flush_target) {
                // Only a pass that reached the target answers the request: one that started
                // before flush() asked read an older hive and must be followed by another.
                st->flush_requested = false;
            }
            st->cv.notify_all();
        }
    }

    /// Checkpoints every subtree whose content changed; records progress in written_rev.
    std::error_code write_through(const std::shared_ptr<resource_state>& st, std::string& why) {
        std::vector<subtree_state*> ptrs;
        for (auto& s : st->subtrees)
            ptrs.push_back(&s);
        std::vector<local_copy> local;
        auto rev = read_local(ptrs, local);
        transaction meta;
        for (std::size_t i = 0; i < ptrs.size(); ++i) {
            auto& s = *ptrs[i];
            if (local[i].hash == s.hash && local[i].exists == !s.absent) continue;
            if (auto ec = write_generation(st->name, st->token, s, local[i].exists, local[i].content, why)) return ec;
            add_meta_ops(meta, st->name, s, s.hash);
        }
        if (!meta.empty()) {
            std::error_code ec;
            hive_.commit(meta, ec);
            if (ec) {
                why = "record checkpoint in the local hive";
                return ec;
            }
        }
        std::lock_guard lk(st->mu);
        st->written_rev = std::max(st->written_rev, rev);
        return {};
    }

    void flush(std::string_view r, std::chrono::milliseconds timeout, std::error_code& ec, std::string& why) {
        ec.clear();
        std::shared_ptr<resource_state> st;
        {
            std::lock_guard lk(mu_);
            auto it = online_.find(std::string(r));
            if (it == online_.end()) {
                ec = errc::not_online;
                return;
            }
            st = it->second;
        }
        auto target = hive_.revision();
        std::unique_lock lk(st->mu);
        st->flush_target = std::max(st->flush_target, target);
        st->flush_requested = true;
        st->cv.notify_all();
        bool done = st->cv.wait_for(lk, timeout, [&] { return st->failure || st->written_rev >= target; });
        if (st->failure) {
            ec = st->failure;
            why = st->failure_why;
        } else if (!done) {
            ec = errc::deadline_exceeded;
            why = "changes not yet durable in the store";
        }
    }

    void offline(std::string_view r, std::error_code& ec, std::string& why) {
        ec.clear();
        std::lock_guard op(op_mu_);
        std::shared_ptr<resource_state> st;
        {
            std::lock_guard lk(mu_);
            auto it = online_.find(std::string(r));
            if (it == online_.end()) {
                ec = errc::not_online;
                return;
            }
            st = it->second;
        }
        // Final checkpoint: everything committed so far (write_through skips unchanged content).
        flush(r, std::chrono::seconds(30), ec, why);
        stop(st);
        {
            std::lock_guard lk(mu_);
            online_.erase(std::string(r));
        }
        std::error_code rec;
        store_.release_lock(owner_key(r), st->token, rec);
        store_.revoke_lease(st->lease, rec);
    }

    void stop(const std::shared_ptr<resource_state>& st) {
        {
            std::lock_guard lk(st->mu);
            st->stopping = true;
        }
        st->cv.notify_all();
        if (st->worker.joinable()) st->worker.join(); // the worker owns watches during rescans
        st->watches.clear();
        st->registration_watch.reset();
    }

    std::vector<checkpoint_generation> history(std::string_view r, std::string_view subtree, std::error_code& ec,
                                               std::string& why) {
        std::vector<checkpoint_generation> out;
        subtree_state s;
        if ((ec = make_subtree(subtree, s, why))) return out;
        auto kvs = store_.list(res_prefix(r) + "data/" + s.esc + "/g/", ec);
        if (ec) return out;
        for (auto& kv : kvs) {
            detail::checkpoint_blob b;
            std::string w, sha;
            checkpoint_generation g;
            g.generation = std::stoull(kv.key.substr(kv.key.rfind('/') + 1));
            g.subtree = s.path;
            if (!detail::decode_checkpoint(kv.value, opts_.cluster_key, b, w, &sha)) {
                g.writer = b.writer;
                g.time = from_ms(b.time_ms);
                g.sha256 = sha;
                g.absent = b.absent;
            } else {
                g.writer = "(corrupt: " + w + ")";
            }
            out.push_back(std::move(g));
        }
        return out;
    }

    void restore(std::string_view r, std::string_view subtree, std::uint64_t g, std::error_code& ec, std::string& why) {
        ec.clear();
        subtree_state s;
        if ((ec = make_subtree(subtree, s, why))) return;
        auto blob = fetch_generation(r, s, g, ec, why);
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
        read_pointer(r, s, ec);
        if (ec) return;
        ec = write_generation(r, t.token, s, !blob.absent, blob.content, why);
    }

    std::string find_conflict_key(std::string_view r, std::string_view id, std::error_code& ec) {
        auto kvs = store_.list(res_prefix(r) + "conflicts/", ec);
        if (ec) return {};
        for (auto& kv : kvs)
            if (kv.key.size() > id.size() && kv.key.compare(kv.key.size() - id.size(), id.size(), id) == 0 &&
                kv.key[kv.key.size() - id.size() - 1] == '/')
                return kv.key;
        ec = errc::not_found;
        return {};
    }

    std::string conflict_content(std::string_view r, std::string_view id, std::error_code& ec, std::string& why) {
        auto key = find_conflict_key(r, id, ec);
        if (ec) return {};
        auto kv = store_.get(key, ec);
        if (ec) return {};
        if (!kv) {
            ec = errc::not_found;
            return {};
        }
        detail::checkpoint_blob b;
        if ((ec = detail::decode_checkpoint(kv->value, opts_.cluster_key, b, why))) return {};
        return b.content;
    }

    void delete_resource(std::string_view r, std::error_code& ec, std::string& why) {
        ec.clear();
        if (is_online(r)) {
            std::shared_ptr<resource_state> st;
            {
                std::lock_guard lk(mu_);
                st = online_.at(std::string(r));
                online_.erase(std::string(r));
            }
            stop(st);
            store_txn t;
            t.compares.push_back(key_compare::create_revision_is(owner_key(r), st->token));
            t.on_success.push_back(store_op::erase_prefix(res_prefix(r)));
            auto res = store_.commit(t, ec);
            std::error_code rec;
            store_.revoke_lease(st->lease, rec);
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
        txn.on_success.push_back(store_op::erase_prefix(res_prefix(r)));
        auto res = store_.commit(txn, ec);
        if (!ec && !res.succeeded) {
            ec = errc::fenced;
            why = "ownership was lost";
        }
        t.token = 0; // the lock key went with the prefix
    }

    Hive& hive_;
    quorum_store& store_;
    checkpoint_options opts_;
    mutable std::mutex mu_; // online_
    std::mutex op_mu_;      // serializes online/offline
    std::map<std::string, std::shared_ptr<resource_state>> online_;
    std::shared_ptr<blob_cache> cache_ = std::make_shared<blob_cache>();
};

/// The checkpoint manager over the default hive.
using checkpoint_manager = basic_checkpoint_manager<hive>;

} // namespace quorumreg
