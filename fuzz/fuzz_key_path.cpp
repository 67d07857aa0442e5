// Fuzz target: key paths and names — registry key path parsing (split_path, value names) as the
// registry uses it, the store-key escaping of user-chosen names (key_escape), and the quorum
// store's key validation (store_check_key, through memory_store).
//
// Input: byte 0 selects options, then the key path, a 0xFF byte, the value name (a missing
// separator means an empty name, the key's default value).
//   bit 0  case-sensitive registry (default: case-insensitive)
//   bit 1  small limits (names 8 bytes, depth 4) to reach the limit checks
// Invariants:
// - split_path accepts exactly the paths whose components are non-empty, not "." or "..",
//   without NUL and within the limits; joining the parts with '\' splits to the same parts;
// - registry set_value succeeds iff the path and the value name are valid; the value then reads
//   back (also through the canonical '\' path, and case-folded when names fold case), and every
//   failure is invalid_path / name_too_long / path_too_deep with the registry unchanged;
// - key_escape output uses only [A-Za-z0-9._%-] (so it never adds a '/' level, '.' or '..'
//   component of its own making beyond those bytes), and unescapes to the input (injective);
// - a store accepts a key iff store_check_key does, and then returns the same bytes for it.
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/detail/registry_tree.hpp>
#include <quorumreg/registry.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include "fuzz_common.hpp"

#include <algorithm>
#include <optional>
#include <vector>

namespace qr = quorumreg;
using qr::errc;

namespace {

bool expected_valid(std::string_view path, const qr::registry_limits& lim, std::vector<std::string_view>& parts) {
    parts.clear();
    if (path.empty()) return true;
    std::size_t start = 0;
    while (true) {
        auto end = path.find_first_of("\\/", start);
        auto part = path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos ||
            part.size() > lim.max_name_length)
            return false;
        parts.push_back(part);
        if (parts.size() > lim.max_depth) return false;
        if (end == std::string_view::npos) return true;
        start = end + 1;
    }
}

std::optional<std::string> key_unescape(std::string_view s) {
    auto hexval = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

template <class Traits>
void check_registry(std::string_view path, std::string_view name, const qr::registry_limits& lim) {
    std::vector<std::string_view> parts, want;
    std::string why;
    auto ec = qr::detail::split_path(path, lim, parts, &why);
    qr_fuzz::check_quorumreg_code(ec, "split_path");
    const bool valid = expected_valid(path, lim, want);
    QR_FUZZ_CHECK(valid == !ec, "split_path(\"%.*s\") = %s, expected %s", static_cast<int>(path.size()), path.data(),
                  ec.message().c_str(), valid ? "ok" : "an error");
    if (ec) {
        QR_FUZZ_CHECK(ec == errc::invalid_path || ec == errc::name_too_long || ec == errc::path_too_deep);
        QR_FUZZ_CHECK(parts.empty() && !why.empty());
    } else {
        QR_FUZZ_CHECK(parts == want);
        std::string joined;
        for (auto p : parts) {
            if (!joined.empty()) joined.push_back('\\');
            joined.append(p);
        }
        std::vector<std::string_view> again;
        QR_FUZZ_CHECK(!qr::detail::split_path(joined, lim, again) && again == parts, "join/split is not stable");
    }
    std::string nwhy;
    auto nec = qr::detail::check_value_name(name, lim, &nwhy);
    qr_fuzz::check_quorumreg_code(nec, "check_value_name");
    QR_FUZZ_CHECK(!nec == (name.find('\0') == std::string_view::npos && name.size() <= lim.max_value_name_length));

    qr::basic_registry<Traits> reg(lim);
    std::error_code sec;
    reg.set_value(path, name, qr::value::dword(7), sec);
    qr_fuzz::check_quorumreg_code(sec, "set_value");
    QR_FUZZ_CHECK(!sec == (!ec && !nec), "set_value: %s (path %s, name %s)", sec.message().c_str(),
                  ec.message().c_str(), nec.message().c_str());
    if (sec) {
        QR_FUZZ_CHECK(sec == errc::invalid_path || sec == errc::name_too_long || sec == errc::path_too_deep);
        QR_FUZZ_CHECK(reg.revision() == 0, "a failed write changed the registry");
        std::error_code kec;
        (void)reg.key_exists(path, kec);
        QR_FUZZ_CHECK(kec == ec || (!ec && !kec), "key_exists disagrees with split_path");
        return;
    }
    std::error_code gec;
    auto v = reg.get_value(path, name, gec);
    QR_FUZZ_CHECK(!gec && v == qr::value::dword(7), "value does not read back: %s", gec.message().c_str());
    std::string canonical;
    for (auto p : parts) {
        if (!canonical.empty()) canonical.push_back('\\');
        canonical.append(p);
    }
    QR_FUZZ_CHECK(reg.key_exists(canonical), "the canonical path is missing");
    if constexpr (std::is_same_v<Traits, qr::case_insensitive_traits>) {
        std::string upper(canonical), uname(name);
        std::transform(upper.begin(), upper.end(), upper.begin(),
                       [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; });
        std::transform(uname.begin(), uname.end(), uname.begin(),
                       [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; });
        std::error_code uec;
        QR_FUZZ_CHECK(reg.get_value(upper, uname, uec) == qr::value::dword(7) && !uec, "case folding lost the value");
    }
    std::error_code dec;
    reg.delete_value(path, name, dec);
    QR_FUZZ_CHECK(!dec, "delete_value: %s", dec.message().c_str());
    reg.get_value(path, name, gec);
    QR_FUZZ_CHECK(gec == errc::value_not_found, "a deleted value is still there");
    if (!parts.empty()) {
        reg.delete_key(path, dec);
        QR_FUZZ_CHECK(!dec, "delete_key: %s", dec.message().c_str());
        QR_FUZZ_CHECK(!reg.key_exists(path), "a deleted key is still there");
    }
}

void check_escape(std::string_view s) {
    auto e = qr::detail::key_escape(s);
    for (char c : e)
        QR_FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '_' || c == '-' || c == '%',
                      "key_escape produced byte 0x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
    auto back = key_unescape(e);
    QR_FUZZ_CHECK(back && *back == s, "key_escape is not reversible");
    QR_FUZZ_CHECK(e.find('/') == std::string::npos && e.find('\0') == std::string::npos);
}

void check_store_key(std::string_view key) {
    qr::store_limits lim;
    lim.max_key_bytes = 64; // reach the length check with short inputs
    std::error_code cec;
    std::string detail;
    bool ok = qr::detail::store_check_key(key, false, lim, cec, detail);
    qr_fuzz::check_quorumreg_code(cec, "store_check_key");
    QR_FUZZ_CHECK(ok == (!key.empty() && key.size() <= 64 && key.find('\0') == std::string_view::npos));
    QR_FUZZ_CHECK(ok == !cec);

    static qr::memory_store store([&] { // one store for the whole run: it owns a thread
        qr::memory_store_options mo;
        mo.limits = lim;
        mo.history_limit = 64; // it lives for millions of writes
        return mo;
    }());
    std::error_code ec;
    auto rev = store.put(key, "v", 0, ec);
    qr_fuzz::check_quorumreg_code(ec, "memory_store::put");
    QR_FUZZ_CHECK(!ec == ok, "the store and store_check_key disagree: %s", ec.message().c_str());
    if (ec) return;
    QR_FUZZ_CHECK(rev > 0);
    auto kv = store.get(key, ec);
    QR_FUZZ_CHECK(!ec && kv && kv->key == key && kv->value == "v", "a stored key does not read back");
    store.erase(key, ec);
    QR_FUZZ_CHECK(!ec && !store.get(key, ec) && !ec, "an erased key is still there");
    // The escaped form of any name is always a valid store key component.
    auto esc = qr::detail::key_escape(key);
    QR_FUZZ_CHECK(qr::detail::store_check_key("p/" + esc, false, qr::store_limits{}, cec, detail));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 4096) return 0;
    const std::uint8_t mode = data[0];
    std::string_view rest = qr_fuzz::as_view(data + 1, size - 1);
    auto sep = rest.find('\xff');
    std::string_view path = rest.substr(0, sep);
    std::string_view name = sep == std::string_view::npos ? std::string_view{} : rest.substr(sep + 1);
    qr::registry_limits lim;
    if (mode & 2) {
        lim.max_name_length = 8;
        lim.max_depth = 4;
        lim.max_value_name_length = 8;
    }
    if (mode & 1)
        check_registry<qr::case_sensitive_traits>(path, name, lim);
    else
        check_registry<qr::case_insensitive_traits>(path, name, lim);
    check_escape(path);
    check_escape(name);
    check_store_key(path);
    return 0;
}
