// Child process for the hive tests (real processes, really killed).
//   hive_child crash DIR THREADS   commit numbered transactions forever; print "t i" per ack
//   hive_child count DIR N         increment Counter/value N times with optimistic retries
//   hive_child set DIR KEY NAME N  set one dword value and exit
#include <quorumreg/hive.hpp>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace quorumreg;

int main(int argc, char** argv) {
    if (argc < 3) return 2;
    std::string mode = argv[1];
    hive_options opts;
    opts.snapshot_threshold = 64 * 1024; // compactions happen during crash tests too
    hive h(argv[2], opts);
    if (mode == "crash") {
        int threads = argc > 3 ? std::atoi(argv[3]) : 1;
        std::mutex out;
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t) {
            ts.emplace_back([&, t] {
                std::string key = "Crash/T" + std::to_string(t);
                auto cur = h.find_value(key, "n");
                std::uint64_t i = cur ? cur->as_qword() : 0;
                while (true) {
                    ++i;
                    transaction txn;
                    txn.set_value(key, "n", value::qword(i))
                        .set_value(key + "/Log", "v" + std::to_string(i), value::qword(i));
                    h.commit(txn);
                    std::lock_guard lk(out);
                    std::printf("%d %llu\n", t, static_cast<unsigned long long>(i));
                    std::fflush(stdout);
                }
            });
        }
        for (auto& t : ts)
            t.join();
    } else if (mode == "count") {
        int n = std::atoi(argv[3]);
        for (int i = 0; i < n; ++i) {
            while (true) {
                std::error_code iec;
                auto info = h.info("Counter", iec); // absent at first: revision 0 = "must not exist"
                auto cur = h.find_value("Counter", "value");
                std::uint32_t v = cur ? cur->as_dword() : 0;
                transaction txn;
                txn.require_revision("Counter", info.revision).set_value("Counter", "value", value::dword(v + 1));
                std::error_code ec;
                h.commit(txn, ec);
                if (!ec) break;
                if (ec != errc::revision_mismatch) return 3;
            }
        }
    } else if (mode == "set" && argc >= 6) {
        h.set_value(argv[3], argv[4], value::dword(static_cast<std::uint32_t>(std::atoi(argv[5]))));
    } else {
        return 2;
    }
    return 0;
}
