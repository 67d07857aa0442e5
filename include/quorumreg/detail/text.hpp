// The small text utilities every component needs, written once: hex encoding, random hex ids,
// ASCII case folding and fixed-width decimal numbers. No dependencies beyond the standard
// library, so that the lightest headers (quorum_store.hpp) can use them; SHA-256 is in
// detail/crypto.hpp (OpenSSL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace quorumreg::detail {

/// Writes the lower-case hex of `n` bytes to `out` (2 * n chars, no terminator). For buffers
/// that must not be copied through a std::string (sealing keys).
inline void hex_encode_into(char* out, const unsigned char* bytes, std::size_t n) noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0F];
    }
}

/// Lower-case hex of `n` bytes.
inline std::string hex_encode(const unsigned char* bytes, std::size_t n) {
    std::string out(2 * n, '\0');
    hex_encode_into(out.data(), bytes, n);
    return out;
}
/// Lower-case hex of a byte string.
inline std::string hex_encode(std::string_view bytes) {
    return hex_encode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

/// The value of one hex digit (either case), or -1.
constexpr int hex_digit_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// 128 bits from std::random_device (getrandom() on Linux) as 32 lower-case hex digits: the
/// identity of a new store, hive or writer. Not for secrets (sealing.hpp uses RAND_bytes).
inline std::string random_hex_id() {
    std::random_device rd;
    unsigned char b[16];
    for (std::size_t i = 0; i < sizeof b; i += 4) {
        auto w = static_cast<std::uint32_t>(rd());
        for (std::size_t k = 0; k < 4; ++k)
            b[i + k] = static_cast<unsigned char>(w >> (8 * k));
    }
    return hex_encode(b, sizeof b);
}

/// Appends `in` with ASCII upper case folded to lower case; bytes >= 0x80 (UTF-8) unchanged, so
/// the result is locale-independent and the same on every node.
inline void ascii_fold(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size());
    for (char c : in)
        out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
}
/// `in` with ASCII upper case folded to lower case.
inline std::string ascii_folded(std::string_view in) {
    std::string out;
    ascii_fold(in, out);
    return out;
}

/// `n` in decimal, zero-padded to `width` digits (wider numbers are not cut), so that the
/// byte order of keys is their numeric order: generations, journal sequences, chunk indexes.
inline std::string fixed_decimal(std::uint64_t n, std::size_t width = 20) {
    std::string digits = std::to_string(n);
    if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
    return digits;
}

} // namespace quorumreg::detail
