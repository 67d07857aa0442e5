// quorumreg::file_io: the one seam over the POSIX file calls that persistence code makes (the
// hive, the directory store and its lock), so tests can make any call site fail (ENOSPC, EIO,
// EACCES) and check that the caller reports it and stays consistent. tests/test_fault.cpp
// enumerates the call sites through it; docs/reliability.md describes the fault model.
#pragma once

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

namespace quorumreg {

/// The calls persistence code makes. The default implementation forwards to POSIX; each
/// returns what POSIX returns and sets errno the same way. Override any of them to inject
/// faults (keep forwarding to the base class for the calls you do not fail).
///
/// @code
/// struct full_disk : quorumreg::file_io {
///     ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
///         errno = ENOSPC;
///         return -1;
///     }
/// };
/// full_disk io;
/// quorumreg::hive_options o;
/// o.io = &io; // every journal append now fails with ENOSPC
/// @endcode
class file_io {
public:
    virtual ~file_io() = default;

    /// POSIX `open()`, with O_CLOEXEC added.
    virtual int open(const char* path, int flags, mode_t mode) { return ::open(path, flags | O_CLOEXEC, mode); }
    /// POSIX `close()`.
    virtual int close(int fd) { return ::close(fd); }
    /// POSIX `pread()`.
    virtual ssize_t pread(int fd, void* buf, std::size_t n, off_t off) { return ::pread(fd, buf, n, off); }
    /// POSIX `pwrite()`.
    virtual ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) { return ::pwrite(fd, buf, n, off); }
    /// POSIX `fdatasync()`.
    virtual int fdatasync(int fd) { return ::fdatasync(fd); }
    /// POSIX `fsync()`.
    virtual int fsync(int fd) { return ::fsync(fd); }
    /// POSIX `ftruncate()`.
    virtual int ftruncate(int fd, off_t len) { return ::ftruncate(fd, len); }
    /// POSIX `rename()`.
    virtual int rename(const char* from, const char* to) { return ::rename(from, to); }
    /// POSIX `unlink()`.
    virtual int unlink(const char* path) { return ::unlink(path); }
    /// POSIX `mkdir()`.
    virtual int mkdir(const char* path, mode_t mode) { return ::mkdir(path, mode); }
    /// POSIX `fstat()`.
    virtual int fstat(int fd, struct ::stat* st) { return ::fstat(fd, st); }
    /// POSIX `stat()`.
    virtual int stat(const char* path, struct ::stat* st) { return ::stat(path, st); }
    /// The file system holding `path` (f_type tells which: detail/fs_check.hpp refuses the
    /// ones the directory store cannot be correct on).
    virtual int statfs(const char* path, struct ::statfs* st) { return ::statfs(path, st); }
    /// Maps `len` bytes of `fd` shared read/write. MAP_FAILED with errno on failure.
    virtual void* mmap_shared(int fd, std::size_t len) {
        return ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    /// Maps `len` bytes of `fd` shared read-only (read-only opens). MAP_FAILED with errno.
    virtual void* mmap_shared_readonly(int fd, std::size_t len) {
        return ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
    }
    /// The names in directory `path` (without "." and ".."). 0, or -1 with errno: a listing
    /// that fails must never be taken for an empty directory.
    virtual int list_directory(const char* path, std::vector<std::string>& names) {
        names.clear();
        DIR* d = ::opendir(path);
        if (!d) return -1;
        errno = 0;
        while (auto* e = ::readdir(d)) {
            std::string_view n(e->d_name);
            if (n != "." && n != "..") names.emplace_back(n);
            errno = 0;
        }
        int e = errno;
        ::closedir(d);
        errno = e;
        return e == 0 ? 0 : -1;
    }
    /// Called just before a Boost.Interprocess file_lock is attached to `path` (Boost opens
    /// the file itself, so this is where that open can be made to fail). 0, or -1 with errno.
    virtual int attach_lock(const char* path) {
        (void)path;
        return 0;
    }

    /// The process-wide POSIX implementation.
    static file_io& system() noexcept {
        static file_io io;
        return io;
    }
    /// The same object as a (non-owning) shared_ptr, for owners that hold their seam shared.
    static std::shared_ptr<file_io> posix() { return std::shared_ptr<file_io>(std::shared_ptr<file_io>(), &system()); }
};

} // namespace quorumreg
