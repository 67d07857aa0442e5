// quorumreg — checkpoint key layout: the one place that names the store keys of checkpoints
// (checkpoint_manager, checkpoint_catalog and qreg all use it).
//
//   <prefix><resource>/owner                       ownership lock (lease-attached)
//   <prefix><resource>/subtrees/<subtree>          registration (value: the path as registered)
//   <prefix><resource>/data/<subtree>/latest       latest generation number
//   <prefix><resource>/data/<subtree>/g/<gen>      checkpoint blobs (%020u generation)
//   <prefix><resource>/conflicts/<subtree>/<id>    preserved local copies
//
// <resource> is key_escape(name); <subtree> is key_escape of the canonical path (components
// folded by the registry's traits, joined with '\'), so two spellings of one key share keys.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/registry_types.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg {

/// A registered subtree's names: as registered, canonical and key-escaped.
struct checkpoint_subtree_name {
    std::string path;      ///< as registered
    std::string canonical; ///< folded, '\'-separated
    std::string esc;       ///< key-escaped canonical (the `<subtree>` level of the layout)
};

/// Canonical names of `path` under the registry traits `Traits`. invalid_path for a bad path,
/// invalid_argument for the root key (it cannot be checkpointed).
template <class Traits = case_insensitive_traits>
std::error_code make_checkpoint_subtree_name(std::string_view path, const registry_limits& limits,
                                             checkpoint_subtree_name& out, std::string& why) {
    std::vector<std::string_view> parts;
    if (auto ec = detail::split_path(path, limits, parts, &why)) return ec;
    if (parts.empty()) {
        why = "the root key cannot be checkpointed";
        return errc::invalid_argument;
    }
    out.path = std::string(path);
    out.canonical.clear();
    for (auto p : parts) {
        if (!out.canonical.empty()) out.canonical.push_back('\\');
        Traits::fold(p, out.canonical);
    }
    out.esc = detail::key_escape(out.canonical);
    return {};
}

namespace detail {

inline std::string gen_key_suffix(std::uint64_t g) { return fixed_decimal(g); }

/// Inverse of key_escape; nullopt for a malformed escape.
inline std::optional<std::string> key_unescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;
        int hi = hex_digit_value(s[i + 1]), lo = hex_digit_value(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

} // namespace detail

/// Store keys of checkpoints under one prefix (checkpoint_manager_options::prefix).
class checkpoint_layout {
public:
    /// The layout under `prefix` (checkpoint_manager_options::prefix). `r` below is a resource
    /// name; `esc` a subtree's key-escaped canonical path (checkpoint_subtree::esc).
    explicit checkpoint_layout(std::string prefix = "quorumreg/checkpoints/") : prefix_(std::move(prefix)) {}

    /// The prefix every key of the layout starts with.
    const std::string& prefix() const noexcept { return prefix_; }

    /// Everything of resource `r`.
    std::string resource_prefix(std::string_view r) const { return prefix_ + detail::key_escape(r) + "/"; }
    /// The ownership lock of `r` (the owner record of the node that has it online).
    std::string owner_key(std::string_view r) const { return resource_prefix(r) + "owner"; }
    /// The resource's offline-edit policy, when one was set (to_string(offline_edit_policy)).
    std::string policy_key(std::string_view r) const { return resource_prefix(r) + "policy"; }
    /// The registrations of `r`'s checkpointed subtrees.
    std::string subtrees_prefix(std::string_view r) const { return resource_prefix(r) + "subtrees/"; }
    /// The registration of one subtree.
    std::string registration_key(std::string_view r, std::string_view esc) const {
        return subtrees_prefix(r) + std::string(esc);
    }
    /// The checkpoint data of `r`.
    std::string data_prefix(std::string_view r) const { return resource_prefix(r) + "data/"; }
    /// The checkpoint data of one subtree.
    std::string subtree_data_prefix(std::string_view r, std::string_view esc) const {
        return data_prefix(r) + std::string(esc) + "/";
    }
    /// The pointer to a subtree's latest generation.
    std::string latest_key(std::string_view r, std::string_view esc) const {
        return subtree_data_prefix(r, esc) + "latest";
    }
    /// A subtree's generation blobs.
    std::string generations_prefix(std::string_view r, std::string_view esc) const {
        return subtree_data_prefix(r, esc) + "g/";
    }
    /// Generation `g`'s blob (20-digit suffix, so key order is generation order).
    std::string generation_key(std::string_view r, std::string_view esc, std::uint64_t g) const {
        return generations_prefix(r, esc) + detail::gen_key_suffix(g);
    }
    /// A batch of generations too large for one transaction, while its pointers are switched
    /// (written after the blobs, erased after the switch; a new owner completes it first).
    std::string manifest_key(std::string_view r) const { return resource_prefix(r) + "manifest"; }
    /// Bumped by every registration: a registering commit compares its mod revision, so two
    /// resources cannot both register overlapping subtrees at once. Not under any resource.
    std::string registrations_key() const { return prefix_ + "registrations"; }
    /// The conflict records of `r`.
    std::string conflicts_prefix(std::string_view r) const { return resource_prefix(r) + "conflicts/"; }
    /// One conflict record of one subtree.
    std::string conflict_key(std::string_view r, std::string_view esc, std::string_view id) const {
        return conflicts_prefix(r) + std::string(esc) + "/" + std::string(id);
    }

    /// The resource a key under prefix() belongs to (unescaped); nullopt for other keys.
    std::optional<std::string> resource_of(std::string_view key) const {
        if (key.size() <= prefix_.size() || key.compare(0, prefix_.size(), prefix_) != 0) return std::nullopt;
        auto rest = key.substr(prefix_.size());
        auto slash = rest.find('/');
        if (slash == std::string_view::npos || slash == 0) return std::nullopt;
        return detail::key_unescape(rest.substr(0, slash));
    }
    /// True for a generation blob key (`…/data/<subtree>/g/<gen>`).
    static bool is_generation_key(std::string_view key) { return key.find("/g/") != std::string_view::npos; }
    /// The last level of a key (a generation number's digits, a conflict id).
    static std::string_view leaf(std::string_view key) { return key.substr(key.rfind('/') + 1); }

private:
    std::string prefix_;
};

} // namespace quorumreg
