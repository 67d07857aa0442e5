// The checkpoint scenarios on a real 3-member etcd cluster on 127.0.0.1 (started and stopped
// by the test), with nodes as separate processes.
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/etcd_store.hpp>

#include "checkpoint_scenarios.hpp"
#include "cluster_writer_scenarios.hpp"
#include "etcd_cluster.hpp"
#include "test_support.hpp"

#include <thread>

namespace {
std::string spec_of(const qr_test::etcd_cluster& c) {
    std::string s = "etcd:";
    for (auto& u : c.client_urls())
        s += (s.size() > 5 ? "," : "") + u;
    return s;
}
} // namespace

TEST_SUITE("checkpoint_etcd") {

    TEST_CASE("etcd, separate processes: failover after kill -9 keeps every flushed change") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd");
        qr_test::checkpoint_failover_rounds(spec_of(cluster), dir.path(), 3, 1000, std::random_device{}());
    }

    TEST_CASE("etcd, separate processes: offline edits under each policy") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd");
        qr_test::checkpoint_offline_edit_policies(spec_of(cluster), dir.path(), 1000);
    }

    TEST_CASE("etcd, separate processes: a SIGSTOPped owner is fenced") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd");
        qr_test::checkpoint_stale_owner(spec_of(cluster), dir.path(), 1000);
    }
}

// The cluster_writer regression scenarios of issue 15 on etcd (the directory and memory store
// runs are in test_cluster_writer.cpp).
namespace {
struct etcd_quorum : qr_test::cw_quorum {
    qr_test::etcd_cluster& cluster;
    quorumreg::etcd_store client;
    explicit etcd_quorum(qr_test::etcd_cluster& c) : cluster(c), client(options(c)) {}
    static quorumreg::etcd_store_options options(const qr_test::etcd_cluster& c) {
        quorumreg::etcd_store_options o;
        o.endpoints = c.client_urls();
        o.deadline = std::chrono::seconds(3); // an unreachable cluster is reported within it
        return o;
    }
    quorumreg::quorum_store& store() override { return client; }
    /// Unreachable: every member frozen (SIGSTOP), sockets open, nothing answers.
    void set_reachable(bool up) override {
        for (std::size_t i = 0; i < cluster.size(); ++i)
            up ? cluster.continue_member(i) : cluster.stop_member(i);
        if (up) REQUIRE(cluster.wait_ready(std::chrono::seconds(30)));
    }
};
} // namespace

TEST_SUITE("cluster_writer_etcd") {

    TEST_CASE("defect 1 (etcd): erase then put while detached is applied, not a false conflict") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cw-etcd");
        etcd_quorum q(cluster);
        qr_test::cw_defect1_erase_then_put(q, dir.path());
    }

    TEST_CASE("defect 2 (etcd): a replay cut by an unreachable store resumes without conflicting with itself") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cw-etcd");
        etcd_quorum q(cluster);
        qr_test::cw_defect2_unreachable_half_way(q, dir.path());
    }

    TEST_CASE("defect 2 (etcd): a crash between the store commit and the hive's note applies the entry exactly once") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cw-etcd");
        etcd_quorum q(cluster);
        qr_test::cw_defect2_crash_before_note(q, dir.path());
    }

    TEST_CASE("defect 3 (etcd): two writers on one hive never share a journal sequence number") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cw-etcd");
        etcd_quorum q(cluster);
        qr_test::cw_defect3_two_writers(q, dir.path());
    }
}

TEST_SUITE("checkpoint_etcd") {

    TEST_CASE("defect 4 (etcd): online() does not overwrite an edit made while it runs") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd");
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store store(o);
        qr_test::checkpoint_defect4_edit_during_online(store, dir.path());
    }

    TEST_CASE("defect 7 (etcd): keep-alives never wait behind a slow write; on_lost fires before a takeover") {
        using namespace std::chrono_literals;
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd-d7");
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store store(o);
        qr_test::checkpoint_defect7_slow_writes(store, dir.path(), 2000ms);
    }

    TEST_CASE("defect 5 (etcd): a write-through batch reaches the store all or nothing, cut at every commit") {
        using namespace std::chrono_literals;
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd-d5");
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store store(o);
        SUBCASE("one transaction") {
            qr_test::checkpoint_defect5_atomic_batches(store, dir.path() / "one", 32, false, 1s);
        }
        SUBCASE("staged, answers lost") {
            qr_test::checkpoint_defect5_atomic_batches(store, dir.path() / "staged", 1, true, 1s);
        }
    }

    TEST_CASE("defects 8 and 9 (etcd): watches that end or stall are resubscribed; follow() never serves an old "
              "generation") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd-d89");
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store store(o);
        SUBCASE("registration watch") { qr_test::checkpoint_defect8_registration_watch(store, dir.path() / "reg"); }
        SUBCASE("follow resubscribes") { qr_test::checkpoint_defect8_follow_resubscribes(store, dir.path() / "fol"); }
        SUBCASE("follow generations") { qr_test::checkpoint_defect9_follow_generations(store, dir.path() / "gen"); }
    }

    TEST_CASE("defect 6 (etcd): flush() is not lost when the pass in flight ends short of the flush target") {
        using namespace std::chrono_literals;
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cp-etcd");
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store store(o);
        const char* app = "Software/Contoso/App";
        quorumreg::hive local(dir.path() / "A");
        quorumreg::checkpoint_manager cp(local, store, {.node = "A", .lease_ttl = 60s}); // no keep-alive meanwhile
        cp.add_checkpoint("App", app);
        cp.online("App");
        cp.flush("App", 10s);
        for (std::size_t i = 0; i < cluster.size(); ++i)
            cluster.stop_member(i); // the worker's next store request waits (within its 5 s deadline)
        local.set_value(app, "Port", quorumreg::value::dword(1));
        std::this_thread::sleep_for(1s); // its pass has read the hive and waits on etcd by now
        local.set_value("Software/Elsewhere", "X", quorumreg::value::dword(2)); // after that read
        std::thread resume([&] {
            std::this_thread::sleep_for(300ms); // flush() has asked by then
            for (std::size_t i = 0; i < cluster.size(); ++i)
                cluster.continue_member(i);
        });
        auto t0 = std::chrono::steady_clock::now();
        std::error_code ec;
        cp.flush("App", 10s, ec); // before the fix: deadline_exceeded after the whole 10 s
        resume.join();
        CHECK_FALSE(ec);
        CHECK(std::chrono::steady_clock::now() - t0 < 8s);
        cp.offline("App");
        quorumreg::hive other(dir.path() / "B");
        quorumreg::checkpoint_manager b(other, store, {.node = "B"});
        b.online("App");
        CHECK(other.get_value(app, "Port").as_dword() == 1);
    }
}
