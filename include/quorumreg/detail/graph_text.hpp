// The dependency-graph text format read by `qreg graph` (docs/qreg.md), shared by qreg and the
// fuzz target fuzz/fuzz_graph_text.cpp so both exercise the same parser.
//
// One statement per line; '#' starts a comment; blank lines are ignored:
//   a -> b            a requires b (b starts first; starting a pulls b in)
//   a -> (b | c)      a requires one of b, c (tried in that order)
//   a after b         order only: a starts after b when both start
//   a                 a service with no dependencies
// A name is any non-empty run of bytes without blanks, '(', ')' or '|'.
#pragma once

#include <quorumreg/dependency_graph.hpp>
#include <quorumreg/error.hpp>

#include <algorithm>
#include <istream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg::detail {

/// A parsed graph file. When a statement would close a cycle, parsing stops there: `cycle`
/// holds the cycle (as dependency_graph reports it) and `cycle_line`/`cycle_text` the statement;
/// `graph` holds everything before it.
///
/// @code
/// quorumreg::detail::graph_text gt;
/// std::string why;
/// std::istringstream in("web -> (db | replica)\ndb after log\n");
/// if (auto ec = quorumreg::detail::parse_graph_text(in, "services.txt", gt, why)) { /* why names the line */ }
/// auto order = gt.graph.start_order();
/// @endcode
struct graph_text {
    dependency_graph<std::string> graph;
    std::vector<std::string> cycle;
    int cycle_line = 0;
    std::string cycle_text;
};

/// `s` without leading and trailing blanks (space, tab, CR).
inline std::string graph_text_trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r");
    auto e = s.find_last_not_of(" \t\r");
    return b == std::string_view::npos ? std::string{} : std::string(s.substr(b, e - b + 1));
}

/// True if `s` can name a service in the text format.
inline bool graph_text_valid_name(std::string_view s) {
    return !s.empty() && std::none_of(s.begin(), s.end(),
                                      [](char c) { return c == ' ' || c == '\t' || c == '(' || c == ')' || c == '|'; });
}

/// Parses the text format from `in` into `out` (which should be empty). A malformed statement
/// fails with errc::invalid_argument and `why` = "<source>:<line>: <reason>: \"<statement>\"";
/// a cycle is not an error (see graph_text). Never throws for any input bytes.
inline std::error_code parse_graph_text(std::istream& in, std::string_view source, graph_text& out, std::string& why) {
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (auto h = line.find('#'); h != std::string::npos) line.erase(h);
        line = graph_text_trim(line);
        if (line.empty()) continue;
        auto bad = [&](const std::string& reason) {
            why = std::string(source) + ":" + std::to_string(n) + ": " + reason + ": \"" + line + "\"";
            return make_error_code(errc::invalid_argument);
        };
        std::error_code ec;
        std::vector<std::string> cyc;
        std::string lhs, rhs;
        bool order = false;
        if (auto p = line.find("->"); p != std::string::npos) {
            lhs = graph_text_trim(std::string_view(line).substr(0, p));
            rhs = graph_text_trim(std::string_view(line).substr(p + 2));
        } else if (auto q = line.find(" after "); q != std::string::npos) {
            lhs = graph_text_trim(std::string_view(line).substr(0, q));
            rhs = graph_text_trim(std::string_view(line).substr(q + 7));
            order = true;
        } else {
            if (!graph_text_valid_name(line))
                return bad("expected \"a -> b\", \"a -> (b | c)\", \"a after b\" or a name");
            out.graph.add_node(line);
            continue;
        }
        if (!graph_text_valid_name(lhs)) return bad("bad service name \"" + lhs + "\"");
        if (!order && rhs.size() >= 2 && rhs.front() == '(' && rhs.back() == ')') {
            std::vector<std::string> members;
            std::stringstream ss(rhs.substr(1, rhs.size() - 2));
            for (std::string m; std::getline(ss, m, '|');) {
                m = graph_text_trim(m);
                if (!graph_text_valid_name(m)) return bad("bad member \"" + m + "\" in OR-group");
                members.push_back(m);
            }
            if (members.size() != static_cast<std::size_t>(std::count(rhs.begin(), rhs.end(), '|')) + 1)
                return bad("empty member in OR-group");
            out.graph.add_any_of(lhs, members, ec, &cyc);
        } else {
            if (!graph_text_valid_name(rhs)) return bad("bad service name \"" + rhs + "\"");
            if (order)
                out.graph.add_order_after(lhs, rhs, ec, &cyc);
            else
                out.graph.add_dependency(lhs, rhs, ec, &cyc);
        }
        if (ec == errc::dependency_cycle) {
            out.cycle = std::move(cyc);
            out.cycle_line = n;
            out.cycle_text = line;
            return {};
        }
        if (ec) return bad(ec.message());
    }
    return {};
}

/// Parses the text format from a string (see the stream overload).
inline std::error_code parse_graph_text(std::string_view text, std::string_view source, graph_text& out,
                                        std::string& why) {
    std::istringstream in{std::string(text)};
    return parse_graph_text(in, source, out, why);
}

} // namespace quorumreg::detail
