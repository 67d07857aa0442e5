// Clocks for the service controller: the real steady clock, and a fake one that tests advance
// by hand so that restart windows and pending timeouts are deterministic.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace quorumreg {

/// The time source of a service_controller (restart windows, pending timeouts).
/// Implementations must be thread-safe.
///
/// @code
/// auto clock = std::make_shared<quorumreg::fake_service_clock>();
/// quorumreg::service_controller ctl({.threads = 2, .clock = clock});
/// clock->advance(std::chrono::minutes(16)); // the restart window has passed
/// @endcode
class service_clock {
public:
    using duration = std::chrono::steady_clock::duration;     ///< steady_clock's
    using time_point = std::chrono::steady_clock::time_point; ///< steady_clock's

    virtual ~service_clock() = default;
    /// The current time; never goes backwards.
    virtual time_point now() const = 0;
    /// Registers `fn` to run whenever the time jumps (a fake clock being advanced), so that a
    /// waiting controller re-checks its deadlines at once. Returns a token for unsubscribe().
    /// A real clock never jumps: the default does nothing.
    virtual std::uint64_t
    subscribe(std::function<void()> fn) { // NOLINT(performance-unnecessary-value-param): overriders keep it
        (void)fn;
        return 0;
    }
    /// Stops calling the function registered under `token` (0 or unknown: nothing happens).
    virtual void unsubscribe(std::uint64_t token) noexcept { (void)token; }
};

/// std::chrono::steady_clock.
class steady_service_clock final : public service_clock {
public:
    /// std::chrono::steady_clock::now().
    time_point now() const override { return std::chrono::steady_clock::now(); }
};

/// A clock that only moves when advance() is called.
///
/// @code
/// quorumreg::fake_service_clock clock;
/// auto t0 = clock.now();
/// clock.advance(std::chrono::seconds(5));   // clock.now() == t0 + 5s
/// @endcode
class fake_service_clock final : public service_clock {
public:
    /// Starts at an arbitrary fixed point (one day after the epoch of steady_clock).
    fake_service_clock() : now_(time_point{} + std::chrono::hours(24)) {}

    /// The time the last advance() set.
    time_point now() const override {
        std::lock_guard lk(mu_);
        return now_;
    }
    /// Moves time forward by `d` and wakes every subscriber.
    void advance(duration d) {
        std::map<std::uint64_t, std::function<void()>> subs;
        {
            std::lock_guard lk(mu_);
            now_ += d;
            subs = subs_;
        }
        for (auto& [token, fn] : subs)
            fn();
    }
    /// `fn` runs after every advance(), outside the clock's lock.
    std::uint64_t subscribe(std::function<void()> fn) override {
        std::lock_guard lk(mu_);
        subs_.emplace(++next_, std::move(fn));
        return next_;
    }
    /// After return, the function of `token` is not called by later advance() calls.
    void unsubscribe(std::uint64_t token) noexcept override {
        std::lock_guard lk(mu_);
        subs_.erase(token);
    }

private:
    mutable std::mutex mu_;
    time_point now_;
    std::map<std::uint64_t, std::function<void()>> subs_;
    std::uint64_t next_ = 0;
};

} // namespace quorumreg
