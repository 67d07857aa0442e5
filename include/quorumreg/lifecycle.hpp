// quorumreg::lifecycle_state: the one set of states of everything quorumreg starts, watches and
// restarts (a service_controller's services, a monitor_controller's resources), after WSFC's
// resource states. service_state and resource_state are names of this type.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
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

/// At most `threshold` automatic restarts within a sliding `period`; one more failure leaves
/// the service or resource failed. Defaults: WSFC's RestartThreshold 3 and RestartPeriod
/// 900000 ms. service_options::restart and monitor_controller_options::restart take one.
struct restart_policy {
    unsigned threshold = 3;                           ///< automatic restarts allowed per period
    std::chrono::milliseconds period{15 * 60 * 1000}; ///< the sliding window
};

/// The automatic restarts of one service or resource inside its policy's sliding window: a
/// restart exactly `period` ago is outside it. Not thread-safe (its owner's lock guards it).
template <class TimePoint> class restart_window {
public:
    /// Forgets restarts that left the window by `now`; returns how many are left in it.
    std::size_t trim(TimePoint now, std::chrono::milliseconds period) {
        while (!times_.empty() && now - times_.front() >= period)
            times_.pop_front();
        return times_.size();
    }
    /// Whether `policy` allows one more restart at `now`; if so, it is counted.
    bool try_restart(TimePoint now, const restart_policy& policy) {
        if (trim(now, policy.period) >= policy.threshold) return false;
        times_.push_back(now);
        return true;
    }
    /// Restarts in the window, as of the last trim.
    std::size_t size() const noexcept { return times_.size(); }
    /// Forgets every restart (a fresh start by the user).
    void clear() noexcept { times_.clear(); }

private:
    std::deque<TimePoint> times_;
};

} // namespace quorumreg
