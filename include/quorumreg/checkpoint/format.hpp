// quorumreg — checkpoint on-store format: one generation of one subtree as a "QRCP" blob.
//
// Layout (v1): magic "QRCP", version u8, flags u8 (1 absent, 2 HMAC), resource, subtree,
// generation (varint), writer, time (ms, u64le), SHA-256 of the content (32 bytes), content
// (registry subtree encoding), [HMAC-SHA-256 under the cluster key over everything before it],
// CRC-32C of everything before it.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/crypto.hpp>
#include <quorumreg/error.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace quorumreg::detail {

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

} // namespace quorumreg::detail
