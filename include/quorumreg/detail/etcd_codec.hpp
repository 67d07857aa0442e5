// Encoding helpers for the etcd store: base64 (the JSON gateway carries bytes as base64),
// tolerant int64 reads (the gateway sends 64-bit integers as strings and omits defaults),
// prefix range ends, and the manifest that describes a value stored in chunks.
#pragma once

#include <quorumreg/detail/crypto.hpp>
#include <quorumreg/detail/text.hpp>
#include <quorumreg/quorum_store.hpp>

#include <boost/json.hpp>
#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace quorumreg::detail::etcd {

namespace json = boost::json;

inline std::string base64_encode(std::string_view in) {
    static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k])); };
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += tbl[v >> 6 & 63];
        out += tbl[v & 63];
    }
    if (i + 1 == in.size()) {
        std::uint32_t v = byte(i) << 16;
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
        out += tbl[v >> 18 & 63];
        out += tbl[v >> 12 & 63];
        out += tbl[v >> 6 & 63];
        out += '=';
    }
    return out;
}

/// Decodes standard base64 (padding optional); std::nullopt on a character outside the alphabet.
inline std::optional<std::string> base64_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=')
        in.remove_suffix(1);
    std::string out;
    out.reserve(in.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = val(c);
        if (v < 0) return std::nullopt;
        acc = acc << 6 | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>(acc >> bits & 0xff);
        }
    }
    return out;
}

/// An int64 field that the gateway may send as a string, a number, or omit (= 0).
inline std::int64_t get_i64(const json::object& o, std::string_view name) {
    auto it = o.find(name);
    if (it == o.end()) return 0;
    const auto& v = it->value();
    if (v.is_int64()) return v.get_int64();
    if (v.is_uint64()) return static_cast<std::int64_t>(v.get_uint64());
    if (v.is_string()) {
        const auto& s = v.get_string();
        std::int64_t r = 0;
        std::from_chars(s.data(), s.data() + s.size(), r);
        return r;
    }
    return 0;
}

inline bool get_bool(const json::object& o, std::string_view name) {
    auto it = o.find(name);
    return it != o.end() && it->value().is_bool() && it->value().get_bool();
}

inline std::string get_str(const json::object& o, std::string_view name) {
    auto it = o.find(name);
    if (it == o.end() || !it->value().is_string()) return {};
    return std::string(it->value().get_string());
}

inline const json::object* get_obj(const json::object& o, std::string_view name) {
    auto it = o.find(name);
    if (it == o.end() || !it->value().is_object()) return nullptr;
    return &it->value().get_object();
}

inline const json::array* get_arr(const json::object& o, std::string_view name) {
    auto it = o.find(name);
    if (it == o.end() || !it->value().is_array()) return nullptr;
    return &it->value().get_array();
}

/// A base64 field, decoded ("" when omitted, the gateway's encoding of an empty value).
inline std::string get_b64(const json::object& o, std::string_view name) {
    auto s = get_str(o, name);
    if (s.empty()) return {};
    auto d = base64_decode(s);
    return d ? std::move(*d) : std::string();
}

/// An etcd mvccpb.KeyValue as quorumreg's key_value (value still raw: maybe a manifest).
inline key_value kv_from_json(const json::object& o) {
    key_value kv;
    kv.key = get_b64(o, "key");
    kv.value = get_b64(o, "value");
    kv.create_revision = get_i64(o, "create_revision");
    kv.mod_revision = get_i64(o, "mod_revision");
    kv.version = get_i64(o, "version");
    kv.lease = get_i64(o, "lease");
    return kv;
}

/// The first key after every key starting with `prefix` ("\0" means "to the end" in etcd).
inline std::string prefix_end(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty()) {
        auto c = static_cast<unsigned char>(end.back());
        if (c < 0xff) {
            end.back() = static_cast<char>(c + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

/// 128 random bits as hex: the id of one chunked write.
inline std::string random_id() {
    static thread_local std::mt19937_64 gen{[] {
        std::random_device rd;
        std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd()};
        return std::mt19937_64(seq);
    }()};
    std::array<unsigned char, 16> b{};
    for (std::size_t i = 0; i < b.size(); i += 8) {
        auto v = gen();
        for (std::size_t k = 0; k < 8; ++k)
            b[i + k] = static_cast<unsigned char>(v >> (8 * k));
    }
    return hex_encode(b.data(), b.size());
}

// ---- chunked values --------------------------------------------------------------------------
//
// A value too large for one etcd request is stored as chunks under
//   <chunk_prefix><id>/<index, 8 decimal digits>
// and the user's key holds a manifest:
//   "\0\xffquorumreg-chunked-v1\n" "id=<id>\nsize=<bytes>\nchunks=<n>\nsha256=<hex>\n"
// Every stored value starting with the magic is a manifest: a small user value that happens to
// start with it is itself stored chunked, so reads are never ambiguous.

inline const std::string& manifest_magic() {
    static const std::string m("\0\xffquorumreg-chunked-v1\n", 23); // no terminating NUL
    return m;
}

struct manifest {
    std::string id;
    std::uint64_t size = 0;
    std::uint64_t chunks = 0;
    std::string sha256;
};

inline bool is_manifest(std::string_view v) { return v.starts_with(manifest_magic()); }

inline std::string encode_manifest(const manifest& m) {
    return manifest_magic() + "id=" + m.id + "\nsize=" + std::to_string(m.size) +
           "\nchunks=" + std::to_string(m.chunks) + "\nsha256=" + m.sha256 + "\n";
}

inline std::optional<manifest> parse_manifest(std::string_view v) {
    if (!is_manifest(v)) return std::nullopt;
    v.remove_prefix(manifest_magic().size());
    manifest m;
    int seen = 0;
    while (!v.empty()) {
        auto nl = v.find('\n');
        if (nl == std::string_view::npos) return std::nullopt;
        auto line = v.substr(0, nl);
        v.remove_prefix(nl + 1);
        auto eq = line.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        auto k = line.substr(0, eq), val = line.substr(eq + 1);
        auto num = [&](std::uint64_t& out) {
            auto r = std::from_chars(val.data(), val.data() + val.size(), out);
            return r.ec == std::errc() && r.ptr == val.data() + val.size();
        };
        if (k == "id") {
            m.id = std::string(val);
            seen |= 1;
        } else if (k == "size") {
            if (!num(m.size)) return std::nullopt;
            seen |= 2;
        } else if (k == "chunks") {
            if (!num(m.chunks)) return std::nullopt;
            seen |= 4;
        } else if (k == "sha256") {
            m.sha256 = std::string(val);
            seen |= 8;
        }
    }
    if (seen != 15 || m.id.empty()) return std::nullopt;
    return m;
}

inline std::string chunk_key(const std::string& chunk_prefix, const std::string& id, std::uint64_t index) {
    return chunk_prefix + id + "/" + fixed_decimal(index, 8);
}

} // namespace quorumreg::detail::etcd
