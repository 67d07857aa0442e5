// Store-key-safe escaping of names chosen by users (resources, subtrees, cluster keys).
#pragma once

#include <string>
#include <string_view>

namespace quorumreg::detail {

/// Store-key-safe encoding: bytes outside [A-Za-z0-9._-] become %XX, so a name can never
/// introduce a '/' level or escape the resource's prefix.
inline std::string key_escape(std::string_view s) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-')
            out.push_back(static_cast<char>(c));
        else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
    return out;
}

} // namespace quorumreg::detail
