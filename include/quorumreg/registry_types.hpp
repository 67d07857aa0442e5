// quorumreg — vocabulary types shared by the registry engines (in-memory registry, hive):
// name-comparison traits, limits, transactions, change events.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

/// Default key/value name comparison: case-insensitive, case-preserving, like the Windows
/// registry. Folding is ASCII-only: bytes >= 0x80 (UTF-8 sequences) compare exactly, so
/// "Été" and "été" are different names, while "App" and "APP" are the same. This keeps
/// comparison locale-independent and identical on every node.
struct case_insensitive_traits {
    /// Appends the comparison form of `in` (ASCII lower case) to `out`.
    static void fold(std::string_view in, std::string& out) { detail::ascii_fold(in, out); }
};

/// Exact, byte-wise name comparison.
struct case_sensitive_traits {
    /// Appends `in` unchanged.
    static void fold(std::string_view in, std::string& out) { out.append(in); }
};

/// Limits enforced on every write and on every decoded input.
struct registry_limits {
    std::size_t max_name_length = 255;         ///< bytes per key name
    std::size_t max_depth = 512;               ///< components per key path
    std::size_t max_value_name_length = 16383; ///< bytes per value name (as Windows)
    std::size_t max_value_size = 1024 * 1024;  ///< bytes per value payload (value::size())
};

/// One operation of a transaction.
enum class op_kind : std::uint8_t {
    create_key = 1,       ///< create the key and missing parents (no-op if present)
    delete_key = 2,       ///< delete the key and everything under it; fails if absent
    set_value = 3,        ///< create or overwrite a value (creates missing keys)
    delete_value = 4,     ///< fails if the value is absent
    require_revision = 5, ///< precondition: the key's last-write revision equals `revision` (0 = key absent)
    replace_subtree = 6,  ///< replace the key's content with an encoded subtree (export_subtree)
};

/// One step of a transaction (built by transaction's members, read by registry backends).
struct operation {
    op_kind kind = op_kind::create_key; ///< what the step does
    std::string path;                   ///< the key, '\' or '/' separated
    std::string name;                   ///< value name (set_value, delete_value)
    value data;                         ///< set_value
    std::uint64_t revision = 0;         ///< require_revision
    std::string blob;                   ///< replace_subtree
};

/// A batch of operations committed atomically: all apply, or none does.
///
/// @code
/// quorumreg::transaction txn;
/// txn.set_value("Software/App", "Port", quorumreg::value::dword(8080))
///    .delete_value("Software/App", "Legacy");   // fails if absent: then Port is not set either
/// reg.commit(txn);
/// @endcode
class transaction {
public:
    /// Adds: create `path` and its missing parents (no-op if it exists).
    transaction& create_key(std::string_view path) { return push(make(op_kind::create_key, path)); }
    /// Adds: delete `path` and everything below it (fails if absent).
    transaction& delete_key(std::string_view path) { return push(make(op_kind::delete_key, path)); }
    /// Adds: create or overwrite value `name` of `path` (missing keys are created).
    transaction& set_value(std::string_view path, std::string_view name, value v) {
        operation op = make(op_kind::set_value, path);
        op.name = std::string(name);
        op.data = std::move(v);
        return push(std::move(op));
    }
    /// Adds: delete value `name` of `path` (fails if absent).
    transaction& delete_value(std::string_view path, std::string_view name) {
        operation op = make(op_kind::delete_value, path);
        op.name = std::string(name);
        return push(std::move(op));
    }
    /// Optimistic concurrency: fail the whole transaction unless `path`'s last-write revision
    /// is `revision` (0 means the key must not exist).
    transaction& require_revision(std::string_view path, std::uint64_t revision) {
        operation op = make(op_kind::require_revision, path);
        op.revision = revision;
        return push(std::move(op));
    }
    /// Replace everything under `path` with `encoded` (bytes from export_subtree).
    transaction& replace_subtree(std::string_view path, std::string encoded) {
        operation op = make(op_kind::replace_subtree, path);
        op.blob = std::move(encoded);
        return push(std::move(op));
    }

    /// The steps, in the order they were added (and are applied).
    const std::vector<operation>& operations() const noexcept { return ops_; }
    /// No step yet (committing it changes nothing).
    bool empty() const noexcept { return ops_.empty(); }
    /// How many steps.
    std::size_t size() const noexcept { return ops_.size(); }
    /// Removes every step, to reuse the object.
    void clear() noexcept { ops_.clear(); }

private:
    static operation make(op_kind k, std::string_view path) {
        operation op;
        op.kind = k;
        op.path = std::string(path);
        return op;
    }
    transaction& push(operation op) {
        ops_.push_back(std::move(op));
        return *this;
    }
    std::vector<operation> ops_;
};

enum class change_kind : std::uint8_t {
    key_created = 1,
    key_deleted = 2, ///< the key and its whole subtree are gone
    value_set = 3,
    value_deleted = 4,
    subtree_replaced = 5, ///< replace_subtree/import: re-read everything under key_path
};

constexpr std::string_view to_string(change_kind k) noexcept {
    switch (k) {
    case change_kind::key_created: return "key_created";
    case change_kind::key_deleted: return "key_deleted";
    case change_kind::value_set: return "value_set";
    case change_kind::value_deleted: return "value_deleted";
    case change_kind::subtree_replaced: return "subtree_replaced";
    }
    return "unknown";
}

/// A committed change. key_path uses '\' separators and the names' stored case.
struct change_event {
    change_kind kind;       ///< what changed
    std::string key_path;   ///< the key it changed
    std::string value_name; ///< value_set / value_deleted only
    std::uint64_t revision; ///< revision of the transaction that made the change
};

/// What a watch covers.
enum class watch_scope {
    key,     ///< the key's values, its direct subkeys appearing/disappearing, the key itself
    subtree, ///< anything at or below the key
};

/// Summary of one key.
struct key_info {
    std::string name;             ///< stored case
    std::uint64_t revision = 0;   ///< revision of the last write to this key
    std::size_t subkey_count = 0; ///< direct subkeys
    std::size_t value_count = 0;  ///< values of the key itself
};

/// A named value, as listed by values().
struct value_entry {
    std::string name; ///< stored case
    value data;       ///< the typed value
    /// Member-wise equality.
    friend bool operator==(const value_entry&, const value_entry&) = default;
};

} // namespace quorumreg
