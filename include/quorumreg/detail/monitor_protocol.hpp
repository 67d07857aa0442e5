// Controller <-> monitor messages and the Boost.Interprocess queue pair that carries them.
//
// Each monitor gets its own pair of message queues (controller-to-monitor and
// monitor-to-controller), created by the controller before it spawns the monitor and removed
// when that monitor is gone. Both sides use only try_send/try_receive, polling with a short
// adaptive sleep: process-shared condition variables are never waited on, because a process
// killed while waiting on one (kill -9 of a monitor is an expected event here) can leave it in
// a state that blocks the surviving side forever. The queue mutex itself is held only for a
// memcpy; the controller additionally does all queue I/O on a per-monitor thread that it can
// abandon, so even that tiny window cannot stall the controller.
#pragma once

#include <quorumreg/detail/codec.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace quorumreg::detail {

inline constexpr std::size_t monitor_max_message = 4096;            ///< bytes per queue message
inline constexpr std::size_t monitor_queue_capacity = 512;          ///< messages per queue
inline constexpr std::size_t monitor_max_parameters = 3000;         ///< resource parameter string limit
inline constexpr std::size_t monitor_max_control = 1024;            ///< control input/output limit
inline constexpr std::size_t monitor_board_slots = 4096;            ///< "executing now" slots (one per worker)
inline constexpr std::uint32_t monitor_protocol_magic = 0x514D4F31; // "QMO1"

enum class monitor_msg_kind : std::uint8_t {
    // controller -> monitor
    load_type = 1, ///< a = type name, b = library path, c = expected SHA-256
    open = 2,      ///< a = type name, b = resource name, c = parameters
    close = 3,
    online = 4,
    offline = 5,
    terminate = 6,
    looks_alive = 7,
    is_alive = 8,
    shutdown = 9,
    control = 10, ///< code = control code, b = input bytes; the reply's a = output bytes
    // monitor -> controller
    reply = 32, ///< code = errc value (0: success), flag = health result, a = message
    heartbeat = 33,
};

/// One message. `req` matches a reply to its request; `res` names the resource (0: none).
struct monitor_msg {
    monitor_msg_kind kind = monitor_msg_kind::heartbeat;
    std::uint64_t req = 0;
    std::uint64_t res = 0;
    std::int32_t code = 0;
    bool flag = false;
    std::string a, b, c;
};

inline const char* monitor_msg_name(monitor_msg_kind k) noexcept {
    switch (k) {
    case monitor_msg_kind::load_type: return "load_type";
    case monitor_msg_kind::open: return "open";
    case monitor_msg_kind::close: return "close";
    case monitor_msg_kind::online: return "online";
    case monitor_msg_kind::offline: return "offline";
    case monitor_msg_kind::terminate: return "terminate";
    case monitor_msg_kind::looks_alive: return "looks_alive";
    case monitor_msg_kind::is_alive: return "is_alive";
    case monitor_msg_kind::shutdown: return "shutdown";
    case monitor_msg_kind::control: return "control";
    case monitor_msg_kind::reply: return "reply";
    case monitor_msg_kind::heartbeat: return "heartbeat";
    }
    return "unknown";
}

inline std::string encode_monitor_msg(const monitor_msg& m) {
    std::string out;
    byte_writer w(out);
    w.u32le(monitor_protocol_magic);
    w.u8(static_cast<std::uint8_t>(m.kind));
    w.varint(m.req);
    w.varint(m.res);
    w.u32le(static_cast<std::uint32_t>(m.code));
    w.u8(m.flag ? 1 : 0);
    // Strings are clipped so a message always fits the queue's fixed slot size; the only
    // long ones are error texts (clipping is harmless) — requests are validated before.
    auto clip = [](const std::string& s) { return std::string_view(s).substr(0, 1300); };
    w.str(clip(m.a));
    w.str(clip(m.b));
    w.str(m.kind == monitor_msg_kind::open ? std::string_view(m.c).substr(0, monitor_max_parameters) : clip(m.c));
    return out;
}

inline bool decode_monitor_msg(std::string_view in, monitor_msg& m) {
    byte_reader r(in);
    if (r.u32le() != monitor_protocol_magic) return false;
    m.kind = static_cast<monitor_msg_kind>(r.u8());
    m.req = r.varint();
    m.res = r.varint();
    m.code = static_cast<std::int32_t>(r.u32le());
    m.flag = r.u8() != 0;
    m.a = std::string(r.str());
    m.b = std::string(r.str());
    m.c = std::string(r.str());
    return r.ok() && r.remaining() == 0;
}

/// One direction-pair of queues as seen from one side.
class monitor_channel {
public:
    using queue = boost::interprocess::message_queue;

    /// Controller side: creates both queues (removing stale ones of the same name first).
    static std::unique_ptr<monitor_channel> create(const std::string& base) {
        auto c = std::unique_ptr<monitor_channel>(new monitor_channel());
        c->base_ = base;
        queue::remove((base + ".c2m").c_str());
        queue::remove((base + ".m2c").c_str());
        boost::interprocess::shared_memory_object::remove((base + ".board").c_str());
        c->owner_ = true; // from here on, the destructor removes what was created
        c->out_ = std::make_unique<queue>(boost::interprocess::create_only, (base + ".c2m").c_str(),
                                          monitor_queue_capacity, monitor_max_message);
        c->in_ = std::make_unique<queue>(boost::interprocess::create_only, (base + ".m2c").c_str(),
                                         monitor_queue_capacity, monitor_max_message);
        boost::interprocess::shared_memory_object shm(boost::interprocess::create_only, (base + ".board").c_str(),
                                                      boost::interprocess::read_write);
        shm.truncate(static_cast<boost::interprocess::offset_t>(monitor_board_slots * sizeof(std::uint64_t)));
        c->map_board(shm);
        return c;
    }
    /// Monitor side: opens the queues the controller created.
    static std::unique_ptr<monitor_channel> open(const std::string& base) {
        auto c = std::unique_ptr<monitor_channel>(new monitor_channel());
        c->base_ = base;
        c->in_ = std::make_unique<queue>(boost::interprocess::open_only, (base + ".c2m").c_str());
        c->out_ = std::make_unique<queue>(boost::interprocess::open_only, (base + ".m2c").c_str());
        boost::interprocess::shared_memory_object shm(boost::interprocess::open_only, (base + ".board").c_str(),
                                                      boost::interprocess::read_write);
        c->map_board(shm);
        return c;
    }
    /// A fresh, unique queue-pair name for this process.
    static std::string unique_base() {
        static std::atomic<std::uint64_t> counter{0};
        std::random_device rd;
        return "qrmon." + std::to_string(::getpid()) + "." + std::to_string(++counter) + "." +
               std::to_string(rd() & 0xFFFFFF);
    }

    ~monitor_channel() {
        in_.reset();
        out_.reset();
        if (owner_) {
            queue::remove((base_ + ".c2m").c_str());
            queue::remove((base_ + ".m2c").c_str());
            boost::interprocess::shared_memory_object::remove((base_ + ".board").c_str());
        }
    }
    monitor_channel(const monitor_channel&) = delete;
    monitor_channel& operator=(const monitor_channel&) = delete;

    const std::string& base() const noexcept { return base_; }

    /// Non-blocking send; false if the queue is full (retry later).
    bool try_send(const std::string& bytes) { return out_->try_send(bytes.data(), bytes.size(), 0); }
    /// Non-blocking receive of one well-formed message; false if none is waiting.
    bool try_receive(monitor_msg& m) {
        while (true) {
            queue::size_type n = 0;
            unsigned prio = 0;
            if (!in_->try_receive(buf_, sizeof buf_, n, prio)) return false;
            if (decode_monitor_msg(std::string_view(buf_, n), m)) return true;
            // A malformed message is dropped: the peer is a program of ours, so this only
            // happens on version skew, and the request's deadline then reports it.
        }
    }

    /// The "executing now" board: slot i holds the id of the request worker i is running inside
    /// plugin code (0: none). It lives in memory the controller owns, so after a crash the
    /// controller can tell exactly which call was running — blame goes to the plugin that crashed,
    /// not to bystanders whose calls merely happened to be in flight.
    std::atomic<std::uint64_t>* board_slot(std::size_t i) noexcept {
        return i < monitor_board_slots ? board_ + i : nullptr;
    }
    /// Request ids currently marked as executing.
    std::vector<std::uint64_t> executing() const {
        std::vector<std::uint64_t> out;
        for (std::size_t i = 0; i < monitor_board_slots; ++i)
            if (auto v = board_[i].load(std::memory_order_acquire)) out.push_back(v);
        return out;
    }

private:
    monitor_channel() = default;
    void map_board(boost::interprocess::shared_memory_object& shm) {
        static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "board slots must be address-free atomics");
        region_ = boost::interprocess::mapped_region(shm, boost::interprocess::read_write);
        if (region_.get_size() < monitor_board_slots * sizeof(std::uint64_t))
            throw std::runtime_error("monitor board too small");
        board_ = static_cast<std::atomic<std::uint64_t>*>(region_.get_address());
    }
    boost::interprocess::mapped_region region_;
    std::atomic<std::uint64_t>* board_ = nullptr;
    std::string base_;
    std::unique_ptr<queue> in_, out_;
    bool owner_ = false;
    char buf_[monitor_max_message];
};

} // namespace quorumreg::detail
