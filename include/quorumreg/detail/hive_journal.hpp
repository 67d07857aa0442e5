// One hive journal file: its header, the position where the next frame goes, the zero-filled
// preallocated tail, and the frame counters (next seq, frames known durable).
//
// Journal tail: a journal is kept zero-filled ahead of its write position (written zeros,
// extended a chunk at a time with one sync), so a steady-state commit overwrites blocks that
// are already allocated and inside the file size, and its fdatasync has no inode size to
// commit.
#pragma once

#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/detail/hive_format.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

namespace quorumreg::detail {

/// Size of one zero-filled extension of a journal's tail.
inline constexpr std::uint64_t journal_prealloc_max = 1024 * 1024;
inline constexpr std::uint64_t journal_prealloc_min = 64 * 1024;

/// A random, non-zero journal salt.
inline std::uint64_t new_journal_salt() {
    std::random_device rd;
    std::uint64_t s = 0;
    while (s == 0)
        s = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return s;
}

class journal_file {
public:
    journal_file() = default;
    journal_file(const journal_file&) = delete;
    journal_file& operator=(const journal_file&) = delete;
    ~journal_file() { close(); }

    /// Creates journal `gen` (header + `prealloc` bytes of zero tail), written, synced and
    /// renamed into place atomically.
    static std::error_code create(file_io& io, const std::string& dir, std::uint64_t gen, std::uint64_t base_revision,
                                  std::uint64_t prealloc, std::string& why) {
        journal_header_info h;
        h.generation = gen;
        h.base_revision = base_revision;
        h.salt = new_journal_salt();
        auto data = encode_journal_header(h);
        data.resize(std::max<std::size_t>(data.size(), static_cast<std::size_t>(prealloc)), '\0');
        return atomic_replace(io, dir, gen_name("journal", gen), data, &why);
    }

    /// Opens journal `gen` and checks its header against the generation and the revision the
    /// state is at. *missing = true (and no error) if it does not exist and `missing` is given.
    std::error_code open(file_io& io, const std::string& dir, std::uint64_t gen, std::uint64_t state_revision,
                         bool writable, bool* missing, std::string& why) {
        close();
        io_ = &io;
        path_ = dir + "/" + gen_name("journal", gen);
        fd_ = io.open(path_.c_str(), writable ? O_RDWR : O_RDONLY, 0);
        if (fd_ < 0) {
            if (missing && errno == ENOENT) {
                *missing = true;
                return {};
            }
            return io_failure(errno, "open", path_, &why);
        }
        if (missing) *missing = false;
        std::string hdr;
        if (auto ec = read_at(io, fd_, hdr, journal_header_size_v2, 0, path_, &why)) {
            close();
            return ec;
        }
        std::string w;
        auto ec = decode_journal_header(hdr, header_, w);
        if (!ec && header_.generation != gen) {
            ec = errc::corrupt_data;
            w = "generation mismatch";
        }
        if (!ec && header_.base_revision != state_revision) {
            ec = errc::corrupt_data;
            w = "starts at revision " + std::to_string(header_.base_revision) + " but the state is at " +
                std::to_string(state_revision);
        }
        if (ec) {
            why = path_ + ": " + w;
            close();
            return ec;
        }
        offset_ = journal_header_size_of(header_.version);
        next_seq_ = 0;
        durable_seq_ = 0;
        alloc_end_ = 0;
        return {};
    }

    void swap(journal_file& o) noexcept {
        std::swap(io_, o.io_);
        std::swap(fd_, o.fd_);
        std::swap(path_, o.path_);
        std::swap(header_, o.header_);
        std::swap(offset_, o.offset_);
        std::swap(next_seq_, o.next_seq_);
        std::swap(durable_seq_, o.durable_seq_);
        std::swap(alloc_end_, o.alloc_end_);
    }

    void close() noexcept {
        if (fd_ >= 0 && io_) io_->close(fd_);
        fd_ = -1;
    }

    bool is_open() const noexcept { return fd_ >= 0; }
    int fd() const noexcept { return fd_; }
    const std::string& path() const noexcept { return path_; }
    const journal_header_info& header() const noexcept { return header_; }
    std::uint8_t version() const noexcept { return header_.version; }

    /// End of the valid frames read or written so far (a file offset).
    std::uint64_t offset() const noexcept { return offset_; }
    std::uint64_t next_seq() const noexcept { return next_seq_; }
    std::uint64_t durable_seq() const noexcept { return durable_seq_; }
    /// Frames were read or written up to `offset`; `next_seq` is the next frame's number.
    void advance(std::uint64_t offset, std::uint64_t next_seq) noexcept {
        offset_ = offset;
        next_seq_ = next_seq;
    }
    void mark_durable(std::uint64_t frames) noexcept { durable_seq_ = std::max(durable_seq_, frames); }

    std::error_code size(std::uint64_t& out, std::string& why) const {
        struct stat st {};
        if (io_->fstat(fd_, &st) != 0) return io_failure(errno, "stat", path_, &why);
        out = static_cast<std::uint64_t>(st.st_size);
        return {};
    }

    std::error_code read(std::uint64_t from, std::uint64_t to, std::string& out, std::string& why) const {
        if (to <= from) {
            out.clear();
            return {};
        }
        return read_at(*io_, fd_, out, static_cast<std::size_t>(to - from), static_cast<off_t>(from), path_, &why);
    }

    /// Makes sure `n` bytes at offset() land inside the zero-filled tail: if not, writes zeros
    /// from the end of the file to the next `chunk` boundary and syncs them (file size
    /// included), once per chunk. Only bytes past the end of the file are written, never frames.
    std::error_code ensure_room(std::size_t n, std::uint64_t chunk, std::string& why) {
        if (offset_ + n <= alloc_end_) return {};
        std::uint64_t sz = 0;
        if (auto ec = size(sz, why)) return ec;
        alloc_end_ = sz;
        if (offset_ + n <= alloc_end_) return {};
        auto target = ((offset_ + n) / chunk + 1) * chunk;
        static const std::string zeros(64 * 1024, '\0');
        for (auto at = alloc_end_; at < target;) {
            auto len = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), target - at));
            if (auto ec =
                    write_all(*io_, fd_, std::string_view(zeros.data(), len), static_cast<off_t>(at), path_, &why))
                return ec;
            at += len;
        }
        if (io_->fdatasync(fd_) != 0) return io_failure(errno, "fdatasync", path_, &why);
        alloc_end_ = target;
        return {};
    }

    /// Writes `bytes` at offset() (does not advance it: the caller does after the sync).
    std::error_code write(std::string_view bytes, std::string& why) {
        return write_all(*io_, fd_, bytes, static_cast<off_t>(offset_), path_, &why);
    }

    std::error_code sync(std::string& why) {
        if (io_->fdatasync(fd_) != 0) return io_failure(errno, "fdatasync", path_, &why);
        return {};
    }

    /// Cuts the file at `at` and syncs (file size included); the zero tail goes too and the
    /// next write regrows it.
    std::error_code cut(std::uint64_t at, std::string& why) {
        alloc_end_ = std::min(alloc_end_, at);
        if (io_->ftruncate(fd_, static_cast<off_t>(at)) != 0 || io_->fsync(fd_) != 0)
            return io_failure(errno, "truncate", path_, &why);
        return {};
    }

    /// Cuts at `at` without a sync (undoing a failed write; the caller decides what follows).
    bool truncate_unsynced(std::uint64_t at) {
        alloc_end_ = std::min(alloc_end_, at);
        return io_->ftruncate(fd_, static_cast<off_t>(at)) == 0;
    }

private:
    file_io* io_ = nullptr;
    int fd_ = -1;
    std::string path_;
    journal_header_info header_;
    std::uint64_t offset_ = 0;
    std::uint64_t next_seq_ = 0;
    std::uint64_t durable_seq_ = 0;
    std::uint64_t alloc_end_ = 0; ///< zero-filled bytes known to exist (0: ask fstat)
};

} // namespace quorumreg::detail
