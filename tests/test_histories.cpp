// quorumreg's own histories, checked for linearizability: several real client processes
// (tests/history_worker.cpp) run compare-and-set registers on a real store while the test
// kills clients with SIGKILL and, on etcd, kills and freezes members; the merged history of
// every invocation and completion (unknown outcomes included) must be linearizable.
#include "etcd_cluster.hpp"
#include "test_support.hpp"

#include <quorumreg/lincheck.hpp>
#include <quorumreg/stores/open_store.hpp>
#include <quorumreg_support/child_process.hpp>

#include <csignal>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

namespace {

using namespace quorumreg;
namespace lc = quorumreg::lincheck;

std::int64_t to_int(const std::string& s) { return std::stoll(s); }

/// Reads one worker's log into `out`. Returns the number of operations with a known outcome.
std::size_t read_worker_log(const std::filesystem::path& file, int process, lc::history& out) {
    std::ifstream in(file);
    std::size_t known = 0;
    std::optional<std::size_t> open;
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        std::uint64_t t = 0;
        std::string type, fn, key;
        ls >> t >> type >> fn >> key;
        REQUIRE_MESSAGE(!key.empty(), "bad log line: " << line);
        if (type == "invoke") {
            REQUIRE_MESSAGE(!open, "two open operations in " << file);
            lc::operation op;
            op.process = process;
            op.key = key;
            op.invoked = t;
            op.result = lc::outcome::unknown;
            std::string a, b;
            ls >> a >> b;
            if (fn == "read") {
                op.kind = lc::op_kind::read;
            } else if (fn == "write") {
                op.kind = lc::op_kind::write;
                op.value = to_int(a);
            } else {
                op.kind = lc::op_kind::cas;
                op.from = to_int(a);
                op.value = to_int(b);
            }
            open = out.size();
            out.push_back(op);
            continue;
        }
        REQUIRE_MESSAGE(open, "completion without invocation in " << file);
        auto& op = out[*open];
        open.reset();
        op.completed = t;
        if (type == "ok") {
            op.result = lc::outcome::ok;
            if (op.kind == lc::op_kind::read) {
                std::string v;
                ls >> v;
                if (v == "nil") {
                    op.value.reset();
                } else {
                    op.value = to_int(v);
                }
            }
            ++known;
        } else if (type == "fail") {
            // A failed read timed out or errored: it says nothing.
            op.result = op.kind == lc::op_kind::read ? lc::outcome::unknown : lc::outcome::failed;
            known += op.kind != lc::op_kind::read;
        } else {
            op.result = lc::outcome::unknown;
        }
    }
    return known; // an invocation left open (the process was killed) stays unknown
}

struct run_options {
    std::string spec{};
    std::filesystem::path logs{};
    int slots = 4; ///< client processes running at once
    int keys = 4;
    int ops_per_process = 150;
    std::size_t min_known = 1000;              ///< stop once this many outcomes are known ...
    std::chrono::milliseconds min_duration{0}; ///< ... and this much time has passed
    bool kill_clients = true;
    bool stale_reads = false;
    std::function<void(std::mt19937_64&)> fault{}; ///< called between client kills (member faults)
};

struct run_result {
    lc::history h;
    std::size_t known = 0;
    int processes = 0;
    int killed = 0;
};

run_result run_clients(const run_options& o, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::filesystem::create_directories(o.logs);
    run_result r;
    std::vector<std::pair<int, std::unique_ptr<qr_support::child_process>>> running;
    auto spawn = [&] {
        const int p = r.processes++;
        std::vector<std::string> argv = {QR_HISTORY_WORKER,
                                         o.spec,
                                         (o.logs / ("p" + std::to_string(p) + ".log")).string(),
                                         std::to_string(p + 1),
                                         std::to_string(o.keys),
                                         std::to_string(o.ops_per_process),
                                         std::to_string(rng())};
        if (o.stale_reads) argv.push_back("--stale-reads");
        running.emplace_back(p, std::make_unique<qr_support::child_process>(argv));
    };
    auto known_so_far = [&] {
        lc::history tmp;
        std::size_t k = 0;
        for (int p = 0; p < r.processes; ++p)
            k += read_worker_log(o.logs / ("p" + std::to_string(p) + ".log"), p, tmp);
        return k;
    };
    for (int i = 0; i < o.slots; ++i)
        spawn();
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 30));
        if (o.kill_clients && rng() % 2 == 0) {
            auto& victim = running[rng() % running.size()].second;
            if (!victim->exited()) {
                victim->kill(SIGKILL);
                ++r.killed;
            }
        }
        if (o.fault) o.fault(rng);
        for (auto& [p, c] : running) {
            if (c->exited()) {
                c->wait();
                c.reset();
            }
        }
        std::erase_if(running, [](const auto& pc) { return pc.second == nullptr; });
        if (std::chrono::steady_clock::now() - started >= o.min_duration && known_so_far() >= o.min_known) break;
        while (static_cast<int>(running.size()) < o.slots)
            spawn();
    }
    for (auto& [p, c] : running) {
        c->kill(SIGKILL);
        c->wait();
    }
    for (int p = 0; p < r.processes; ++p)
        r.known += read_worker_log(o.logs / ("p" + std::to_string(p) + ".log"), p, r.h);
    return r;
}

std::string spec_of(const qr_test::etcd_cluster& c) {
    std::string s = "etcd:";
    for (auto& u : c.client_urls())
        s += (s.size() > 5 ? "," : "") + u;
    return s;
}

} // namespace

TEST_SUITE("histories") {

    TEST_CASE("directory store: several client processes under kill -9 stay linearizable") {
        qr_test::temp_dir dir("hist-dir");
        const auto spec = "dir:" + (dir.path() / "store").string();
        create_store(spec);
        const auto seed = std::random_device{}();
        CAPTURE(seed);
        auto r = run_clients({.spec = spec, .logs = dir.path() / "logs", .min_known = 2000}, seed);
        MESSAGE("operations=" << r.h.size() << " known=" << r.known << " processes=" << r.processes
                              << " killed=" << r.killed);
        CHECK(r.known >= 1000);
        CHECK(r.killed > 0);
        auto v = lc::check(r.h);
        CHECK(v.answer == lc::verdict::linearizable);
    }

    TEST_CASE("the recorded histories catch a real anomaly (a client with a stale read cache)") {
        qr_test::temp_dir dir("hist-stale");
        const auto spec = "dir:" + (dir.path() / "store").string();
        create_store(spec);
        auto r = run_clients(
            {.spec = spec, .logs = dir.path() / "logs", .min_known = 400, .kill_clients = false, .stale_reads = true},
            std::random_device{}());
        REQUIRE(r.known >= 400);
        CHECK(lc::check(r.h).answer == lc::verdict::not_linearizable);
    }

} // TEST_SUITE

TEST_SUITE("histories_etcd") {

    TEST_CASE("etcd, 3 members: clients under kill -9 while members are killed and frozen stay linearizable") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("hist-etcd");
        const auto seed = std::random_device{}();
        CAPTURE(seed);
        // One member fault at a time: kill -9 (restarted later) or SIGSTOP past the election
        // timeout (resumed later); the cluster keeps a quorum throughout.
        int down = -1;
        bool frozen = false;
        auto since = std::chrono::steady_clock::now();
        int faults = 0;
        auto fault = [&](std::mt19937_64& rng) {
            auto now = std::chrono::steady_clock::now();
            if (now - since < std::chrono::milliseconds(1000)) return;
            since = now;
            if (down >= 0) {
                if (frozen) {
                    cluster.continue_member(static_cast<std::size_t>(down));
                } else {
                    cluster.restart_member(static_cast<std::size_t>(down));
                }
                down = -1;
                return;
            }
            down = static_cast<int>(rng() % 3);
            frozen = rng() % 2 == 0;
            if (frozen) {
                cluster.stop_member(static_cast<std::size_t>(down));
            } else {
                cluster.kill_member(static_cast<std::size_t>(down));
            }
            ++faults;
        };
        auto r = run_clients({.spec = spec_of(cluster),
                              .logs = dir.path() / "logs",
                              .min_duration = std::chrono::seconds(9),
                              .fault = fault},
                             seed);
        if (down >= 0) {
            if (frozen) {
                cluster.continue_member(static_cast<std::size_t>(down));
            } else {
                cluster.restart_member(static_cast<std::size_t>(down));
            }
        }
        MESSAGE("operations=" << r.h.size() << " known=" << r.known << " processes=" << r.processes
                              << " killed=" << r.killed << " member faults=" << faults);
        CHECK(r.known >= 1000);
        CHECK(faults >= 3);
        CHECK(lc::check(r.h).answer == lc::verdict::linearizable);
    }

} // TEST_SUITE
