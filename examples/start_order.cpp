// Q320331: a name-mapping service starts before the cluster service. Its writes are journaled
// durably by a cluster_writer and replayed, in order, when the cluster service comes online, so
// they reach every node instead of being lost.
//
//   start_order [FOLDER]     three nodes (own hives) sharing a quorum directory under FOLDER
#include <quorumreg/cluster_writer.hpp>
#include <quorumreg/service_controller.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <iostream>
#include <memory>

namespace qr = quorumreg;

int main(int argc, char** argv) {
    std::filesystem::path dir = argc > 1 ? argv[1] : "quorumreg-start-order";
    std::filesystem::create_directories(dir);
    qr::directory_store quorum(dir / "quorum", {.create = true});
    const char* users[][2] = {{"alice", "1000"}, {"bob", "1001"}, {"carol", "1002"}};
    std::vector<std::unique_ptr<qr::hive>> hives;
    std::vector<std::unique_ptr<qr::cluster_writer>> writers;
    for (int n = 0; n < 3; ++n) {
        std::string node = "node" + std::to_string(n + 1);
        hives.push_back(std::make_unique<qr::hive>(dir / node));
        writers.push_back(
            std::make_unique<qr::cluster_writer>(*hives.back(), qr::cluster_writer_options{.node = node}));
        auto& names = *writers.back();

        qr::service_controller ctl;
        auto sub = ctl.observe([&](const qr::service_event& e) { std::cout << "  " << node << ": " << e << "\n"; });
        qr::service_definition mapping;
        mapping.start = [&] { names.put(std::string("name_mapping/") + users[n][0], users[n][1]); };
        mapping.options.writes = qr::replicated_writes::journaled; // may start before replication
        ctl.add_service("name_mapping", mapping);
        ctl.add_service("cluster", {.start = [&] { names.attach(quorum); }, .stop = [&] { names.detach(); }});
        ctl.set_replication_service("cluster");

        ctl.start("name_mapping"); // first, as in the KB article: the write is journaled
        std::cout << "  " << node << ": " << names.pending().size() << " write journaled before the cluster service\n";
        ctl.start("cluster"); // the journal is replayed in order
        std::cout << "  " << node << ": " << names.pending().size() << " writes still pending\n";
        ctl.stop("cluster");
        if (!names.pending().empty()) return 1;
    }
    int missing = 0;
    for (int n = 0; n < 3; ++n) { // every node sees every mapping
        writers[n]->attach(quorum);
        for (auto& u : users) {
            auto v = writers[n]->get(std::string("name_mapping/") + u[0]);
            std::cout << "node" << n + 1 << " sees " << u[0] << " = " << v.value_or("(missing)") << "\n";
            missing += v != std::string(u[1]);
        }
    }
    std::cout << (missing ? "FAILED: mappings missing\n" : "every pre-init write reached every node\n");
    return missing ? 1 : 0;
}
