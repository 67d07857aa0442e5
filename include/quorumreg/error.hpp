// quorumreg — error model shared by every component.
//
// Every fallible operation comes in two forms (the std::filesystem convention):
// one that throws quorumreg::error (a std::system_error carrying a quorumreg::errc
// and a message naming what was wrong) and one that takes a std::error_code& and
// never throws for expected failures.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace quorumreg {

/// Error conditions of quorumreg. Values are stable: they appear in logs and
/// in the qreg tool's JSON output. Never renumber; append only.
enum class errc {
    ok = 0,
    // Key paths and names (registry).
    invalid_path = 1,  ///< empty, `.`/`..` or empty component, NUL, bad separator use
    name_too_long = 2, ///< a key or value name exceeds its length limit
    path_too_deep = 3, ///< more components than the depth limit
    key_not_found = 4,
    value_not_found = 5,
    key_exists = 6,
    type_mismatch = 7,     ///< value read as a type it does not hold
    value_too_large = 8,   ///< value over the configured per-value limit (or a backend limit)
    revision_mismatch = 9, ///< a transaction precondition on a revision did not hold
    invalid_argument = 10,
    // Encoded data (serialization, journal, checkpoints).
    corrupt_data = 20,        ///< checksum mismatch, truncated or malformed bytes
    unsupported_version = 21, ///< written by a newer, unknown format version
    // Local storage.
    io_error = 30,               ///< read/write/fsync/rename failed; see the message for errno
    no_space = 31,               ///< ENOSPC
    access_denied = 32,          ///< EACCES/EPERM on a file the library owns
    lock_failed = 33,            ///< a file lock could not be taken
    closed = 34,                 ///< object used after close or after a fatal error
    read_only = 35,              ///< a write through an object opened read-only
    unsupported_filesystem = 36, ///< the file system cannot give the store's guarantees (the message names it)
    // Quorum stores.
    compare_failed = 40,     ///< compare-and-swap / transaction compare did not hold
    quorum_unavailable = 41, ///< the store cannot reach a quorum
    deadline_exceeded = 42,  ///< the operation did not start or finish before its deadline
    unknown_outcome = 43,    ///< a write was sent but its result is unknown (may have committed)
    lease_expired = 44,      ///< the lease is gone (expired, revoked or unknown)
    fenced = 45,             ///< the caller's ownership/fencing token is stale
    unauthenticated = 46,
    permission_denied = 47,
    not_found = 48, ///< a named object (key in a store, resource, service, type) is absent
    already_exists = 49,
    backend_error = 50,      ///< the backend reported an error; its own text is in the message
    watch_canceled = 51,     ///< a watch ended (e.g. history compacted); resynchronise
    identity_mismatch = 52,  ///< the store is not the one this node recorded (replaced or re-created)
    watch_out_of_order = 53, ///< a watch saw a duplicate, backward or missing revision (a backend bug)
    quota_exceeded = 54,     ///< the backend is out of space or overloaded (etcd: resource exhausted)
    // Checkpoints.
    checkpoint_conflict = 60, ///< offline edits diverge from the checkpoint (policy = reject)
    checkpoint_corrupt = 61,  ///< the checkpoint fails its checksum or format checks
    not_online = 62,          ///< the resource is not online on this node
    ownership_lost = 63,      ///< this node's lease ownership ended (not renewed in time, or revoked)
    checkpoint_overlap = 64,  ///< the subtree overlaps one registered for a resource (the message names it)
    // Dependency graph and services.
    dependency_cycle = 70,  ///< the edge would close a cycle (the message names it)
    dependency_failed = 71, ///< a dependency failed; the message names the root cause
    timeout = 72,           ///< a pending state exceeded its timeout
    restart_limit = 73,     ///< restart threshold reached within the period
    unsatisfiable = 74,     ///< no member of a required OR-group can come online
    // Resource types and monitors.
    plugin_missing = 80,             ///< the registered library file is absent
    plugin_load_failed = 81,         ///< dlopen failed or the startup symbol is missing
    plugin_hash_mismatch = 82,       ///< the library on disk differs from the registered SHA-256
    plugin_type_mismatch = 83,       ///< the library does not implement the requested type
    monitor_crashed = 84,            ///< the hosting monitor process died
    monitor_deadlock = 85,           ///< a call exceeded the deadlock timeout; the monitor was killed
    resource_failed = 86,            ///< the plugin reported failure
    plugin_not_allowed = 87,         ///< the library is outside the configured plugin directories
    monitor_protocol_violation = 88, ///< a monitor sent malformed data; it was killed and blamed
    // Sealed secrets.
    secret_key_unknown = 100, ///< no loaded key (and no key provider answer) has the blob's key id
    secret_auth_failed = 101, ///< a sealed blob does not open: wrong key, tampered, or bound to other data
    key_file_unsafe = 102,    ///< a key file others can read, owned by someone else, or not a regular file
};

namespace detail {
class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "quorumreg"; }
    std::string message(int ev) const override;
};
} // namespace detail

/// The quorumreg error category (a singleton).
inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Exception thrown by the throwing overloads: a std::system_error whose code()
/// is in quorumreg's category (or the system category for raw OS failures) and
/// whose what() names the operation and the object, e.g.
/// `set_value "Software\App" "Port": value too large (2097152 > 1048576 bytes)`.
class error : public std::system_error {
public:
    /// An error with code `ec`; `what` names the operation and the object.
    error(std::error_code ec, const std::string& what) : std::system_error(ec, what) {}
    /// An error of quorumreg's category.
    explicit error(errc e, const std::string& what = {}) : std::system_error(make_error_code(e), what) {}
};

namespace detail {

inline std::string error_category_impl::message(int ev) const {
    switch (static_cast<errc>(ev)) {
    case errc::ok: return "success";
    case errc::invalid_path: return "invalid key path";
    case errc::name_too_long: return "name too long";
    case errc::path_too_deep: return "key path too deep";
    case errc::key_not_found: return "key not found";
    case errc::value_not_found: return "value not found";
    case errc::key_exists: return "key already exists";
    case errc::type_mismatch: return "value has a different type";
    case errc::value_too_large: return "value too large";
    case errc::revision_mismatch: return "revision precondition failed";
    case errc::invalid_argument: return "invalid argument";
    case errc::corrupt_data: return "data is corrupt (checksum or format check failed)";
    case errc::unsupported_version: return "data was written by a newer, unsupported format version";
    case errc::io_error: return "input/output error";
    case errc::no_space: return "no space left on device";
    case errc::access_denied: return "access denied";
    case errc::lock_failed: return "could not take a file lock";
    case errc::closed: return "object is closed";
    case errc::read_only: return "opened read-only";
    case errc::unsupported_filesystem: return "the file system cannot give the store's guarantees";
    case errc::compare_failed: return "compare failed (the key changed)";
    case errc::quorum_unavailable: return "quorum unavailable";
    case errc::deadline_exceeded: return "deadline exceeded";
    case errc::unknown_outcome: return "outcome unknown: the write may or may not have been applied";
    case errc::lease_expired: return "lease expired";
    case errc::fenced: return "fenced: this owner's token is stale";
    case errc::unauthenticated: return "authentication required or failed";
    case errc::permission_denied: return "permission denied";
    case errc::not_found: return "not found";
    case errc::already_exists: return "already exists";
    case errc::backend_error: return "backend error";
    case errc::watch_canceled: return "watch canceled";
    case errc::identity_mismatch: return "store identity changed";
    case errc::watch_out_of_order: return "watch revisions out of order (duplicate, backward or missing)";
    case errc::quota_exceeded: return "store quota exceeded or overloaded";
    case errc::checkpoint_conflict: return "local edits conflict with the checkpoint";
    case errc::checkpoint_corrupt: return "checkpoint is corrupt";
    case errc::not_online: return "resource is not online on this node";
    case errc::ownership_lost: return "ownership lost: the lease was not renewed in time";
    case errc::checkpoint_overlap: return "subtree overlaps a checkpointed subtree";
    case errc::dependency_cycle: return "dependency would create a cycle";
    case errc::dependency_failed: return "a dependency failed";
    case errc::timeout: return "timed out";
    case errc::restart_limit: return "restart limit reached";
    case errc::unsatisfiable: return "dependency cannot be satisfied";
    case errc::plugin_missing: return "resource library is missing";
    case errc::plugin_load_failed: return "resource library failed to load";
    case errc::plugin_hash_mismatch: return "resource library does not match its registered SHA-256";
    case errc::plugin_type_mismatch: return "resource library does not implement the resource type";
    case errc::monitor_crashed: return "resource monitor crashed";
    case errc::monitor_deadlock: return "resource monitor call exceeded the deadlock timeout";
    case errc::resource_failed: return "resource failed";
    case errc::plugin_not_allowed: return "resource library is outside the allowed plugin directories";
    case errc::monitor_protocol_violation: return "resource monitor violated the monitor protocol";
    case errc::secret_key_unknown: return "no loaded key has the sealed blob's key id";
    case errc::secret_auth_failed: return "sealed blob does not open (wrong key, tampered, or bound to other data)";
    case errc::key_file_unsafe: return "key file is not private to this user";
    }
    return "unknown quorumreg error " + std::to_string(ev);
}

/// Throws quorumreg::error if ec is set; `what` names the operation and object.
inline void throw_if(const std::error_code& ec, const std::string& what) {
    if (ec) throw error(ec, what);
}

/// Maps an errno value to the closest quorumreg error code.
inline std::error_code from_errno(int e) noexcept {
    switch (e) {
    case 0: return {};
    case ENOSPC:
    case EDQUOT: return make_error_code(errc::no_space);
    case EACCES:
    case EPERM:
    case EROFS: return make_error_code(errc::access_denied);
    default: return make_error_code(errc::io_error);
    }
}

} // namespace detail
} // namespace quorumreg

// A standard-library specialisation: not part of the reference.
/// @cond
template <> struct std::is_error_code_enum<quorumreg::errc> : std::true_type {};
/// @endcond
