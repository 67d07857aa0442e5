// quorumreg::lifecycle_state: the one set of states of everything quorumreg starts, watches and
// restarts (a service_controller's services, a monitor_controller's resources), after WSFC's
// resource states. service_state and resource_state are names of this type.
#pragma once

#include <cstdint>
#include <ostream>
#include <string_view>

namespace quorumreg {

/// Where a service or resource is in its life.
enum class lifecycle_state : std::uint8_t {
    offline,         ///< not running (the initial state)
    online_pending,  ///< being started
    online,          ///< running
    offline_pending, ///< being stopped
    failed,          ///< stopped by a failure (restart policy exhausted, or a dependency failed)
};

/// "offline", "online_pending", "online", "offline_pending", "failed".
constexpr std::string_view to_string(lifecycle_state s) noexcept {
    switch (s) {
    case lifecycle_state::offline: return "offline";
    case lifecycle_state::online_pending: return "online_pending";
    case lifecycle_state::online: return "online";
    case lifecycle_state::offline_pending: return "offline_pending";
    case lifecycle_state::failed: return "failed";
    }
    return "unknown";
}

/// Writes to_string(s).
inline std::ostream& operator<<(std::ostream& os, lifecycle_state s) { return os << to_string(s); }

/// Whether `s` is one of the two transitional states.
constexpr bool is_pending(lifecycle_state s) noexcept {
    return s == lifecycle_state::online_pending || s == lifecycle_state::offline_pending;
}

} // namespace quorumreg
