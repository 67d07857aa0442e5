// The hive's on-disk format: journal headers, record frames, snapshots, and the pure scan that
// decides where a journal's records end and whether what follows is a torn tail or corruption.
//
//   journal  := header frame*
//   header   := "QRHJ" | version u8 | 0 0 0 | generation u64 | base revision u64
//               [v2: salt u64] | crc32c(header) u32
//   frame v2 := magic u32 "QRJB" | crc u32 | payload length u32 | seq u64 | synced u64 | payload
//               crc = crc32c(length | seq | synced | payload) ^ fold32(salt): the header is
//               covered, so a torn header (its magic on disk, the rest still the zero tail) is
//               never a valid empty record (and a payload is never empty); the salt (random
//               per journal) means a value that happens to contain a frame's bytes never
//               passes for one.
//   payload  := count varint, then count x (revision varint, operations)
//   record v1:= magic u32 "QRJR" | length u32 | crc32c(payload) u32 | revision varint, operations
//
// One frame is one group-commit batch, written with one pwrite and made durable with one
// fdatasync. `seq` numbers the frames of a journal from 0; `synced` is how many frames were
// durable when this one was written (in strict mode always `seq`: a batch is written only after
// the previous one's sync). After a power loss any sector of an unsynced write may be lost, in
// any order. So recovery reads valid frames in sequence; at the first one that is not valid it
// looks for any later valid frame whose `synced` says the bad frame had been durable: if there
// is one, acknowledged data is damaged and the journal is refused; if not, nothing from the bad
// frame on can have been acknowledged, and it is a torn tail to cut.
//
// Version 1 journals (one record per transaction, header not covered) are still read; a
// writer that opens one starts a new version 2 generation at once.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/registry_types.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg::detail {

inline constexpr std::string_view journal_magic = "QRHJ";
inline constexpr std::string_view snapshot_magic = "QRHS";
/// The version new journals and snapshots are written in; 1 is still read.
inline constexpr std::uint8_t hive_format_version = 2;
inline constexpr std::uint8_t hive_format_v1 = 1;
inline constexpr std::uint32_t record_magic = 0x524A5251; ///< "QRJR": a version 1 record
inline constexpr std::uint32_t frame_magic = 0x424A5251;  ///< "QRJB": a version 2 batch frame
inline constexpr std::size_t journal_header_size_v1 = 4 + 4 + 8 + 8 + 4;
inline constexpr std::size_t journal_header_size_v2 = journal_header_size_v1 + 8;
/// Size of a version 1 journal header (kept under its old name for tools that read v1 files).
inline constexpr std::size_t journal_header_size = journal_header_size_v1;
inline constexpr std::size_t record_header_size = 12;
inline constexpr std::size_t frame_header_size = 4 + 4 + 8 + 8 + 4;
inline constexpr std::uint32_t max_record_size = 1u << 30;
inline constexpr std::size_t snapshot_header_size = 4 + 4 + 8 + 8;

inline std::size_t journal_header_size_of(std::uint8_t version) noexcept {
    return version == hive_format_v1 ? journal_header_size_v1 : journal_header_size_v2;
}

/// "journal.0000000000000001"-style names; only names gen_name() writes count as generations.
inline std::string gen_name(const char* kind, std::uint64_t gen) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s.%016llx", kind, static_cast<unsigned long long>(gen));
    return buf;
}

/// The generation a file name stands for, if it is exactly gen_name(kind, g).
inline bool parse_gen_name(std::string_view name, const char* kind, std::uint64_t& g) {
    const std::size_t prefix = std::strlen(kind) + 1;
    if (name.size() != prefix + 16 || name.compare(0, prefix - 1, kind) != 0 || name[prefix - 1] != '.') return false;
    auto [end, err] = std::from_chars(name.data() + prefix, name.data() + name.size(), g, 16);
    return err == std::errc() && end == name.data() + name.size() && name == gen_name(kind, g);
}

struct journal_header_info {
    std::uint8_t version = hive_format_version;
    std::uint64_t generation = 0;
    std::uint64_t base_revision = 0;
    std::uint64_t salt = 0; ///< 0 in version 1
};

inline std::string encode_journal_header(const journal_header_info& h) {
    std::string out;
    byte_writer w(out);
    w.raw(journal_magic);
    w.u8(h.version);
    w.raw(std::string_view("\0\0\0", 3));
    w.u64le(h.generation);
    w.u64le(h.base_revision);
    if (h.version != hive_format_v1) w.u64le(h.salt);
    w.u32le(crc32c(out));
    return out;
}

/// Parses a journal header from the first bytes of a journal (at least
/// journal_header_size_v2 of them when the file has that many).
inline std::error_code decode_journal_header(std::string_view in, journal_header_info& h, std::string& why) {
    if (in.size() < journal_header_size_v1 || in.substr(0, 4) != journal_magic) {
        why = "not a journal";
        return errc::corrupt_data;
    }
    byte_reader r(in);
    r.raw(4);
    h.version = r.u8();
    r.raw(3);
    if (h.version != hive_format_v1 && h.version != hive_format_version) {
        // A newer version: only its checksum (whatever its layout) could tell damage apart.
        why = "format version " + std::to_string(h.version);
        return errc::unsupported_version;
    }
    const auto size = journal_header_size_of(h.version);
    if (in.size() < size) {
        why = "journal header is truncated";
        return errc::corrupt_data;
    }
    h.generation = r.u64le();
    h.base_revision = r.u64le();
    h.salt = h.version == hive_format_v1 ? 0 : r.u64le();
    if (crc32c(in.data(), size - 4) != r.u32le()) {
        why = "header checksum mismatch";
        return errc::corrupt_data;
    }
    return {};
}

/// Snapshot: "QRHS" | version u8 | 0 0 0 | generation u64 | revision u64 | subtree | crc u32.
inline std::string encode_snapshot_header(std::uint64_t gen, std::uint64_t revision) {
    std::string out;
    byte_writer w(out);
    w.raw(snapshot_magic);
    w.u8(hive_format_version);
    w.raw(std::string_view("\0\0\0", 3));
    w.u64le(gen);
    w.u64le(revision);
    return out;
}

/// Checks a whole snapshot file; on success `body` is its encoded subtree.
inline std::error_code decode_snapshot(std::string_view data, std::uint64_t gen, std::uint64_t& revision,
                                       std::string_view& body, std::string& why) {
    if (data.size() < snapshot_header_size + 4 || data.substr(0, 4) != snapshot_magic) {
        why = "not a snapshot";
        return errc::corrupt_data;
    }
    byte_reader crc(data.substr(data.size() - 4));
    if (crc32c(data.data(), data.size() - 4) != crc.u32le()) {
        why = "checksum mismatch";
        return errc::corrupt_data;
    }
    byte_reader r(data.substr(0, data.size() - 4));
    r.raw(4);
    auto version = r.u8();
    r.raw(3);
    if (version != hive_format_v1 && version != hive_format_version) {
        why = "format version " + std::to_string(version);
        return errc::unsupported_version;
    }
    auto file_gen = r.u64le();
    revision = r.u64le();
    if (file_gen != gen) {
        why = "generation mismatch";
        return errc::corrupt_data;
    }
    body = data.substr(snapshot_header_size, data.size() - 4 - snapshot_header_size);
    return {};
}

/// Builds the payload of one batch frame.
class batch_builder {
public:
    void add(std::uint64_t revision, const std::vector<operation>& ops) {
        byte_writer w(body_);
        w.varint(revision);
        encode_operations(body_, ops);
        ++count_;
    }
    std::size_t count() const noexcept { return count_; }
    std::string payload() const {
        std::string out;
        byte_writer w(out);
        w.varint(count_);
        w.raw(body_);
        return out;
    }

private:
    std::string body_;
    std::size_t count_ = 0;
};

/// The salt folded to 32 bits, mixed into every frame checksum of its journal.
inline std::uint32_t salt32(std::uint64_t salt) noexcept {
    return static_cast<std::uint32_t>(salt) ^ static_cast<std::uint32_t>(salt >> 32);
}

/// Appends one version 2 frame to `out`.
inline void append_frame(std::string& out, std::uint64_t salt, std::uint64_t seq, std::uint64_t synced,
                         std::string_view payload) {
    const auto at = out.size();
    byte_writer w(out);
    w.u32le(frame_magic);
    w.u32le(0); // the checksum, filled in below
    w.u32le(static_cast<std::uint32_t>(payload.size()));
    w.u64le(seq);
    w.u64le(synced);
    w.raw(payload);
    const auto crc = crc32c(out.data() + at + 8, out.size() - at - 8) ^ salt32(salt);
    std::string c;
    byte_writer(c).u32le(crc);
    out.replace(at + 4, 4, c);
}

/// Appends one version 1 record (tests and tools that write old journals).
inline void append_record_v1(std::string& out, std::uint64_t revision, const std::vector<operation>& ops) {
    std::string payload;
    byte_writer(payload).varint(revision);
    encode_operations(payload, ops);
    byte_writer w(out);
    w.u32le(record_magic);
    w.u32le(static_cast<std::uint32_t>(payload.size()));
    w.u32le(crc32c(payload));
    w.raw(payload);
}

/// One valid frame (v2) or record (v1) found by scan_journal.
struct journal_frame {
    std::size_t offset = 0; ///< in the scanned bytes
    std::size_t size = 0;   ///< header + payload
    std::uint64_t seq = 0;
    std::uint64_t synced = 0;
    std::string_view payload;
};

/// Calls fn(revision, ops) for each transaction of a frame's payload.
template <class F> std::error_code for_each_transaction(std::uint8_t version, std::string_view payload, F&& fn) {
    byte_reader r(payload);
    std::uint64_t count = 1;
    if (version != hive_format_v1) count = r.varint();
    if (!r.ok() || count == 0) return errc::corrupt_data;
    std::vector<operation> ops;
    for (std::uint64_t i = 0; i < count; ++i) {
        auto rev = r.varint();
        if (!r.ok()) return errc::corrupt_data;
        ops.clear();
        if (auto e = decode_operations(r, ops)) return e;
        if (auto e = fn(rev, ops)) return e;
    }
    if (r.remaining() != 0) return errc::corrupt_data;
    return {};
}

} // namespace quorumreg::detail
