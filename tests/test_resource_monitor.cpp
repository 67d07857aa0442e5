// Resource monitors: plugins in separate processes, recovered from the store after crashes.
#include <quorumreg/resource_monitor.hpp>
#include "test_support.hpp"

#include <quorumreg/stores/memory_store.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <signal.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using quorumreg::errc;
using quorumreg::resource_state;

namespace qr_mon_test { // defined in test_resource_types.cpp
quorumreg::type_registry_options test_options(const fs::path& extra);
std::string plugin(const std::string& kind);
quorumreg::resource_type_info type(const std::string& name, const std::string& lib);
} // namespace qr_mon_test

namespace {
using namespace qr_mon_test;

// Generous: other engineers compile on the same two cores. Speed is measured in bench/.
constexpr auto patience = std::chrono::milliseconds(90000);

quorumreg::monitor_options test_monitor_options() {
    quorumreg::monitor_options o;
    o.monitor_command = {QR_TEST_MONITOR_EXE};
    o.heartbeat_timeout = 10s; // a stalled but healthy monitor on a loaded machine is not a crash
    return o;
}

void touch(const fs::path& p) { std::ofstream(p) << ""; }

/// Lines of the test plugin's call log for resource `name`.
std::vector<std::string> calls(const fs::path& dir, const std::string& name) {
    std::vector<std::string> out;
    std::ifstream in(dir / (name + ".log"));
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}
std::size_t count_calls(const fs::path& dir, const std::string& name, const std::string& what) {
    std::size_t n = 0;
    for (auto& c : calls(dir, name))
        n += c == what;
    return n;
}

bool process_exists(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

/// Replaces `target` atomically with a copy of `source` (a new inode, as package managers do).
void replace_file(const fs::path& source, const fs::path& target) {
    auto tmp = target;
    tmp += ".new";
    fs::copy_file(source, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, target);
}

} // namespace

TEST_SUITE("resource_monitor") {

    TEST_CASE("a resource goes online in a monitor process, is polled at its intervals, and goes offline") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto t = type("GoodType", plugin("good"));
        t.looks_alive_interval = 30ms;
        t.is_alive_interval = 150ms;
        types.register_type(t);
        qr_test::temp_dir dir("qr-mon-basic");

        quorumreg::monitor_controller ctl(types, test_monitor_options());
        std::vector<resource_state> seen;
        std::mutex seen_mu;
        ctl.on_state_change([&](const quorumreg::resource_status& s) {
            std::lock_guard lk(seen_mu);
            if (seen.empty() || seen.back() != s.state) seen.push_back(s.state);
        });
        ctl.add_resource({"r1", "goodtype", dir.str()});
        CHECK(ctl.status("R1").state == resource_state::offline);
        CHECK(ctl.status("r1").type == "goodtype");
        CHECK(ctl.status("r1").library == plugin("good"));

        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        auto s = ctl.status("r1");
        CHECK(s.target == resource_state::online);
        CHECK(process_exists(s.monitor_pid));
        CHECK(s.monitor_pid != ::getpid());
        CHECK_FALSE(s.dedicated_monitor);
        CHECK(!s.error);

        // LooksAlive and IsAlive are polled at the registered intervals.
        auto deadline = std::chrono::steady_clock::now() + patience;
        while ((count_calls(dir.path(), "r1", "looks_alive") < 3 || count_calls(dir.path(), "r1", "is_alive") < 2) &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(20ms);
        CHECK(count_calls(dir.path(), "r1", "looks_alive") >= 3);
        CHECK(count_calls(dir.path(), "r1", "is_alive") >= 2);
        CHECK(ctl.status("r1").state == resource_state::online);

        ctl.offline("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::offline, patience));
        CHECK(count_calls(dir.path(), "r1", "offline") == 1);
        {
            std::lock_guard lk(seen_mu);
            REQUIRE(seen.size() >= 4);
            CHECK(seen[0] == resource_state::offline);
            CHECK(std::find(seen.begin(), seen.end(), resource_state::online_pending) != seen.end());
            CHECK(std::find(seen.begin(), seen.end(), resource_state::offline_pending) != seen.end());
        }

        ctl.remove_resource("r1");
        CHECK(ctl.wait_until(
                  "r1", [](auto&) { return false; }, 1ms) == false);
        deadline = std::chrono::steady_clock::now() + patience;
        std::error_code ec;
        while (std::chrono::steady_clock::now() < deadline) {
            ctl.status("r1", ec);
            if (ec) break;
            std::this_thread::sleep_for(10ms);
        }
        CHECK(ec == errc::not_found);
        CHECK(count_calls(dir.path(), "r1", "close") == 1);
    }

    TEST_CASE("bad requests get clear errors") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        CHECK(qr_test::code_of([&] { ctl.add_resource({"r1", "NoSuchType", ""}); }) == errc::not_found);
        ctl.add_resource({"r1", "GoodType", ""});
        CHECK(qr_test::code_of([&] { ctl.add_resource({"R1", "GoodType", ""}); }) == errc::already_exists);
        CHECK(qr_test::code_of([&] { ctl.add_resource({"a/b", "GoodType", ""}); }) == errc::invalid_argument);
        CHECK(qr_test::code_of([&] {
                  ctl.add_resource({"big", "GoodType", std::string(5000, 'x')});
              }) == errc::invalid_argument);
        CHECK(qr_test::code_of([&] { ctl.online("nope"); }) == errc::not_found);
        CHECK(qr_test::code_of([&] { ctl.status("nope"); }) == errc::not_found);
        try {
            ctl.add_resource({"r2", "NoSuchType", ""});
            FAIL("expected an error");
        } catch (const quorumreg::error& e) {
            CHECK(std::string(e.what()).find("add_resource \"r2\"") != std::string::npos);
            CHECK(std::string(e.what()).find("NoSuchType") != std::string::npos);
        }
        CHECK(ctl.statuses().size() == 1);
    }

    TEST_CASE("kill -9 of a monitor hosting 20 resources: all come back online with their types") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        qr_test::temp_dir dir("qr-mon-kill");
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        std::vector<std::string> names;
        for (int i = 0; i < 20; ++i) {
            names.push_back("res" + std::to_string(i));
            ctl.add_resource({names.back(), "GoodType", dir.str()});
            ctl.online(names.back());
        }
        for (auto& n : names)
            REQUIRE(ctl.wait_for(n, resource_state::online, patience));
        int pid = ctl.status("res0").monitor_pid;
        for (auto& n : names)
            CHECK(ctl.status(n).monitor_pid == pid);
        REQUIRE(ctl.monitors().size() == 1);

        REQUIRE(::kill(pid, SIGKILL) == 0);
        for (auto& n : names) {
            CHECK(ctl.wait_until(
                n,
                [&](const quorumreg::resource_status& s) {
                    return s.state == resource_state::online && s.monitor_pid != pid && s.monitor_pid != 0;
                },
                patience));
            auto s = ctl.status(n);
            CHECK(s.type == "GoodType");
            CHECK(s.library == plugin("good"));
            CHECK(s.recoveries == 1);
            CHECK(s.last_failure == errc::monitor_crashed);
            CHECK(s.restarts == 0); // a victim of its monitor's death does not spend its restart budget
            CHECK(count_calls(dir.path(), n, "open") == 2);
        }
        CHECK_FALSE(process_exists(pid));
        CHECK(ctl.monitors().size() == 1);
    }

    TEST_CASE("after a monitor crash the type is re-resolved from the store, never from monitor memory") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-mon-libs");
        auto o = test_options(libs.path());
        quorumreg::resource_type_registry types(store, o);
        types.register_type(type("GoodType", plugin("good")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", ""});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));

        // Another node re-registers the type with the library at a new path, through the store.
        auto o2 = o;
        o2.node_id = "node-b";
        quorumreg::resource_type_registry other(store, o2);
        fs::copy_file(plugin("good"), libs.path() / "good-v2.so");
        other.unregister_type("GoodType");
        other.register_type(type("GoodType", (libs.path() / "good-v2.so").string()));

        int pid = ctl.status("r1").monitor_pid;
        ::kill(pid, SIGKILL);
        REQUIRE(ctl.wait_until(
            "r1",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.monitor_pid != pid;
            },
            patience));
        CHECK(ctl.status("r1").library == (libs.path() / "good-v2.so").string());

        // Now the type disappears from the store while its monitor is down: the resource fails with
        // that reason, and its type is still known by name (Q242398: never a null type).
        other.unregister_type("GoodType");
        pid = ctl.status("r1").monitor_pid;
        ::kill(pid, SIGKILL);
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        auto s = ctl.status("r1");
        CHECK(s.error == errc::not_found);
        CHECK(s.type == "GoodType");
        CHECK(s.reason.find("GoodType") != std::string::npos);
    }

    TEST_CASE("a library replaced on disk is reported as a hash mismatch; a missing one as missing") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-mon-hash");
        auto lib = libs.path() / "qr_plugin_good.so";
        fs::copy_file(plugin("good"), lib);
        quorumreg::resource_type_registry types(store, test_options(libs.path()));
        types.register_type(type("GoodType", lib.string()));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", ""});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));

        replace_file(plugin("crash"), lib); // same path, different bytes
        ::kill(ctl.status("r1").monitor_pid, SIGKILL);
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        auto s = ctl.status("r1");
        CHECK(s.error == errc::plugin_hash_mismatch);
        CHECK(s.type == "GoodType");
        CHECK(s.library == lib.string());
        CHECK(s.reason.find("SHA-256") != std::string::npos);
        // The node's verification record in the store says so too.
        auto rep = types.verification_report("GoodType");
        REQUIRE(rep.size() == 1);
        CHECK(rep[0].result == errc::plugin_hash_mismatch);
        CHECK_FALSE(rep[0].ok());

        // Put the registered library back: online() retries and it loads again.
        replace_file(plugin("good"), lib);
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        CHECK(types.verification_report("GoodType")[0].ok());

        // Remove it: after the next monitor death it is reported missing.
        fs::remove(lib);
        ::kill(ctl.status("r1").monitor_pid, SIGKILL);
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        CHECK(ctl.status("r1").error == errc::plugin_missing);
        CHECK(ctl.status("r1").type == "GoodType");
    }

    TEST_CASE("a hung call exceeds the deadlock timeout: the monitor is killed and everything recovers") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto h = type("HangType", plugin("hang"));
        h.deadlock_timeout = 3000ms; // far above a loaded machine's load/open time, far below the test deadline
        types.register_type(h);
        types.register_type(type("GoodType", plugin("good")));
        qr_test::temp_dir dir("qr-mon-hang");
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"good", "GoodType", dir.str()});
        ctl.add_resource({"hang", "HangType", dir.str()});
        ctl.online("good");
        REQUIRE(ctl.wait_for("good", resource_state::online, patience));
        int pid = ctl.status("good").monitor_pid;

        touch(dir.path() / "hang.hang"); // the plugin's online() hangs once
        ctl.online("hang");
        REQUIRE(ctl.wait_until(
            "hang",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.last_failure == errc::monitor_deadlock;
            },
            patience));
        CHECK(fs::exists(dir.path() / "hang.hung"));
        CHECK(ctl.status("hang").restarts == 1);
        CHECK(ctl.status("hang").last_failure_reason.find("deadlock timeout") != std::string::npos);
        CHECK_FALSE(process_exists(pid));
        // The good resource shared the killed monitor and was restored.
        REQUIRE(ctl.wait_until(
            "good",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.monitor_pid != pid;
            },
            patience));
        CHECK(ctl.status("good").recoveries == 1);
    }

    TEST_CASE("a plugin that crashes its monitor twice is moved to a monitor of its own") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto g = type("GoodType", plugin("good"));
        g.looks_alive_interval = 600s; // no health calls in flight when the crash plugin strikes
        g.is_alive_interval = 600s;
        types.register_type(g);
        types.register_type(type("CrashType", plugin("crash")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        std::atomic<bool> crash_had_own_monitor{false};
        ctl.on_state_change([&](const quorumreg::resource_status& s) {
            if (s.name == "crasher" && s.dedicated_monitor && s.monitor != 0) crash_had_own_monitor = true;
        });
        ctl.add_resource({"g1", "GoodType", ""});
        ctl.add_resource({"g2", "GoodType", ""});
        ctl.add_resource({"crasher", "CrashType", ""});
        ctl.online("g1");
        ctl.online("g2");
        REQUIRE(ctl.wait_for("g1", resource_state::online, patience));
        REQUIRE(ctl.wait_for("g2", resource_state::online, patience));

        ctl.online("crasher");
        REQUIRE(ctl.wait_for("crasher", resource_state::failed, patience));
        auto c = ctl.status("crasher");
        CHECK(c.error == errc::monitor_crashed);
        CHECK(c.type == "CrashType");
        CHECK(c.reason.find("restart threshold") != std::string::npos);
        CHECK(crash_had_own_monitor.load());
        // The shared monitor died exactly twice; later crashes happened in the plugin's own monitor.
        for (auto n : {"g1", "g2"}) {
            REQUIRE(ctl.wait_for(n, resource_state::online, patience));
            CHECK(ctl.status(n).recoveries == 2);
            CHECK_FALSE(ctl.status(n).dedicated_monitor);
        }
    }

    TEST_CASE("LooksAlive failure triggers an immediate IsAlive; IsAlive failure applies the restart policy") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto t = type("GoodType", plugin("good"));
        t.looks_alive_interval = 40ms;
        t.is_alive_interval = 3600s; // only the LooksAlive failure can cause an IsAlive call
        types.register_type(t);
        qr_test::temp_dir dir("qr-mon-health");
        auto mo = test_monitor_options();
        mo.restart_threshold = 2;
        quorumreg::monitor_controller ctl(types, mo);
        ctl.add_resource({"r1", "GoodType", dir.str()});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        CHECK(count_calls(dir.path(), "r1", "is_alive") == 0);

        touch(dir.path() / "r1.sick");
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        auto s = ctl.status("r1");
        CHECK(s.error == errc::resource_failed);
        CHECK(s.reason.find("IsAlive") != std::string::npos);
        CHECK(s.restarts == 2);
        CHECK(count_calls(dir.path(), "r1", "is_alive") == 3); // one per failure: 2 restarts, then failed
        CHECK(count_calls(dir.path(), "r1", "terminate") >= 2);
        CHECK(count_calls(dir.path(), "r1", "online") == 3);

        // Healthy again: online() starts over with a fresh restart budget.
        fs::remove(dir.path() / "r1.sick");
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        CHECK(ctl.status("r1").restarts == 0);
    }

    TEST_CASE("a resource may ask for a monitor of its own; a second controller uses the same registrations") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"shared1", "GoodType", ""});
        quorumreg::resource_spec own{"alone", "GoodType", ""};
        own.own_monitor = true;
        ctl.add_resource(own);
        ctl.online("shared1");
        ctl.online("alone");
        REQUIRE(ctl.wait_for("shared1", resource_state::online, patience));
        REQUIRE(ctl.wait_for("alone", resource_state::online, patience));
        CHECK(ctl.status("alone").monitor_pid != ctl.status("shared1").monitor_pid);
        CHECK(ctl.status("alone").dedicated_monitor);
        auto mons = ctl.monitors();
        REQUIRE(mons.size() == 2);
        std::set<std::string> roles;
        for (auto& m : mons)
            roles.insert(m.role);
        CHECK(roles == std::set<std::string>{"shared", "resource:alone"});

        // Killing the dedicated monitor leaves the shared one alone.
        int shared_pid = ctl.status("shared1").monitor_pid;
        int own_pid = ctl.status("alone").monitor_pid;
        ::kill(own_pid, SIGKILL);
        REQUIRE(ctl.wait_until(
            "alone",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.monitor_pid != own_pid;
            },
            patience));
        CHECK(ctl.status("shared1").monitor_pid == shared_pid);
        CHECK(ctl.status("shared1").recoveries == 0);

        // A second controller with its own registry instance on the same store ("another node").
        auto o2 = test_options({});
        o2.node_id = "node-b";
        quorumreg::resource_type_registry types_b(store, o2);
        CHECK(types_b.list().size() == 1);
        quorumreg::monitor_controller ctl_b(types_b, test_monitor_options());
        ctl_b.add_resource({"b1", "GoodType", ""});
        ctl_b.online("b1");
        REQUIRE(ctl_b.wait_for("b1", resource_state::online, patience));
        CHECK(ctl_b.status("b1").library == plugin("good"));
        auto rep = types.verification_report("GoodType");
        std::set<std::string> nodes;
        for (auto& v : rep)
            nodes.insert(v.node);
        CHECK(nodes.count("node-b") == 1);
    }

    TEST_CASE("destroying the controller stops its monitors") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        int pid = 0;
        {
            quorumreg::monitor_controller ctl(types, test_monitor_options());
            ctl.add_resource({"r1", "GoodType", ""});
            ctl.online("r1");
            REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
            pid = ctl.status("r1").monitor_pid;
            CHECK(process_exists(pid));
        }
        CHECK_FALSE(process_exists(pid)); // reaped by the destructor, not left as a zombie
    }

    TEST_CASE("control calls reach the plugin's optional control entry point") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", ""});
        std::error_code ec;
        ctl.control("r1", 1, "x", ec);
        CHECK(ec == errc::not_online); // never opened
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        CHECK(ctl.control("r1", 1, "hello") == "r1:hello");
        CHECK(qr_test::code_of([&] { ctl.control("r1", 2, "x"); }) == errc::invalid_argument);
        CHECK(qr_test::code_of([&] { ctl.control("r1", 1, std::string(2000, 'x')); }) == errc::invalid_argument);
        CHECK(qr_test::code_of([&] { ctl.control("nope", 1, ""); }) == errc::not_found);
        CHECK(ctl.status("r1").state == resource_state::online);
    }

    TEST_CASE("while the store is unreachable a re-hosted resource waits with that reason, then recovers") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", ""});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));

        store.set_deadline(50ms);
        store.set_quorum_lost(true);
        int pid = ctl.status("r1").monitor_pid;
        ::kill(pid, SIGKILL);
        REQUIRE(ctl.wait_until(
            "r1",
            [](const quorumreg::resource_status& s) {
                return s.state == resource_state::online_pending && s.error == errc::quorum_unavailable;
            },
            patience));
        auto s = ctl.status("r1");
        CHECK(s.type == "GoodType"); // known by name even while its registration cannot be read
        CHECK(s.reason.find("retrying") != std::string::npos);
        store.set_quorum_lost(false);
        REQUIRE(ctl.wait_until(
            "r1",
            [&](const quorumreg::resource_status& s2) {
                return s2.state == resource_state::online && s2.monitor_pid != pid;
            },
            patience));
        CHECK(!ctl.status("r1").error);
    }

    TEST_CASE("a monitor program that cannot be started is reported, not retried forever") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        auto mo = test_monitor_options();
        mo.monitor_command = {"/nonexistent/quorumreg_monitor"};
        quorumreg::monitor_controller ctl(types, mo);
        ctl.add_resource({"r1", "GoodType", ""});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        CHECK(ctl.status("r1").error == errc::monitor_crashed);
        CHECK(ctl.status("r1").reason.find("cannot start the monitor program") != std::string::npos);
        CHECK(ctl.status("r1").type == "GoodType");
    }

    TEST_CASE("a monitor left without resources is shut down") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        auto mo = test_monitor_options();
        mo.idle_monitor_timeout = 100ms;
        quorumreg::monitor_controller ctl(types, mo);
        quorumreg::resource_spec own{"alone", "GoodType", ""};
        own.own_monitor = true;
        ctl.add_resource(own);
        ctl.online("alone");
        REQUIRE(ctl.wait_for("alone", resource_state::online, patience));
        int pid = ctl.status("alone").monitor_pid;
        REQUIRE(ctl.monitors().size() == 1);
        ctl.remove_resource("alone");
        auto deadline = std::chrono::steady_clock::now() + patience;
        while ((!ctl.monitors().empty() || process_exists(pid)) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(20ms);
        CHECK(ctl.monitors().empty());
        CHECK_FALSE(process_exists(pid));
        // A new resource gets a new monitor on demand.
        ctl.add_resource({"again", "GoodType", ""});
        ctl.online("again");
        REQUIRE(ctl.wait_for("again", resource_state::online, patience));
        CHECK(ctl.status("again").monitor_pid != pid);
    }

    TEST_CASE("a frozen monitor (no heartbeats) is killed and its resources re-hosted") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        auto mo = test_monitor_options();
        mo.heartbeat_timeout = 300ms;
        quorumreg::monitor_controller ctl(types, mo);
        ctl.add_resource({"r1", "GoodType", ""});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        int pid = ctl.status("r1").monitor_pid;
        REQUIRE(::kill(pid, SIGSTOP) == 0); // alive for waitpid, but silent
        REQUIRE(ctl.wait_until(
            "r1",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.monitor_pid != pid && s.monitor_pid != 0;
            },
            patience));
        CHECK(ctl.status("r1").last_failure == errc::monitor_crashed);
        CHECK(ctl.status("r1").last_failure_reason.find("heartbeat") != std::string::npos);
        CHECK_FALSE(process_exists(pid));
    }

    TEST_CASE("a type registered with separate_monitor gets a monitor per resource") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto t = type("GoodType", plugin("good"));
        t.flags = quorumreg::separate_monitor;
        types.register_type(t);
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"a", "GoodType", ""});
        ctl.add_resource({"b", "GoodType", ""});
        ctl.online("a");
        ctl.online("b");
        REQUIRE(ctl.wait_for("a", resource_state::online, patience));
        REQUIRE(ctl.wait_for("b", resource_state::online, patience));
        CHECK(ctl.status("a").monitor_pid != ctl.status("b").monitor_pid);
        CHECK(ctl.status("a").dedicated_monitor);
        CHECK(ctl.monitors().size() == 2);
    }

    TEST_CASE("a library that crashes its monitor while loading is blamed and isolated; bystanders recover") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-mon-loadcrash");
        auto lib = libs.path() / "qr_plugin_loadcrash.so";
        fs::copy_file(plugin("loadcrash"), lib);
        quorumreg::resource_type_registry types(store, test_options(libs.path()));
        types.register_type(type("LoadCrashType", lib.string()));
        auto g = type("GoodType", plugin("good"));
        g.looks_alive_interval = 600s;
        g.is_alive_interval = 600s;
        types.register_type(g);
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"g1", "GoodType", ""});
        ctl.add_resource({"x", "LoadCrashType", ""});
        ctl.online("g1");
        ctl.online("x");
        REQUIRE(ctl.wait_for("g1", resource_state::online, patience));
        REQUIRE(ctl.wait_for("x", resource_state::online, patience));

        touch(fs::path(lib.string() + ".crash")); // from now on, loading it kills the loading process
        int pid = ctl.status("g1").monitor_pid;
        ::kill(pid, SIGKILL);
        REQUIRE(ctl.wait_for("x", resource_state::failed, patience));
        auto s = ctl.status("x");
        CHECK(s.error == errc::monitor_crashed);
        CHECK(s.reason.find("load_type") != std::string::npos);
        CHECK(s.type == "LoadCrashType");
        REQUIRE(ctl.wait_until(
            "g1",
            [&](const quorumreg::resource_status& st) {
                return st.state == resource_state::online && st.monitor_pid != pid;
            },
            patience));
        CHECK(ctl.status("g1").type == "GoodType");
    }

} // TEST_SUITE
