// A node process for the Q320331 test.
//   cluster_node STORE HIVE NODE names GO_FILE   "name_mapping" (journaled writes) starts before
//       the replication service "cluster" and writes two names; once GO_FILE exists, "cluster"
//       starts (attach: replay) and every conflict is printed as "conflict KEY local=.. remote=..".
//   cluster_node STORE HIVE NODE read PREFIX     prints "KEY=VALUE" for every cluster-wide key
//   cluster_node STORE HIVE NODE journal TAG N GO_FILE   once GO_FILE exists, journals N writes
//       TAG/i = TAGi (detached) into HIVE: two such processes share one journal (issue 15 defect 3)
#include <quorumreg/cluster_writer.hpp>
#include <quorumreg/service_controller.hpp>
#include <quorumreg/stores/open_store.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

using namespace quorumreg;

int main(int argc, char** argv) {
    if (argc < 6) return 2;
    auto store = open_store(argv[1]);
    std::string cmd = argv[4];
    auto say = [](const std::string& s) {
        std::printf("%s\n", s.c_str());
        std::fflush(stdout);
    };
    if (cmd == "read") {
        for (auto& kv : store->list(std::string("quorumreg/cluster/") + argv[5]))
            say(kv.key.substr(std::string("quorumreg/cluster/").size()) + "=" + kv.value);
        return 0;
    }
    if (cmd == "journal" && argc >= 8) {
        hive local(argv[2]);
        cluster_writer w(local, {.node = argv[3]});
        std::string tag = argv[5];
        int n = std::stoi(argv[6]);
        while (!std::filesystem::exists(argv[7]))
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (int i = 0; i < n; ++i)
            w.put(tag + "/" + std::to_string(i), tag + std::to_string(i));
        return 0;
    }
    if (cmd != "names") return 2;
    hive local(argv[2]);
    cluster_writer names(local, {.node = argv[3]});
    auto sub = names.on_conflict([&](const write_conflict& c) {
        say("conflict " + c.key + " local=" + c.local.value_or("(erased)") +
            " remote=" + c.remote.value_or("(erased)"));
    });
    service_controller ctl;
    ctl.add_service("cluster", {.start = [&] { names.attach(*store); }, .stop = [&] { names.detach(); }});
    ctl.set_replication_service("cluster");
    service_options journaled;
    journaled.writes = replicated_writes::journaled;
    ctl.add_service("name_mapping", {.start =
                                         [&] {
                                             names.put("map/alice", "uid=1000");
                                             names.put("map/bob", "uid=1001");
                                         },
                                     .stop = {},
                                     .options = journaled});
    ctl.start("name_mapping"); // before the cluster service: Q320331's situation
    say("name_mapping " + std::string(to_string(ctl.state("name_mapping"))) + " cluster " +
        std::string(to_string(ctl.state("cluster"))) + " journaled " + std::to_string(names.pending().size()));
    while (!std::filesystem::exists(argv[5]))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ctl.start("cluster");
    say("cluster " + std::string(to_string(ctl.state("cluster"))) + " journaled " +
        std::to_string(names.pending().size()) + " conflicts " + std::to_string(names.conflicts().size()));
    return 0;
}
