// directory_store across real processes (fork + kill -9), its on-disk safety properties and
// its behaviour when the disk fails (through the I/O seam).
#include <quorumreg/stores/directory_store.hpp>

#include "test_support.hpp"
#include "store_conformance.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace quorumreg;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// Runs `fn` in a forked child; its return value is the exit status (exceptions: 99).
template <class F> pid_t spawn(F&& fn) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int code = 98;
        try {
            code = fn();
        } catch (...) {
            code = 99;
        }
        ::_exit(code);
    }
    return pid;
}

/// Waits for `pid` up to `timeout`; kills it if still running. Returns the exit status or -1.
int reap_child(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (true) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (std::chrono::steady_clock::now() >= until) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(5ms);
    }
}

std::vector<std::string> read_lines(const fs::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

std::set<std::string> dir_entries(const fs::path& p) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(p))
        out.insert(e.path().filename().string());
    return out;
}

/// file_io whose calls fail on demand with a chosen errno.
struct faulty_io : detail::file_io {
    std::atomic<int> write_errno{0}, fsync_errno{0}, rename_errno{0}, truncate_errno{0};
    std::atomic<int> fsync_failures{1 << 30}; ///< with fsync_errno: fail this many fsyncs
    std::atomic<int> writes_before_fault{0};  ///< let this many pwrite calls through first

    ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t off) override {
        if (write_errno && writes_before_fault-- <= 0) {
            // Write half, then fail: the worst case, a torn frame on disk.
            if (n > 1) ::pwrite(fd, buf, n / 2, off);
            errno = write_errno;
            return -1;
        }
        return detail::file_io::pwrite(fd, buf, n, off);
    }
    int fsync(int fd) override {
        if (fsync_errno && fsync_failures-- > 0) {
            errno = fsync_errno;
            return -1;
        }
        return detail::file_io::fsync(fd);
    }
    int rename(const char* a, const char* b) override {
        if (rename_errno) {
            errno = rename_errno;
            return -1;
        }
        return detail::file_io::rename(a, b);
    }
    int ftruncate(int fd, off_t len) override {
        if (truncate_errno) {
            errno = truncate_errno;
            return -1;
        }
        return detail::file_io::ftruncate(fd, len);
    }
};

} // namespace

TEST_SUITE("directory_store") {

    TEST_CASE("two processes racing compare-and-swap: exactly one wins each round") {
        qr_test::temp_dir tmp("dsrace");
        auto store_dir = tmp.path() / "q";
        const int rounds = 200;
        auto worker = [&](const char* name) {
            return [&, name] {
                directory_store s(store_dir);
                // Start together so the two really race.
                if (!qr_test::eventually([&] { return fs::exists(tmp.path() / "go"); }, 60s)) return 5;
                std::ofstream out(tmp.path() / name);
                int failures = 0;
                while (true) {
                    auto kv = s.get("race/counter");
                    int value = kv ? std::stoi(kv->value) : 0;
                    if (value >= rounds) break;
                    std::this_thread::sleep_for(std::chrono::microseconds(300)); // widen the race window
                    std::error_code ec;
                    s.put_if("race/counter", std::to_string(value + 1), kv ? kv->mod_revision : 0, 0, ec);
                    if (!ec) {
                        out << value + 1 << "\n";
                        out.flush();
                    } else if (ec == errc::compare_failed) {
                        ++failures;
                    } else {
                        return 3;
                    }
                }
                out << "failures " << failures << "\n";
                return 0;
            };
        };
        pid_t a = spawn(worker("a.txt"));
        pid_t b = spawn(worker("b.txt"));
        REQUIRE(a > 0);
        REQUIRE(b > 0);
        std::ofstream(tmp.path() / "go") << "go";
        CHECK(reap_child(a) == 0);
        CHECK(reap_child(b) == 0);

        std::vector<int> won;
        int failures = 0;
        std::vector<int> per_process;
        for (const char* name : {"a.txt", "b.txt"}) {
            int mine = 0;
            for (const auto& line : read_lines(tmp.path() / name)) {
                if (line.rfind("failures ", 0) == 0) {
                    failures += std::stoi(line.substr(9));
                } else {
                    won.push_back(std::stoi(line));
                    ++mine;
                }
            }
            per_process.push_back(mine);
        }
        std::sort(won.begin(), won.end());
        // Every round 1..rounds was won exactly once: no lost update, no double win.
        REQUIRE(won.size() == static_cast<std::size_t>(rounds));
        for (int i = 0; i < rounds; ++i)
            CHECK(won[i] == i + 1);
        MESSAGE("rounds won: " << per_process[0] << " and " << per_process[1] << "; lost races: " << failures);
        directory_store s(store_dir);
        CHECK(s.get("race/counter")->value == std::to_string(rounds));
        CHECK(s.get("race/counter")->version == rounds);
    }

    TEST_CASE("the lock of a SIGKILLed process frees itself when its lease expires") {
        qr_test::temp_dir tmp("dskill");
        auto store_dir = tmp.path() / "q";
        auto token_file = tmp.path() / "token.txt";
        pid_t child = spawn([&] {
            directory_store s(store_dir);
            auto lease = s.grant_lease(2s);
            auto token = s.acquire_lock("locks/owner", lease);
            {
                std::ofstream out(token_file.string() + ".tmp");
                out << token << "\n";
            }
            fs::rename(token_file.string() + ".tmp", token_file);
            while (true) { // a healthy owner keeps its lease alive until it is killed
                s.keep_alive(lease);
                std::this_thread::sleep_for(100ms);
            }
            return 0;
        });
        REQUIRE(child > 0);
        REQUIRE(qr_test::eventually([&] { return fs::exists(token_file); }, 60s));
        auto child_token = std::stoll(read_lines(token_file).at(0));

        directory_store s(store_dir);
        auto mine = s.grant_lease(30s);
        std::error_code ec;
        s.acquire_lock("locks/owner", mine, ec);
        CHECK(ec == errc::already_exists);   // the child holds it and keeps it alive
        std::this_thread::sleep_for(2500ms); // longer than the TTL: keep-alives from the child work
        s.acquire_lock("locks/owner", mine, ec);
        CHECK(ec == errc::already_exists);

        qr_test::event_sink sink;
        auto sub = s.watch("locks/", 0, sink.handler());
        ::kill(child, SIGKILL);
        CHECK(reap_child(child) == -1);
        auto evs = sink.wait_for(1, 60s);
        REQUIRE_FALSE(evs.empty());
        CHECK(evs[0].what == watch_event::kind::erase);
        CHECK(evs[0].kv.key == "locks/owner");
        auto token = s.acquire_lock("locks/owner", mine);
        CHECK(token > child_token);
    }

    TEST_CASE("a watcher in another process sees every change in order, exactly once") {
        qr_test::temp_dir tmp("dswatch");
        auto store_dir = tmp.path() / "q";
        store_revision start;
        {
            directory_store s(store_dir);
            s.put("w/before", "x");
            start = s.revision() + 1;
        }
        const int changes = 120;
        auto events_file = tmp.path() / "events.txt";
        pid_t child = spawn([&] {
            directory_store s(store_dir);
            std::mutex mu;
            std::condition_variable cv;
            std::ofstream out(events_file);
            int seen = 0;
            std::error_code failure;
            auto sub = s.watch("w/", start, [&](const std::vector<watch_event>& evs, std::error_code ec) {
                std::lock_guard lk(mu);
                for (const auto& e : evs) {
                    out << e.revision << ' ' << (e.what == watch_event::kind::put ? 'P' : 'E') << ' ' << e.kv.key << ' '
                        << e.kv.value << "\n";
                    ++seen;
                }
                if (ec) failure = ec;
                cv.notify_all();
            });
            std::unique_lock lk(mu);
            bool done = cv.wait_for(lk, 120s, [&] { return seen >= changes || failure; });
            out.flush();
            return done && !failure ? 0 : 4;
        });
        REQUIRE(child > 0);
        std::vector<std::string> expected;
        {
            directory_store s(store_dir);
            s.put("x/outside", "ignored");
            for (int i = 0; i < changes; ++i) {
                std::string key = "w/k" + std::to_string(i % 7);
                if (i % 5 == 4) {
                    auto before = s.revision();
                    auto r = s.erase(key);
                    if (r == before) { // absent: no event; write instead
                        r = s.put(key, "v" + std::to_string(i));
                        expected.push_back(std::to_string(r) + " P " + key + " v" + std::to_string(i));
                    } else {
                        expected.push_back(std::to_string(r) + " E " + key + " ");
                    }
                } else {
                    auto r = s.put(key, "v" + std::to_string(i));
                    expected.push_back(std::to_string(r) + " P " + key + " v" + std::to_string(i));
                }
                if (i % 10 == 0) std::this_thread::sleep_for(5ms); // mix replayed and live events
            }
        }
        CHECK(reap_child(child) == 0);
        auto got = read_lines(events_file);
        CHECK(got.size() == expected.size());
        CHECK(got == expected);
    }

    TEST_CASE("directory_store: a lock held by another process fails operations within the deadline") {
        qr_test::temp_dir tmp("dsheld");
        auto store_dir = tmp.path() / "q";
        directory_store_options o;
        o.deadline = 300ms;
        directory_store s(store_dir, o);
        s.put("k", "v");
        pid_t child = spawn([&] {
            boost::interprocess::file_lock lk((store_dir / "quorumreg.lock").c_str());
            lk.lock(); // a stuck writer
            std::ofstream(tmp.path() / "locked") << "1";
            qr_test::eventually([&] { return fs::exists(tmp.path() / "release"); }, 120s);
            lk.unlock();
            return 0;
        });
        REQUIRE(child > 0);
        REQUIRE(qr_test::eventually([&] { return fs::exists(tmp.path() / "locked"); }, 60s));
        std::error_code ec;
        auto t0 = std::chrono::steady_clock::now();
        s.put("k", "blocked", 0, ec);
        auto took = std::chrono::steady_clock::now() - t0;
        CHECK(ec == errc::deadline_exceeded); // nothing was written: not an unknown outcome
        CHECK(took >= 300ms);
        CHECK(took < 30s);
        s.get("k", ec);
        CHECK(ec == errc::deadline_exceeded);
        std::ofstream(tmp.path() / "release") << "1";
        CHECK(reap_child(child) == 0);
        CHECK(s.get("k")->value == "v");
        CHECK(s.put("k", "after") > 0);
    }

    TEST_CASE("directory_store: files are 0600 and the directory 0700") {
        qr_test::temp_dir tmp("dsperm");
        auto store_dir = tmp.path() / "q";
        {
            directory_store_options o;
            o.keep_revisions = 3; // compaction rewrites the log: the new file must be 0600 too
            directory_store s(store_dir, o);
            for (int i = 0; i < 20; ++i)
                s.put("k", std::to_string(i));
        }
        struct ::stat st {};
        REQUIRE(::stat(store_dir.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0700);
        for (const auto& e : fs::directory_iterator(store_dir)) {
            REQUIRE(::stat(e.path().c_str(), &st) == 0);
            CHECK_MESSAGE((st.st_mode & 0777) == 0600, e.path());
        }
        CHECK(dir_entries(store_dir) == std::set<std::string>{"quorumreg.lock", "quorumreg.log"});
    }

    TEST_CASE("directory_store: key names cannot escape the directory") {
        qr_test::temp_dir tmp("dsesc");
        auto store_dir = tmp.path() / "q";
        auto before = dir_entries(tmp.path());
        directory_store s(store_dir);
        std::string longkey(4000, 'x');
        std::vector<std::string> keys = {"../escape",
                                         "/etc/passwd-quorumreg-test",
                                         "a/../../b",
                                         ".",
                                         "..",
                                         "quorumreg.log",
                                         "quorumreg.lock",
                                         "dir/" + longkey,
                                         "\\..\\win"};
        for (const auto& k : keys)
            s.put(k, "v:" + k);
        for (const auto& k : keys) {
            auto kv = s.get(k);
            REQUIRE(kv.has_value());
            CHECK(kv->value == "v:" + k);
        }
        // Nothing appeared outside the store directory, nothing but the store's files inside it.
        auto after = dir_entries(tmp.path());
        after.erase("q");
        CHECK(after == before);
        CHECK_FALSE(fs::exists("/etc/passwd-quorumreg-test"));
        CHECK(dir_entries(store_dir) == std::set<std::string>{"quorumreg.lock", "quorumreg.log"});

        std::error_code ec;
        s.put(std::string("nul\0key", 7), "v", 0, ec);
        CHECK(ec == errc::invalid_argument);
        s.put(std::string(5000, 'y'), "v", 0, ec);
        CHECK(ec == errc::name_too_long);
        // And a fresh object reads them all back from disk.
        directory_store again(store_dir);
        CHECK(again.get("../escape")->value == "v:../escape");
        CHECK(again.list("").size() == keys.size());
    }

    TEST_CASE("directory_store: injected I/O failures leave the store consistent and reopenable") {
        qr_test::temp_dir tmp("dsio");
        auto store_dir = tmp.path() / "q";
        auto io = std::make_shared<faulty_io>();
        directory_store_options o;
        o.io = io;
        directory_store s(store_dir, o);
        auto r1 = s.put("k", "good");
        s.put("other", "1");
        auto rev = s.revision();

        SUBCASE("ENOSPC on write") {
            io->write_errno = ENOSPC;
            std::error_code ec;
            s.put("k", "lost", 0, ec);
            CHECK(ec == errc::no_space);
            s.put_if("k", "lost", r1, 0, ec);
            CHECK(ec == errc::no_space);
            auto e = qr_test::code_of([&] { s.put("k", "lost"); });
            CHECK(e == errc::no_space);
            try {
                s.put("k", "lost");
            } catch (const quorumreg::error& x) {
                CHECK(std::string(x.what()).find("No space left on device") != std::string::npos);
            }
            io->write_errno = 0;
        }
        SUBCASE("EIO on fsync") {
            io->fsync_errno = EIO;
            io->fsync_failures = 1; // the fsync after truncating the frame away succeeds
            std::error_code ec;
            store_txn t;
            t.on_success = {store_op::put("k", "lost"), store_op::put("new", "lost")};
            s.commit(t, ec);
            CHECK(ec == errc::io_error);
            io->fsync_errno = 0;
        }
        SUBCASE("EIO on fsync and the frame cannot be removed: unknown outcome") {
            io->fsync_errno = EIO;
            io->truncate_errno = EIO;
            std::error_code ec;
            s.put("k", "maybe", 0, ec);
            CHECK(ec == errc::unknown_outcome);
            io->fsync_errno = 0;
            io->truncate_errno = 0;
            // The caller re-reads: here the bytes did reach the file, so the write is visible.
            auto kv = s.get("k");
            REQUIRE(kv.has_value());
            CHECK(kv->value == "maybe");
            s.put("k", "good"); // restore for the common checks below
            rev = s.revision();
            r1 = s.get("k")->mod_revision;
        }
        SUBCASE("ENOSPC while compacting: the old log stays in use") {
            directory_store_options small;
            small.io = io;
            small.keep_revisions = 2;
            directory_store c(store_dir, small);
            io->rename_errno = ENOSPC;
            for (int i = 0; i < 10; ++i)
                c.put("churn", std::to_string(i)); // compaction fails quietly
            io->rename_errno = 0;
            io->write_errno = ENOSPC;
            io->writes_before_fault = 1; // the snapshot's temporary file fails to write
            c.put("churn", "last");
            io->write_errno = 0;
            CHECK(c.get("churn")->value == "last");
            s.put("k", "good");
            rev = s.revision();
            r1 = s.get("k")->mod_revision;
            CHECK(dir_entries(store_dir) == std::set<std::string>{"quorumreg.lock", "quorumreg.log"});
        }

        // The same object, another object and a fresh open all agree and accept writes.
        CHECK(s.get("k")->value == "good");
        CHECK(s.revision() == rev);
        CHECK_FALSE(s.get("new").has_value());
        directory_store fresh(store_dir);
        CHECK(fresh.get("k")->value == "good");
        CHECK(fresh.get("k")->mod_revision == r1);
        CHECK(fresh.revision() == rev);
        auto r2 = fresh.put_if("k", "after", r1);
        CHECK(r2 == rev + 1);
        CHECK(s.get("k")->value == "after");
    }

    TEST_CASE("directory_store: a torn tail from a crashed writer is ignored, then truncated") {
        qr_test::temp_dir tmp("dstorn");
        auto store_dir = tmp.path() / "q";
        directory_store s(store_dir);
        s.put("k", "v1");
        auto rev = s.revision();
        {
            std::ofstream log(store_dir / "quorumreg.log", std::ios::app | std::ios::binary);
            log << "QRLG\x40\x00\x00\x00garbage-of-a-half-written-frame";
        }
        directory_store other(store_dir);
        CHECK(other.revision() == rev);
        CHECK(other.get("k")->value == "v1");
        auto r = other.put("k", "v2");
        CHECK(r == rev + 1);
        CHECK(s.get("k")->value == "v2");
        directory_store third(store_dir);
        CHECK(third.get("k")->value == "v2");
    }

    TEST_CASE("directory_store: compaction keeps the last revisions; older watch starts are canceled") {
        qr_test::temp_dir tmp("dscompact");
        auto store_dir = tmp.path() / "q";
        directory_store_options o;
        o.keep_revisions = 10;
        directory_store s(store_dir, o);
        directory_store follower(store_dir, o); // opened before compaction: must follow the new file
        qr_test::event_sink live;
        auto sub = follower.watch("k", 0, live.handler());
        auto first = s.put("k", "0");
        for (int i = 1; i < 100; ++i)
            s.put("k", std::to_string(i));
        auto last = s.revision();
        std::error_code ec;
        CHECK(s.first_watchable_revision(ec) > first);
        CHECK(fs::file_size(store_dir / "quorumreg.log") < 100 * 64);

        qr_test::event_sink old, recent;
        auto so = s.watch("k", first, old.handler());
        CHECK(old.wait_error() == errc::watch_canceled);
        auto sr = s.watch("k", last - 5, recent.handler());
        auto evs = recent.wait_for(6);
        REQUIRE(evs.size() == 6);
        CHECK(evs.back().kv.value == "99");

        // The follower's live watch saw all 100 writes once, in order, across compactions
        // (it polls far more often than 10 revisions go by here only if it keeps up; if it fell
        // behind it must say so with watch_canceled rather than skip events).
        auto got = live.wait_for(100);
        if (live.error()) {
            CHECK(live.error() == errc::watch_canceled);
        } else {
            REQUIRE(got.size() == 100);
            for (int i = 0; i < 100; ++i)
                CHECK(got[i].kv.value == std::to_string(i));
        }
        CHECK(follower.get("k")->value == "99");
        CHECK(follower.revision() == last);
    }

    TEST_CASE("directory_store: the lease clock is fixed when the store is created") {
        qr_test::temp_dir tmp("dsclock");
        auto store_dir = tmp.path() / "q";
        directory_store_options o;
        o.clock = lease_clock::boottime;
        {
            directory_store s(store_dir, o);
            CHECK(s.clock() == lease_clock::boottime);
            auto l = s.grant_lease(10s);
            s.put("k", "v", l);
        }
        directory_store again(store_dir); // default options ask for realtime
        CHECK(again.clock() == lease_clock::boottime);
        REQUIRE(again.get("k").has_value());
        auto l = again.get("k")->lease;
        std::error_code ec;
        auto ttl = again.lease_ttl(l, ec);
        CHECK_FALSE(ec);
        CHECK(ttl > 5s);
        CHECK(ttl <= 10s);
    }

    TEST_CASE("directory_store: opening errors") {
        qr_test::temp_dir tmp("dsopen");
        directory_store_options o;
        o.create = false;
        std::error_code ec;
        auto s = directory_store::open(tmp.path() / "missing", o, ec);
        CHECK(s == nullptr);
        CHECK(ec);
        std::ofstream(tmp.path() / "file") << "x";
        auto e = qr_test::code_of([&] { directory_store bad(tmp.path() / "file"); });
        CHECK(e == errc::invalid_argument);
        fs::create_directories(tmp.path() / "empty");
        s = directory_store::open(tmp.path() / "empty", o, ec);
        CHECK(ec == errc::not_found);
        // A log with a damaged snapshot frame is reported, never silently reset.
        fs::create_directories(tmp.path() / "bad");
        std::ofstream(tmp.path() / "bad" / "quorumreg.log") << "not a quorumreg log at all";
        s = directory_store::open(tmp.path() / "bad", {}, ec);
        CHECK(ec == errc::corrupt_data);
        CHECK(fs::file_size(tmp.path() / "bad" / "quorumreg.log") == 26);
    }

} // TEST_SUITE
