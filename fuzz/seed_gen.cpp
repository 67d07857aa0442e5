// Writes the seed corpora of the fuzz targets: small valid inputs made by the library itself
// plus near-valid variants (truncated, a flipped byte, a newer version). Run once when a format
// changes and commit the result:
//   build-fuzz/fuzz/fuzz_seed_gen fuzz/corpus
// (The etcd and graph seeds are text and live in fuzz/corpus/ directly.)
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/detail/hive_recovery.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/registry.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <unistd.h>

namespace qr = quorumreg;
namespace fs = std::filesystem;

namespace {

fs::path out_root;

void put(const std::string& target, const std::string& name, std::string_view bytes) {
    auto dir = out_root / target;
    fs::create_directories(dir);
    std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string with_mode(std::uint8_t mode, std::string_view rest) {
    return std::string(1, char(mode)) + std::string(rest);
}

void fill(qr::registry& r) {
    r.set_value("App", "Name", qr::value::string("quorumreg"));
    r.set_value("App", "Path", qr::value::expand_string("%ProgramFiles%\\App"));
    r.set_value("App", "Port", qr::value::dword(8080));
    r.set_value("App", "Big", qr::value::qword(1ull << 40));
    r.set_value("App", "Blob", qr::value::binary(std::string_view("\x00\x01\xff", 3)));
    r.set_value("App", "List", qr::value::multi_string({"a", "b", ""}));
    r.set_value("App\\Sub\\Deeper", "", qr::value::string("default"));
    r.create_key("App\\Empty");
}

void subtree_seeds() {
    qr::registry r;
    fill(r);
    auto all = r.export_subtree("");
    auto app = r.export_subtree("App");
    qr::registry empty;
    auto none = empty.export_subtree("");
    for (auto& [name, bytes] : {std::pair{std::string("root"), all}, {"app", app}, {"empty", none}}) {
        put("subtree", name, with_mode(0, bytes));
        // CRC appended by the harness: the body without its checksum.
        put("subtree", name + "-nocrc", with_mode(1, std::string_view(bytes).substr(0, bytes.size() - 4)));
    }
    put("subtree", "app-small-limits", with_mode(1 | 4, std::string_view(app).substr(0, app.size() - 4)));
    put("subtree", "app-depth3", with_mode(1 | (3 << 3), std::string_view(app).substr(0, app.size() - 4)));
    put("subtree", "app-case-sensitive", with_mode(1 | 2, std::string_view(app).substr(0, app.size() - 4)));
    auto newer = app;
    newer[4] = 2; // format version 2
    put("subtree", "newer-version-nocrc", with_mode(1, std::string_view(newer).substr(0, newer.size() - 4)));
    put("subtree", "truncated", with_mode(0, std::string_view(app).substr(0, app.size() / 2)));
    auto flipped = app;
    flipped[app.size() / 2] ^= 0x04;
    put("subtree", "bitflip", with_mode(0, flipped));
}

void checkpoint_seeds() {
    qr::registry r;
    fill(r);
    qr::detail::checkpoint_blob b;
    b.resource = "SQL";
    b.subtree = "Software\\Contoso\\SQL";
    b.generation = 7;
    b.writer = "node1";
    b.time_ms = 1764000000000ull;
    b.content = r.export_subtree("App");
    auto plain = qr::detail::encode_checkpoint(b, {});
    auto mac = qr::detail::encode_checkpoint(b, "fuzz-cluster-key");
    put("checkpoint", "plain", with_mode(0, plain));
    put("checkpoint", "plain-nocrc", with_mode(1, std::string_view(plain).substr(0, plain.size() - 4)));
    put("checkpoint", "hmac", with_mode(2, mac));
    put("checkpoint", "hmac-nocrc", with_mode(3, std::string_view(mac).substr(0, mac.size() - 4)));
    put("checkpoint", "hmac-missing", with_mode(2, plain));
    b.absent = true;
    b.content.clear();
    auto absent = qr::detail::encode_checkpoint(b, {});
    put("checkpoint", "absent", with_mode(0, absent));
    auto newer = plain;
    newer[4] = 9;
    put("checkpoint", "newer-version-nocrc", with_mode(1, std::string_view(newer).substr(0, newer.size() - 4)));
    put("checkpoint", "truncated", with_mode(0, std::string_view(plain).substr(0, plain.size() / 2)));
}

/// Splits the frames of a journal (after its header) into the harness's mode-2 framing.
std::string reframe(std::string_view journal) {
    qr::detail::journal_header_info h;
    std::string why;
    if (qr::detail::decode_journal_header(journal, h, why)) return {};
    auto scan =
        qr::detail::scan_journal(h.version, h.salt, journal.substr(qr::detail::journal_header_size_of(h.version)));
    std::string out;
    for (const auto& f : scan.frames) {
        out.push_back(static_cast<char>(f.payload.size() & 0xff));
        out.push_back(static_cast<char>((f.payload.size() >> 8) & 0xff));
        out.append(f.payload);
    }
    return out;
}

void journal_seeds() {
    auto tmp = fs::temp_directory_path() / ("qr-seed-gen-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    {
        qr::hive h(tmp / "a");
        h.set_value("App", "Port", qr::value::dword(8080));
        h.set_value("App", "Name", qr::value::string("x"));
        qr::transaction t;
        t.require_revision("App", 2);
        t.create_key("App\\Sub").set_value("App\\Sub", "List", qr::value::multi_string({"a", "b"}));
        h.commit(t);
        h.delete_value("App", "Name");
        qr::registry src;
        fill(src);
        h.import_subtree("Imported", src.export_subtree("App\\Sub"));
        h.delete_key("App\\Sub");
    }
    auto j = slurp(tmp / "a" / qr::detail::gen_name("journal", 0));
    auto records = std::string_view(j).substr(qr::detail::journal_header_size_v2);
    put("journal", "raw", with_mode(0, j));
    put("journal", "raw-torn", with_mode(0, std::string_view(j).substr(0, j.size() - 3)));
    put("journal", "after-header", with_mode(1, records));
    put("journal", "framed", with_mode(2, reframe(j)));
    put("journal", "framed-torn-crc", with_mode(2 | 4, reframe(j)));
    put("journal", "framed-raw-tail", with_mode(2 | 8, reframe(j) + "QRJBgarbage"));
    auto newer = j;
    newer[4] = static_cast<char>(qr::detail::hive_format_version + 1);
    put("journal", "newer-version", with_mode(0, newer));
    {
        qr::hive h(tmp / "b");
        qr::registry src;
        fill(src);
        h.import_subtree("", src.export_subtree(""));
        h.compact();
    }
    auto s = slurp(tmp / "b" / qr::detail::gen_name("snapshot", 1));
    // Mode 3: revision (8 bytes) + the subtree body without its CRC.
    std::string_view sv(s);
    auto rev = sv.substr(4 + 4 + 8, 8);
    auto body = sv.substr(4 + 4 + 8 + 8, sv.size() - (4 + 4 + 8 + 8) - 4 - 4);
    put("journal", "snapshot", with_mode(3, std::string(rev) + std::string(body)));
    fs::remove_all(tmp);
}

void key_path_seeds() {
    const std::pair<const char*, std::string_view> seeds[] = {
        {"simple", "\x00Software/App\xffPort"},
        {"backslash", std::string_view("\x00Software\\Contoso\\SQL\xff", 22)},
        {"root", std::string_view("\x00\xffName", 6)},
        {"dotdot", "\x00Software/../etc\xffv"},
        {"dot", "\x00./a\xffv"},
        {"absolute", "\x00/etc/passwd\xffv"},
        {"empty-component", "\x00"
                            "a//b\xffv"},
        {"trailing-sep", "\x00"
                         "a/b/\xffv"},
        {"nul", std::string_view("\x00"
                                 "a\x00"
                                 "b\xffv",
                                 6)},
        {"utf8-case", "\x00\xc3\x89t\xc3\xa9/APP\xff\xc3\xa9t\xc3\xa9"},
        {"small-limits-long", "\x02"
                              "abcdefghi/b\xffv"},
        {"small-limits-deep", "\x02"
                              "a/b/c/d/e\xffv"},
        {"case-sensitive", "\x01"
                           "App/app\xffV"},
        {"escape-chars", "\x00%2F..%00 name with spaces\xff%"},
    };
    for (auto& [name, bytes] : seeds)
        put("key_path", name, bytes);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz_seed_gen <corpus-root>\n";
        return 2;
    }
    out_root = argv[1];
    subtree_seeds();
    checkpoint_seeds();
    journal_seeds();
    key_path_seeds();
    std::cout << "seeds written under " << out_root << "\n";
    return 0;
}
