// Controller <-> monitor messages and the kernel-mediated channel that carries them.
//
// Each monitor gets one AF_UNIX SOCK_SEQPACKET socketpair, created by the controller before it
// spawns the monitor (the monitor's end becomes its fd 3; every descriptor is close-on-exec
// otherwise). Nothing the monitor writes is shared memory the controller parses: every frame is
// copied by the kernel into a controller-owned buffer, carries a length prefix that must equal
// the datagram's size (at most monitor_max_frame bytes), and is decoded by decode_monitor_msg,
// which checks every field and never throws. A monitor that sends anything malformed is killed
// and blamed (errc::monitor_protocol_violation).
//
// The "executing now" board (blame after a crash) is a sealed memfd the controller creates
// (fd 4 in the monitor): F_SEAL_SHRINK|F_SEAL_GROW, so the monitor cannot truncate it under the
// controller's mapping (no SIGBUS), and the controller treats every slot as an untrusted number
// it only compares with its own request ids. No /dev/shm names exist.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/error.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg::detail {

inline constexpr std::size_t monitor_max_frame = 8192;              ///< bytes per frame, prefix included
inline constexpr std::size_t monitor_max_parameters = 3000;         ///< resource parameter string limit
inline constexpr std::size_t monitor_max_control = 1024;            ///< control input/output limit
inline constexpr std::size_t monitor_max_text = 2048;               ///< a reply's message text limit
inline constexpr std::size_t monitor_board_slots = 4096;            ///< "executing now" slots (one per worker)
inline constexpr std::uint32_t monitor_protocol_magic = 0x514D4F32; // "QMO2"
inline constexpr int monitor_channel_fd = 3;                        ///< the channel's descriptor inside a monitor
inline constexpr int monitor_board_fd = 4;                          ///< the board's descriptor inside a monitor

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
    control = 10, ///< code = control code, b = input bytes; the reply's b = output bytes
    // monitor -> controller
    reply = 32, ///< code = errc value (0: success), flag = health result, a = message (UTF-8)
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

/// Overwrites a buffer's bytes before it is freed or reused (parameters and control payloads
/// must not linger in freed heap memory).
inline void wipe(std::string& s) noexcept {
    if (!s.empty()) {
        volatile char* p = s.data();
        for (std::size_t i = 0; i < s.size(); ++i)
            p[i] = 0;
    }
    s.clear();
}
inline void wipe(monitor_msg& m) noexcept {
    wipe(m.a);
    wipe(m.b);
    wipe(m.c);
}

/// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF)
/// without NUL bytes.
inline bool valid_utf8_text(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c == 0) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (s.size() - i - 1 < n) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

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

/// Error codes a monitor may put in a reply (exactly those monitor_host produces).
inline bool monitor_reply_code_allowed(std::int32_t code) noexcept {
    switch (static_cast<errc>(code)) {
    case errc::ok:
    case errc::invalid_argument:
    case errc::not_found:
    case errc::plugin_missing:
    case errc::plugin_load_failed:
    case errc::plugin_hash_mismatch:
    case errc::plugin_type_mismatch:
    case errc::plugin_not_allowed:
    case errc::resource_failed: return true;
    default: return false;
    }
}

/// The frame payload (without the length prefix).
inline std::string encode_monitor_msg(const monitor_msg& m) {
    std::string out;
    out.reserve(64 + m.a.size() + m.b.size() + m.c.size()); // no regrowth: no stray copies to wipe
    byte_writer w(out);
    w.u32le(monitor_protocol_magic);
    w.u8(static_cast<std::uint8_t>(m.kind));
    w.varint(m.req);
    w.varint(m.res);
    w.u32le(static_cast<std::uint32_t>(m.code));
    w.u8(m.flag ? 1 : 0);
    // Strings are clipped so a message always fits a frame; the only long ones are error texts
    // (clipping is harmless) — requests are validated before.
    auto clip = [](const std::string& s) { return std::string_view(s).substr(0, 1300); };
    w.str(m.kind == monitor_msg_kind::reply ? std::string_view(m.a).substr(0, monitor_max_text) : clip(m.a));
    w.str(m.kind == monitor_msg_kind::control || m.kind == monitor_msg_kind::reply
              ? std::string_view(m.b).substr(0, monitor_max_control)
              : clip(m.b));
    w.str(m.kind == monitor_msg_kind::open ? std::string_view(m.c).substr(0, monitor_max_parameters) : clip(m.c));
    return out;
}

/// Who sent the bytes being decoded: each side accepts only the other side's message kinds.
enum class monitor_peer : std::uint8_t { controller, monitor };

/// Decodes one frame payload sent by `from`. Returns nullptr on success, else what is wrong
/// (a static string). Checks every field: magic, kind (and direction), ids, code, flag,
/// string lengths, UTF-8 of a reply's text, no trailing bytes. Never throws, never reads past
/// `in`.
inline const char* decode_monitor_msg(std::string_view in, monitor_msg& m, monitor_peer from) noexcept {
    byte_reader r(in);
    if (r.u32le() != monitor_protocol_magic || !r.ok()) return "bad magic";
    auto k = r.u8();
    bool from_monitor = from == monitor_peer::monitor;
    bool known = from_monitor ? (k == 32 || k == 33) : (k >= 1 && k <= 10);
    if (!r.ok() || !known) return "bad message kind";
    m.kind = static_cast<monitor_msg_kind>(k);
    m.req = r.varint();
    m.res = r.varint();
    m.code = static_cast<std::int32_t>(r.u32le());
    auto flag = r.u8();
    auto a = r.str();
    auto b = r.str();
    auto c = r.str();
    if (!r.ok()) return "truncated message";
    if (r.remaining() != 0) return "trailing bytes";
    if (flag > 1) return "bad flag";
    m.flag = flag != 0;
    if (from_monitor) {
        if (m.kind == monitor_msg_kind::heartbeat) {
            if (m.req || m.res || m.code || m.flag || !a.empty() || !b.empty() || !c.empty())
                return "heartbeat with content";
        } else {
            if (m.req == 0) return "reply without a request id";
            if (!monitor_reply_code_allowed(m.code)) return "reply with an unknown error code";
            if (a.size() > monitor_max_text || b.size() > monitor_max_control || !c.empty())
                return "reply field too long";
            if (!valid_utf8_text(a)) return "reply text is not UTF-8";
        }
    } else {
        if (m.req == 0) return "request without an id";
        if (a.size() > 1300 || b.size() > 1300 || c.size() > monitor_max_parameters) return "request field too long";
    }
    try {
        m.a.assign(a);
        m.b.assign(b);
        m.c.assign(c);
    } catch (...) {
        return "out of memory";
    }
    return nullptr;
}

/// Outcome of one non-blocking channel operation.
enum class channel_io : std::uint8_t {
    done,      ///< one frame sent / received
    again,     ///< would block: nothing (more) now
    closed,    ///< the peer closed its end (or is gone)
    violation, ///< the peer sent something that is not a frame (what() says why)
};

/// One end of a monitor's channel (socket) plus the board, as seen from one side.
class monitor_channel {
public:
    /// Controller side: a socketpair and a sealed board memfd, all close-on-exec and kept at
    /// descriptors >= 10 (so the spawn's dup2 onto 3 and 4 never collides with a source).
    static std::unique_ptr<monitor_channel> create(std::error_code& ec) {
        ec.clear();
        auto c = std::unique_ptr<monitor_channel>(new monitor_channel());
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            ec = std::error_code(errno, std::generic_category());
            return nullptr;
        }
        c->fd_ = high_fd(sv[0]);
        c->peer_fd_ = high_fd(sv[1]);
        int b = ::memfd_create("quorumreg-monitor-board", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (c->fd_ < 0 || c->peer_fd_ < 0 || b < 0) {
            ec = std::error_code(errno, std::generic_category());
            if (b >= 0) ::close(b);
            return nullptr;
        }
        c->board_fd_ = high_fd(b);
        if (c->board_fd_ < 0 || ::fchmod(c->board_fd_, 0600) != 0 ||
            ::ftruncate(c->board_fd_, static_cast<off_t>(board_bytes)) != 0 ||
            ::fcntl(c->board_fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 || !c->map_board()) {
            ec = std::error_code(errno ? errno : EIO, std::generic_category());
            return nullptr;
        }
        c->set_nonblocking();
        return c;
    }
    /// Monitor side: adopts the inherited descriptors. Returns null if they are not what the
    /// controller creates (a seqpacket socket and a sealed board of the right size).
    static std::unique_ptr<monitor_channel> adopt(int sock, int board) {
        auto c = std::unique_ptr<monitor_channel>(new monitor_channel());
        int type = 0;
        socklen_t len = sizeof type;
        if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) return nullptr;
        c->fd_ = sock;
        c->board_fd_ = board;
        struct stat st {};
        if (::fstat(board, &st) != 0 || static_cast<std::size_t>(st.st_size) < board_bytes || !c->map_board())
            return nullptr;
        ::fcntl(sock, F_SETFD, FD_CLOEXEC); // plugin child processes must not inherit it
        ::fcntl(board, F_SETFD, FD_CLOEXEC);
        c->set_nonblocking();
        return c;
    }

    ~monitor_channel() {
        if (board_) ::munmap(static_cast<void*>(board_), board_bytes);
        for (int fd : {fd_, peer_fd_, board_fd_})
            if (fd >= 0) ::close(fd);
        wipe(buf_);
    }
    monitor_channel(const monitor_channel&) = delete;
    monitor_channel& operator=(const monitor_channel&) = delete;

    int fd() const noexcept { return fd_; }
    /// Controller side, until close_peer(): the monitor's end of the socket and the board.
    int peer_fd() const noexcept { return peer_fd_; }
    int board_fd() const noexcept { return board_fd_; }
    /// The child has its copies: the controller keeps only its own end (so a dead monitor's
    /// end closes and the controller sees EOF).
    void close_peer() noexcept {
        if (peer_fd_ >= 0) ::close(peer_fd_);
        peer_fd_ = -1;
    }
    /// Why the last receive was a violation.
    const char* what() const noexcept { return what_; }

    /// Sends one frame (length prefix + payload) without blocking.
    channel_io send(std::string_view payload) {
        if (payload.size() + 4 > monitor_max_frame) {
            what_ = "frame too large";
            return channel_io::violation;
        }
        std::string frame;
        frame.reserve(payload.size() + 4);
        auto n = static_cast<std::uint32_t>(payload.size());
        for (int i = 0; i < 4; ++i)
            frame.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
        frame.append(payload);
        while (true) {
            ssize_t w = ::send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w >= 0) {
                wipe(frame);
                return channel_io::done;
            }
            if (errno == EINTR) continue;
            wipe(frame);
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return channel_io::again;
            return channel_io::closed;
        }
    }
    /// Receives one frame without blocking; on done, `payload` views an internal buffer that
    /// the next call overwrites (and wipes).
    channel_io receive(std::string_view& payload) {
        buf_.resize(monitor_max_frame + 1);
        // The previous frame (parameters, control payloads) does not linger until overwritten.
        volatile char* old = buf_.data();
        for (std::size_t i = 0; i < last_size_; ++i)
            old[i] = 0;
        last_size_ = 0;
        while (true) {
            ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return channel_io::again;
                return channel_io::closed;
            }
            if (n == 0) return channel_io::closed; // EOF (an empty datagram is no frame either)
            auto size = static_cast<std::size_t>(n);
            last_size_ = std::min(size, buf_.size());
            if (size > monitor_max_frame) return bad("frame longer than the maximum");
            if (size < 4) return bad("frame shorter than its length prefix");
            std::uint32_t len = 0;
            for (int i = 0; i < 4; ++i)
                len |= std::uint32_t(static_cast<unsigned char>(buf_[static_cast<std::size_t>(i)])) << (8 * i);
            if (len > monitor_max_frame - 4) return bad("length prefix above the maximum");
            if (len != size - 4) return bad("length prefix does not match the frame (truncated frame)");
            payload = std::string_view(buf_.data() + 4, len);
            return channel_io::done;
        }
    }

    /// The "executing now" board: slot i holds the id of the request worker i is running inside
    /// plugin code (0: none). Written by the monitor, so to the controller every value is just
    /// an untrusted number that it matches against its own request ids.
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
    static constexpr std::size_t board_bytes = monitor_board_slots * sizeof(std::uint64_t);
    monitor_channel() = default;
    static int high_fd(int fd) noexcept {
        if (fd < 0) return fd;
        int h = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
        int e = errno;
        ::close(fd);
        errno = e;
        return h;
    }
    void set_nonblocking() noexcept {
        int fl = ::fcntl(fd_, F_GETFL);
        if (fl >= 0) ::fcntl(fd_, F_SETFL, fl | O_NONBLOCK);
    }
    bool map_board() noexcept {
        static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "board slots must be address-free atomics");
        void* p = ::mmap(nullptr, board_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, board_fd_, 0);
        if (p == MAP_FAILED) return false;
        board_ = static_cast<std::atomic<std::uint64_t>*>(p);
        return true;
    }
    channel_io bad(const char* why) noexcept {
        what_ = why;
        return channel_io::violation;
    }
    int fd_ = -1, peer_fd_ = -1, board_fd_ = -1;
    std::atomic<std::uint64_t>* board_ = nullptr;
    std::string buf_;
    std::size_t last_size_ = 0;
    const char* what_ = "";
};

} // namespace quorumreg::detail
