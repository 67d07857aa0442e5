// Bounded binary encoding helpers: LEB128 varints, length-prefixed strings, CRC-32C.
// Every read is checked against the remaining input, so decoding untrusted bytes can
// neither crash nor allocate more than the input could describe.
#pragma once

#include <quorumreg/error.hpp>

#include <boost/crc.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace quorumreg::detail {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QUORUMREG_CRC32C_SSE42 1
/// CRC-32C with the SSE 4.2 crc32 instruction (about 20x the table-driven loop: checkpoints and
/// snapshots of megabytes are checksummed on every save and restore). Same polynomial and
/// reflection as the portable path; the caller applies the initial value and final xor.
__attribute__((target("sse4.2"))) inline std::uint32_t crc32c_sse42(std::uint32_t crc, const unsigned char* p,
                                                                    std::size_t n) noexcept {
    std::uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    auto c32 = static_cast<std::uint32_t>(c);
    for (; n > 0; --n)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
inline bool cpu_has_sse42() noexcept {
    static const bool has = __builtin_cpu_supports("sse4.2");
    return has;
}
#endif

/// CRC-32C (Castagnoli), the checksum used by journal records and encoded subtrees.
inline std::uint32_t crc32c(const void* data, std::size_t size) noexcept {
#ifdef QUORUMREG_CRC32C_SSE42
    if (cpu_has_sse42()) return ~crc32c_sse42(0xFFFFFFFFu, static_cast<const unsigned char*>(data), size);
#endif
    boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
    crc.process_bytes(data, size);
    return crc.checksum();
}
inline std::uint32_t crc32c(std::string_view s) noexcept { return crc32c(s.data(), s.size()); }

class byte_writer {
public:
    explicit byte_writer(std::string& out) : out_(out) {}
    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u32le(std::uint32_t v) {
        for (int i = 0; i < 4; ++i)
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    }
    void u64le(std::uint64_t v) {
        for (int i = 0; i < 8; ++i)
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    }
    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
            v >>= 7;
        }
        out_.push_back(static_cast<char>(v));
    }
    void str(std::string_view s) {
        varint(s.size());
        out_.append(s.data(), s.size());
    }
    void raw(std::string_view s) { out_.append(s.data(), s.size()); }
    std::string& buffer() noexcept { return out_; }

private:
    std::string& out_;
};

/// Reads what byte_writer wrote. On the first failure it records errc::corrupt_data and
/// every later read returns zero/empty, so callers check ok() once at a convenient point.
class byte_reader {
public:
    explicit byte_reader(std::string_view in) : in_(in) {}
    bool ok() const noexcept { return ok_; }
    std::size_t remaining() const noexcept { return in_.size() - pos_; }
    std::size_t position() const noexcept { return pos_; }
    void fail() noexcept {
        ok_ = false;
        pos_ = in_.size();
    }

    std::uint8_t u8() noexcept {
        if (!need(1)) return 0;
        return static_cast<std::uint8_t>(in_[pos_++]);
    }
    std::uint32_t u32le() noexcept {
        if (!need(4)) return 0;
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i)
            v |= std::uint32_t(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
        return v;
    }
    std::uint64_t u64le() noexcept {
        if (!need(8)) return 0;
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v |= std::uint64_t(static_cast<std::uint8_t>(in_[pos_++])) << (8 * i);
        return v;
    }
    std::uint64_t varint() noexcept {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (!need(1)) return 0;
            auto b = static_cast<std::uint8_t>(in_[pos_++]);
            if (shift == 63 && b > 1) break; // would overflow 64 bits
            v |= std::uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        fail();
        return 0;
    }
    /// A count of items that each take at least `min_item_bytes`: rejects counts the
    /// remaining input cannot hold, which bounds any reserve() done with it.
    std::uint64_t count(std::size_t min_item_bytes) noexcept {
        auto n = varint();
        if (ok_ && min_item_bytes > 0 && n > remaining() / min_item_bytes) fail();
        return ok_ ? n : 0;
    }
    std::string_view str() noexcept {
        auto n = varint();
        if (!ok_ || n > remaining()) {
            fail();
            return {};
        }
        auto s = in_.substr(pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
        return s;
    }
    std::string_view raw(std::size_t n) noexcept {
        if (!need(n)) return {};
        auto s = in_.substr(pos_, n);
        pos_ += n;
        return s;
    }

private:
    bool need(std::size_t n) noexcept {
        if (!ok_ || n > remaining()) {
            fail();
            return false;
        }
        return true;
    }
    std::string_view in_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

} // namespace quorumreg::detail
