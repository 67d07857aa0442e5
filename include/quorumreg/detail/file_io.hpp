// Helpers over quorumreg::file_io (<quorumreg/file_io.hpp>): whole-buffer reads and writes,
// atomic replacement, shared mappings, and the error text of a failed call.
#pragma once

#include <quorumreg/error.hpp>
#include <quorumreg/file_io.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#if defined(__linux__)
#include <sys/vfs.h>
#else
#include <sys/mount.h>
#include <sys/param.h>
#endif
#include <unistd.h>

namespace quorumreg::detail {

/// The spelling before file_io became public (kept so that code written against it compiles).
using file_io = quorumreg::file_io;

/// A shared mapping made through file_io::mmap_shared; unmapped on destruction.
class shared_mapping {
public:
    shared_mapping() = default;
    shared_mapping(void* addr, std::size_t len) noexcept : addr_(addr), len_(len) {}
    shared_mapping(shared_mapping&& o) noexcept : addr_(o.addr_), len_(o.len_) { o.addr_ = nullptr; }
    shared_mapping& operator=(shared_mapping&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = o.addr_;
            len_ = o.len_;
            o.addr_ = nullptr;
        }
        return *this;
    }
    shared_mapping(const shared_mapping&) = delete;
    shared_mapping& operator=(const shared_mapping&) = delete;
    ~shared_mapping() { reset(); }

    void* get() const noexcept { return addr_; }
    void reset() noexcept {
        if (addr_) ::munmap(addr_, len_);
        addr_ = nullptr;
    }

private:
    void* addr_ = nullptr;
    std::size_t len_ = 0;
};

/// An error_code for errno `e` plus a message "<what> <path>: <strerror>".
inline std::error_code io_failure(int e, std::string_view what, std::string_view path, std::string* why) {
    if (why) *why = std::string(what) + " " + std::string(path) + ": " + std::strerror(e);
    return from_errno(e);
}

/// Writes all of `n` bytes at `off`, retrying short writes and EINTR. False with errno set.
inline bool pwrite_all(file_io& io, int fd, const char* p, std::size_t n, off_t off) {
    while (n > 0) {
        ssize_t w = io.pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        off += w;
    }
    return true;
}

/// Reads up to `n` bytes at `off` (fewer only at end of file). -1 with errno set on failure.
inline ssize_t pread_all(file_io& io, int fd, char* p, std::size_t n, off_t off) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = io.pread(fd, p + got, n - got, off + static_cast<off_t>(got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(got);
}

/// Writes all of `data` at `off`, retrying short writes and EINTR.
inline std::error_code write_all(file_io& io, int fd, std::string_view data, off_t off, std::string_view path,
                                 std::string* why) {
    if (!pwrite_all(io, fd, data.data(), data.size(), off)) return io_failure(errno, "write", path, why);
    return {};
}

/// Reads up to `n` bytes at `off` (fewer only at end of file).
inline std::error_code read_at(file_io& io, int fd, std::string& out, std::size_t n, off_t off, std::string_view path,
                               std::string* why) {
    out.resize(n);
    auto got = pread_all(io, fd, out.data(), n, off);
    if (got < 0) {
        int e = errno;
        out.clear();
        return io_failure(e, "read", path, why);
    }
    out.resize(static_cast<std::size_t>(got));
    return {};
}

/// Atomically replaces `path` with `data`: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory. Either the old or the new content survives a crash.
/// *renamed (if given) tells whether the new file took `path`'s place, which matters to a
/// caller when only the directory fsync failed.
inline std::error_code atomic_replace(file_io& io, const std::string& dir, const std::string& name,
                                      std::string_view data, std::string* why, bool* renamed = nullptr) {
    if (renamed) *renamed = false;
    std::string path = dir + "/" + name;
    std::string tmp = path + ".tmp";
    int fd = io.open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) return io_failure(errno, "create", tmp, why);
    std::error_code ec = write_all(io, fd, data, 0, tmp, why);
    if (!ec && io.fsync(fd) != 0) ec = io_failure(errno, "fsync", tmp, why);
    io.close(fd);
    if (!ec && io.rename(tmp.c_str(), path.c_str()) != 0) ec = io_failure(errno, "rename", tmp, why);
    if (ec) {
        io.unlink(tmp.c_str());
        return ec;
    }
    if (renamed) *renamed = true;
    int dfd = io.open(dir.c_str(), O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0) return io_failure(errno, "open directory", dir, why);
    if (io.fsync(dfd) != 0) ec = io_failure(errno, "fsync directory", dir, why);
    io.close(dfd);
    return ec;
}

} // namespace quorumreg::detail
