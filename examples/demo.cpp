// The quorumreg demo: the three Microsoft KB failures, made impossible, on three node processes.
//
//   quorumreg_demo [--store dir|etcd]
//
// --store dir (default): the nodes share a quorum directory in a temporary folder.
// --store etcd: the demo starts a 3-member etcd cluster on 127.0.0.1 and stops it at the end.
//
// Every node is this program re-executed (`quorumreg_demo --node ...`) with its own local hive,
// so "node1 was killed" really is a process killed with SIGKILL. Every step prints what it did,
// how long it took and whether the outcome it claims was checked; the exit code is 0 only if
// every check held.
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/cluster_writer.hpp>
#include <quorumreg/resource_monitor.hpp>
#include <quorumreg/resource_types.hpp>
#include <quorumreg/service_controller.hpp>
#include <quorumreg/stores/open_store.hpp>

#include <quorumreg_support/etcd_cluster.hpp>
#include <quorumreg_support/child_process.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace qr = quorumreg;

namespace {

// ---- node side: one command per process ------------------------------------------------------

constexpr const char* sql = "SQL";                       // the failover resource of scenario 1
constexpr const char* sql_keys = "Software/Contoso/SQL"; // its checkpointed subtree
constexpr auto lease = 1500ms;                           // short, so failover is quick to watch

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

qr::checkpoint_manager_options cp_options(const std::string& node) {
    qr::checkpoint_manager_options o;
    o.node = node;
    o.lease_ttl = lease;
    return o;
}

qr::resource_type_registry_options type_options(const std::string& node, const std::string& plugin) {
    qr::resource_type_registry_options o;
    o.plugin_directories = {fs::path(plugin).parent_path()};
    o.node_id = node;
    o.monitor_command = {"/proc/self/exe"}; // this program hosts monitors (run_monitor_if_requested)
    return o;
}

/// quorumreg_demo --node STORE HIVE NODE COMMAND [ARGS...]
int run_node(const std::string& spec, const fs::path& hive_dir, const std::string& node,
             const std::vector<std::string>& args) {
    auto store = qr::open_store(spec, 5s);
    qr::hive local(hive_dir);
    const std::string& cmd = args.at(0);

    if (cmd == "cp-hold") { // own SQL, set Port, make it durable, then wait to be killed
        qr::checkpoint_manager cp(local, *store, cp_options(node));
        std::error_code ec;
        cp.add_checkpoint(sql, sql_keys, ec); // already registered on a later run: fine
        if (ec && ec != qr::errc::already_exists) throw qr::error(ec, "add_checkpoint");
        cp.online(sql, {.wait_for_owner = 60s});
        local.set_value(sql_keys, "Port", qr::value::dword(static_cast<std::uint32_t>(std::stoul(args.at(1)))));
        cp.flush(sql);
        say("ready");
        while (true)
            std::this_thread::sleep_for(1s);
    }
    if (cmd == "cp-run") { // bring SQL online here, report, optionally set Port, take it offline
        qr::checkpoint_manager cp(local, *store, cp_options(node));
        auto t0 = std::chrono::steady_clock::now();
        auto rep = cp.online(sql, {.policy = qr::offline_edit_policy::preserve, .wait_for_owner = 60s});
        say("online_ms=" +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()));
        say("Port=" + std::to_string(local.get_value(sql_keys, "Port").as_dword()));
        say("conflicts=" + std::to_string(rep.conflicts.size()));
        for (auto& c : rep.conflicts) { // read the preserved copy back: nothing was dropped
            qr::registry kept;
            kept.import_subtree(sql_keys, cp.conflict_content(sql, c.id));
            say("conflict_port=" + std::to_string(kept.get_value(sql_keys, "Port").as_dword()));
        }
        if (args.size() > 1) {
            local.set_value(sql_keys, "Port", qr::value::dword(static_cast<std::uint32_t>(std::stoul(args[1]))));
            cp.flush(sql);
        }
        cp.offline(sql);
        return 0;
    }
    if (cmd == "cp-restore-previous") { // roll the latest generation back to the one before it
        qr::checkpoint_manager cp(local, *store, cp_options(node));
        auto h = cp.history(sql, sql_keys);
        if (h.size() < 2) throw std::runtime_error("no previous generation to restore");
        auto& prev = h[h.size() - 2];
        cp.restore(sql, sql_keys, prev.generation);
        say("restored=" + std::to_string(prev.generation));
        say("latest=" + std::to_string(h.back().generation) + " by " + h.back().writer);
        return 0;
    }
    if (cmd == "names") { // name_mapping USER UID ALL: a name-mapping service that starts first
        const std::string user = args.at(1), uid = args.at(2);
        std::vector<std::string> everyone;
        for (std::size_t p = 0, q; p <= args.at(3).size(); p = q + 1) {
            q = args[3].find(',', p);
            if (q == std::string::npos) q = args[3].size();
            everyone.push_back(args[3].substr(p, q - p));
        }
        qr::cluster_writer names(local, {.node = node});
        qr::service_controller ctl({.threads = 2});
        auto t0 = std::chrono::steady_clock::now();
        auto sub = ctl.observe([&](const qr::service_event& e) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
            say("event=" + std::to_string(ms.count()) + "ms " + e.service + " " + std::string(qr::to_string(e.to)));
            if (e.service == "name_mapping" && e.to == qr::service_state::online)
                say(std::string("mapping_first=") +
                    (ctl.state("cluster") == qr::service_state::offline ? "yes" : "no"));
        });
        qr::service_definition mapping;
        mapping.start = [&] {
            names.put("name_mapping/" + user, uid); // the pre-init write of Q320331
            say("journaled=" + std::to_string(names.pending().size()));
        };
        mapping.options.writes = qr::replicated_writes::journaled;
        ctl.add_service("name_mapping", mapping);
        ctl.add_service("cluster", {.start = [&] { names.attach(*store); }, .stop = [&] { names.detach(); }});
        ctl.set_replication_service("cluster");
        ctl.start("name_mapping"); // before the cluster service, as in the KB article
        ctl.start("cluster");      // replays the journal
        say("pending=" + std::to_string(names.pending().size()));
        auto deadline = std::chrono::steady_clock::now() + 90s;
        std::size_t seen = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            seen = 0;
            for (auto& u : everyone)
                seen += names.get("name_mapping/" + u).has_value();
            if (seen == everyone.size()) break;
            std::this_thread::sleep_for(20ms);
        }
        for (auto& u : everyone)
            say("sees=" + u + ":" + names.get("name_mapping/" + u).value_or("(missing)"));
        say("seen=" + std::to_string(seen));
        say("conflicts=" + std::to_string(names.conflicts().size()));
        ctl.stop("cluster");
        return 0;
    }
    if (cmd == "type-register") { // PLUGIN
        qr::resource_type_registry types(*store, type_options(node, args.at(1)));
        qr::resource_type_info t;
        t.name = "Contoso.Cache";
        t.library = args[1];
        auto stored = types.register_type(t);
        say("sha256=" + stored.sha256);
        return 0;
    }
    if (cmd == "type-verify") { // PLUGIN
        qr::resource_type_registry types(*store, type_options(node, args.at(1)));
        auto v = types.verify_on_this_node("Contoso.Cache");
        say("verified=" + std::string(v.ok() ? "ok" : v.message));
        return 0;
    }
    if (cmd == "type-report") { // PLUGIN
        qr::resource_type_registry types(*store, type_options(node, args.at(1)));
        std::size_t ok = 0;
        for (auto& v : types.verification_report("Contoso.Cache")) {
            say("node=" + v.node + " " + (v.ok() ? "ok" : v.message));
            ok += v.ok();
        }
        say("nodes_ok=" + std::to_string(ok));
        return 0;
    }
    if (cmd == "host-cache") { // PLUGIN DIR: host cache1, survive the monitor being killed
        qr::resource_type_registry types(*store, type_options(node, args.at(1)));
        qr::monitor_controller_options mo;
        mo.monitor_command = {"/proc/self/exe"};
        mo.heartbeat_timeout = 10s; // a loaded machine is not a crash
        qr::monitor_controller ctl(types, mo);
        ctl.add_resource({"cache1", "Contoso.Cache", args.at(2)});
        ctl.online("cache1");
        if (!ctl.wait_for("cache1", qr::resource_state::online, 90s))
            throw std::runtime_error("cache1 did not come online");
        int first = ctl.status("cache1").monitor_pid;
        say("monitor_pid=" + std::to_string(first));
        bool back = ctl.wait_until(
            "cache1",
            [&](const qr::resource_status& s) {
                return s.recoveries >= 1 && s.state == qr::resource_state::online && s.monitor_pid != first;
            },
            120s);
        auto s = ctl.status("cache1");
        say("recovered=" + std::string(back ? "yes" : "no"));
        say("type=" + s.type);
        say("library=" + s.library);
        say("last_failure=" + s.last_failure_reason);
        say("new_monitor_pid=" + std::to_string(s.monitor_pid));
        ctl.offline("cache1");
        ctl.wait_for("cache1", qr::resource_state::offline, 60s);
        return 0;
    }
    throw std::runtime_error("unknown node command \"" + cmd + "\"");
}

// ---- the narrator: runs the nodes and checks every outcome ---------------------------------

class narrator {
public:
    explicit narrator(std::string spec, fs::path root) : spec_(std::move(spec)), root_(std::move(root)) {}

    /// Starts `node` running `args` as a separate process.
    std::unique_ptr<qr_support::child_process> start(const std::string& node, std::vector<std::string> args) {
        std::vector<std::string> argv{qr_support::self_exe(), "--node", spec_, (root_ / node).string(), node};
        argv.insert(argv.end(), args.begin(), args.end());
        return std::make_unique<qr_support::child_process>(argv);
    }
    /// Runs `node` to completion; a failed node is a failed check.
    std::unique_ptr<qr_support::child_process> run(const std::string& node, std::vector<std::string> args) {
        auto p = start(node, std::move(args));
        int rc = p->finish(180s);
        check(rc == 0, node + " finished its command (exit code " + std::to_string(rc) + ")", true);
        return p;
    }

    void scenario(const char* title) {
        std::printf("\n%s\n", title);
        std::fflush(stdout);
    }
    /// Narrates a step, with the time since the previous one.
    void step(const std::string& what) {
        auto now = std::chrono::steady_clock::now();
        std::printf("  %7.2f s  %s\n", std::chrono::duration<double>(now - last_).count(), what.c_str());
        std::fflush(stdout);
        last_ = now;
    }
    /// An outcome the demo claims: checked, and counted if it did not hold.
    bool check(bool ok, const std::string& what, bool quiet_if_ok = false) {
        ++checks_;
        if (!ok) ++failures_;
        if (!ok || !quiet_if_ok) {
            std::printf("             [%s] %s\n", ok ? " ok " : "FAIL", what.c_str());
            std::fflush(stdout);
        }
        return ok;
    }
    int failures() const noexcept { return failures_; }
    int checks() const noexcept { return checks_; }
    const fs::path& root() const noexcept { return root_; }

private:
    std::string spec_;
    fs::path root_;
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
    int checks_ = 0, failures_ = 0;
};

std::string get(const qr_support::child_process& p, const std::string& name) { return p.value_of(name).value_or("?"); }

void checkpoint_failover(narrator& n) {
    n.scenario("1. Q174070: checkpointed registry keys follow a resource from node to node");
    auto a = n.start("node1", {"cp-hold", "1433"});
    bool ready = a->wait_for("ready", 120s).has_value();
    n.step("node1 registered checkpoint SQL -> " + std::string(sql_keys) +
           ", brought SQL online, set Port=1433, flushed");
    n.check(ready, "node1 reports the change durable in the quorum store");
    a->kill(SIGKILL);
    a->finish(30s);
    n.step("node1 killed with kill -9 while it owned SQL (no clean shutdown, no final checkpoint)");

    auto b = n.run("node2", {"cp-run", "1434"});
    n.step("node2 took SQL over once node1's " + std::to_string(lease.count()) + " ms lease expired (online in " +
           get(*b, "online_ms") + " ms), then set Port=1434");
    n.check(get(*b, "Port") == "1433",
            "node2 restored Port=1433, node1's last flushed value (read " + get(*b, "Port") + ")");

    {
        qr::hive node1(n.root() / "node1"); // an administrator edits node1's registry while SQL is elsewhere
        node1.set_value(sql_keys, "Port", qr::value::dword(9999));
    }
    n.step("an administrator set Port=9999 in node1's local registry while SQL was offline there");
    auto c = n.run("node1", {"cp-run"});
    n.step("node1 brought SQL online again (policy: preserve)");
    n.check(get(*c, "Port") == "1434", "node1 runs with the cluster's Port=1434 (read " + get(*c, "Port") + ")");
    n.check(get(*c, "conflicts") == "1" && get(*c, "conflict_port") == "9999",
            "the offline edit Port=9999 was kept as a conflict record, not dropped (conflicts=" + get(*c, "conflicts") +
                ", kept Port=" + get(*c, "conflict_port") + ")");

    n.run("node3", {"cp-run", "0"});
    n.step("node3 brought SQL online and made a bad edit: Port=0, checkpointed as a new generation");
    auto r = n.run("node3", {"cp-restore-previous"});
    n.step("node3 restored the generation before the bad edit (generation " + get(*r, "restored") + ")");
    auto d = n.run("node2", {"cp-run"});
    n.step("node2 brought SQL online");
    n.check(get(*d, "Port") == "1434",
            "the bad edit is rolled back on every node: node2 reads Port=" + get(*d, "Port"));
}

void start_order(narrator& n) {
    n.scenario(
        "2. Q320331: a name-mapping service starts before the cluster service; its writes still reach every node");
    const std::vector<std::pair<std::string, std::string>> users{{"alice", "1000"}, {"bob", "1001"}, {"carol", "1002"}};
    std::vector<std::unique_ptr<qr_support::child_process>> nodes;
    for (std::size_t i = 0; i < users.size(); ++i)
        nodes.push_back(
            n.start("node" + std::to_string(i + 1), {"names", users[i].first, users[i].second, "alice,bob,carol"}));
    n.step("started name_mapping then cluster on node1, node2 and node3 at the same time");
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        auto& p = *nodes[i];
        int rc = p.finish(180s);
        std::string node = "node" + std::to_string(i + 1);
        n.step(node + ": name_mapping wrote " + users[i].first + "=" + users[i].second +
               " before the cluster service was up (journaled: " + get(p, "journaled") + " write)");
        n.check(get(p, "mapping_first") == "yes",
                node + ": name_mapping was online while the cluster service was still offline");
        n.check(rc == 0 && get(p, "journaled") == "1" && get(p, "pending") == "0",
                node + ": the journal was replayed when the cluster service came online (pending now " +
                    get(p, "pending") + ")");
        n.check(get(p, "seen") == "3" && get(p, "conflicts") == "0",
                node + " sees all three mappings (" + get(p, "seen") + " of 3), no conflicts");
    }
}

void resource_dll_tracking(narrator& n, const std::string& plugin) {
    n.scenario("3. Q242398: a resource monitor is killed; the resource type and its plugin are not forgotten");
    auto r = n.run("node1", {"type-register", plugin});
    n.step("node1 registered type Contoso.Cache -> " + plugin + " (sha256 " + get(*r, "sha256").substr(0, 12) + "...)");
    for (const char* node : {"node2", "node3"}) {
        auto v = n.run(node, {"type-verify", plugin});
        n.step(std::string(node) + " verified its copy of the plugin against the registered hash");
        n.check(get(*v, "verified") == "ok", std::string(node) + ": " + get(*v, "verified"));
    }
    fs::create_directories(n.root() / "cache");
    auto h = n.start("node1", {"host-cache", plugin, (n.root() / "cache").string()});
    auto pid = h->wait_for("monitor_pid=", 120s);
    n.step("node1 brought resource cache1 (type Contoso.Cache) online in a monitor process, pid " + pid.value_or("?"));
    if (n.check(pid && std::stoi(*pid) > 0, "cache1 is online in its monitor")) {
        ::kill(std::stoi(*pid), SIGKILL);
        n.step("killed the monitor with kill -9");
    }
    int rc = h->finish(180s);
    n.step("node1's controller re-resolved the type from the store and re-hosted cache1 in monitor pid " +
           get(*h, "new_monitor_pid"));
    n.check(rc == 0 && get(*h, "recovered") == "yes", "cache1 is online again after the crash");
    n.check(get(*h, "type") == "Contoso.Cache" && get(*h, "library") == plugin,
            "its type is still Contoso.Cache, implemented by " + get(*h, "library"));
    n.step("reason recorded: " + get(*h, "last_failure"));
    auto rep = n.run("node3", {"type-report", plugin});
    n.step("per-node report of the plugin read from the store by node3");
    n.check(get(*rep, "nodes_ok") == "3",
            "all three nodes hold the registered plugin (" + get(*rep, "nodes_ok") + " of 3)");
}

int usage(FILE* to) {
    std::fputs("usage: quorumreg_demo [--store dir|etcd]\n"
               "  Runs the three KB scenarios (Q174070, Q320331, Q242398) on three node processes.\n"
               "  --store dir   nodes share a quorum directory in a temporary folder (default)\n"
               "  --store etcd  starts a 3-member etcd cluster on 127.0.0.1 (needs /usr/bin/etcd)\n"
               "Exit code 0 only if every outcome was checked and held; 1 if one did not; 2 on bad usage.\n",
               to);
    return to == stdout ? 0 : 2;
}

} // namespace

int main(int argc, char** argv) {
    if (auto rc = qr::run_monitor_if_requested(argc, argv)) return *rc; // we host our own monitors
    if (argc >= 2 && std::strcmp(argv[1], "--node") == 0) {
        if (argc < 6) return 2;
        try {
            return run_node(argv[2], argv[3], argv[4], std::vector<std::string>(argv + 5, argv + argc));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: %s\n", argv[4], e.what());
            return 1;
        }
    }
    std::string store = "dir";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") return usage(stdout);
        if (a == "--store" && i + 1 < argc)
            store = argv[++i];
        else if (a.rfind("--store=", 0) == 0)
            store = a.substr(8);
        else {
            std::fprintf(stderr, "quorumreg_demo: unknown argument \"%s\"\n", a.c_str());
            return usage(stderr);
        }
    }
    if (store != "dir" && store != "etcd") {
        std::fprintf(stderr, "quorumreg_demo: --store must be dir or etcd, not \"%s\"\n", store.c_str());
        return usage(stderr);
    }
    try {
        auto t0 = std::chrono::steady_clock::now();
        qr_support::temp_folder tmp("quorumreg-demo");
        std::optional<qr_support::etcd_cluster> etcd;
        std::string spec;
        if (store == "dir") {
            spec = "dir:" + (tmp.path() / "quorum").string();
            qr::create_store(spec); // the node processes open it; opens never create a store
            std::printf("quorumreg demo: three node processes sharing the quorum directory %s\n",
                        (tmp.path() / "quorum").c_str());
        } else {
            std::printf("quorumreg demo: starting a 3-member etcd cluster on 127.0.0.1 ...\n");
            std::fflush(stdout);
            etcd.emplace(3, std::nullopt, std::chrono::seconds(60), tmp.path());
            spec = "etcd:";
            for (auto& u : etcd->client_urls())
                spec += (spec.size() > 5 ? "," : "") + u;
            std::printf("quorumreg demo: three node processes using etcd at %s (ready in %.2f s)\n", spec.c_str() + 5,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        narrator n(spec, tmp.path());
        checkpoint_failover(n);
        start_order(n);
        resource_dll_tracking(n, QUORUMREG_EXAMPLE_PLUGIN);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (n.failures()) {
            std::printf("\ndemo FAILED: %d of %d checks did not hold (%.1f s)\n", n.failures(), n.checks(), secs);
            return 1;
        }
        std::printf("\ndemo passed: all %d outcomes checked and held (%.1f s)%s\n", n.checks(), secs,
                    etcd ? "; stopping the etcd cluster" : "");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quorumreg_demo: %s\n", e.what());
        std::printf("\ndemo FAILED: %s\n", e.what());
        return 1;
    }
}
