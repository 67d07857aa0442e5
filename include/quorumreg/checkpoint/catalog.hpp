// quorumreg — read-only catalog of the checkpoints in a quorum store: resources, registered
// subtrees, history, conflict records and their content. No hive, no writes, no ownership:
// what qreg (and any observer) needs. checkpoint_manager answers the same questions through it.
#pragma once

#include <quorumreg/checkpoint/format.hpp>
#include <quorumreg/checkpoint/layout.hpp>
#include <quorumreg/checkpoint/types.hpp>
#include <quorumreg/quorum_store.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

/// Thread-safe as far as the store is (it holds no mutable state of its own).
template <class Traits = case_insensitive_traits> class basic_checkpoint_catalog {
public:
    /// Reads checkpoints of `store` under `prefix`; `cluster_key` verifies authenticated blobs
    /// (as checkpoint_manager_options::cluster_key).
    basic_checkpoint_catalog(quorum_store& store, std::string prefix = checkpoint_manager_options{}.prefix,
                             std::string cluster_key = {}, registry_limits limits = {})
        : store_(store), layout_(std::move(prefix)), cluster_key_(std::move(cluster_key)), limits_(limits) {}

    /// The key layout it reads.
    const checkpoint_layout& layout() const noexcept { return layout_; }

    /// Resources with any key under the prefix, sorted by escaped name.
    std::vector<std::string> resources(std::error_code& ec) const {
        std::vector<std::string> names;
        auto kvs = store_.list(layout_.prefix(), ec);
        if (ec) return names;
        for (auto& kv : kvs) {
            auto name = layout_.resource_of(kv.key);
            if (name && (names.empty() || names.back() != *name)) names.push_back(std::move(*name));
        }
        return names;
    }

    // Throwing forms (quorumreg::error naming the call).
    /// Throwing form of the `ec` overload of the same name.
    std::vector<std::string> resources() const {
        return thrown("list checkpointed resources", [&](std::error_code& ec, std::string&) { return resources(ec); });
    }
    /// Throwing form of the `ec` overload of the same name.
    std::vector<std::string> checkpoints(std::string_view resource) const {
        return thrown("checkpoints \"" + std::string(resource) + "\"",
                      [&](std::error_code& ec, std::string&) { return checkpoints(resource, ec); });
    }
    /// Throwing form of the `ec` overload of the same name.
    std::vector<checkpoint_generation> history(std::string_view resource, std::string_view subtree) const {
        return thrown("history \"" + std::string(resource) + "\" \"" + std::string(subtree) + "\"",
                      [&](std::error_code& ec, std::string& why) { return history(resource, subtree, ec, why); });
    }
    /// Throwing form of the `ec` overload of the same name.
    std::vector<conflict_record> conflicts(std::string_view resource) const {
        return thrown("conflicts \"" + std::string(resource) + "\"",
                      [&](std::error_code& ec, std::string&) { return conflicts(resource, ec); });
    }
    /// Throwing form of the `ec` overload of the same name.
    std::string conflict_content(std::string_view resource, std::string_view id) const {
        return thrown("conflict_content \"" + std::string(resource) + "\" \"" + std::string(id) + "\"",
                      [&](std::error_code& ec, std::string& why) { return conflict_content(resource, id, ec, why); });
    }

    /// Registered subtrees of `resource` (as registered).
    std::vector<std::string> checkpoints(std::string_view resource, std::error_code& ec) const {
        std::vector<std::string> out;
        auto kvs = store_.list(layout_.subtrees_prefix(resource), ec);
        out.reserve(kvs.size());
        for (auto& kv : kvs)
            out.push_back(kv.value);
        return out;
    }

    /// Stored generations of `subtree`, oldest first; a corrupt one is listed with its reason
    /// as writer "(corrupt: …)".
    std::vector<checkpoint_generation> history(std::string_view resource, std::string_view subtree, std::error_code& ec,
                                               std::string& why) const {
        std::vector<checkpoint_generation> out;
        checkpoint_subtree_name s;
        if ((ec = make_checkpoint_subtree_name<Traits>(subtree, limits_, s, why))) return out;
        // Read the pointer first: a blob above it is staged by a batch not switched yet (or
        // left by one that never reached its manifest) and is not a generation yet.
        auto latest = store_.get(layout_.latest_key(resource, s.esc), ec);
        if (ec || !latest) return out;
        std::uint64_t newest = 0;
        auto [p, perr] = std::from_chars(latest->value.data(), latest->value.data() + latest->value.size(), newest);
        if (perr != std::errc{} || p != latest->value.data() + latest->value.size()) {
            ec = errc::checkpoint_corrupt;
            why = "latest pointer of \"" + s.path + "\" is not a number";
            return out;
        }
        auto kvs = store_.list(layout_.generations_prefix(resource, s.esc), ec);
        if (ec) return out;
        for (auto& kv : kvs) {
            detail::checkpoint_blob b;
            std::string w, sha;
            checkpoint_generation g;
            g.generation = std::stoull(std::string(checkpoint_layout::leaf(kv.key)));
            if (g.generation > newest) continue;
            g.subtree = s.path;
            if (!detail::decode_checkpoint(kv.value, cluster_key_, b, w, &sha)) {
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

    /// Conflict records kept for `resource` (undecodable ones are skipped).
    std::vector<conflict_record> conflicts(std::string_view resource, std::error_code& ec) const {
        std::vector<conflict_record> out;
        auto kvs = store_.list(layout_.conflicts_prefix(resource), ec);
        if (ec) return out;
        for (auto& kv : kvs) {
            detail::checkpoint_blob b;
            std::string why, sha;
            if (detail::decode_checkpoint(kv.value, cluster_key_, b, why, &sha)) continue;
            out.push_back({std::string(checkpoint_layout::leaf(kv.key)), b.subtree, b.writer, from_ms(b.time_ms), sha});
        }
        return out;
    }

    /// The store key of conflict `id` (not_found if there is none).
    std::string conflict_key(std::string_view resource, std::string_view id, std::error_code& ec) const {
        auto kvs = store_.list(layout_.conflicts_prefix(resource), ec);
        if (ec) return {};
        for (auto& kv : kvs)
            if (checkpoint_layout::leaf(kv.key) == id) return kv.key;
        ec = errc::not_found;
        return {};
    }

    /// The offline-edit policy set for `resource` (nullopt: none set, online() uses preserve
    /// unless told otherwise); checkpoint_corrupt for a stored value that is no policy.
    std::optional<offline_edit_policy> offline_edit_policy_of(std::string_view resource, std::error_code& ec,
                                                              std::string& why) const {
        auto kv = store_.get(layout_.policy_key(resource), ec);
        if (ec || !kv) return std::nullopt;
        auto p = parse_offline_edit_policy(kv->value);
        if (!p) {
            ec = errc::checkpoint_corrupt;
            why = "stored offline-edit policy \"" + kv->value + "\" is not reject, preserve or adopt_local";
        }
        return p;
    }
    /// Throwing form of the `ec` overload of the same name.
    std::optional<offline_edit_policy> offline_edit_policy_of(std::string_view resource) const {
        return thrown("offline_edit_policy_of \"" + std::string(resource) + "\"",
                      [&](std::error_code& ec, std::string& why) { return offline_edit_policy_of(resource, ec, why); });
    }

    /// Content of generation `generation` of `subtree` (0: the latest) as a registry subtree
    /// encoding (import_subtree() it anywhere); nullopt when the subtree was absent in it.
    /// not_found when there is no such generation (or none is kept any more).
    std::optional<std::string> generation_content(std::string_view resource, std::string_view subtree,
                                                  std::uint64_t generation, std::error_code& ec,
                                                  std::string& why) const {
        checkpoint_subtree_name s;
        if ((ec = make_checkpoint_subtree_name<Traits>(subtree, limits_, s, why))) return std::nullopt;
        auto gens = history(resource, subtree, ec, why);
        if (ec) return std::nullopt;
        if (generation == 0 && !gens.empty()) generation = gens.back().generation;
        bool kept = std::any_of(gens.begin(), gens.end(), [&](const auto& g) { return g.generation == generation; });
        auto kv = kept ? store_.get(layout_.generation_key(resource, s.esc, generation), ec) : std::nullopt;
        if (ec) return std::nullopt;
        if (!kv) {
            ec = errc::not_found;
            why = gens.empty() ? "no checkpoint of this subtree"
                               : "generation " + std::to_string(generation) +
                                     " is not kept (kept: " + std::to_string(gens.front().generation) + ".." +
                                     std::to_string(gens.back().generation) + ")";
            return std::nullopt;
        }
        detail::checkpoint_blob b;
        if ((ec = detail::decode_checkpoint(kv->value, cluster_key_, b, why))) return std::nullopt;
        if (b.absent) return std::nullopt;
        return b.content;
    }
    /// Throwing form of the `ec` overload of the same name.
    std::optional<std::string> generation_content(std::string_view resource, std::string_view subtree,
                                                  std::uint64_t generation = 0) const {
        return thrown("generation_content \"" + std::string(resource) + "\" \"" + std::string(subtree) + "\"",
                      [&](std::error_code& ec, std::string& why) {
                          return generation_content(resource, subtree, generation, ec, why);
                      });
    }

    /// The preserved local copy (registry subtree encoding).
    std::string conflict_content(std::string_view resource, std::string_view id, std::error_code& ec,
                                 std::string& why) const {
        auto key = conflict_key(resource, id, ec);
        if (ec) return {};
        auto kv = store_.get(key, ec);
        if (ec) return {};
        if (!kv) {
            ec = errc::not_found;
            return {};
        }
        detail::checkpoint_blob b;
        if ((ec = detail::decode_checkpoint(kv->value, cluster_key_, b, why))) return {};
        return b.content;
    }

    /// A stored millisecond timestamp as a time point.
    static std::chrono::system_clock::time_point from_ms(std::uint64_t ms) {
        return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
    }

private:
    template <class F> static auto thrown(const std::string& what, F&& f) {
        std::error_code ec;
        std::string why;
        auto r = f(ec, why);
        detail::throw_if(ec, why.empty() ? what : what + " (" + why + ")");
        return r;
    }

    quorum_store& store_;
    checkpoint_layout layout_;
    std::string cluster_key_;
    registry_limits limits_;
};

using checkpoint_catalog = basic_checkpoint_catalog<>;

} // namespace quorumreg
