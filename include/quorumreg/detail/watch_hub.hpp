// A registry of callbacks that delivers events outside any lock the callback could need.
//
// Contract: deliver() may be called from any thread; callbacks of one subscription never run
// concurrently with each other; destroying a subscription waits until its callback is not
// running on another thread (it may be destroyed from inside its own callback).
#pragma once

#include <quorumreg/subscription.hpp>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace quorumreg {

namespace detail {

/// Holds subscriptions with a per-subscription filter; owned through a shared_ptr so that
/// subscriptions outliving the hub are harmless.
template <class Event, class Filter>
class watch_hub final : public hub_base, public std::enable_shared_from_this<watch_hub<Event, Filter>> {
public:
    using callback = std::function<void(const Event&)>;

    struct state : subscription_state_base {
        Filter filter;
        callback cb;
        state(Filter f, callback c) : filter(std::move(f)), cb(std::move(c)) {}
    };

    subscription subscribe(Filter f, callback cb) {
        auto s = std::make_shared<state>(std::move(f), std::move(cb));
        {
            std::lock_guard lk(mu_);
            subs_.push_back(s);
        }
        return subscription(s, this->weak_from_this());
    }

    void remove(const subscription_state_base* s) noexcept override {
        std::lock_guard lk(mu_);
        std::erase_if(subs_, [&](const auto& p) { return p.get() == s; });
    }

    bool empty() const {
        std::lock_guard lk(mu_);
        return subs_.empty();
    }

    /// Delivers one event to every subscription whose filter(event) is true.
    template <class Match> void deliver(const Event& ev, Match&& match) {
        std::vector<std::shared_ptr<state>> snapshot;
        {
            std::lock_guard lk(mu_);
            snapshot = subs_;
        }
        for (auto& s : snapshot) {
            if (!match(s->filter, ev)) continue;
            {
                std::unique_lock lk(s->mu);
                // Serialize callbacks of one subscription; a re-entrant delivery on the same
                // thread (a callback that commits) is delivered inline.
                s->idle.wait(lk, [&] {
                    return !s->active || s->running == std::thread::id{} || s->running == std::this_thread::get_id();
                });
                if (!s->active) continue;
                if (s->running == std::this_thread::get_id()) {
                    lk.unlock();
                    s->cb(ev);
                    continue;
                }
                s->running = std::this_thread::get_id();
            }
            try {
                s->cb(ev);
            } catch (...) {
                // A throwing callback must not break delivery to others; it is the
                // subscriber's bug, and swallowing keeps the registry consistent.
            }
            {
                std::lock_guard lk(s->mu);
                s->running = std::thread::id{};
            }
            s->idle.notify_all();
        }
    }

private:
    mutable std::mutex mu_;
    std::vector<std::shared_ptr<state>> subs_;
};

} // namespace detail
} // namespace quorumreg
