// SHA-256 and HMAC-SHA-256 of in-memory bytes (OpenSSL libcrypto), and hex encoding.
#pragma once

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

/// Lower-case hex.
inline std::string hex_encode(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 0x0F]);
    }
    return out;
}
inline std::string hex_encode(const digest256& d) {
    return hex_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

/// Parses 64 hex digits (either case) into `out`; false for anything else.
inline bool hex_decode(std::string_view hex, digest256& out) noexcept {
    if (hex.size() != out.size() * 2) return false;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
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
