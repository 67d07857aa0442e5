// Shared helpers of quorumreg's libFuzzer targets (fuzz/fuzz_*.cpp).
//
// Every target checks invariants, not only "does not crash": a violated invariant calls
// QR_FUZZ_CHECK, which prints what failed and aborts, so libFuzzer records the input as a crash.
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/error.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

#define QR_FUZZ_CHECK(cond, ...)                                                                                       \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                          \
            std::fprintf(stderr, "" __VA_ARGS__);                                                                      \
            std::fprintf(stderr, "\n");                                                                                \
            std::abort();                                                                                              \
        }                                                                                                              \
    } while (0)

namespace qr_fuzz {

inline std::string_view as_view(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

/// A failure must be reported as a quorumreg error code, never as a raw errno or a foreign one.
inline void check_quorumreg_code(const std::error_code& ec, const char* what) {
    QR_FUZZ_CHECK(!ec || &ec.category() == &quorumreg::error_category(),
                  "%s: error %s (category %s) is not a quorumreg code", what, ec.message().c_str(),
                  ec.category().name());
}

/// Replaces the trailing CRC-32C of `bytes` (over everything before it) with the right one, so
/// a mutated input gets past the checksum and exercises the decoder behind it.
inline std::string fix_trailing_crc(std::string_view body) {
    std::string out(body);
    quorumreg::detail::byte_writer w(out);
    w.u32le(quorumreg::detail::crc32c(out));
    return out;
}

} // namespace qr_fuzz
