// Which file systems the directory store may run on (storage issue 14, defect 5).
//
// The store's protocol (an fcntl lock on quorumreg.lock, then stat() + pread of quorumreg.log to
// catch up, an append at the end it knows, a rename for compaction) is correct only where every
// process sees every other process's writes, sizes and renames the moment it holds the lock:
// one kernel's page cache and dentry cache over the data. Network and FUSE file systems give
// each client (each mount) caches of its own. On NFS close-to-open semantics, a stat() may
// return a size cached up to acregmax (60 s) ago, and the lock is on a different file than the
// data, so taking it does not revalidate the log. tests/test_shared_fs.cpp shows the result
// with two caching FUSE mounts of one directory: compares passed on stale values, acknowledged
// increments overwritten, and (with node-local locks) the log itself deleted by two concurrent
// compactions. Making the store correct there cannot be proven on this project's test machines,
// so it refuses to open on such a file system and names it.
#pragma once

#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/error.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace quorumreg::detail {

/// How a file system relates to the directory store's requirements.
enum class fs_kind : std::uint8_t {
    local,   ///< one kernel's caches over the data: supported
    unknown, ///< an f_type not in the table: allowed (see classify_filesystem)
    network, ///< per-client attribute and data caches (NFS, SMB, 9p, AFS, ...): refused
    cluster, ///< a cluster or parallel file system whose lock semantics depend on its setup: refused
    fuse,    ///< FUSE: each mount may cache and may keep locks to itself: refused
};

struct fs_info {
    const char* name = "unknown"; ///< short name as in /proc/filesystems ("nfs", "fuse")
    fs_kind kind = fs_kind::unknown;
    std::uint32_t magic = 0; ///< statfs f_type
};

/// Classifies a statfs() f_type (Linux magic numbers, include/uapi/linux/magic.h and the file
/// systems' own headers).
///
/// Unknown types are allowed: every network, cluster and FUSE file system in use that we know
/// of is listed below, so an unlisted magic is almost always a local file system newer than
/// this table (or an exotic one), and refusing it would break local use with no evidence of
/// a problem. The list of what is refused is the one that needs to be complete.
inline fs_info classify_filesystem(std::uint32_t magic) noexcept {
    struct row {
        std::uint32_t magic;
        const char* name;
        fs_kind kind;
    };
    static constexpr row table[] = {
        // Local: the kernel's own page cache is the only cache.
        {0xEF53, "ext4", fs_kind::local}, // also ext2 and ext3
        {0x58465342, "xfs", fs_kind::local},
        {0x9123683E, "btrfs", fs_kind::local},
        {0x01021994, "tmpfs", fs_kind::local},
        {0x858458F6, "ramfs", fs_kind::local},
        {0x2FC12FC1, "zfs", fs_kind::local},
        {0xF2F52010, "f2fs", fs_kind::local},
        {0x794C7630, "overlayfs", fs_kind::local}, // its upper layer cannot be NFS
        {0xCA451A4E, "bcachefs", fs_kind::local},
        {0x3153464A, "jfs", fs_kind::local},
        {0x52654973, "reiserfs", fs_kind::local},
        {0x3434, "nilfs2", fs_kind::local},
        {0x2011BAB0, "exfat", fs_kind::local},
        {0x4D44, "vfat", fs_kind::local},
        {0x5346544E, "ntfs", fs_kind::local},
        {0x7366746E, "ntfs3", fs_kind::local},
        {0xF15F, "ecryptfs", fs_kind::local},
        // Network: each client caches attributes, names and data.
        {0x6969, "nfs", fs_kind::network},
        {0x517B, "smb", fs_kind::network},
        {0xFF534D42, "cifs", fs_kind::network},
        {0xFE534D42, "smb2", fs_kind::network}, // cifs.ko mounts speaking SMB2/3
        {0x01021997, "9p", fs_kind::network},   // also WSL2 drvfs, QEMU virtfs
        {0x5346414F, "afs", fs_kind::network},
        {0x6B414653, "afs", fs_kind::network}, // kAFS
        {0x73757245, "coda", fs_kind::network},
        {0x564C, "ncpfs", fs_kind::network},
        {0x786F4256, "vboxsf", fs_kind::network}, // VirtualBox shared folders
        // Cluster and parallel: coherent by design, but whether fcntl locks exclude across
        // nodes depends on mount options and the cluster stack (lustre flock/localflock, gfs2
        // localflocks, beegfs global file locks), and the store was never verified on them.
        {0x00C36400, "ceph", fs_kind::cluster},
        {0x0BD00BD0, "lustre", fs_kind::cluster},
        {0x01161970, "gfs2", fs_kind::cluster},
        {0x7461636F, "ocfs2", fs_kind::cluster},
        {0x19830326, "beegfs", fs_kind::cluster},
        {0x20030528, "orangefs", fs_kind::cluster},
        {0xAAD7AAEA, "panfs", fs_kind::cluster},
        {0x47504653, "gpfs", fs_kind::cluster},
        // FUSE (sshfs, glusterfs, s3fs, ceph-fuse, virtiofs, fuse-overlayfs, ...).
        {0x65735546, "fuse", fs_kind::fuse},
    };
    for (const auto& r : table)
        if (r.magic == magic) return {r.name, r.kind, magic};
    return {"unknown", fs_kind::unknown, magic};
}

/// The statfs() result of `path`, classified.
inline fs_info classify_filesystem(const struct ::statfs& st) noexcept {
#if defined(__linux__)
    // f_type is a signed long; 0xFF534D42 must compare equal on 32-bit targets too.
    return classify_filesystem(static_cast<std::uint32_t>(static_cast<unsigned long>(st.f_type)));
#else
    // BSD and macOS name the file system instead; their f_type numbers mean something else.
    struct row {
        const char* name;
        fs_kind kind;
    };
    static constexpr row table[] = {{"nfs", fs_kind::network},   {"smbfs", fs_kind::network},
                                    {"afpfs", fs_kind::network}, {"webdav", fs_kind::network},
                                    {"macfuse", fs_kind::fuse},  {"osxfuse", fs_kind::fuse},
                                    {"fusefs", fs_kind::fuse}};
    for (const auto& r : table)
        if (std::strncmp(st.f_fstypename, r.name, std::strlen(r.name)) == 0) return {r.name, r.kind, 0};
    return {"unknown", fs_kind::unknown, 0};
#endif
}

/// Why a refused kind is refused (for the error message).
inline const char* fs_refusal_reason(fs_kind k) noexcept {
    switch (k) {
    case fs_kind::network:
        return "its clients cache file sizes, data and names (NFS close-to-open semantics), so a node can "
               "append over changes another node acknowledged and accept a compare against a stale value";
    case fs_kind::cluster:
        return "whether its fcntl locks exclude each other across nodes depends on mount options and the "
               "cluster stack, and the store has not been verified on it";
    case fs_kind::fuse:
        return "each FUSE mount may cache file sizes, data and names and keep locks to itself, so two mounts of "
               "one directory act like two NFS clients";
    default: return "";
    }
}

/// Checks that the directory store at `dir` can be correct on its file system. False, with
/// `ec` errc::unsupported_filesystem and `detail` naming the file system, if it cannot, unless
/// `unsafe_single_client` (the caller promises every process reaches the store through this
/// one mount on this one machine). False with the errno if statfs() itself fails: the check is
/// never skipped silently. `probe` (default: `dir`) is the path to statfs, e.g. the nearest
/// existing parent of a directory not created yet.
inline bool check_store_filesystem(file_io& io, const std::string& dir, bool unsafe_single_client, std::error_code& ec,
                                   std::string& detail, const std::string& probe = {}) {
    const std::string& path = probe.empty() ? dir : probe;
    struct ::statfs st {};
    if (io.statfs(path.c_str(), &st) != 0) {
        int e = errno;
        ec = from_errno(e);
        detail = "statfs " + path + ": " + std::strerror(e);
        return false;
    }
    auto info = classify_filesystem(st);
    if (info.kind == fs_kind::local || info.kind == fs_kind::unknown || unsafe_single_client) return true;
    ec = errc::unsupported_filesystem;
    detail = std::string("directory store on ") + info.name + " at " + dir + ": " + fs_refusal_reason(info.kind) +
             "; use a local file system or the etcd store (directory_store_options::unsafe_single_client_fs "
             "opens it anyway, safe only if every process using the store reaches it through this one mount on "
             "this one machine)";
    return false;
}

} // namespace quorumreg::detail
