// qreg against a real 3-member etcd cluster on 127.0.0.1 (started and stopped by the test).
#include "test_support.hpp"

#include "cli_support.hpp"
#include "etcd_cluster.hpp"

#include <boost/json.hpp>

using namespace qr_cli;
namespace json = boost::json;

TEST_SUITE("cli_etcd") {

    TEST_CASE("cli_etcd: checkpoints, types and resources through --store etcd:URL,URL,URL") {
        qr_test::etcd_cluster cluster(3);
        qr_test::temp_dir dir("cli-etcd");
        std::string store = "etcd:";
        for (auto& u : cluster.client_urls())
            store += (store.size() > 5 ? "," : "") + u;
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
    }
}
