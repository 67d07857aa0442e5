// Q242398: a custom resource type implemented by a plugin; its resource monitor is killed with
// kill -9; the type and the resource come back, because the type -> library mapping lives in
// the quorum store, not in the monitor's memory.
//
//   resource_dll_tracking [FOLDER]
#include <quorumreg/resource_monitor.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <iostream>

#include <signal.h>

namespace qr = quorumreg;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (auto rc = qr::run_monitor_if_requested(argc, argv)) return *rc; // we are also the monitor
    std::filesystem::path dir = argc > 1 ? argv[1] : "quorumreg-dll-tracking";
    std::filesystem::create_directories(dir / "cache");
    qr::directory_store quorum(dir / "quorum", {.create = true});

    std::string plugin = QUORUMREG_EXAMPLE_PLUGIN; // contoso_cache.so, built beside the examples
    qr::resource_type_registry_options to;
    to.plugin_directories = {std::filesystem::path(plugin).parent_path()}; // only load from here
    to.monitor_command = {"/proc/self/exe"};
    qr::resource_type_registry types(quorum, to);
    std::error_code ec;
    types.lookup("Contoso.Cache", ec);
    if (ec == qr::errc::not_found) {
        qr::resource_type_info t;
        t.name = "Contoso.Cache";
        t.library = plugin;
        types.register_type(t); // hashed, probed in a throwaway monitor, stored
    }

    qr::monitor_controller_options mo;
    mo.monitor_command = {"/proc/self/exe"};
    mo.heartbeat_timeout = 10s; // a monitor slowed down by a busy machine is not a crashed one
    qr::monitor_controller ctl(types, mo);
    ctl.add_resource({"cache1", "Contoso.Cache", (dir / "cache").string()});
    ctl.online("cache1");
    if (!ctl.wait_for("cache1", qr::resource_state::online, 60s)) return 1;
    auto before = ctl.status("cache1");
    std::cout << "cache1 online in monitor " << before.monitor_pid << "; kill -9 it\n";
    ::kill(before.monitor_pid, SIGKILL);

    bool back = ctl.wait_until(
        "cache1",
        [&](const qr::resource_status& s) {
            return s.state == qr::resource_state::online && s.recoveries > before.recoveries;
        },
        60s);
    auto after = ctl.status("cache1");
    std::cout << "cache1 " << qr::to_string(after.state) << " in monitor " << after.monitor_pid << ", type "
              << after.type << " -> " << after.library << "\n  (" << after.last_failure_reason << ")\n";
    ctl.offline("cache1");
    ctl.wait_for("cache1", qr::resource_state::offline, 60s);
    return back && after.type == "Contoso.Cache" && after.library == plugin ? 0 : 1;
}
