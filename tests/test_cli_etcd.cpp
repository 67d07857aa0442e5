// qreg against a real 3-member etcd cluster on 127.0.0.1 (started and stopped by the test).
#include "test_support.hpp"

#include "cli_support.hpp"
#include "etcd_cluster.hpp"

#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/etcd_store.hpp>

#include <boost/json.hpp>

using namespace qr_cli;
namespace json = boost::json;

/// qreg's --store for `cluster`: "etcd:URL,URL,URL".
std::string store_spec(qr_test::etcd_cluster& cluster) {
    std::string spec = "etcd:";
    for (auto& u : cluster.client_urls())
        spec += (spec.size() > 5 ? "," : "") + u;
    return spec;
}

TEST_SUITE("cli_etcd") {

    TEST_CASE("cli_etcd: checkpoints, types and resources through --store etcd:URL,URL,URL") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cli-etcd");
        const auto store = store_spec(cluster);
        auto h = (dir.path() / "node1").string();

        // store init gives the cluster its identity (key quorumreg/identity); only once.
        auto r = qreg(dir.path(), {"store", "init", "--store", store});
        CHECK_MESSAGE(r.rc == 0, r.err);
        CHECK(qreg(dir.path(), {"store", "init", "--store", store}).rc == 6);
        auto id = qreg(dir.path(), {"store", "identity", "--store", store});
        CHECK(id.out.size() == 33);
        CHECK(has(r.out, id.out.substr(0, 32)));

        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h}).rc ==
                0);
        r = qreg(dir.path(),
                 {"checkpoint", "add", "SQL", "Software/SQL", "--store", store, "--hive", h, "--node", "node1"});
        CHECK_MESSAGE(r.rc == 0, r.err);
        r = qreg(dir.path(), {"resource", "list", "--store", store, "--json"});
        CHECK(r.rc == 0);
        auto list = json::parse(r.out);
        REQUIRE(list.as_array().size() == 1);
        CHECK(list.as_array()[0].at("resource").as_string() == "SQL");
        r = qreg(dir.path(), {"checkpoint", "history", "SQL", "Software/SQL", "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "node1"));
        CHECK(qreg(dir.path(), {"checkpoint", "restore", "SQL", "Software/SQL", "1", "--store", store}).rc == 0);
        r = qreg(dir.path(), {"checkpoint", "list", "SQL", "--store", store, "--json"});
        CHECK(json::parse(r.out).as_array().at(0).at("generation").to_number<int>() == 2);

        std::filesystem::create_directories(dir.path() / "plugins");
        auto lib = dir.path() / "plugins" / "good.so";
        std::filesystem::copy_file(QR_CLI_PLUGIN, lib);
        CHECK(qreg(dir.path(), {"type", "add", "GoodType", lib.string(), "--store", store, "--node", "node1"}).rc == 0);
        r = qreg(dir.path(), {"type", "verify", "GoodType", "--store", store, "--node", "node2"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "node2"));

        // A member down: the other two are a quorum and qreg still works.
        cluster.kill_member(0);
        r = qreg(dir.path(), {"type", "list", "--store", store, "--timeout", "20000"});
        CHECK_MESSAGE(r.rc == 0, r.err);
        CHECK(has(r.out, "GoodType"));
        // Two down: no quorum, exit 4, for a read and for a write.
        cluster.kill_member(1);
        r = qreg(dir.path(), {"type", "list", "--store", store, "--timeout", "1500"});
        CHECK(r.rc == 4);
        CHECK(has(r.err, "qreg: "));
        r = qreg(dir.path(), {"checkpoint", "set", "SQL", "Software/SQL", "Port", "1", "--type", "dword", "--store",
                              store, "--timeout", "1500"});
        CHECK(r.rc == 4);
    }

    TEST_CASE("cli_etcd: an operator's change sticks: set, show, diff, import, policy and conflicts on etcd") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cli-etcd");
        const auto store = store_spec(cluster);
        auto h = (dir.path() / "node1").string();
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h}).rc ==
                0);
        REQUIRE(qreg(dir.path(),
                     {"checkpoint", "add", "SQL", "Software/SQL", "--store", store, "--hive", h, "--node", "node1"})
                    .rc == 0);
        auto r = qreg(dir.path(), {"checkpoint", "add", "Web", "Software", "--store", store, "--hive", h});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "resource \"SQL\""));
        quorumreg::etcd_store_options o;
        o.endpoints = cluster.client_urls();
        quorumreg::etcd_store es(o);
        auto online_port = [&] { // node1 brings SQL online and reports the port it got
            quorumreg::hive local(h);
            quorumreg::checkpoint_manager cp(local, es, {.node = "node1", .lease_ttl = std::chrono::seconds(2)});
            cp.online("SQL");
            auto port = local.get_value("Software/SQL", "Port").as_dword();
            cp.offline("SQL");
            return port;
        };

        r = qreg(dir.path(),
                 {"checkpoint", "set", "SQL", "Software/SQL", "Port", "2001", "--type", "dword", "--store", store});
        CHECK_MESSAGE(r.rc == 0, r.err);
        CHECK(online_port() == 2001);
        r = qreg(dir.path(), {"checkpoint", "diff", "SQL", "Software/SQL", "1", "2", "--store", store});
        CHECK(has(r.out, "~ Software/SQL  Port = dword 1433 -> dword 2001"));
        r = qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "1", "--store", store});
        CHECK(r.rc == 0);
        write_file(dir.path() / "gen1.json", r.out);
        CHECK(qreg(dir.path(), {"checkpoint", "import", "SQL", "gen1.json", "--store", store}).rc == 0);
        CHECK(online_port() == 1433);

        // An offline edit of node1's hive becomes a conflict record; adopt makes it stick.
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "2000", "--type", "dword", "--hive", h}).rc ==
                0);
        CHECK(online_port() == 1433);
        auto cs = json::parse(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"}).out)
                      .as_array();
        REQUIRE(cs.size() == 1);
        std::string id(cs[0].at("id").as_string());
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "show", id, "--store", store});
        CHECK(has(r.out, "~ Software/SQL  Port = dword 1433 -> dword 2000"));
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "adopt", id, "--store", store}).rc == 0);
        CHECK(online_port() == 2000);
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "discard", id, "--store", store}).rc == 3);

        // Owned by a running node: refused, naming it; nothing changes.
        {
            quorumreg::hive local(h);
            quorumreg::checkpoint_manager cp(local, es, {.node = "node1", .lease_ttl = std::chrono::seconds(2)});
            cp.online("SQL");
            r = qreg(dir.path(), {"checkpoint", "delete", "SQL", "Software/SQL", "Port", "--store", store});
            CHECK(r.rc == 1);
            CHECK(has(r.err, "owned by node \"node1\""));
            cp.offline("SQL");
        }
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "reject", "--store", store}).rc == 0);
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "--store", store}).out == "reject\n");
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "7", "--type", "dword", "--hive", h}).rc == 0);
        CHECK_THROWS_AS(online_port(), quorumreg::error);
    }
}
