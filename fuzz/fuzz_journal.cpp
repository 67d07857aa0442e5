// Fuzz target: hive recovery — the journal (and snapshot) files a hive reads when it opens.
// Each input becomes the files of a fresh hive directory (on /dev/shm when present), which is
// then opened, checked, and removed.
//
// Input: byte 0 selects how the rest becomes files.
//   bits 0-1 = 0  the rest is journal.0000000000000000 verbatim (header included)
//            = 1  a valid journal header (generation 0, base revision 0), then the rest
//            = 2  a valid header, then frames made by the harness: the rest is a sequence
//               of [u16le length][payload] and each payload gets a frame header with the
//               right magic, length, sequence and CRC-32C, so mutations reach the operation
//               decoder and the replay; a short last payload is framed as it is
//            = 3  snapshot.0000000000000001 = a valid snapshot header (generation 1, the
//               revision from the first 8 bytes) + the rest as subtree body + CRC, and an empty
//               journal.0000000000000001 starting at that revision
//   bit 2    (mode 2) corrupt the CRC of the last framed record, as a torn write would
//   bit 3    append the remaining bytes after the framed records (mode 2) as a raw tail
//   bit 4    the rest starts with a file name and '\n': a stray file of that name (say
//            "journal.zzzzzzzzzzzzzzzz") is put into the directory too
//   bit 5    headers and framing of format 1 (one record per transaction) instead of format 2
//            (one batch frame, header covered by the CRC; payload = count + transactions)
// Invariants:
// - open either succeeds or fails with a quorumreg code among corrupt_data,
//   unsupported_version, path_too_deep, value_too_large, name_too_long, invalid_path —
//   never another exception, a crash or a hang;
// - a failed open leaves the journal's bytes unchanged (nothing truncated or rewritten);
// - a successful open yields a tree whose export decodes again; reopening gives the same
//   revision and the same content (recovery is idempotent once a torn tail is cut); a new
//   commit succeeds and survives another reopen.
#include <quorumreg/detail/hive_recovery.hpp>
#include <quorumreg/hive.hpp>

#include "fuzz_common.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>

namespace qr = quorumreg;
namespace fs = std::filesystem;
using qr::errc;

namespace {

/// This process's scratch directory (QR_FUZZ_TMP, else /dev/shm, else the temp directory),
/// removed at exit; after a crash it stays, with the hive of the crashing input in it.
const fs::path& base_dir() {
    struct scratch {
        fs::path dir;
        scratch() {
            fs::path root = std::getenv("QR_FUZZ_TMP")     ? fs::path(std::getenv("QR_FUZZ_TMP"))
                            : fs::is_directory("/dev/shm") ? fs::path("/dev/shm")
                                                           : fs::temp_directory_path();
            dir = root / ("qr-fuzz-journal-" + std::to_string(::getpid()));
            fs::create_directories(dir);
        }
        ~scratch() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    };
    static const scratch s;
    return s.dir;
}

void spit(const fs::path& p, std::string_view bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool g_v1 = false;                                 ///< this input writes format 1 journals (bit 5)
constexpr std::uint64_t fuzz_salt = 0x5eed5a17ull; ///< the salt of every journal the harness frames

std::string journal_header(std::uint64_t gen, std::uint64_t base) {
    qr::detail::journal_header_info h;
    h.version = g_v1 ? qr::detail::hive_format_v1 : qr::detail::hive_format_version;
    h.generation = gen;
    h.base_revision = base;
    h.salt = g_v1 ? 0 : fuzz_salt;
    return qr::detail::encode_journal_header(h);
}

std::string frame(std::string_view payload, bool bad_crc, std::uint64_t seq) {
    std::string out;
    if (!g_v1) {
        qr::detail::append_frame(out, fuzz_salt, seq, seq, payload);
        if (bad_crc) out[4] = static_cast<char>(out[4] ^ 1);
        return out;
    }
    qr::detail::byte_writer w(out);
    w.u32le(qr::detail::record_magic);
    w.u32le(static_cast<std::uint32_t>(payload.size()));
    w.u32le(qr::detail::crc32c(payload) ^ (bad_crc ? 1u : 0u));
    w.raw(payload);
    return out;
}

void check_error(const std::error_code& ec, const char* what) {
    qr_fuzz::check_quorumreg_code(ec, what);
    QR_FUZZ_CHECK(ec == errc::corrupt_data || ec == errc::unsupported_version || ec == errc::path_too_deep ||
                      ec == errc::value_too_large || ec == errc::name_too_long || ec == errc::invalid_path,
                  "%s: unexpected error %s", what, ec.message().c_str());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 64 * 1024) return 0;
    const std::uint8_t mode = data[0];
    g_v1 = (mode & 32) != 0;
    std::string_view rest = qr_fuzz::as_view(data + 1, size - 1);
    std::string stray;
    if (mode & 16) {
        auto nl = rest.find('\n');
        stray = std::string(rest.substr(0, std::min<std::size_t>(nl, 64)));
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (stray.empty() || stray == "." || stray == ".." ||
            stray.find_first_of(std::string_view("/\0", 2)) != std::string::npos)
            stray.clear();
    }
    const fs::path dir = base_dir() / "h";
    fs::remove_all(dir);
    fs::create_directories(dir);
    ::chmod(dir.c_str(), 0700);

    const fs::path journal0 = dir / qr::detail::gen_name("journal", 0);
    fs::path watched; // the journal whose bytes a failed open must leave alone
    switch (mode & 3) {
    case 0:
        spit(journal0, rest);
        watched = journal0;
        break;
    case 1:
        spit(journal0, journal_header(0, 0) + std::string(rest));
        watched = journal0;
        break;
    case 2: {
        std::string file = journal_header(0, 0);
        std::vector<std::string_view> payloads;
        while (rest.size() >= 2) {
            std::size_t len =
                static_cast<std::uint8_t>(rest[0]) | (std::size_t(static_cast<std::uint8_t>(rest[1])) << 8);
            rest.remove_prefix(2);
            len = std::min(len, rest.size());
            payloads.push_back(rest.substr(0, len));
            rest.remove_prefix(len);
            if ((mode & 8) && payloads.size() == 4) break; // leave the rest for the raw tail
        }
        for (std::size_t i = 0; i < payloads.size(); ++i)
            file += frame(payloads[i], (mode & 4) && i + 1 == payloads.size(), i);
        if (mode & 8) file.append(rest);
        spit(journal0, file);
        watched = journal0;
        break;
    }
    case 3: {
        std::uint64_t revision = 0;
        for (std::size_t i = 0; i < 8 && i < rest.size(); ++i)
            revision |= std::uint64_t(static_cast<std::uint8_t>(rest[i])) << (8 * i);
        rest.remove_prefix(std::min<std::size_t>(8, rest.size()));
        std::string snap;
        qr::detail::byte_writer w(snap);
        w.raw(qr::detail::snapshot_magic);
        w.u8(qr::detail::hive_format_version);
        w.raw(std::string_view("\0\0\0", 3));
        w.u64le(1);
        w.u64le(revision);
        w.raw(qr_fuzz::fix_trailing_crc(rest)); // the subtree body, with its own CRC
        w.u32le(qr::detail::crc32c(snap));
        spit(dir / qr::detail::gen_name("snapshot", 1), snap);
        spit(dir / qr::detail::gen_name("journal", 1), journal_header(1, revision));
        break;
    }
    }
    if (!stray.empty() && !fs::exists(dir / stray)) spit(dir / stray, "x");
    const std::string before = watched.empty() ? std::string() : slurp(watched);

    qr::hive_options opts;
    opts.snapshot_threshold = 64 * 1024; // the smallest preallocated tail: keeps each run cheap
    std::error_code ec;
    auto h = qr::hive::open(dir, opts, ec);
    QR_FUZZ_CHECK(bool(h) != bool(ec), "open returned both a hive and an error, or neither");
    if (ec) {
        check_error(ec, "open");
        if (!watched.empty()) QR_FUZZ_CHECK(slurp(watched) == before, "a failed open changed the journal");
        fs::remove_all(dir);
        return 0;
    }
    const auto rev = h->revision();
    const auto content = h->export_subtree("");
    {
        qr::detail::registry_tree<qr::case_insensitive_traits> t;
        qr::detail::registry_tree<qr::case_insensitive_traits>::node n;
        std::string why;
        auto dec = t.decode_subtree(content, n, 0, why);
        QR_FUZZ_CHECK(!dec, "the recovered tree does not export cleanly: %s", why.c_str());
    }
    h.reset();

    h = qr::hive::open(dir, opts, ec);
    QR_FUZZ_CHECK(h && !ec, "a hive that opened once does not reopen: %s", ec.message().c_str());
    QR_FUZZ_CHECK(h->revision() == rev && h->export_subtree("") == content, "recovery is not idempotent");
    h->set_value("Fuzz", "after", qr::value::dword(1), ec);
    QR_FUZZ_CHECK(!ec, "a commit after recovery failed: %s", ec.message().c_str());
    h.reset();
    h = qr::hive::open(dir, opts, ec);
    QR_FUZZ_CHECK(h && !ec && h->revision() == rev + 1, "the commit after recovery was lost");
    QR_FUZZ_CHECK(h->get_value("Fuzz", "after") == qr::value::dword(1));
    h.reset();
    fs::remove_all(dir);
    return 0;
}
