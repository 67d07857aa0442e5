// quorumreg::subscription: the RAII handle every watch and observer returns.
//
// Contract: destroying (or reset()) a subscription waits until its callback is not running on
// another thread; it may be destroyed from inside its own callback.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace quorumreg {

namespace detail {

struct subscription_state_base {
    std::mutex mu;
    std::condition_variable idle;
    bool active = true;
    std::thread::id running{}; // thread currently running the callback, if any

    virtual ~subscription_state_base() = default;

    void cancel() {
        std::unique_lock lk(mu);
        active = false;
        idle.wait(lk, [&] { return running == std::thread::id{} || running == std::this_thread::get_id(); });
    }
};

struct hub_base {
    virtual ~hub_base() = default;
    virtual void remove(const subscription_state_base* s) noexcept = 0;
};

} // namespace detail

/// RAII handle of a watch or observer: the callback stops when it is destroyed or reset.
/// Movable, not copyable.
class subscription {
public:
    /// An empty handle (active() is false).
    subscription() = default;
    /// Made by the watch or observer that owns the callback; not for users to call.
    subscription(std::shared_ptr<detail::subscription_state_base> s, std::weak_ptr<detail::hub_base> hub)
        : state_(std::move(s)), hub_(std::move(hub)) {}
    /// Takes over `o`'s callback; `o` becomes empty.
    subscription(subscription&&) noexcept = default;
    /// Stops this handle's callback (as reset()), then takes over `o`'s.
    subscription& operator=(subscription&& o) noexcept {
        if (this != &o) {
            reset();
            state_ = std::move(o.state_);
            hub_ = std::move(o.hub_);
        }
        return *this;
    }
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { reset(); }

    /// Stops the callback; after return it is not running and will not run again
    /// (unless reset() is called from inside the callback itself).
    void reset() noexcept {
        if (!state_) return;
        state_->cancel();
        if (auto hub = hub_.lock()) hub->remove(state_.get());
        state_.reset();
        hub_.reset();
    }
    /// Whether the handle still holds a callback (false after reset() or a move).
    bool active() const noexcept { return state_ != nullptr; }
    /// active().
    explicit operator bool() const noexcept { return active(); }

private:
    std::shared_ptr<detail::subscription_state_base> state_;
    std::weak_ptr<detail::hub_base> hub_;
};

} // namespace quorumreg
