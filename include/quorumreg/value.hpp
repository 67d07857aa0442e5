// quorumreg — typed registry values (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD,
// REG_QWORD, REG_BINARY).
#pragma once

#include <quorumreg/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace quorumreg {

/// The type of a value. Numbers match the Windows REG_* constants so exported data reads
/// naturally to people who know them.
enum class value_type : std::uint8_t {
    string = 1,        ///< REG_SZ: text
    expand_string = 2, ///< REG_EXPAND_SZ: text with %VAR% references, stored unexpanded
    binary = 3,        ///< REG_BINARY: arbitrary bytes
    dword = 4,         ///< REG_DWORD: 32-bit unsigned
    multi_string = 7,  ///< REG_MULTI_SZ: list of strings
    qword = 11,        ///< REG_QWORD: 64-bit unsigned
};

/// Human name of a value type ("string", "expand_string", ...).
constexpr std::string_view to_string(value_type t) noexcept {
    switch (t) {
    case value_type::string: return "string";
    case value_type::expand_string: return "expand_string";
    case value_type::binary: return "binary";
    case value_type::dword: return "dword";
    case value_type::multi_string: return "multi_string";
    case value_type::qword: return "qword";
    }
    return "unknown";
}

/// True if `t` is one of the six defined types (used when decoding untrusted bytes).
constexpr bool is_valid(value_type t) noexcept { return to_string(t) != "unknown"; }

/// A typed value. Cheap to move; compare with ==.
///
/// @code
/// auto v = quorumreg::value::dword(8080);
/// v.as_dword();            // 8080
/// v.as_string();           // throws quorumreg::error(errc::type_mismatch)
/// @endcode
class value {
public:
    using bytes = std::vector<std::uint8_t>;  ///< REG_BINARY's payload
    using strings = std::vector<std::string>; ///< REG_MULTI_SZ's payload

    /// An empty REG_SZ.
    value() = default;

    /// A REG_SZ.
    static value string(std::string s) { return value(value_type::string, std::move(s)); }
    /// A REG_EXPAND_SZ (stored as given; nothing is expanded).
    static value expand_string(std::string s) { return value(value_type::expand_string, std::move(s)); }
    /// A REG_MULTI_SZ.
    static value multi_string(strings s) { return value(value_type::multi_string, std::move(s)); }
    /// A REG_DWORD.
    static value dword(std::uint32_t v) { return value(value_type::dword, v); }
    /// A REG_QWORD.
    static value qword(std::uint64_t v) { return value(value_type::qword, v); }
    /// A REG_BINARY.
    static value binary(bytes b) { return value(value_type::binary, std::move(b)); }
    /// A REG_BINARY of the bytes of `b`.
    static value binary(std::string_view b) { return value(value_type::binary, bytes(b.begin(), b.end())); }

    /// Which of the six types it holds.
    value_type type() const noexcept { return type_; }

    /// Text of a string or expand_string value.
    const std::string& as_string() const { return get<std::string>("string"); }
    /// Strings of a multi_string value. The as_ accessors throw errc::type_mismatch for
    /// another type.
    const strings& as_multi_string() const { return get<strings>("multi_string"); }
    /// A dword value.
    std::uint32_t as_dword() const { return get<std::uint32_t>("dword"); }
    /// A qword value.
    std::uint64_t as_qword() const { return get<std::uint64_t>("qword"); }
    /// Bytes of a binary value.
    const bytes& as_binary() const { return get<bytes>("binary"); }

    /// as_string(), or on a type mismatch errc::type_mismatch in `ec` and an empty result (as
    /// are the other `ec` accessors).
    std::string as_string(std::error_code& ec) const { return get_or<std::string>(ec); }
    /// as_multi_string(), errors in `ec`.
    strings as_multi_string(std::error_code& ec) const { return get_or<strings>(ec); }
    /// as_dword(), errors in `ec`.
    std::uint32_t as_dword(std::error_code& ec) const { return get_or<std::uint32_t>(ec); }
    /// as_qword(), errors in `ec`.
    std::uint64_t as_qword(std::error_code& ec) const { return get_or<std::uint64_t>(ec); }
    /// as_binary(), errors in `ec`.
    bytes as_binary(std::error_code& ec) const { return get_or<bytes>(ec); }

    /// Payload size in bytes, the measure the per-value size limit applies to
    /// (a multi_string counts one terminator byte per element, as REG_MULTI_SZ does).
    std::size_t size() const noexcept {
        switch (type_) {
        case value_type::string:
        case value_type::expand_string: return std::get<std::string>(data_).size();
        case value_type::multi_string: {
            std::size_t n = 0;
            for (auto& s : std::get<strings>(data_))
                n += s.size() + 1;
            return n;
        }
        case value_type::dword: return 4;
        case value_type::qword: return 8;
        case value_type::binary: return std::get<bytes>(data_).size();
        }
        return 0;
    }

    /// Same type and same payload.
    friend bool operator==(const value& a, const value& b) noexcept { return a.type_ == b.type_ && a.data_ == b.data_; }

private:
    using storage = std::variant<std::string, strings, std::uint32_t, std::uint64_t, bytes>;
    template <class T> value(value_type t, T&& v) : type_(t), data_(std::forward<T>(v)) {}

    template <class T> const T& get(const char* wanted) const {
        if (auto p = std::get_if<T>(&data_)) return *p;
        throw error(errc::type_mismatch,
                    std::string("value read as ") + wanted + " but holds " + std::string(to_string(type_)));
    }
    template <class T> T get_or(std::error_code& ec) const {
        if (auto p = std::get_if<T>(&data_)) {
            ec.clear();
            return *p;
        }
        ec = errc::type_mismatch;
        return T{};
    }

    value_type type_ = value_type::string;
    storage data_{std::string{}};
};

} // namespace quorumreg
