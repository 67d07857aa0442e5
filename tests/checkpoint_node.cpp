// A cluster node as a separate process, for the checkpoint failover tests.
//   checkpoint_node STORE HIVE NODE TTL_MS CMD [ARGS]
// Commands (resource "App", subtree "Software/App"):
//   register              add the checkpoint (from this node's copy)
//   writer SEED KEYS      online; commit random batches of KEYS keys in total, flush after each,
//                         print "acked N" per batch; then idle until killed
//   set NAME VALUE        online, set a dword, flush, offline
//   dump [POLICY]         online (waiting for the owner), print "report conflicts=C restored=R",
//                         then "NAME=VALUE" for every dword, offline. POLICY: preserve|reject|adopt_local
//   stale GO_FILE         online, print "ready", wait until GO_FILE exists (the test creates it
//                         after pausing this process past its lease), then write and flush:
//                         print "fenced" or "accepted"
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/open_store.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

using namespace quorumreg;
using namespace std::chrono;

int main(int argc, char** argv) {
    if (argc < 6) return 2;
    auto store = open_store(argv[1], milliseconds(3000));
    hive local(argv[2]);
    checkpoint_manager_options o;
    o.node = argv[3];
    o.lease_ttl = milliseconds(std::atoi(argv[4]));
    checkpoint_manager cp(local, *store, o);
    std::string cmd = argv[5];
    const char* res = "App";
    const char* sub = "Software/App";
    auto say = [](const std::string& s) {
        std::printf("%s\n", s.c_str());
        std::fflush(stdout);
    };
    try {
        if (cmd == "register") {
            cp.add_checkpoint(res, sub);
        } else if (cmd == "writer" && argc >= 8) {
            std::mt19937 rng(static_cast<unsigned>(std::atoi(argv[6])));
            int keys = std::atoi(argv[7]);
            cp.online(res, {.policy = offline_edit_policy::preserve, .wait_for_owner = seconds(30)});
            int written = 0;
            auto prev = local.find_value(sub, "last"); // continue the numbering of earlier rounds
            for (std::uint32_t batch = prev ? prev->as_dword() + 1 : 1; written < keys; ++batch) {
                transaction txn;
                int n = 1 + static_cast<int>(rng() % 20);
                for (int i = 0; i < n && written < keys; ++i, ++written)
                    txn.set_value(sub, "k" + std::to_string(rng() % 1000), value::dword(batch));
                txn.set_value(sub, "b" + std::to_string(batch), value::dword(batch));
                txn.set_value(sub, "last", value::dword(batch));
                local.commit(txn);
                if (rng() % 3 == 0 || written >= keys) {
                    cp.flush(res);
                    say("acked " + std::to_string(batch));
                }
            }
            say("done");
            while (true)
                std::this_thread::sleep_for(seconds(1));
        } else if (cmd == "set" && argc >= 8) {
            cp.online(res, {.policy = offline_edit_policy::preserve, .wait_for_owner = seconds(30)});
            local.set_value(sub, argv[6], value::dword(static_cast<std::uint32_t>(std::atoi(argv[7]))));
            cp.flush(res);
            cp.offline(res);
        } else if (cmd == "dump") {
            online_options oo{.policy = offline_edit_policy::preserve, .wait_for_owner = seconds(30)};
            std::string policy = argc >= 7 ? argv[6] : "preserve";
            if (policy == "reject") oo.policy = offline_edit_policy::reject;
            if (policy == "adopt_local") oo.policy = offline_edit_policy::adopt_local;
            auto t0 = steady_clock::now();
            auto rep = cp.online(res, oo);
            say("online_ms " + std::to_string(duration_cast<milliseconds>(steady_clock::now() - t0).count()));
            say("report conflicts=" + std::to_string(rep.conflicts.size()) +
                " restored=" + std::to_string(rep.restored.size()) + " adopted=" + std::to_string(rep.adopted.size()));
            std::error_code ec;
            for (auto& v : local.values(sub, ec))
                if (v.data.type() == value_type::dword) say(v.name + "=" + std::to_string(v.data.as_dword()));
            cp.offline(res);
        } else if (cmd == "stale" && argc >= 7) {
            cp.online(res, {.policy = offline_edit_policy::preserve, .wait_for_owner = seconds(30)});
            local.set_value(sub, "owner", value::dword(1));
            cp.flush(res);
            say("ready");
            // Told, not guessed: timing the pause from in here missed pauses barely longer than
            // the time another node needed to take over (the lease may expire before the TTL
            // has passed since the pause began).
            std::error_code fs_ec;
            while (!std::filesystem::exists(argv[6], fs_ec))
                std::this_thread::sleep_for(milliseconds(5));
            local.set_value(sub, "owner", value::dword(666));
            std::error_code ec;
            cp.flush(res, seconds(10), ec);
            say(ec == errc::fenced ? "fenced" : "accepted " + ec.message());
            std::error_code ignored;
            cp.offline(res, ignored);
        } else {
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "checkpoint_node %s: %s\n", argv[3], e.what());
        say(std::string("error ") + e.what());
        return 1;
    }
    return 0;
}
