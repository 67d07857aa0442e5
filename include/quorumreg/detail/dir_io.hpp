// The directory store's I/O seam: every system call that can fail on a full or broken disk
// goes through this table, so tests can make write/fsync/rename fail with ENOSPC or EIO and
// check that the store reports a clear error and stays consistent.
#pragma once

#include <cerrno>
#include <cstddef>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace quorumreg::detail {

/// POSIX calls used by directory_store. Each returns what the POSIX call returns and leaves
/// errno set on failure. Override any of them to inject faults.
class dir_io {
public:
    virtual ~dir_io() = default;
    virtual int open(const char* path, int flags, mode_t mode) { return ::open(path, flags | O_CLOEXEC, mode); }
    virtual int close(int fd) { return ::close(fd); }
    virtual ssize_t pread(int fd, void* buf, std::size_t n, off_t off) { return ::pread(fd, buf, n, off); }
    virtual ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) { return ::pwrite(fd, buf, n, off); }
    virtual int fsync(int fd) { return ::fsync(fd); }
    virtual int ftruncate(int fd, off_t len) { return ::ftruncate(fd, len); }
    virtual int rename(const char* from, const char* to) { return ::rename(from, to); }
    virtual int unlink(const char* path) { return ::unlink(path); }
    virtual int fstat(int fd, struct ::stat* st) { return ::fstat(fd, st); }
    virtual int stat(const char* path, struct ::stat* st) { return ::stat(path, st); }

    /// The process-wide POSIX implementation.
    static std::shared_ptr<dir_io> posix() {
        static const std::shared_ptr<dir_io> instance = std::make_shared<dir_io>();
        return instance;
    }
};

/// Writes all of `n` bytes at `off`, retrying short writes and EINTR. False with errno set.
inline bool dir_write_all(dir_io& io, int fd, const char* p, std::size_t n, off_t off) {
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
inline ssize_t dir_read_all(dir_io& io, int fd, char* p, std::size_t n, off_t off) {
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

} // namespace quorumreg::detail
