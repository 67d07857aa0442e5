// quorumreg — a store watch that outlives its streams (issue 15, defect 8).
//
// A store watch ends with an error when the history it would resume from was compacted, or
// when a resume fails; a watch can also stall without ending. A consumer that ignores either
// misses changes for good. resilient_watch subscribes again from the current revision after an
// error and then calls `resync`, so the consumer re-reads whatever the gap hid; with
// `resync_every` it also re-reads periodically, which bounds what a stalled stream can hide.
//
// Threading: events are delivered on the store's watch thread, `resync` on the keeper's own
// thread; they may overlap, so both must be safe to run concurrently (the consumers only
// set flags or update a locked cache). Destruction stops both before it returns.
#pragma once

#include <quorumreg/quorum_store.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace quorumreg::detail {

class resilient_watch {
public:
    using event_handler = std::function<void(const std::vector<watch_event>&)>;
    using clock = std::chrono::steady_clock;

    struct options {
        std::chrono::milliseconds retry{100};      ///< wait before subscribing again after a failure
        std::chrono::milliseconds resync_every{0}; ///< 0: re-read only after an error
        bool keep_trying = false;                  ///< a failed first subscription is retried, not reported
    };

    /// Subscribes at once; if that fails, `ec` is set and nothing started (unless keep_trying).
    resilient_watch(quorum_store& store, std::string prefix, event_handler on_events, std::function<void()> resync,
                    options o, std::error_code& ec)
        : store_(store), prefix_(std::move(prefix)), shared_(std::make_shared<shared>()), opts_(o),
          resync_(std::move(resync)) {
        shared_->on_events = std::move(on_events);
        sub_ = subscribe(ec);
        if (ec) {
            if (!opts_.keep_trying) return;
            ec.clear();
            shared_->ended = true; // the thread subscribes, then resyncs
        }
        thread_ = std::thread([this] { run(); });
    }
    resilient_watch(const resilient_watch&) = delete;
    resilient_watch& operator=(const resilient_watch&) = delete;
    ~resilient_watch() {
        {
            std::lock_guard lk(shared_->mu);
            shared_->stopping = true;
        }
        shared_->cv.notify_all();
        if (thread_.joinable()) thread_.join();
        sub_.reset();
    }

    /// Times the watch was subscribed again after it ended (for tests and metrics).
    std::size_t resubscriptions() const {
        std::lock_guard lk(shared_->mu);
        return shared_->resubscriptions;
    }

private:
    // What the store's callback may touch: it can outlive neither the subscription (reset
    // before this is destroyed) nor need `this`.
    struct shared {
        std::mutex mu;
        std::condition_variable cv;
        bool ended = false;
        bool stopping = false;
        std::size_t resubscriptions = 0;
        event_handler on_events;
    };

    subscription subscribe(std::error_code& ec) {
        std::weak_ptr<shared> weak = shared_;
        return store_.watch(
            prefix_, 0,
            [weak](const std::vector<watch_event>& evs, std::error_code wec) {
                auto s = weak.lock();
                if (!s) return;
                if (!wec) {
                    if (!evs.empty()) s->on_events(evs);
                    return;
                }
                std::lock_guard lk(s->mu);
                s->ended = true;
                s->cv.notify_all();
            },
            ec);
    }

    void run() {
        const bool periodic = opts_.resync_every.count() > 0;
        auto next_resync = clock::now() + opts_.resync_every;
        auto woken = [&] { return shared_->stopping || shared_->ended; };
        std::unique_lock lk(shared_->mu);
        while (!shared_->stopping) {
            if (periodic)
                shared_->cv.wait_until(lk, next_resync, woken);
            else
                shared_->cv.wait(lk, woken);
            if (shared_->stopping) return;
            if (shared_->ended) {
                lk.unlock();
                sub_.reset(); // not from the store's callback: it waits for that to return
                std::error_code ec;
                auto fresh = subscribe(ec); // from now; the resync below covers the gap
                lk.lock();
                if (ec) {
                    shared_->cv.wait_for(lk, opts_.retry, [&] { return shared_->stopping; });
                    continue;
                }
                sub_ = std::move(fresh);
                shared_->ended = false;
                ++shared_->resubscriptions;
            } else if (!periodic || clock::now() < next_resync) {
                continue;
            }
            lk.unlock();
            resync_();
            lk.lock();
            next_resync = clock::now() + opts_.resync_every;
        }
    }

    quorum_store& store_;
    std::string prefix_;
    std::shared_ptr<shared> shared_;
    options opts_;
    std::function<void()> resync_;
    subscription sub_; // owned by run() once the thread started
    std::thread thread_;
};

/// A subscription that owns a resilient_watch: resetting it stops the watch.
inline subscription make_subscription(std::unique_ptr<resilient_watch> w) {
    struct owning_state final : subscription_state_base {
        std::unique_ptr<resilient_watch> watch;
    };
    auto st = std::make_shared<owning_state>();
    st->watch = std::move(w);
    return subscription(std::move(st), {});
}

} // namespace quorumreg::detail
