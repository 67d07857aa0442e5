// A seam over the POSIX file calls that persistence code makes, so tests can make any call
// site fail (ENOSPC, EIO, EACCES) and check that the caller reports it and stays consistent.
#pragma once

#include <quorumreg/error.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg::detail {

/// The calls persistence code makes. The default implementation forwards to POSIX; each
/// returns what POSIX returns and sets errno the same way.
class file_io {
public:
    virtual ~file_io() = default;

    virtual int open(const char* path, int flags, mode_t mode) { return ::open(path, flags | O_CLOEXEC, mode); }
    virtual int close(int fd) { return ::close(fd); }
    virtual ssize_t pread(int fd, void* buf, std::size_t n, off_t off) { return ::pread(fd, buf, n, off); }
    virtual ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) { return ::pwrite(fd, buf, n, off); }
    virtual int fdatasync(int fd) { return ::fdatasync(fd); }
    virtual int fsync(int fd) { return ::fsync(fd); }
    virtual int ftruncate(int fd, off_t len) { return ::ftruncate(fd, len); }
    virtual int rename(const char* from, const char* to) { return ::rename(from, to); }
    virtual int unlink(const char* path) { return ::unlink(path); }
    virtual int mkdir(const char* path, mode_t mode) { return ::mkdir(path, mode); }

    /// The process-wide POSIX implementation.
    static file_io& system() noexcept {
        static file_io io;
        return io;
    }
};

/// An error_code for errno `e` plus a message "<what> <path>: <strerror>".
inline std::error_code io_failure(int e, std::string_view what, std::string_view path, std::string* why) {
    if (why) *why = std::string(what) + " " + std::string(path) + ": " + std::strerror(e);
    return from_errno(e);
}

/// Writes all of `data` at `off`, retrying short writes and EINTR.
inline std::error_code write_all(file_io& io, int fd, std::string_view data, off_t off, std::string_view path,
                                 std::string* why) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = io.pwrite(fd, data.data() + done, data.size() - done, off + static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_failure(errno, "write", path, why);
        }
        if (n == 0) return io_failure(EIO, "write", path, why);
        done += static_cast<std::size_t>(n);
    }
    return {};
}

/// Reads up to `n` bytes at `off` (fewer only at end of file).
inline std::error_code read_at(file_io& io, int fd, std::string& out, std::size_t n, off_t off, std::string_view path,
                               std::string* why) {
    out.resize(n);
    std::size_t done = 0;
    while (done < n) {
        ssize_t r = io.pread(fd, out.data() + done, n - done, off + static_cast<off_t>(done));
        if (r < 0) {
            if (errno == EINTR) continue;
            out.clear();
            return io_failure(errno, "read", path, why);
        }
        if (r == 0) break;
        done += static_cast<std::size_t>(r);
    }
    out.resize(done);
    return {};
}

/// Atomically replaces `path` with `data`: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory. Either the old or the new content survives a crash.
inline std::error_code atomic_replace(file_io& io, const std::string& dir, const std::string& name,
                                      std::string_view data, std::string* why) {
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
    int dfd = io.open(dir.c_str(), O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0) return io_failure(errno, "open directory", dir, why);
    if (io.fsync(dfd) != 0) ec = io_failure(errno, "fsync directory", dir, why);
    io.close(dfd);
    return ec;
}

} // namespace quorumreg::detail
