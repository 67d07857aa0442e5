#include <quorumreg/hive.hpp>
#include <quorumreg/detail/hive_recovery.hpp>

#include "process_util.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

using namespace quorumreg;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}
void spit(const fs::path& p, const std::string& data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << data;
}
fs::path newest(const fs::path& dir, const std::string& kind) {
    fs::path best;
    for (auto& e : fs::directory_iterator(dir)) {
        auto n = e.path().filename().string();
        if (n.rfind(kind + ".", 0) == 0 && n.size() == kind.size() + 17 &&
            (best.empty() || n > best.filename().string()))
            best = e.path();
    }
    return best;
}

/// Fails the Nth call of one kind with a chosen errno.
class failing_io : public file_io {
public:
    enum class site { open, pwrite, fdatasync, fsync, rename, ftruncate };
    void arm(site s, int err, int after = 0) {
        site_ = s;
        errno_ = err;
        countdown_ = after;
        armed_ = true;
        fired_ = 0;
    }
    void disarm() { armed_ = false; }
    int fired() const { return fired_; }

    int open(const char* p, int f, mode_t m) override { return hit(site::open) ? -1 : file_io::open(p, f, m); }
    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        return hit(site::pwrite) ? -1 : file_io::pwrite(fd, b, n, o);
    }
    int fdatasync(int fd) override { return hit(site::fdatasync) ? -1 : file_io::fdatasync(fd); }
    int fsync(int fd) override { return hit(site::fsync) ? -1 : file_io::fsync(fd); }
    int rename(const char* a, const char* b) override { return hit(site::rename) ? -1 : file_io::rename(a, b); }
    int ftruncate(int fd, off_t l) override { return hit(site::ftruncate) ? -1 : file_io::ftruncate(fd, l); }

private:
    bool hit(site s) {
        if (!armed_ || s != site_) return false;
        if (countdown_-- > 0) return false;
        ++fired_;
        errno = errno_;
        return true;
    }
    site site_ = site::open;
    int errno_ = EIO;
    int countdown_ = 0;
    bool armed_ = false;
    int fired_ = 0;
};

std::uint64_t env_or(const char* name, std::uint64_t dflt) {
    const char* v = std::getenv(name);
    return v ? std::strtoull(v, nullptr, 10) : dflt;
}

} // namespace

TEST_SUITE("hive") {

    TEST_CASE("commits survive reopen; the registry API works unchanged") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            h.set_value("Software/App", "Port", value::dword(8080));
            h.set_value("Software/App", "Name", value::string("x"));
            transaction txn;
            txn.create_key("Software/App/Sub").delete_value("Software/App", "Name");
            h.commit(txn);
            std::error_code ec;
            h.commit(transaction().set_value("A", "b", value::dword(1)).delete_key("Missing"), ec);
            CHECK(ec == errc::key_not_found);
            CHECK(h.revision() == 3);
        }
        hive h(dir.path() / "h");
        CHECK(h.revision() == 3);
        CHECK(h.get_value("software/app", "port").as_dword() == 8080);
        CHECK_FALSE(h.find_value("Software/App", "Name"));
        CHECK(h.key_exists("Software/App/Sub"));
        CHECK_FALSE(h.key_exists("A"));
    }

    TEST_CASE("files are 0600 inside a 0700 directory") {
        qr_test::temp_dir dir("hive");
        hive h(dir.path() / "h");
        h.set_value("K", "v", value::dword(1));
        h.compact();
        CHECK((fs::status(dir.path() / "h").permissions() & fs::perms::all) == fs::perms::owner_all);
        int files = 0;
        for (auto& e : fs::directory_iterator(dir.path() / "h")) {
            ++files;
            CHECK_MESSAGE((e.status().permissions() & fs::perms::all) ==
                              (fs::perms::owner_read | fs::perms::owner_write),
                          e.path().string());
        }
        CHECK(files >= 4);
    }

    TEST_CASE("snapshots and compaction keep every change") {
        qr_test::temp_dir dir("hive");
        hive_options opts;
        opts.snapshot_threshold = 4096;
        {
            hive h(dir.path() / "h", opts);
            for (int i = 0; i < 500; ++i)
                h.set_value("K" + std::to_string(i % 17), "v" + std::to_string(i), value::dword(i));
            h.delete_key("K3");
            CHECK(h.generation() > 2);
        }
        hive h(dir.path() / "h", opts);
        CHECK(h.revision() == 501);
        CHECK_FALSE(h.key_exists("K3"));
        CHECK(h.get_value("K4", "v497").as_dword() == 497);
        CHECK(h.values("K5").size() == 30); // i % 17 == 5 for i in [0, 500)
        // Only the current and one previous generation remain on disk.
        int snaps = 0;
        for (auto& e : fs::directory_iterator(dir.path() / "h"))
            snaps += e.path().filename().string().rfind("snapshot.", 0) == 0;
        CHECK(snaps <= 2);
    }

    TEST_CASE("a directory can be opened once per process") {
        qr_test::temp_dir dir("hive");
        hive a(dir.path() / "h");
        std::error_code ec;
        auto b = hive::open(dir.path() / "h", {}, ec);
        CHECK(ec == errc::lock_failed);
        CHECK(b == nullptr);
    }

    TEST_CASE("a torn tail is truncated; acknowledged records stay") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            for (int i = 1; i <= 10; ++i)
                h.set_value("K", "v", value::dword(i));
        }
        auto j = newest(dir.path() / "h", "journal");
        auto file = slurp(j);
        // The frames end where the zero-filled tail begins.
        detail::journal_header_info jh;
        std::string w;
        REQUIRE(!detail::decode_journal_header(file, jh, w));
        const auto hsize = detail::journal_header_size_of(jh.version);
        auto scanned = detail::scan_journal(jh.version, jh.salt, std::string_view(file).substr(hsize));
        REQUIRE(scanned.frames.size() == 10);
        std::size_t end = hsize + scanned.end;
        CHECK(file.find_first_not_of('\0', end) == std::string::npos); // a clean zero tail
        {
            hive h(dir.path() / "h"); // the zero tail is the end of the journal, not a torn write
            CHECK(h.revision() == 10);
        }
        CHECK(slurp(j) == file); // nothing truncated or rewritten
        // A torn record followed by the zero tail is still a torn tail (its lost bytes read as
        // the tail's zeros; each cut covers a non-zero byte of the last record, dword 10).
        for (std::size_t cut : {std::size_t{4}, std::size_t{5}, std::size_t{13}}) {
            auto torn = file;
            std::fill(torn.begin() + static_cast<std::ptrdiff_t>(end - cut),
                      torn.begin() + static_cast<std::ptrdiff_t>(end), '\0');
            spit(j, torn);
            {
                hive h(dir.path() / "h");
                CHECK(h.revision() == 9);
                CHECK(h.get_value("K", "v").as_dword() == 9);
                h.set_value("K", "v", value::dword(10)); // commits over the cut record
            }
            hive h(dir.path() / "h");
            CHECK(h.revision() == 10);
        }
        auto data = file.substr(0, end); // a journal without a zero tail (as older builds wrote)
        auto full = data.size();
        for (std::size_t cut : {std::size_t{1}, std::size_t{5}, std::size_t{13}}) {
            spit(j, data.substr(0, full - cut)); // the last record is torn
            {
                hive h(dir.path() / "h");
                CHECK(h.revision() == 9);
                CHECK(h.get_value("K", "v").as_dword() == 9);
            }
            CHECK(fs::file_size(j) < full - cut + 1); // truncated to the last good record
            spit(j, data);
        }
        // Garbage appended after the last record is a torn tail too.
        spit(j, data + std::string("\x51\x52\x4a\x52garbage", 11));
        hive h(dir.path() / "h");
        CHECK(h.revision() == 10);
    }

    TEST_CASE("a bit flip before the tail is a clear error, never a silent skip") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            for (int i = 1; i <= 10; ++i)
                h.set_value("K", "v" + std::to_string(i), value::dword(i));
        }
        auto j = newest(dir.path() / "h", "journal");
        auto data = slurp(j);
        auto bad = data;
        bad[detail::journal_header_size + 20] ^= 0x10; // inside the first record
        spit(j, bad);
        std::error_code ec;
        auto h = hive::open(dir.path() / "h", {}, ec);
        CHECK(ec == errc::corrupt_data);
        CHECK(h == nullptr);
        CHECK(slurp(j) == bad); // nothing truncated or rewritten
        try {
            hive again(dir.path() / "h");
            FAIL("expected corrupt_data");
        } catch (const error& e) {
            CHECK(std::string(e.what()).find("followed by valid records") != std::string::npos);
        }
        // A corrupt journal header, too.
        bad = data;
        bad[2] = 'X';
        spit(j, bad);
        hive::open(dir.path() / "h", {}, ec);
        CHECK(ec == errc::corrupt_data);
    }

    TEST_CASE("a corrupt newest snapshot falls back to the previous generation") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            h.set_value("K", "a", value::dword(1));
            h.compact(); // snapshot 1
            h.set_value("K", "b", value::dword(2));
            h.compact(); // snapshot 2
            h.set_value("K", "c", value::dword(3));
        }
        auto s = newest(dir.path() / "h", "snapshot");
        auto data = slurp(s);
        data[data.size() / 2] ^= 0x01;
        spit(s, data);
        {
            hive h(dir.path() / "h");
            CHECK(h.revision() == 3);
            CHECK(h.get_value("K", "b").as_dword() == 2);
            CHECK(h.get_value("K", "c").as_dword() == 3);
        }
        CHECK(fs::exists(s.string() + ".corrupt"));
        // With no earlier generation to fall back on, the error is clear.
        qr_test::temp_dir dir2("hive");
        {
            hive h(dir2.path() / "h");
            h.set_value("K", "a", value::dword(1));
            h.compact();
            h.compact(); // generation 2; generation 0 is gone
        }
        auto s2 = newest(dir2.path() / "h", "snapshot");
        auto d2 = slurp(s2);
        d2[d2.size() - 1] ^= 0x01;
        spit(s2, d2);
        // Remove the fallback snapshot so that nothing can roll forward.
        for (auto& e : fs::directory_iterator(dir2.path() / "h"))
            if (e.path().filename().string().rfind("snapshot.", 0) == 0 && e.path() != s2) fs::remove(e.path());
        std::error_code ec;
        auto h = hive::open(dir2.path() / "h", {}, ec);
        CHECK(ec == errc::corrupt_data);
    }

    TEST_CASE("a hive written by a newer format version is refused") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            h.set_value("K", "v", value::dword(1));
        }
        auto j = newest(dir.path() / "h", "journal");
        auto data = slurp(j);
        data[4] = detail::hive_format_version + 1; // version byte
        // Re-seal the header checksum so only the version differs.
        const auto hsize = detail::journal_header_size_v2;
        std::string hdr = data.substr(0, hsize - 4);
        std::string crc;
        detail::byte_writer(crc).u32le(detail::crc32c(hdr));
        data.replace(hsize - 4, 4, crc);
        spit(j, data);
        std::error_code ec;
        hive::open(dir.path() / "h", {}, ec);
        CHECK(ec == errc::unsupported_version);
    }

    TEST_CASE("concurrent committers share syncs and lose nothing") {
        qr_test::temp_dir dir("hive");
        {
            hive h(dir.path() / "h");
            std::vector<std::thread> ts;
            for (int t = 0; t < 8; ++t)
                ts.emplace_back([&, t] {
                    for (int i = 0; i < 50; ++i)
                        h.set_value("T" + std::to_string(t), "v" + std::to_string(i), value::dword(i));
                });
            for (auto& t : ts)
                t.join();
            CHECK(h.revision() == 400);
        }
        hive h(dir.path() / "h");
        for (int t = 0; t < 8; ++t)
            CHECK(h.values("T" + std::to_string(t)).size() == 50);
    }

    TEST_CASE("relaxed sync mode still persists on close") {
        qr_test::temp_dir dir("hive");
        hive_options opts;
        opts.sync_interval = std::chrono::milliseconds(50);
        {
            hive h(dir.path() / "h", opts);
            for (int i = 0; i < 100; ++i)
                h.set_value("K", "v", value::dword(i));
        }
        hive h(dir.path() / "h");
        CHECK(h.get_value("K", "v").as_dword() == 99);
    }

    TEST_CASE("crash: kill -9 at random moments leaves exactly a prefix with every acknowledged commit") {
        qr_test::temp_dir dir("hive-crash");
        auto rounds = env_or("QUORUMREG_CRASH_ROUNDS", 200);
        auto seed = env_or("QUORUMREG_CRASH_SEED", std::random_device{}());
        MESSAGE("crash test: " << rounds << " rounds, seed " << seed << " (QUORUMREG_CRASH_SEED to replay)");
        std::mt19937_64 rng(seed);
        auto hdir = (dir.path() / "h").string();
        std::map<int, std::uint64_t> acked; // per writer thread: highest acknowledged number
        std::uint64_t total_acked = 0;
        for (std::uint64_t round = 0; round < rounds; ++round) {
            int threads = (round % 4 == 3) ? 3 : 1;
            {
                qr_test::child_process child({QUORUMREG_HIVE_CHILD, "crash", hdir, std::to_string(threads)});
                std::string out;
                // Mostly within the first 30 ms (open, recovery, the first commits); every
                // fourth round up to 300 ms, so slow builds (TSan) also reach acknowledged commits.
                auto delay = std::chrono::microseconds(rng() % (round % 4 == 2 ? 300000 : 30000));
                auto until = std::chrono::steady_clock::now() + delay;
                while (std::chrono::steady_clock::now() < until)
                    child.read_some(out, 1);
                child.kill(SIGKILL);
                child.wait();
                child.read_all(out);
                std::istringstream lines(out);
                int t;
                std::uint64_t i;
                while (lines >> t >> i) {
                    acked[t] = std::max(acked[t], i);
                    ++total_acked;
                }
            }
            hive h(hdir);
            for (const auto& entry : acked) {
                const int t = entry.first;
                const std::uint64_t a = entry.second;
                auto key = "Crash/T" + std::to_string(t);
                auto n = h.find_value(key, "n");
                REQUIRE_MESSAGE(n, "round " << round << ": writer " << t << " lost everything");
                auto m = n->as_qword();
                REQUIRE_MESSAGE(m >= a, "round " << round << ": acknowledged " << a << " but recovered " << m);
                // Exactly a prefix: v1..vm present, nothing beyond.
                auto log = h.values(key + "/Log");
                REQUIRE_MESSAGE(log.size() == m, "round " << round << ": " << log.size() << " log entries for n=" << m);
                CHECK_FALSE(h.find_value(key + "/Log", "v" + std::to_string(m + 1)));
            }
        }
        MESSAGE("acked=" << total_acked << " rounds=" << rounds);
        CHECK(total_acked > 0);
    }

    TEST_CASE("two processes writing concurrently: no lost update, each sees the other") {
        qr_test::temp_dir dir("hive");
        auto hdir = (dir.path() / "h").string();
        hive h(hdir);
        std::atomic<int> remote_events{0};
        auto sub = h.watch("Counter", watch_scope::key, [&](const change_event& e) {
            if (e.kind == change_kind::value_set) ++remote_events;
        });
        constexpr int per_process = 200;
        qr_test::child_process child({QUORUMREG_HIVE_CHILD, "count", hdir, std::to_string(per_process)});
        for (int i = 0; i < per_process; ++i) {
            while (true) {
                std::error_code ec;
                auto info = h.info("Counter", ec);
                auto cur = h.find_value("Counter", "value");
                std::uint32_t v = cur ? cur->as_dword() : 0;
                transaction txn;
                txn.require_revision("Counter", info.revision).set_value("Counter", "value", value::dword(v + 1));
                h.commit(txn, ec);
                if (!ec) break;
                REQUIRE(ec == errc::revision_mismatch);
            }
        }
        int status = child.wait();
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        CHECK(h.get_value("Counter", "value").as_dword() == 2 * per_process); // sees the child's commits
        // Watches fired for the other process's changes too (every increment, ours and theirs).
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (remote_events < 2 * per_process && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        CHECK(remote_events == 2 * per_process);
    }

    TEST_CASE("a watch fires for another process's change without any local access") {
        qr_test::temp_dir dir("hive");
        auto hdir = (dir.path() / "h").string();
        hive h(hdir);
        std::atomic<int> seen{0};
        std::string path;
        std::mutex mu;
        auto sub = h.watch("Remote", watch_scope::subtree, [&](const change_event& e) {
            std::lock_guard lk(mu);
            path = e.key_path;
            ++seen;
        });
        qr_test::child_process child({QUORUMREG_HIVE_CHILD, "set", hdir, "Remote/Deep", "x", "7"});
        REQUIRE(child.wait() == 0);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (seen < 3 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        CHECK(seen == 3); // Remote and Remote\Deep created, x set
        std::lock_guard lk(mu);
        CHECK(path == "Remote\\Deep");
    }

    TEST_CASE("another process's compaction is followed") {
        qr_test::temp_dir dir("hive");
        auto hdir = (dir.path() / "h").string();
        hive h(hdir);
        h.set_value("Mine", "v", value::dword(1));
        for (int i = 0; i < 3; ++i) {
            // The child's 64 KiB threshold is not reached by one set, so compact via many children.
            qr_test::child_process child({QUORUMREG_HIVE_CHILD, "set", hdir, "Theirs", "v" + std::to_string(i), "1"});
            REQUIRE(child.wait() == 0);
            h.compact();
        }
        CHECK(h.values("Theirs").size() == 3);
        CHECK(h.get_value("Mine", "v").as_dword() == 1);
    }

    TEST_CASE("injected I/O failures: a clear error, no corruption, a clean reopen") {
        using site = failing_io::site;
        struct scenario {
            site where;
            bool via_compact;
        };
        for (auto sc : {scenario{site::pwrite, false}, scenario{site::fdatasync, false}, scenario{site::open, true},
                        scenario{site::rename, true}, scenario{site::fsync, true}, scenario{site::pwrite, true}}) {
            for (int err : {ENOSPC, EIO, EACCES}) {
                CAPTURE(static_cast<int>(sc.where));
                CAPTURE(sc.via_compact);
                CAPTURE(err);
                qr_test::temp_dir dir("hive-fault");
                failing_io io;
                hive_options opts;
                opts.io = &io;
                {
                    hive h(dir.path() / "h", opts);
                    h.set_value("K", "before", value::dword(1));
                    io.arm(sc.where, err);
                    std::error_code ec;
                    if (sc.via_compact) {
                        ec = qr_test::code_of([&] { h.compact(); });
                    } else {
                        h.set_value("K", "failed", value::dword(2), ec);
                    }
                    CHECK(io.fired() >= 1);
                    auto expected = err == ENOSPC   ? errc::no_space
                                    : err == EACCES ? errc::access_denied
                                                    : errc::io_error;
                    CHECK(ec == expected);
                    io.disarm();
                    CHECK_FALSE(h.find_value("K", "failed"));   // not applied in memory either
                    h.set_value("K", "after", value::dword(3)); // still usable
                }
                hive h(dir.path() / "h");
                CHECK(h.get_value("K", "before").as_dword() == 1);
                CHECK(h.get_value("K", "after").as_dword() == 3);
                CHECK_FALSE(h.find_value("K", "failed"));
            }
        }
    }

    TEST_CASE("a failure to create the hive is reported") {
        qr_test::temp_dir dir("hive");
        failing_io io;
        io.arm(failing_io::site::open, EACCES);
        hive_options opts;
        opts.io = &io;
        std::error_code ec;
        auto h = hive::open(dir.path() / "h", opts, ec);
        CHECK(ec == errc::access_denied);
        // And the directory can be opened normally afterwards.
        hive ok(dir.path() / "h");
        ok.set_value("K", "v", value::dword(1));
    }
}

// ---- storage issue 14: regression tests named after each defect ---------------------------------
namespace {

/// Bytes of the journal before and after one more commit: the new record is [start, end).
struct record_span {
    std::string before, after;
    std::size_t start = 0, end = 0;
};
record_span last_record(const fs::path& dir, const fs::path& journal) {
    record_span s;
    s.before = slurp(journal);
    {
        hive h(dir);
        h.set_value("K", "last", value::string(std::string(40, 'x')));
    }
    s.after = slurp(journal);
    REQUIRE(s.after.size() >= s.before.size());
    while (s.start < s.before.size() && s.before[s.start] == s.after[s.start])
        ++s.start;
    s.end = s.after.find_last_not_of('\0') + 1;
    REQUIRE(s.start < s.end);
    return s;
}

/// Holds the first journal write of a batch until released, and tears the next one: only
/// its bytes from the second 512-byte sector on reach the file (out-of-order sector loss).
class batch_tearing_io : public file_io {
public:
    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        std::unique_lock lk(mu_);
        if (hold_ && n < 4096) { // a record batch, not a zero-tail extension
            hold_ = false;
            held_ = true;
            cv_.notify_all();
            cv_.wait(lk, [&] { return !held_; });
            return file_io::pwrite(fd, b, n, o);
        }
        if (tear_ && n > 512 && n < 65536) {
            tear_ = false;
            torn_ = true;
            auto skip = 512 - static_cast<std::size_t>(o % 512);
            if (file_io::pwrite(fd, static_cast<const char*>(b) + skip, n - skip, o + static_cast<off_t>(skip)) < 0)
                return -1;
            return static_cast<ssize_t>(n);
        }
        return file_io::pwrite(fd, b, n, o);
    }
    void hold_next() {
        std::lock_guard lk(mu_);
        hold_ = true;
    }
    void wait_held() {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return held_; });
    }
    void release_and_tear_next() {
        std::lock_guard lk(mu_);
        tear_ = true;
        held_ = false;
        cv_.notify_all();
    }
    bool torn() {
        std::lock_guard lk(mu_);
        return torn_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool hold_ = false, held_ = false, tear_ = false, torn_ = false;
};

} // namespace

TEST_SUITE("hive") {

    TEST_CASE("defect 1: a torn record header (only its first bytes on disk) is cut, not refused") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        {
            hive h(hd);
            for (int i = 1; i <= 4; ++i)
                h.set_value("K", "v", value::dword(i));
        }
        auto j = newest(hd, "journal");
        auto s = last_record(hd, j);
        // Every proper prefix of the record: the magic alone (the reproduced case), part of the
        // header, the header without the payload, all but the last byte.
        for (std::size_t k = 1; k < s.end - s.start; ++k) {
            CAPTURE(k);
            auto torn = s.before;
            torn.resize(std::max(torn.size(), s.start + k), '\0');
            std::copy(s.after.begin() + static_cast<std::ptrdiff_t>(s.start),
                      s.after.begin() + static_cast<std::ptrdiff_t>(s.start + k),
                      torn.begin() + static_cast<std::ptrdiff_t>(s.start));
            spit(j, torn);
            std::error_code ec;
            auto h = hive::open(hd, {}, ec);
            REQUIRE_MESSAGE(!ec, ec.message());
            CHECK(h->revision() == 4);
            CHECK(h->get_value("K", "v").as_dword() == 4);
        }
    }

    TEST_CASE("defect 2: a group-commit batch torn out of order is cut; nothing acknowledged is lost") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        batch_tearing_io io;
        {
            hive_options o;
            o.io = &io;
            hive h(hd, o);
            h.set_value("K", "first", value::dword(1)); // acknowledged, must survive
            io.hold_next();
            std::thread leader([&] { h.set_value("K", "held", value::dword(2)); });
            io.wait_held();
            // Queue several commits behind the held leader: they form one multi-record batch.
            std::vector<std::thread> rest;
            for (int i = 0; i < 4; ++i)
                rest.emplace_back(
                    [&h, i] { h.set_value("K", "b" + std::to_string(i), value::string(std::string(300, 'y'))); });
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            io.release_and_tear_next();
            leader.join();
            for (auto& t : rest)
                t.join();
            REQUIRE(io.torn());
        } // the torn batch "was acknowledged" in this process only: the disk lost its first sector
        std::error_code ec;
        auto h = hive::open(hd, {}, ec);
        REQUIRE_MESSAGE(!ec, ec.message());
        CHECK(h->get_value("K", "first").as_dword() == 1);
        CHECK(h->get_value("K", "held").as_dword() == 2);
        // The torn batch is gone as a whole or kept as a whole prefix: never a hole.
        auto rev = h->revision();
        CHECK(rev >= 2);
        int present = 0;
        for (int i = 0; i < 4; ++i)
            present += h->find_value("K", "b" + std::to_string(i)) ? 1 : 0;
        CHECK(static_cast<std::uint64_t>(present) == rev - 2);
    }

    TEST_CASE("defect 4: one directory opened twice through a symlink is refused") {
        qr_test::temp_dir dir("hive");
        hive a(dir.path() / "h");
        fs::create_directory_symlink(dir.path() / "h", dir.path() / "link");
        std::error_code ec;
        auto b = hive::open(dir.path() / "link", {}, ec);
        CHECK(ec == errc::lock_failed);
        CHECK(b == nullptr);
    }

    TEST_CASE("defect 7: a hive whose journals and snapshots were deleted is refused, not started afresh") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        {
            hive h(hd);
            h.set_value("K", "v", value::dword(7));
            h.compact();
            h.set_value("K", "w", value::dword(8));
        }
        for (auto& e : fs::directory_iterator(hd)) {
            auto n = e.path().filename().string();
            if (n.rfind("journal.", 0) == 0 || n.rfind("snapshot.", 0) == 0) fs::remove(e.path());
        }
        std::error_code ec;
        auto h = hive::open(hd, {}, ec);
        CHECK(ec == errc::corrupt_data);
        CHECK(h == nullptr);
        std::size_t files = 0;
        for (auto& e : fs::directory_iterator(hd)) {
            auto n = e.path().filename().string();
            CHECK(n.rfind("journal.", 0) != 0); // nothing re-created
            ++files;
        }
        CHECK(files > 0);
    }
}

namespace {

/// Counts the calls that could change a file or directory; fails a directory listing on demand.
class write_watch_io : public file_io {
public:
    int writes = 0;
    bool fail_listing = false;
    int open(const char* p, int f, mode_t m) override {
        if (f & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC)) ++writes;
        return file_io::open(p, f, m);
    }
    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        ++writes;
        return file_io::pwrite(fd, b, n, o);
    }
    int ftruncate(int fd, off_t l) override {
        ++writes;
        return file_io::ftruncate(fd, l);
    }
    int rename(const char* a, const char* b) override {
        ++writes;
        return file_io::rename(a, b);
    }
    int unlink(const char* p) override {
        ++writes;
        return file_io::unlink(p);
    }
    int mkdir(const char* p, mode_t m) override {
        ++writes;
        return file_io::mkdir(p, m);
    }
    int fsync(int fd) override {
        ++writes;
        return file_io::fsync(fd);
    }
    int fdatasync(int fd) override {
        ++writes;
        return file_io::fdatasync(fd);
    }
    void* mmap_shared(int fd, std::size_t len) override {
        ++writes;
        return file_io::mmap_shared(fd, len);
    }
    int list_directory(const char* p, std::vector<std::string>& names) override {
        if (fail_listing) {
            errno = EIO;
            return -1;
        }
        return file_io::list_directory(p, names);
    }
};

std::map<std::string, std::string> dir_bytes(const fs::path& d) {
    std::map<std::string, std::string> out;
    for (auto& e : fs::directory_iterator(d))
        out[e.path().filename().string()] = slurp(e.path());
    return out;
}

} // namespace

TEST_SUITE("hive") {

    TEST_CASE("defect 3: a directory listing that fails at open is reported; nothing is re-created") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        {
            hive h(hd);
            h.set_value("K", "v", value::dword(1));
        }
        auto before = dir_bytes(hd);
        write_watch_io io;
        io.fail_listing = true;
        hive_options o;
        o.io = &io;
        std::error_code ec;
        auto h = hive::open(hd, o, ec);
        CHECK(ec == errc::io_error);
        CHECK(h == nullptr);
        CHECK(dir_bytes(hd) == before); // journal.0 was not re-created over the data
        try {
            hive again(hd, o);
        } catch (const error& e) {
            CHECK(std::string(e.what()).find("list directory") != std::string::npos);
        }
    }

    TEST_CASE("defect 8: a read-only open never writes, reports a torn tail and works on a read-only copy") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        {
            hive h(hd);
            for (int i = 1; i <= 5; ++i)
                h.set_value("K", "v", value::dword(i));
            h.compact();
            h.set_value("K", "w", value::dword(6));
        }
        auto j = newest(hd, "journal");
        auto s = last_record(hd, j); // revision 7
        auto torn = s.after;
        std::fill(torn.begin() + static_cast<std::ptrdiff_t>(s.end - 3),
                  torn.begin() + static_cast<std::ptrdiff_t>(s.end),
                  '\x5a'); // the last frame is damaged, nothing follows: a torn tail
        spit(j, torn);
        auto before = dir_bytes(hd);
        write_watch_io io;
        hive_options o;
        o.read_only = true;
        o.io = &io;
        {
            hive h(hd, o);
            CHECK(h.read_only());
            CHECK(h.revision() == 6);
            CHECK(h.get_value("K", "w").as_dword() == 6);
            CHECK(h.torn_tail() > 0);
            std::error_code ec;
            h.set_value("K", "x", value::dword(1), ec);
            CHECK(ec == errc::read_only);
            h.compact(ec);
            CHECK(ec == errc::read_only);
            h.refresh(ec);
            CHECK(!ec);
        }
        CHECK(io.writes == 0);
        CHECK(dir_bytes(hd) == before);
        // A copy with every write bit removed (root ignores permission bits, hence the seam
        // count above; the copy shows nothing needs a writable file or directory).
        auto copy = dir.path() / "copy";
        fs::copy(hd, copy);
        for (auto& e : fs::directory_iterator(copy))
            fs::permissions(e.path(), fs::perms::owner_read);
        fs::permissions(copy, fs::perms::owner_read | fs::perms::owner_exec);
        {
            hive h(copy, o);
            CHECK(h.revision() == 6);
        }
        fs::permissions(copy, fs::perms::owner_all);
        // A missing hive is not_found, and nothing is created.
        std::error_code ec;
        auto none = hive::open(dir.path() / "typo", o, ec);
        CHECK(ec == errc::not_found);
        CHECK(!fs::exists(dir.path() / "typo"));
        hive_options no_create;
        no_create.create = false;
        hive::open(dir.path() / "typo", no_create, ec);
        CHECK(ec == errc::not_found);
        CHECK(!fs::exists(dir.path() / "typo"));
        // The writer's open cuts the torn tail.
        hive w(hd);
        CHECK(w.revision() == 6);
        CHECK(w.torn_tail() == 0);
    }

    TEST_CASE("defect 8: a read-only open follows a live writer's commits") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        {
            hive w(hd);
            w.set_value("Theirs", "a", value::dword(1));
        }
        hive_options o;
        o.read_only = true;
        hive r(hd, o);
        CHECK(r.get_value("Theirs", "a").as_dword() == 1);
        qr_test::child_process child({QUORUMREG_HIVE_CHILD, "set", hd.string(), "Theirs", "b", "2"});
        REQUIRE(child.wait() == 0);
        r.refresh();
        CHECK(r.get_value("Theirs", "b").as_dword() == 2);
    }

    TEST_CASE("defect 9: refresh, compact and sync have error_code forms and report failures") {
        qr_test::temp_dir dir("hive");
        failing_io io;
        hive_options o;
        o.io = &io;
        o.sync_interval = std::chrono::milliseconds(60000); // relaxed: sync() has work to do
        hive h(dir.path() / "h", o);
        h.set_value("K", "v", value::dword(1)); // synced: the first sync is always due
        h.set_value("K", "v", value::dword(2)); // pending until the interval or sync()
        std::error_code ec;
        io.arm(failing_io::site::fdatasync, EIO);
        h.sync(ec);
        CHECK(ec == errc::io_error);
        CHECK_THROWS_AS(h.sync(), error);
        io.disarm();
        h.sync(ec);
        CHECK(!ec);
        io.arm(failing_io::site::rename, ENOSPC);
        h.compact(ec);
        CHECK(ec == errc::no_space);
        io.disarm();
        h.compact(ec);
        CHECK(!ec);
        h.refresh(ec);
        CHECK(!ec);
        CHECK(h.get_value("K", "v").as_dword() == 2);
    }
}

TEST_SUITE("hive_parts") {

    TEST_CASE("format: a frame's checksum covers its header; the salt is part of it") {
        detail::batch_builder b;
        b.add(1, transaction().set_value("K", "v", value::dword(1)).operations());
        std::string f;
        detail::append_frame(f, 42, 0, 0, b.payload());
        detail::journal_frame out;
        CHECK(detail::parse_frame(f, 0, 42, out));
        CHECK(out.seq == 0);
        CHECK_FALSE(detail::parse_frame(f, 0, 43, out)); // another journal's salt
        for (std::size_t i = 4; i < detail::frame_header_size; ++i) {
            auto bad = f;
            bad[i] ^= 1;
            CAPTURE(i);
            CHECK_FALSE(detail::parse_frame(bad, 0, 42, out));
        }
        std::string magic_only = f.substr(0, 4) + std::string(f.size() - 4, '\0');
        CHECK_FALSE(detail::parse_frame(magic_only, 0, 42, out));
        // v1 headers: a zero-length record is never valid (CRC-32C of nothing is 0).
        std::string v1(4, '\0');
        std::memcpy(v1.data(), &detail::record_magic, 4);
        v1 += std::string(8, '\0');
        CHECK_FALSE(detail::parse_record_v1(v1, 0, out));
        detail::journal_header_info h;
        h.generation = 3;
        h.base_revision = 9;
        h.salt = 77;
        detail::journal_header_info back;
        std::string why;
        CHECK(!detail::decode_journal_header(detail::encode_journal_header(h), back, why));
        CHECK(back.salt == 77);
        CHECK(back.generation == 3);
        CHECK(detail::parse_gen_name(detail::gen_name("journal", 0x1f), "journal", h.generation));
        CHECK(h.generation == 0x1f);
        std::uint64_t g = 0;
        CHECK_FALSE(detail::parse_gen_name("journal.zzzzzzzzzzzzzzzz", "journal", g));
    }

    TEST_CASE("recovery: torn tails are cut, durable damage is refused, relaxed batches may tear in any order") {
        auto frame = [](std::uint64_t seq, std::uint64_t synced) {
            detail::batch_builder b;
            b.add(seq + 1, transaction().set_value("K", "v", value::string(std::string(600, 'a'))).operations());
            std::string f;
            detail::append_frame(f, 5, seq, synced, b.payload());
            return f;
        };
        std::string strict = frame(0, 0) + frame(1, 1) + frame(2, 2);
        auto s = detail::scan_journal(2, 5, strict + std::string(100, '\0'));
        CHECK(s.frames.size() == 3);
        CHECK(s.tail == detail::journal_tail::clean);
        // The last frame lost its first sector: torn.
        auto f2 = frame(2, 2);
        std::string lost_first = frame(0, 0) + frame(1, 1) + std::string(512, '\0') + f2.substr(512);
        s = detail::scan_journal(2, 5, lost_first);
        CHECK(s.frames.size() == 2);
        CHECK(s.tail == detail::journal_tail::torn);
        // Frame 1 damaged while frame 2 (written after frame 1's sync) is intact: refused.
        auto f1 = frame(1, 1);
        f1[40] ^= 1;
        s = detail::scan_journal(2, 5, frame(0, 0) + f1 + frame(2, 2));
        CHECK(s.tail == detail::journal_tail::corrupt);
        // Relaxed mode: frames 1 and 2 were written before any sync (synced = 1): losing frame 1
        // but keeping frame 2 is a torn tail, not corruption.
        s = detail::scan_journal(2, 5, frame(0, 0) + std::string(f1.size(), '\0') + frame(2, 1));
        CHECK(s.frames.size() == 1);
        CHECK(s.tail == detail::journal_tail::torn);
        // A stale frame from an earlier cut (lower seq) is not evidence.
        s = detail::scan_journal(2, 5, frame(0, 0) + std::string(10, 'x') + frame(0, 0));
        CHECK(s.tail == detail::journal_tail::torn);
        // Snapshot candidates: newest first, each only with its journals present.
        auto c = detail::recovery_candidates({2, 3}, {2, 3});
        REQUIRE(c.size() == 2);
        CHECK(c[0].generation == 3);
        CHECK(c[1].generation == 2);
        c = detail::recovery_candidates({3}, {0, 1, 2, 3});
        REQUIRE(c.size() == 2);
        CHECK(c[1].empty_state);
        c = detail::recovery_candidates({4}, {2, 3}); // journal 4 missing: only the newest may be
        REQUIRE(c.size() == 1);
        CHECK(c[0].generation == 4);
    }

    TEST_CASE("group commit: queued writers form batches and every writer is answered once") {
        struct item {
            int value = 0;
            int batch = -1;
        };
        detail::group_commit<item> gc;
        std::atomic<int> batches{0};
        std::mutex m;
        std::vector<int> seen;
        std::vector<std::thread> ts;
        std::vector<item> items(32);
        for (int i = 0; i < 32; ++i) {
            items[static_cast<std::size_t>(i)].value = i;
            ts.emplace_back([&, i] {
                gc.submit(items[static_cast<std::size_t>(i)], [&](std::vector<item*>& batch) {
                    int b = batches++;
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                    std::lock_guard g(m);
                    for (auto* it : batch) {
                        it->batch = b;
                        seen.push_back(it->value);
                    }
                });
            });
        }
        for (auto& t : ts)
            t.join();
        std::sort(seen.begin(), seen.end());
        CHECK(seen.size() == 32);
        CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
        for (auto& it : items)
            CHECK(it.batch >= 0);
        CHECK(batches.load() < 32); // some writers shared a batch
    }

    TEST_CASE("meta: the open registry identifies directories by device and inode") {
        auto& r = detail::open_hive_registry::instance();
        detail::open_hive_registry::id a{1, 99999991};
        CHECK(r.insert(a));
        CHECK_FALSE(r.insert(a));
        r.erase(a);
        CHECK(r.insert(a));
        r.erase(a);
    }

    TEST_CASE("format: a version 1 journal still opens and the writer moves on to version 2") {
        qr_test::temp_dir dir("hive");
        auto hd = dir.path() / "h";
        fs::create_directories(hd);
        detail::journal_header_info h;
        h.version = detail::hive_format_v1;
        std::string j = detail::encode_journal_header(h);
        detail::append_record_v1(j, 1, transaction().create_key("Old").operations());
        detail::append_record_v1(j, 2, transaction().set_value("Old", "v", value::dword(5)).operations());
        spit(hd / detail::gen_name("journal", 0), j + std::string(4, '\0'));
        {
            hive_options ro;
            ro.read_only = true;
            hive r(hd, ro);
            CHECK(r.get_value("Old", "v").as_dword() == 5);
            CHECK(r.generation() == 0);
        }
        hive w(hd);
        CHECK(w.get_value("Old", "v").as_dword() == 5);
        CHECK(w.generation() == 1); // a fresh version 2 generation
        w.set_value("Old", "v", value::dword(6));
        auto nj = slurp(newest(hd, "journal"));
        CHECK(static_cast<int>(nj[4]) == detail::hive_format_version);
    }
}
