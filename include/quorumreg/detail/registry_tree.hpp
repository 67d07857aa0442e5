// The registry's data structure: a tree of keys with typed values, transactional apply with
// an undo log, and the subtree / transaction binary codecs. Not thread-safe; the engines
// (basic_registry, hive) lock around it.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/registry_types.hpp>
#include <quorumreg/value.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg::detail {

/// Splits and validates a key path. "" is the root key. Separators are '\' and '/';
/// components must be non-empty, not "." or "..", without NUL, and at most
/// limits.max_name_length bytes; at most limits.max_depth components.
inline std::error_code split_path(std::string_view path, const registry_limits& limits,
                                  std::vector<std::string_view>& out, std::string* why = nullptr) {
    out.clear();
    if (path.empty()) return {};
    auto bad = [&](errc e, std::string msg) {
        if (why) *why = std::move(msg);
        out.clear();
        return make_error_code(e);
    };
    std::size_t start = 0;
    while (true) {
        std::size_t end = path.find_first_of("\\/", start);
        std::string_view part =
            path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (part.empty()) return bad(errc::invalid_path, "empty component");
        if (part == "." || part == "..") return bad(errc::invalid_path, "'.' and '..' are not allowed as names");
        if (part.find('\0') != std::string_view::npos) return bad(errc::invalid_path, "NUL in key name");
        if (part.size() > limits.max_name_length)
            return bad(errc::name_too_long, "key name of " + std::to_string(part.size()) + " bytes (limit " +
                                                std::to_string(limits.max_name_length) + ")");
        out.push_back(part);
        if (out.size() > limits.max_depth)
            return bad(errc::path_too_deep, "more than " + std::to_string(limits.max_depth) + " components");
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return {};
}

inline std::error_code check_value_name(std::string_view name, const registry_limits& limits, std::string* why) {
    if (name.find('\0') != std::string_view::npos) {
        if (why) *why = "NUL in value name";
        return errc::invalid_path;
    }
    if (name.size() > limits.max_value_name_length) {
        if (why)
            *why = "value name of " + std::to_string(name.size()) + " bytes (limit " +
                   std::to_string(limits.max_value_name_length) + ")";
        return errc::name_too_long;
    }
    return {};
}

inline std::error_code check_value_size(const value& v, const registry_limits& limits, std::string* why) {
    if (v.size() > limits.max_value_size) {
        if (why) *why = std::to_string(v.size()) + " > " + std::to_string(limits.max_value_size) + " bytes";
        return errc::value_too_large;
    }
    return {};
}

inline void encode_value(byte_writer& w, const value& v) {
    w.u8(static_cast<std::uint8_t>(v.type()));
    switch (v.type()) {
    case value_type::string:
    case value_type::expand_string: w.str(v.as_string()); break;
    case value_type::multi_string:
        w.varint(v.as_multi_string().size());
        for (auto& s : v.as_multi_string())
            w.str(s);
        break;
    case value_type::dword: w.u32le(v.as_dword()); break;
    case value_type::qword: w.u64le(v.as_qword()); break;
    case value_type::binary: {
        auto& b = v.as_binary();
        w.str(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
        break;
    }
    }
}

inline value decode_value(byte_reader& r) {
    auto t = static_cast<value_type>(r.u8());
    if (!r.ok()) return {};
    switch (t) {
    case value_type::string: return value::string(std::string(r.str()));
    case value_type::expand_string: return value::expand_string(std::string(r.str()));
    case value_type::multi_string: {
        auto n = r.count(1);
        value::strings items;
        items.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n && r.ok(); ++i)
            items.emplace_back(r.str());
        return value::multi_string(std::move(items));
    }
    case value_type::dword: return value::dword(r.u32le());
    case value_type::qword: return value::qword(r.u64le());
    case value_type::binary: return value::binary(r.str());
    }
    r.fail();
    return {};
}

inline constexpr std::string_view subtree_magic = "QRST";
inline constexpr std::uint8_t subtree_format_version = 1;
inline constexpr std::uint8_t subtree_flag_revisions = 1;

template <class Traits> class registry_tree {
public:
    struct node;
    struct value_slot {
        std::string name; // as first written (case preserved)
        value data;
    };
    struct node {
        std::string name;
        std::uint64_t revision = 0;
        std::map<std::string, std::unique_ptr<node>> children; // by folded name
        std::map<std::string, value_slot> values;              // by folded name
    };

    explicit registry_tree(registry_limits limits = {}) : limits_(limits) {}

    const registry_limits& limits() const noexcept { return limits_; }
    std::uint64_t revision() const noexcept { return revision_; }
    const node& root() const noexcept { return root_; }

    static std::string fold(std::string_view s) {
        std::string out;
        Traits::fold(s, out);
        return out;
    }

    const node* find(const std::vector<std::string_view>& parts) const {
        const node* n = &root_;
        std::string key;
        for (auto p : parts) {
            key.clear();
            Traits::fold(p, key);
            auto it = n->children.find(key);
            if (it == n->children.end()) return nullptr;
            n = it->second.get();
        }
        return n;
    }

    /// Canonical display form of an existing key path: original case, '\' separators.
    std::string display_path(const std::vector<std::string_view>& parts) const {
        std::string out;
        const node* n = &root_;
        for (auto p : parts) {
            if (!out.empty()) out.push_back('\\');
            const node* c = n ? child(*n, p) : nullptr;
            out.append(c ? std::string_view(c->name) : p);
            n = c;
        }
        return out;
    }

    // ---- transactional apply -------------------------------------------------------------

    struct undo_entry {
        enum class kind { restore_value, remove_child, restore_child, restore_revision, swap_contents } k;
        node* target = nullptr;
        std::string key;                     // folded value or child name
        std::optional<value_slot> old_value; // restore_value: nullopt = erase
        std::unique_ptr<node> detached;      // restore_child / swap_contents
        std::uint64_t old_revision = 0;
    };
    using undo_log = std::vector<undo_entry>;

    /// Applies every operation of `ops` at revision revision()+1, or none: on failure the
    /// tree is rolled back and `why` names the failing operation. Events for each change are
    /// appended to `events` (only on success). With `keep_undo`, the undo log stays in
    /// `undo` so the caller can still roll back (used when persistence fails afterwards).
    std::error_code apply(const std::vector<operation>& ops, std::vector<change_event>& events, std::string& why,
                          undo_log* undo = nullptr) {
        undo_log local;
        undo_log& log = undo ? *undo : local;
        log.clear();
        const std::uint64_t rev = revision_ + 1;
        const std::size_t first_event = events.size();
        std::vector<std::string_view> parts;
        for (std::size_t i = 0; i < ops.size(); ++i) {
            std::string detail;
            auto ec = apply_one(ops[i], rev, parts, log, events, detail);
            if (ec) {
                rollback(log);
                events.resize(first_event);
                why = describe(ops[i]) + (detail.empty() ? "" : " (" + detail + ")");
                if (ops.size() > 1)
                    why = "operation " + std::to_string(i + 1) + " of " + std::to_string(ops.size()) + ": " + why;
                return ec;
            }
        }
        if (!ops.empty()) revision_ = rev;
        return {};
    }

    /// Undoes a successful apply() whose log was kept (persistence failed afterwards).
    void rollback_committed(undo_log& log) {
        rollback(log);
        --revision_;
    }

    // ---- subtree codec -------------------------------------------------------------------

    /// Encodes the subtree at `n` (values and subkeys; key revisions with `with_revisions`).
    /// The output is deterministic: equal content gives equal bytes.
    static std::string encode_subtree(const node& n, bool with_revisions) {
        std::string out;
        byte_writer w(out);
        w.raw(subtree_magic);
        w.u8(subtree_format_version);
        w.u8(with_revisions ? subtree_flag_revisions : 0);
        encode_node(w, n, with_revisions);
        w.u32le(crc32c(out));
        return out;
    }

    /// Decodes bytes from encode_subtree into `out`, checking magic, checksum, version,
    /// names, limits and depth (`base_depth` is the depth of the key it will be placed at).
    std::error_code decode_subtree(std::string_view in, node& out, std::size_t base_depth, std::string& why) const {
        if (in.size() < subtree_magic.size() + 2 + 4 || in.substr(0, 4) != subtree_magic) {
            why = "not an encoded subtree (bad magic or too short)";
            return errc::corrupt_data;
        }
        byte_reader crc_reader(in.substr(in.size() - 4));
        if (crc32c(in.data(), in.size() - 4) != crc_reader.u32le()) {
            why = "checksum mismatch";
            return errc::corrupt_data;
        }
        byte_reader r(in.substr(0, in.size() - 4));
        r.raw(4);
        auto version = r.u8();
        auto flags = r.u8();
        if (version > subtree_format_version || version == 0) {
            why = "format version " + std::to_string(version) + " (this build reads up to " +
                  std::to_string(subtree_format_version) + ")";
            return errc::unsupported_version;
        }
        if (flags & ~subtree_flag_revisions) {
            why = "unknown flags";
            return errc::unsupported_version;
        }
        auto ec = decode_node(r, out, (flags & subtree_flag_revisions) != 0, base_depth, why, true);
        if (!ec && (!r.ok() || r.remaining() != 0)) {
            why = "trailing or truncated data";
            ec = errc::corrupt_data;
        }
        return ec;
    }

    /// Replaces the whole tree with decoded snapshot content (hive recovery).
    void load(std::unique_ptr<node> root, std::uint64_t revision) {
        root_.children = std::move(root->children);
        root_.values = std::move(root->values);
        root_.revision = root->revision;
        revision_ = revision;
    }

    static const node* child(const node& n, std::string_view name) {
        std::string key;
        Traits::fold(name, key);
        auto it = n.children.find(key);
        return it == n.children.end() ? nullptr : it->second.get();
    }

private:
    static std::string describe(const operation& op) {
        switch (op.kind) {
        case op_kind::create_key: return "create_key \"" + op.path + "\"";
        case op_kind::delete_key: return "delete_key \"" + op.path + "\"";
        case op_kind::set_value: return "set_value \"" + op.path + "\" \"" + op.name + "\"";
        case op_kind::delete_value: return "delete_value \"" + op.path + "\" \"" + op.name + "\"";
        case op_kind::require_revision: return "require_revision \"" + op.path + "\" == " + std::to_string(op.revision);
        case op_kind::replace_subtree: return "replace_subtree \"" + op.path + "\"";
        }
        return "unknown operation";
    }

    std::string join(const std::vector<std::string_view>& parts, std::size_t n) const {
        std::vector<std::string_view> prefix(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(n));
        return display_path(prefix);
    }

    void touch(node& n, std::uint64_t rev, undo_log& log) {
        if (n.revision == rev) return;
        log.push_back({undo_entry::kind::restore_revision, &n, {}, std::nullopt, nullptr, n.revision});
        n.revision = rev;
    }

    node* ensure(const std::vector<std::string_view>& parts, std::uint64_t rev, undo_log& log,
                 std::vector<change_event>& events) {
        node* n = &root_;
        std::string key;
        for (std::size_t i = 0; i < parts.size(); ++i) {
            key.clear();
            Traits::fold(parts[i], key);
            auto it = n->children.find(key);
            if (it == n->children.end()) {
                auto c = std::make_unique<node>();
                c->name = std::string(parts[i]);
                c->revision = rev;
                node* raw = c.get();
                n->children.emplace(key, std::move(c));
                log.push_back({undo_entry::kind::remove_child, n, key, std::nullopt, nullptr, 0});
                touch(*n, rev, log);
                events.push_back({change_kind::key_created, join(parts, i + 1), {}, rev});
                n = raw;
            } else {
                n = it->second.get();
            }
        }
        return n;
    }

    std::error_code apply_one(const operation& op, std::uint64_t rev, std::vector<std::string_view>& parts,
                              undo_log& log, std::vector<change_event>& events, std::string& why) {
        if (auto ec = split_path(op.path, limits_, parts, &why)) return ec;
        switch (op.kind) {
        case op_kind::create_key: ensure(parts, rev, log, events); return {};
        case op_kind::delete_key: {
            if (parts.empty()) {
                why = "the root key cannot be deleted";
                return errc::invalid_path;
            }
            auto last = parts.back();
            parts.pop_back();
            node* parent = const_cast<node*>(find(parts));
            parts.push_back(last);
            std::string key = fold(last);
            if (!parent || !parent->children.count(key)) return errc::key_not_found;
            std::string shown = display_path(parts);
            auto it = parent->children.find(key);
            log.push_back({undo_entry::kind::restore_child, parent, key, std::nullopt, std::move(it->second), 0});
            parent->children.erase(it);
            touch(*parent, rev, log);
            events.push_back({change_kind::key_deleted, std::move(shown), {}, rev});
            return {};
        }
        case op_kind::set_value: {
            if (auto ec = check_value_name(op.name, limits_, &why)) return ec;
            if (auto ec = check_value_size(op.data, limits_, &why)) return ec;
            node* n = ensure(parts, rev, log, events);
            std::string key = fold(op.name);
            auto it = n->values.find(key);
            if (it == n->values.end()) {
                log.push_back({undo_entry::kind::restore_value, n, key, std::nullopt, nullptr, 0});
                n->values.emplace(key, value_slot{op.name, op.data});
            } else {
                log.push_back({undo_entry::kind::restore_value, n, key, it->second, nullptr, 0});
                it->second.data = op.data;
            }
            touch(*n, rev, log);
            events.push_back({change_kind::value_set, display_path(parts), n->values.at(key).name, rev});
            return {};
        }
        case op_kind::delete_value: {
            if (auto ec = check_value_name(op.name, limits_, &why)) return ec;
            node* n = const_cast<node*>(find(parts));
            if (!n) return errc::key_not_found;
            std::string key = fold(op.name);
            auto it = n->values.find(key);
            if (it == n->values.end()) return errc::value_not_found;
            std::string shown_name = it->second.name;
            log.push_back({undo_entry::kind::restore_value, n, key, std::move(it->second), nullptr, 0});
            n->values.erase(it);
            touch(*n, rev, log);
            events.push_back({change_kind::value_deleted, display_path(parts), std::move(shown_name), rev});
            return {};
        }
        case op_kind::require_revision: {
            const node* n = find(parts);
            std::uint64_t actual = n ? n->revision : 0;
            if (actual != op.revision) {
                why = "actual revision " + std::to_string(actual);
                return errc::revision_mismatch;
            }
            return {};
        }
        case op_kind::replace_subtree: {
            auto fresh = std::make_unique<node>();
            if (auto ec = decode_subtree(op.blob, *fresh, parts.size(), why)) return ec;
            set_revisions(*fresh, rev);
            node* n = ensure(parts, rev, log, events);
            fresh->name = n->name;
            std::swap(n->children, fresh->children);
            std::swap(n->values, fresh->values);
            log.push_back({undo_entry::kind::swap_contents, n, {}, std::nullopt, std::move(fresh), 0});
            touch(*n, rev, log);
            events.push_back({change_kind::subtree_replaced, display_path(parts), {}, rev});
            return {};
        }
        }
        why = "unknown operation kind";
        return errc::invalid_argument;
    }

    static void set_revisions(node& n, std::uint64_t rev) {
        n.revision = rev;
        for (auto& [k, c] : n.children)
            set_revisions(*c, rev);
    }

    static void rollback(undo_log& log) {
        for (auto it = log.rbegin(); it != log.rend(); ++it) {
            auto& u = *it;
            switch (u.k) {
            case undo_entry::kind::restore_value:
                if (u.old_value)
                    u.target->values.insert_or_assign(u.key, std::move(*u.old_value));
                else
                    u.target->values.erase(u.key);
                break;
            case undo_entry::kind::remove_child: u.target->children.erase(u.key); break;
            case undo_entry::kind::restore_child: u.target->children.emplace(u.key, std::move(u.detached)); break;
            case undo_entry::kind::restore_revision: u.target->revision = u.old_revision; break;
            case undo_entry::kind::swap_contents:
                std::swap(u.target->children, u.detached->children);
                std::swap(u.target->values, u.detached->values);
                break;
            }
        }
        log.clear();
    }

    static void encode_node(byte_writer& w, const node& n, bool with_revisions) {
        w.str(n.name);
        if (with_revisions) w.varint(n.revision);
        w.varint(n.values.size());
        for (auto& [k, slot] : n.values) {
            w.str(slot.name);
            encode_value(w, slot.data);
        }
        w.varint(n.children.size());
        for (auto& [k, c] : n.children)
            encode_node(w, *c, with_revisions);
    }

    std::error_code decode_node(byte_reader& r, node& n, bool with_revisions, std::size_t depth, std::string& why,
                                bool is_top) const {
        auto name = r.str();
        if (!is_top) {
            std::vector<std::string_view> one;
            std::string sub;
            if (name.empty() || name.find_first_of("\\/") != std::string_view::npos ||
                split_path(name, limits_, one, &sub)) {
                why = "invalid key name in encoded subtree" + (sub.empty() ? std::string() : ": " + sub);
                return errc::corrupt_data;
            }
            if (depth > limits_.max_depth) {
                why = "encoded subtree deeper than " + std::to_string(limits_.max_depth) + " levels";
                return errc::path_too_deep;
            }
        }
        n.name = std::string(name);
        if (with_revisions) n.revision = r.varint();
        auto nvalues = r.count(2);
        for (std::uint64_t i = 0; i < nvalues && r.ok(); ++i) {
            std::string vname(r.str());
            value v = decode_value(r);
            if (!r.ok()) break;
            std::string sub;
            if (auto ec = check_value_name(vname, limits_, &sub)) {
                why = "encoded value name: " + sub;
                return errc::corrupt_data;
            }
            if (auto ec = check_value_size(v, limits_, &sub)) {
                why = "encoded value \"" + vname + "\": " + sub;
                return ec;
            }
            if (!n.values.emplace(fold(vname), value_slot{vname, std::move(v)}).second) {
                why = "duplicate value name \"" + vname + "\" in encoded subtree";
                return errc::corrupt_data;
            }
        }
        auto nchildren = r.count(3);
        for (std::uint64_t i = 0; i < nchildren && r.ok(); ++i) {
            auto c = std::make_unique<node>();
            if (auto ec = decode_node(r, *c, with_revisions, depth + 1, why, false)) return ec;
            std::string key = fold(c->name);
            if (!n.children.emplace(key, std::move(c)).second) {
                why = "duplicate key name in encoded subtree";
                return errc::corrupt_data;
            }
        }
        if (!r.ok()) {
            why = "truncated or malformed encoded subtree";
            return errc::corrupt_data;
        }
        return {};
    }

    registry_limits limits_;
    node root_;
    std::uint64_t revision_ = 0;
};

// ---- transaction codec (journal records, IPC) ------------------------------------------

inline constexpr std::uint8_t transaction_format_version = 1;

inline void encode_operations(std::string& out, const std::vector<operation>& ops) {
    byte_writer w(out);
    w.u8(transaction_format_version);
    w.varint(ops.size());
    for (auto& op : ops) {
        w.u8(static_cast<std::uint8_t>(op.kind));
        w.str(op.path);
        switch (op.kind) {
        case op_kind::create_key:
        case op_kind::delete_key: break;
        case op_kind::set_value:
            w.str(op.name);
            encode_value(w, op.data);
            break;
        case op_kind::delete_value: w.str(op.name); break;
        case op_kind::require_revision: w.varint(op.revision); break;
        case op_kind::replace_subtree: w.str(op.blob); break;
        }
    }
}

inline std::error_code decode_operations(byte_reader& r, std::vector<operation>& ops) {
    ops.clear();
    auto version = r.u8();
    if (!r.ok()) return errc::corrupt_data;
    if (version != transaction_format_version) return errc::unsupported_version;
    auto n = r.count(2);
    ops.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
        operation op;
        op.kind = static_cast<op_kind>(r.u8());
        op.path = std::string(r.str());
        switch (op.kind) {
        case op_kind::create_key:
        case op_kind::delete_key: break;
        case op_kind::set_value:
            op.name = std::string(r.str());
            op.data = decode_value(r);
            break;
        case op_kind::delete_value: op.name = std::string(r.str()); break;
        case op_kind::require_revision: op.revision = r.varint(); break;
        case op_kind::replace_subtree: op.blob = std::string(r.str()); break;
        default: r.fail();
        }
        ops.push_back(std::move(op));
    }
    if (!r.ok()) {
        ops.clear();
        return errc::corrupt_data;
    }
    return {};
}

} // namespace quorumreg::detail
