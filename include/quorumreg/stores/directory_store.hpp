// quorumreg — directory_store: the embedded quorum store, the MSCS "quorum disk" as a directory.
//
// Every process of one machine that opens the directory shares one store. The directory must
// be on a local file system: network, cluster and FUSE file systems are refused
// (detail/fs_check.hpp, docs/stores.md); several machines use the etcd store.
//
// How it works. The directory holds two files, both created 0600 (the directory, when this
// library creates it, 0700):
//   quorumreg.lock  an empty file; a Boost.Interprocess file_lock (POSIX fcntl) on it
//                   arbitrates: writers hold it exclusively, readers shared;
//   quorumreg.log   the store itself: a snapshot frame followed by one CRC-32C-checked frame
//                   per change (detail/dir_log.hpp). The revision counter, every key, every
//                   lease and its expiry time, and the watch history are all in it.
// A write takes the exclusive lock, reads any frames other processes appended, evaluates the
// transaction against that state, appends one frame and fsyncs it: the fsync is the commit
// point, and only then is the write acknowledged. Every process keeps the state in memory and
// tails the log, so reads cost a stat() and watches cost nothing until something changes.
// When the log holds more than 2 x keep_revisions frames it is compacted: a new file with a
// snapshot of the state plus the last keep_revisions revisions of history is written to a
// temporary name, fsynced, renamed over the log and the directory fsynced (an atomic replace).
// Keys never become file names, so no key can name a path outside the directory.
//
// Watches: a poller thread per store object checks the log every poll_interval (default
// 20 ms) and delivers new events; a watch from a revision older than the kept history gets
// errc::watch_canceled.
//
// Leases: a grant or keep-alive frame is a change of the lease record (its renewal stamp
// strictly increases). Each process times every lease on its OWN steady_clock from the last
// change of the record it saw (a store object that opens sees every lease change at that
// moment): a lease is expired for it once it has seen no change for TTL + TTL/50. It then
// deletes the lease's keys in a normal change (any operation, or any store object's poller),
// so the lock of a killed process frees itself within TTL + TTL/50 plus one poll interval of
// its last keep-alive (as long as some process has the store open; a store object opened
// later waits that long from its opening). Wall clocks are never compared (issue 15,
// defect 10): tolerated wall-clock skew between processes: any (steps included); tolerated
// rate drift of the monotonic clocks: 2% (on one machine they share CLOCK_MONOTONIC: none).
//
// What it needs from the file system, and where it is not safe:
// - One kernel's caches over the files and POSIX advisory fcntl locks: a local file system.
//   NFS, SMB, 9p, cluster and FUSE file systems give each client caches of its own (stale
//   sizes, data and names), so open refuses them with errc::unsupported_filesystem naming
//   the type (detail/fs_check.hpp; options.unsafe_single_client_fs overrides it, safe only
//   when every process reaches the store through one mount on one machine). Advisory: a
//   process that writes the files without the lock can corrupt them.
// - Atomic rename() within the directory and a durable fsync() of file and directory.
// - Lease expiry is timed on each process's steady_clock (above). The clock recorded when the
//   store was created (lease_clock: CLOCK_REALTIME by default, or CLOCK_BOOTTIME) only makes
//   the renewal stamps of the log readable for people; no expiry decision reads it.
// - Whole-state-in-memory: suited to configuration-sized data (checkpoints, the cluster hive),
//   not bulk data; every process holds the whole key space.
// - A damaged frame followed by valid ones (bit rot) is refused with errc::corrupt_data by
//   every operation, reads included, and nothing is cut; only a bad frame with nothing valid
//   after it is a torn (never acknowledged) append, which the next writer cuts. The CRC
//   detects damage, it cannot repair it; keep the directory on reliable storage.
//
// Nothing is created unless asked (options.create; `qreg store init`): a missing directory or
// a missing or empty log is errc::not_found "no store at PATH". A created store gets a random
// identity (identity()) that nodes record and check. options.read_only opens without writing
// anything, also on a read-only copy.
//
// @code
// quorumreg::directory_store store("/srv/quorum", {.create = true}); // created 0700 if missing
// auto lease = store.grant_lease(std::chrono::seconds(10));
// auto token = store.acquire_lock("locks/sql", lease);   // fencing token
// quorumreg::store_txn t;
// t.compares.push_back(quorumreg::key_compare::create_revision_is("locks/sql", token));
// t.on_success.push_back(quorumreg::store_op::put("cfg/sql/port", "1433"));
// store.commit(t);
// @endcode
#pragma once

#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/detail/dir_lock.hpp>
#include <quorumreg/detail/dir_log.hpp>
#include <quorumreg/detail/fs_check.hpp>
#include <quorumreg/detail/store_state.hpp>
#include <quorumreg/quorum_store.hpp>
#include <quorumreg/file_io.hpp>
#include <quorumreg/stores/store_limits.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg {

/// The clock of the lease records' renewal stamps (fixed when the store is created). Expiry
/// never reads it: each process times leases on its own steady_clock (issue 15, defect 10).
enum class lease_clock : std::uint8_t {
    realtime = 1, ///< CLOCK_REALTIME stamps
    boottime = 2, ///< CLOCK_BOOTTIME stamps
};

/// Options of a directory_store.
struct directory_store_options {
    std::chrono::milliseconds deadline{5000};    ///< per operation, including waiting for the lock
    std::chrono::milliseconds poll_interval{20}; ///< watch latency and lease-reaping period
    std::size_t keep_revisions = 10000;          ///< history kept across log compaction (>= 1)
    lease_clock clock = lease_clock::realtime;   ///< for a NEW store; an existing store keeps its own
    /// Create the directory and the store if missing. Off by default: a missing directory,
    /// or a missing or empty quorumreg.log, is errc::not_found "no store at PATH" — a typo, an
    /// unmounted share or a deleted log must not silently become a second, empty quorum.
    bool create = false;
    bool exclusive = false; ///< with create: errc::already_exists if a store is there already
    /// Never write: no file or directory is created, nothing is truncated, reaped or
    /// compacted; keys of expired leases are hidden instead of reaped; every write fails with
    /// errc::read_only. Works on a read-only copy (a backup, a snapshot).
    bool read_only = false;
    /// UNSAFE. Open on a network, cluster or FUSE file system (NFS, SMB, 9p, Ceph, FUSE, ...),
    /// which is otherwise refused with errc::unsupported_filesystem. Correct only if every
    /// process that ever opens this store reaches it through this same mount on this same
    /// machine (then one kernel's caches and locks serve them all); two machines or two
    /// mounts lose acknowledged writes. See docs/stores.md, "Supported file systems".
    bool unsafe_single_client_fs = false;
    store_limits limits{};         ///< key and value size limits
    std::shared_ptr<file_io> io{}; ///< I/O seam for fault injection (null: POSIX)
}; // every member has an initializer: {.create = true} is clean under -Wmissing-field-initializers

/// The embedded quorum store on a shared directory. Thread-safe; any number of objects in
/// any number of processes may open the same directory.
///
/// @code
/// quorumreg::directory_store_options o;
/// o.poll_interval = std::chrono::milliseconds(10);  // watch latency across processes
/// quorumreg::directory_store store("/srv/quorum", o);
/// auto sub = store.watch("cfg/", 0, [](const std::vector<quorumreg::watch_event>& evs, std::error_code ec) {
///     // events in revision order, exactly once; ec ends the watch
/// });
/// auto rev = store.put("cfg/port", "8080");
/// store.put_if("cfg/port", "8081", rev);
/// @endcode
class directory_store final : public quorum_store {
public:
    static constexpr const char* lock_file_name = "quorumreg.lock"; ///< the lock file in the directory
    static constexpr const char* log_file_name = "quorumreg.log";   ///< the log file in the directory

    /// Opens (and with options.create, creates) the store in `dir`. Throws quorumreg::error.
    explicit directory_store(std::filesystem::path dir, directory_store_options opts = {})
        : dir_(std::move(dir)), opts_(std::move(opts)) {
        std::error_code ec;
        init(ec);
        if (ec) {
            std::string what = "open directory store \"" + dir_.string() + "\"";
            if (!last_error_detail().empty()) what += " (" + last_error_detail() + ")";
            close_fd();
            throw error(ec, what);
        }
        poller_ = std::thread([this] { run(); });
    }

    /// Non-throwing open: nullptr and `ec` set on failure.
    static std::unique_ptr<directory_store> open(std::filesystem::path dir, directory_store_options opts,
                                                 std::error_code& ec) {
        ec.clear();
        try {
            return std::make_unique<directory_store>(std::move(dir), std::move(opts));
        } catch (const std::system_error& e) {
            ec = e.code();
            return nullptr;
        }
    }

    ~directory_store() override {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (poller_.joinable()) poller_.join();
        close_fd();
    }
    directory_store(const directory_store&) = delete;
    directory_store& operator=(const directory_store&) = delete;

    /// The store's directory, as given.
    const std::filesystem::path& path() const noexcept { return dir_; }

    /// Whether this object was opened with options.read_only.
    bool read_only() const noexcept { return opts_.read_only; }

    /// Bytes of an unacknowledged torn tail after the last valid frame, as last seen (0 if
    /// none). A writer cuts it on its next write; a read-only object leaves it in place.
    std::uint64_t torn_tail() const {
        std::lock_guard lk(mu_);
        return torn_;
    }

    /// The clock this store's leases run on (recorded in the store when it was created).
    lease_clock clock() const {
        std::lock_guard lk(mu_);
        return clock_;
    }

    /// Oldest revision a watch can still start from (older: errc::watch_canceled).
    store_revision first_watchable_revision(std::error_code& ec) {
        store_revision r = 0;
        ec.clear();
        read_op(ec, [&](const detail::store_state&) { r = history_.first_available; });
        return r;
    }

private:
    // ---- quorum_store hooks (reached through its public interface) ---------------------------

    std::string do_describe() const override { return "dir:" + dir_.string(); }

    /// The random id written when the store was created (32 hex digits; "" for a store
    /// created by a format-version-1 library, which recorded none). Reflects the log now on
    /// disk: a store re-created under the same path has a new identity.
    std::string do_identity(std::error_code& ec) override {
        std::string out;
        ec.clear();
        read_op(ec, [&](const detail::store_state&) { out = identity_; });
        return out;
    }

    std::optional<key_value> do_get(std::string_view key, std::error_code& ec) override {
        std::optional<key_value> out;
        ec.clear();
        if (!detail::store_check_key(key, false, opts_.limits, ec, last_error_detail())) return out;
        read_op(ec, [&](const detail::store_state& st) {
            if (const auto* kv = st.find(key)) out = *kv;
        });
        return out;
    }

    range_result do_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                          std::error_code& ec) override {
        range_result out;
        ec.clear();
        if (!detail::store_check_key(prefix, true, opts_.limits, ec, last_error_detail())) return out;
        read_op(ec, [&](const detail::store_state& st) { out = st.range(prefix, start_after, limit); });
        return out;
    }

    // put and erase: quorum_store's one-operation commits.

    txn_result do_commit(const store_txn& txn, std::error_code& ec) override {
        ec.clear();
        txn_result res;
        if (!detail::store_check_txn(txn, opts_.limits, ec, last_error_detail())) return res;
        write_op(ec, [&] {
            res.succeeded = state_.evaluate(txn.compares);
            std::vector<detail::store_mutation> muts;
            if (!state_.resolve(res.succeeded ? txn.on_success : txn.on_failure, muts, ec, last_error_detail())) return;
            if (!muts.empty()) {
                std::string payload;
                detail::dir_put_txn(payload, state_.rev + 1, muts);
                if (!append(payload, ec)) return;
            }
            res.revision = state_.rev;
        });
        if (ec && ec != errc::unknown_outcome) return {};
        return res;
    }

    store_revision do_revision(std::error_code& ec) override {
        store_revision r = 0;
        ec.clear();
        read_op(ec, [&](const detail::store_state& st) { r = st.rev; });
        return r;
    }

    [[nodiscard]] subscription do_watch(std::string_view prefix, store_revision from_revision, watch_handler handler,
                                        std::error_code& ec) override {
        ec.clear();
        if (!handler || from_revision < 0) {
            ec = errc::invalid_argument;
            last_error_detail() = handler ? "negative revision" : "empty watch handler";
            return {};
        }
        if (!detail::store_check_key(prefix, true, opts_.limits, ec, last_error_detail())) return {};
        subscription s;
        read_op(ec, [&](const detail::store_state& st) {
            store_revision next = from_revision == 0 ? st.rev + 1 : from_revision;
            s = watchers_->add(std::string(prefix), next, std::move(handler));
        });
        wake();
        return s;
    }

    lease_id do_grant_lease(std::chrono::milliseconds ttl, std::error_code& ec) override {
        ec.clear();
        if (ttl.count() <= 0) {
            ec = errc::invalid_argument;
            last_error_detail() = "lease TTL must be positive";
            return 0;
        }
        lease_id id = 0;
        write_op(ec, [&] {
            std::string payload;
            lease_id next = state_.next_lease;
            detail::dir_put_grant(payload, next, ttl.count(), now_ms() + ttl.count());
            if (append(payload, ec) || ec == errc::unknown_outcome) id = next;
        });
        return ec && ec != errc::unknown_outcome ? 0 : id;
    }

    void do_keep_alive(lease_id lease, std::error_code& ec) override {
        ec.clear();
        write_op(ec, [&] {
            auto it = state_.leases.find(lease);
            if (it == state_.leases.end()) {
                ec = errc::lease_expired;
                last_error_detail() = "lease " + std::to_string(lease) + " is gone";
                return;
            }
            std::string payload;
            // Strictly increasing: every keep-alive is a change every observer can see, even
            // if this writer's clock stands still or steps back.
            detail::dir_put_keep_alive(payload, lease,
                                       std::max(now_ms() + it->second.ttl_ms, it->second.expiry_ms + 1));
            append(payload, ec);
        });
    }

    void do_revoke_lease(lease_id lease, std::error_code& ec) override {
        ec.clear();
        write_op(ec, [&] {
            if (!state_.leases.count(lease)) return;
            std::string payload;
            append_revoke(payload, lease);
            append(payload, ec);
        });
    }

    std::chrono::milliseconds do_lease_ttl(lease_id lease, std::error_code& ec) override {
        ec.clear();
        std::chrono::milliseconds out{0};
        read_op(ec, [&](const detail::store_state& st) {
            auto it = st.leases.find(lease);
            if (it == st.leases.end()) {
                ec = errc::lease_expired;
                last_error_detail() = "lease " + std::to_string(lease) + " is gone";
                return;
            }
            out = std::chrono::milliseconds(
                std::max<std::int64_t>(0, it->second.observed_ms + it->second.ttl_ms - detail::store_steady_ms()));
        });
        return out;
    }

    void do_set_deadline(std::chrono::milliseconds d) override {
        std::lock_guard lk(mu_);
        opts_.deadline = d;
    }

    std::chrono::milliseconds do_deadline() const override {
        std::lock_guard lk(mu_);
        return opts_.deadline;
    }

    // ---- opening ------------------------------------------------------------------------------

    std::string file(const char* name) const { return (dir_ / name).string(); }

    void fail_errno(std::error_code& ec, const std::string& what, int e) {
        ec = detail::from_errno(e);
        last_error_detail() = what + ": " + std::strerror(e);
    }

    void no_store(std::error_code& ec, const std::string& why) {
        ec = errc::not_found;
        last_error_detail() = "no store at " + dir_.string() + " (" + why + ")";
    }

    /// Whether quorumreg.log holds a store. Only ENOENT means it does not; any other stat
    /// error is reported (`ec`), never taken for "absent" (an unreadable store is not empty).
    bool log_present(std::error_code& ec, std::string& why) {
        struct ::stat st {};
        auto path = file(log_file_name);
        if (io_->stat(path.c_str(), &st) != 0) {
            int e = errno;
            if (e != ENOENT) fail_errno(ec, "stat " + path, e);
            why = std::string(log_file_name) + " does not exist";
            return false;
        }
        why = std::string(log_file_name) + " is empty";
        return st.st_size > 0;
    }

    /// fsyncs directory `d` (through the seam): what makes entries created or renamed in it
    /// survive a power cut.
    bool sync_dir(const std::filesystem::path& d, std::error_code& ec) {
        auto name = d.empty() ? std::string(".") : d.string();
        int dfd = io_->open(name.c_str(), O_RDONLY | O_DIRECTORY, 0);
        if (dfd < 0) {
            fail_errno(ec, "open directory " + name, errno);
            return false;
        }
        bool ok = io_->fsync(dfd) == 0;
        if (!ok) fail_errno(ec, "fsync directory " + name, errno);
        io_->close(dfd);
        return ok;
    }

    /// Creates dir_ (0700) and its missing ancestors through the seam, then fsyncs the parent
    /// of each: until then a power cut can undo a new directory, and with it every commit
    /// acknowledged inside.
    bool make_directories(std::error_code& ec) {
        std::vector<std::filesystem::path> missing; // dir_ first, then its missing ancestors
        struct ::stat st {};
        for (auto p = dir_; !p.empty(); p = p.parent_path()) {
            if (io_->stat(p.c_str(), &st) == 0) break;
            if (errno != ENOENT) {
                fail_errno(ec, "stat " + p.string(), errno);
                return false;
            }
            missing.push_back(p);
            if (p == p.parent_path()) break;
        }
        for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
            if (io_->mkdir(it->c_str(), *it == dir_ ? 0700 : 0777) != 0 && errno != EEXIST) {
                fail_errno(ec, "mkdir " + it->string(), errno);
                return false;
            }
            if (!sync_dir(it->parent_path(), ec)) return false;
        }
        return true;
    }

    void init(std::error_code& ec) {
        last_error_detail().clear();
        if (!opts_.io) opts_.io = file_io::posix();
        if (opts_.keep_revisions == 0) opts_.keep_revisions = 1;
        if (opts_.read_only) opts_.create = false;
        io_ = opts_.io;
        struct ::stat st {};
        if (io_->stat(dir_.c_str(), &st) != 0) {
            int e = errno;
            // Only "does not exist" means absent: EIO or EACCES are reported and nothing is made.
            if (e != ENOENT) return fail_errno(ec, "stat " + dir_.string(), e);
            if (!opts_.create) return no_store(ec, "the directory does not exist");
            // Refuse before creating anything: check the nearest existing parent.
            std::filesystem::path probe = dir_.parent_path();
            while (!probe.empty() && probe != probe.parent_path() && io_->stat(probe.c_str(), &st) != 0)
                probe = probe.parent_path();
            if (!detail::check_store_filesystem(*io_, dir_.string(), opts_.unsafe_single_client_fs, ec,
                                                last_error_detail(), probe.empty() ? "." : probe.string()))
                return;
            if (!make_directories(ec)) return;
        } else if (!S_ISDIR(st.st_mode)) {
            ec = errc::invalid_argument;
            last_error_detail() = dir_.string() + " is not a directory";
            return;
        }
        // Before touching any file, read-only opens too: a stale client cache misleads readers.
        if (!detail::check_store_filesystem(*io_, dir_.string(), opts_.unsafe_single_client_fs, ec,
                                            last_error_detail()))
            return;
        std::string why;
        bool present = log_present(ec, why);
        if (ec) return;
        if (!present && !opts_.create) return no_store(ec, why);
        if (opts_.read_only) return init_read_only(ec);
        plock_ = detail::dir_process_lock::get(*io_, file(lock_file_name), ec, last_error_detail());
        if (ec) return;
        auto until = std::chrono::steady_clock::now() + opts_.deadline;
        if (!plock_->lock(true, until)) {
            ec = errc::deadline_exceeded;
            last_error_detail() = "timed out waiting for the store lock";
            return;
        }
        present = log_present(ec, why); // again under the lock: another process may have created it
        if (!ec && !present) {
            if (!opts_.create) {
                no_store(ec, why);
            } else {
                detail::store_state empty;
                detail::store_history h;
                identity_ = detail::random_store_identity();
                bool renamed = false;
                // A failed directory sync fails the creation: the new store may not survive a cut.
                write_snapshot(static_cast<std::uint8_t>(opts_.clock), empty, h, 1, ec, renamed);
            }
        } else if (!ec && opts_.create && opts_.exclusive) {
            ec = errc::already_exists;
            last_error_detail() = "a store already exists at " + dir_.string();
        }
        if (!ec) reload(ec);
        plock_->unlock();
    }

    /// Read-only open: a shared lock on quorumreg.lock opened O_RDONLY (never created). Without
    /// a lock file the log is read unlocked: every writer creates the lock file before its first
    /// write, so none is using this copy, and even a concurrent one could only add frames at
    /// the end (a partial one reads as a torn tail) or replace the log by an atomic rename.
    void init_read_only(std::error_code& ec) {
        plock_ = detail::dir_process_lock::get(*io_, file(lock_file_name), ec, last_error_detail(), true);
        if (ec) return;
        if (plock_ && !plock_->lock(false, std::chrono::steady_clock::now() + opts_.deadline)) {
            ec = errc::deadline_exceeded;
            last_error_detail() = "timed out waiting for the store lock";
            return;
        }
        reload(ec);
        if (plock_) plock_->unlock();
    }

    void close_fd() {
        if (log_fd_ >= 0) io_->close(log_fd_);
        log_fd_ = -1;
    }

    /// Writes a snapshot-only log to a temporary file and atomically replaces the log with it.
    /// `renamed`: the new log took the old one's place (also when only the directory fsync
    /// that makes the rename durable failed; then false is returned with ec set).
    bool write_snapshot(std::uint8_t clock, const detail::store_state& st, const detail::store_history& h,
                        store_revision history_from, std::error_code& ec, bool& renamed) {
        renamed = false;
        auto tmp = file(log_file_name) + ".tmp";
        auto payload = detail::dir_snapshot_payload(clock, identity_, st, h, history_from);
        if (payload.size() > detail::dir_max_frame) {
            ec = errc::value_too_large;
            last_error_detail() = "the store's state exceeds the 1 GiB snapshot limit; not compacted";
            return false;
        }
        auto frame = detail::dir_frame(payload);
        int fd = io_->open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) {
            fail_errno(ec, "create " + tmp, errno);
            return false;
        }
        bool ok = detail::pwrite_all(*io_, fd, frame.data(), frame.size(), 0);
        if (!ok) fail_errno(ec, "write " + tmp, errno);
        if (ok && io_->fsync(fd) != 0) {
            ok = false;
            fail_errno(ec, "fsync " + tmp, errno);
        }
        struct ::stat nst {}; // the new log's inode, to record once its rename is durable
        if (ok && io_->fstat(fd, &nst) != 0) {
            ok = false;
            fail_errno(ec, "stat " + tmp, errno);
        }
        io_->close(fd);
        if (ok && io_->rename(tmp.c_str(), file(log_file_name).c_str()) != 0) {
            ok = false;
            fail_errno(ec, "rename " + tmp, errno);
        }
        if (!ok) {
            io_->unlink(tmp.c_str());
            return false;
        }
        renamed = true;
        // Make the rename durable. If this fails the old or the new log survives a cut, both
        // complete stores, but nothing may be acknowledged in the new one until the rename is
        // durable: append() syncs the directory before its first frame in a log it has not
        // seen synced (dir_synced_ino_).
        if (!sync_dir(dir_, ec)) return false;
        dir_synced_dev_ = nst.st_dev;
        dir_synced_ino_ = nst.st_ino;
        return true;
    }

    // ---- reading the log ----------------------------------------------------------------------

    /// Reads the whole log afresh (first open, or after another process compacted it).
    void reload(std::error_code& ec) {
        auto path = file(log_file_name);
        int fd = io_->open(path.c_str(), opts_.read_only ? O_RDONLY : O_RDWR, 0);
        if (fd < 0) return fail_errno(ec, "open " + path, errno);
        struct ::stat st {};
        if (io_->fstat(fd, &st) != 0) {
            fail_errno(ec, "stat " + path, errno);
            io_->close(fd);
            return;
        }
        std::string buf(static_cast<std::size_t>(st.st_size), '\0');
        auto n = detail::pread_all(*io_, fd, buf.data(), buf.size(), 0);
        if (n < 0) {
            fail_errno(ec, "read " + path, errno);
            io_->close(fd);
            return;
        }
        buf.resize(static_cast<std::size_t>(n));
        std::string_view payload;
        std::size_t size = 0;
        detail::dir_snapshot snap;
        if (detail::dir_parse_frame(buf, payload, size) != detail::dir_frame_status::ok ||
            !detail::dir_decode_snapshot(payload, snap, ec)) {
            if (!ec) ec = errc::corrupt_data;
            last_error_detail() = path + ": the snapshot frame at the start of the log is damaged";
            io_->close(fd);
            return;
        }
        {
            std::lock_guard lk(mu_);
            close_fd();
            log_fd_ = fd;
            log_dev_ = st.st_dev;
            log_ino_ = st.st_ino;
            clock_ = static_cast<lease_clock>(snap.clock);
            identity_ = std::move(snap.identity);
            // A lease whose record (renewal stamp) is unchanged keeps the time this process saw
            // it change; a new or renewed one is seen now.
            auto seen = detail::store_steady_ms();
            for (auto& [id, l] : snap.state.leases) {
                auto old = state_.leases.find(id);
                l.observed_ms =
                    old != state_.leases.end() && old->second.expiry_ms == l.expiry_ms ? old->second.observed_ms : seen;
            }
            state_ = std::move(snap.state);
            history_ = std::move(snap.history);
            pos_ = size;
            frames_since_snapshot_ = 0;
        }
        consume(std::string_view(buf).substr(size), ec);
    }

    /// Applies complete, valid frames from `tail` (the bytes at pos_). Stops at a torn tail: a
    /// bad or short frame with no valid frame after it. A bad frame followed by a valid one is
    /// damaged acknowledged data: errc::corrupt_data, and nothing is cut (every later
    /// operation of every process refuses the same way until the log is restored).
    void consume(std::string_view tail, std::error_code& ec) {
        std::lock_guard lk(mu_);
        torn_ = 0;
        while (!tail.empty()) {
            std::string_view payload;
            std::size_t size = 0;
            if (detail::dir_parse_frame(tail, payload, size) != detail::dir_frame_status::ok) {
                auto later = detail::dir_find_valid_frame(tail);
                if (later != std::string_view::npos) {
                    ec = errc::corrupt_data;
                    last_error_detail() = file(log_file_name) + ": damaged frame at offset " + std::to_string(pos_) +
                                          " followed by a valid frame at offset " + std::to_string(pos_ + later) +
                                          "; acknowledged data is damaged, nothing was changed";
                    return;
                }
                torn_ = tail.size();
                return;
            }
            std::vector<detail::dir_entry> entries;
            if (!detail::dir_decode_entries(payload, entries, ec)) {
                last_error_detail() = file(log_file_name) + ": undecodable frame at offset " + std::to_string(pos_);
                return;
            }
            detail::dir_apply_entries(entries, state_, history_, detail::store_steady_ms());
            pos_ += size;
            ++frames_since_snapshot_;
            tail.remove_prefix(size);
        }
    }

    /// Brings the cached state up to the log's end (call with the store lock held).
    void catch_up(std::error_code& ec) {
        auto path = file(log_file_name);
        struct ::stat st {};
        if (io_->stat(path.c_str(), &st) != 0) return fail_errno(ec, "stat " + path, errno);
        if (st.st_ino != log_ino_ || st.st_dev != log_dev_) return reload(ec);
        if (static_cast<std::uint64_t>(st.st_size) <= pos_) return;
        std::string buf(static_cast<std::size_t>(st.st_size) - pos_, '\0');
        auto n = detail::pread_all(*io_, log_fd_, buf.data(), buf.size(), static_cast<off_t>(pos_));
        if (n < 0) return fail_errno(ec, "read " + path, errno);
        buf.resize(static_cast<std::size_t>(n));
        consume(buf, ec);
    }

    // ---- writing ------------------------------------------------------------------------------

    /// Appends one frame at the end of the valid log and fsyncs it, then applies it. On a
    /// failed write the frame is truncated away (the store is unchanged: a plain error); if
    /// even that fails after the bytes were written, the outcome is unknown.
    bool append(const std::string& payload, std::error_code& ec) {
        auto path = file(log_file_name);
        if (payload.size() > detail::dir_max_frame) {
            ec = errc::value_too_large;
            last_error_detail() =
                "one change of " + std::to_string(payload.size()) + " bytes exceeds the 1 GiB frame limit";
            return false;
        }
        auto frame = detail::dir_frame(payload);
        if (log_ino_ != dir_synced_ino_ || log_dev_ != dir_synced_dev_) {
            // This log was renamed into place (created or compacted, here or by another
            // process) and its directory may not be synced: a power cut could still undo the
            // rename and every frame acknowledged in it. Sync before the first one.
            if (!sync_dir(dir_, ec)) return false;
            dir_synced_dev_ = log_dev_;
            dir_synced_ino_ = log_ino_;
        }
        struct ::stat st {};
        if (io_->fstat(log_fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) > pos_) {
            // A torn tail from a writer that died mid-append: it was never acknowledged.
            if (io_->ftruncate(log_fd_, static_cast<off_t>(pos_)) != 0) {
                fail_errno(ec, "truncate the torn tail of " + path, errno);
                return false;
            }
            std::lock_guard lk(mu_);
            torn_ = 0;
        }
        if (!detail::pwrite_all(*io_, log_fd_, frame.data(), frame.size(), static_cast<off_t>(pos_))) {
            int e = errno;
            io_->ftruncate(log_fd_, static_cast<off_t>(pos_)); // best effort; a torn tail is ignored anyway
            fail_errno(ec, "write " + path, e);
            return false;
        }
        if (io_->fsync(log_fd_) != 0) {
            int e = errno;
            if (io_->ftruncate(log_fd_, static_cast<off_t>(pos_)) == 0 && io_->fsync(log_fd_) == 0) {
                fail_errno(ec, "fsync " + path, e);
            } else {
                // The frame may be visible to other processes and may survive: unknown outcome.
                ec = errc::unknown_outcome;
                last_error_detail() = "fsync " + path + ": " + std::strerror(e) + "; the write could not be undone";
            }
            return false;
        }
        std::vector<detail::dir_entry> entries;
        detail::dir_decode_entries(payload, entries, ec);
        std::lock_guard lk(mu_);
        detail::dir_apply_entries(entries, state_, history_, detail::store_steady_ms());
        pos_ += frame.size();
        ++frames_since_snapshot_;
        return true;
    }

    void append_revoke(std::string& payload, lease_id id) {
        auto muts = state_.lease_erasures(id);
        if (!muts.empty()) detail::dir_put_txn(payload, state_.rev + 1, muts);
        detail::dir_put_revoke(payload, id);
    }

    /// Revokes every expired lease (with the exclusive lock held), one revision each.
    void reap(std::error_code& ec) {
        auto now = detail::store_steady_ms();
        std::string payload;
        store_revision rev = state_.rev;
        for (const auto& [id, l] : state_.leases) {
            if (detail::store_lease_observed_expiry(l) > now) continue;
            std::vector<detail::store_mutation> muts;
            for (const auto& k : l.keys)
                muts.push_back({true, k, {}, 0});
            if (!muts.empty()) detail::dir_put_txn(payload, ++rev, muts);
            detail::dir_put_revoke(payload, id);
        }
        if (!payload.empty()) append(payload, ec);
    }

    bool needs_reap() const {
        std::lock_guard lk(mu_);
        const auto* l = state_.earliest_observed_lease();
        return l && detail::store_lease_observed_expiry(*l) <= detail::store_steady_ms();
    }

    void maybe_compact() {
        if (frames_since_snapshot_ <= 2 * opts_.keep_revisions) return;
        store_revision from = std::max<store_revision>(
            history_.first_available, state_.rev - static_cast<store_revision>(opts_.keep_revisions) + 1);
        std::error_code ec;
        bool renamed = false;
        write_snapshot(static_cast<std::uint8_t>(clock_), state_, history_, from, ec, renamed);
        // A failed compaction leaves the old log in use; a renamed one (even with the directory
        // sync failed) is the log now: this object reads the new file like everyone else.
        if (!renamed) return;
        ec.clear();
        reload(ec);
    }

    // ---- operation skeletons ------------------------------------------------------------------

    template <class F> bool locked(bool exclusive, std::error_code& ec, F&& f) {
        auto until = std::chrono::steady_clock::now() + deadline();
        std::unique_lock<std::mutex> solo; // without a lock file, this object's threads still take turns
        if (!plock_) solo = std::unique_lock(solo_mu_);
        if (plock_ && !plock_->lock(exclusive, until)) {
            ec = errc::deadline_exceeded;
            last_error_detail() = "timed out waiting for the lock of " + dir_.string();
            return false;
        }
        catch_up(ec);
        if (!ec) f();
        if (plock_) plock_->unlock();
        return !ec;
    }

    /// A read under the shared lock; `f` gets the state to answer from. If a lease has
    /// expired, it is reaped first (that needs the exclusive lock), so a read never shows keys
    /// of an expired lease. A read-only object cannot reap (a write): it answers from a copy
    /// without those keys, as the next writer's reap will leave them.
    template <class F> void read_op(std::error_code& ec, F&& f) {
        last_error_detail().clear();
        if (opts_.read_only) {
            locked(false, ec, [&] {
                std::lock_guard lk(mu_);
                auto now = detail::store_steady_ms();
                const auto* l = state_.earliest_observed_lease();
                if (!l || detail::store_lease_observed_expiry(*l) > now) return f(std::as_const(state_));
                auto view = state_;
                for (auto it = view.leases.begin(); it != view.leases.end();) {
                    if (detail::store_lease_observed_expiry(it->second) > now) {
                        ++it;
                        continue;
                    }
                    for (const auto& k : it->second.keys)
                        view.kvs.erase(k);
                    it = view.leases.erase(it);
                }
                f(std::as_const(view));
            });
            return;
        }
        for (int attempt = 0; attempt < 3; ++attempt) {
            bool expired = needs_reap();
            if (!expired) {
                locked(false, ec, [&] {
                    expired = needs_reap(); // noticed while catching up
                    if (expired) return;
                    std::lock_guard lk(mu_);
                    f(std::as_const(state_));
                });
                if (ec || !expired) return;
            }
            write_op(ec, [] {});
            if (ec) return;
        }
        locked(false, ec, [&] {
            std::lock_guard lk(mu_);
            f(std::as_const(state_));
        });
    }

    template <class F> void write_op(std::error_code& ec, F&& f) {
        last_error_detail().clear();
        if (opts_.read_only) {
            ec = errc::read_only;
            last_error_detail() = dir_.string() + " was opened read-only";
            return;
        }
        locked(true, ec, [&] {
            reap(ec);
            if (!ec) f();
            if (!ec || ec == errc::unknown_outcome) maybe_compact();
        });
        wake();
    }

    // ---- clock and poller ---------------------------------------------------------------------

    std::int64_t now_ms() const {
        struct timespec ts {};
        ::clock_gettime(clock_ == lease_clock::boottime ? CLOCK_BOOTTIME : CLOCK_REALTIME, &ts);
        return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    }

    void wake() {
        {
            std::lock_guard lk(mu_);
            wake_ = true;
        }
        cv_.notify_all();
    }

    bool log_changed() {
        struct ::stat st {};
        if (io_->stat(file(log_file_name).c_str(), &st) != 0) return false;
        std::lock_guard lk(mu_);
        return st.st_ino != log_ino_ || st.st_dev != log_dev_ || static_cast<std::uint64_t>(st.st_size) > pos_;
    }

    void run() {
        while (true) {
            {
                std::unique_lock lk(mu_);
                cv_.wait_for(lk, opts_.poll_interval, [&] { return wake_ || stop_; });
                if (stop_) return;
                wake_ = false;
            }
            std::error_code ec;
            if (!opts_.read_only && needs_reap()) {
                write_op(ec, [] {});
            } else if (log_changed()) {
                locked(false, ec, [] {});
            }
            watchers_->pump([this](const std::string& prefix, store_revision next, std::vector<watch_event>& out,
                                   store_revision& next_after) {
                std::lock_guard g(mu_);
                if (!history_.collect(prefix, next, out)) return false;
                next_after = std::max(next, state_.rev + 1);
                return true;
            });
        }
    }

    std::filesystem::path dir_;
    directory_store_options opts_;
    std::shared_ptr<file_io> io_;
    std::shared_ptr<detail::dir_process_lock> plock_; // null: read-only without a lock file
    std::mutex solo_mu_;                              // serializes catch-up when plock_ is null

    mutable std::mutex mu_; // everything below
    std::condition_variable cv_;
    int log_fd_ = -1;
    dev_t log_dev_ = 0;
    ino_t log_ino_ = 0;
    std::uint64_t pos_ = 0; // end of the valid frames read so far
    std::size_t frames_since_snapshot_ = 0;
    lease_clock clock_ = lease_clock::realtime;
    std::string identity_;
    std::uint64_t torn_ = 0; // bytes of a torn tail after pos_, as last seen
    // The log inode whose directory entry this object knows to be durable (append syncs the
    // directory before writing into any other). Written with the store lock held.
    dev_t dir_synced_dev_ = 0;
    ino_t dir_synced_ino_ = 0;
    detail::store_state state_;
    detail::store_history history_;
    std::shared_ptr<detail::store_watchers> watchers_ = std::make_shared<detail::store_watchers>();
    bool stop_ = false;
    bool wake_ = false;
    std::thread poller_;
};

} // namespace quorumreg
