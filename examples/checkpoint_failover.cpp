// Q174070: registry keys checkpointed with a resource follow it when it fails over.
//   1. node A owns resource SQL, sets Port=1433, and is killed with kill -9;
//   2. node B takes SQL over once A's lease expires and finds Port=1433, then sets Port=1434;
//   3. A's local copy is edited while SQL is offline there: when A takes SQL back, the quorum's
//      Port=1434 wins and A's edit is preserved as a conflict record, not dropped;
//   4. a bad edit (Port=0) is rolled back by restoring the previous generation.
// Each node is this program re-executed as a separate process with its own hive.
//
//   checkpoint_failover [FOLDER]
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <quorumreg_support/child_process.hpp>

#include <iostream>
#include <thread>

#include <signal.h>

namespace qr = quorumreg;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto keys = "Software/Contoso/SQL";

/// checkpoint_failover --node FOLDER NAME hold|run|restore [PORT]
int node(const fs::path& dir, const std::string& name, const std::string& cmd, int port) {
    qr::hive local(dir / name);
    qr::directory_store quorum(dir / "quorum");
    qr::checkpoint_manager cp(local, quorum, {.node = name, .lease_ttl = 1500ms});
    if (cmd == "restore") { // roll back to the generation before the latest
        auto h = cp.history("SQL", keys);
        cp.restore("SQL", keys, h.at(h.size() - 2).generation);
        return 0;
    }
    if (cp.checkpoints("SQL").empty()) cp.add_checkpoint("SQL", keys);
    auto report = cp.online("SQL", {.wait_for_owner = 60s}); // waits for a dead owner's lease
    std::cout << "Port=" << local.get_value(keys, "Port").as_dword() << "\nconflicts=" << report.conflicts.size()
              << std::endl;
    if (port >= 0) local.set_value(keys, "Port", qr::value::dword(static_cast<std::uint32_t>(port)));
    cp.flush("SQL");
    if (cmd == "hold") {
        std::cout << "ready" << std::endl;
        while (true)
            std::this_thread::sleep_for(1s); // until kill -9
    }
    cp.offline("SQL");
    return 0;
}

int main(int argc, char** argv) {
    if (argc >= 5 && std::string(argv[1]) == "--node")
        return node(argv[2], argv[3], argv[4], argc > 5 ? std::stoi(argv[5]) : -1);
    fs::path dir = argc > 1 ? argv[1] : "quorumreg-failover";
    fs::create_directories(dir);
    qr::directory_store(dir / "quorum", {.create = true}); // the nodes open it; opens never create
    auto run = [&](const std::string& name, const std::string& cmd, int port = -1) {
        std::vector<std::string> a{qr_support::self_exe(), "--node", dir.string(), name, cmd};
        if (port >= 0) a.push_back(std::to_string(port));
        return std::make_unique<qr_support::child_process>(a);
    };
    int failed = 0;
    auto expect = [&](bool ok, const std::string& what) {
        std::cout << (ok ? "  ok    " : "  FAIL  ") << what << "\n";
        failed += !ok;
    };
    { // seed Port=1433 on A so the first online has something to restore elsewhere
        qr::hive a(dir / "A");
        a.set_value(keys, "Port", qr::value::dword(1433));
    }
    auto a = run("A", "hold", 1433);
    expect(a->wait_for("ready", 60s).has_value(), "A owns SQL with Port=1433, flushed");
    a->kill(SIGKILL);
    a->finish(10s);
    auto b = run("B", "run", 1434);
    b->finish(120s);
    expect(b->value_of("Port") == "1433", "A was killed with kill -9; B took SQL over and found Port=1433");
    {
        qr::hive ha(dir / "A"); // an edit on A while SQL is offline there
        ha.set_value(keys, "Port", qr::value::dword(9999));
    }
    auto a2 = run("A", "run");
    a2->finish(120s);
    expect(a2->value_of("Port") == "1434" && a2->value_of("conflicts") == "1",
           "A's offline edit (9999) is kept as a conflict; A runs with B's Port=1434");
    run("B", "run", 0)->finish(120s);  // a bad edit
    run("B", "restore")->finish(120s); // rolled back to the previous generation
    auto c = run("C", "run");
    c->finish(120s);
    expect(c->value_of("Port") == "1434",
           "the bad edit Port=0 was rolled back: C reads Port=" + c->value_of("Port").value_or("?"));
    return failed ? 1 : 0;
}
