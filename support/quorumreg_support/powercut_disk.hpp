// A simulated power cut behind the file_io seam (issue 14), after SQLite's crash-test
// VFS and LazyFS: files are real (put the root on tmpfs for speed), but durability is modelled
// here and no real fsync/fdatasync is ever issued, so thousands of cuts run in seconds.
//
// The model, per file (inode): the content at its last fsync/fdatasync ("durable") and every
// write and truncate since, in order. Per directory: the entries at its last fsync (a
// directory descriptor opened O_DIRECTORY) and every create, rename, unlink and mkdir since.
// At a cut (before the K-th mutating call, or on request) the disk freezes: every later call
// fails with EIO and changes nothing (close only releases the descriptor), so an engine's
// destructor cannot write. materialize() then rewrites the real directory tree to one
// post-crash state drawn from the seed:
// - each 512-byte sector touched since the last sync holds one of the versions it had since
//   then, chosen per sector (the page's content at its last writeback): nothing, all, or any
//   mix, so a later sector of a write may survive and an earlier one not (out-of-order
//   tearing); the file size is, independently, one of the sizes it had;
// - each directory keeps a prefix of its unsynced namespace operations (none, all, or some:
//   metadata journals commit in order), so unsynced creates, renames and unlinks are undone;
//   a file whose name is gone is gone;
// - a file that was mmapped (hive.meta, a cache) holds its written content or what the
//   mapping made of it, either one.
// Files written outside the seam while a disk is live (Boost's lock file, ::chmod) are not
// modelled; a new disk adopts everything under its root as durable when constructed.
#pragma once

#include <quorumreg/detail/file_io.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg_support {

class powercut_disk : public quorumreg::file_io {
public:
    static constexpr std::size_t sector = 512;

    /// Models everything under `root` (which must exist) as durable; `seed` draws the
    /// post-crash state. No cut is armed.
    powercut_disk(const std::filesystem::path& root, std::uint64_t seed)
        : root_(std::filesystem::absolute(root).lexically_normal()), rng_(seed) {
        auto s = root_.string();
        while (s.size() > 1 && s.back() == '/')
            s.pop_back();
        root_ = s;
        root_id_ = adopt(root_);
    }

    /// Cuts the power just before the k-th (1-based) mutating call (write, truncate, sync,
    /// create, rename, unlink, mkdir): that call and all later ones fail. 0 disarms.
    void arm(std::uint64_t k) {
        std::lock_guard g(mu_);
        cut_at_ = k;
    }
    /// Only calls from `t` count towards the armed ordinal (other threads still go through
    /// the model, and fail after the cut); the default counts every thread.
    void count_only(std::thread::id t) {
        std::lock_guard g(mu_);
        only_ = t;
    }
    /// A drive that acknowledges flushes without persisting anything (a volatile write cache
    /// that ignores them): for checking that a test's checks can fail.
    void ignore_syncs(bool on) {
        std::lock_guard g(mu_);
        ignore_syncs_ = on;
    }
    /// The next `n` fsyncs of a directory fail with EIO and sync nothing, the power staying
    /// on: a transient error the caller may absorb, followed by a later cut.
    void fail_directory_syncs(int n) {
        std::lock_guard g(mu_);
        fail_dir_syncs_ = n;
    }
    /// Makes every file sync take about `d` (no disk lock held meanwhile), as a real flush
    /// does, so that concurrent committers queue up behind it (group-commit batches form).
    void sync_delay(std::chrono::microseconds d) { sync_delay_us_ = d.count(); }
    /// Cuts the power now.
    void cut() {
        std::lock_guard g(mu_);
        freeze("on request");
    }
    bool was_cut() const { return frozen_.load(); }
    /// Where the cut happened ("before pwrite .../journal.0 (call 17)").
    std::string cut_site() const {
        std::lock_guard g(mu_);
        return cut_site_;
    }
    std::uint64_t mutating_calls() const {
        std::lock_guard g(mu_);
        return counted_;
    }
    /// What materialize() chose, one line per file or directory with unsynced changes.
    std::string crash_log() const {
        std::lock_guard g(mu_);
        return log_.str();
    }

    /// Cuts (if not yet cut) and rewrites the real tree under the root to a post-crash state.
    /// Every descriptor obtained through this disk must be closed and every mapping unmapped
    /// (destroy the engine first). The disk stays frozen afterwards.
    void materialize() {
        std::lock_guard g(mu_);
        freeze("at materialize");
        namespace fs = std::filesystem;
        // Read what mappings made of mapped files before the tree is wiped.
        for (auto& [id, n] : nodes_)
            if (!n.dir && n.mapped && !n.path.empty()) n.mapped_content = slurp(n.path);
        // Per directory: which prefix of its unsynced namespace operations survives.
        std::map<std::uint64_t, std::map<std::string, std::uint64_t>> after;
        for (auto& [id, n] : nodes_) {
            if (!n.dir) continue;
            auto entries = n.durable_entries;
            std::size_t keep = 0;
            if (!n.dpending.empty()) {
                auto mode = pick(3);
                keep = mode == 0 ? 0 : mode == 1 ? n.dpending.size() : pick(n.dpending.size() + 1);
                log_ << "dir " << n.path << ": " << keep << "/" << n.dpending.size() << " namespace ops kept\n";
            }
            for (std::size_t i = 0; i < keep; ++i)
                for (auto& c : n.dpending[i]) {
                    if (c.id)
                        entries[c.name] = c.id;
                    else
                        entries.erase(c.name);
                }
            after[id] = std::move(entries);
        }
        std::error_code ec;
        for (auto& e : fs::directory_iterator(root_, ec))
            fs::remove_all(e.path(), ec);
        std::map<std::uint64_t, std::string> contents;
        build(root_, root_id_, after, contents, 0);
    }

    // ---- the seam ---------------------------------------------------------------------------

    int open(const char* path, int flags, mode_t mode) override {
        std::lock_guard g(mu_);
        bool creates = (flags & (O_CREAT | O_TRUNC)) != 0;
        if (creates && !count("open", path)) return eio();
        if (frozen_) return eio();
        int fd = file_io::open(path, flags, mode);
        if (fd < 0) return after(fd);
        auto loc = locate(path);
        if (!loc) return after(fd); // outside the root: not modelled
        auto& parent = nodes_.at(loc->first);
        std::uint64_t id = 0;
        if (loc->second.empty()) {
            id = loc->first; // the directory itself
        } else if (auto it = parent.entries.find(loc->second); it != parent.entries.end()) {
            id = it->second;
        } else if (flags & O_CREAT) {
            id = new_node(false, full(loc->first, loc->second));
            parent.entries[loc->second] = id;
            parent.dpending.push_back({{loc->second, id}});
        } else {
            id = adopt(full(loc->first, loc->second)); // made outside the seam: take it as durable
            parent.entries[loc->second] = id;
            parent.durable_entries[loc->second] = id;
        }
        auto& n = nodes_.at(id);
        if (!n.dir && (flags & O_TRUNC) && (flags & (O_WRONLY | O_RDWR))) add_op(n, true, 0, {});
        fds_[fd] = id;
        if (!cut_after_.empty()) file_io::close(fds_.extract(fd).key()); // the caller never gets it
        return after(fd);
    }

    int close(int fd) override {
        std::lock_guard g(mu_);
        fds_.erase(fd);
        file_io::close(fd); // releasing a descriptor persists nothing, also after the cut
        return 0;
    }

    ssize_t pread(int fd, void* buf, std::size_t n, off_t off) override {
        if (frozen_) return eio();
        return file_io::pread(fd, buf, n, off);
    }

    ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) override {
        std::lock_guard g(mu_);
        if (!count("pwrite", path_of_fd(fd))) return eio();
        ssize_t w = file_io::pwrite(fd, buf, n, off);
        if (w > 0)
            if (auto* nd = node_of(fd))
                add_op(*nd, false, static_cast<std::uint64_t>(off),
                       std::string(static_cast<const char*>(buf), static_cast<std::size_t>(w)));
        return after(w);
    }

    int ftruncate(int fd, off_t len) override {
        std::lock_guard g(mu_);
        if (!count("ftruncate", path_of_fd(fd))) return eio();
        int r = file_io::ftruncate(fd, len);
        if (r == 0)
            if (auto* nd = node_of(fd)) add_op(*nd, true, static_cast<std::uint64_t>(len), {});
        return after(r);
    }

    int fsync(int fd) override { return sync("fsync", fd); }
    int fdatasync(int fd) override { return sync("fdatasync", fd); }

    int rename(const char* from, const char* to) override {
        std::lock_guard g(mu_);
        if (!count("rename", from)) return eio();
        int r = file_io::rename(from, to);
        if (r != 0) return after(r);
        auto a = locate(from), b = locate(to);
        if (!a || !b || a->second.empty() || b->second.empty()) return after(r);
        auto& pa = nodes_.at(a->first);
        auto it = pa.entries.find(a->second);
        if (it == pa.entries.end()) return after(r);
        auto id = it->second;
        pa.entries.erase(it);
        auto& pb = nodes_.at(b->first);
        pb.entries[b->second] = id;
        nodes_.at(id).path = full(b->first, b->second);
        if (a->first == b->first) {
            pa.dpending.push_back({{a->second, 0}, {b->second, id}}); // one atomic operation
        } else {
            pa.dpending.push_back({{a->second, 0}});
            pb.dpending.push_back({{b->second, id}});
        }
        return after(r);
    }

    int unlink(const char* path) override {
        std::lock_guard g(mu_);
        if (!count("unlink", path)) return eio();
        int r = file_io::unlink(path);
        if (r != 0) return after(r);
        if (auto loc = locate(path); loc && !loc->second.empty()) {
            auto& p = nodes_.at(loc->first);
            if (p.entries.erase(loc->second)) p.dpending.push_back({{loc->second, 0}});
        }
        return after(r);
    }

    int mkdir(const char* path, mode_t mode) override {
        std::lock_guard g(mu_);
        if (!count("mkdir", path)) return eio();
        int r = file_io::mkdir(path, mode);
        if (r != 0) return after(r);
        if (auto loc = locate(path); loc && !loc->second.empty()) {
            auto id = new_node(true, full(loc->first, loc->second));
            auto& p = nodes_.at(loc->first);
            p.entries[loc->second] = id;
            p.dpending.push_back({{loc->second, id}});
        }
        return after(r);
    }

    int fstat(int fd, struct ::stat* st) override {
        if (frozen_) return eio();
        return file_io::fstat(fd, st);
    }
    int stat(const char* path, struct ::stat* st) override {
        if (frozen_) return eio();
        return file_io::stat(path, st);
    }
    void* mmap_shared(int fd, std::size_t len) override {
        std::lock_guard g(mu_);
        if (frozen_) {
            errno = EIO;
            return MAP_FAILED;
        }
        void* a = file_io::mmap_shared(fd, len);
        if (a != MAP_FAILED)
            if (auto* nd = node_of(fd)) nd->mapped = true;
        return a;
    }
    int statfs(const char* path, struct ::statfs* st) override {
        if (frozen_) return eio();
        return file_io::statfs(path, st);
    }
    int list_directory(const char* path, std::vector<std::string>& names) override {
        if (frozen_) return eio();
        return file_io::list_directory(path, names);
    }
    void* mmap_shared_readonly(int fd, std::size_t len) override {
        if (frozen_) {
            errno = EIO;
            return MAP_FAILED;
        }
        return file_io::mmap_shared_readonly(fd, len);
    }
    int attach_lock(const char* path) override {
        if (frozen_) return eio();
        return file_io::attach_lock(path);
    }

private:
    struct fop {
        bool trunc = false;
        std::uint64_t off = 0; // truncate: the new length
        std::string data;
    };
    struct dchange {
        std::string name;
        std::uint64_t id = 0; // 0: removed
    };
    struct node {
        bool dir = false;
        std::string path; // last known real path (for mapped files and messages)
        // files
        std::string durable;
        std::uint64_t size = 0; // current size
        std::vector<fop> pending;
        bool mapped = false;
        std::optional<std::string> mapped_content;
        // directories
        std::map<std::string, std::uint64_t> durable_entries, entries;
        std::vector<std::vector<dchange>> dpending;
    };

    static int eio() {
        errno = EIO;
        return -1;
    }

    void freeze(const std::string& site) {
        if (frozen_) return;
        frozen_ = true;
        cut_site_ = site;
    }

    /// Counts one mutating call; false (and frozen) if the power is off or goes off before
    /// it. At the armed call, half the time the call still takes effect and the power goes
    /// before it returns (a sync that completed unacknowledged): see after().
    bool count(const char* what, const std::string& path) {
        if (frozen_) return false;
        if (only_ && *only_ != std::this_thread::get_id()) return true;
        ++counted_;
        if (!cut_at_ || counted_ < cut_at_) return true;
        auto site = what + std::string(" ") + path + " (call " + std::to_string(counted_) + ")";
        if (pick(2) == 0) {
            freeze("before " + site);
            return false;
        }
        cut_after_ = "during " + site + ", which took effect";
        return true;
    }
    /// The result of a counted call, or EIO if the power went during it.
    template <class R> R after(R r) {
        if (cut_after_.empty()) return r;
        freeze(cut_after_);
        cut_after_.clear();
        errno = EIO;
        return static_cast<R>(-1);
    }

    int sync(const char* what, int fd) {
        if (auto d = sync_delay_us_.load()) std::this_thread::sleep_for(std::chrono::microseconds(d));
        std::lock_guard g(mu_);
        if (!count(what, path_of_fd(fd))) return eio();
        auto* n = node_of(fd);
        if (!n || ignore_syncs_) return after(0);
        if (n->dir && fail_dir_syncs_ > 0) {
            --fail_dir_syncs_;
            log_ << "fsync of directory " << n->path << " failed (injected EIO)\n";
            errno = EIO;
            return after(-1);
        }
        if (n->dir) {
            n->durable_entries = n->entries;
            n->dpending.clear();
        } else {
            for (auto& op : n->pending)
                apply(n->durable, op);
            n->pending.clear();
        }
        return after(0); // the real disk is never synced: that is the point
    }

    static void apply(std::string& s, const fop& op) {
        if (op.trunc) {
            s.resize(static_cast<std::size_t>(op.off), '\0');
            return;
        }
        if (s.size() < op.off + op.data.size()) s.resize(static_cast<std::size_t>(op.off + op.data.size()), '\0');
        std::copy(op.data.begin(), op.data.end(), s.begin() + static_cast<std::ptrdiff_t>(op.off));
    }

    void add_op(node& n, bool trunc, std::uint64_t off, std::string data) {
        fop op{trunc, off, std::move(data)};
        n.size = trunc ? off : std::max<std::uint64_t>(n.size, off + op.data.size());
        n.pending.push_back(std::move(op));
    }

    std::uint64_t new_node(bool dir, std::string path) {
        auto id = next_id_++;
        node n;
        n.dir = dir;
        n.path = std::move(path);
        nodes_.emplace(id, std::move(n));
        return id;
    }

    /// A node for what exists at `p` now, taken as durable (directories recursively).
    std::uint64_t adopt(const std::filesystem::path& p) {
        namespace fs = std::filesystem;
        std::error_code ec;
        bool dir = fs::is_directory(p, ec);
        auto id = new_node(dir, p.string());
        if (dir) {
            for (auto& e : fs::directory_iterator(p, ec)) {
                if (!e.is_directory(ec) && !e.is_regular_file(ec)) continue;
                auto child = adopt(e.path());
                auto& n = nodes_.at(id);
                n.entries[e.path().filename().string()] = child;
            }
            auto& n = nodes_.at(id);
            n.durable_entries = n.entries;
        } else {
            auto& n = nodes_.at(id);
            n.durable = slurp(p);
            n.size = n.durable.size();
        }
        return id;
    }

    static std::string slurp(const std::filesystem::path& p) {
        std::ifstream in(p, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    }

    /// (parent directory node, name) of a path under the root; name empty for the root
    /// itself. nullopt outside the root or below a directory the model does not know.
    std::optional<std::pair<std::uint64_t, std::string>> locate(const char* path) const {
        auto p = std::filesystem::absolute(path).lexically_normal().string();
        while (p.size() > 1 && p.back() == '/')
            p.pop_back();
        const auto& r = root_.native();
        if (p == r) return std::pair{root_id_, std::string()};
        if (p.size() <= r.size() || p.compare(0, r.size(), r) != 0 || p[r.size()] != '/') return std::nullopt;
        std::uint64_t at = root_id_;
        std::string_view rest(p);
        rest.remove_prefix(r.size() + 1);
        while (true) {
            auto slash = rest.find('/');
            if (slash == std::string_view::npos) break;
            auto& n = nodes_.at(at);
            auto it = n.entries.find(std::string(rest.substr(0, slash)));
            if (it == n.entries.end() || !nodes_.at(it->second).dir) return std::nullopt;
            at = it->second;
            rest.remove_prefix(slash + 1);
        }
        return std::pair{at, std::string(rest)};
    }

    std::string full(std::uint64_t parent, const std::string& name) const {
        return nodes_.at(parent).path + "/" + name;
    }

    node* node_of(int fd) {
        auto it = fds_.find(fd);
        return it == fds_.end() ? nullptr : &nodes_.at(it->second);
    }
    std::string path_of_fd(int fd) {
        auto* n = node_of(fd);
        return n ? n->path : "fd " + std::to_string(fd);
    }

    std::size_t pick(std::size_t n) { return n <= 1 ? 0 : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }

    /// One post-crash content of a file: per sector, one of its versions since the last sync.
    std::string crash_content(node& n) {
        if (n.mapped && n.mapped_content && pick(2) == 0) {
            log_ << "file " << n.path << ": mapped content kept\n";
            return *n.mapped_content;
        }
        if (n.pending.empty()) return n.durable;
        // touched[s]: the operations (1-based) that changed sector s; sizes[j]: size after op j.
        std::map<std::uint64_t, std::vector<std::size_t>> touched;
        std::vector<std::uint64_t> sizes{n.durable.size()};
        std::uint64_t size = n.durable.size(), max_size = size;
        for (std::size_t j = 0; j < n.pending.size(); ++j) {
            const auto& op = n.pending[j];
            std::uint64_t lo = 0, hi = 0; // bytes [lo, hi) changed
            if (op.trunc) {
                // A truncate changes the size and zeroes the rest of the sector it ends in;
                // whole sectors past the end keep their old bytes on the medium (a truncate
                // that did not persist leaves them readable), so they are not "changed".
                lo = op.off;
                hi = op.off < size ? std::min(size, (op.off + sector - 1) / sector * sector) : op.off;
                size = op.off;
            } else {
                lo = op.off;
                hi = op.off + op.data.size();
                size = std::max(size, hi);
            }
            max_size = std::max(max_size, size);
            if (hi > lo)
                for (auto s = lo / sector; s <= (hi - 1) / sector; ++s)
                    touched[s].push_back(j + 1);
            sizes.push_back(size);
        }
        // Per file, how the writeback raced the cut: nothing, everything, or a random mix.
        auto mode = pick(4);
        double keep_latest = mode == 2 ? std::uniform_real_distribution<double>(0.05, 0.95)(rng_) : 0.5;
        auto choose = [&](const std::vector<std::size_t>& versions) -> std::size_t { // 0 = durable
            if (mode == 0) return 0;
            if (mode == 1) return versions.back();
            if (std::bernoulli_distribution(keep_latest)(rng_)) return versions.back();
            auto k = pick(versions.size() + 1);
            return k == 0 ? 0 : versions[k - 1];
        };
        std::map<std::uint64_t, std::size_t> target;
        std::size_t kept = 0, lost = 0;
        for (auto& [s, v] : touched) {
            target[s] = choose(v);
            (target[s] == v.back() ? kept : lost)++;
        }
        std::vector<std::size_t> size_versions{0};
        for (std::size_t j = 1; j < sizes.size(); ++j)
            if (sizes[j] != sizes[j - 1]) size_versions.push_back(j);
        auto size_pick = size_versions.size() == 1 ? 0 : choose({size_versions.begin() + 1, size_versions.end()});
        std::string cur = n.durable, out = n.durable;
        out.resize(static_cast<std::size_t>(max_size), '\0');
        for (std::size_t j = 0; j < n.pending.size(); ++j) {
            apply(cur, n.pending[j]);
            for (auto& [s, t] : target) {
                if (t != j + 1) continue;
                auto begin = s * sector, end = std::min<std::uint64_t>((s + 1) * sector, max_size);
                for (auto b = begin; b < end; ++b)
                    out[static_cast<std::size_t>(b)] = b < cur.size() ? cur[static_cast<std::size_t>(b)] : '\0';
            }
        }
        out.resize(static_cast<std::size_t>(sizes[size_pick]));
        log_ << "file " << n.path << ": " << n.pending.size() << " unsynced ops, sectors kept " << kept << " lost "
             << lost << ", size " << out.size() << " (durable " << n.durable.size() << ", latest " << sizes.back()
             << ")\n";
        return out;
    }

    void build(const std::filesystem::path& at, std::uint64_t dir_id,
               std::map<std::uint64_t, std::map<std::string, std::uint64_t>>& after,
               std::map<std::uint64_t, std::string>& contents, int depth) {
        if (depth > 64) return;
        for (auto& [name, id] : after[dir_id]) {
            auto p = at / name;
            auto& n = nodes_.at(id);
            if (n.dir) {
                std::error_code ec;
                std::filesystem::create_directory(p, ec);
                ::chmod(p.c_str(), 0700);
                build(p, id, after, contents, depth + 1);
                continue;
            }
            auto it = contents.find(id);
            if (it == contents.end()) it = contents.emplace(id, crash_content(n)).first;
            int fd = ::open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
            if (fd < 0) continue;
            const char* d = it->second.data();
            std::size_t left = it->second.size();
            while (left > 0) {
                auto w = ::write(fd, d, left);
                if (w <= 0) break;
                d += w;
                left -= static_cast<std::size_t>(w);
            }
            ::close(fd);
        }
    }

    mutable std::mutex mu_;
    std::filesystem::path root_;
    std::uint64_t root_id_ = 0;
    std::uint64_t next_id_ = 1;
    std::map<std::uint64_t, node> nodes_;
    std::map<int, std::uint64_t> fds_;
    std::mt19937_64 rng_;
    std::atomic<bool> frozen_{false};
    std::atomic<std::int64_t> sync_delay_us_{0};
    std::uint64_t cut_at_ = 0;
    std::uint64_t counted_ = 0;
    std::optional<std::thread::id> only_;
    std::string cut_site_;
    std::string cut_after_; // set while the armed call runs to completion
    std::ostringstream log_;
    bool ignore_syncs_ = false;
    int fail_dir_syncs_ = 0;
};

} // namespace quorumreg_support
