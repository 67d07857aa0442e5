// The event log: JSON lines, delivery, the file sink, and each documented event driven by a
// real failure.
#include "test_support.hpp"

#include <quorumreg/events.hpp>
#include <quorumreg/hive.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>

namespace {

using namespace quorumreg;

std::vector<std::string> lines_of(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::vector<std::string> out;
    for (std::string l; std::getline(f, l);)
        out.push_back(l);
    return out;
}

/// Fails the chosen calls with EIO while armed.
class failing_io : public file_io {
public:
    std::atomic<bool> fail_sync{false}, fail_truncate{false}, fail_rename{false}, fail_pwrite{false};
    int fdatasync(int fd) override { return fail_sync ? (errno = EIO, -1) : file_io::fdatasync(fd); }
    int ftruncate(int fd, off_t l) override { return fail_truncate ? (errno = EIO, -1) : file_io::ftruncate(fd, l); }
    int rename(const char* a, const char* b) override {
        return fail_rename ? (errno = EIO, -1) : file_io::rename(a, b);
    }
    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        return fail_pwrite ? (errno = EIO, -1) : file_io::pwrite(fd, b, n, o);
    }
};

struct recorder {
    std::mutex mu;
    std::vector<event> seen;
    std::uint64_t id = 0;
    explicit recorder(event_log& log) {
        id = log.subscribe([this](const event& e) {
            std::lock_guard lk(mu);
            seen.push_back(e);
        });
    }
    std::vector<event> of(event_id want) {
        std::lock_guard lk(mu);
        std::vector<event> r;
        for (const auto& e : seen)
            if (e.id == want) r.push_back(e);
        return r;
    }
};

} // namespace

TEST_SUITE("events") {

    TEST_CASE("an event is one line of valid JSON with every field") {
        event e;
        e.id = event_id::hive_write_failed;
        e.severity = event_severity::error;
        e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764621900123));
        e.node = "n1";
        e.resource = "/var/lib/h";
        e.message = "quote \" backslash \\ newline \n bad utf8 \xff\xc0 ok \xc3\xa9";
        auto line = to_json(e);
        CHECK(line.find('\n') == std::string::npos);
        CHECK(line.substr(0, 41) == "{\"time\":\"2025-12-01T20:45:00.123Z\",\"id\":1");
        auto v = boost::json::parse(line).as_object(); // throws if not valid JSON
        CHECK(v.at("id").as_int64() == 1002);
        CHECK(v.at("name").as_string() == "hive_write_failed");
        CHECK(v.at("severity").as_string() == "error");
        CHECK(v.at("node").as_string() == "n1");
        CHECK(v.at("resource").as_string() == "/var/lib/h");
        CHECK(v.at("service").as_string() == "");
        CHECK(v.at("message").as_string() ==
              "quote \" backslash \\ newline \n bad utf8 \xEF\xBF\xBD\xEF\xBF\xBD ok \xc3\xa9");
    }

    TEST_CASE("ids, names and severities of the catalog are stable") {
        // docs/events.md documents these numbers; changing one breaks every alert keyed on it.
        CHECK(static_cast<int>(event_id::hive_torn_tail_cut) == 1001);
        CHECK(static_cast<int>(event_id::hive_write_failed) == 1002);
        CHECK(static_cast<int>(event_id::hive_compaction_failed) == 1003);
        CHECK(static_cast<int>(event_id::hive_broken) == 1004);
        CHECK(describe(event_id::hive_broken).name == "hive_broken");
        CHECK(describe(event_id::hive_broken).severity == event_severity::critical);
        CHECK(describe(static_cast<event_id>(4242)).name == "unknown");
    }

    TEST_CASE("subscribers get every event; one may emit or unsubscribe; a throwing one is counted") {
        event_log log({.node = "me"});
        recorder r(log);
        std::uint64_t self = 0;
        int nested = 0;
        self = log.subscribe([&](const event& e) {
            if (e.id == event_id::hive_write_failed && nested++ == 0) log.emit(event_id::hive_broken, "x", "nested");
            log.unsubscribe(self);
        });
        log.subscribe([](const event&) { throw std::runtime_error("subscriber bug"); });
        log.emit(event_id::hive_write_failed, "res", "m");
        log.emit(event_id::hive_torn_tail_cut, "res", "m2");
        auto seen = r.of(event_id::hive_write_failed);
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].node == "me");
        CHECK(seen[0].resource == "res");
        CHECK(seen[0].severity == event_severity::error);
        CHECK(seen[0].time.time_since_epoch().count() != 0);
        CHECK(r.of(event_id::hive_broken).size() == 1);
        CHECK(r.of(event_id::hive_torn_tail_cut).size() == 1);
        CHECK(log.emitted() == 3);
        CHECK(log.dropped() == 3); // the throwing subscriber, once per event
        log.unsubscribe(r.id);
        log.emit(event_id::hive_torn_tail_cut, "res", "m3");
        CHECK(r.of(event_id::hive_torn_tail_cut).size() == 1);
    }

    TEST_CASE("the JSON-lines file is 0600 and lines from two processes never interleave") {
        qr_test::temp_dir dir("events-file");
        auto file = dir.path() / "events.jsonl";
        constexpr int per_process = 400;
        pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            event_log log({.node = "child", .file = file});
            for (int i = 0; i < per_process; ++i)
                log.emit(event_id::hive_write_failed, "r", std::string(300, 'c') + std::to_string(i));
            ::_exit(0);
        }
        {
            event_log log({.node = "parent", .file = file});
            for (int i = 0; i < per_process; ++i)
                log.emit(event_id::hive_write_failed, "r", std::string(300, 'p') + std::to_string(i));
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        struct stat st {};
        REQUIRE(::stat(file.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        auto lines = lines_of(file);
        CHECK(lines.size() == 2 * per_process);
        int parent = 0, kid = 0;
        for (const auto& l : lines) {
            auto v = boost::json::parse(l).as_object();
            (v.at("node").as_string() == "parent" ? parent : kid)++;
        }
        CHECK(parent == per_process);
        CHECK(kid == per_process);
    }

    TEST_CASE("an event log file in a missing directory is an error and creates nothing") {
        qr_test::temp_dir dir("events-missing");
        try {
            event_log log({.file = dir.path() / "no-such-dir" / "e.jsonl"});
            FAIL("expected an error");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::io_error);
            CHECK(std::string(e.what()).find("no-such-dir") != std::string::npos);
        }
        CHECK(!std::filesystem::exists(dir.path() / "no-such-dir"));
    }

    TEST_CASE("event 1001: a torn journal tail cut at open") {
        qr_test::temp_dir dir("events-torn");
        auto hdir = dir.path() / "h";
        {
            hive h(hdir);
            // Ends in non-zero bytes, so the end of the last frame is the last non-zero byte.
            h.set_value("App", "V", value::dword(0x7f7f7f7f));
        }
        // A writer that died mid-frame leaves bytes past the last acknowledged frame.
        std::filesystem::path journal;
        for (const auto& f : std::filesystem::directory_iterator(hdir))
            if (f.path().filename().string().rfind("journal.", 0) == 0) journal = f.path();
        REQUIRE(!journal.empty());
        {
            std::fstream f(journal, std::ios::in | std::ios::out | std::ios::binary);
            std::string content((std::istreambuf_iterator<char>(f)), {});
            // A writer that died mid-frame: a frame's first bytes right after the last frame.
            auto pos = content.find_last_not_of('\0') + 1;
            REQUIRE(pos + 64 <= content.size());
            f.seekp(static_cast<std::streamoff>(pos));
            f << std::string("QRJ2") + std::string(20, '\x7f');
        }
        event_log log;
        recorder r(log);
        hive_options o;
        o.events = &log;
        hive h(hdir, o);
        CHECK(h.get_value("App", "V").as_dword() == 0x7f7f7f7f);
        auto seen = r.of(event_id::hive_torn_tail_cut);
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].severity == event_severity::warning);
        CHECK(seen[0].resource == std::filesystem::absolute(hdir).lexically_normal().string());
        CHECK(seen[0].message.find("torn tail") != std::string::npos);
    }

    TEST_CASE("events 1002 and 1004: a failed commit, then one that cannot be undone") {
        qr_test::temp_dir dir("events-write");
        failing_io io;
        event_log log;
        recorder r(log);
        hive_options o;
        o.io = &io;
        o.events = &log;
        hive h(dir.path() / "h", o);
        h.set_value("App", "A", value::dword(1));
        io.fail_sync = true;
        std::error_code ec;
        h.set_value("App", "B", value::dword(2), ec);
        CHECK(ec);
        auto failed = r.of(event_id::hive_write_failed);
        REQUIRE(failed.size() == 1);
        CHECK(failed[0].message.find("1 transaction(s) failed") != std::string::npos);
        CHECK(r.of(event_id::hive_broken).empty()); // the frame was cut back: the hive still works
        io.fail_truncate = true;                    // now the undo fails too
        io.fail_pwrite = true;
        h.set_value("App", "C", value::dword(3), ec);
        CHECK(ec);
        CHECK(r.of(event_id::hive_write_failed).size() == 2);
        REQUIRE(r.of(event_id::hive_broken).size() == 1);
        CHECK(r.of(event_id::hive_broken)[0].severity == event_severity::critical);
    }

    TEST_CASE("event 1003: an automatic snapshot that fails keeps the journal") {
        qr_test::temp_dir dir("events-compact");
        failing_io io;
        event_log log;
        recorder r(log);
        hive_options o;
        o.io = &io;
        o.events = &log;
        o.snapshot_threshold = 64 * 1024;
        hive h(dir.path() / "h", o);
        io.fail_rename = true; // the snapshot's atomic replace fails
        for (int i = 0; i < 200 && r.of(event_id::hive_compaction_failed).empty(); ++i)
            h.set_value("App", "V" + std::to_string(i), value::string(std::string(1024, 'x')));
        io.fail_rename = false;
        auto seen = r.of(event_id::hive_compaction_failed);
        REQUIRE(!seen.empty());
        CHECK(seen[0].message.find("journal kept") != std::string::npos);
        CHECK(h.get_value("App", "V0").as_string().size() == 1024); // nothing lost
    }

} // TEST_SUITE
