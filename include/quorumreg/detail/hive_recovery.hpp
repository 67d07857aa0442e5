// Hive recovery decisions as pure functions: where a journal's valid frames end and what the
// bytes after them are (clean end, torn tail to cut, or corruption to refuse), and which
// snapshot generation to recover from. The engine (hive.hpp) does the I/O.
#pragma once

#include <quorumreg/detail/hive_format.hpp>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace quorumreg::detail {

/// What follows the last valid frame.
enum class journal_tail {
    clean,  ///< the end of the bytes, or only zeros (the preallocated tail)
    torn,   ///< bytes no acknowledged commit can have written: cut them
    corrupt ///< a damaged frame that had been durable: refuse
};

struct journal_scan {
    std::vector<journal_frame> frames;
    std::size_t end = 0; ///< where the valid frames end
    journal_tail tail = journal_tail::clean;
    std::size_t tail_bytes = 0;    ///< non-zero extent past `end` (torn or corrupt)
    std::size_t evidence = 0;      ///< corrupt: offset of the later frame that proves durability
    std::uint64_t next_seq = 0;    ///< seq the next frame gets
    std::uint64_t durable_seq = 0; ///< frames known durable (the largest `synced` seen, or all read)
};

/// Parses a v2 frame at `pos` (any seq; the caller checks it).
inline bool parse_frame(std::string_view data, std::size_t pos, std::uint64_t salt, journal_frame& f) {
    if (data.size() < pos || data.size() - pos < frame_header_size) return false;
    byte_reader h(data.substr(pos, frame_header_size));
    if (h.u32le() != frame_magic) return false;
    const auto crc = h.u32le();
    const auto len = h.u32le();
    f.seq = h.u64le();
    f.synced = h.u64le();
    if (len == 0 || len > max_record_size || len > data.size() - pos - frame_header_size || f.synced > f.seq)
        return false;
    f.offset = pos;
    f.size = frame_header_size + len;
    f.payload = data.substr(pos + frame_header_size, len);
    return (crc32c(data.data() + pos + 8, f.size - 8) ^ salt32(salt)) == crc;
}

inline bool parse_record_v1(std::string_view data, std::size_t pos, journal_frame& f) {
    if (data.size() < pos || data.size() - pos < record_header_size) return false;
    byte_reader h(data.substr(pos, record_header_size));
    const auto magic = h.u32le();
    const auto len = h.u32le();
    const auto crc = h.u32le();
    // A v1 writer never writes an empty record (a revision is always there): a zero length is
    // a torn header whose CRC of nothing happens to be 0.
    if (magic != record_magic || len == 0 || len > max_record_size || len > data.size() - pos - record_header_size)
        return false;
    f.offset = pos;
    f.size = record_header_size + len;
    f.payload = data.substr(pos + record_header_size, len);
    return crc32c(f.payload.data(), f.payload.size()) == crc;
}

/// Scans the bytes after a journal header. Pure: decides, changes nothing.
/// `first_seq`: the seq of the first frame in `data` (0 for a whole journal).
inline journal_scan scan_journal(std::uint8_t version, std::uint64_t salt, std::string_view data,
                                 std::uint64_t first_seq = 0) {
    journal_scan s;
    s.next_seq = first_seq;
    std::size_t pos = 0;
    while (pos < data.size()) {
        journal_frame f;
        bool ok = version == hive_format_v1 ? parse_record_v1(data, pos, f)
                                            : parse_frame(data, pos, salt, f) && f.seq == s.next_seq;
        if (!ok) break;
        if (version == hive_format_v1) f.seq = f.synced = s.next_seq;
        s.durable_seq = std::max(s.durable_seq, f.synced);
        s.frames.push_back(f);
        pos += f.size;
        ++s.next_seq;
    }
    s.end = pos;
    auto last = data.find_last_not_of('\0');
    if (last == std::string_view::npos || last < pos) return s; // clean
    s.tail_bytes = last + 1 - pos;
    s.tail = journal_tail::torn;
    // Is there evidence that the bad frame had been durable?
    for (std::size_t q = pos + 1; q <= last; ++q) {
        journal_frame f;
        if (version == hive_format_v1) {
            // v1 records carry no sync information: any valid record after a bad one is
            // treated as proof (the conservative answer these journals always had).
            if (parse_record_v1(data, q, f)) {
                s.tail = journal_tail::corrupt;
                s.evidence = q;
                break;
            }
        } else if (parse_frame(data, q, salt, f) && f.seq > s.next_seq && f.synced > s.next_seq) {
            s.tail = journal_tail::corrupt;
            s.evidence = q;
            break;
        }
    }
    return s;
}

/// A state to start recovery from: snapshot `generation`, or the empty state at generation 0.
struct recovery_start {
    std::uint64_t generation = 0;
    bool empty_state = false;
};

/// Where recovery may start, best first: each snapshot (newest first) whose journals from its
/// generation to the newest one are all present (only the newest may be missing: a crash
/// mid-compaction), then the empty state if every journal from 0 is there.
/// `snapshots` and `journals` are sorted generation numbers.
inline std::vector<recovery_start> recovery_candidates(const std::vector<std::uint64_t>& snapshots,
                                                       const std::vector<std::uint64_t>& journals) {
    std::uint64_t newest = std::max(snapshots.empty() ? 0 : snapshots.back(), journals.empty() ? 0 : journals.back());
    auto have_journals = [&](std::uint64_t from) {
        for (auto g = from; g <= newest; ++g)
            if (g != newest && !std::binary_search(journals.begin(), journals.end(), g)) return false;
        return true;
    };
    std::vector<recovery_start> out;
    for (auto it = snapshots.rbegin(); it != snapshots.rend(); ++it)
        if (have_journals(*it)) out.push_back({*it, false});
    if (have_journals(0) && (snapshots.empty() || snapshots.front() != 0)) out.push_back({0, true});
    return out;
}

} // namespace quorumreg::detail
