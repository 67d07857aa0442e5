// The checkpoint scenarios on a real 3-member etcd cluster on 127.0.0.1 (started and stopped
// by the test), with nodes as separate processes.
#include <quorumreg/checkpoint.hpp>

#include "checkpoint_scenarios.hpp"
#include "etcd_cluster.hpp"
#include "test_support.hpp"

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
