// quorumreg — the per-resource checkpoint agent: while a resource is online here, it watches
// the resource's subtrees and registrations and writes changed subtrees through to the store
// (coalesced, in commit order, each batch all or nothing). Its `ownership` keeps the lease
// alive on threads of its own, so a slow write never delays a keep-alive (defect 7).
//
// Threading: one worker thread per agent runs every store write; hive and store watch
// callbacks and the ownership's on_lost only set flags under `mu` and notify `cv`. The manager starts the agent once
// (start()) and stops it once (stop(), which joins the worker); other threads only set
// requests and wait on `cv` under `mu` (flush()).
#pragma once

#include <quorumreg/detail/checkpoint_io.hpp>
#include <quorumreg/detail/resilient_watch.hpp>
#include <quorumreg/ownership.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace quorumreg::detail {

template <class Hive> class checkpoint_agent : public std::enable_shared_from_this<checkpoint_agent<Hive>> {
public:
    using clock = std::chrono::steady_clock;

    checkpoint_agent(checkpoint_io<Hive>& io, std::string resource) : name(std::move(resource)), io_(io) {}
    checkpoint_agent(const checkpoint_agent&) = delete;
    checkpoint_agent& operator=(const checkpoint_agent&) = delete;

    // Set before start(); afterwards owned by the worker (subtrees, watches) or read-only
    // (name, lease, token, own).
    std::string name;
    lease_id lease = 0;
    store_revision token = 0;
    std::vector<checkpoint_subtree> subtrees;

    // Guarded by mu.
    std::mutex mu;
    std::condition_variable cv;
    bool dirty = false;
    bool flush_requested = false;
    std::uint64_t flush_target = 0; // hive revision the newest flush() waits for
    bool stopping = false;
    bool rescan_requested = false; // registrations changed
    clock::time_point first_dirty{};
    std::uint64_t written_rev = 0;
    std::error_code failure; // sticky (fenced)
    std::string failure_why;

    /// Ownership ended without release() (on_lost, on the ownership's watchdog thread): every
    /// later write and flush fails with errc::fenced.
    void lost(std::error_code why) {
        std::lock_guard lk(mu);
        if (!failure) {
            failure = errc::fenced;
            failure_why = why == errc::lease_expired
                              ? "ownership lease expired"
                              : "ownership lost: no keep-alive succeeded before the local deadline";
        }
        cv.notify_all();
    }

    /// Subscribes to the subtrees and registrations and starts the worker.
    void start() {
        for (auto& s : subtrees)
            watches_.push_back(watch_subtree(s.path));
        std::weak_ptr<checkpoint_agent> weak = this->shared_from_this();
        auto rescan = [weak] {
            if (auto s = weak.lock()) {
                std::lock_guard lk(s->mu);
                s->rescan_requested = true;
                s->cv.notify_all();
            }
        };
        // Registrations made on other nodes reach this owner through the watch; a watch the
        // store ended is resubscribed and followed by a rescan, and the periodic rescan bounds
        // what a stalled one can hide (defect 8).
        resilient_watch::options wo;
        wo.retry = io_.opts.retry_interval;
        wo.resync_every = io_.opts.registration_resync;
        wo.keep_trying = true; // an unreachable store now must not leave the owner deaf for good
        std::error_code ec;
        registration_watch_ = std::make_unique<resilient_watch>(
            io_.store, io_.layout.subtrees_prefix(name), [rescan](const std::vector<watch_event>&) { rescan(); },
            rescan, wo, ec);
        worker_ = std::thread([self = this->shared_from_this()] { self->run(); });
    }

    /// Stops the worker (joined) and drops the subscriptions.
    void stop() {
        {
            std::lock_guard lk(mu);
            stopping = true;
        }
        cv.notify_all();
        if (worker_.joinable()) worker_.join(); // the worker owns watches during rescans
        watches_.clear();
        registration_watch_.reset();
    }

    /// Waits until the hive revision `target` is written through (or the agent failed).
    void flush(std::uint64_t target, std::chrono::milliseconds timeout, std::error_code& ec, std::string& why) {
        std::unique_lock lk(mu);
        flush_target = std::max(flush_target, target);
        flush_requested = true;
        cv.notify_all();
        bool done = cv.wait_for(lk, timeout, [&] { return failure || written_rev >= target; });
        if (failure) {
            ec = failure;
            why = failure_why;
        } else if (!done) {
            ec = errc::deadline_exceeded;
            why = "changes not yet durable in the store";
        }
    }

    /// Asks the worker to pick up changed registrations and write through.
    void request_rescan(bool and_flush) {
        std::lock_guard lk(mu);
        rescan_requested = true;
        if (and_flush) flush_requested = true;
        cv.notify_all();
    }

private:
    subscription watch_subtree(const std::string& path) {
        std::weak_ptr<checkpoint_agent> weak = this->shared_from_this();
        return io_.hive.watch(path, watch_scope::subtree, [weak](const change_event&) {
            if (auto s = weak.lock()) {
                std::lock_guard lk(s->mu);
                if (!s->dirty) {
                    s->dirty = true;
                    s->first_dirty = clock::now();
                }
                s->cv.notify_all();
            }
        });
    }

    /// Picks up subtrees registered (or removed) while online.
    void rescan() {
        std::error_code ec;
        auto regs = io_.store.list(io_.layout.subtrees_prefix(name), ec);
        if (ec) return;
        std::vector<checkpoint_subtree> next;
        std::vector<subscription> watches;
        for (auto& kv : regs) {
            checkpoint_subtree s;
            std::string w;
            if (io_.make_subtree(kv.value, s, w)) continue;
            bool known = false;
            for (auto& o : subtrees)
                if (o.canonical == s.canonical) {
                    next.push_back(o);
                    known = true;
                }
            if (!known) {
                io_.read_pointer(name, s, ec);
                s.hash = {}; // unknown: force a first write from this node's copy
                s.absent = false;
                next.push_back(std::move(s));
            }
        }
        for (auto& s : next)
            watches.push_back(watch_subtree(s.path));
        subtrees = std::move(next);
        watches_ = std::move(watches);
    }

    void run() {
        const auto& opts = io_.opts;
        std::unique_lock lk(mu);
        while (!stopping) {
            auto due = dirty ? first_dirty + opts.coalesce_delay : clock::time_point::max();
            if (!flush_requested && !rescan_requested) {
                if (due == clock::time_point::max())
                    cv.wait(lk);
                else
                    cv.wait_until(lk, due);
            }
            if (stopping) break;
            bool write_now = flush_requested || rescan_requested || (dirty && clock::now() >= due);
            if (!write_now || failure) {
                if (failure) flush_requested = false;
                continue;
            }
            bool do_rescan = rescan_requested;
            rescan_requested = false;
            dirty = false;
            lk.unlock();
            if (do_rescan) rescan();
            std::string why;
            auto ec = write_through(why);
            lk.lock();
            if (ec == errc::fenced) {
                failure = ec;
                failure_why = why;
            } else if (ec) {
                // Transient: keep it dirty and retry shortly.
                if (!dirty) {
                    dirty = true;
                    first_dirty = clock::now() - opts.coalesce_delay + opts.retry_interval;
                }
            } else if (written_rev >= flush_target) {
                // Only a pass that reached the target answers the request: one that started
                // before flush() asked read an older hive and must be followed by another.
                flush_requested = false;
            }
            cv.notify_all();
        }
    }

    /// Checkpoints every subtree whose content changed, as one batch (all or nothing, defect
    /// 5); records progress in written_rev.
    std::error_code write_through(std::string& why) {
        std::vector<checkpoint_subtree*> ptrs;
        for (auto& s : subtrees)
            ptrs.push_back(&s);
        std::vector<checkpoint_local_copy> local;
        auto rev = io_.read_local(ptrs, local);
        transaction meta;
        if (manifest_left_) {
            // Our previous batch failed after its commit point: finish it before the next one.
            std::vector<store_revision> mods;
            std::error_code ec;
            auto done = io_.complete_manifest(name, token, mods, ec, why);
            if (ec) return ec;
            manifest_left_ = false;
            for (std::size_t k = 0; k < done.size(); ++k)
                for (auto& s : subtrees)
                    if (s.esc == done[k].esc) {
                        s.generation = done[k].generation;
                        s.latest_mod = mods[k];
                        s.hash = done[k].hash;
                        s.absent = done[k].absent;
                        io_.add_meta_ops(meta, name, s, s.hash);
                    }
        }
        std::vector<checkpoint_write> batch;
        for (std::size_t i = 0; i < ptrs.size(); ++i) {
            auto& s = *ptrs[i];
            if (local[i].hash == s.hash && local[i].exists == !s.absent) continue;
            batch.push_back({&s, local[i].exists, &local[i].content});
        }
        if (auto ec = io_.write_batch(name, token, batch, manifest_left_, why)) return ec;
        for (auto& w : batch)
            io_.add_meta_ops(meta, name, *w.subtree, w.subtree->hash);
        if (!meta.empty()) {
            std::error_code ec;
            io_.hive.commit(meta, ec);
            if (ec) {
                why = "record checkpoint in the local hive";
                return ec;
            }
        }
        std::lock_guard lk(mu);
        written_rev = std::max(written_rev, rev);
        return {};
    }

    checkpoint_io<Hive>& io_;
    std::vector<subscription> watches_;
    std::unique_ptr<resilient_watch> registration_watch_;
    bool manifest_left_ = false; // worker-owned: a batch of ours awaits complete_manifest()
    std::thread worker_;

public:
    /// The resource's ownership. Declared last: destroyed (its threads joined) before the
    /// members its on_lost touches.
    std::unique_ptr<ownership> own;
};

} // namespace quorumreg::detail
