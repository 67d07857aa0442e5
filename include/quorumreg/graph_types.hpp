// The vocabulary of dependency_graph that users name: the two edge kinds, and the customisation
// point that prints a node id.
#pragma once

#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>

namespace quorumreg {

/// The two kinds of dependency edge. They are deliberately distinct names, because confusing
/// them is the most common mistake with systemd (`Requires=` vs `After=`):
enum class dependency_kind : std::uint8_t {
    /// "x requires y": starting x starts y first; x cannot be online while y is not (stopping
    /// y stops x first); a failure of y fails x. Members of an OR-group are of this kind.
    required = 0,
    /// "x is ordered after y": if both are starting, x waits until y has finished starting (and
    /// on stop, y waits for x). Never starts y, never stops or fails x because of y.
    ordered_after = 1,
};

/// Customisation point: how a dependency_graph prints an Id in error messages and DOT output.
/// The default uses `operator<<` when the Id has one, else prints `#<n>` (n = the node's
/// insertion number). Specialise it for your Id type to print something nicer:
/// @code
/// template <> struct quorumreg::id_formatter<my_id> {
///     std::string operator()(const my_id& id) const { return id.name; }
/// };
/// @endcode
template <class Id> struct id_formatter {
    /// The text for `id`, or "" to let the graph print `#<n>`.
    std::string operator()(const Id& id) const {
        if constexpr (requires(std::ostream & os, const Id& i) { os << i; }) {
            std::ostringstream os;
            os << id;
            return os.str();
        } else {
            return {};
        }
    }
};

} // namespace quorumreg
