// Printing node ids for cycle messages and Graphviz output.
#pragma once

#include <quorumreg/graph_types.hpp>

#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

namespace quorumreg {

namespace detail {

/// Formats `id`; falls back to `#index` when the formatter produced nothing.
template <class Id> std::string format_id(const Id& id, std::size_t index) {
    std::string s = id_formatter<Id>{}(id);
    if (s.empty()) {
        s.assign(1, '#');
        s.append(std::to_string(index)); // append, not operator+: GCC 12 -Wrestrict false positive
    }
    return s;
}

/// Escapes a label for a double-quoted Graphviz string.
inline std::string dot_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': break;
        default: out += c;
        }
    }
    return out;
}

} // namespace detail
} // namespace quorumreg
