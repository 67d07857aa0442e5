// The hive's shared counters (hive.meta, mapped by every process that opens the hive) and the
// per-process registry of open hive directories.
//
// hive.meta is a cache, never a source of truth: after a power loss its content may be stale
// or zero, so recovery reads the journal files themselves and then republishes the counters.
#pragma once

#include <quorumreg/detail/file_io.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include <sys/stat.h>

namespace quorumreg::detail {

/// Shared counters in hive.meta.
struct hive_meta {
    std::uint64_t magic;
    std::uint64_t commit_seq; ///< bumped after each durable commit or generation change
    std::uint64_t generation;
    std::uint64_t journal_end; ///< end of acknowledged frames in journal.<generation>
    /// How far a writer may have written into journal.<generation> (>= journal_end; more
    /// only after a writer died mid-commit). The next writer reads up to here instead of
    /// scanning the zero tail to the end of the file.
    std::uint64_t write_end;
    /// Frames of journal.<generation> known durable (synced by some writer); what a new
    /// frame's `synced` field may claim. Only writers, under the exclusive file lock, update it.
    std::uint64_t synced_frames;
};

inline constexpr std::uint64_t hive_meta_magic = 0x4154454D48525100ull;

/// Lock-free access to a hive_meta that other processes update through their own mappings.
class hive_counters {
public:
    hive_counters() = default;
    explicit hive_counters(hive_meta* m) noexcept : m_(m) {}
    bool attached() const noexcept { return m_ != nullptr; }

    std::atomic_ref<std::uint64_t> seq() const noexcept { return std::atomic_ref<std::uint64_t>(m_->commit_seq); }
    std::atomic_ref<std::uint64_t> generation() const noexcept {
        return std::atomic_ref<std::uint64_t>(m_->generation);
    }
    std::atomic_ref<std::uint64_t> journal_end() const noexcept {
        return std::atomic_ref<std::uint64_t>(m_->journal_end);
    }
    std::atomic_ref<std::uint64_t> write_end() const noexcept { return std::atomic_ref<std::uint64_t>(m_->write_end); }
    std::atomic_ref<std::uint64_t> synced_frames() const noexcept {
        return std::atomic_ref<std::uint64_t>(m_->synced_frames);
    }
    void set_magic() noexcept { std::atomic_ref<std::uint64_t>(m_->magic).store(hive_meta_magic); }

private:
    hive_meta* m_ = nullptr;
};

/// Which hive directories this process has open, by device and inode (a symlink or a bind
/// mount names the same directory by another path). POSIX record locks belong to the
/// process, so a second open in one process would share the first one's lock silently.
class open_hive_registry {
public:
    using id = std::pair<dev_t, ino_t>;
    static open_hive_registry& instance() {
        static auto* r = new open_hive_registry(); // leaked: forked children never run its destructor
        return *r;
    }
    /// False if `dir` is already open in this process.
    bool insert(id key) {
        std::lock_guard g(mu_);
        return open_.emplace(key, 0).second;
    }
    void erase(id key) {
        std::lock_guard g(mu_);
        open_.erase(key);
    }

private:
    std::mutex mu_;
    std::map<id, int> open_;
};

} // namespace quorumreg::detail
