// Random identifiers: store and hive identities, journal ids.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace quorumreg::detail {

/// 128 random bits as 32 hex digits.
inline std::string random_hex_id() {
    std::random_device rd; // getrandom() / /dev/urandom on Linux
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 4; ++i) {
        auto w = static_cast<std::uint32_t>(rd());
        for (int j = 0; j < 8; ++j)
            out.push_back(hex[(w >> (4 * j)) & 0xF]);
    }
    return out;
}

} // namespace quorumreg::detail
