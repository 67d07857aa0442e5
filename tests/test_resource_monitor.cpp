// Resource monitors: plugins in separate processes, recovered from the store after crashes.
#include <quorumreg/resource_monitor.hpp>
#include "test_support.hpp"

#include <quorumreg/stores/memory_store.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using quorumreg::errc;
using quorumreg::resource_state;

namespace qr_mon_test { // defined in test_resource_types.cpp
quorumreg::resource_type_registry_options test_options(const fs::path& extra);
std::string plugin(const std::string& kind);
quorumreg::resource_type_info type(const std::string& name, const std::string& lib);
} // namespace qr_mon_test

namespace {
using namespace qr_mon_test;

// Generous: other engineers compile on the same two cores. Speed is measured in bench/.
constexpr auto patience = std::chrono::milliseconds(90000);

quorumreg::monitor_controller_options test_monitor_options() {
    quorumreg::monitor_controller_options o;
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

/// Waits (bounded) for `pred`, e.g. a verification record the controller writes in the background.
template <class P> bool eventually(P pred) {
    auto until = std::chrono::steady_clock::now() + patience;
    while (!pred() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return pred();
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
        // The node's verification record in the store says so too (written off the engine thread:
        // soon after).
        auto rep = types.verification_report("GoodType");
        for (auto until = std::chrono::steady_clock::now() + patience;
             (rep.size() != 1 || rep[0].result != errc::plugin_hash_mismatch) &&
             std::chrono::steady_clock::now() < until;
             rep = types.verification_report("GoodType"))
            std::this_thread::sleep_for(10ms);
        REQUIRE(rep.size() == 1);
        CHECK(rep[0].result == errc::plugin_hash_mismatch);
        CHECK_FALSE(rep[0].ok());

        // Put the registered library back: online() retries and it loads again.
        replace_file(plugin("good"), lib);
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        CHECK(eventually([&] { return types.verification_report("GoodType")[0].ok(); }));

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
        mo.restart.threshold = 2;
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
        CHECK(eventually([&] {
            std::set<std::string> nodes;
            for (auto& v : types.verification_report("GoodType"))
                nodes.insert(v.node);
            return nodes.count("node-b") == 1;
        }));
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

namespace {
int read_pid_file(const fs::path& p) {
    std::ifstream in(p);
    int pid = 0;
    in >> pid;
    return pid;
}
/// Waits (bounded) until `pid` is gone; returns whether it went.
bool wait_gone(int pid, std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (process_exists(pid) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(10ms);
    return !process_exists(pid);
}

/// A memory store whose writes can be made to block (a store stalled by an election).
class stalling_store final : public quorumreg::quorum_store {
public:
    std::atomic<int> write_stall_ms{0}, read_stall_ms{0};
    quorumreg::memory_store inner;
    std::string do_describe() const override { return "stalling " + inner.describe(); }
    std::string do_identity(std::error_code& ec) override { return inner.identity(ec); }
    std::optional<quorumreg::key_value> do_get(std::string_view k, std::error_code& ec) override {
        stall(read_stall_ms);
        return inner.get(k, ec);
    }
    quorumreg::range_result do_range(std::string_view p, std::string_view a, std::size_t l,
                                     std::error_code& ec) override {
        return inner.range(p, a, l, ec);
    }
    quorumreg::store_revision do_put(std::string_view k, std::string_view v, quorumreg::lease_id l,
                                     std::error_code& ec) override {
        stall(write_stall_ms);
        return inner.put(k, v, l, ec);
    }
    quorumreg::store_revision do_erase(std::string_view k, std::error_code& ec) override {
        stall(write_stall_ms);
        return inner.erase(k, ec);
    }
    quorumreg::txn_result do_commit(const quorumreg::store_txn& t, std::error_code& ec) override {
        stall(write_stall_ms);
        return inner.commit(t, ec);
    }
    quorumreg::store_revision do_revision(std::error_code& ec) override { return inner.revision(ec); }
    quorumreg::subscription do_watch(std::string_view p, quorumreg::store_revision r, quorumreg::watch_handler h,
                                     std::error_code& ec) override {
        return inner.watch(p, r, std::move(h), ec);
    }
    quorumreg::lease_id do_grant_lease(std::chrono::milliseconds t, std::error_code& ec) override {
        return inner.grant_lease(t, ec);
    }
    void do_keep_alive(quorumreg::lease_id l, std::error_code& ec) override { inner.keep_alive(l, ec); }
    void do_revoke_lease(quorumreg::lease_id l, std::error_code& ec) override { inner.revoke_lease(l, ec); }
    std::chrono::milliseconds do_lease_ttl(quorumreg::lease_id l, std::error_code& ec) override {
        return inner.lease_ttl(l, ec);
    }
    void do_set_deadline(std::chrono::milliseconds d) override { inner.set_deadline(d); }
    std::chrono::milliseconds do_deadline() const override { return inner.deadline(); }

private:
    static void stall(const std::atomic<int>& what) {
        if (int ms = what.load()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
};
} // namespace

TEST_SUITE("monitor_supervision") {

    TEST_CASE("defect 5: an observer removes a resource from inside a state-change callback") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        types.register_type(type("CrashType", plugin("crash")));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        std::atomic<bool> removed_a{false}, removed_b{false};
        ctl.on_state_change([&](const quorumreg::resource_status& s) {
            // drive(): the resource was just given a monitor and is about to be loaded there.
            if (s.name == "a" && s.monitor != 0 && !removed_a.exchange(true)) ctl.remove_resource("a");
            // on_monitor_death() -> failure(): its call crashed the monitor, it is being restarted.
            if (s.name == "b" && s.error == errc::monitor_crashed && !removed_b.exchange(true))
                ctl.remove_resource("b");
        });
        ctl.add_resource({"a", "GoodType", ""});
        ctl.add_resource({"b", "CrashType", ""});
        ctl.online("a");
        ctl.online("b");
        for (const char* name : {"a", "b"}) {
            std::error_code ec;
            auto deadline = std::chrono::steady_clock::now() + patience;
            while (std::chrono::steady_clock::now() < deadline) {
                ctl.status(name, ec);
                if (ec) break;
                std::this_thread::sleep_for(10ms);
            }
            CHECK(ec == errc::not_found);
        }
        CHECK(removed_a);
        CHECK(removed_b);
        // The controller still works.
        ctl.add_resource({"c", "GoodType", ""});
        ctl.online("c");
        CHECK(ctl.wait_for("c", resource_state::online, patience));
    }

    TEST_CASE("defect 10: a probe that closes stdout and hangs is bounded by probe_timeout") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-sup-probehang");
        auto lib = libs.path() / "alt.so";
        fs::copy_file(plugin("alt"), lib);
        touch(fs::path(lib.string() + ".probe-hang"));
        auto o = test_options(libs.path());
        o.probe_timeout = 1500ms;
        quorumreg::resource_type_registry types(store, o);
        auto t0 = std::chrono::steady_clock::now();
        CHECK(qr_test::code_of([&] { types.register_type(type("GoodType", lib.string())); }) ==
              errc::plugin_load_failed);
        CHECK(std::chrono::steady_clock::now() - t0 < 10s);
        int pid = read_pid_file(fs::path(lib.string() + ".pid"));
        CHECK(wait_gone(pid, 5s)); // killed, not left running
        if (process_exists(pid)) ::kill(pid, SIGKILL);
    }

    TEST_CASE("defect 10: a plugin that forks does not make a good probe time out; its child is killed") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-sup-probefork");
        auto lib = libs.path() / "alt.so";
        fs::copy_file(plugin("alt"), lib);
        touch(fs::path(lib.string() + ".probe-fork"));
        auto o = test_options(libs.path());
        o.probe_timeout = 8s;
        quorumreg::resource_type_registry types(store, o);
        auto t0 = std::chrono::steady_clock::now();
        std::error_code ec;
        types.register_type(type("GoodType", lib.string()), ec);
        CHECK(!ec);
        CHECK(std::chrono::steady_clock::now() - t0 < 8s);
        int child = read_pid_file(fs::path(lib.string() + ".childpid"));
        CHECK(child > 0);
        CHECK(wait_gone(child, 5s));
        if (process_exists(child)) ::kill(child, SIGKILL);
    }

    TEST_CASE("defect 10: a probe does not survive the death of the process that started it") {
        qr_test::temp_dir libs("qr-sup-probeorphan");
        auto lib = libs.path() / "alt.so";
        fs::copy_file(plugin("alt"), lib);
        touch(fs::path(lib.string() + ".probe-hang"));
        pid_t registrar = ::fork();
        REQUIRE(registrar >= 0);
        if (registrar == 0) {
            quorumreg::memory_store store;
            auto o = test_options(libs.path());
            o.probe_timeout = 60s;
            quorumreg::resource_type_registry types(store, o);
            std::error_code ec;
            types.register_type(type("GoodType", lib.string()), ec);
            std::_Exit(0);
        }
        auto pid_file = fs::path(lib.string() + ".pid");
        int probe = 0;
        auto deadline = std::chrono::steady_clock::now() + patience;
        while ((probe = read_pid_file(pid_file)) <= 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        REQUIRE(probe > 0);
        ::kill(registrar, SIGKILL);
        int st = 0;
        ::waitpid(registrar, &st, 0);
        CHECK(wait_gone(probe, 5s));
        if (process_exists(probe)) ::kill(probe, SIGKILL);
    }

    TEST_CASE("defect 9: after a load failure and a re-registration the new library is what runs") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-sup-relookup");
        auto old_lib = libs.path() / "good.so";
        auto new_lib = libs.path() / "alt.so";
        fs::copy_file(plugin("good"), old_lib);
        fs::copy_file(plugin("alt"), new_lib);
        quorumreg::resource_type_registry types(store, test_options(libs.path()));
        types.register_type(type("GoodType", old_lib.string()));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"keep", "GoodType", ""}); // keeps the shared monitor alive and busy
        ctl.online("keep");
        REQUIRE(ctl.wait_for("keep", resource_state::online, patience));
        CHECK(ctl.control("keep", 77) == "good");

        // A load failure in a monitor that stays alive (the resource's own): the library is gone.
        ctl.add_resource({"r1", "GoodType", "", true});
        fs::remove(old_lib);
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::failed, patience));
        CHECK(ctl.status("r1").error == errc::plugin_missing);

        types.unregister_type("GoodType");
        auto reg = types.register_type(type("GoodType", new_lib.string()));
        ctl.online("r1");
        REQUIRE(ctl.wait_until(
            "r1", [](auto& s) { return s.state == resource_state::online || s.state == resource_state::failed; },
            patience));
        CHECK(ctl.status("r1").state == resource_state::online);
        CHECK(ctl.status("r1").library == new_lib.string());
        if (ctl.status("r1").state == resource_state::online) CHECK(ctl.control("r1", 77) == "alt");

        // A new resource of the type placed in the shared monitor, which still has the old code loaded:
        // it must run the new registration's code, as its status says.
        ctl.add_resource({"r2", "GoodType", ""});
        ctl.online("r2");
        REQUIRE(ctl.wait_for("r2", resource_state::online, patience));
        CHECK(ctl.status("r2").library == new_lib.string());
        CHECK(ctl.status("r2").library_sha256 == reg.sha256);
        CHECK(ctl.control("r2", 77) == "alt");
    }

    TEST_CASE("defect 7: a store stalled for longer than the deadlock timeout causes no false deadlock kill") {
        stalling_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto g = type("GoodType", plugin("good"));
        g.deadlock_timeout = 800ms;
        g.looks_alive_interval = 600s;
        g.is_alive_interval = 600s;
        types.register_type(g);
        qr_test::temp_dir dir("qr-sup-stall");
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"keep", "GoodType", dir.str()});
        ctl.add_resource({"a", "GoodType", ""});
        ctl.online("keep");
        REQUIRE(ctl.wait_for("keep", resource_state::online, patience));
        int pid = ctl.status("keep").monitor_pid;
        // A 300 ms call (well inside the 800 ms deadlock timeout) is running in the plugin...
        std::error_code cec;
        std::string out;
        std::thread caller([&] { out = ctl.control("keep", 78, "300", cec); });
        auto deadline = std::chrono::steady_clock::now() + patience;
        while (count_calls(dir.path(), "keep", "control") == 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(1ms);
        // ...when the store stalls for 2.5 s (an election): reads and the verification writes.
        store.read_stall_ms = 2500;
        store.write_stall_ms = 2500;
        auto t0 = std::chrono::steady_clock::now();
        ctl.online("a");
        MESSAGE("online() took ",
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count(),
                " ms");
        caller.join();
        store.read_stall_ms = 0;
        store.write_stall_ms = 0;
        CHECK_MESSAGE(!cec, cec.message());
        CHECK(out == "slept");
        auto s = ctl.status("keep");
        CHECK_MESSAGE(s.last_failure != errc::monitor_deadlock, s.last_failure_reason);
        CHECK(s.recoveries == 0);
        CHECK(s.monitor_pid == pid);
        CHECK(ctl.wait_for("a", resource_state::online, patience));
        CHECK(ctl.status("a").last_failure != errc::monitor_deadlock);
    }

    TEST_CASE("defect 11: deadlock_timeout has an upper bound; decode rejects bad timings and relative paths") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        auto t = type("GoodType", plugin("good"));
        t.deadlock_timeout = std::chrono::milliseconds::max();
        CHECK(qr_test::code_of([&] { types.register_type(t); }) == errc::invalid_argument);
        t.deadlock_timeout = 25h;
        CHECK(qr_test::code_of([&] { types.register_type(t); }) == errc::invalid_argument);
        CHECK(types.list().empty());

        quorumreg::resource_type_info rec = type("GoodType", plugin("good"));
        rec.sha256 = std::string(64, 'a');
        std::error_code ec;
        quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(rec), ec);
        CHECK(!ec);
        for (auto bad : {0LL, -5LL}) {
            auto r = rec;
            r.deadlock_timeout = std::chrono::milliseconds(bad);
            quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(r), ec);
            CHECK(ec == errc::corrupt_data);
            r = rec;
            r.looks_alive_interval = std::chrono::milliseconds(bad);
            quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(r), ec);
            CHECK(ec == errc::corrupt_data);
        }
        auto rel = rec;
        rel.library = "qr_plugin_good.so";
        quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(rel), ec);
        CHECK(ec == errc::corrupt_data);
    }

    // Issue 16, item 11: monitors ran with SIGPIPE at its default, so a plugin (or the monitor)
    // writing to a stderr nobody reads any more killed the monitor and blamed a plugin.
    TEST_CASE("defect 11: a write to a broken stderr pipe does not kill the monitor") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        qr_test::temp_dir dir("qr-sup-sigpipe");
        touch(dir.path() / "r1.stderr");
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", dir.str()});
        // The monitor inherits this process's stderr: make it a pipe whose reader is gone, until
        // the resource has settled. This process ignores SIGPIPE meanwhile; monitors are spawned
        // with every signal at its default, so that does not leak into them.
        int p[2];
        REQUIRE(::pipe(p) == 0);
        ::close(p[0]);
        int saved = ::dup(STDERR_FILENO);
        REQUIRE(saved >= 0);
        auto old_handler = ::signal(SIGPIPE, SIG_IGN);
        ::dup2(p[1], STDERR_FILENO);
        ::close(p[1]);
        ctl.online("r1");
        bool online = ctl.wait_until(
            "r1",
            [](const quorumreg::resource_status& s) {
                return s.state == resource_state::online || s.state == resource_state::failed;
            },
            patience);
        ::dup2(saved, STDERR_FILENO);
        ::close(saved);
        ::signal(SIGPIPE, old_handler);
        REQUIRE(online);
        auto s = ctl.status("r1");
        CHECK(s.state == resource_state::online);
        CHECK_FALSE(s.error);
        CHECK(count_calls(dir.path(), "r1", "online") == 1); // one monitor, never re-hosted
        CHECK(process_exists(s.monitor_pid));
    }

    // Issue 16, item 11: a monitor shared the application's process group, so what a plugin
    // forked outlived a monitor that was killed (or crashed) and kept running unsupervised.
    TEST_CASE("defect 11: a process a plugin forked dies with its killed monitor") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        qr_test::temp_dir dir("qr-sup-pgroup");
        touch(dir.path() / "r1.fork");
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", dir.str()});
        ctl.online("r1");
        REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
        int child = 0;
        REQUIRE(eventually([&] {
            std::ifstream in(dir.path() / "r1.childpid");
            return static_cast<bool>(in >> child) && child > 0;
        }));
        // Alive and not a zombie (a reparented zombie may wait for a PID 1 that never reaps).
        auto running = [](int pid) {
            std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
            std::string line;
            if (!std::getline(st, line)) return false;
            auto close_paren = line.rfind(')');
            return close_paren != std::string::npos && close_paren + 2 < line.size() && line[close_paren + 2] != 'Z';
        };
        CHECK(running(child));
        auto monitor = ctl.status("r1").monitor_pid;
        REQUIRE(monitor > 0);
        CHECK(::getpgid(monitor) == monitor); // the monitor leads a group of its own
        CHECK(::getpgid(child) == monitor);
        ::kill(monitor, SIGKILL); // as a crash would
        CHECK(eventually([&] { return !running(child); }));
        // ... and the resource itself is re-hosted as after any monitor crash.
        CHECK(ctl.wait_until(
            "r1",
            [&](const quorumreg::resource_status& s) {
                return s.state == resource_state::online && s.monitor_pid != monitor;
            },
            patience));
        if (running(child)) ::kill(child, SIGKILL);
    }

    TEST_CASE("defect 11: a resource removed while its load fails does not linger") {
        quorumreg::memory_store store;
        qr_test::temp_dir libs("qr-sup-rmload");
        auto lib = libs.path() / "good.so";
        fs::copy_file(plugin("good"), lib);
        quorumreg::resource_type_registry types(store, test_options(libs.path()));
        types.register_type(type("GoodType", lib.string()));
        quorumreg::monitor_controller ctl(types, test_monitor_options());
        ctl.add_resource({"r1", "GoodType", ""});
        fs::remove(lib);
        ctl.online("r1");          // the load is sent to a monitor that is still starting
        ctl.remove_resource("r1"); // ...and the resource removed before it fails
        std::error_code ec;
        CHECK(eventually([&] {
            ctl.status("r1", ec);
            return ec == errc::not_found;
        }));
    }

} // TEST_SUITE

// ==== the boundary (issue 16, items 1-4): nothing a monitor process writes is trusted ==========

namespace {

/// Runs a shell command line; returns the exit code (-1 if it did not exit normally).
int run_shell(const std::string& cmd) {
    int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
std::set<std::string> dev_shm_entries() {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/dev/shm", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        out.insert(it->path().filename().string());
    return out;
}
std::string sha_of(const fs::path& p) {
    std::error_code ec;
    auto h = quorumreg::detail::sha256_file(p.string(), ec);
    REQUIRE(!ec);
    return h;
}

/// The test process as a controller of one monitor it spawned by hand (to speak the protocol
/// directly, e.g. send requests our controller never sends).
struct raw_monitor {
    std::unique_ptr<quorumreg::detail::monitor_channel> ch;
    pid_t pid = -1;
    explicit raw_monitor(const std::vector<std::string>& dirs) {
        std::error_code ec;
        ch = quorumreg::detail::monitor_channel::create(ec);
        REQUIRE(ch);
        std::vector<std::string> argv{QR_TEST_MONITOR_EXE, quorumreg::detail::monitor_flag, std::to_string(::getpid()),
                                      "20"};
        argv.insert(argv.end(), dirs.begin(), dirs.end());
        pid = quorumreg::detail::spawn_process(argv, -1, ec, {{ch->peer_fd(), 3}, {ch->board_fd(), 4}});
        ch->close_peer();
        REQUIRE(pid > 0);
    }
    ~raw_monitor() {
        ::kill(pid, SIGKILL);
        int st = 0;
        ::waitpid(pid, &st, 0);
    }
    /// Sends a request and waits for its reply (heartbeats skipped).
    quorumreg::detail::monitor_msg call(quorumreg::detail::monitor_msg req) {
        using namespace quorumreg::detail;
        REQUIRE(ch->send(encode_monitor_msg(req)) == channel_io::done);
        auto until = std::chrono::steady_clock::now() + patience;
        while (std::chrono::steady_clock::now() < until) {
            pollfd p{ch->fd(), POLLIN, 0};
            ::poll(&p, 1, 100);
            std::string_view payload;
            while (ch->receive(payload) == channel_io::done) {
                monitor_msg m;
                REQUIRE(decode_monitor_msg(payload, m, monitor_peer::monitor) == nullptr);
                if (m.kind == monitor_msg_kind::reply && m.req == req.req) return m;
            }
        }
        FAIL("no reply from the monitor");
        return {};
    }
};

quorumreg::detail::monitor_msg load_req(std::uint64_t req, const std::string& type, const std::string& lib,
                                        const std::string& sha) {
    quorumreg::detail::monitor_msg m;
    m.kind = quorumreg::detail::monitor_msg_kind::load_type;
    m.req = req;
    m.a = type;
    m.b = lib;
    m.c = sha;
    return m;
}

} // namespace

TEST_SUITE("monitor_boundary") {

    TEST_CASE("defect 16.1: the decoder rejects every truncation and never reads past its input") {
        using namespace quorumreg::detail;
        monitor_msg r;
        r.kind = monitor_msg_kind::reply;
        r.req = 300;
        r.res = 7;
        r.code = static_cast<std::int32_t>(errc::resource_failed);
        r.a = "online returned 1";
        auto bytes = encode_monitor_msg(r);
        monitor_msg out;
        REQUIRE(decode_monitor_msg(bytes, out, monitor_peer::monitor) == nullptr);
        CHECK(out.req == 300);
        CHECK(out.a == r.a);
        for (std::size_t n = 0; n < bytes.size(); ++n) {
            monitor_msg m;
            CHECK(decode_monitor_msg(std::string_view(bytes).substr(0, n), m, monitor_peer::monitor) != nullptr);
        }
        // Direction: a monitor may not send requests, the controller may not send replies.
        CHECK(decode_monitor_msg(bytes, out, monitor_peer::controller) != nullptr);
        // Every single-byte change decodes or is rejected — never anything else (noexcept).
        for (std::size_t i = 0; i < bytes.size(); ++i)
            for (int v : {0x00, 0x7F, 0x80, 0xFF}) {
                auto b = bytes;
                b[i] = static_cast<char>(v);
                monitor_msg m;
                (void)decode_monitor_msg(b, m, monitor_peer::monitor);
            }
        r.a = "\xff\xfe";
        CHECK(std::string(decode_monitor_msg(encode_monitor_msg(r), out, monitor_peer::monitor)) ==
              "reply text is not UTF-8");
        r.a.clear();
        r.code = 9999;
        CHECK(std::string(decode_monitor_msg(encode_monitor_msg(r), out, monitor_peer::monitor)) ==
              "reply with an unknown error code");
    }

    TEST_CASE("defect 16.1: a plugin writing garbage to the controller's channel is killed and blamed; the "
              "controller survives") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        types.register_type(type("HostileType", plugin("hostile")));
        qr_test::temp_dir dir("qr-mon-hostile");
        auto o = test_monitor_options();
        o.restart.threshold = 2;
        quorumreg::monitor_controller ctl(types, o);
        ctl.add_resource({"bystander", "GoodType", dir.path().string()});
        ctl.online("bystander");
        REQUIRE(ctl.wait_for("bystander", resource_state::online, patience));
        const auto bystander_pid = ctl.status("bystander").monitor_pid;

        const std::vector<std::string> modes = {"huge_length", "oversize",    "truncated", "empty",
                                                "bad_kind",    "bad_index",   "bad_utf8",  "garbage",
                                                "flood",       "reply_flood", "close_fd"};
        for (auto& mode : modes) {
            quorumreg::resource_spec s{"h_" + mode, "HostileType", dir.path().string() + "|" + mode};
            s.own_monitor = true;
            ctl.add_resource(s);
            ctl.online(s.name);
        }
        for (auto& mode : modes) {
            CAPTURE(mode);
            auto name = "h_" + mode;
            bool ok = ctl.wait_until(
                name,
                [](const quorumreg::resource_status& st) {
                    return st.state == resource_state::online && st.recoveries >= 1;
                },
                patience);
            auto st = ctl.status(name);
            CAPTURE(st.last_failure_reason);
            CHECK(ok);
            CHECK(fs::exists(dir.path() / (name + ".attacked")));
            CHECK(st.last_failure == errc::monitor_protocol_violation);
            CHECK(st.last_failure_reason.find("killed") != std::string::npos);
            CHECK(st.restarts == 1); // blamed: it spent restart budget
        }
        // The bystander in the shared monitor never noticed.
        auto b = ctl.status("bystander");
        CHECK(b.state == resource_state::online);
        CHECK(b.monitor_pid == bystander_pid);
        CHECK(b.recoveries == 0);
        CHECK(process_exists(bystander_pid));
    }

    TEST_CASE("defect 16.2: a library swapped between open and load never runs unverified code") {
        qr_test::temp_dir dir("qr-mon-toctou");
        auto lib = dir.path() / "lib.so";
        fs::copy_file(plugin("good"), lib);
        fs::copy_file(plugin("alt"), dir.path() / "alt.so");
        const auto good_sha = sha_of(lib);
        const std::vector<fs::path> dirs{dir.path()};
        auto marker = fs::path(lib.string() + ".pid"); // the alt build's constructor writes it

        SUBCASE("renamed over after the open: the verified bytes load") {
            quorumreg::detail::load_hooks h;
            h.after_open = [&] { replace_file(dir.path() / "alt.so", lib); };
            auto lp = quorumreg::detail::load_plugin(lib.string(), "GoodType", good_sha, dirs, &h);
            CHECK(!lp.ec);
            CHECK(lp.sha256 == good_sha);
            CHECK(!fs::exists(marker));
        }
        SUBCASE("rewritten in place during the copy: a mismatch, and nothing is mapped") {
            quorumreg::detail::load_hooks h;
            h.after_open = [&] {
                fs::copy_file(dir.path() / "alt.so", lib, fs::copy_options::overwrite_existing); // same inode
            };
            auto lp = quorumreg::detail::load_plugin(lib.string(), "GoodType", good_sha, dirs, &h);
            CHECK(lp.ec == errc::plugin_hash_mismatch);
            CHECK(lp.sha256.empty());
            CHECK(!fs::exists(marker));
        }
        SUBCASE("a racing thread swaps the file in a loop") {
            fs::copy_file(plugin("good"), dir.path() / "good.so");
            std::atomic<bool> stop{false};
            std::thread swapper([&] {
                for (int i = 0; !stop && i < 200000; ++i)
                    replace_file(dir.path() / (i % 2 ? "good.so" : "alt.so"), lib);
            });
            int loaded = 0;
            for (int i = 0; i < 150; ++i) {
                auto lp = quorumreg::detail::load_plugin(lib.string(), "GoodType", good_sha, dirs);
                if (!lp.ec) ++loaded;
                CHECK((!lp.ec || lp.ec == errc::plugin_hash_mismatch || lp.ec == errc::plugin_missing));
            }
            stop = true;
            swapper.join();
            MESSAGE("verified loads during the race: " << loaded);
            CHECK(!fs::exists(marker));
        }
    }

    TEST_CASE("defect 16.2: after re-registration a new load of the same path runs the new code") {
        qr_test::temp_dir dir("qr-mon-reload");
        auto lib = dir.path() / "lib.so";
        fs::copy_file(plugin("good"), lib);
        const std::vector<fs::path> dirs{dir.path()};
        auto first = quorumreg::detail::load_plugin(lib.string(), "GoodType", sha_of(lib), dirs);
        REQUIRE(!first.ec);
        replace_file(plugin("alt"), lib);
        auto second = quorumreg::detail::load_plugin(lib.string(), "GoodType", sha_of(lib), dirs);
        REQUIRE(!second.ec);
        CHECK(second.functions != first.functions);
        CHECK(second.sha256 == sha_of(plugin("alt")));
        CHECK(fs::exists(lib.string() + ".pid")); // the new library's constructor ran
    }

    TEST_CASE("defect 16.3: no /dev/shm entries, the board is 0600 and the channel a socket") {
        auto before = dev_shm_entries();
        quorumreg::memory_store store;
        quorumreg::resource_type_registry types(store, test_options({}));
        types.register_type(type("GoodType", plugin("good")));
        qr_test::temp_dir dir("qr-mon-shm");
        {
            quorumreg::monitor_controller ctl(types, test_monitor_options());
            ctl.add_resource({"r1", "GoodType", dir.path().string()});
            ctl.online("r1");
            REQUIRE(ctl.wait_for("r1", resource_state::online, patience));
            auto pid = ctl.status("r1").monitor_pid;
            auto during = dev_shm_entries();
            for (auto& e : during) {
                CAPTURE(e);
                CHECK(before.count(e) == 1);
            }
            auto fd_dir = fs::path("/proc") / std::to_string(pid) / "fd";
            struct stat board {};
            REQUIRE(::stat((fd_dir / "4").c_str(), &board) == 0);
            CHECK((board.st_mode & 07777) == 0600);
            struct stat chan {};
            REQUIRE(::stat((fd_dir / "3").c_str(), &chan) == 0);
            CHECK(S_ISSOCK(chan.st_mode));
            std::error_code ec;
            for (auto it = fs::directory_iterator(fd_dir, ec); !ec && it != fs::directory_iterator();
                 it.increment(ec)) {
                auto target = fs::read_symlink(it->path(), ec).string();
                CHECK(target.rfind("/dev/shm", 0) != 0);
            }
        }
        CHECK(dev_shm_entries().size() <= before.size());
    }

    TEST_CASE("defect 16.4: the monitor entry point verifies the hash and the directory in every mode") {
        qr_test::temp_dir dir("qr-mon-argv");
        qr_test::temp_dir other("qr-mon-argv-out");
        auto lib = dir.path() / "lib.so";
        fs::copy_file(plugin("good"), lib);
        auto outside = other.path() / "lib.so";
        fs::copy_file(plugin("good"), outside);
        const auto sha = sha_of(lib);
        const std::string exe = QR_TEST_MONITOR_EXE;
        auto err = dir.path() / "stderr";
        auto probe = [&](const std::string& l, const std::string& h, const std::string& d) {
            return run_shell("'" + exe + "' --quorumreg-probe '" + l + "' GoodType '" + h + "' " + d +
                             " >/dev/null 2>'" + err.string() + "'");
        };
        SUBCASE("probe") {
            CHECK(probe(lib.string(), "", "'" + dir.path().string() + "'") == 6);
            CHECK(slurp(err).find("no valid SHA-256") != std::string::npos);
            CHECK(probe(outside.string(), sha, "'" + dir.path().string() + "'") == 6);
            CHECK(slurp(err).find("outside the plugin directories") != std::string::npos);
            CHECK(probe(lib.string(), sha, "") == 6); // no directories: nothing is allowed
            CHECK(probe(lib.string(), sha, "'" + dir.path().string() + "'") == 0);
        }
        SUBCASE("monitor") {
            CHECK(run_shell("'" + exe + "' --quorumreg-monitor " + std::to_string(::getpid()) + " 20 2>/dev/null") ==
                  3); // not our child
            raw_monitor mon({dir.path().string()});
            auto r1 = mon.call(load_req(1, "GoodType", lib.string(), ""));
            CHECK(r1.code == static_cast<int>(errc::plugin_hash_mismatch));
            CHECK(r1.a.find("no valid SHA-256") != std::string::npos);
            auto r2 = mon.call(load_req(2, "GoodType", outside.string(), sha));
            CHECK(r2.code == static_cast<int>(errc::plugin_not_allowed));
            fs::create_symlink(outside, dir.path() / "link.so"); // inside by name, outside in fact
            auto r3 = mon.call(load_req(3, "GoodType", (dir.path() / "link.so").string(), sha));
            CHECK(r3.code == static_cast<int>(errc::plugin_not_allowed));
            auto r4 = mon.call(load_req(4, "GoodType", lib.string(), sha));
            CHECK(r4.code == 0);
        }
    }

    TEST_CASE("defect 16.4: the monitor refuses to run with privileges that differ from its caller's") {
        using quorumreg::detail::monitor_must_refuse;
        quorumreg::monitor_entry_options strict, allow;
        allow.allow_privileged = true;
        CHECK(!monitor_must_refuse(1000, 1000, 1000, 1000, 0, strict));
        CHECK(monitor_must_refuse(1000, 0, 1000, 1000, 0, strict));    // setuid
        CHECK(monitor_must_refuse(1000, 1000, 1000, 0, 0, strict));    // setgid
        CHECK(monitor_must_refuse(1000, 1000, 1000, 1000, 1, strict)); // AT_SECURE (file capabilities)
        CHECK(!monitor_must_refuse(1000, 0, 1000, 0, 1, allow));
        // For real, when the test runs as root and can make a setuid / file-capability copy that an
        // unprivileged user (nobody) runs.
        if (::geteuid() != 0 || run_shell("command -v setpriv >/dev/null") != 0) {
            MESSAGE("not root or no setpriv: only the decision function is tested");
            return;
        }
        qr_test::temp_dir dir("qr-mon-priv");
        fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
        auto copy = dir.path() / "quorumreg_monitor";
        fs::copy_file(QR_TEST_MONITOR_EXE, copy);
        const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups '" + copy.string() +
                                      "' --quorumreg-probe /x T 0 2>/dev/null >/dev/null";
        ::chmod(copy.c_str(), 04755);
        int setuid_rc = run_shell(as_nobody);
        if (setuid_rc == 6 || setuid_rc == 127 || setuid_rc == 126)
            MESSAGE("setuid not effective here (nosuid mount?): rc " << setuid_rc);
        else
            CHECK(setuid_rc == 5);
        ::chmod(copy.c_str(), 0755);
        REQUIRE(run_shell(as_nobody) == 6); // unprivileged: it runs (and refuses the missing hash)
        if (run_shell("setcap cap_net_bind_service+ep '" + copy.string() + "' 2>/dev/null") == 0) {
            CHECK(run_shell(as_nobody) == 5); // AT_SECURE
        } else {
            MESSAGE("setcap failed (no xattr support?): file-capability case not run");
        }
    }

} // TEST_SUITE
