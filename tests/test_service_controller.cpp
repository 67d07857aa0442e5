#include <quorumreg/service_controller.hpp>

#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using quorumreg::errc;
using quorumreg::service_controller;
using quorumreg::service_definition;
using quorumreg::service_event;
using quorumreg::service_state;

namespace {

/// Records what ran, in order, and lets a test make actions fail or wait.
struct recorder {
    std::mutex mu;
    std::vector<std::string> log;
    std::map<std::string, int> starts, stops;
    std::map<std::string, std::string> fail_start; // name -> exception text
    std::map<std::string, int> fail_next;          // name -> how many of the next starts throw
    void note(const std::string& s) {
        std::lock_guard lk(mu);
        log.push_back(s);
    }
    std::vector<std::string> snapshot() {
        std::lock_guard lk(mu);
        return log;
    }
    int started(const std::string& n) {
        std::lock_guard lk(mu);
        return starts[n];
    }
    int stopped(const std::string& n) {
        std::lock_guard lk(mu);
        return stops[n];
    }
    service_definition def(const std::string& n, std::chrono::milliseconds start_delay = 0ms) {
        service_definition d;
        d.start = [this, n, start_delay] {
            if (start_delay.count()) std::this_thread::sleep_for(start_delay);
            std::string err;
            {
                std::lock_guard lk(mu);
                ++starts[n];
                auto it = fail_start.find(n);
                if (it != fail_start.end())
                    err = it->second;
                else if (fail_next[n] > 0 && fail_next[n]--)
                    err = "transient start failure";
                else
                    log.push_back("start " + n);
            }
            if (!err.empty()) throw std::runtime_error(err);
        };
        d.stop = [this, n] {
            std::lock_guard lk(mu);
            ++stops[n];
            log.push_back("stop " + n);
        };
        return d;
    }
};

template <class F> std::string what_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return {};
}

/// Polls `pred` until true or a generous real-time deadline passes.
template <class P> bool eventually(P&& pred, std::chrono::milliseconds limit = 30s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return pred();
}

std::size_t index_of(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<std::size_t>(std::find(v.begin(), v.end(), s) - v.begin());
}

} // namespace

TEST_SUITE("service_controller") {

    TEST_CASE("Q320331: name_mapping never starts before the cluster service it depends on") {
        recorder r;
        service_controller ctl({.threads = 4, .clock = {}});
        std::atomic<bool> cluster_was_online{false};
        auto nm = r.def("name_mapping");
        nm.start = [&] {
            cluster_was_online = ctl.state("cluster") == service_state::online;
            r.note("start name_mapping");
        };
        // Declared before the cluster service exists, and started first.
        ctl.add_service("name_mapping", nm);
        ctl.add_dependency("name_mapping", "cluster");
        ctl.add_service("cluster", r.def("cluster", 50ms)); // a slow cluster start
        ctl.start("name_mapping");
        CHECK(cluster_was_online);
        CHECK(r.snapshot() == std::vector<std::string>{"start cluster", "start name_mapping"});
        CHECK(ctl.state("name_mapping") == service_state::online);
        // Stopping the cluster takes name_mapping down first.
        ctl.stop("cluster");
        CHECK(r.snapshot() ==
              std::vector<std::string>{"start cluster", "start name_mapping", "stop name_mapping", "stop cluster"});
        CHECK(ctl.state("name_mapping") == service_state::offline);
    }

    TEST_CASE("replication is a service: after_replication writers get a required dependency") {
        recorder r;
        service_controller ctl;
        auto nm = r.def("name_mapping");
        nm.options.writes = quorumreg::replicated_writes::after_replication;
        ctl.add_service("name_mapping", nm);
        auto journal = r.def("journal_user");
        journal.options.writes = quorumreg::replicated_writes::journaled;
        ctl.add_service("journal_user", journal);
        ctl.add_service("cluster", r.def("cluster", 20ms));
        ctl.set_replication_service("cluster");
        CHECK(ctl.replication_service() == std::optional<std::string>("cluster"));
        CHECK(ctl.writes_replicated_keys("name_mapping") == quorumreg::replicated_writes::after_replication);
        CHECK(ctl.replicated_writers() == std::vector<std::string>{"journal_user", "name_mapping"});
        CHECK(ctl.graph().dependencies_of("name_mapping") == std::vector<std::string>{"cluster"});
        CHECK(ctl.graph().dependencies_of("journal_user").empty()); // may start first, journals
        auto late = r.def("late");
        late.options.writes = quorumreg::replicated_writes::after_replication;
        ctl.add_service("late", late);
        CHECK(ctl.graph().dependencies_of("late") == std::vector<std::string>{"cluster"});
        ctl.start("name_mapping");
        CHECK(r.snapshot() == std::vector<std::string>{"start cluster", "start name_mapping"});
        // A cycle through the replication service is refused.
        ctl.add_dependency("cluster", "base");
        std::error_code ec;
        ctl.add_dependency("base", "name_mapping", ec);
        CHECK(ec == errc::dependency_cycle);
        // So is naming a replication service that depends on one of its writers; nothing changes.
        service_controller other;
        auto w = r.def("w");
        w.options.writes = quorumreg::replicated_writes::after_replication;
        other.add_service("w", w);
        other.add_service("rep", r.def("rep"));
        other.add_dependency("rep", "w");
        other.set_replication_service("rep", ec);
        CHECK(ec == errc::dependency_cycle);
        CHECK_FALSE(other.replication_service());
        CHECK(other.graph().dependencies_of("w").empty());
    }

    TEST_CASE("independent dependencies start in parallel; dependents wait for all of them") {
        recorder r;
        service_controller ctl({.threads = 3, .clock = {}});
        std::atomic<int> running{0}, peak{0};
        auto slow = [&](const std::string& n) {
            service_definition d;
            d.start = [&, n] {
                int now = ++running;
                int p = peak.load();
                while (now > p && !peak.compare_exchange_weak(p, now)) {
                }
                // Wait (bounded) for the other to be running too.
                eventually([&] { return peak.load() >= 2; }, 10s);
                --running;
                r.note("start " + n);
            };
            return d;
        };
        ctl.add_service("a", slow("a"));
        ctl.add_service("b", slow("b"));
        ctl.add_service("top", r.def("top"));
        ctl.add_dependency("top", "a");
        ctl.add_dependency("top", "b");
        ctl.start("top");
        CHECK(peak.load() == 2);
        auto log = r.snapshot();
        REQUIRE(log.size() == 3);
        CHECK(log[2] == "start top");
    }

    TEST_CASE("diamond: waves order the starts and stop reverses them") {
        recorder r;
        service_controller ctl;
        for (auto n : {"top", "left", "right", "base"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("top", "left");
        ctl.add_dependency("top", "right");
        ctl.add_dependency("left", "base");
        ctl.add_dependency("right", "base");
        ctl.start("top");
        auto log = r.snapshot();
        REQUIRE(log.size() == 4);
        CHECK(log[0] == "start base");
        CHECK(log[3] == "start top");
        ctl.stop("base");
        log = r.snapshot();
        REQUIRE(log.size() == 8);
        CHECK(log[4] == "stop top");
        CHECK(index_of(log, "stop left") < index_of(log, "stop base"));
        CHECK(index_of(log, "stop right") < index_of(log, "stop base"));
        CHECK(log[7] == "stop base");
        for (auto n : {"top", "left", "right", "base"})
            CHECK(ctl.state(n) == service_state::offline);
    }

    TEST_CASE("a failed dependency fails its dependents with the root cause; they never start") {
        recorder r;
        service_controller ctl;
        r.fail_start["db"] = "disk missing";
        for (auto n : {"db", "web", "app"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("web", "db");
        ctl.add_dependency("app", "web");
        std::error_code ec;
        ctl.start("app", ec);
        CHECK(ec == errc::dependency_failed);
        CHECK(what_of([&] { ctl.start("app"); }) ==
              "start \"app\": dependency \"web\" failed (root cause: \"db\": start failed: disk missing): a dependency "
              "failed");
        auto st = ctl.status("web");
        CHECK(st.state == service_state::failed);
        CHECK(st.error == errc::dependency_failed);
        CHECK(st.reason == "dependency \"db\" failed (root cause: \"db\": start failed: disk missing)");
        CHECK(st.root_cause == "db");
        CHECK(ctl.status("db").error == errc::resource_failed);
        CHECK(ctl.status("db").reason == "start failed: disk missing");
        CHECK(r.started("web") == 0);
        CHECK(r.started("app") == 0);
        // Fix the cause: a new start retries the failed ones.
        {
            std::lock_guard lk(r.mu);
            r.fail_start.clear();
        }
        ctl.start("app");
        CHECK(ctl.state("web") == service_state::online);
        CHECK(ctl.status("web").reason.empty());
    }

    TEST_CASE("an undefined dependency fails the dependent clearly") {
        service_controller ctl;
        ctl.add_service("web", {});
        ctl.add_dependency("web", "ghost");
        std::error_code ec;
        ctl.start("web", ec);
        CHECK(ec == errc::dependency_failed);
        CHECK(ctl.status("web").reason == "dependency \"ghost\" is not defined");
        CHECK(qr_test::code_of([&] { ctl.start("ghost"); }) == errc::not_found);
    }

    TEST_CASE("OR-group: fall back to the next member, prefer one already online") {
        recorder r;
        service_controller ctl;
        r.fail_start["db1"] = "db1 broken";
        for (auto n : {"db1", "db2", "db3", "web"})
            ctl.add_service(n, r.def(n));
        ctl.add_any_of("web", {"db1", "db2", "db3"});
        ctl.start("web");
        CHECK(ctl.state("db1") == service_state::failed);
        CHECK(ctl.state("db2") == service_state::online);
        CHECK(ctl.state("db3") == service_state::offline);
        CHECK(ctl.state("web") == service_state::online);
        ctl.stop("web");
        ctl.stop("db2");
        // Now db3 is online and db1 would work: the online one is preferred.
        {
            std::lock_guard lk(r.mu);
            r.fail_start.clear();
        }
        ctl.start("db3");
        ctl.start("web");
        CHECK(r.started("db1") == 1); // not tried again
        CHECK(ctl.state("web") == service_state::online);
        // Stopping one member while another is online keeps the dependent up.
        ctl.start("db2");
        ctl.stop("db3");
        CHECK(ctl.state("web") == service_state::online);
        ctl.stop("db2");
        CHECK(ctl.state("web") == service_state::offline);
    }

    TEST_CASE("OR-group: every member failing makes the dependent unsatisfiable") {
        recorder r;
        service_controller ctl;
        r.fail_start["a"] = "a down";
        r.fail_start["b"] = "b down";
        for (auto n : {"a", "b", "web"})
            ctl.add_service(n, r.def(n));
        ctl.add_any_of("web", {"a", "b"});
        std::error_code ec;
        ctl.start("web", ec);
        CHECK(ec == errc::unsatisfiable);
        CHECK(ctl.status("web").reason ==
              "no member of (\"a\" or \"b\") could come online (root cause: \"b\": start failed: b down)");
        CHECK(r.started("a") == 1);
        CHECK(r.started("b") == 1);
    }

    TEST_CASE("ordered_after orders but never pulls in") {
        recorder r;
        service_controller ctl;
        ctl.add_service("web", r.def("web", 40ms));
        ctl.add_service("backup", r.def("backup"));
        ctl.add_service("app", r.def("app"));
        ctl.add_order_after("backup", "web");
        ctl.start("backup");
        CHECK(ctl.state("web") == service_state::offline);
        ctl.stop("backup");
        // Both starting: backup waits for web.
        {
            std::lock_guard lk(r.mu);
            r.log.clear();
        }
        ctl.add_dependency("app", "backup");
        ctl.add_dependency("app", "web");
        ctl.start("app");
        auto log = r.snapshot();
        CHECK(index_of(log, "start web") < index_of(log, "start backup"));
        CHECK(log.back() == "start app");
        // Stopping web does not stop backup (order only), only app (which requires web).
        ctl.stop("web");
        CHECK(ctl.state("backup") == service_state::online);
        CHECK(ctl.state("app") == service_state::offline);
    }

    TEST_CASE("restart policy: 3 restarts within 15 minutes, then failed; only dependents restart") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        recorder r;
        service_controller ctl({.threads = 2, .clock = clock});
        for (auto n : {"db", "web", "other"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("web", "db");
        ctl.start("web");
        ctl.start("other");
        for (int i = 1; i <= 3; ++i) {
            clock->advance(1min);
            ctl.report_failure("db", "probe failed");
            REQUIRE(ctl.wait_idle());
            CHECK(ctl.state("db") == service_state::online);
            CHECK(ctl.state("web") == service_state::online);
            CHECK(r.started("db") == 1 + i);
            CHECK(r.started("web") == 1 + i);
            CHECK(ctl.status("db").restarts_in_period == static_cast<std::size_t>(i));
        }
        CHECK(r.started("other") == 1); // unrelated: untouched
        // The fourth failure within the window: failed for good, dependents fail with the cause.
        clock->advance(1min);
        ctl.report_failure("db", "probe failed");
        REQUIRE(ctl.wait_idle());
        auto st = ctl.status("db");
        CHECK(st.state == service_state::failed);
        CHECK(st.error == errc::restart_limit);
        CHECK(st.reason == "restart limit reached (3 restarts within 900 s); last failure: probe failed");
        CHECK(ctl.state("web") == service_state::failed);
        CHECK(ctl.status("web").root_cause == "db");
        CHECK(r.started("db") == 4);
        CHECK(ctl.state("other") == service_state::online);
        // After the window has passed, a new failure is restarted again.
        ctl.start("web");
        clock->advance(16min);
        ctl.report_failure("db", "probe failed again");
        REQUIRE(ctl.wait_idle());
        CHECK(ctl.state("db") == service_state::online);
        CHECK(ctl.state("web") == service_state::online);
        CHECK(ctl.status("db").restarts_in_period == 1);
        // Reports about a service that is not online are ignored.
        ctl.stop("db");
        ctl.report_failure("db", "late report");
        REQUIRE(ctl.wait_idle());
        CHECK(ctl.state("db") == service_state::offline);
    }

    TEST_CASE("a failed automatic restart fails the dependents with the root cause; OR dependents stay up") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        recorder r;
        service_controller ctl({.threads = 2, .clock = clock});
        for (auto n : {"db", "replica", "web", "report"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("web", "db");
        ctl.add_any_of("report", {"db", "replica"});
        ctl.start("web");
        ctl.start("replica");
        ctl.start("report");
        {
            std::lock_guard lk(r.mu);
            r.fail_start["db"] = "db corrupt";
        }
        ctl.report_failure("db", "crashed");
        REQUIRE(ctl.wait_idle());
        // Every restart the policy allows is tried (issue 16, item 11), then it gives up.
        CHECK(r.started("db") == 1 + 3);
        auto db = ctl.status("db");
        CHECK(db.error == errc::restart_limit);
        CHECK(db.reason == "restart limit reached (3 restarts within 900 s); last failure: start failed: db corrupt");
        auto web = ctl.status("web");
        CHECK(web.state == service_state::failed);
        CHECK(web.reason == "dependency \"db\" failed (root cause: \"db\": " + db.reason + ")");
        CHECK(ctl.state("report") == service_state::online); // replica is online: never stopped
        CHECK(r.started("report") == 1);
    }

    // Issue 16, item 11: the header promised that a reported failure stops the service; the
    // code only marked it failed and started it again over whatever was still running.
    TEST_CASE("report_failure stops the failed service, after its dependents, before restarting it") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        recorder r;
        service_controller ctl({.threads = 2, .clock = clock});
        for (auto n : {"db", "web"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("web", "db");
        ctl.start("web");
        ctl.report_failure("db", "health check failed");
        REQUIRE(ctl.wait_idle());
        CHECK(r.stopped("db") == 1);
        CHECK(r.stopped("web") == 1);
        auto log = r.snapshot();
        REQUIRE(log.size() == 6);
        CHECK(log == std::vector<std::string>{"start db", "start web", "stop web", "stop db", "start db", "start web"});
        CHECK(ctl.state("db") == service_state::online);
        // Past the restart limit it is still stopped, and stays failed.
        for (int i = 0; i < 3; ++i) {
            ctl.report_failure("db", "health check failed");
            REQUIRE(ctl.wait_idle());
        }
        CHECK(r.stopped("db") == 4);
        CHECK(ctl.status("db").error == errc::restart_limit);
        CHECK(r.started("db") == 4);
    }

    TEST_CASE("a failed automatic restart is tried again while the restart budget lasts") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        recorder r;
        service_controller ctl({.threads = 2, .clock = clock});
        for (auto n : {"db", "web"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("web", "db");
        ctl.start("web");
        {
            std::lock_guard lk(r.mu);
            r.fail_next["db"] = 1; // the first automatic restart fails, the second works
        }
        ctl.report_failure("db", "crashed");
        REQUIRE(ctl.wait_idle());
        CHECK(ctl.state("db") == service_state::online);
        CHECK(ctl.state("web") == service_state::online);
        CHECK(r.started("db") == 3);
        CHECK(ctl.status("db").restarts_in_period == 2);
    }

    // Issue 16, item 11: a start that timed out and completed later left the service running
    // while the controller said failed, and a new start could run beside it.
    TEST_CASE("a start that completes after its pending timeout is stopped, and no new start overlaps it") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        service_controller ctl({.threads = 2, .clock = clock});
        std::promise<void> gate;
        auto gate_future = gate.get_future().share();
        std::atomic<int> running{0}, most{0}, starts{0}, stops{0};
        service_definition d;
        d.start = [&, gate_future] {
            int now = ++running;
            int m = most.load();
            while (now > m && !most.compare_exchange_weak(m, now)) {
            }
            ++starts;
            gate_future.wait();
            --running;
        };
        d.stop = [&] { ++stops; };
        d.options.pending_timeout = 30s;
        ctl.add_service("slow", d);
        auto first = std::async(std::launch::async, [&] {
            std::error_code ec;
            ctl.start("slow", ec);
            return ec;
        });
        REQUIRE(eventually([&] { return starts.load() == 1; }));
        clock->advance(31s);
        REQUIRE(first.wait_for(30s) == std::future_status::ready);
        CHECK(first.get() == errc::timeout);
        auto second = std::async(std::launch::async, [&] {
            std::error_code ec;
            ctl.start("slow", ec);
            return ec;
        });
        std::this_thread::sleep_for(200ms);
        CHECK(starts.load() == 1); // waits for the late start to return
        CHECK(second.wait_for(0ms) == std::future_status::timeout);
        gate.set_value();
        REQUIRE(second.wait_for(30s) == std::future_status::ready);
        CHECK_FALSE(second.get());
        CHECK(stops.load() == 1); // the late start was undone before the new one ran
        CHECK(starts.load() == 2);
        CHECK(most.load() == 1);
        CHECK(ctl.state("slow") == service_state::online);
    }

    TEST_CASE("stop pending timeout") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        service_controller ctl({.threads = 2, .clock = clock});
        std::promise<void> gate;
        auto gate_future = gate.get_future().share();
        service_definition d;
        d.stop = [gate_future] { gate_future.wait(); };
        d.options.pending_timeout = 5s;
        ctl.add_service("s", d);
        ctl.start("s");
        auto result = std::async(std::launch::async, [&] {
            std::error_code ec;
            ctl.stop("s", ec);
            return ec;
        });
        REQUIRE(eventually([&] { return ctl.state("s") == service_state::offline_pending; }));
        clock->advance(6s);
        REQUIRE(result.wait_for(30s) == std::future_status::ready);
        CHECK(result.get() == errc::timeout);
        CHECK(ctl.status("s").reason == "stop did not finish within the pending timeout (5 s)");
        gate.set_value();
    }

    TEST_CASE("restart(x) restarts x and its dependents only") {
        recorder r;
        service_controller ctl;
        for (auto n : {"a", "b", "c", "d"})
            ctl.add_service(n, r.def(n));
        ctl.add_dependency("b", "a");
        ctl.add_dependency("c", "b");
        ctl.start("c");
        ctl.start("d");
        ctl.restart("b");
        CHECK(r.started("a") == 1);
        CHECK(r.started("b") == 2);
        CHECK(r.started("c") == 2);
        CHECK(r.started("d") == 1);
        auto log = r.snapshot();
        CHECK(index_of(log, "stop c") < index_of(log, "stop b"));
        for (auto n : {"a", "b", "c", "d"})
            CHECK(ctl.state(n) == service_state::online);
    }

    TEST_CASE("pending timeout under the fake clock; a late completion is ignored") {
        auto clock = std::make_shared<quorumreg::fake_service_clock>();
        service_controller ctl({.threads = 2, .clock = clock});
        std::promise<void> gate;
        auto gate_future = gate.get_future().share();
        service_definition d;
        d.start = [gate_future] { return gate_future; }; // a future-returning action
        d.options.pending_timeout = 30s;
        ctl.add_service("slow", d);
        auto result = std::async(std::launch::async, [&] {
            std::error_code ec;
            ctl.start("slow", ec);
            return ec;
        });
        REQUIRE(eventually([&] { return ctl.state("slow") == service_state::online_pending; }));
        clock->advance(29s);
        CHECK(result.wait_for(100ms) == std::future_status::timeout);
        clock->advance(2s);
        REQUIRE(result.wait_for(30s) == std::future_status::ready);
        CHECK(result.get() == errc::timeout);
        CHECK(ctl.status("slow").reason == "start did not finish within the pending timeout (30 s)");
        gate.set_value();
        std::this_thread::sleep_for(50ms);
        CHECK(ctl.state("slow") == service_state::failed);
    }

    TEST_CASE("future-returning actions and failing futures") {
        service_controller ctl;
        service_definition ok;
        ok.start = [] { return std::async(std::launch::async, [] { std::this_thread::sleep_for(10ms); }); };
        service_definition bad;
        bad.start = [] {
            return std::async(std::launch::async, [] { throw quorumreg::error(errc::io_error, "mount /data"); });
        };
        ctl.add_service("ok", ok);
        ctl.add_service("bad", bad);
        ctl.start("ok");
        CHECK(ctl.state("ok") == service_state::online);
        std::error_code ec;
        ctl.start("bad", ec);
        CHECK(ec == errc::io_error);
        CHECK(ctl.status("bad").reason == "start failed: mount /data: input/output error");
    }

    TEST_CASE("stop failures and stop of a failed service") {
        service_controller ctl;
        service_definition d;
        d.stop = [] { throw std::runtime_error("busy"); };
        ctl.add_service("s", d);
        ctl.start("s");
        std::error_code ec;
        ctl.stop("s", ec);
        CHECK(ec == errc::resource_failed);
        CHECK(ctl.status("s").reason == "stop failed: busy");
        ctl.stop("s"); // failed -> offline, nothing runs
        CHECK(ctl.state("s") == service_state::offline);
    }

    TEST_CASE("observers see every state change in order; RAII stops them") {
        recorder r;
        service_controller ctl;
        ctl.add_service("db", r.def("db"));
        ctl.add_service("web", r.def("web"));
        ctl.add_dependency("web", "db");
        std::mutex mu;
        std::vector<std::string> seen_db, seen_all;
        auto sub_db = ctl.observe("db", [&](const service_event& e) {
            std::lock_guard lk(mu);
            seen_db.push_back(std::string(to_string(e.from)) + ">" + std::string(to_string(e.to)));
        });
        std::error_code nested;
        auto sub_all = ctl.observe([&](const service_event& e) {
            std::lock_guard lk(mu);
            seen_all.push_back(e.service + ":" + std::string(to_string(e.to)));
            if (e.service == "web" && e.to == service_state::online) ctl.stop("db", nested); // would deadlock
        });
        ctl.start("web");
        ctl.wait_idle();
        {
            std::lock_guard lk(mu);
            CHECK(seen_db == std::vector<std::string>{"offline>online_pending", "online_pending>online"});
            CHECK(seen_all ==
                  std::vector<std::string>{"db:online_pending", "db:online", "web:online_pending", "web:online"});
        }
        CHECK(nested == errc::invalid_argument);
        sub_db.reset();
        ctl.stop("db");
        std::lock_guard lk(mu);
        CHECK(seen_db.size() == 2);
        CHECK(seen_all.size() == 8);
    }

    TEST_CASE("configuration errors in both forms") {
        service_controller ctl;
        ctl.add_service("a", {});
        std::error_code ec;
        ctl.add_service("a", {}, ec);
        CHECK(ec == errc::already_exists);
        CHECK(qr_test::code_of([&] { ctl.add_service("", {}); }) == errc::invalid_argument);
        ctl.add_dependency("a", "b");
        ctl.add_service("b", {});
        CHECK(what_of([&] { ctl.add_dependency("b", "a"); }) ==
              "add_dependency \"b\" on \"a\": would create the cycle b -> a -> b: dependency would create a cycle");
        ctl.add_any_of("b", {"c", "d"}, ec);
        CHECK_FALSE(ec);
        ctl.add_any_of("c", {"x", "a"}, ec);
        CHECK(ec == errc::dependency_cycle);
        CHECK(ctl.graph().dependency_groups("c").empty());
        ctl.start("a", ec);
        CHECK(ec == errc::dependency_failed);
        CHECK(ctl.status("b").error == errc::unsatisfiable); // c and d are not defined
        CHECK(ctl.status("b").reason ==
              "no member of (\"c\" or \"d\") could come online (root cause: \"d\": service is not defined)");
        ctl.start("b", ec);
        CHECK(qr_test::code_of([&] { ctl.remove_service("zzz"); }) == errc::not_found);
        ctl.add_service("c", {});
        ctl.add_dependency("c", "zz");
        ctl.remove_dependency("c", "zz");
        ctl.remove_dependency("c", "zz", ec);
        CHECK(ec == errc::not_found);
        CHECK(qr_test::code_of([&] { ctl.remove_dependency("c", "zz"); }) == errc::not_found);
        ctl.start("a");
        ctl.remove_service("a", ec);
        CHECK(ec == errc::invalid_argument); // online
        ctl.stop("a");
        ctl.remove_service("a");
        CHECK_FALSE(ctl.contains("a"));
        CHECK(ctl.services() == std::vector<std::string>{"b", "c"});
        CHECK(qr_test::code_of([&] { ctl.status("a"); }) == errc::not_found);
    }

} // TEST_SUITE
