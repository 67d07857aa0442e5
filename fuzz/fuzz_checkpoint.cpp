// Fuzz target: the checkpoint ("QRCP") decoder, detail::decode_checkpoint — header fields,
// SHA-256 of the content, optional HMAC-SHA-256 under the cluster key, CRC-32C.
//
// Input: byte 0 selects options, the rest is a stored checkpoint.
//   bit 0  append the right CRC-32C (the rest is the checkpoint without its checksum)
//   bit 1  decode with a cluster key configured (HMAC required)
// Invariants:
// - a failure is checkpoint_corrupt or unsupported_version (quorumreg codes) with a reason;
// - success: the reported SHA-256 is the content's; encode(decode(x)) decodes to the same
//   fields and re-encodes to the same bytes; with a cluster key, the re-encoded checkpoint is
//   refused under another key and when its HMAC is missing; the content, unless marked
//   absent, goes through the subtree decoder without crashing (what restore does).
#include <quorumreg/checkpoint.hpp>

#include "fuzz_common.hpp"

namespace qr = quorumreg;
using qr::errc;

namespace {

constexpr std::string_view fuzz_key = "fuzz-cluster-key";

bool same(const qr::detail::checkpoint_blob& a, const qr::detail::checkpoint_blob& b) {
    return a.resource == b.resource && a.subtree == b.subtree && a.generation == b.generation && a.writer == b.writer &&
           a.time_ms == b.time_ms && a.absent == b.absent && a.content == b.content;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    std::string_view in = qr_fuzz::as_view(data + 1, size - 1);
    std::string fixed;
    if (mode & 1) {
        fixed = qr_fuzz::fix_trailing_crc(in);
        in = fixed;
    }
    const std::string_view key = (mode & 2) ? fuzz_key : std::string_view{};

    qr::detail::checkpoint_blob b;
    std::string why, sha;
    auto ec = qr::detail::decode_checkpoint(in, key, b, why, &sha);
    qr_fuzz::check_quorumreg_code(ec, "decode_checkpoint");
    if (ec) {
        QR_FUZZ_CHECK(ec == errc::checkpoint_corrupt || ec == errc::unsupported_version, "unexpected error %s",
                      ec.message().c_str());
        QR_FUZZ_CHECK(!why.empty(), "an error without a reason");
        return 0;
    }
    QR_FUZZ_CHECK(sha == qr::detail::hex_encode(qr::detail::sha256(b.content)), "wrong SHA-256 reported");

    auto again = qr::detail::encode_checkpoint(b, key);
    qr::detail::checkpoint_blob b2;
    std::string why2, sha2;
    auto ec2 = qr::detail::decode_checkpoint(again, key, b2, why2, &sha2);
    QR_FUZZ_CHECK(!ec2, "re-encoded checkpoint does not decode: %s", why2.c_str());
    QR_FUZZ_CHECK(same(b, b2) && sha2 == sha, "decode(encode(b)) != b");
    QR_FUZZ_CHECK(qr::detail::encode_checkpoint(b2, key) == again, "the encoding is not deterministic");
    if (!key.empty()) {
        qr::detail::checkpoint_blob b3;
        std::string w;
        QR_FUZZ_CHECK(qr::detail::decode_checkpoint(again, "another key", b3, w) == errc::checkpoint_corrupt,
                      "accepted under the wrong cluster key");
        QR_FUZZ_CHECK(qr::detail::decode_checkpoint(qr::detail::encode_checkpoint(b, {}), key, b3, w) ==
                          errc::checkpoint_corrupt,
                      "accepted without an HMAC while a cluster key is configured");
        // Any single flipped bit in an authenticated checkpoint is refused.
        auto flipped = again;
        flipped[(b.content.size() + b.resource.size()) % flipped.size()] ^= 0x20;
        QR_FUZZ_CHECK(qr::detail::decode_checkpoint(flipped, key, b3, w), "a flipped bit was accepted");
    }
    if (!b.absent && !b.content.empty()) {
        qr::detail::registry_tree<qr::case_insensitive_traits> tree;
        qr::detail::registry_tree<qr::case_insensitive_traits>::node root;
        std::string sw;
        qr_fuzz::check_quorumreg_code(tree.decode_subtree(b.content, root, 0, sw), "decode_subtree of content");
    }
    return 0;
}
