// qreg, driven as a user drives it: spawn the binary, check stdout, stderr and the exit code.
#include "test_support.hpp"

#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <boost/json.hpp>

#include "cli_support.hpp"

#include <quorumreg/version.hpp>

#include <chrono>
#include <initializer_list>
#include <map>
#include <thread>

using namespace qr_cli;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

/// A directory store where resource SQL checkpoints Software/SQL (Port = 1433, plus any
/// `extra` values set first) from the hive node1.
struct sql_checkpointed {
    qr_test::temp_dir dir{"cli"};
    std::string store = "dir:" + (dir.path() / "quorum").string();
    std::string h = (dir.path() / "node1").string();
    explicit sql_checkpointed(const std::vector<std::vector<std::string>>& extra = {}) {
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h}).rc ==
                0);
        for (auto args : extra) {
            args.insert(args.end(), {"--hive", h});
            REQUIRE(qreg(dir.path(), args).rc == 0);
        }
        REQUIRE(qreg(dir.path(), {"checkpoint", "add", "SQL", "Software/SQL", "--store", store, "--hive", h}).rc == 0);
    }
};

} // namespace

TEST_SUITE("cli") {

    TEST_CASE("cli: help, usage errors and exit codes") {
        qr_test::temp_dir dir("cli");
        auto r = qreg(dir.path(), {"--help"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "Exit codes"));
        r = qreg(dir.path(), {});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "usage: qreg"));
        r = qreg(dir.path(), {"frobnicate"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "unknown command \"frobnicate\""));
        CHECK(has(r.err, "Try `qreg --help`")); // not `qreg frobnicate --help`
        r = qreg(dir.path(), {"hive", "frob"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "Try `qreg hive --help`"));
        r = qreg(dir.path(), {"--version"});
        CHECK(r.rc == 0);
        CHECK(r.out == std::string("qreg (quorumreg) ") + quorumreg::version_string + "\n");
        for (const char* cmd : {"hive", "checkpoint", "type", "resource", "graph", "store"}) {
            r = qreg(dir.path(), {cmd, "--help"});
            CHECK_MESSAGE(r.rc == 0, cmd);
            CHECK_MESSAGE(has(r.out, std::string("qreg ") + cmd), cmd);
            CHECK(r.err.empty());
        }
        r = qreg(dir.path(), {"hive", "ls", "Software", "--hive"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "--hive needs a value"));
        r = qreg(dir.path(), {"hive", "ls", "Software", "--colour", "red"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "unknown option \"--colour\""));
        r = qreg(dir.path(), {"hive", "ls", "Software"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "missing --hive"));
        r = qreg(dir.path(), {"hive", "ls", "Software", "--hive", "no-such-hive"});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "no hive at no-such-hive"));
        CHECK_FALSE(fs::exists(dir.path() / "no-such-hive")); // reading never creates a hive
        // Exit codes: input of the wrong form is 2 whatever its kind; refusals by state are 1.
        auto hv = (dir.path() / "codes").string();
        CHECK(qreg(dir.path(), {"hive", "set", std::string(300, 'k'), "N", "v", "--hive", hv}).rc == 2);
        CHECK(qreg(dir.path(), {"hive", "set", "A/../B", "N", "v", "--hive", hv}).rc == 2);
        CHECK(qreg(dir.path(), {"hive", "set", "A", std::string(20000, 'n'), "v", "--hive", hv}).rc == 2);
        // A hive whose parent directory is missing is named as such, not "input/output error".
        r = qreg(dir.path(), {"hive", "set", "K", "N", "v", "--hive", "no-such-parent/hive"});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "no-such-parent does not exist"));
        CHECK_FALSE(has(r.err, "input/output error"));
        CHECK_FALSE(fs::exists(dir.path() / "no-such-parent"));
    }

    TEST_CASE("cli: hive set/get/ls/delete with typed values, export and import") {
        qr_test::temp_dir dir("cli");
        auto h = (dir.path() / "hive").string();
        CHECK(qreg(dir.path(), {"hive", "set", "Software/App", "Port", "8080", "--type", "dword", "--hive", h}).rc ==
              0);
        CHECK(qreg(dir.path(), {"hive", "set", "Software/App", "Epoch", "0x10", "--type", "qword", "--hive", h}).rc ==
              0);
        CHECK(qreg(dir.path(), {"hive", "set", "Software/App", "Hosts", "a.example", "b.example", "--type",
                                "multi_string", "--hive", h})
                  .rc == 0);
        CHECK(qreg(dir.path(), {"hive", "set", "Software/App", "Key", "01ff", "--type", "binary", "--hive", h}).rc ==
              0);
        CHECK(qreg(dir.path(),
                   {"hive", "set", "Software/App", "Path", "%ProgramFiles%", "--type", "expand_string", "--hive", h})
                  .rc == 0);
        CHECK(qreg(dir.path(), {"hive", "set", "Software/App/Sub", "Name", "Contoso", "--hive", h}).rc == 0);

        auto r = qreg(dir.path(), {"hive", "get", "software/app", "PORT", "--hive", h});
        CHECK(r.rc == 0);
        CHECK(r.out == "8080\n");
        r = qreg(dir.path(), {"hive", "get", "Software/App", "Epoch", "--hive", h, "--json"});
        CHECK(json::parse(r.out).at("data").to_number<std::uint64_t>() == 16);
        CHECK(json::parse(r.out).at("type").as_string() == "qword");

        // "/" is the root; a leading separator is allowed; an empty level is not.
        r = qreg(dir.path(), {"hive", "ls", "/", "--hive", h});
        CHECK_MESSAGE(r.rc == 0, r.err);
        CHECK(has(r.out, "Software/"));
        CHECK(qreg(dir.path(), {"hive", "ls", "\\", "--hive", h}).out == r.out);
        CHECK(qreg(dir.path(), {"hive", "get", "/Software/App", "Port", "--hive", h}).out == "8080\n");
        CHECK(qreg(dir.path(), {"hive", "ls", "//Software", "--hive", h}).rc == 2);
        CHECK(qreg(dir.path(), {"hive", "delete", "/", "--hive", h}).rc == 2);

        r = qreg(dir.path(), {"hive", "ls", "Software/App", "--hive", h});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "NAME"));
        CHECK(has(r.out, "Sub/"));
        CHECK(has(r.out, "\"a.example\" \"b.example\""));
        CHECK(has(r.out, "01ff"));
        r = qreg(dir.path(), {"hive", "ls", "Software/App", "--hive", h, "--json"});
        auto doc = json::parse(r.out).as_object();
        CHECK(doc.at("subkeys").as_array().size() == 1);
        CHECK(doc.at("values").as_array().size() == 5);

        // Errors name what was wrong and leave the hive as it was.
        r = qreg(dir.path(), {"hive", "get", "Software/App", "Missing", "--hive", h});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "Missing"));
        r = qreg(dir.path(), {"hive", "set", "Software/App", "Port", "4294967296", "--type", "dword", "--hive", h});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "not a valid dword"));
        r = qreg(dir.path(), {"hive", "set", "Software/App", "Key", "abc", "--type", "binary", "--hive", h});
        CHECK(r.rc == 2);
        r = qreg(dir.path(), {"hive", "set", "Software/App", "Port", "1", "--type", "float", "--hive", h});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "unknown --type \"float\""));
        CHECK(qreg(dir.path(), {"hive", "get", "Software/App", "Port", "--hive", h}).out == "8080\n");

        // Export, import elsewhere, compare.
        r = qreg(dir.path(), {"hive", "export", "Software", "--hive", h, "--output", "app.json"});
        CHECK(r.rc == 0);
        auto h2 = (dir.path() / "hive2").string();
        r = qreg(dir.path(), {"hive", "import", "app.json", "Backup/Software", "--hive", h2});
        CHECK(r.rc == 0);
        auto a = qreg(dir.path(), {"hive", "ls", "Software/App", "--hive", h, "--json"});
        auto b = qreg(dir.path(), {"hive", "ls", "Backup/Software/App", "--hive", h2, "--json"});
        CHECK(json::parse(a.out).at("values") == json::parse(b.out).at("values"));
        CHECK(qreg(dir.path(), {"hive", "get", "Backup/Software/App/Sub", "Name", "--hive", h2}).out == "Contoso\n");

        // A malformed import changes nothing.
        write_file(
            dir.path() / "bad.json",
            R"({"format":"qreg-hive-export/1","key":"X","tree":{"values":{"P":{"type":"dword","data":"oops"}}}})");
        r = qreg(dir.path(), {"hive", "import", "bad.json", "--hive", h2});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "bad.json"));
        CHECK(qreg(dir.path(), {"hive", "ls", "X", "--hive", h2}).rc == 3);
        write_file(dir.path() / "notjson.json", "{");
        r = qreg(dir.path(), {"hive", "import", "notjson.json", "--hive", h2});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "not a qreg hive export"));
        CHECK(qreg(dir.path(), {"hive", "import", "nosuch.json", "--hive", h2}).rc == 3);
        // The wrongly typed value is named, without Boost.JSON's source location.
        r = qreg(dir.path(), {"hive", "import", "bad.json", "--hive", h2});
        CHECK(has(r.err, "tree.values[\"P\"]: \"data\" must be a non-negative integer for type dword"));
        CHECK_FALSE(has(r.err, "boost/"));
        // An unknown format version, and a key name holding a separator, are refused.
        write_file(dir.path() / "v2.json", R"({"format":"qreg-hive-export/2","key":"X","tree":{}})");
        r = qreg(dir.path(), {"hive", "import", "v2.json", "--hive", h2});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "format \"qreg-hive-export/2\" is not supported"));
        write_file(dir.path() / "slash.json",
                   R"({"format":"qreg-hive-export/1","key":"X","tree":{"subkeys":{"a/b":{}}}})");
        r = qreg(dir.path(), {"hive", "import", "slash.json", "--hive", h2});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "key name \"a/b\""));
        CHECK(qreg(dir.path(), {"hive", "ls", "X", "--hive", h2}).rc == 3);
        // Import recreates the key as the export has it; --merge keeps what else is there.
        CHECK(qreg(dir.path(), {"hive", "set", "Backup/Software/App", "Stale", "1", "--hive", h2}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "import", "app.json", "Backup/Software", "--merge", "--hive", h2}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "get", "Backup/Software/App", "Stale", "--hive", h2}).out == "1\n");
        CHECK(qreg(dir.path(), {"hive", "import", "app.json", "Backup/Software", "--hive", h2}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "get", "Backup/Software/App", "Stale", "--hive", h2}).rc == 3);
        CHECK(qreg(dir.path(), {"hive", "get", "Backup/Software/App/Sub", "Name", "--hive", h2}).out == "Contoso\n");

        // Delete a value, then a key.
        CHECK(qreg(dir.path(), {"hive", "delete", "Software/App", "Port", "--hive", h}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "get", "Software/App", "Port", "--hive", h}).rc == 3);
        CHECK(qreg(dir.path(), {"hive", "delete", "Software/App/Sub", "--hive", h}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "ls", "Software/App/Sub", "--hive", h}).rc == 3);
    }

    TEST_CASE("cli: checkpoints and resources on a directory store") {
        qr_test::temp_dir dir("cli");
        auto h = (dir.path() / "node1").string();
        auto store = "dir:" + (dir.path() / "quorum").string();
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h}).rc ==
                0);

        auto r = qreg(dir.path(), {"checkpoint", "add", "SQL", "Software/SQL", "--store", store});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "missing --hive"));
        r = qreg(dir.path(),
                 {"checkpoint", "add", "SQL", "Software/SQL", "--store", store, "--hive", h, "--node", "node1"});
        CHECK(r.rc == 0);
        r = qreg(dir.path(), {"checkpoint", "list", "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "SQL"));
        CHECK(has(r.out, "(offline)"));
        r = qreg(dir.path(), {"checkpoint", "list", "SQL", "--store", store, "--json"});
        auto arr = json::parse(r.out).as_array();
        REQUIRE(arr.size() == 1);
        CHECK(arr[0].at("generation").to_number<int>() == 1);
        CHECK(arr[0].at("writer").as_string() == "node1");

        // An edit made in node1's hive while SQL was offline: bringing SQL online keeps it as a conflict.
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "9999", "--type", "dword", "--hive", h}).rc ==
                0);
        {
            quorumreg::hive local(h);
            quorumreg::directory_store ds(dir.path() / "quorum");
            quorumreg::checkpoint_manager cp(local, ds, {.node = "node1"});
            cp.online("SQL");
            CHECK(local.get_value("Software/SQL", "Port").as_dword() == 1433);
            local.set_value("Software/SQL", "Port", quorumreg::value::dword(1)); // generation 2
            cp.flush("SQL");
            r = qreg(dir.path(), {"resource", "status", "SQL", "--store", store, "--json"});
            CHECK(json::parse(r.out).at("owner").as_string() == "node1");
            CHECK(json::parse(r.out).at("state").as_string() == "online");
            cp.offline("SQL");
        }
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"});
        CHECK(r.rc == 0);
        auto conflicts = json::parse(r.out);
        REQUIRE(conflicts.as_array().size() == 1);
        CHECK(conflicts.as_array()[0].at("node").as_string() == "node1");
        CHECK(has(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store}).out, "Software"));

        r = qreg(dir.path(), {"checkpoint", "history", "SQL", "Software/SQL", "--store", store, "--json"});
        CHECK(r.rc == 0);
        CHECK(json::parse(r.out).as_array().size() == 2);
        r = qreg(dir.path(), {"checkpoint", "restore", "SQL", "Software/SQL", "99", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "generation 99"));
        r = qreg(dir.path(),
                 {"checkpoint", "restore", "SQL", "Software/SQL", "1", "--store", store, "--node", "admin"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "restored generation 1 of Software/SQL as generation 3"));
        {
            quorumreg::hive other(dir.path() / "node2");
            quorumreg::directory_store ds(dir.path() / "quorum");
            quorumreg::checkpoint_manager cp(other, ds, {.node = "node2"});
            cp.online("SQL");
            CHECK(other.get_value("Software/SQL", "Port").as_dword() == 1433); // generation 1 is current again
            cp.offline("SQL");
        }

        r = qreg(dir.path(), {"resource", "list", "--store", store, "--json"});
        CHECK(r.rc == 0);
        arr = json::parse(r.out).as_array();
        REQUIRE(arr.size() == 1);
        CHECK(arr[0].at("resource").as_string() == "SQL");
        CHECK(arr[0].at("state").as_string() == "offline");
        r = qreg(dir.path(), {"resource", "status", "SQL", "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "Software/SQL"));
        r = qreg(dir.path(), {"resource", "status", "Nope", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "\"Nope\""));

        r = qreg(dir.path(), {"checkpoint", "remove", "SQL", "Software/SQL", "--store", store, "--hive", h});
        CHECK(r.rc == 0);
        CHECK(qreg(dir.path(), {"checkpoint", "list", "SQL", "--store", store}).rc == 3);
    }

    TEST_CASE("cli: a change made with checkpoint set or an adopted conflict sticks (Q174070, the operator's way)") {
        sql_checkpointed fx;
        auto& dir = fx.dir;
        const auto& store = fx.store;
        const auto& h = fx.h;
        // Another resource cannot checkpoint keys SQL's checkpoint holds (exit 1: refused by state).
        auto r = qreg(dir.path(), {"checkpoint", "add", "Web", "Software/SQL/Sub", "--store", store, "--hive", h});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "overlaps subtree \"Software/SQL\" of resource \"SQL\""));
        auto online_port = [&] { // node1 brings SQL online and reports the port it got
            quorumreg::hive local(h);
            quorumreg::directory_store ds(dir.path() / "quorum");
            quorumreg::checkpoint_manager cp(local, ds, {.node = "node1"});
            cp.online("SQL");
            auto port = local.get_value("Software/SQL", "Port").as_dword();
            cp.offline("SQL");
            return port;
        };

        // The KB's trap: an edit of node1's hive while SQL is offline is not what online() keeps...
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "2000", "--type", "dword", "--hive", h}).rc ==
                0);
        CHECK(online_port() == 1433);
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"});
        auto cs = json::parse(r.out).as_array();
        REQUIRE(cs.size() == 1);
        std::string id(cs[0].at("id").as_string());
        // ...but it is kept, can be read with its differences, and adopted.
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "show", id, "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "~ Software/SQL  Port"));
        CHECK(has(r.out, "2000"));
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "show", id, "--store", store, "--json"});
        CHECK(json::parse(r.out).at("tree").at("values").at("Port").at("data").to_number<int>() == 2000);
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "show", "nope", "--store", store}).rc == 3);
        r = qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "adopt", id, "--store", store, "--node", "admin"});
        CHECK(r.rc == 0);
        CHECK(online_port() == 2000);
        CHECK(json::parse(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"}).out)
                  .as_array()
                  .empty());

        // checkpoint set: a new generation in the quorum, restored by the next online().
        r = qreg(dir.path(),
                 {"checkpoint", "set", "SQL", "Software/SQL", "Port", "2001", "--type", "dword", "--store", store});
        CHECK(r.rc == 0);
        CHECK(online_port() == 2001);
        r = qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "--store", store});
        CHECK(r.rc == 0);
        auto shown = json::parse(r.out);
        CHECK(shown.at("tree").at("values").at("Port").at("data").to_number<int>() == 2001);
        auto latest = shown.at("generation").to_number<int>();
        r = qreg(dir.path(),
                 {"checkpoint", "diff", "SQL", "Software/SQL", "1", std::to_string(latest), "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "~ Software/SQL  Port = dword 1433 -> dword 2001"));
        CHECK(qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "99", "--store", store}).rc == 3);
        // The export shown imports as it is.
        write_file(dir.path() / "gen.json",
                   qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "--store", store}).out);
        auto h2 = (dir.path() / "copy").string();
        CHECK(qreg(dir.path(), {"hive", "import", "gen.json", "--hive", h2}).rc == 0);
        CHECK(qreg(dir.path(), {"hive", "get", "Software/SQL", "Port", "--hive", h2}).out == "2001\n");

        // delete, and the refusals: outside the checkpoint, and owned by a running node.
        CHECK(qreg(dir.path(), {"checkpoint", "set", "SQL", "Software/SQL", "Extra", "x", "--store", store}).rc == 0);
        CHECK(qreg(dir.path(), {"checkpoint", "delete", "SQL", "Software/SQL", "Extra", "--store", store}).rc == 0);
        r = qreg(dir.path(), {"checkpoint", "set", "SQL", "Software/Other", "X", "1", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "not inside a checkpointed subtree"));
        {
            quorumreg::hive local(h);
            quorumreg::directory_store ds(dir.path() / "quorum");
            quorumreg::checkpoint_manager cp(local, ds, {.node = "node1"});
            cp.online("SQL");
            r = qreg(dir.path(),
                     {"checkpoint", "set", "SQL", "Software/SQL", "Port", "1", "--type", "dword", "--store", store});
            CHECK(r.rc == 1);
            CHECK(has(r.err, "owned by node \"node1\""));
            CHECK(local.get_value("Software/SQL", "Port").as_dword() == 2001);
            cp.offline("SQL");
        }

        // discard: the record goes, the checkpoint stays.
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "5", "--type", "dword", "--hive", h}).rc == 0);
        CHECK(online_port() == 2001);
        cs = json::parse(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"}).out)
                 .as_array();
        REQUIRE(cs.size() == 1);
        id = std::string(cs[0].at("id").as_string());
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "discard", id, "--store", store}).rc == 0);
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "discard", id, "--store", store}).rc == 3);
        CHECK(online_port() == 2001);
        CHECK(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "frob", id, "--store", store}).rc == 2);

        // The resource's policy, for every node: reject makes the next online() with an offline edit fail.
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "--store", store}).out ==
              "preserve (default: none set)\n");
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "sometimes", "--store", store}).rc == 2);
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "reject", "--store", store}).rc == 0);
        CHECK(qreg(dir.path(), {"checkpoint", "policy", "SQL", "--store", store}).out == "reject\n");
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "6", "--type", "dword", "--hive", h}).rc == 0);
        CHECK_THROWS_AS(online_port(), quorumreg::error);
    }

    TEST_CASE("cli: store selection errors") {
        qr_test::temp_dir dir("cli");
        auto r = qreg(dir.path(), {"checkpoint", "list", "--store", "ftp:nowhere"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "ftp:nowhere"));
        r = qreg(dir.path(), {"checkpoint", "list"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "missing --store"));
        r = qreg(dir.path(), {"type", "list", "--store", "etcd:http://127.0.0.1:1", "--timeout", "1000"});
        CHECK(r.rc == 4);
        CHECK(has(r.err, "127.0.0.1:1"));
    }

    TEST_CASE("cli: store init creates a store; a missing one is \"no store at PATH\", exit 3, for every command") {
        qr_test::temp_dir dir("cli");
        auto path = dir.path() / "quorum";
        auto store = "dir:" + path.string();
        auto h = (dir.path() / "node1").string();
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1", "--hive", h}).rc == 0);
        std::vector<std::vector<std::string>> commands = {{"checkpoint", "list"},
                                                          {"checkpoint", "list", "SQL"},
                                                          {"checkpoint", "history", "SQL", "Software/SQL"},
                                                          {"checkpoint", "conflicts", "SQL"},
                                                          {"checkpoint", "restore", "SQL", "Software/SQL", "1"},
                                                          {"checkpoint", "add", "SQL", "Software/SQL", "--hive", h},
                                                          {"checkpoint", "remove", "SQL", "Software/SQL", "--hive", h},
                                                          {"type", "list"},
                                                          {"type", "remove", "T"},
                                                          {"type", "verify", "T"},
                                                          {"resource", "list"},
                                                          {"resource", "status", "SQL"},
                                                          {"store", "identity"}};
        for (auto cmd : commands) {
            cmd.insert(cmd.end(), {"--store", store});
            auto r = qreg(dir.path(), cmd);
            CHECK_MESSAGE(r.rc == 3, cmd[0] << " " << cmd[1] << ": " << r.err);
            CHECK_MESSAGE(has(r.err, "no store at " + path.string()), cmd[0] << " " << cmd[1] << ": " << r.err);
        }
        CHECK_FALSE(fs::exists(path)); // nothing was created on the way
        auto r = qreg(dir.path(), {"store", "init", "--store", store});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "created store " + store));
        auto before = slurp(path / "quorumreg.log");
        r = qreg(dir.path(), {"store", "init", "--store", store});
        CHECK(r.rc == 6);
        CHECK(has(r.err, "already exists"));
        CHECK(slurp(path / "quorumreg.log") == before);
        r = qreg(dir.path(), {"store", "identity", "--store", store});
        CHECK(r.rc == 0);
        CHECK(r.out.size() == 33); // 32 hex digits and a newline
        CHECK(qreg(dir.path(), {"checkpoint", "list", "--store", store}).rc == 0);
    }

    TEST_CASE("cli: checkpoint import makes a subtree what an export holds, as a new generation") {
        sql_checkpointed fx({{"hive", "set", "Software/SQL/Old", "Gone", "x"}});
        auto& dir = fx.dir;
        const auto& store = fx.store;
        const auto& h = fx.h;
        // The file an operator edits: an export of another node's hive, with a new port and key.
        auto other = (dir.path() / "staging").string();
        REQUIRE(
            qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "3000", "--type", "dword", "--hive", other}).rc ==
            0);
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL/New", "Here", "y", "--hive", other}).rc == 0);
        REQUIRE(qreg(dir.path(), {"hive", "export", "Software/SQL", "--output", "sql.json", "--hive", other}).rc == 0);
        auto latest = [&] {
            return json::parse(qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "--store", store}).out);
        };
        auto before = latest().at("generation").to_number<int>();

        auto r = qreg(dir.path(), {"checkpoint", "import", "SQL", "sql.json", "--store", store, "--node", "admin"});
        CHECK_MESSAGE(r.rc == 0, r.err);
        CHECK(has(r.out, "imported sql.json into Software/SQL of SQL"));
        auto now = latest();
        CHECK(now.at("generation").to_number<int>() == before + 1);
        CHECK(now.at("tree").at("values").at("Port").at("data").to_number<int>() == 3000);
        CHECK(now.at("tree").at("subkeys").as_object().contains("New"));
        CHECK_FALSE(now.at("tree").at("subkeys").as_object().contains("Old")); // recreated, not overlaid
        // The next online() on node1 restores the imported content.
        {
            quorumreg::hive local(h);
            quorumreg::directory_store ds(dir.path() / "quorum");
            quorumreg::checkpoint_manager cp(local, ds, {.node = "node1"});
            cp.online("SQL");
            CHECK(local.get_value("Software/SQL", "Port").as_dword() == 3000);
            CHECK_FALSE(local.key_exists("Software/SQL/Old"));
            cp.offline("SQL");
        }

        // --merge overlays: what the file does not name stays; a KEY argument puts it elsewhere.
        REQUIRE(qreg(dir.path(), {"checkpoint", "set", "SQL", "Software/SQL/Old", "Gone", "x", "--store", store}).rc ==
                0);
        write_file(
            dir.path() / "part.json",
            R"({"format":"qreg-hive-export/1","key":"X","tree":{"values":{"Mode":{"type":"string","data":"fast"}}}})");
        r = qreg(dir.path(), {"checkpoint", "import", "SQL", "part.json", "Software/SQL", "--merge", "--store", store});
        CHECK_MESSAGE(r.rc == 0, r.err);
        now = latest();
        CHECK(now.at("tree").at("values").at("Mode").at("data").as_string() == "fast");
        CHECK(now.at("tree").at("values").at("Port").at("data").to_number<int>() == 3000);
        CHECK(now.at("tree").at("subkeys").as_object().contains("Old"));
        // A checkpoint show output imports back as it is (a rollback by file).
        write_file(dir.path() / "shown.json",
                   qreg(dir.path(), {"checkpoint", "show", "SQL", "Software/SQL", "1", "--store", store}).out);
        CHECK(qreg(dir.path(), {"checkpoint", "import", "SQL", "shown.json", "--store", store}).rc == 0);
        CHECK(latest().at("tree").at("values").at("Port").at("data").to_number<int>() == 1433);

        // Refusals leave the store's generations as they were.
        auto gen = latest().at("generation").to_number<int>();
        r = qreg(dir.path(), {"checkpoint", "import", "SQL", "sql.json", "Software/Other", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "not inside a checkpointed subtree"));
        r = qreg(dir.path(), {"checkpoint", "import", "SQL", "missing.json", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "cannot read missing.json"));
        write_file(
            dir.path() / "bad.json",
            R"({"format":"qreg-hive-export/1","key":"Software/SQL","tree":{"values":{"P":{"type":"dword","data":"x"}}}})");
        r = qreg(dir.path(), {"checkpoint", "import", "SQL", "bad.json", "--store", store});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "tree.values[\"P\"]"));
        write_file(dir.path() / "absent.json", R"({"format":"qreg-hive-export/1","key":"Software/SQL","absent":true})");
        r = qreg(dir.path(), {"checkpoint", "import", "SQL", "absent.json", "--store", store});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "absent subtree"));
        CHECK(qreg(dir.path(), {"checkpoint", "import", "SQL", "--store", store}).rc == 2);
        CHECK(latest().at("generation").to_number<int>() == gen);
    }

    TEST_CASE("cli: read-only commands change no file of the store or the hive") {
        qr_test::temp_dir dir("cli");
        auto path = dir.path() / "quorum";
        auto store = "dir:" + path.string();
        auto h = dir.path() / "node1";
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        REQUIRE(
            qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h.string()})
                .rc == 0);
        REQUIRE(qreg(dir.path(), {"checkpoint", "add", "SQL", "Software/SQL", "--store", store, "--hive", h.string(),
                                  "--node", "node1"})
                    .rc == 0);
        fs::create_directories(dir.path() / "plugins");
        auto lib = dir.path() / "plugins" / "good.so";
        fs::copy_file(QR_CLI_PLUGIN, lib);
        REQUIRE(qreg(dir.path(), {"type", "add", "GoodType", lib.string(), "--store", store, "--node", "n1"}).rc == 0);
        {
            // A conflict record, so that conflicts show has one to read.
            REQUIRE(qreg(dir.path(),
                         {"hive", "set", "Software/SQL", "Port", "2000", "--type", "dword", "--hive", h.string()})
                        .rc == 0);
            quorumreg::hive local(h);
            quorumreg::directory_store ds(path);
            quorumreg::checkpoint_manager cp(local, ds, {.node = "node1"});
            cp.online("SQL");
            cp.offline("SQL");
        }
        auto conflicts =
            json::parse(qreg(dir.path(), {"checkpoint", "conflicts", "SQL", "--store", store, "--json"}).out);
        REQUIRE(conflicts.as_array().size() == 1);
        std::string conflict_id(conflicts.as_array()[0].at("id").as_string());
        {
            // A lease that expires unreaped (a read that reaps writes) and a torn tail (one that cuts writes).
            quorumreg::directory_store ds(path);
            auto lease = ds.grant_lease(std::chrono::milliseconds(50));
            ds.put("leased", "x", lease);
        }
        std::ofstream(path / "quorumreg.log", std::ios::app | std::ios::binary)
            << std::string("QRLG\x40\0\0\0torn", 12);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        auto files = [&] {
            std::map<std::string, std::string> out;
            for (const auto& root : {path, h})
                for (const auto& e : fs::recursive_directory_iterator(root))
                    if (e.is_regular_file()) out[e.path().string()] = slurp(e.path());
            return out;
        };
        auto before = files();
        std::vector<std::vector<std::string>> commands = {
            {"hive", "ls", "Software/SQL", "--hive", h.string()},
            {"hive", "get", "Software/SQL", "Port", "--hive", h.string()},
            {"hive", "export", "Software", "--hive", h.string()},
            {"checkpoint", "list", "--store", store},
            {"checkpoint", "list", "SQL", "--store", store},
            {"checkpoint", "history", "SQL", "Software/SQL", "--store", store},
            {"checkpoint", "conflicts", "SQL", "--store", store},
            {"checkpoint", "show", "SQL", "Software/SQL", "--store", store},
            {"checkpoint", "show", "SQL", "Software/SQL", "1", "--store", store},
            {"checkpoint", "diff", "SQL", "Software/SQL", "1", "1", "--store", store},
            {"checkpoint", "policy", "SQL", "--store", store},
            {"checkpoint", "conflicts", "SQL", "show", conflict_id, "--store", store},
            {"checkpoint", "conflicts", "SQL", "show", conflict_id, "--store", store, "--json"},
            {"type", "list", "--store", store},
            {"resource", "list", "--store", store},
            {"resource", "status", "SQL", "--store", store},
            {"store", "identity", "--store", store}};
        for (const auto& cmd : commands) {
            auto r = qreg(dir.path(), cmd);
            CHECK_MESSAGE(r.rc == 0, cmd[0] << " " << cmd[1] << ": " << r.err);
            CHECK_MESSAGE(files() == before, cmd[0] << " " << cmd[1] << " changed a file");
        }
        // The same commands on a copy that the user running them cannot write (as root: run as
        // nobody, uid 65534): the same output, and still no file changes.
        // In the system's temp directory, with its own copy of qreg: the build tree may lie under
        // a directory that user cannot enter.
        auto tmpl = (fs::temp_directory_path() / "qreg-ro-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        const fs::path ro = tmpl;
        struct remove_at_end {
            fs::path p;
            ~remove_at_end() {
                std::error_code ec;
                fs::remove_all(p, ec);
            }
        } ro_cleanup{ro};
        fs::permissions(ro, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
        const auto exe = (ro / "qreg").string();
        fs::copy_file(QR_QREG_EXE, exe);
        fs::permissions(exe, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
        fs::copy(path, ro / "quorum", fs::copy_options::recursive);
        fs::copy(h, ro / "node1", fs::copy_options::recursive);
        auto ro_files = [&] {
            std::map<std::string, std::string> out;
            for (const auto& e : fs::recursive_directory_iterator(ro))
                if (e.is_regular_file() && e.path().filename().string().rfind(".qreg.", 0) != 0)
                    out[e.path().string()] = slurp(e.path());
            return out;
        };
        for (const auto& root : {ro / "quorum", ro / "node1"}) {
            for (const auto& e : fs::recursive_directory_iterator(root))
                fs::permissions(e.path(), e.is_directory() ? fs::perms::owner_read | fs::perms::owner_exec |
                                                                 fs::perms::others_read | fs::perms::others_exec
                                                           : fs::perms::owner_read | fs::perms::others_read);
            fs::permissions(root, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read |
                                      fs::perms::others_exec);
        }
        auto ro_before = ro_files();
        auto relocate = [&](std::string arg) {
            for (const auto& [from, to] :
                 {std::pair{path.string(), (ro / "quorum").string()}, std::pair{h.string(), (ro / "node1").string()}})
                if (auto at = arg.find(from); at != std::string::npos) arg.replace(at, from.size(), to);
            return arg;
        };
        const unsigned unprivileged = ::geteuid() == 0 ? 65534 : ::geteuid();
        for (const auto& cmd : commands) {
            std::vector<std::string> moved;
            for (const auto& arg : cmd)
                moved.push_back(relocate(arg));
            auto mine = qreg(dir.path(), cmd);
            auto theirs = qreg(ro, moved, unprivileged, exe);
            CHECK_MESSAGE(theirs.rc == 0, cmd[0] << " " << cmd[1] << " on a read-only copy: " << theirs.err);
            CHECK_MESSAGE(theirs.out == mine.out, cmd[0] << " " << cmd[1]); // no output names a path
            CHECK_MESSAGE(ro_files() == ro_before, cmd[0] << " " << cmd[1] << " changed a file of the copy");
        }
        // A writing command on the copy fails with a reason and changes nothing.
        auto w = qreg(
            ro, {"checkpoint", "restore", "SQL", "Software/SQL", "1", "--store", "dir:" + (ro / "quorum").string()},
            unprivileged, exe);
        CHECK(w.rc != 0);
        CHECK(has(w.err, "qreg: "));
        CHECK(ro_files() == ro_before);

        // A writing command still cuts the torn tail and reaps the lease: the files do change.
        CHECK(qreg(dir.path(), {"checkpoint", "restore", "SQL", "Software/SQL", "1", "--store", store}).rc == 0);
        CHECK(files() != before);
    }

    TEST_CASE("cli: a byte flipped mid-log makes every command fail as corrupt and the log is unchanged") {
        qr_test::temp_dir dir("cli");
        auto path = dir.path() / "quorum";
        auto store = "dir:" + path.string();
        auto h = (dir.path() / "node1").string();
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        REQUIRE(qreg(dir.path(), {"hive", "set", "Software/SQL", "Port", "1433", "--type", "dword", "--hive", h}).rc ==
                0);
        for (std::string res : {"SQL", "Web", "Mail"}) // overlapping subtrees are refused across resources
            REQUIRE(qreg(dir.path(), {"checkpoint", "add", res, "Software/" + res, "--store", store, "--hive", h}).rc ==
                    0);
        auto log = path / "quorumreg.log";
        auto bytes = slurp(log);
        REQUIRE(bytes.size() > 200);
        bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x20);
        write_file(log, bytes);
        for (std::vector<std::string> cmd : {std::vector<std::string>{"resource", "status", "SQL"},
                                             {"checkpoint", "list"},
                                             {"checkpoint", "restore", "SQL", "Software/SQL", "1"}}) {
            cmd.insert(cmd.end(), {"--store", store});
            auto r = qreg(dir.path(), cmd);
            CHECK_MESSAGE(r.rc == 1, cmd[0] << " " << cmd[1] << ": " << r.err);
            CHECK_MESSAGE(has(r.err, "offset"), r.err);
            CHECK(slurp(log) == bytes);
        }
    }

    TEST_CASE("cli: resource types: add, list, verify per node, remove") {
        qr_test::temp_dir dir("cli");
        auto store = "dir:" + (dir.path() / "quorum").string();
        REQUIRE(qreg(dir.path(), {"store", "init", "--store", store}).rc == 0);
        fs::create_directories(dir.path() / "plugins");
        auto lib = dir.path() / "plugins" / "good.so";
        fs::copy_file(QR_CLI_PLUGIN, lib);

        auto r = qreg(dir.path(), {"type", "add", "GoodType", lib.string(), "--store", store, "--node", "n1"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "registered GoodType"));
        r = qreg(dir.path(), {"type", "add", "GoodType", lib.string(), "--store", store, "--node", "n1"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "GoodType"));
        r = qreg(dir.path(), {"type", "add", "Other", lib.string(), "--store", store, "--plugin-dir",
                              (dir.path() / "elsewhere").string()});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "Other"));
        r = qreg(dir.path(), {"type", "list", "--store", store, "--json"});
        auto arr = json::parse(r.out).as_array();
        REQUIRE(arr.size() == 1);
        CHECK(arr[0].at("library").as_string() == lib.string());

        r = qreg(dir.path(), {"type", "verify", "goodtype", "--store", store, "--node", "n2"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "n1"));
        CHECK(has(r.out, "n2"));
        // The library changes on disk on node n3: verification names the mismatch, exit 5.
        { std::ofstream(lib, std::ios::app) << "tampered"; }
        r = qreg(dir.path(), {"type", "verify", "GoodType", "--store", store, "--node", "n3", "--json"});
        CHECK(r.rc == 5);
        bool n3_bad = false;
        auto report = json::parse(r.out);
        for (auto& v : report.as_array())
            if (v.at("node").as_string() == "n3") n3_bad = !v.at("ok").as_bool();
        CHECK(n3_bad);
        // The table fits an 80-column terminal, long paths and SHA-256 mismatch messages included;
        // the reasons follow it, wrapped.
        fs::remove(lib);
        r = qreg(dir.path(), {"type", "verify", "GoodType", "--store", store, "--node", "n4"});
        CHECK(r.rc == 5);
        CHECK(has(r.out, "n3    sha mismatch"));
        CHECK(has(r.out, "n4    missing"));
        {
            // Joined back as it was before wrapping (a long build path moves words to the next line).
            std::string unwrapped = r.out;
            for (std::size_t at; (at = unwrapped.find("\n    ")) != std::string::npos;)
                unwrapped.replace(at, 5, " ");
            CHECK_MESSAGE(has(unwrapped, "n4: \"" + lib.string() + "\" does not exist\n"), r.out);
        }
        {
            std::istringstream lines(r.out);
            for (std::string line; std::getline(lines, line);)
                // Only a word longer than a line (a long path) may overflow, alone on its line.
                CHECK_MESSAGE((line.size() <= 80 || line.find(' ', line.find_first_not_of(' ')) == std::string::npos),
                              line);
        }
        // A missing library is named once, with its path (not "missing: missing").
        r = qreg(dir.path(), {"type", "add", "Gone", lib.string(), "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "\"" + lib.string() + "\" does not exist: resource library is missing"));
        fs::copy_file(QR_CLI_PLUGIN, lib);

        CHECK(qreg(dir.path(), {"type", "remove", "GoodType", "--store", store}).rc == 0);
        r = qreg(dir.path(), {"type", "remove", "GoodType", "--store", store});
        CHECK(r.rc == 3);
        CHECK(has(r.err, "GoodType"));
        CHECK(qreg(dir.path(), {"type", "verify", "GoodType", "--store", store}).rc == 3);
    }

    TEST_CASE("cli: dependency graph check and DOT") {
        qr_test::temp_dir dir("cli");
        write_file(dir.path() / "ok.graph",
                   "# services\nname_mapping -> cluster\nweb -> (db_primary | db_replica)\nbackup after web\nlonely\n");
        auto r = qreg(dir.path(), {"graph", "check", "ok.graph"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "no cycle: 7 services"));
        r = qreg(dir.path(), {"graph", "check", "ok.graph", "--json"});
        auto check = json::parse(r.out);
        CHECK(check.at("ok").as_bool());
        CHECK(check.at("start_waves").as_array().at(0).as_array().size() == 4);
        r = qreg(dir.path(), {"graph", "--dot", "ok.graph"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "digraph"));
        CHECK(has(r.out, "db_replica"));
        CHECK(qreg(dir.path(), {"graph", "--dot", "ok.graph", "--output", "ok.dot"}).rc == 0);
        CHECK(has(slurp(dir.path() / "ok.dot"), "digraph"));

        write_file(dir.path() / "cycle.graph", "a -> b\nb -> (c | d)\nc -> a\n");
        r = qreg(dir.path(), {"graph", "check", "cycle.graph"});
        CHECK(r.rc == 5);
        CHECK(has(r.out, "cycle: c -> a -> b -> c"));
        CHECK(has(r.err, "cycle.graph:3"));
        CHECK(qreg(dir.path(), {"graph", "--dot", "cycle.graph"}).rc == 5);

        write_file(dir.path() / "bad.graph", "a -> (b | )\n");
        r = qreg(dir.path(), {"graph", "check", "bad.graph"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "bad.graph:1"));
        CHECK(qreg(dir.path(), {"graph", "check", "missing.graph"}).rc == 3);
        // A directory is not a graph with no services (an ifstream reads it as empty).
        r = qreg(dir.path(), {"graph", "check", "."});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "is not a graph file (a directory)"));
        CHECK_FALSE(has(r.out, "no cycle"));
        CHECK(qreg(dir.path(), {"graph", "explode"}).rc == 2);
    }
}
