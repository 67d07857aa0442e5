// The event log: every failure and state change the library handles, with a stable numeric
// id that monitoring keys on (as WSFC's 1069 "resource failed" or 1146 "RHS terminated").
//
//   quorumreg::event_log events({.node = "node1", .file = "/var/log/app/quorumreg.jsonl"});
//   auto sub = events.subscribe([](const quorumreg::event& e) { syslog(...); });
//   quorumreg::hive_options o;
//   o.events = &events;                       // the hive reports into it
//
// - Ids are documented in docs/events.md and never reused: an id keeps its meaning forever; an
//   event that is retired keeps its number reserved.
// - Delivery: emit() calls every subscriber synchronously on the emitting thread, outside the
//   log's lock (a subscriber may emit or unsubscribe), then appends one JSON line to the file,
//   if one is configured, with a single write() on an O_APPEND descriptor (lines of several
//   processes sharing the file do not interleave). The file is created (0600) only when a path
//   is given. A subscriber that throws, or a failed write, is counted (dropped()), never
//   propagated: reporting a failure must not cause one.
// - Threading: every member is thread-safe.
#pragma once

#include <quorumreg/error.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace quorumreg {

enum class event_severity { info, warning, error, critical };

/// Stable event ids (docs/events.md). Ranges: 1000 hive, 1100 checkpoints and ownership,
/// 1200 services, 1300 resources and monitors, 1400 quorum stores.
enum class event_id : std::uint32_t {
    hive_torn_tail_cut = 1001,     ///< an unacknowledged torn journal tail was cut at open
    hive_write_failed = 1002,      ///< a group-commit frame could not be written or synced; its commits failed
    hive_compaction_failed = 1003, ///< a snapshot could not be written; the journal was kept
    hive_broken = 1004,            ///< a failed write could not be undone; the hive refuses writes until reopened
};

/// The registered name and severity of one event id.
struct event_info {
    std::string_view name;   ///< stable, e.g. "hive_torn_tail_cut"
    event_severity severity; ///< the default severity
};

/// The name and default severity of an id; {"unknown", error} for a number not in the catalog.
inline event_info describe(event_id id) noexcept {
    switch (id) {
    case event_id::hive_torn_tail_cut: return {"hive_torn_tail_cut", event_severity::warning};
    case event_id::hive_write_failed: return {"hive_write_failed", event_severity::error};
    case event_id::hive_compaction_failed: return {"hive_compaction_failed", event_severity::warning};
    case event_id::hive_broken: return {"hive_broken", event_severity::critical};
    }
    return {"unknown", event_severity::error};
}

inline std::string_view to_string(event_severity s) noexcept {
    switch (s) {
    case event_severity::info: return "info";
    case event_severity::warning: return "warning";
    case event_severity::error: return "error";
    case event_severity::critical: return "critical";
    }
    return "error";
}

/// One logged event.
struct event {
    event_id id{};                                  ///< stable across releases (docs/events.md)
    event_severity severity = event_severity::info; ///< info, warning or error
    std::chrono::system_clock::time_point time{};   ///< set by the log when default
    std::string node;                               ///< set by the log when empty
    std::string resource;                           ///< the resource, hive or store the event is about (may be empty)
    std::string service;                            ///< the service the event is about (may be empty)
    std::string message;                            ///< for people; the id is what programs key on
};

namespace detail {

/// JSON string content: quotes, backslashes and control characters escaped; invalid UTF-8
/// bytes become U+FFFD so every line is valid JSON whatever a path or message holds.
inline void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
            ++i;
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
            ++i;
        } else if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
        } else {
            std::size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
            bool ok = n != 0 && i + n <= s.size();
            for (std::size_t k = 1; ok && k < n; ++k)
                ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
            if (ok && n == 3) { // no overlongs, no surrogates
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
            }
            if (ok && n == 4) {
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
            }
            if (ok) {
                out.append(s.substr(i, n));
                i += n;
            } else {
                out += "\xEF\xBF\xBD";
                ++i;
            }
        }
    }
    out += '"';
}

} // namespace detail

/// One event as a JSON object on one line (no trailing newline):
/// {"time":"2026-12-01T20:45:00.123Z","id":1001,"name":"hive_torn_tail_cut","severity":"warning",
///  "node":"n1","resource":"/var/lib/app/hive","service":"","message":"..."}
inline std::string to_json(const event& e) {
    using namespace std::chrono;
    std::string out = "{\"time\":\"";
    auto ms = duration_cast<milliseconds>(e.time.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    if (ms < 0 && ms % 1000) --secs;
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    out += buf;
    std::snprintf(buf, sizeof buf, ".%03dZ\"", static_cast<int>(((ms % 1000) + 1000) % 1000));
    out += buf;
    out += ",\"id\":" + std::to_string(static_cast<std::uint32_t>(e.id));
    out += ",\"name\":";
    detail::append_json_string(out, describe(e.id).name);
    out += ",\"severity\":";
    detail::append_json_string(out, to_string(e.severity));
    for (auto [k, v] : {std::pair<const char*, const std::string*>{"node", &e.node},
                        {"resource", &e.resource},
                        {"service", &e.service},
                        {"message", &e.message}}) {
        out += ",\"";
        out += k;
        out += "\":";
        detail::append_json_string(out, *v);
    }
    out += '}';
    return out;
}

/// Settings of an event_log.
struct event_log_options {
    std::string node{};           ///< stamped on events that name no node
    std::filesystem::path file{}; ///< JSON-lines file to append to (created 0600); empty: none
};

/// The structured event log: stable ids, a bounded in-memory ring, an optional JSON-lines file
/// and live subscribers (docs/events.md).
class event_log {
public:
    using callback = std::function<void(const event&)>; ///< see subscribe()

    /// Opens (creating if needed) the JSON-lines file when one is given; throws quorumreg::error
    /// (io_error, access_denied) when it cannot.
    explicit event_log(event_log_options opts = {}) : opts_(std::move(opts)) {
        if (!opts_.file.empty()) {
            fd_ = ::open(opts_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
            if (fd_ < 0) {
                int e = errno;
                throw error(make_error_code(e == EACCES || e == EPERM ? errc::access_denied : errc::io_error),
                            "open event log \"" + opts_.file.string() + "\": " + std::generic_category().message(e));
            }
        }
    }
    event_log(const event_log&) = delete;
    event_log& operator=(const event_log&) = delete;
    ~event_log() {
        if (fd_ >= 0) ::close(fd_);
    }

    /// Calls `cb` for every later event until unsubscribe(id).
    std::uint64_t subscribe(callback cb) {
        std::lock_guard lk(mu_);
        subs_.emplace(++next_, std::make_shared<callback>(std::move(cb)));
        return next_;
    }
    /// After return, subscriber `id` is not called again.
    void unsubscribe(std::uint64_t id) {
        std::lock_guard lk(mu_);
        subs_.erase(id);
    }

    /// Stamps time (when unset) and node (when empty), then delivers.
    void emit(event e) noexcept {
        try {
            if (e.time == std::chrono::system_clock::time_point{}) e.time = std::chrono::system_clock::now();
            if (e.node.empty()) e.node = opts_.node;
            std::vector<std::shared_ptr<callback>> subs;
            {
                std::lock_guard lk(mu_);
                for (const auto& [id, cb] : subs_)
                    subs.push_back(cb);
            }
            for (const auto& cb : subs) {
                try {
                    (*cb)(e);
                } catch (...) {
                    dropped_.fetch_add(1, std::memory_order_relaxed);
                }
            }
            if (fd_ >= 0) {
                auto line = to_json(e) + "\n";
                if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
                    dropped_.fetch_add(1, std::memory_order_relaxed);
                }
            }
            emitted_.fetch_add(1, std::memory_order_relaxed);
        } catch (...) { // std::bad_alloc while building the event
            dropped_.fetch_add(1, std::memory_order_relaxed);
        }
    }

    /// The usual call: id, subject and message; severity from the catalog.
    void emit(event_id id, std::string resource, std::string message, std::string service = {}) noexcept {
        try {
            event e;
            e.id = id;
            e.severity = describe(id).severity;
            e.resource = std::move(resource);
            e.service = std::move(service);
            e.message = std::move(message);
            emit(std::move(e));
        } catch (...) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
        }
    }

    /// Events emitted so far.
    std::uint64_t emitted() const noexcept { return emitted_.load(std::memory_order_relaxed); }
    /// Deliveries that failed (a throwing subscriber, a short write).
    std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

private:
    event_log_options opts_;
    int fd_ = -1;
    std::mutex mu_;
    std::map<std::uint64_t, std::shared_ptr<callback>> subs_;
    std::uint64_t next_ = 0;
    std::atomic<std::uint64_t> emitted_{0};
    std::atomic<std::uint64_t> dropped_{0};
};

} // namespace quorumreg
