// Fuzz target: the registry subtree decoder (registry_tree::decode_subtree, the "QRST" format
// behind export/import_subtree, hive snapshots and checkpoint content).
//
// Input: byte 0 selects options, the rest is the encoded subtree.
//   bit 0  append the right CRC-32C (the rest is the body without its checksum), so mutations
//          reach the node decoder instead of stopping at the checksum
//   bit 1  case-sensitive name traits (default: case-insensitive)
//   bit 2  small limits (names 8 bytes, depth 4, values 64 bytes) to reach the limit checks
//   bits 3-5  base depth (0-7) the subtree is decoded at
// Invariants:
// - a failure is a quorumreg code among corrupt_data, unsupported_version, path_too_deep,
//   value_too_large, and the output node is not used;
// - success: encode(decode(x)) decodes again to an equal tree and re-encodes to the same
//   bytes (the encoding is canonical), and the same bytes imported with a replace_subtree
//   transaction at a key of the same depth succeed and export identically.
#include <quorumreg/detail/registry_tree.hpp>

#include "fuzz_common.hpp"

#include <vector>

namespace qr = quorumreg;
using qr::errc;

namespace {

template <class Node> bool same_tree(const Node& a, const Node& b, bool revisions) {
    if (a.name != b.name || (revisions && a.revision != b.revision)) return false;
    if (a.values.size() != b.values.size() || a.children.size() != b.children.size()) return false;
    for (auto ia = a.values.begin(), ib = b.values.begin(); ia != a.values.end(); ++ia, ++ib)
        if (ia->first != ib->first || ia->second.name != ib->second.name || !(ia->second.data == ib->second.data))
            return false;
    for (auto ia = a.children.begin(), ib = b.children.begin(); ia != a.children.end(); ++ia, ++ib)
        if (ia->first != ib->first || !same_tree(*ia->second, *ib->second, revisions)) return false;
    return true;
}

template <class Traits> void run(std::string_view in, const qr::registry_limits& limits, std::size_t base_depth) {
    using tree_type = qr::detail::registry_tree<Traits>;
    tree_type tree(limits);
    typename tree_type::node out;
    std::string why;
    auto ec = tree.decode_subtree(in, out, base_depth, why);
    qr_fuzz::check_quorumreg_code(ec, "decode_subtree");
    if (ec) {
        QR_FUZZ_CHECK(ec == errc::corrupt_data || ec == errc::unsupported_version || ec == errc::path_too_deep ||
                          ec == errc::value_too_large,
                      "unexpected error %s", ec.message().c_str());
        QR_FUZZ_CHECK(!why.empty(), "an error without an explanation");
    }

    // The same bytes through a transaction at a key `base_depth` deep (what import_subtree does).
    std::string path;
    for (std::size_t i = 0; i < base_depth; ++i)
        path += i ? "/k" : "k";
    if (base_depth <= limits.max_depth) {
        tree_type target(limits);
        std::vector<qr::operation> ops(1);
        ops[0].kind = qr::op_kind::replace_subtree;
        ops[0].path = path;
        ops[0].blob = std::string(in);
        std::vector<qr::change_event> events;
        std::string twhy;
        auto tec = target.apply(ops, events, twhy);
        qr_fuzz::check_quorumreg_code(tec, "apply replace_subtree");
        QR_FUZZ_CHECK(bool(tec) == bool(ec), "decode_subtree said %s but the import said %s", ec.message().c_str(),
                      tec.message().c_str());
        if (!tec) {
            QR_FUZZ_CHECK(target.revision() == 1);
            std::vector<std::string_view> parts;
            QR_FUZZ_CHECK(!qr::detail::split_path(path, limits, parts));
            auto* n = target.find(parts);
            QR_FUZZ_CHECK(n != nullptr, "imported key is missing");
            std::string top = std::move(out.name); // the import keeps the key's own name
            out.name = n->name;
            QR_FUZZ_CHECK(tree_type::encode_subtree(*n, false) == tree_type::encode_subtree(out, false),
                          "the import differs from the decoded subtree");
            out.name = std::move(top);
        } else {
            QR_FUZZ_CHECK(target.revision() == 0 && target.root().children.empty() && events.empty(),
                          "a failed import changed the tree");
        }
    }
    if (ec) return;

    const bool revisions = (static_cast<std::uint8_t>(in[5]) & qr::detail::subtree_flag_revisions) != 0;
    auto once = tree_type::encode_subtree(out, revisions);
    typename tree_type::node again;
    std::string why2;
    auto ec2 = tree.decode_subtree(once, again, base_depth, why2);
    QR_FUZZ_CHECK(!ec2, "re-encoded subtree does not decode: %s (%s)", ec2.message().c_str(), why2.c_str());
    QR_FUZZ_CHECK(same_tree(out, again, revisions), "decode(encode(t)) != t");
    QR_FUZZ_CHECK(tree_type::encode_subtree(again, revisions) == once, "the encoding is not canonical");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    std::string_view rest = qr_fuzz::as_view(data + 1, size - 1);
    std::string fixed;
    if (mode & 1) {
        fixed = qr_fuzz::fix_trailing_crc(rest);
        rest = fixed;
    }
    qr::registry_limits limits;
    if (mode & 4) {
        limits.max_name_length = 8;
        limits.max_depth = 4;
        limits.max_value_name_length = 8;
        limits.max_value_size = 64;
    }
    const std::size_t base_depth = (mode >> 3) & 7;
    if (mode & 2)
        run<qr::case_sensitive_traits>(rest, limits, base_depth);
    else
        run<qr::case_insensitive_traits>(rest, limits, base_depth);
    return 0;
}
