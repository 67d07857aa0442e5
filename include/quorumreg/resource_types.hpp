// quorumreg — resource types: which plugin library implements which resource type.
//
// The answer to Q242398 ("after a resource monitor crash the cluster forgot which DLL
// implemented a resource type"): a registration lives in the replicated quorum store, one
// versioned, CRC-checked record per type under `cluster/resource_types/<folded name>`, written
// with compare-and-swap. Every node reads the same registrations; a resource monitor never keeps
// the only copy. The controller re-resolves a type from the store each time it (re)hosts a
// resource, so a monitor crash cannot lose the mapping, and a library that went missing,
// stopped loading or changed on disk is reported with that reason — never as a null type.
//
// @code
// quorumreg::resource_type_registry_options o;
// o.plugin_directories = {"/usr/lib/contoso/resources"};
// quorumreg::resource_type_registry types(store, o);
// quorumreg::resource_type_info t;
// t.name = "Contoso.Cache";
// t.library = "/usr/lib/contoso/resources/libcache.so";
// types.register_type(t);                 // hashes, probes in a throwaway monitor, stores
// auto info = types.lookup("contoso.cache"); // names fold ASCII case
// for (auto& n : types.verification_report("Contoso.Cache")) std::cout << n.node << ' ' << n.ok() << '\n';
// @endcode
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/monitor_sha256.hpp>
#include <quorumreg/detail/monitor_spawn.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

namespace quorumreg {

/// Flags of a resource type registration (bit set).
enum resource_type_flag : std::uint32_t {
    /// Every resource of this type runs in a monitor of its own (MSCS SeparateMonitor).
    separate_monitor = 1u << 0,
};

/// One registered resource type, as stored in the cluster store.
struct resource_type_info {
    std::string name;         ///< type name, stored case; compared ASCII case-insensitively
    std::string library;      ///< absolute path of the plugin library, the same on every node
    std::string display_name; ///< for people; defaults to `name`
    std::string sha256;       ///< lower-case hex; computed at registration (if given, must match)
    std::chrono::milliseconds looks_alive_interval{5000}; ///< WSFC default 5 s
    std::chrono::milliseconds is_alive_interval{60000};   ///< WSFC default 60 s
    /// A plugin call running longer gets its monitor killed. WSFC uses 5 minutes; quorumreg
    /// defaults to 60 s so a hung plugin is recovered in a minute, not five.
    std::chrono::milliseconds deadlock_timeout{60000};
    std::uint32_t flags = 0;     ///< resource_type_flag bits
    std::string registered_by;   ///< node that registered it
    store_revision revision = 0; ///< the record's mod_revision in the store (filled on read)
};

/// One node's check of a type's library: does the file there load and match the registered hash?
struct node_verification {
    std::string node;               ///< the node that checked
    std::error_code result;         ///< empty: loads and matches; else plugin_missing, plugin_hash_mismatch, ...
    std::string message;            ///< the reason in words
    std::string observed_sha256;    ///< hash of the node's file (empty if unreadable)
    std::string registered_sha256;  ///< registration hash the node checked against
    std::int64_t checked_at_ms = 0; ///< Unix time of the check, milliseconds
    /// True when the check succeeded against the hash the type is registered with now.
    bool current = false;
    /// Loads, matches, and against the current registration.
    bool ok() const noexcept { return !result && current; }
};

/// Longest library path a type may name, in bytes. The path travels to monitors inside a
/// bounded protocol frame; a longer one is refused at registration rather than clipped there.
inline constexpr std::size_t max_library_path_bytes = 1024;

/// Options of a resource_type_registry.
struct resource_type_registry_options {
    /// Store prefix of the registrations (one key per type: prefix + folded name).
    std::string prefix = "cluster/resource_types/";
    /// Store prefix of per-node verification records (prefix + folded name + "/" + node).
    std::string verification_prefix = "cluster/resource_type_nodes/";
    /// Plugins load only from these directories (after resolving symlinks). Empty: none allowed.
    std::vector<std::filesystem::path> plugin_directories;
    /// This node's name in verification records; default: the host name.
    std::string node_id;
    /// Program that runs monitors/probes; empty: detail::default_monitor_command().
    std::vector<std::string> monitor_command;
    /// How long a registration probe may take before the library is declared unloadable.
    std::chrono::milliseconds probe_timeout{15000};
};
/// The old name, kept for one release (option structs are named after their class).
using type_registry_options [[deprecated("renamed resource_type_registry_options")]] = resource_type_registry_options;

/// The cluster-wide registry of resource types. Thread-safe (all state is in the store).
class resource_type_registry {
public:
    /// @param store the authoritative store; must outlive the registry.
    explicit resource_type_registry(quorum_store& store, resource_type_registry_options options = {});

    /// Registers a type: validates the name and path, checks the library is in an allowed
    /// directory (plugin_not_allowed), exists (plugin_missing), hashes it, loads it in a
    /// throwaway monitor and asks it for exactly this type (plugin_load_failed,
    /// plugin_type_mismatch), then creates the record with compare-and-swap (already_exists if
    /// the name is taken). Records this node's verification. Returns the stored record.
    resource_type_info register_type(const resource_type_info& info);
    /// Non-throwing form: errors go to `ec`.
    resource_type_info register_type(const resource_type_info& info, std::error_code& ec);

    /// Removes a registration and its verification records; not_found if absent.
    void unregister_type(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    void unregister_type(std::string_view name, std::error_code& ec);

    /// Reads the registration from the store (never from a cache); not_found if absent.
    resource_type_info lookup(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    resource_type_info lookup(std::string_view name, std::error_code& ec);

    /// Every registration, in folded-name order.
    std::vector<resource_type_info> list();
    /// Non-throwing form: errors go to `ec`.
    std::vector<resource_type_info> list(std::error_code& ec);

    /// Checks this node's copy of the type's library (allowed, present, hash, loads, exports the
    /// type) and records the result in the store. Returns the result; `ec` reports only failures
    /// to run the check (not_found, store errors), not a bad library.
    node_verification verify_on_this_node(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    node_verification verify_on_this_node(std::string_view name, std::error_code& ec);

    /// Records a verification result for this node (controllers call it whenever a monitor loads
    /// the library). Written only while the registration exists (compare in the same
    /// transaction), so a late record never resurrects a removed type; not_found otherwise.
    void record_verification(const resource_type_info& info, std::error_code result, const std::string& message,
                             const std::string& observed_sha256, std::error_code& ec);
    /// Throwing form of record_verification(..., ec).
    void record_verification(const resource_type_info& info, std::error_code result, const std::string& message,
                             const std::string& observed_sha256);

    /// Which nodes have the library at the registered hash, one entry per node that checked.
    std::vector<node_verification> verification_report(std::string_view name);
    /// Non-throwing form: errors go to `ec`.
    std::vector<node_verification> verification_report(std::string_view name, std::error_code& ec);

    /// plugin_not_allowed unless `library` resolves inside a configured plugin directory.
    std::error_code check_allowed(const std::string& library) const;

    /// The store key of a type's registration.
    std::string key_of(std::string_view name) const { return opts_.prefix + fold(name); }
    /// ASCII case folding used for type names.
    static std::string fold(std::string_view name);
    /// invalid_argument unless `name` is a valid type name (1..255 bytes, no control
    /// characters, no '/' or '\\').
    static std::error_code validate_name(std::string_view name);

    /// The options it was made with.
    const resource_type_registry_options& options() const noexcept { return opts_; }
    /// The store registrations live in.
    quorum_store& store() noexcept { return store_; }
    /// The command used to start monitors and probes.
    std::vector<std::string> monitor_command() const;
    /// The configured plugin directories (monitors and probes re-check every load against them).
    const std::vector<std::filesystem::path>& plugin_directories() const noexcept { return opts_.plugin_directories; }

    /// Encodes/decodes a registration record (versioned, CRC-32C checked).
    /// Upper bound of the polling intervals and the deadlock timeout (a larger value would
    /// overflow deadline arithmetic: milliseconds::max() became an immediate kill loop).
    static constexpr std::chrono::milliseconds max_timing{std::chrono::hours(24)};
    /// The registration record of `info`.
    static std::string encode(const resource_type_info& info);
    /// Every interval and the deadlock timeout are in (0, max_timing].
    static bool timings_valid(const resource_type_info& t) {
        auto ok = [](std::chrono::milliseconds d) { return d.count() > 0 && d <= max_timing; };
        return ok(t.looks_alive_interval) && ok(t.is_alive_interval) && ok(t.deadlock_timeout);
    }
    /// Non-throwing form: errors go to `ec`.
    static resource_type_info decode(std::string_view bytes, std::error_code& ec);
    /// Throwing form of decode(bytes, ec).
    static resource_type_info decode(std::string_view bytes) {
        std::error_code ec;
        auto t = decode(bytes, ec);
        if (ec) throw error(ec, "decode resource type record");
        return t;
    }

private:
    template <class F> auto thrown(const char* op, std::string_view name, F&& f) {
        std::error_code ec;
        detail_().clear();
        auto r = f(ec);
        if (ec) {
            std::string what = std::string(op) + " \"" + std::string(name) + "\"";
            if (!detail_().empty()) what += ": " + detail_();
            throw error(ec, what);
        }
        return r;
    }
    static std::string& detail_() {
        thread_local std::string d;
        return d;
    }
    static std::error_code fail(std::error_code& ec, std::error_code code, std::string why) {
        ec = code;
        detail_() = std::move(why);
        return ec;
    }
    std::string verification_key(std::string_view name) const {
        return opts_.verification_prefix + fold(name) + "/" + opts_.node_id;
    }
    static std::string encode_verification(const node_verification& v);
    static bool decode_verification(std::string_view bytes, node_verification& v);

    quorum_store& store_;
    resource_type_registry_options opts_;
};

// ==== implementation ===========================================================================

inline resource_type_registry::resource_type_registry(quorum_store& store, resource_type_registry_options options)
    : store_(store), opts_(std::move(options)) {
    if (opts_.node_id.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        opts_.node_id = host[0] ? host : "localhost";
    }
}

inline std::string resource_type_registry::fold(std::string_view name) { return detail::ascii_folded(name); }

inline std::error_code resource_type_registry::validate_name(std::string_view name) {
    if (name.empty() || name.size() > 255) return errc::invalid_argument;
    for (unsigned char c : name)
        if (c < 0x20 || c == 0x7F || c == '/' || c == '\\') return errc::invalid_argument;
    return {};
}

inline std::vector<std::string> resource_type_registry::monitor_command() const {
    return opts_.monitor_command.empty() ? detail::default_monitor_command() : opts_.monitor_command;
}

inline std::error_code resource_type_registry::check_allowed(const std::string& library) const {
    namespace fs = std::filesystem;
    std::error_code ec;
    auto real = fs::weakly_canonical(fs::path(library), ec);
    if (ec) return errc::plugin_not_allowed;
    for (auto& dir : opts_.plugin_directories) {
        auto d = fs::weakly_canonical(dir, ec);
        if (ec) continue;
        auto rel = real.lexically_relative(d);
        if (!rel.empty() && *rel.begin() != ".." && rel != ".") return {};
    }
    return errc::plugin_not_allowed;
}

namespace detail {
inline constexpr std::uint32_t type_record_magic = 0x59545251;   // "QRTY"
inline constexpr std::uint32_t verify_record_magic = 0x56545251; // "QRTV"
inline constexpr std::uint8_t type_record_version = 1;

/// magic, version, body, CRC-32C of everything before it.
inline std::string seal_record(std::uint32_t magic, const std::string& body) {
    std::string out;
    byte_writer w(out);
    w.u32le(magic);
    w.u8(type_record_version);
    w.raw(body);
    w.u32le(crc32c(out));
    return out;
}
/// The body of a sealed record, or an error (corrupt_data / unsupported_version).
inline std::string_view open_record(std::uint32_t magic, std::string_view bytes, std::error_code& ec) {
    if (bytes.size() < 9) {
        ec = errc::corrupt_data;
        return {};
    }
    byte_reader crc_r(bytes.substr(bytes.size() - 4));
    if (crc_r.u32le() != crc32c(bytes.substr(0, bytes.size() - 4))) {
        ec = errc::corrupt_data;
        return {};
    }
    byte_reader r(bytes);
    if (r.u32le() != magic) {
        ec = errc::corrupt_data;
        return {};
    }
    if (r.u8() != type_record_version) {
        ec = errc::unsupported_version;
        return {};
    }
    return bytes.substr(5, bytes.size() - 9);
}
inline std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}
} // namespace detail

inline std::string resource_type_registry::encode(const resource_type_info& t) {
    std::string body;
    detail::byte_writer w(body);
    w.str(t.name);
    w.str(t.library);
    w.str(t.display_name);
    w.str(t.sha256);
    w.varint(static_cast<std::uint64_t>(t.looks_alive_interval.count()));
    w.varint(static_cast<std::uint64_t>(t.is_alive_interval.count()));
    w.varint(static_cast<std::uint64_t>(t.deadlock_timeout.count()));
    w.u32le(t.flags);
    w.str(t.registered_by);
    return detail::seal_record(detail::type_record_magic, body);
}

inline resource_type_info resource_type_registry::decode(std::string_view bytes, std::error_code& ec) {
    ec.clear();
    auto body = detail::open_record(detail::type_record_magic, bytes, ec);
    if (ec) return {};
    detail::byte_reader r(body);
    resource_type_info t;
    t.name = std::string(r.str());
    t.library = std::string(r.str());
    t.display_name = std::string(r.str());
    t.sha256 = std::string(r.str());
    t.looks_alive_interval = std::chrono::milliseconds(static_cast<std::int64_t>(r.varint()));
    t.is_alive_interval = std::chrono::milliseconds(static_cast<std::int64_t>(r.varint()));
    t.deadlock_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(r.varint()));
    t.flags = r.u32le();
    t.registered_by = std::string(r.str());
    // A record is checked like a registration: a zero, negative or huge timing or a relative
    // library path is not something register_type() can have written.
    if (!r.ok() || r.remaining() != 0 || validate_name(t.name) || !detail::is_sha256_hex(t.sha256) ||
        !timings_valid(t) || !std::filesystem::path(t.library).is_absolute() ||
        t.library.size() > max_library_path_bytes) {
        ec = errc::corrupt_data;
        return {};
    }
    return t;
}

inline std::string resource_type_registry::encode_verification(const node_verification& v) {
    std::string body;
    detail::byte_writer w(body);
    w.str(v.node);
    w.u32le(static_cast<std::uint32_t>(v.result ? v.result.value() : 0));
    w.str(v.message);
    w.str(v.observed_sha256);
    w.str(v.registered_sha256);
    w.u64le(static_cast<std::uint64_t>(v.checked_at_ms));
    return detail::seal_record(detail::verify_record_magic, body);
}

inline bool resource_type_registry::decode_verification(std::string_view bytes, node_verification& v) {
    std::error_code ec;
    auto body = detail::open_record(detail::verify_record_magic, bytes, ec);
    if (ec) return false;
    detail::byte_reader r(body);
    v.node = std::string(r.str());
    auto code = static_cast<int>(r.u32le());
    v.result = code ? make_error_code(static_cast<errc>(code)) : std::error_code{};
    v.message = std::string(r.str());
    v.observed_sha256 = std::string(r.str());
    v.registered_sha256 = std::string(r.str());
    v.checked_at_ms = static_cast<std::int64_t>(r.u64le());
    return r.ok() && r.remaining() == 0;
}

inline resource_type_info resource_type_registry::register_type(const resource_type_info& in, std::error_code& ec) {
    ec.clear();
    namespace fs = std::filesystem;
    if (validate_name(in.name)) {
        fail(ec, errc::invalid_argument, "a type name is 1..255 bytes without control characters, '/' or '\\'");
        return {};
    }
    if (in.library.empty() || !fs::path(in.library).is_absolute()) {
        fail(ec, errc::invalid_argument, "the library path must be absolute (it must be the same on every node)");
        return {};
    }
    if (!timings_valid(in)) {
        fail(ec, errc::invalid_argument,
             "polling intervals and the deadlock timeout must be positive and at most 24 h");
        return {};
    }
    if (!in.sha256.empty() && !detail::is_sha256_hex(in.sha256)) {
        fail(ec, errc::invalid_argument, "sha256 must be 64 lower-case hex digits");
        return {};
    }
    resource_type_info t = in;
    t.library = fs::path(in.library).lexically_normal().string();
    if (t.library.size() > max_library_path_bytes) {
        fail(ec, errc::invalid_argument,
             "the library path is " + std::to_string(t.library.size()) + " bytes; at most " +
                 std::to_string(max_library_path_bytes) + " are allowed");
        return {};
    }
    if (t.display_name.empty()) t.display_name = t.name;
    t.registered_by = opts_.node_id;
    if (auto e = check_allowed(t.library)) {
        fail(ec, e, "\"" + t.library + "\" is outside the configured plugin directories");
        return {};
    }
    std::error_code hec;
    auto actual = detail::sha256_file(t.library, hec);
    if (hec) {
        // The code's own message follows `why` in what(); a missing file says only where.
        fail(ec, hec == errc::plugin_missing ? hec : make_error_code(errc::plugin_load_failed),
             hec == errc::plugin_missing ? "\"" + t.library + "\" does not exist"
                                         : "cannot read \"" + t.library + "\": " + hec.message());
        return {};
    }
    if (!t.sha256.empty() && t.sha256 != actual) {
        fail(ec, errc::plugin_hash_mismatch, "\"" + t.library + "\" has SHA-256 " + actual + ", expected " + t.sha256);
        return {};
    }
    t.sha256 = actual;
    auto probe = detail::probe_plugin(monitor_command(), t.library, t.name, t.sha256, opts_.probe_timeout,
                                      opts_.plugin_directories);
    if (probe.ec) {
        fail(ec, probe.ec, probe.message);
        return {};
    }
    node_verification v;
    v.node = opts_.node_id;
    v.observed_sha256 = actual;
    v.registered_sha256 = actual;
    v.checked_at_ms = detail::unix_ms();
    v.message = "registered";
    store_txn txn;
    auto key = key_of(t.name);
    txn.compares.push_back(key_compare::absent(key));
    txn.on_success.push_back(store_op::put(key, encode(t)));
    txn.on_success.push_back(store_op::put(verification_key(t.name), encode_verification(v)));
    auto res = store_.commit(txn, ec);
    if (ec) {
        detail_() = "store " + store_.describe();
        return {};
    }
    if (!res.succeeded) {
        fail(ec, errc::already_exists, "a type with this name is already registered");
        return {};
    }
    t.revision = res.revision;
    return t;
}

inline resource_type_info resource_type_registry::register_type(const resource_type_info& info) {
    return thrown("register_type", info.name, [&](std::error_code& ec) { return register_type(info, ec); });
}

inline void resource_type_registry::unregister_type(std::string_view name, std::error_code& ec) {
    ec.clear();
    if (validate_name(name)) {
        fail(ec, errc::invalid_argument, "invalid type name");
        return;
    }
    auto key = key_of(name);
    for (int attempt = 0; attempt < 16; ++attempt) {
        auto kv = store_.get(key, ec);
        if (ec) return;
        if (!kv) {
            fail(ec, errc::not_found, "no such resource type");
            return;
        }
        store_txn txn;
        txn.compares.push_back(key_compare::mod_revision_is(key, kv->mod_revision));
        txn.on_success.push_back(store_op::erase(key));
        txn.on_success.push_back(store_op::erase_prefix(opts_.verification_prefix + fold(name) + "/"));
        auto r = store_.commit(txn, ec);
        if (ec || r.succeeded) return;
    }
    fail(ec, errc::compare_failed, "the registration kept changing concurrently");
}

inline void resource_type_registry::unregister_type(std::string_view name) {
    thrown("unregister_type", name, [&](std::error_code& ec) {
        unregister_type(name, ec);
        return 0;
    });
}

inline resource_type_info resource_type_registry::lookup(std::string_view name, std::error_code& ec) {
    ec.clear();
    if (validate_name(name)) {
        fail(ec, errc::invalid_argument, "invalid type name");
        return {};
    }
    auto kv = store_.get(key_of(name), ec);
    if (ec) return {};
    if (!kv) {
        fail(ec, errc::not_found, "no such resource type in " + store_.describe());
        return {};
    }
    auto t = decode(kv->value, ec);
    if (ec) {
        detail_() = "the registration record at \"" + kv->key + "\" is unreadable";
        return {};
    }
    t.revision = kv->mod_revision;
    return t;
}

inline resource_type_info resource_type_registry::lookup(std::string_view name) {
    return thrown("lookup", name, [&](std::error_code& ec) { return lookup(name, ec); });
}

inline std::vector<resource_type_info> resource_type_registry::list(std::error_code& ec) {
    ec.clear();
    auto kvs = store_.list(opts_.prefix, ec);
    if (ec) return {};
    std::vector<resource_type_info> out;
    for (auto& kv : kvs) {
        auto t = decode(kv.value, ec);
        if (ec) {
            detail_() = "the registration record at \"" + kv.key + "\" is unreadable";
            return {};
        }
        t.revision = kv.mod_revision;
        out.push_back(std::move(t));
    }
    return out;
}

inline std::vector<resource_type_info> resource_type_registry::list() {
    return thrown("list", opts_.prefix, [&](std::error_code& ec) { return list(ec); });
}

inline void resource_type_registry::record_verification(const resource_type_info& info, std::error_code result,
                                                        const std::string& message, const std::string& observed,
                                                        std::error_code& ec) {
    node_verification v;
    v.node = opts_.node_id;
    v.result = result;
    v.message = message;
    v.observed_sha256 = observed;
    v.registered_sha256 = info.sha256;
    v.checked_at_ms = detail::unix_ms();
    // Only while the registration still exists: a record must never resurrect a removed type.
    store_txn txn;
    txn.compares.push_back(key_compare::exists(key_of(info.name)));
    txn.on_success.push_back(store_op::put(verification_key(info.name), encode_verification(v)));
    auto r = store_.commit(txn, ec);
    if (!ec && !r.succeeded) fail(ec, errc::not_found, "the type is no longer registered");
}

inline void resource_type_registry::record_verification(const resource_type_info& info, std::error_code result,
                                                        const std::string& message, const std::string& observed) {
    thrown("record_verification", info.name, [&](std::error_code& ec) {
        record_verification(info, result, message, observed, ec);
        return 0;
    });
}

inline node_verification resource_type_registry::verify_on_this_node(std::string_view name, std::error_code& ec) {
    auto t = lookup(name, ec);
    if (ec) return {};
    node_verification v;
    v.node = opts_.node_id;
    v.registered_sha256 = t.sha256;
    if (auto e = check_allowed(t.library)) {
        v.result = e;
        v.message = "\"" + t.library + "\" is outside this node's plugin directories";
    } else {
        std::error_code hec;
        v.observed_sha256 = detail::sha256_file(t.library, hec);
        if (hec) {
            v.result = hec == errc::plugin_missing ? hec : make_error_code(errc::plugin_load_failed);
            v.message = hec == errc::plugin_missing ? "\"" + t.library + "\" does not exist"
                                                    : "cannot read \"" + t.library + "\": " + hec.message();
        } else if (v.observed_sha256 != t.sha256) {
            v.result = errc::plugin_hash_mismatch;
            v.message = "\"" + t.library + "\" has SHA-256 " + v.observed_sha256 + ", registered " + t.sha256;
        } else {
            auto p = detail::probe_plugin(monitor_command(), t.library, t.name, t.sha256, opts_.probe_timeout,
                                          opts_.plugin_directories);
            v.result = p.ec;
            v.message = p.ec ? p.message : "loads and matches the registered SHA-256";
        }
    }
    record_verification(t, v.result, v.message, v.observed_sha256, ec);
    v.checked_at_ms = detail::unix_ms();
    v.current = true;
    return v;
}

inline node_verification resource_type_registry::verify_on_this_node(std::string_view name) {
    return thrown("verify_on_this_node", name, [&](std::error_code& ec) { return verify_on_this_node(name, ec); });
}

inline std::vector<node_verification> resource_type_registry::verification_report(std::string_view name,
                                                                                  std::error_code& ec) {
    auto t = lookup(name, ec);
    if (ec) return {};
    auto kvs = store_.list(opts_.verification_prefix + fold(name) + "/", ec);
    if (ec) return {};
    std::vector<node_verification> out;
    for (auto& kv : kvs) {
        node_verification v;
        if (!decode_verification(kv.value, v)) {
            v = {};
            v.node = kv.key.substr(kv.key.rfind('/') + 1);
            v.result = errc::corrupt_data;
            v.message = "unreadable verification record";
        }
        v.current = v.registered_sha256 == t.sha256;
        out.push_back(std::move(v));
    }
    return out;
}

inline std::vector<node_verification> resource_type_registry::verification_report(std::string_view name) {
    return thrown("verification_report", name, [&](std::error_code& ec) { return verification_report(name, ec); });
}

} // namespace quorumreg
