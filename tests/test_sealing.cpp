// Sealing: AES-256-GCM blobs bound to their associated data, key files, rotation, errors.
#include "test_support.hpp"

#include <quorumreg/sealing.hpp>

#include <fstream>
#include <iterator>

#include <sys/stat.h>

namespace {

using namespace quorumreg;

secret key_of(char fill) { return secret(std::string(sealing_key_size, fill)); }

template <class F> errc error_of(F&& f) {
    try {
        f();
    } catch (const quorumreg::error& e) {
        return static_cast<errc>(e.code().value());
    }
    return errc::ok;
}

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

} // namespace

TEST_SUITE("sealing") {

    TEST_CASE("a sealed blob opens with its key and associated data, and hides the plaintext") {
        key_ring ring;
        ring.add("k1", key_of('a'));
        const std::string plain = "db-password: correct horse battery staple";
        auto blob = seal(ring, plain, "SQL|Software\\App|7");
        CHECK(blob.find("correct horse") == std::string::npos);
        CHECK(sealed_key_id(blob) == "k1");
        CHECK(blob.size() == 4 + 1 + 1 + 2 + 12 + plain.size() + 16);
        CHECK(unseal(ring, blob, "SQL|Software\\App|7").view() == plain);
        // Two seals of the same bytes differ (random nonce).
        CHECK(seal(ring, plain, "x") != seal(ring, plain, "x"));
        // Empty plaintext works too.
        CHECK(unseal(ring, seal(ring, "", "e"), "e").empty());
    }

    TEST_CASE("tampering, other associated data and a wrong key each fail with their error") {
        key_ring ring;
        ring.add("k1", key_of('a'));
        auto blob = seal(ring, "secret-value-123", "SQL|Software\\App|7");
        std::error_code ec;
        std::string why;
        for (std::size_t i = 0; i < blob.size(); ++i) { // every single byte matters
            auto t = blob;
            t[i] = static_cast<char>(t[i] ^ 0x01);
            auto s = unseal(ring, t, "SQL|Software\\App|7", ec, &why);
            CAPTURE(i);
            CHECK(ec);
            CHECK(s.empty());
        }
        unseal(ring, blob, "SQL|Software\\App|8", ec, &why); // replayed as another generation
        CHECK(ec == errc::secret_auth_failed);
        unseal(ring, blob, "Web|Software\\App|7", ec, &why); // moved to another resource
        CHECK(ec == errc::secret_auth_failed);
        CHECK(why.find("another resource, subtree or generation") != std::string::npos);
        key_ring other;
        other.add("k1", key_of('b')); // same id, other bytes
        unseal(other, blob, "SQL|Software\\App|7", ec, &why);
        CHECK(ec == errc::secret_auth_failed);
        key_ring none;
        none.add("k2", key_of('a'));
        unseal(none, blob, "SQL|Software\\App|7", ec, &why);
        CHECK(ec == errc::secret_key_unknown);
        CHECK(why.find("\"k1\"") != std::string::npos);
        unseal(ring, "not a blob", "x", ec, &why);
        CHECK(ec == errc::corrupt_data);
        unseal(ring, blob.substr(0, 20), "x", ec, &why);
        CHECK(ec == errc::corrupt_data);
    }

    TEST_CASE("rotation: after resealing, every blob opens with the new key alone") {
        key_ring ring;
        ring.add("old", key_of('o'));
        std::vector<std::pair<std::string, std::string>> blobs; // aad, blob
        for (int g = 1; g <= 5; ++g)
            blobs.emplace_back("R|S|" + std::to_string(g),
                               seal(ring, "gen" + std::to_string(g), "R|S|" + std::to_string(g)));
        ring.add("new", key_of('n'));
        ring.set_current("new");
        for (auto& [aad, b] : blobs)
            b = reseal(ring, b, aad);
        CHECK(error_of([&] { ring.retire("new"); }) == errc::invalid_argument); // the current key stays
        ring.retire("old");
        CHECK(!ring.has("old"));
        int g = 1;
        for (auto& [aad, b] : blobs) {
            CHECK(sealed_key_id(b) == "new");
            CHECK(unseal(ring, b, aad).view() == "gen" + std::to_string(g++));
        }
    }

    TEST_CASE("a key provider serves keys the ring has not loaded") {
        key_ring sealer;
        sealer.add("kms-1", key_of('k'));
        auto blob = seal(sealer, "token", "a");
        key_ring ring;
        int asked = 0;
        ring.set_provider([&](std::string_view id) -> std::optional<secret> {
            ++asked;
            if (id == "kms-1") return key_of('k');
            return std::nullopt;
        });
        CHECK(unseal(ring, blob, "a").view() == "token");
        CHECK(asked == 1);
        CHECK(error_of([&] { (void)seal(ring, "x", "a", "kms-2"); }) == errc::secret_key_unknown);
    }

    TEST_CASE("bad keys and ids are invalid_argument") {
        key_ring ring;
        CHECK(error_of([&] { ring.add("bad id", key_of('a')); }) == errc::invalid_argument);
        CHECK(error_of([&] { ring.add("", key_of('a')); }) == errc::invalid_argument);
        CHECK(error_of([&] { ring.add(std::string(65, 'k'), key_of('a')); }) == errc::invalid_argument);
        CHECK(error_of([&] { ring.add("short", secret("0123")); }) == errc::invalid_argument);
        CHECK(error_of([&] { ring.set_current("missing"); }) == errc::secret_key_unknown);
        CHECK(error_of([&] { (void)seal(ring, "x", "a"); }) == errc::secret_key_unknown); // no key at all
        CHECK(ring.ids().empty());
    }

    TEST_CASE("key files: created 0600 and exclusive, refused when others can read them") {
        qr_test::temp_dir dir("sealing-keys");
        auto path = dir.path() / "cluster.key";
        create_key_file(path, "k2026");
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        const auto text = slurp(path);
        CHECK(text.rfind("quorumreg-key 1 k2026 ", 0) == 0);
        CHECK(text.size() == std::string("quorumreg-key 1 k2026 ").size() + 64 + 1);
        CHECK(error_of([&] { create_key_file(path, "k2026"); }) == errc::already_exists);
        CHECK(slurp(path) == text); // untouched

        auto ring = key_ring::from_file(path);
        CHECK(ring.current() == "k2026");
        auto blob = seal(ring, "s3cret", "r");
        CHECK(unseal(key_ring::from_file(path), blob, "r").view() == "s3cret");

        ::chmod(path.c_str(), 0640);
        std::error_code ec;
        std::string why;
        key_ring r2;
        r2.load_file(path, ec, &why);
        CHECK(ec == errc::key_file_unsafe);
        CHECK(why.find("0640") != std::string::npos);
        CHECK(r2.ids().empty());
        ::chmod(path.c_str(), 0600);

        auto link = dir.path() / "link.key";
        std::filesystem::create_symlink(path, link);
        r2.load_file(link, ec, &why);
        CHECK(ec == errc::key_file_unsafe);

        r2.load_file(dir.path() / "missing.key", ec, &why);
        CHECK(ec == errc::not_found);

        auto bad = dir.path() / "bad.key";
        { std::ofstream(bad) << "quorumreg-key 1 k1 zz\n"; }
        ::chmod(bad.c_str(), 0600);
        r2.load_file(bad, ec, &why);
        CHECK(ec == errc::corrupt_data);
        CHECK(r2.ids().empty());
    }

    TEST_CASE("secrets wipe what they free") {
        // A moved-from secret is empty; clear() leaves nothing behind in the buffer it keeps.
        secret a("hunter2-hunter2-hunter2-hunter2");
        secret b = std::move(a);
        CHECK(a.empty()); // NOLINT(bugprone-use-after-move): the moved-from state is the point
        CHECK(b.view() == "hunter2-hunter2-hunter2-hunter2");
        const char* p = b.view().data();
        std::size_t n = b.size();
        b.clear();
        CHECK(b.empty());
        bool wiped = true;
        for (std::size_t i = 0; i < n; ++i)
            wiped = wiped && p[i] == 0; // capacity is kept by clear()
        CHECK(wiped);
    }

} // TEST_SUITE
