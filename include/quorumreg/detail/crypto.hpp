// SHA-256 and HMAC-SHA-256 of in-memory bytes (OpenSSL libcrypto); hex is detail/text.hpp.
#pragma once

#include <quorumreg/detail/text.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace quorumreg::detail {

using digest256 = std::array<std::uint8_t, 32>;

inline digest256 sha256(std::string_view data) {
    digest256 out{};
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

inline digest256 hmac_sha256(std::string_view key, std::string_view data) {
    digest256 out{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
         data.size(), out.data(), &len);
    return out;
}

/// Lower-case hex of a digest.
inline std::string hex_encode(const digest256& d) { return hex_encode(d.data(), d.size()); }

/// SHA-256 of `data` as 64 lower-case hex digits.
inline std::string sha256_hex(std::string_view data) { return hex_encode(sha256(data)); }

/// Parses 64 hex digits (either case) into `out`; false for anything else.
inline bool hex_decode(std::string_view hex, digest256& out) noexcept {
    if (hex.size() != out.size() * 2) return false;
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return true;
}

/// Constant-time comparison of two digests (for MACs).
inline bool digest_equal(const digest256& a, const digest256& b) noexcept {
    unsigned diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff |= static_cast<unsigned>(a[i] ^ b[i]);
    return diff == 0;
}

} // namespace quorumreg::detail
