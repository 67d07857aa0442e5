// quorumreg — the offline-edit decision of checkpoint_manager::online(), as a pure function:
// what to do with one subtree given the local copy, this node's record of what it last
// checkpointed or restored, the quorum's latest checkpoint and the policy.
#pragma once

#include <quorumreg/checkpoint/types.hpp>
#include <quorumreg/detail/crypto.hpp>

#include <cstdint>
#include <optional>

namespace quorumreg::detail {

struct offline_edit_inputs {
    bool local_exists = false;
    digest256 local_hash{};                 ///< SHA-256 of the local encoding ("" when absent)
    std::optional<digest256> recorded_hash; ///< what this node last checkpointed/restored
    bool quorum_exists = false;             ///< a latest checkpoint is in the store
    bool quorum_absent = false;             ///< ... and it records the subtree as absent
    digest256 quorum_hash{};
    offline_edit_policy policy = offline_edit_policy::preserve;
    /// This node held the resource when it stopped without offline() (a crash): its hive
    /// still carries the online marker.
    bool unclean_shutdown = false;
    std::optional<std::uint64_t> recorded_generation; ///< generation this node last wrote/restored
    std::uint64_t quorum_generation = 0;
};

enum class offline_edit_decision {
    first_checkpoint,      ///< nothing in the store yet: the local copy is the first generation
    keep,                  ///< local equals the quorum copy: only the record is refreshed
    restore,               ///< local is stale (unchanged since recorded): restore the quorum copy
    reject,                ///< edited offline, policy reject: online fails, nothing changes
    adopt_local,           ///< edited offline, policy adopt_local: local becomes a new generation
    preserve_then_restore, ///< edited offline, policy preserve: conflict record, then restore
    push_own,              ///< this node's own commits after a crash, the quorum still at its last write: push them
};

/// Edited offline = differs from the quorum copy and from this node's record (with no record,
/// any local copy counts as an edit: it cannot be shown to be a stale restore).
constexpr offline_edit_decision decide_offline_edit(const offline_edit_inputs& in) noexcept {
    if (!in.quorum_exists) return offline_edit_decision::first_checkpoint;
    bool same = in.local_exists == !in.quorum_absent && in.local_hash == in.quorum_hash;
    if (same) return offline_edit_decision::keep;
    // After a crash while online here, with nobody writing since our last write, the local
    // changes are our own acknowledged commits that never reached the store (defect 11).
    if (in.unclean_shutdown && in.recorded_hash && *in.recorded_hash == in.quorum_hash &&
        in.recorded_generation == in.quorum_generation)
        return offline_edit_decision::push_own;
    bool diverged = in.recorded_hash ? *in.recorded_hash != in.local_hash : in.local_exists;
    if (!diverged) return offline_edit_decision::restore;
    switch (in.policy) {
    case offline_edit_policy::reject: return offline_edit_decision::reject;
    case offline_edit_policy::adopt_local: return offline_edit_decision::adopt_local;
    case offline_edit_policy::preserve: break;
    }
    return offline_edit_decision::preserve_then_restore;
}

} // namespace quorumreg::detail
