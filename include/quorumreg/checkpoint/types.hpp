// quorumreg — checkpoint manager: public options and result types (see checkpoint.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace quorumreg {

/// What online() does with a local subtree that was edited while the resource was offline.
enum class offline_edit_policy {
    reject,      ///< online fails with errc::checkpoint_conflict; nothing changes
    preserve,    ///< keep the local copy as a conflict record, restore the quorum copy (default)
    adopt_local, ///< the local copy becomes the new checkpoint (the old one stays in history)
};

/// "reject", "preserve" or "adopt_local".
constexpr std::string_view to_string(offline_edit_policy p) noexcept {
    switch (p) {
    case offline_edit_policy::reject: return "reject";
    case offline_edit_policy::adopt_local: return "adopt_local";
    case offline_edit_policy::preserve: break;
    }
    return "preserve";
}
/// Inverse of to_string(); nullopt for any other text.
constexpr std::optional<offline_edit_policy> parse_offline_edit_policy(std::string_view s) noexcept {
    for (auto p : {offline_edit_policy::reject, offline_edit_policy::preserve, offline_edit_policy::adopt_local})
        if (to_string(p) == s) return p;
    return std::nullopt;
}

/// Settings of a checkpoint_manager (what each does: docs/checkpoint.md).
struct checkpoint_manager_options {
    std::string node = "node";                        ///< this node's name (recorded as writer)
    std::string prefix = "quorumreg/checkpoints/";    ///< store key prefix
    std::chrono::milliseconds lease_ttl{10000};       ///< ownership lease
    std::chrono::milliseconds coalesce_delay{50};     ///< max delay before a change is written
    std::chrono::milliseconds retry_interval{100};    ///< retry after a transient store error
    std::chrono::milliseconds offline_timeout{30000}; ///< offline()'s final flush
    /// An owner re-lists its resource's registrations this often, besides watching them, so a
    /// watch that stalls without an error cannot hide a registration for longer (0: never).
    std::chrono::milliseconds registration_resync{30000};
    /// Subtrees written in one store transaction. A write-through batch with more changed
    /// subtrees is staged and switched through a manifest, still all-or-nothing (etcd allows
    /// 128 operations per transaction; a subtree takes three).
    std::size_t batch_subtrees = 32;
    std::size_t history = 10;                              ///< generations kept per subtree
    std::string cluster_key{};                             ///< non-empty: HMAC-SHA-256 every checkpoint
    std::string local_meta_key = "QuorumReg\\Checkpoints"; ///< hive key for this node's records
    /// Called once when a resource's ownership ends without offline() (no keep-alive succeeded
    /// before the local deadline, or the store ended the lease), on the ownership's watchdog
    /// thread, before another node can take over: stop the resource's side effects here. It
    /// must not call offline() or destroy the manager (hand that to another thread).
    std::function<void(std::string_view resource, std::error_code why)> on_lost{};
    /// Test seam: called by online() after it read the local subtrees and decided what to do,
    /// right before the restore commit (tests interleave an edit there deterministically).
    std::function<void(std::string_view resource)> before_restore_commit{};
};
/// The old name, kept for one release (option structs are named after their class).
using checkpoint_options [[deprecated("renamed checkpoint_manager_options")]] = checkpoint_manager_options;

/// How one online() call restores a resource's checkpoints.
struct online_options {
    /// Unset: the resource's own policy (checkpoint_manager::set_offline_edit_policy, kept in
    /// the store so every node applies the same one), else preserve.
    std::optional<offline_edit_policy> policy{};
    /// How long to wait for another owner's lease to expire (0: fail at once with already_exists).
    std::chrono::milliseconds wait_for_owner{0};
};

/// One stored checkpoint generation.
struct checkpoint_generation {
    std::uint64_t generation = 0;               ///< 1, 2, ... per subtree
    std::string subtree;                        ///< the checkpointed subtree, as registered
    std::string writer;                         ///< node that wrote it
    std::chrono::system_clock::time_point time; ///< when it was written (the writer's clock)
    std::string sha256;                         ///< hex digest of the content
    bool absent = false;                        ///< the subtree did not exist when checkpointed
};

/// A local copy that diverged from the quorum, kept instead of being dropped.
struct conflict_record {
    std::string id;                             ///< for conflict_content, adopt and discard
    std::string subtree;                        ///< the subtree it is a copy of
    std::string node;                           ///< the node whose local copy it was
    std::chrono::system_clock::time_point time; ///< when it was kept
    std::string sha256;                         ///< hex digest of the kept content
};

/// What online() did.
struct online_report {
    std::vector<std::string> restored;      ///< subtrees restored from the quorum
    std::vector<std::string> adopted;       ///< local copies that became the checkpoint
    std::vector<conflict_record> conflicts; ///< local copies preserved as conflict records
};

} // namespace quorumreg
