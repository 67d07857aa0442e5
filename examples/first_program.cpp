// The README's first program: a registry subtree that follows resource "SQL" from node to node.
// Run it twice with the same folder and the second run restores what the first one wrote.
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <iostream>

int main(int argc, char** argv) {
    namespace qr = quorumreg;
    std::filesystem::path dir = argc > 1 ? argv[1] : "quorumreg-first";
    std::filesystem::create_directories(dir);
    qr::hive local(dir / "node1");                                // this node's registry, on disk
    qr::directory_store quorum(dir / "quorum", {.create = true}); // shared by every node; made on the first run
    qr::checkpoint_manager cp(local, quorum, {.node = "node1"});
    if (cp.checkpoints("SQL").empty()) cp.add_checkpoint("SQL", "Software/Contoso/SQL");
    cp.online("SQL"); // own SQL; restore its latest keys
    auto port = local.find_value("Software/Contoso/SQL", "Port");
    local.set_value("Software/Contoso/SQL", "Port", qr::value::dword(port ? port->as_dword() + 1 : 1433));
    cp.flush("SQL"); // durable in the quorum store
    cp.offline("SQL");
    std::cout << "Port = " << local.get_value("Software/Contoso/SQL", "Port").as_dword() << " (generation "
              << cp.history("SQL", "Software/Contoso/SQL").back().generation << ")\n";
}
