// quorumreg — the durable local hive: a registry persisted in a directory with a write-ahead
// journal and snapshots, shared by the processes of one node.
//
// @code
// quorumreg::hive h("/var/lib/myapp/hive");              // creates (first run) or recovers
// h.set_value("Software/App", "Port", quorumreg::value::dword(8080)); // durable on return
// auto sub = h.watch("Software", quorumreg::watch_scope::subtree, on_change); // sees other processes too
// @endcode
//
// Guarantees
// - Durability: commit() returns after the journal record is on disk (fdatasync). Threads
//   committing at the same time share one write and one sync (group commit). With
//   hive_options::sync_interval > 0 the hive syncs at most that often instead, and a power
//   loss may lose the commits of the last interval (a process crash loses nothing).
// - Crash consistency: reopening after kill -9 or power loss (unsynced writes lost, any
//   512-byte sector of an unsynced write torn, in any order; unsynced renames undone) yields
//   exactly a prefix of the committed transactions that contains every acknowledged one. Each
//   group-commit batch is one frame whose CRC covers its header (detail/hive_format.hpp); a
//   torn tail — bytes no acknowledged commit can have written — is cut; a damaged frame that
//   had been durable (a later frame says so) is errc::corrupt_data, never skipped or cut. A
//   corrupt newest snapshot falls back to the previous generation (snapshot + journals are
//   kept for one generation). A hive whose journals were deleted is refused, not restarted.
// - Reads never write: hive_options::read_only opens without creating, locking exclusively,
//   cutting or rewriting anything (a torn tail is reported by torn_tail()), also on a
//   read-only copy. hive_options::create = false makes a missing hive errc::not_found.
// - Several processes may open the same directory. Writers are serialized by a
//   Boost.Interprocess file_lock on `hive.lock`; before validating a transaction a writer
//   reads every record other processes appended, so optimistic checks (require_revision)
//   see the latest state. Readers see other processes' commits on their next access (a
//   shared, memory-mapped commit counter makes the check one memory load), and watches fire
//   for other processes' changes within hive_options::poll_interval.
// - A directory may be opened once per process (POSIX record locks are per process, so two
//   opens would silently share one lock): a second open, by any path (a symlink, a bind
//   mount), reports errc::lock_failed. Directories are identified by device and inode.
// - Files are created 0600 inside a 0700 directory. A hive written by a newer format version
//   is refused with errc::unsupported_version. A failed write/sync/rename (ENOSPC, EIO) fails
//   that commit with the error and leaves the hive usable with every acknowledged change.
//
// Readers never wait for a sync: a commit validates against the in-memory tree, writes and
// syncs the journal without holding the tree lock, and only then applies.
//
// Layout: hive.lock, hive.meta (mapped counters, a cache), hive.id (the hive's identity,
// written once its first journal is durable), snapshot.<gen> (state at the start of
// generation gen), journal.<gen> (frames of generation gen, kept zero-filled ahead of the
// write position: detail/hive_journal.hpp).
//
// Parts: detail/hive_format.hpp (bytes), detail/hive_recovery.hpp (pure recovery decisions),
// detail/hive_journal.hpp (one journal file), detail/group_commit.hpp (the writer queue),
// detail/hive_meta.hpp (shared counters, the per-process open registry); this file is the
// engine that ties them together.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/detail/group_commit.hpp>
#include <quorumreg/detail/hive_format.hpp>
#include <quorumreg/detail/hive_journal.hpp>
#include <quorumreg/detail/hive_meta.hpp>
#include <quorumreg/detail/hive_recovery.hpp>
#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/file_io.hpp>
#include <quorumreg/events.hpp>
#include <quorumreg/metrics.hpp>
#include <quorumreg/registry.hpp>

#include <boost/interprocess/sync/file_lock.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>

namespace quorumreg {

/// Settings of a hive (durability, limits, I/O seam, metrics, events).
struct hive_options {
    registry_limits limits{}; ///< name, depth and value size limits
    /// 0 (default): every commit is durable before it returns. > 0: sync at most this often
    /// (relaxed mode: a power loss may lose the last interval's commits).
    std::chrono::milliseconds sync_interval{0};
    /// Journal size that triggers a snapshot and a new generation.
    std::uint64_t snapshot_threshold = 16 * 1024 * 1024;
    /// How often a hive with watches checks for other processes' commits.
    std::chrono::milliseconds poll_interval{5};
    /// Create the hive when the directory is missing or holds no hive yet (the default: an
    /// application's own node-local state). false: a missing hive is errc::not_found.
    bool create = true;
    /// Open for reading only: nothing is created, locked exclusively, cut or rewritten (a torn
    /// tail is reported by torn_tail(), not cut); works on a read-only copy; commits fail with
    /// errc::read_only. Other processes' commits are seen while their hive.meta is readable.
    bool read_only = false;
    /// File-call seam (tests inject failures); nullptr = POSIX.
    file_io* io = nullptr;
    /// Where to report commit latency, group-commit batch sizes and syncs (docs/metrics.md);
    /// nullptr (default): no metrics, no cost. Must outlive the hive.
    metrics_registry* metrics = nullptr;
    /// The `hive` label of those metrics; empty: the hive's directory.
    std::string metrics_name;
    /// Where to report failures the hive handles itself (docs/events.md, ids 1001-1004);
    /// nullptr (default): none. Must outlive the hive.
    event_log* events = nullptr;
};

/// The durable, multi-process registry of one node (see the header comment; `hive` is
/// basic_hive<case_insensitive_traits>).
template <class Traits = case_insensitive_traits> class basic_hive : public registry_api<basic_hive<Traits>, Traits> {
    friend class registry_api<basic_hive<Traits>, Traits>;
    friend struct detail::engine_access;

public:
    using tree_type = detail::registry_tree<Traits>; ///< the in-memory tree (internal)

    /// Opens (with options.create, creating if needed) the hive in `dir`, recovering from the
    /// journal. Throws quorumreg::error on failure.
    explicit basic_hive(const std::filesystem::path& dir, hive_options opts = {}) : opts_(opts), tree_(opts.limits) {
        std::error_code ec;
        std::string why;
        init(dir, ec, why);
        if (ec) {
            shutdown();
            throw error(ec, "open hive \"" + dir.string() + "\"" + (why.empty() ? "" : " (" + why + ")"));
        }
    }

    /// Non-throwing open: nullptr and `ec` on failure.
    static std::unique_ptr<basic_hive> open(const std::filesystem::path& dir, hive_options opts, std::error_code& ec) {
        try {
            auto h = std::make_unique<basic_hive>(dir, opts);
            ec.clear();
            return h;
        } catch (const error& e) {
            ec = e.code();
            return nullptr;
        }
    }

    basic_hive(const basic_hive&) = delete;
    basic_hive& operator=(const basic_hive&) = delete;
    ~basic_hive() { shutdown(); }

    /// The hive's directory, as given.
    const std::filesystem::path& directory() const noexcept { return dir_; }
    /// The limits every write is checked against.
    const registry_limits& limits() const noexcept { return tree_.limits(); }
    /// Whether it was opened with options.read_only (every write is refused).
    bool read_only() const noexcept { return opts_.read_only; }
    /// The snapshot generation now on disk (advanced by every compaction).
    std::uint64_t generation() const {
        std::lock_guard lk(io_mu_);
        return gen_;
    }
    /// Bytes of a torn tail a read-only open found after the last valid frame and left in
    /// place (a writer's open cuts them: nothing there was acknowledged). 0: none.
    std::uint64_t torn_tail() const {
        std::lock_guard lk(io_mu_);
        return torn_tail_;
    }
    /// The hive's identity (hive.id, random, written when the hive was created); empty for a
    /// hive made by an older build and opened read-only since.
    const std::string& identity() const noexcept { return identity_; }

    /// Catches up with commits made by other processes now (reads do this implicitly).
    void refresh() {
        std::error_code ec;
        std::string why;
        refresh_impl(ec, why);
        if (ec) throw error(ec, "refresh hive \"" + dir_.string() + "\" (" + why + ")");
    }
    /// Non-throwing form: errors go to `ec`.
    void refresh(std::error_code& ec) {
        std::string why;
        refresh_impl(ec, why);
    }

    /// Writes a snapshot and starts a new journal generation now.
    void compact() {
        std::error_code ec;
        std::string why;
        compact_impl(ec, why);
        if (ec) throw error(ec, "compact hive \"" + dir_.string() + "\" (" + why + ")");
    }
    /// Non-throwing form: errors go to `ec`.
    void compact(std::error_code& ec) {
        std::string why;
        compact_impl(ec, why);
    }

    /// Forces pending relaxed-mode commits to disk.
    void sync() {
        std::error_code ec;
        std::string why;
        sync_impl(ec, why);
        if (ec) throw error(ec, "sync hive \"" + dir_.string() + "\" (" + why + ")");
    }
    /// Non-throwing form: errors go to `ec`.
    void sync(std::error_code& ec) {
        std::string why;
        sync_impl(ec, why);
    }

private:
    // ---- engine hooks for registry_api (private: the registry interface is the way in) ------
    template <class F> auto read(F&& f) const {
        auto* self = const_cast<basic_hive*>(this);
        if (self->changed_elsewhere()) {
            std::error_code ec;
            std::string why;
            self->refresh_impl(ec, why); // a failed catch-up leaves the last good state readable
            self->events_.drain();
        }
        std::shared_lock lk(mu_);
        return f(tree_);
    }

    std::uint64_t do_commit(const std::vector<operation>& ops, std::error_code& ec, std::string& why) {
        ec.clear();
        if (ops.empty()) return this->revision();
        if (opts_.read_only) {
            ec = errc::read_only;
            why = "hive \"" + dir_.string() + "\" was opened read-only";
            return 0;
        }
        pending me{&ops};
        const auto started = metrics_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        group_.submit(me, [this](std::vector<pending*>& batch) { run_batch(batch); });
        events_.drain();
        ec = me.ec;
        why = me.why;
        if (metrics_) {
            (ec ? metrics_->failures : metrics_->commits).inc();
            metrics_->latency.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
        return ec ? 0 : me.revision;
    }

    subscription do_watch(detail::watch_filter f, std::function<void(const change_event&)> cb) {
        auto s = events_.subscribe(std::move(f), std::move(cb));
        start_poller();
        return s;
    }

    struct pending {
        const std::vector<operation>* ops;
        std::error_code ec{};
        std::string why{};
        std::uint64_t revision = 0;
    };

    file_io& io() const noexcept { return opts_.io ? *opts_.io : file_io::system(); }
    std::string path_of(const std::string& name) const { return (dir_ / name).string(); }
    bool writer() const noexcept { return !opts_.read_only; }

    // ---- open ---------------------------------------------------------------------------------

    void init(const std::filesystem::path& dir, std::error_code& ec, std::string& why) {
        namespace fs = std::filesystem;
        dir_ = fs::absolute(dir).lexically_normal();
        if (opts_.metrics) register_metrics(*opts_.metrics);
        struct stat st {};
        if (io().stat(dir_.c_str(), &st) != 0) {
            // Only "does not exist" means absent; any other failure is reported as it is.
            if (errno != ENOENT) {
                ec = detail::io_failure(errno, "stat", dir_.string(), &why);
                return;
            }
            if (opts_.read_only || !opts_.create) {
                ec = errc::not_found;
                why = "no hive at " + dir_.string();
                return;
            }
            if (io().mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
                if (errno == ENOENT) { // only the hive's own directory is created, never its parents
                    ec = errc::not_found;
                    why = "cannot create the hive: its parent directory " + dir_.parent_path().string() +
                          " does not exist";
                    return;
                }
                ec = detail::io_failure(errno, "create directory", dir_.string(), &why);
                return;
            }
            // The new entry lives in the parent directory: sync it, or a power cut can undo
            // the hive's directory together with every commit acknowledged inside it.
            auto parent = dir_.parent_path();
            int pfd = io().open(parent.c_str(), O_RDONLY | O_DIRECTORY, 0);
            if (pfd < 0 || io().fsync(pfd) != 0) {
                ec = detail::io_failure(errno, "fsync directory", parent.string(), &why);
                if (pfd >= 0) io().close(pfd);
                return;
            }
            io().close(pfd);
            if (io().stat(dir_.c_str(), &st) != 0) {
                ec = detail::io_failure(errno, "stat", dir_.string(), &why);
                return;
            }
        }
        if (!S_ISDIR(st.st_mode)) {
            ec = errc::invalid_argument;
            why = dir_.string() + " is not a directory";
            return;
        }
        dir_id_ = {st.st_dev, st.st_ino};
        if (!detail::open_hive_registry::instance().insert(dir_id_)) {
            ec = errc::lock_failed;
            why = "already open in this process (perhaps by another path); share the hive object";
            return;
        }
        registered_ = true;
        if (!opts_.create || opts_.read_only) {
            // Decide before creating hive.lock or hive.meta in a directory that holds no hive.
            std::vector<std::uint64_t> snaps, journals;
            bool has_id = false;
            if ((ec = scan(snaps, journals, has_id, why))) return;
            if (snaps.empty() && journals.empty() && !has_id) {
                ec = errc::not_found;
                why = "no hive at " + dir_.string();
                return;
            }
        }
        if (opts_.read_only)
            open_read_only(ec, why);
        else
            open_writer(ec, why);
    }

    void open_writer(std::error_code& ec, std::string& why) {
        ::chmod(dir_.c_str(), 0700);
        // Lock and meta files: created 0600 before Boost locks one and we map the other.
        for (const char* name : {"hive.lock", "hive.meta"}) {
            auto p = path_of(name);
            int fd = io().open(p.c_str(), O_CREAT | O_RDWR, 0600);
            if (fd < 0) {
                ec = detail::io_failure(errno, "open", p, &why);
                return;
            }
            if (std::string_view(name) == "hive.meta") {
                struct stat st {};
                if (io().fstat(fd, &st) != 0)
                    ec = detail::io_failure(errno, "stat", p, &why);
                else if (st.st_size < 4096 && io().ftruncate(fd, 4096) != 0)
                    ec = detail::io_failure(errno, "size", p, &why);
                if (!ec) {
                    void* a = io().mmap_shared(fd, sizeof(detail::hive_meta));
                    if (a == MAP_FAILED)
                        ec = detail::io_failure(errno, "mmap", p, &why);
                    else
                        meta_region_ = detail::shared_mapping(a, sizeof(detail::hive_meta));
                }
            }
            io().close(fd);
            if (ec) return;
        }
        auto lock_path = path_of("hive.lock");
        if (io().attach_lock(lock_path.c_str()) != 0) {
            ec = detail::io_failure(errno, "lock", lock_path, &why);
            return;
        }
        try {
            file_lock_ = boost::interprocess::file_lock(lock_path.c_str());
        } catch (const std::exception& e) {
            ec = errc::lock_failed;
            why = "file_lock " + lock_path + ": " + e.what();
            return;
        }
        meta_ = detail::hive_counters(static_cast<detail::hive_meta*>(meta_region_.get()));
        std::lock_guard lk(io_mu_);
        lock_file(ec, why);
        if (ec) return;
        recover(ec, why);
        file_lock_.unlock();
        if (!ec && opts_.sync_interval.count() > 0) start_poller();
    }

    void open_read_only(std::error_code& ec, std::string& why) {
        // Other processes' counters, if their hive.meta can be read; else a private copy (a
        // snapshot of the hive as it is now).
        auto mp = path_of("hive.meta");
        int mfd = io().open(mp.c_str(), O_RDONLY, 0);
        if (mfd >= 0) {
            struct stat st {};
            if (io().fstat(mfd, &st) == 0 && st.st_size >= static_cast<off_t>(sizeof(detail::hive_meta))) {
                void* a = io().mmap_shared_readonly(mfd, sizeof(detail::hive_meta));
                if (a != MAP_FAILED) meta_region_ = detail::shared_mapping(a, sizeof(detail::hive_meta));
            }
            io().close(mfd);
        }
        if (!meta_region_.get()) private_meta_ = std::make_unique<detail::hive_meta>();
        meta_ = detail::hive_counters(meta_region_.get() ? static_cast<detail::hive_meta*>(meta_region_.get())
                                                         : private_meta_.get());
        // A shared open-file-description lock on hive.lock keeps a writer's recovery (which
        // may cut a tail) out while we load; without a readable lock file we read unlocked.
        auto lp = path_of("hive.lock");
        int lfd = io().open(lp.c_str(), O_RDONLY, 0);
        struct flock fl {};
        fl.l_type = F_RDLCK;
        fl.l_whence = SEEK_SET;
        bool locked = false;
        if (lfd >= 0) {
            while (!(locked = ::fcntl(lfd, F_OFD_SETLKW, &fl) == 0) && errno == EINTR) {
            }
        }
        std::lock_guard lk(io_mu_);
        recover(ec, why);
        if (locked) {
            fl.l_type = F_UNLCK;
            ::fcntl(lfd, F_OFD_SETLK, &fl);
        }
        if (lfd >= 0) io().close(lfd);
    }

    void lock_file(std::error_code& ec, std::string& why) {
        try {
            file_lock_.lock();
        } catch (const std::exception& e) {
            ec = errc::lock_failed;
            why = std::string("hive.lock: ") + e.what();
        }
    }

    /// Generations present on disk, by kind, and whether hive.id exists. A listing that fails
    /// is an error: taking it for an empty directory would start the hive afresh.
    std::error_code scan(std::vector<std::uint64_t>& snapshots, std::vector<std::uint64_t>& journals, bool& has_id,
                         std::string& why) const {
        snapshots.clear();
        journals.clear();
        has_id = false;
        std::vector<std::string> names;
        if (io().list_directory(dir_.c_str(), names) != 0)
            return detail::io_failure(errno, "list directory", dir_.string(), &why);
        for (const auto& name : names) {
            // Only names gen_name() writes count; any other file is not a generation.
            std::uint64_t g = 0;
            if (detail::parse_gen_name(name, "snapshot", g)) snapshots.push_back(g);
            if (detail::parse_gen_name(name, "journal", g)) journals.push_back(g);
            if (name == "hive.id") has_id = true;
        }
        std::sort(snapshots.begin(), snapshots.end());
        std::sort(journals.begin(), journals.end());
        return {};
    }

    /// Loads snapshot `gen` into a fresh tree node. Returns the revision it holds.
    std::error_code load_snapshot(std::uint64_t gen, std::unique_ptr<typename tree_type::node>& root,
                                  std::uint64_t& revision, std::string& why) {
        auto p = path_of(detail::gen_name("snapshot", gen));
        int fd = io().open(p.c_str(), O_RDONLY, 0);
        if (fd < 0) return detail::io_failure(errno, "open", p, &why);
        struct stat st {};
        if (io().fstat(fd, &st) != 0) {
            auto e = detail::io_failure(errno, "stat", p, &why);
            io().close(fd);
            return e;
        }
        std::string data;
        auto ec = detail::read_at(io(), fd, data, static_cast<std::size_t>(st.st_size), 0, p, &why);
        io().close(fd);
        if (ec) return ec;
        std::string_view body;
        std::string w;
        if ((ec = detail::decode_snapshot(data, gen, revision, body, w))) {
            why = p + ": " + w;
            return ec;
        }
        root = std::make_unique<typename tree_type::node>();
        if (auto e = tree_.decode_subtree(body, *root, 0, w)) {
            why = p + ": " + w;
            return e == errc::unsupported_version ? e : make_error_code(errc::corrupt_data);
        }
        return {};
    }

    std::string encode_snapshot(std::uint64_t gen) const {
        std::string out = detail::encode_snapshot_header(gen, tree_.revision());
        out += tree_type::encode_subtree(tree_.root(), true);
        detail::byte_writer(out).u32le(detail::crc32c(out));
        return out;
    }

    /// Bytes a journal's zero tail grows by at a time: small hives (a low snapshot
    /// threshold) do not pay for a megabyte of zeros per generation.
    std::uint64_t prealloc_chunk() const noexcept {
        return std::clamp(opts_.snapshot_threshold, detail::journal_prealloc_min, detail::journal_prealloc_max);
    }

    std::error_code create_journal(std::uint64_t gen, std::string& why) {
        return detail::journal_file::create(io(), dir_.string(), gen, tree_.revision(), prealloc_chunk(), why);
    }

    std::error_code open_journal(std::uint64_t gen, bool* missing, std::string& why) {
        return journal_.open(io(), dir_.string(), gen, tree_.revision(), writer(), missing, why);
    }

    std::error_code write_identity(std::string& why) {
        std::string id = detail::random_hex_id();
        if (auto ec = detail::atomic_replace(io(), dir_.string(), "hive.id", id + "\n", &why)) return ec;
        identity_ = id;
        return {};
    }

    void read_identity() {
        auto p = path_of("hive.id");
        int fd = io().open(p.c_str(), O_RDONLY, 0);
        if (fd < 0) return;
        std::string data, ignored;
        if (!detail::read_at(io(), fd, data, 64, 0, p, &ignored)) {
            while (!data.empty() && (data.back() == '\n' || data.back() == '\0'))
                data.pop_back();
            identity_ = data;
        }
        io().close(fd);
    }

    // ---- recovery -----------------------------------------------------------------------------

    /// Recovery (writer: under the exclusive file lock): the newest good snapshot, then every
    /// journal from its generation on; a writer cuts a torn tail of the last one. A corrupt
    /// snapshot falls back to the previous one (or to the empty state at generation 0) when
    /// the journals needed to roll forward from there are still present.
    void recover(std::error_code& ec, std::string& why) {
        std::vector<std::uint64_t> snaps, journals;
        bool has_id = false;
        if ((ec = scan(snaps, journals, has_id, why))) return;
        if (has_id) read_identity();
        if (snaps.empty() && journals.empty()) {
            if (has_id) {
                ec = errc::corrupt_data;
                why = dir_.string() + " has hive.id but no journal or snapshot (deleted?); refusing to start an "
                                      "empty hive over it";
                return;
            }
            if (opts_.read_only || !opts_.create) {
                ec = errc::not_found;
                why = "no hive at " + dir_.string();
                return;
            }
            tree_.load(std::make_unique<typename tree_type::node>(), 0);
            gen_ = 0;
            if ((ec = create_journal(0, why))) return;
            journals.push_back(0);
        }
        const std::uint64_t newest = std::max(snaps.empty() ? 0 : snaps.back(), journals.empty() ? 0 : journals.back());
        std::error_code first_ec;
        std::string first_why;
        std::vector<std::uint64_t> corrupt;
        bool loaded = false;
        for (auto c : detail::recovery_candidates(snaps, journals)) {
            if (c.empty_state) {
                tree_.load(std::make_unique<typename tree_type::node>(), 0);
                gen_ = 0;
                loaded = true;
                break;
            }
            std::unique_ptr<typename tree_type::node> root;
            std::uint64_t rev = 0;
            std::string w;
            auto e = load_snapshot(c.generation, root, rev, w);
            // Only a checksum or format failure is evidence of corruption; an I/O error
            // (EIO, ENOSPC, EACCES reading it) is reported, not answered by falling back.
            if (e && e != errc::corrupt_data) {
                ec = e;
                why = w;
                return;
            }
            if (e) {
                if (!first_ec) {
                    first_ec = e;
                    first_why = w;
                }
                corrupt.push_back(c.generation);
                continue;
            }
            tree_.load(std::move(root), rev);
            gen_ = c.generation;
            loaded = true;
            break;
        }
        if (!loaded) {
            ec = first_ec ? first_ec : make_error_code(errc::corrupt_data);
            why = (first_why.empty() ? std::string("journal generations are missing") : first_why) +
                  " and no earlier generation to recover from";
            return;
        }
        while (true) {
            bool missing = false;
            if ((ec = open_journal(gen_, &missing, why))) return;
            if (missing) {
                // Only the newest may be missing (a crash mid-compaction): its snapshot is the state.
                if (!writer()) break;
                if ((ec = create_journal(gen_, why))) return;
                continue;
            }
            std::vector<change_event> ignored;
            if ((ec = read_frames(true, ignored, why))) return;
            if (gen_ >= newest) break;
            ++gen_;
        }
        if (!writer()) {
            if (private_meta_) {
                meta_.generation().store(gen_);
                meta_.journal_end().store(journal_.offset());
            }
            seen_seq_.store(meta_.seq().load(), std::memory_order_release);
            return;
        }
        for (auto g : corrupt) { // keep for forensics, out of recovery's way
            auto bad = path_of(detail::gen_name("snapshot", g));
            io().rename(bad.c_str(), (bad + ".corrupt").c_str());
        }
        // What recovery read may still be only in the page cache (after kill -9): one sync
        // makes it durable, so new frames may claim every earlier frame as synced.
        if ((ec = journal_.sync(why))) return;
        journal_.mark_durable(journal_.next_seq());
        if (!has_id && (ec = write_identity(why))) return;
        meta_.set_magic();
        meta_.generation().store(gen_);
        meta_.synced_frames().store(journal_.durable_seq());
        publish_end(true);
        meta_.seq().fetch_add(1);
        seen_seq_.store(meta_.seq().load(), std::memory_order_release);
        if (journal_.version() == detail::hive_format_v1) {
            // Older journals: continue in the current format from a fresh generation.
            if ((ec = compact_locked(why))) why = "upgrading the journal format: " + why;
        }
    }

    /// Publishes how far the current journal holds acknowledged frames; readers in other
    /// processes never read past it (so they never see a frame whose sync failed).
    /// `reset_write`: also declare nothing written past it (a new generation, or recovery
    /// having cut or verified the tail).
    void publish_end(bool reset_write = false) {
        if (reset_write) meta_.write_end().store(journal_.offset(), std::memory_order_release);
        meta_.journal_end().store(journal_.offset(), std::memory_order_release);
    }

    /// Reads frames from the journal's position, applying each. `full` (recovery): to the end
    /// of the file; a writer cuts a torn tail, a read-only open reports it; corruption is
    /// refused. Otherwise the limit comes from the shared counters (no stat, and the zero tail
    /// is not read): readers stop at the acknowledged end; a writer also takes what a writer
    /// that died mid-commit left past it (applied if valid, cut if torn).
    std::error_code read_frames(bool full, std::vector<change_event>& events, std::string& why) {
        const bool as_writer = writer() && (full || file_locked_);
        std::uint64_t limit = 0;
        auto g1 = meta_.generation().load(std::memory_order_acquire);
        auto end = meta_.journal_end().load(std::memory_order_acquire);
        auto wend = meta_.write_end().load(std::memory_order_acquire);
        auto g2 = meta_.generation().load(std::memory_order_acquire);
        if (!full && g1 == gen_ && g2 == gen_) {
            limit = as_writer ? std::max(end, wend) : end;
        } else if (auto ec = journal_.size(limit, why)) {
            return ec; // an older journal is complete; recovery trusts only the file
        }
        const auto from = journal_.offset();
        if (limit <= from) return {};
        std::string data;
        if (auto ec = journal_.read(from, limit, data, why)) return ec;
        const auto version = journal_.version();
        auto s = detail::scan_journal(version, journal_.header().salt, data, journal_.next_seq());
        for (const auto& f : s.frames) {
            auto at = from + f.offset;
            std::string apply_why;
            auto e = detail::for_each_transaction(
                version, f.payload, [&](std::uint64_t rev, const std::vector<operation>& ops) -> std::error_code {
                    if (rev != tree_.revision() + 1) return errc::corrupt_data;
                    std::unique_lock lk(mu_);
                    if (tree_.apply(ops, events, apply_why)) return errc::closed; // a marker, not returned
                    return {};
                });
            if (e == errc::unsupported_version) {
                why = journal_.path() + ": record format version is newer than this build";
                return e;
            }
            if (e == errc::closed) {
                why = journal_.path() + ": record at offset " + std::to_string(at) + " does not apply: " + apply_why;
                return errc::corrupt_data;
            }
            if (e) {
                why = journal_.path() + ": record at offset " + std::to_string(at) + " is out of sequence";
                return errc::corrupt_data;
            }
            journal_.advance(at + f.size, f.seq + 1);
        }
        journal_.mark_durable(s.durable_seq);
        const auto bad_at = from + s.end;
        if (s.tail == detail::journal_tail::corrupt && (full || as_writer)) {
            why = journal_.path() + ": corrupt record at offset " + std::to_string(bad_at) +
                  " followed by valid records (at offset " + std::to_string(from + s.evidence) +
                  ") that had been acknowledged";
            return errc::corrupt_data;
        }
        if (s.tail == detail::journal_tail::torn) {
            if (as_writer) {
                // Nothing from here on can have been acknowledged: cut it.
                if (auto ec = journal_.cut(bad_at, why)) return ec;
                note(event_id::hive_torn_tail_cut, journal_.path() + ": torn tail of " + std::to_string(s.tail_bytes) +
                                                       " bytes at offset " + std::to_string(bad_at) +
                                                       " cut (no acknowledged commit was in it)");
            } else if (full) {
                torn_tail_ = s.tail_bytes;
            }
        }
        return {};
    }

    bool changed_elsewhere() const noexcept {
        return meta_.attached() &&
               meta_.seq().load(std::memory_order_acquire) != seen_seq_.load(std::memory_order_acquire);
    }

    /// Applies other processes' commits (reader mode, no file lock).
    void refresh_impl(std::error_code& ec, std::string& why) {
        ec.clear();
        std::lock_guard lk(io_mu_);
        if (!journal_.is_open()) {
            ec = errc::closed;
            why = "the hive is not open";
            return;
        }
        catch_up(ec, why);
    }

    /// Caller holds io_mu_ (and, as a writer, the file lock: file_locked_).
    void catch_up(std::error_code& ec, std::string& why) {
        auto seq = meta_.seq().load(std::memory_order_acquire);
        std::vector<change_event> events;
        while (true) {
            if ((ec = read_frames(false, events, why))) break;
            if (meta_.generation().load(std::memory_order_acquire) <= gen_) break;
            // Another process started a new generation; our journal is complete.
            bool missing = false;
            detail::journal_file next;
            ec = next.open(io(), dir_.string(), gen_ + 1, tree_.revision(), writer(), &missing, why);
            if (!ec && !missing) {
                ++gen_;
                journal_.swap(next);
                continue;
            }
            // We fell more than a generation behind: reload from the newest snapshot.
            ec.clear();
            std::unique_ptr<typename tree_type::node> root;
            std::uint64_t rev = 0;
            auto g = meta_.generation().load(std::memory_order_acquire);
            if ((ec = load_snapshot(g, root, rev, why))) break;
            {
                std::unique_lock lk(mu_);
                tree_.load(std::move(root), rev);
            }
            events.push_back({change_kind::subtree_replaced, "", {}, rev});
            gen_ = g;
            if ((ec = open_journal(gen_, nullptr, why))) break;
        }
        if (!ec) seen_seq_.store(seq, std::memory_order_release);
        std::unique_lock lk(mu_); // enqueue in revision order relative to local commits
        events_.enqueue(std::move(events));
    }

    // ---- commit ---------------------------------------------------------------------------------

    void run_batch(std::vector<pending*>& batch) {
        std::lock_guard q(commit_mu_);
        std::lock_guard lk(io_mu_);
        std::error_code ec;
        std::string why;
        auto fail_all = [&] {
            for (auto* p : batch) {
                p->ec = ec;
                p->why = why;
            }
        };
        if (broken_ || !journal_.is_open()) {
            ec = errc::closed;
            why = "an earlier failed write could not be undone; reopen the hive";
            return fail_all();
        }
        lock_file(ec, why);
        if (ec) return fail_all();
        file_locked_ = true;
        struct unlock_on_exit {
            basic_hive* h;
            ~unlock_on_exit() {
                h->file_locked_ = false;
                h->file_lock_.unlock();
            }
        } unlocker{this};
        catch_up(ec, why);
        if (ec) return fail_all();
        // Pass 1: validate each transaction against the state the previous ones leave.
        std::vector<typename tree_type::undo_log> undo(batch.size());
        std::vector<pending*> ok;
        detail::batch_builder frame_payload;
        {
            std::unique_lock lk2(mu_);
            std::vector<change_event> scratch;
            for (std::size_t i = 0; i < batch.size(); ++i) {
                auto* p = batch[i];
                p->ec = tree_.apply(*p->ops, scratch, p->why, &undo[i]);
                if (p->ec) continue;
                p->revision = tree_.revision();
                ok.push_back(p);
                frame_payload.add(p->revision, *p->ops);
            }
            for (std::size_t i = batch.size(); i-- > 0;)
                if (!batch[i]->ec) tree_.rollback_committed(undo[i]);
        }
        if (ok.empty()) return;
        // Pass 2: make the batch durable as one frame; readers keep reading meanwhile.
        const auto seq = journal_.next_seq();
        const auto synced = std::min(seq, std::max(journal_.durable_seq(), meta_.synced_frames().load()));
        std::string frame;
        detail::append_frame(frame, journal_.header().salt, seq, synced, frame_payload.payload());
        const auto at = journal_.offset();
        ec = journal_.ensure_room(frame.size(), prealloc_chunk(), why);
        if (!ec) {
            // Declared before writing, so if this process dies mid-write the next writer reads
            // (and applies or cuts) these bytes rather than leave them behind its own frames.
            auto we = meta_.write_end();
            we.store(std::max(we.load(std::memory_order_relaxed), at + frame.size()), std::memory_order_release);
            ec = journal_.write(frame, why);
        }
        bool synced_now = false;
        if (!ec) {
            dirty_ = true;
            if (sync_due()) {
                if (!(ec = journal_.sync(why))) {
                    mark_synced();
                    synced_now = true;
                }
            }
        }
        if (ec) {
            // Nothing of this batch was acknowledged: cut the journal back so a later reader
            // can never see it (the zero tail goes too; the next commit regrows it).
            if (!journal_.truncate_unsynced(at)) {
                // Could not cut it back: invalidate the frame's magic instead, so no process
                // ever applies it; if even that fails, stop writing.
                std::string zero(4, '\0'), ignored;
                if (detail::write_all(io(), journal_.fd(), zero, static_cast<off_t>(at), journal_.path(), &ignored) ||
                    io().fdatasync(journal_.fd()) != 0)
                    broken_ = true;
            }
            for (auto* x : ok) {
                x->ec = ec;
                x->why = why;
            }
            note(event_id::hive_write_failed, std::to_string(ok.size()) + " transaction(s) failed: " + why);
            if (broken_) note_broken();
            return;
        }
        journal_.advance(at + frame.size(), seq + 1);
        if (metrics_) {
            metrics_->batch_size.observe(static_cast<double>(ok.size()));
            metrics_->journal_bytes.set(static_cast<double>(journal_.offset()));
        }
        if (synced_now) {
            journal_.mark_durable(seq + 1);
            meta_.synced_frames().store(seq + 1, std::memory_order_release);
        }
        publish_end();
        // Pass 3: apply for real (cannot fail: same state, same operations).
        {
            std::unique_lock lk2(mu_);
            std::vector<change_event> events;
            for (auto* x : ok) {
                std::string w;
                tree_.apply(*x->ops, events, w);
            }
            events_.enqueue(std::move(events));
        }
        meta_.seq().fetch_add(1, std::memory_order_release);
        seen_seq_.store(meta_.seq().load(), std::memory_order_release);
        if (journal_.offset() >= opts_.snapshot_threshold) {
            std::string cwhy;
            // A failed compaction keeps the current journal; nothing is lost.
            if (compact_locked(cwhy)) {
                note(event_id::hive_compaction_failed, "snapshot failed, journal kept: " + cwhy);
                if (broken_) note_broken();
            }
        }
    }

    void note(event_id id, std::string message) const {
        if (opts_.events) opts_.events->emit(id, dir_.string(), std::move(message));
    }
    void note_broken() const {
        note(event_id::hive_broken,
             "a failed write could not be undone; writes are refused until the hive is reopened");
    }

    void register_metrics(metrics_registry& m) {
        const metric_labels l{{"hive", opts_.metrics_name.empty() ? dir_.string() : opts_.metrics_name}};
        metrics_.reset(new hive_metrics{
            m.add_counter("quorumreg_hive_commits_total", "Hive transactions committed by this process.", l),
            m.add_counter("quorumreg_hive_commit_failures_total", "Hive transactions that failed (nothing applied).",
                          l),
            m.add_counter("quorumreg_hive_syncs_total", "fdatasync calls on the hive journal by this process.", l),
            m.add_counter("quorumreg_hive_compactions_total", "Snapshots written (new journal generations).", l),
            m.add_histogram("quorumreg_hive_commit_seconds", "Hive commit latency, submit to durable return.",
                            latency_buckets(), l),
            m.add_histogram("quorumreg_hive_commit_batch_size", "Transactions per group-commit journal frame.",
                            power_of_two_buckets(10), l),
            m.add_gauge("quorumreg_hive_journal_bytes", "Size of the current journal generation.", l)});
    }

    bool sync_due() const {
        if (opts_.sync_interval.count() == 0) return true;
        return std::chrono::steady_clock::now() - last_sync_ >= opts_.sync_interval;
    }
    void mark_synced() {
        if (metrics_) metrics_->syncs.inc();
        dirty_ = false;
        last_sync_ = std::chrono::steady_clock::now();
    }

    void compact_impl(std::error_code& ec, std::string& why) {
        ec.clear();
        if (opts_.read_only) {
            ec = errc::read_only;
            why = "opened read-only";
            return;
        }
        {
            std::lock_guard q(commit_mu_);
            std::lock_guard lk(io_mu_);
            if (broken_ || !journal_.is_open()) {
                ec = errc::closed;
                why = "the hive is not usable; reopen it";
                return;
            }
            lock_file(ec, why);
            if (!ec) {
                file_locked_ = true;
                catch_up(ec, why);
                if (!ec) ec = compact_locked(why);
                file_locked_ = false;
                file_lock_.unlock();
            }
        }
        events_.drain();
    }

    void sync_impl(std::error_code& ec, std::string& why) {
        ec.clear();
        std::lock_guard lk(io_mu_);
        if (!journal_.is_open() || !dirty_) return;
        if (!(ec = journal_.sync(why))) mark_synced();
    }

    /// Snapshot + new generation. Caller holds io_mu_ and the file lock, and is caught up.
    std::error_code compact_locked(std::string& why) {
        std::error_code ec;
        if (dirty_) {
            if ((ec = journal_.sync(why))) return ec;
            mark_synced();
        }
        std::string snap;
        {
            std::shared_lock lk(mu_);
            snap = encode_snapshot(gen_ + 1);
        }
        // A failed compaction must leave no part of generation gen_ + 1 behind: recovery
        // prefers the newest snapshot, and commits that go on into journal.<gen_> would be
        // lost behind it. If the half-made files cannot be removed (durably), stop writing.
        auto undo = [&] {
            bool removed = false;
            for (const char* kind : {"snapshot", "journal"}) {
                auto f = path_of(detail::gen_name(kind, gen_ + 1));
                if (io().unlink(f.c_str()) == 0)
                    removed = true;
                else if (errno != ENOENT)
                    broken_ = true;
            }
            if (!removed) return;
            int dfd = io().open(dir_.c_str(), O_RDONLY | O_DIRECTORY, 0);
            if (dfd < 0 || io().fsync(dfd) != 0) broken_ = true;
            if (dfd >= 0) io().close(dfd);
        };
        if ((ec = detail::atomic_replace(io(), dir_.string(), detail::gen_name("snapshot", gen_ + 1), snap, &why)) ||
            (ec = create_journal(gen_ + 1, why))) {
            undo();
            return ec;
        }
        detail::journal_file next;
        if ((ec = next.open(io(), dir_.string(), gen_ + 1, tree_.revision(), true, nullptr, why))) {
            undo();
            return ec;
        }
        ++gen_;
        if (metrics_) metrics_->compactions.inc();
        journal_.swap(next);                                       // the old journal closes with `next`
        meta_.generation().store(gen_, std::memory_order_release); // before the new end: see read_frames
        meta_.synced_frames().store(0, std::memory_order_release);
        publish_end(true);
        meta_.seq().fetch_add(1, std::memory_order_release);
        seen_seq_.store(meta_.seq().load(), std::memory_order_release);
        // Keep one previous generation as the fallback for a corrupt newest snapshot.
        std::vector<std::uint64_t> snaps, journals;
        bool has_id = false;
        std::string ignored;
        if (!scan(snaps, journals, has_id, ignored)) {
            for (auto g : snaps)
                if (g + 1 < gen_) io().unlink(path_of(detail::gen_name("snapshot", g)).c_str());
            for (auto g : journals)
                if (g + 1 < gen_) io().unlink(path_of(detail::gen_name("journal", g)).c_str());
        }
        return {};
    }

    // ---- background threads ---------------------------------------------------------------------

    void start_poller() {
        std::lock_guard lk(thread_mu_);
        if (poller_.joinable()) return;
        poller_ = std::thread([this] {
            std::unique_lock lk2(thread_mu_);
            while (!stopping_) {
                thread_cv_.wait_for(lk2, opts_.poll_interval);
                if (stopping_) break;
                lk2.unlock();
                if (opts_.sync_interval.count() > 0) flush_if_due();
                if (changed_elsewhere()) {
                    std::error_code ec;
                    std::string why;
                    refresh_impl(ec, why);
                    events_.drain();
                }
                lk2.lock();
            }
        });
    }

    void flush_if_due() {
        std::lock_guard lk(io_mu_);
        std::string why;
        if (dirty_ && sync_due() && journal_.is_open() && !journal_.sync(why)) mark_synced();
    }

    void shutdown() {
        {
            std::lock_guard lk(thread_mu_);
            stopping_ = true;
        }
        thread_cv_.notify_all();
        if (poller_.joinable()) poller_.join();
        std::error_code ec;
        std::string why;
        sync_impl(ec, why); // a destructor cannot report it; sync() before closing does
        {
            std::lock_guard lk(io_mu_);
            journal_.close();
        }
        if (registered_) {
            detail::open_hive_registry::instance().erase(dir_id_);
            registered_ = false;
        }
    }

    hive_options opts_;
    /// Series in opts_.metrics, looked up once at open; nullptr when metrics are off.
    struct hive_metrics {
        counter& commits;
        counter& failures;
        counter& syncs;
        counter& compactions;
        histogram& latency;
        histogram& batch_size;
        gauge& journal_bytes;
    };
    std::unique_ptr<hive_metrics> metrics_;
    std::filesystem::path dir_;
    detail::open_hive_registry::id dir_id_{};
    mutable std::shared_mutex mu_; // the tree
    tree_type tree_;
    detail::event_dispatcher<Traits> events_;

    mutable std::mutex io_mu_; // journal position, generation, file lock use
    std::mutex commit_mu_;
    boost::interprocess::file_lock file_lock_;
    bool file_locked_ = false; // under io_mu_: this thread holds file_lock_ exclusively
    detail::shared_mapping meta_region_;
    std::unique_ptr<detail::hive_meta> private_meta_; // read-only open without a readable hive.meta
    detail::hive_counters meta_;
    std::atomic<std::uint64_t> seen_seq_{0}; // written under io_mu_, read lock-free by changed_elsewhere()
    detail::journal_file journal_;
    std::uint64_t gen_ = 0;
    std::uint64_t torn_tail_ = 0;
    std::string identity_;
    bool dirty_ = false;
    bool broken_ = false;
    bool registered_ = false;
    std::chrono::steady_clock::time_point last_sync_{};

    detail::group_commit<pending> group_;

    std::mutex thread_mu_;
    std::condition_variable thread_cv_;
    std::thread poller_;
    bool stopping_ = false;
};

/// The default hive: case-insensitive, case-preserving names.
using hive = basic_hive<case_insensitive_traits>;

} // namespace quorumreg
