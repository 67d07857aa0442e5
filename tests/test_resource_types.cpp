// Resource type registry: registrations live in the quorum store, validated at registration.
#include <quorumreg/resource_types.hpp>
#include "test_support.hpp"

#include <quorumreg/detail/monitor_sha256.hpp>
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <map>

#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

namespace fs = std::filesystem;
using quorumreg::errc;

// Helpers shared with test_resource_monitor.cpp (same executable).
namespace qr_mon_test {

/// Registry options for tests: plugins allowed from the built plugin dir and `extra`.
quorumreg::resource_type_registry_options test_options(const fs::path& extra = {}) {
    quorumreg::resource_type_registry_options o;
    o.plugin_directories = {QR_TEST_PLUGIN_DIR};
    if (!extra.empty()) o.plugin_directories.push_back(extra);
    o.monitor_command = {QR_TEST_MONITOR_EXE};
    o.node_id = "node-a";
    o.probe_timeout = std::chrono::milliseconds(60000); // generous: loaded CI machines
    return o;
}

std::string plugin(const std::string& kind) { return std::string(QR_TEST_PLUGIN_DIR) + "/qr_plugin_" + kind + ".so"; }

quorumreg::resource_type_info type(const std::string& name, const std::string& lib) {
    quorumreg::resource_type_info t;
    t.name = name;
    t.library = lib;
    return t;
}

} // namespace qr_mon_test

using namespace qr_mon_test;

TEST_SUITE("resource_types") {

    TEST_CASE("register, look up (case-insensitively), list and unregister a type") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry reg(store, test_options());
        auto t = type("GoodType", plugin("good"));
        t.display_name = "Good test resource";
        t.looks_alive_interval = std::chrono::milliseconds(250);
        t.flags = quorumreg::separate_monitor;
        auto stored = reg.register_type(t);
        std::error_code hec;
        CHECK(stored.sha256 == quorumreg::detail::sha256_file(plugin("good"), hec));
        CHECK(stored.revision > 0);
        CHECK(stored.registered_by == "node-a");

        auto got = reg.lookup("goodtype");
        CHECK(got.name == "GoodType");
        CHECK(got.library == plugin("good"));
        CHECK(got.display_name == "Good test resource");
        CHECK(got.sha256 == stored.sha256);
        CHECK(got.looks_alive_interval == std::chrono::milliseconds(250));
        CHECK(got.is_alive_interval == std::chrono::milliseconds(60000));
        CHECK(got.flags == quorumreg::separate_monitor);
        // It is a record in the store, under the documented key.
        CHECK(store.get("cluster/resource_types/goodtype").has_value());

        CHECK(reg.list().size() == 1);
        CHECK(qr_test::code_of([&] { reg.register_type(type("GOODTYPE", plugin("good"))); }) == errc::already_exists);

        reg.unregister_type("GoodType");
        CHECK(reg.list().empty());
        std::error_code ec;
        reg.lookup("GoodType", ec);
        CHECK(ec == errc::not_found);
        CHECK(qr_test::code_of([&] { reg.unregister_type("GoodType"); }) == errc::not_found);
        // Verification records went with it, and a late one cannot bring the type back.
        CHECK(store.list("cluster/resource_type_nodes/").empty());
        CHECK(qr_test::code_of([&] { reg.record_verification(stored, {}, "late", stored.sha256); }) == errc::not_found);
        CHECK(store.list("cluster/").empty());
    }

    TEST_CASE("each bad plugin is rejected at registration with its own error, and nothing is stored") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry reg(store, test_options());
        std::error_code ec;

        reg.register_type(type("WrongType", plugin("wrongtype")), ec);
        CHECK(ec == errc::plugin_type_mismatch);
        reg.register_type(type("NoStartup", plugin("nostartup")), ec);
        CHECK(ec == errc::plugin_load_failed);
        reg.register_type(type("Missing", std::string(QR_TEST_PLUGIN_DIR) + "/qr_plugin_absent.so"), ec);
        CHECK(ec == errc::plugin_missing);

        qr_test::temp_dir outside("qr-outside");
        fs::copy_file(plugin("good"), outside.path() / "qr_plugin_good.so");
        reg.register_type(type("GoodType", (outside.path() / "qr_plugin_good.so").string()), ec);
        CHECK(ec == errc::plugin_not_allowed);
        // A symlink inside an allowed directory pointing outside is still outside.
        qr_test::temp_dir allowed("qr-allowed");
        quorumreg::resource_type_registry reg2(store, test_options(allowed.path()));
        fs::create_symlink(outside.path() / "qr_plugin_good.so", allowed.path() / "link.so");
        reg2.register_type(type("GoodType", (allowed.path() / "link.so").string()), ec);
        CHECK(ec == errc::plugin_not_allowed);

        // Not a shared library at all.
        { std::ofstream(allowed.path() / "junk.so") << "not an ELF file"; }
        reg2.register_type(type("Junk", (allowed.path() / "junk.so").string()), ec);
        CHECK(ec == errc::plugin_load_failed);

        // A library whose constructor crashes takes down only the throwaway probe.
        fs::copy_file(plugin("loadcrash"), allowed.path() / "loadcrash.so");
        { std::ofstream(allowed.path() / "loadcrash.so.crash") << ""; }
        reg2.register_type(type("LoadCrashType", (allowed.path() / "loadcrash.so").string()), ec);
        CHECK(ec == errc::plugin_load_failed);

        auto t = type("GoodType", plugin("good"));
        t.sha256 = std::string(64, '0');
        reg.register_type(t, ec);
        CHECK(ec == errc::plugin_hash_mismatch);

        reg.register_type(type("bad/name", plugin("good")), ec);
        CHECK(ec == errc::invalid_argument);
        reg.register_type(type("Rel", "qr_plugin_good.so"), ec);
        CHECK(ec == errc::invalid_argument);

        CHECK(store.list("cluster/").empty());

        // The throwing form names the operation, the type and the reason.
        try {
            reg.register_type(type("WrongType", plugin("wrongtype")));
            FAIL("expected an error");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::plugin_type_mismatch);
            CHECK(std::string(e.what()).find("register_type \"WrongType\"") != std::string::npos);
            CHECK(std::string(e.what()).find("does not implement resource type") != std::string::npos);
        }
    }

    TEST_CASE("the crash, hang and good plugins register (they load; they misbehave only later)") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry reg(store, test_options());
        CHECK_NOTHROW(reg.register_type(type("GoodType", plugin("good"))));
        CHECK_NOTHROW(reg.register_type(type("CrashType", plugin("crash"))));
        CHECK_NOTHROW(reg.register_type(type("HangType", plugin("hang"))));
        CHECK(reg.list().size() == 3);
    }

    TEST_CASE("a second registry on the same store sees the same registrations") {
        quorumreg::memory_store store;
        auto o1 = test_options();
        auto o2 = test_options();
        o2.node_id = "node-b";
        quorumreg::resource_type_registry node_a(store, o1), node_b(store, o2);
        node_a.register_type(type("GoodType", plugin("good")));
        auto seen = node_b.lookup("GOODTYPE");
        CHECK(seen.library == plugin("good"));
        CHECK(seen.registered_by == "node-a");
        node_b.unregister_type("goodtype");
        std::error_code ec;
        node_a.lookup("GoodType", ec);
        CHECK(ec == errc::not_found);
    }

    TEST_CASE("per-node verification report: which nodes have the library at the registered hash") {
        quorumreg::memory_store store;
        qr_test::temp_dir dir("qr-verify");
        auto lib = dir.path() / "qr_plugin_good.so";
        fs::copy_file(plugin("good"), lib);
        auto oa = test_options(dir.path());
        auto ob = test_options(dir.path());
        ob.node_id = "node-b";
        quorumreg::resource_type_registry a(store, oa), b(store, ob);
        a.register_type(type("GoodType", lib.string()));

        auto rep = a.verification_report("GoodType");
        REQUIRE(rep.size() == 1);
        CHECK(rep[0].node == "node-a");
        CHECK(rep[0].ok());

        auto vb = b.verify_on_this_node("GoodType");
        CHECK(vb.ok());
        // Node b's copy changes: its check reports the mismatch, a's stays good.
        fs::remove(lib);
        fs::copy_file(plugin("crash"), lib);
        vb = b.verify_on_this_node("GoodType");
        CHECK(vb.result == errc::plugin_hash_mismatch);
        CHECK(!vb.observed_sha256.empty());
        fs::remove(lib);
        auto va = a.verify_on_this_node("GoodType");
        CHECK(va.result == errc::plugin_missing);

        rep = a.verification_report("GoodType");
        REQUIRE(rep.size() == 2);
        std::map<std::string, quorumreg::node_verification> by;
        for (auto& v : rep)
            by[v.node] = v;
        CHECK(by["node-a"].result == errc::plugin_missing);
        CHECK(by["node-b"].result == errc::plugin_hash_mismatch);
        CHECK(!by["node-b"].ok());
    }

    // Issue 16, item 11: the monitor protocol carries a library path in a bounded frame field;
    // a longer path used to be clipped there silently, so the monitor loaded another path than
    // the one registered. Registration now refuses it, and so does decoding a record.
    TEST_CASE("a library path over max_library_path_bytes is refused at registration, not clipped later") {
        quorumreg::memory_store store;
        qr_test::temp_dir allowed("qr-longpath");
        quorumreg::resource_type_registry reg(store, test_options(allowed.path()));
        fs::path dir = allowed.path();
        while (dir.string().size() <= quorumreg::max_library_path_bytes + 300)
            dir /= std::string(200, 'd');
        fs::create_directories(dir);
        fs::copy_file(plugin("good"), dir / "qr_plugin_good.so");
        auto lib = (dir / "qr_plugin_good.so").string();
        REQUIRE(lib.size() > 1300); // longer than the frame field that used to clip it
        std::error_code ec;
        reg.register_type(type("LongPath", lib), ec);
        CHECK(ec == errc::invalid_argument);
        CHECK(store.list("cluster/").empty());

        // A path of exactly the limit is fine as far as length goes.
        auto t = reg.register_type(type("GoodType", plugin("good")));
        auto at_limit = t;
        at_limit.library = "/" + std::string(quorumreg::max_library_path_bytes - 1, 'p');
        std::error_code dec;
        (void)quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(at_limit), dec);
        CHECK_FALSE(dec);
        // One byte more: a record register_type() cannot have written.
        auto over = t;
        over.library = "/" + std::string(quorumreg::max_library_path_bytes, 'p');
        (void)quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(over), dec);
        CHECK(dec == errc::corrupt_data);
    }

    TEST_CASE("a corrupt registration record is reported, not misread") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry reg(store, test_options());
        auto t = reg.register_type(type("GoodType", plugin("good")));
        auto bytes = store.get("cluster/resource_types/goodtype")->value;
        bytes[10] = static_cast<char>(bytes[10] ^ 0x40);
        store.put("cluster/resource_types/goodtype", bytes);
        std::error_code ec;
        reg.lookup("GoodType", ec);
        CHECK(ec == errc::corrupt_data);
        // Encoding round-trips exactly.
        std::error_code dec;
        auto back = quorumreg::resource_type_registry::decode(quorumreg::resource_type_registry::encode(t), dec);
        CHECK(!dec);
        CHECK(back.name == t.name);
        CHECK(back.sha256 == t.sha256);
        CHECK(back.deadlock_timeout == t.deadlock_timeout);
    }

    TEST_CASE("store failures surface as the store's error and leave nothing half-written") {
        quorumreg::memory_store store;
        quorumreg::resource_type_registry reg(store, test_options());
        store.fail_next(1, errc::quorum_unavailable);
        std::error_code ec;
        reg.register_type(type("GoodType", plugin("good")), ec);
        CHECK(ec == errc::quorum_unavailable);
        CHECK(store.list("cluster/").empty());
        reg.register_type(type("GoodType", plugin("good")));
        store.fail_next(1, errc::quorum_unavailable);
        reg.lookup("GoodType", ec);
        CHECK(ec == errc::quorum_unavailable);
        CHECK(reg.lookup("GoodType").name == "GoodType");
    }

    // Run only as a child process by the next test (skipped in normal runs).
    TEST_CASE("child process: registers a type in a shared directory store" * doctest::skip()) {
        const char* dir = std::getenv("QR_MON_CHILD_STORE");
        REQUIRE(dir != nullptr);
        quorumreg::directory_store store(dir);
        auto o = test_options();
        o.node_id = "node-child";
        quorumreg::resource_type_registry reg(store, o);
        CHECK(reg.lookup("HangType").registered_by == "node-parent"); // the parent's registration
        reg.register_type(type("GoodType", plugin("good")));
    }

    TEST_CASE("a separate process sees and adds registrations through a shared directory store") {
        qr_test::temp_dir dir("qr-types-dirstore");
        auto o = test_options();
        o.node_id = "node-parent";
        {
            quorumreg::directory_store_options create;
            create.create = true;
            quorumreg::directory_store store(dir.path(), create);
            quorumreg::resource_type_registry reg(store, o);
            reg.register_type(type("HangType", plugin("hang")));
        }
        std::vector<std::string> args = {"/proc/self/exe", "--no-skip", "--no-version",
                                         "--test-case=child process: registers a type in a shared directory store"};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        std::vector<std::string> env_strings = {"QR_MON_CHILD_STORE=" + dir.str()};
        for (char** e = environ; *e; ++e)
            if (std::string_view(*e).rfind("QR_MON_CHILD_STORE=", 0) != 0) env_strings.emplace_back(*e);
        std::vector<char*> envp;
        for (auto& e : env_strings)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        pid_t pid = -1;
        REQUIRE(::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) == 0);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);

        quorumreg::directory_store store(dir.path());
        quorumreg::resource_type_registry reg(store, o);
        auto t = reg.lookup("goodtype");
        CHECK(t.registered_by == "node-child");
        CHECK(t.library == plugin("good"));
        CHECK(reg.list().size() == 2);
    }

} // TEST_SUITE
