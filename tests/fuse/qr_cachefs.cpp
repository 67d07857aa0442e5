// qr_cachefs — a test-only FUSE passthrough that caches like an NFS client.
//
//   qr_cachefs [--local-locks] [--timeout=S] BACKING MOUNTPOINT [fuse options, e.g. -f]
//
// Every call is forwarded to BACKING, but the kernel is told to trust what it has cached:
// attributes and directory entries for S seconds (default 30) and file data across opens
// (keep_cache), with mtime-based invalidation (auto_inval_data) off. Two mounts of one backing
// directory therefore behave like two NFS clients: one does not see the other's new file size,
// data or rename until its caches expire, exactly the close-to-open window an NFS client has.
//
// POSIX (fcntl) locks are forwarded to BACKING as open-file-description locks, one descriptor
// per kernel lock owner, so they DO exclude each other across mounts, like NFSv4 (or v3 with
// lockd). --local-locks leaves locking to each mount's kernel instead: locks then exclude only
// within one mount, like an NFS mount with -o nolock / local_lock=all.
#define FUSE_USE_VERSION 31

#include <fuse3/fuse.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace {

int g_backing = -1; // directory descriptor of BACKING; every path is resolved relative to it
bool g_local_locks = false;
double g_timeout = 30.0;

std::mutex g_locks_mu;
std::map<std::pair<std::uint64_t, std::string>, int> g_lock_fds; // (lock owner, path) -> OFD

/// FUSE paths are absolute within the mount; *at() calls want them relative to BACKING.
const char* rel(const char* path) { return path[1] == '\0' ? "." : path + 1; }

int err(int r) { return r < 0 ? -errno : r; }

void* qr_init(fuse_conn_info* conn, fuse_config* cfg) {
    cfg->use_ino = 1;
    cfg->kernel_cache = 1; // keep cached pages across open(): stale data, like NFS
    cfg->attr_timeout = g_timeout;
    cfg->entry_timeout = g_timeout;
    cfg->negative_timeout = g_timeout;
    cfg->ac_attr_timeout_set = 0;
    cfg->auto_cache = 0;
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_AUTO_INVAL_DATA);
    if (g_local_locks) conn->want &= ~static_cast<unsigned>(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    return nullptr;
}

int qr_getattr(const char* path, struct stat* st, fuse_file_info* fi) {
    if (fi) return err(::fstat(static_cast<int>(fi->fh), st));
    return err(::fstatat(g_backing, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

int qr_access(const char* path, int mask) { return err(::faccessat(g_backing, rel(path), mask, 0)); }

int qr_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
    int fd = ::openat(g_backing, rel(path), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -errno;
    DIR* d = ::fdopendir(fd);
    if (!d) {
        int e = errno;
        ::close(fd);
        return -e;
    }
    while (dirent* e = ::readdir(d)) {
        struct stat st {};
        st.st_ino = e->d_ino;
        st.st_mode = static_cast<mode_t>(DTTOIF(e->d_type));
        if (fill(buf, e->d_name, &st, 0, static_cast<fuse_fill_dir_flags>(0))) break;
    }
    ::closedir(d);
    return 0;
}

int qr_mkdir(const char* path, mode_t mode) { return err(::mkdirat(g_backing, rel(path), mode)); }
int qr_unlink(const char* path) { return err(::unlinkat(g_backing, rel(path), 0)); }
int qr_rmdir(const char* path) { return err(::unlinkat(g_backing, rel(path), AT_REMOVEDIR)); }

int qr_rename(const char* from, const char* to, unsigned int flags) {
    if (flags) return -EINVAL;
    return err(::renameat(g_backing, rel(from), g_backing, rel(to)));
}

int qr_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
    if (fi) return err(::fchmod(static_cast<int>(fi->fh), mode));
    return err(::fchmodat(g_backing, rel(path), mode, 0));
}

int qr_truncate(const char* path, off_t size, fuse_file_info* fi) {
    if (fi) return err(::ftruncate(static_cast<int>(fi->fh), size));
    int fd = ::openat(g_backing, rel(path), O_WRONLY);
    if (fd < 0) return -errno;
    int r = err(::ftruncate(fd, size));
    ::close(fd);
    return r;
}

int qr_utimens(const char* path, const struct timespec ts[2], fuse_file_info* fi) {
    if (fi) return err(::futimens(static_cast<int>(fi->fh), ts));
    return err(::utimensat(g_backing, rel(path), ts, AT_SYMLINK_NOFOLLOW));
}

int qr_create(const char* path, mode_t mode, fuse_file_info* fi) {
    int fd = ::openat(g_backing, rel(path), fi->flags | O_CLOEXEC, mode);
    if (fd < 0) return -errno;
    fi->fh = static_cast<std::uint64_t>(fd);
    fi->keep_cache = 1;
    return 0;
}

int qr_open(const char* path, fuse_file_info* fi) {
    int fd = ::openat(g_backing, rel(path), (fi->flags & ~O_CREAT) | O_CLOEXEC);
    if (fd < 0) return -errno;
    fi->fh = static_cast<std::uint64_t>(fd);
    fi->keep_cache = 1;
    return 0;
}

// FUSE requests are at most max_read/max_write (128 KiB) long, so the count fits an int.
int qr_read(const char*, char* buf, size_t n, off_t off, fuse_file_info* fi) {
    ssize_t r = ::pread(static_cast<int>(fi->fh), buf, n, off);
    return r < 0 ? -errno : static_cast<int>(r);
}

int qr_write(const char*, const char* buf, size_t n, off_t off, fuse_file_info* fi) {
    ssize_t r = ::pwrite(static_cast<int>(fi->fh), buf, n, off);
    return r < 0 ? -errno : static_cast<int>(r);
}

int qr_statfs(const char*, struct statvfs* st) { return err(::fstatvfs(g_backing, st)); }

int qr_release(const char*, fuse_file_info* fi) {
    ::close(static_cast<int>(fi->fh));
    return 0;
}

int qr_fsync(const char*, int datasync, fuse_file_info* fi) {
    int fd = static_cast<int>(fi->fh);
    return err(datasync ? ::fdatasync(fd) : ::fsync(fd));
}

int qr_opendir(const char*, fuse_file_info*) { return 0; }
int qr_fsyncdir(const char*, int, fuse_file_info*) { return err(::fsync(g_backing)); }

/// A POSIX lock request from the kernel on behalf of lock owner fi->lock_owner (a process's
/// file table). Applied as an OFD lock on a descriptor of our own per (owner, path), so that
/// owners in this mount and in other mounts (other qr_cachefs processes) exclude each other.
int qr_lock(const char* path, fuse_file_info* fi, int cmd, struct flock* lk) {
    std::lock_guard g(g_locks_mu);
    auto key = std::make_pair(fi->lock_owner, std::string(path));
    auto it = g_lock_fds.find(key);
    if (it == g_lock_fds.end()) {
        if (lk->l_type == F_UNLCK) return 0; // this owner never locked the file
        int fd = ::openat(g_backing, rel(path), O_RDWR | O_CLOEXEC);
        if (fd < 0) return -errno;
        it = g_lock_fds.emplace(key, fd).first;
    }
    struct flock l = *lk;
    l.l_pid = 0; // required for OFD locks
    int ofd_cmd = cmd == F_GETLK ? F_OFD_GETLK : cmd == F_SETLKW ? F_OFD_SETLKW : F_OFD_SETLK;
    if (::fcntl(it->second, ofd_cmd, &l) != 0) return -errno;
    if (cmd == F_GETLK) {
        *lk = l;
        if (lk->l_type != F_UNLCK) lk->l_pid = 0;
    }
    return 0;
}

fuse_operations make_ops() {
    fuse_operations ops{};
    ops.init = qr_init;
    ops.getattr = qr_getattr;
    ops.access = qr_access;
    ops.readdir = qr_readdir;
    ops.mkdir = qr_mkdir;
    ops.unlink = qr_unlink;
    ops.rmdir = qr_rmdir;
    ops.rename = qr_rename;
    ops.chmod = qr_chmod;
    ops.truncate = qr_truncate;
    ops.utimens = qr_utimens;
    ops.create = qr_create;
    ops.open = qr_open;
    ops.read = qr_read;
    ops.write = qr_write;
    ops.statfs = qr_statfs;
    ops.release = qr_release;
    ops.fsync = qr_fsync;
    ops.opendir = qr_opendir;
    ops.fsyncdir = qr_fsyncdir;
    if (!g_local_locks) ops.lock = qr_lock;
    return ops;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<char*> args{argv[0]};
    const char* backing = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--local-locks") {
            g_local_locks = true;
        } else if (a.rfind("--timeout=", 0) == 0) {
            g_timeout = std::atof(a.c_str() + 10);
        } else if (!backing && a[0] != '-') {
            backing = argv[i];
        } else {
            args.push_back(argv[i]);
        }
    }
    if (!backing) {
        std::fprintf(stderr, "usage: %s [--local-locks] [--timeout=S] BACKING MOUNTPOINT [fuse options]\n", argv[0]);
        return 2;
    }
    g_backing = ::open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g_backing < 0) {
        std::fprintf(stderr, "qr_cachefs: open %s: %s\n", backing, std::strerror(errno));
        return 1;
    }
    // Unmount (fuse_main handles SIGTERM) if the test that started us dies without doing it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    fuse_operations ops = make_ops();
    return fuse_main(static_cast<int>(args.size()), args.data(), &ops, nullptr);
}
