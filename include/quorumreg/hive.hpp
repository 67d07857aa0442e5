// quorumreg — the durable local hive: a registry persisted in a directory with a write-ahead
// journal and snapshots, shared by the processes of one node.
//
// @code
// quorumreg::hive h("/var/lib/myapp/hive");              // creates or recovers
// h.set_value("Software/App", "Port", quorumreg::value::dword(8080)); // durable on return
// auto sub = h.watch("Software", quorumreg::watch_scope::subtree, on_change); // sees other processes too
// @endcode
//
// Guarantees
// - Durability: commit() returns after the journal record is on disk (fdatasync). Threads
//   committing at the same time share one write and one sync (group commit). With
//   hive_options::sync_interval > 0 the hive syncs at most that often instead, and a power
//   loss may lose the commits of the last interval (a process crash loses nothing).
// - Crash consistency: reopening after kill -9 or power loss yields exactly a prefix of the
//   committed transactions that contains every acknowledged one. Each record carries a CRC;
//   a torn or corrupt tail is truncated; corruption followed by valid records is reported as
//   errc::corrupt_data, never skipped. A corrupt newest snapshot falls back to the previous
//   generation (snapshot + journals are kept for one generation).
// - Several processes may open the same directory. Writers are serialized by a
//   Boost.Interprocess file_lock on `hive.lock`; before validating a transaction a writer
//   reads every record other processes appended, so optimistic checks (require_revision)
//   see the latest state. Readers see other processes' commits on their next access (a
//   shared, memory-mapped commit counter makes the check one memory load), and watches fire
//   for other processes' changes within hive_options::poll_interval.
// - A directory may be opened once per process (POSIX record locks are per process, so two
//   opens would silently share one lock): a second open reports errc::lock_failed.
// - Files are created 0600 inside a 0700 directory. A hive written by a newer format version
//   is refused with errc::unsupported_version. A failed write/sync/rename (ENOSPC, EIO) fails
//   that commit with the error and leaves the hive usable with every acknowledged change.
//
// Readers never wait for a sync: a commit validates against the in-memory tree, writes and
// syncs the journal without holding the tree lock, and only then applies.
//
// Layout: hive.lock, hive.meta (mapped counters), snapshot.<gen> (state at the start of
// generation gen), journal.<gen> (records of generation gen).
//
// Journal tail: a journal is kept zero-filled ahead of its write position (written zeros,
// extended a chunk at a time with one sync), so a steady-state commit overwrites blocks that
// are already allocated and inside the file size, and its fdatasync has no inode size to
// commit. The records end where the first record header is invalid; when every byte from
// there to the end of the file is zero that is the clean end, not a torn write. Non-zero bytes
// there are a torn tail (truncated, as before) or, followed by a valid record, corruption.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/registry.hpp>

#include <boost/interprocess/sync/file_lock.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

namespace quorumreg {

struct hive_options {
    registry_limits limits{};
    /// 0 (default): every commit is durable before it returns. > 0: sync at most this often
    /// (relaxed mode: a power loss may lose the last interval's commits).
    std::chrono::milliseconds sync_interval{0};
    /// Journal size that triggers a snapshot and a new generation.
    std::uint64_t snapshot_threshold = 16 * 1024 * 1024;
    /// How often a hive with watches checks for other processes' commits.
    std::chrono::milliseconds poll_interval{5};
    /// File-call seam (tests inject failures); nullptr = POSIX.
    detail::file_io* io = nullptr;
};

namespace detail {

inline constexpr std::string_view journal_magic = "QRHJ";
inline constexpr std::string_view snapshot_magic = "QRHS";
inline constexpr std::uint8_t hive_format_version = 1;
inline constexpr std::uint32_t record_magic = 0x524A5251; // "QRJR" little-endian
inline constexpr std::size_t journal_header_size = 4 + 4 + 8 + 8 + 4;
inline constexpr std::size_t record_header_size = 12;
inline constexpr std::uint32_t max_record_size = 1u << 30;

/// Shared counters in hive.meta, mapped by every process that opens the hive.
struct hive_meta {
    std::uint64_t magic;
    std::uint64_t commit_seq; ///< bumped after each durable commit or generation change
    std::uint64_t generation;
    std::uint64_t journal_end; ///< end of acknowledged records in journal.<generation>
    /// How far a writer may have written into journal.<generation> (>= journal_end; more
    /// only after a writer died mid-commit). The next writer reads up to here instead of
    /// scanning the zero tail to the end of the file.
    std::uint64_t write_end;
};

/// Size of one zero-filled extension of a journal's tail (see the header comment).
inline constexpr std::uint64_t journal_prealloc_max = 1024 * 1024;
inline constexpr std::uint64_t journal_prealloc_min = 64 * 1024;

inline std::set<std::string>& open_hives() {
    static std::set<std::string> s;
    return s;
}
inline std::mutex& open_hives_mutex() {
    static std::mutex m;
    return m;
}

inline std::string gen_name(const char* kind, std::uint64_t gen) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s.%016llx", kind, static_cast<unsigned long long>(gen));
    return buf;
}

} // namespace detail

template <class Traits = case_insensitive_traits> class basic_hive : public registry_api<basic_hive<Traits>, Traits> {
public:
    using tree_type = detail::registry_tree<Traits>;

    /// Opens (creating if needed) the hive in `dir`, recovering from the journal.
    /// Throws quorumreg::error on failure.
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

    const std::filesystem::path& directory() const noexcept { return dir_; }
    const registry_limits& limits() const noexcept { return tree_.limits(); }
    std::uint64_t generation() const {
        std::lock_guard lk(io_mu_);
        return gen_;
    }

    /// Catches up with commits made by other processes now (reads do this implicitly).
    void refresh() {
        std::error_code ec;
        std::string why;
        refresh(ec, why);
        if (ec) throw error(ec, "refresh hive \"" + dir_.string() + "\" (" + why + ")");
    }

    /// Writes a snapshot and starts a new journal generation now.
    void compact() {
        std::error_code ec;
        std::string why;
        {
            std::lock_guard q(commit_mu_);
            std::lock_guard lk(io_mu_);
            lock_file(ec, why);
            if (!ec) {
                catch_up(true, ec, why);
                if (!ec) compact_locked(ec, why);
                file_lock_.unlock();
            }
        }
        events_.drain();
        if (ec) throw error(ec, "compact hive \"" + dir_.string() + "\" (" + why + ")");
    }

    /// Forces pending relaxed-mode commits to disk.
    void sync() {
        std::lock_guard lk(io_mu_);
        if (journal_fd_ >= 0 && dirty_) {
            if (io().fdatasync(journal_fd_) == 0) dirty_ = false;
        }
    }

    // ---- engine hooks for registry_api ---------------------------------------------------------
    template <class F> auto read(F&& f) const {
        auto* self = const_cast<basic_hive*>(this);
        if (self->changed_elsewhere()) {
            std::error_code ec;
            std::string why;
            self->refresh(ec, why); // a failed catch-up leaves the last good state readable
            self->events_.drain();
        }
        std::shared_lock lk(mu_);
        return f(tree_);
    }

    std::uint64_t do_commit(const std::vector<operation>& ops, std::error_code& ec, std::string& why) {
        ec.clear();
        if (ops.empty()) return this->revision();
        pending me{&ops};
        {
            // Group commit: one leader writes and syncs everything queued so far; the rest wait
            // on their own condition variable. The leader wakes exactly the members of its
            // batch and hands leadership to the first one queued meanwhile, so a batch costs
            // one wake-up per member instead of waking every waiter (32 writers on 2 cores
            // spent their time in that herd).
            std::unique_lock lk(queue_mu_);
            queue_.push_back(&me);
            if (!leader_active_) {
                leader_active_ = true;
                me.lead = true;
            }
            while (!me.done) {
                if (me.lead) {
                    me.lead = false;
                    std::vector<pending*> batch;
                    batch.swap(queue_);
                    lk.unlock();
                    run_batch(batch);
                    lk.lock();
                    for (auto* p : batch) {
                        p->done = true;
                        if (p != &me) p->cv.notify_one();
                    }
                    if (queue_.empty()) {
                        leader_active_ = false;
                    } else {
                        queue_.front()->lead = true;
                        queue_.front()->cv.notify_one();
                    }
                } else {
                    me.cv.wait(lk);
                }
            }
        }
        events_.drain();
        ec = me.ec;
        why = me.why;
        return ec ? 0 : me.revision;
    }

    subscription do_watch(detail::watch_filter f, std::function<void(const change_event&)> cb) {
        auto s = events_.subscribe(std::move(f), std::move(cb));
        start_poller();
        return s;
    }

private:
    struct pending {
        const std::vector<operation>* ops;
        std::error_code ec{};
        std::string why{};
        std::uint64_t revision = 0;
        bool done = false;            ///< under queue_mu_
        bool lead = false;            ///< under queue_mu_: run the next batch
        std::condition_variable cv{}; ///< signalled when done or lead is set
    };

    detail::file_io& io() const noexcept { return opts_.io ? *opts_.io : detail::file_io::system(); }
    std::string path_of(const std::string& name) const { return (dir_ / name).string(); }

    // ---- open / recovery -----------------------------------------------------------------------

    void init(const std::filesystem::path& dir, std::error_code& ec, std::string& why) {
        namespace fs = std::filesystem;
        dir_ = fs::absolute(dir).lexically_normal();
        if (io().mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
            ec = detail::io_failure(errno, "create directory", dir_.string(), &why);
            return;
        }
        ::chmod(dir_.c_str(), 0700);
        {
            std::lock_guard lk(detail::open_hives_mutex());
            if (!detail::open_hives().insert(dir_.string()).second) {
                ec = errc::lock_failed;
                why = "already open in this process; share the hive object";
                return;
            }
            registered_ = true;
        }
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
                else if (st.st_size < static_cast<off_t>(sizeof(detail::hive_meta)) && io().ftruncate(fd, 4096) != 0)
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
        meta_ = static_cast<detail::hive_meta*>(meta_region_.get());
        std::lock_guard lk(io_mu_);
        lock_file(ec, why);
        if (ec) return;
        recover(ec, why);
        file_lock_.unlock();
        if (!ec && opts_.sync_interval.count() > 0) start_poller();
    }

    std::atomic_ref<std::uint64_t> meta_generation() const noexcept {
        return std::atomic_ref<std::uint64_t>(meta_->generation);
    }
    std::atomic_ref<std::uint64_t> meta_seq() const noexcept {
        return std::atomic_ref<std::uint64_t>(meta_->commit_seq);
    }

    void lock_file(std::error_code& ec, std::string& why) {
        try {
            file_lock_.lock();
        } catch (const std::exception& e) {
            ec = errc::lock_failed;
            why = std::string("hive.lock: ") + e.what();
        }
    }

    /// Generations present on disk, by kind.
    void scan(std::vector<std::uint64_t>& snapshots, std::vector<std::uint64_t>& journals) const {
        snapshots.clear();
        journals.clear();
        std::error_code ec;
        for (auto& e : std::filesystem::directory_iterator(dir_, ec)) {
            auto name = e.path().filename().string();
            // Only names gen_name() writes count; any other file (stray, or "journal.zzz...")
            // is not a generation, and must not make the open throw or misread a number.
            auto parse = [&](const char* kind, std::vector<std::uint64_t>& out) {
                const std::size_t prefix = std::strlen(kind) + 1;
                if (name.size() != prefix + 16 || name.compare(0, prefix - 1, kind) != 0) return;
                std::uint64_t g = 0;
                auto [end, err] = std::from_chars(name.data() + prefix, name.data() + name.size(), g, 16);
                if (err == std::errc() && end == name.data() + name.size() && name == detail::gen_name(kind, g))
                    out.push_back(g);
            };
            parse("snapshot", snapshots);
            parse("journal", journals);
        }
        std::sort(snapshots.begin(), snapshots.end());
        std::sort(journals.begin(), journals.end());
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
        if (data.size() < 4 + 4 + 8 + 8 + 4 || std::string_view(data).substr(0, 4) != detail::snapshot_magic) {
            why = p + ": not a snapshot";
            return errc::corrupt_data;
        }
        detail::byte_reader crc(std::string_view(data).substr(data.size() - 4));
        if (detail::crc32c(data.data(), data.size() - 4) != crc.u32le()) {
            why = p + ": checksum mismatch";
            return errc::corrupt_data;
        }
        detail::byte_reader r(std::string_view(data).substr(0, data.size() - 4));
        r.raw(4);
        auto version = r.u8();
        r.raw(3);
        if (version != detail::hive_format_version) {
            why = p + ": format version " + std::to_string(version);
            return errc::unsupported_version;
        }
        auto file_gen = r.u64le();
        revision = r.u64le();
        if (file_gen != gen) {
            why = p + ": generation mismatch";
            return errc::corrupt_data;
        }
        root = std::make_unique<typename tree_type::node>();
        auto body = r.raw(r.remaining());
        if (auto e = tree_.decode_subtree(body, *root, 0, why)) {
            why = p + ": " + why;
            return e == errc::unsupported_version ? e : make_error_code(errc::corrupt_data);
        }
        return {};
    }

    std::string encode_snapshot(std::uint64_t gen) const {
        std::string out;
        detail::byte_writer w(out);
        w.raw(detail::snapshot_magic);
        w.u8(detail::hive_format_version);
        w.raw(std::string_view("\0\0\0", 3));
        w.u64le(gen);
        w.u64le(tree_.revision());
        w.raw(tree_type::encode_subtree(tree_.root(), true));
        w.u32le(detail::crc32c(out));
        return out;
    }

    static std::string journal_header(std::uint64_t gen, std::uint64_t base_revision) {
        std::string out;
        detail::byte_writer w(out);
        w.raw(detail::journal_magic);
        w.u8(detail::hive_format_version);
        w.raw(std::string_view("\0\0\0", 3));
        w.u64le(gen);
        w.u64le(base_revision);
        w.u32le(detail::crc32c(out));
        return out;
    }

    /// Opens journal `gen` and checks its header. *missing = true if it does not exist.
    std::error_code open_journal(std::uint64_t gen, int& fd, bool* missing, std::string& why) {
        auto p = path_of(detail::gen_name("journal", gen));
        fd = io().open(p.c_str(), O_RDWR, 0);
        if (fd < 0) {
            if (missing && errno == ENOENT) {
                *missing = true;
                return {};
            }
            return detail::io_failure(errno, "open", p, &why);
        }
        if (missing) *missing = false;
        std::string hdr;
        if (auto ec = detail::read_at(io(), fd, hdr, detail::journal_header_size, 0, p, &why)) {
            io().close(fd);
            fd = -1;
            return ec;
        }
        auto fail = [&](errc e, const std::string& msg) {
            io().close(fd);
            fd = -1;
            why = p + ": " + msg;
            return make_error_code(e);
        };
        if (hdr.size() < detail::journal_header_size || std::string_view(hdr).substr(0, 4) != detail::journal_magic)
            return fail(errc::corrupt_data, "not a journal");
        detail::byte_reader r(hdr);
        r.raw(4);
        auto version = r.u8();
        r.raw(3);
        auto file_gen = r.u64le();
        auto base = r.u64le();
        auto crc = r.u32le();
        if (detail::crc32c(hdr.data(), detail::journal_header_size - 4) != crc)
            return fail(errc::corrupt_data, "header checksum mismatch");
        if (version != detail::hive_format_version)
            return fail(errc::unsupported_version, "format version " + std::to_string(version));
        if (file_gen != gen) return fail(errc::corrupt_data, "generation mismatch");
        if (base != tree_.revision())
            return fail(errc::corrupt_data, "starts at revision " + std::to_string(base) + " but the state is at " +
                                                std::to_string(tree_.revision()));
        return {};
    }

    /// Bytes a journal's zero tail grows by at a time: small hives (a low snapshot
    /// threshold) do not pay for a megabyte of zeros per generation.
    std::uint64_t prealloc_chunk() const noexcept {
        return std::clamp(opts_.snapshot_threshold, detail::journal_prealloc_min, detail::journal_prealloc_max);
    }

    /// A new journal is born with its zero tail, written and synced with the header.
    std::error_code create_journal(std::uint64_t gen, std::string& why) {
        auto data = journal_header(gen, tree_.revision());
        data.resize(static_cast<std::size_t>(prealloc_chunk()), '\0');
        return detail::atomic_replace(io(), dir_.string(), detail::gen_name("journal", gen), data, &why);
    }

    /// Makes sure `n` bytes at offset_ land inside the zero-filled tail: if not, writes zeros
    /// from the end of the file to the next chunk boundary and syncs them (file size included),
    /// once per chunk. Only bytes past the end of the file are written, never records.
    std::error_code ensure_room(std::size_t n, const std::string& p, std::string& why) {
        if (offset_ + n <= alloc_end_) return {};
        struct stat st {};
        if (io().fstat(journal_fd_, &st) != 0) return detail::io_failure(errno, "stat", p, &why);
        alloc_end_ = static_cast<std::uint64_t>(st.st_size);
        if (offset_ + n <= alloc_end_) return {};
        auto chunk = prealloc_chunk();
        auto target = ((offset_ + n) / chunk + 1) * chunk;
        static const std::string zeros(64 * 1024, '\0');
        for (auto at = alloc_end_; at < target;) {
            auto len = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), target - at));
            if (auto ec = detail::write_all(io(), journal_fd_, std::string_view(zeros.data(), len),
                                            static_cast<off_t>(at), p, &why))
                return ec;
            at += len;
        }
        if (io().fdatasync(journal_fd_) != 0) return detail::io_failure(errno, "fdatasync", p, &why);
        alloc_end_ = target;
        return {};
    }

    /// Full recovery under the exclusive file lock: newest good snapshot, then every journal
    /// from its generation on; truncates a torn tail of the last one. A corrupt snapshot falls
    /// back to the previous one (or to the empty state at generation 0) when the journals
    /// needed to roll forward from there are still present.
    void recover(std::error_code& ec, std::string& why) {
        std::vector<std::uint64_t> snaps, journals;
        scan(snaps, journals);
        if (snaps.empty() && journals.empty()) {
            tree_.load(std::make_unique<typename tree_type::node>(), 0);
            gen_ = 0;
            if ((ec = create_journal(0, why))) return;
        }
        std::uint64_t newest = std::max(snaps.empty() ? 0 : snaps.back(), journals.empty() ? 0 : journals.back());
        auto have_journals = [&](std::uint64_t from) {
            for (auto g = from; g <= newest; ++g) {
                bool present = std::find(journals.begin(), journals.end(), g) != journals.end();
                if (!present && g != newest) return false; // only the newest may be missing (crash mid-compaction)
            }
            return true;
        };
        std::vector<std::uint64_t> candidates(snaps.rbegin(), snaps.rend());
        candidates.push_back(0); // the empty state at generation 0
        std::error_code first_ec;
        std::string first_why;
        std::vector<std::uint64_t> corrupt;
        bool loaded = false;
        for (auto g : candidates) {
            if (!have_journals(g)) continue;
            if (g == 0 && (snaps.empty() || snaps.front() != 0)) {
                tree_.load(std::make_unique<typename tree_type::node>(), 0);
                gen_ = 0;
                loaded = true;
                break;
            }
            std::unique_ptr<typename tree_type::node> root;
            std::uint64_t rev = 0;
            std::string w;
            auto e = load_snapshot(g, root, rev, w);
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
                corrupt.push_back(g);
                continue;
            }
            tree_.load(std::move(root), rev);
            gen_ = g;
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
            int fd = -1;
            if ((ec = open_journal(gen_, fd, &missing, why))) return;
            if (missing) {
                if ((ec = create_journal(gen_, why))) return;
                continue;
            }
            set_journal(fd);
            std::vector<change_event> ignored;
            if ((ec = read_records(true, ignored, why, true))) return;
            if (gen_ >= newest) break;
            ++gen_;
        }
        for (auto g : corrupt) { // keep for forensics, out of recovery's way
            auto bad = path_of(detail::gen_name("snapshot", g));
            io().rename(bad.c_str(), (bad + ".corrupt").c_str());
        }
        meta_->magic = 0x4154454D48525100ull;
        meta_generation().store(gen_);
        publish_end(true);
        meta_seq().fetch_add(1);
        seen_seq_.store(meta_seq().load(), std::memory_order_release);
    }

    /// Publishes how far the current journal holds acknowledged records; readers in other
    /// processes never read past it (so they never see a record whose sync failed).
    /// `reset_write`: also declare nothing written past it (a new generation, or recovery
    /// having cut or verified the tail).
    void publish_end(bool reset_write = false) {
        if (reset_write) std::atomic_ref<std::uint64_t>(meta_->write_end).store(offset_, std::memory_order_release);
        std::atomic_ref<std::uint64_t>(meta_->journal_end).store(offset_, std::memory_order_release);
    }

    void set_journal(int fd) {
        if (journal_fd_ >= 0) io().close(journal_fd_);
        journal_fd_ = fd;
        offset_ = detail::journal_header_size;
        alloc_end_ = 0; // unknown until the next commit needs it
    }

    /// Reads records from offset_ to the end of the current journal, applying each. In writer
    /// mode (exclusive lock held) a torn tail is truncated; in reader mode reading just stops
    /// there (a writer may be appending). For the current generation the limit comes from the
    /// shared counters (no stat, and the zero tail is not read); `full` (recovery, when the
    /// counters may be stale after a power loss) reads to the end of the file.
    std::error_code read_records(bool writer, std::vector<change_event>& events, std::string& why, bool full = false) {
        auto p = path_of(detail::gen_name("journal", gen_));
        std::uint64_t size = 0;
        auto g1 = meta_generation().load(std::memory_order_acquire);
        auto end = std::atomic_ref<std::uint64_t>(meta_->journal_end).load(std::memory_order_acquire);
        auto wend = std::atomic_ref<std::uint64_t>(meta_->write_end).load(std::memory_order_acquire);
        auto g2 = meta_generation().load(std::memory_order_acquire);
        if (!full && g1 == gen_ && g2 == gen_) {
            // Only the acknowledged end for readers; a writer also takes what a writer that
            // died mid-commit left past it (applied if valid, cut if torn, as in recovery).
            size = writer ? std::max(end, wend) : end;
        } else {
            // An older journal is complete; recovery trusts only the file.
            struct stat st {};
            if (io().fstat(journal_fd_, &st) != 0) return detail::io_failure(errno, "stat", p, &why);
            size = static_cast<std::uint64_t>(st.st_size);
        }
        if (size <= offset_) return {};
        std::string data;
        if (auto ec = detail::read_at(io(), journal_fd_, data, static_cast<std::size_t>(size - offset_),
                                      static_cast<off_t>(offset_), p, &why))
            return ec;
        std::size_t pos = 0;
        std::vector<operation> ops;
        while (pos < data.size()) {
            std::uint32_t len = 0;
            if (!valid_record(data, pos, len)) break;
            detail::byte_reader r(std::string_view(data).substr(pos + detail::record_header_size, len));
            auto rev = r.varint();
            auto dec = detail::decode_operations(r, ops);
            if (dec == errc::unsupported_version) {
                why = p + ": record format version is newer than this build";
                return dec;
            }
            if (dec || rev != tree_.revision() + 1) {
                why = p + ": record at offset " + std::to_string(offset_ + pos) + " is out of sequence";
                return errc::corrupt_data;
            }
            std::error_code aec;
            std::string awhy;
            {
                std::unique_lock lk(mu_);
                aec = tree_.apply(ops, events, awhy);
            }
            if (aec) {
                why = p + ": record at offset " + std::to_string(offset_ + pos) + " does not apply: " + awhy;
                return errc::corrupt_data;
            }
            pos += detail::record_header_size + len;
        }
        const bool zero_tail =
            std::all_of(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end(), [](char c) { return c == '\0'; });
        if (pos < data.size() && writer && !zero_tail) {
            // A bad record. If any valid record follows, this is corruption inside the journal,
            // not a torn write: refuse rather than silently drop committed transactions.
            for (std::size_t q = pos + 1; q + detail::record_header_size <= data.size(); ++q) {
                std::uint32_t l = 0;
                if (valid_record(data, q, l)) {
                    why = p + ": corrupt record at offset " + std::to_string(offset_ + pos) +
                          " followed by valid records";
                    return errc::corrupt_data;
                }
            }
            if (io().ftruncate(journal_fd_, static_cast<off_t>(offset_ + pos)) != 0 || io().fsync(journal_fd_) != 0)
                return detail::io_failure(errno, "truncate torn tail of", p, &why);
            alloc_end_ = offset_ + pos; // the zero tail went with it; the next commit regrows it
        }
        offset_ += pos;
        return {};
    }

    static bool valid_record(const std::string& data, std::size_t pos, std::uint32_t& len) {
        if (data.size() - pos < detail::record_header_size) return false;
        detail::byte_reader h(std::string_view(data).substr(pos, detail::record_header_size));
        auto magic = h.u32le();
        len = h.u32le();
        auto crc = h.u32le();
        if (magic != detail::record_magic || len > detail::max_record_size ||
            len > data.size() - pos - detail::record_header_size)
            return false;
        return detail::crc32c(data.data() + pos + detail::record_header_size, len) == crc;
    }

    bool changed_elsewhere() const noexcept {
        return meta_ && meta_seq().load(std::memory_order_acquire) != seen_seq_.load(std::memory_order_acquire);
    }

    /// Applies other processes' commits (reader mode, no file lock).
    void refresh(std::error_code& ec, std::string& why) {
        std::lock_guard lk(io_mu_);
        catch_up(false, ec, why);
    }

    /// Caller holds io_mu_ (and, in writer mode, the file lock).
    void catch_up(bool writer, std::error_code& ec, std::string& why) {
        auto seq = meta_seq().load(std::memory_order_acquire);
        std::vector<change_event> events;
        while (true) {
            if ((ec = read_records(writer, events, why))) break;
            if (meta_generation().load(std::memory_order_acquire) <= gen_) break;
            // Another process started a new generation; our journal is complete.
            bool missing = false;
            int fd = -1;
            ec = open_journal(gen_ + 1, fd, &missing, why);
            if (!ec && !missing) {
                ++gen_;
                set_journal(fd);
                continue;
            }
            // We fell more than a generation behind: reload from the newest snapshot.
            ec.clear();
            std::unique_ptr<typename tree_type::node> root;
            std::uint64_t rev = 0;
            auto g = meta_generation().load(std::memory_order_acquire);
            if ((ec = load_snapshot(g, root, rev, why))) break;
            {
                std::unique_lock lk(mu_);
                tree_.load(std::move(root), rev);
            }
            events.push_back({change_kind::subtree_replaced, "", {}, rev});
            gen_ = g;
            if ((ec = open_journal(gen_, fd, nullptr, why))) break;
            set_journal(fd);
        }
        if (!ec) seen_seq_.store(seq, std::memory_order_release);
        std::unique_lock lk(mu_); // enqueue in revision order relative to local commits
        events_.enqueue(std::move(events));
    }

    // ---- commit ----------------------------------------------------------------------------------

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
        if (broken_) {
            ec = errc::closed;
            why = "an earlier failed write could not be undone; reopen the hive";
            return fail_all();
        }
        lock_file(ec, why);
        if (ec) return fail_all();
        catch_up(true, ec, why);
        if (ec) {
            file_lock_.unlock();
            return fail_all();
        }
        // Pass 1: validate each transaction against the state the previous ones leave.
        std::vector<typename tree_type::undo_log> undo(batch.size());
        std::vector<pending*> ok;
        std::string records;
        {
            std::unique_lock lk2(mu_);
            std::vector<change_event> scratch;
            for (std::size_t i = 0; i < batch.size(); ++i) {
                auto* p = batch[i];
                p->ec = tree_.apply(*p->ops, scratch, p->why, &undo[i]);
                if (p->ec) continue;
                p->revision = tree_.revision();
                ok.push_back(p);
                append_record(records, p->revision, *p->ops);
            }
            for (std::size_t i = batch.size(); i-- > 0;)
                if (!batch[i]->ec) tree_.rollback_committed(undo[i]);
        }
        if (ok.empty()) {
            file_lock_.unlock();
            return;
        }
        // Pass 2: make the records durable; readers keep reading meanwhile.
        auto p = path_of(detail::gen_name("journal", gen_));
        ec = ensure_room(records.size(), p, why);
        if (!ec) {
            // Declared before writing, so if this process dies mid-write the next writer reads
            // (and applies or cuts) these bytes rather than leave them behind its own records.
            auto we = std::atomic_ref<std::uint64_t>(meta_->write_end);
            we.store(std::max(we.load(std::memory_order_relaxed), offset_ + records.size()), std::memory_order_release);
            ec = detail::write_all(io(), journal_fd_, records, static_cast<off_t>(offset_), p, &why);
        }
        if (!ec) {
            dirty_ = true;
            if (sync_due()) {
                if (io().fdatasync(journal_fd_) != 0)
                    ec = detail::io_failure(errno, "fdatasync", p, &why);
                else
                    mark_synced();
            }
        }
        if (ec) {
            // Nothing of this batch was acknowledged: cut the journal back so a later reader
            // can never see these records (the zero tail goes too; the next commit regrows it).
            alloc_end_ = std::min(alloc_end_, offset_);
            if (io().ftruncate(journal_fd_, static_cast<off_t>(offset_)) != 0) {
                // Could not cut it back: invalidate the first record's magic instead, so no
                // process ever applies it; if even that fails, stop writing.
                std::string zero(4, '\0');
                std::string ignored;
                if (detail::write_all(io(), journal_fd_, zero, static_cast<off_t>(offset_), p, &ignored) ||
                    io().fdatasync(journal_fd_) != 0)
                    broken_ = true;
            }
            for (auto* x : ok) {
                x->ec = ec;
                x->why = why;
            }
            file_lock_.unlock();
            return;
        }
        offset_ += records.size();
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
        meta_seq().fetch_add(1, std::memory_order_release);
        seen_seq_.store(meta_seq().load(), std::memory_order_release);
        if (offset_ >= opts_.snapshot_threshold) {
            std::error_code cec;
            std::string cwhy;
            compact_locked(cec, cwhy); // a failed compaction keeps the current journal; nothing is lost
        }
        file_lock_.unlock();
    }

    static void append_record(std::string& out, std::uint64_t revision, const std::vector<operation>& ops) {
        std::string payload;
        detail::byte_writer pw(payload);
        pw.varint(revision);
        detail::encode_operations(payload, ops);
        detail::byte_writer w(out);
        w.u32le(detail::record_magic);
        w.u32le(static_cast<std::uint32_t>(payload.size()));
        w.u32le(detail::crc32c(payload));
        w.raw(payload);
    }

    bool sync_due() const {
        if (opts_.sync_interval.count() == 0) return true;
        return std::chrono::steady_clock::now() - last_sync_ >= opts_.sync_interval;
    }
    void mark_synced() {
        dirty_ = false;
        last_sync_ = std::chrono::steady_clock::now();
    }

    /// Snapshot + new generation. Caller holds io_mu_ and the file lock, and is caught up.
    void compact_locked(std::error_code& ec, std::string& why) {
        if (dirty_ && io().fdatasync(journal_fd_) != 0) {
            ec = detail::io_failure(errno, "fdatasync", path_of(detail::gen_name("journal", gen_)), &why);
            return;
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
            return;
        }
        int fd = -1;
        if ((ec = open_journal(gen_ + 1, fd, nullptr, why))) {
            undo();
            return;
        }
        ++gen_;
        set_journal(fd);
        meta_generation().store(gen_, std::memory_order_release); // before the new end: see read_records
        publish_end(true);
        meta_seq().fetch_add(1, std::memory_order_release);
        seen_seq_.store(meta_seq().load(), std::memory_order_release);
        // Keep one previous generation as the fallback for a corrupt newest snapshot.
        std::vector<std::uint64_t> snaps, journals;
        scan(snaps, journals);
        for (auto g : snaps)
            if (g + 1 < gen_) io().unlink(path_of(detail::gen_name("snapshot", g)).c_str());
        for (auto g : journals)
            if (g + 1 < gen_) io().unlink(path_of(detail::gen_name("journal", g)).c_str());
    }

    // ---- background threads ------------------------------------------------------------------

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
                    refresh(ec, why);
                    events_.drain();
                }
                lk2.lock();
            }
        });
    }

    void flush_if_due() {
        std::lock_guard lk(io_mu_);
        if (dirty_ && sync_due() && journal_fd_ >= 0 && io().fdatasync(journal_fd_) == 0) mark_synced();
    }

    void shutdown() {
        {
            std::lock_guard lk(thread_mu_);
            stopping_ = true;
        }
        thread_cv_.notify_all();
        if (poller_.joinable()) poller_.join();
        sync();
        if (journal_fd_ >= 0) io().close(journal_fd_);
        journal_fd_ = -1;
        if (registered_) {
            std::lock_guard lk(detail::open_hives_mutex());
            detail::open_hives().erase(dir_.string());
            registered_ = false;
        }
    }

    hive_options opts_;
    std::filesystem::path dir_;
    mutable std::shared_mutex mu_; // the tree
    tree_type tree_;
    detail::event_dispatcher<Traits> events_;

    mutable std::mutex io_mu_; // journal position, generation, file lock use
    std::mutex commit_mu_;
    boost::interprocess::file_lock file_lock_;
    detail::shared_mapping meta_region_;
    detail::hive_meta* meta_ = nullptr;
    std::atomic<std::uint64_t> seen_seq_{0}; // written under io_mu_, read lock-free by changed_elsewhere()
    int journal_fd_ = -1;
    std::uint64_t gen_ = 0;
    std::uint64_t offset_ = 0;
    std::uint64_t alloc_end_ = 0; // zero-filled journal bytes known to exist (0: ask fstat)
    bool dirty_ = false;
    bool broken_ = false;
    bool registered_ = false;
    std::chrono::steady_clock::time_point last_sync_{};

    std::mutex queue_mu_;
    std::vector<pending*> queue_;
    bool leader_active_ = false;

    std::mutex thread_mu_;
    std::condition_variable thread_cv_;
    std::thread poller_;
    bool stopping_ = false;
};

/// The default hive: case-insensitive, case-preserving names.
using hive = basic_hive<case_insensitive_traits>;

} // namespace quorumreg
