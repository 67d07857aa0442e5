// A client process that records a history for the linearizability checker.
//
//   history_worker STORE_SPEC LOG_FILE PROCESS KEYS OPS SEED [--stale-reads]
//
// Runs OPS random operations (40% read, 30% write, 30% cas) on KEYS registers
// `lin/k<i>` of the store; values are unique (PROCESS * 1e6 + n). Every operation is logged
// before it starts and after it ends, one line each, with CLOCK_MONOTONIC nanoseconds (one
// clock for every process of the machine, so histories of several processes merge):
//   T invoke read|write|cas KEY [VALUE | FROM TO]
//   T ok|fail|info read|write|cas KEY [VALUE|nil]
// `info` is an unknown outcome (the store could not say whether a write took effect). A process
// killed mid-operation leaves its invoke line alone, which is unknown as well.
// --stale-reads: a deliberately broken client (a read cache that is never invalidated) to show
// that the checker catches real anomalies in these histories.
#include <quorumreg/stores/open_store.hpp>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <random>
#include <string>

#include <fcntl.h>
#include <unistd.h>

using namespace quorumreg;

namespace {

int log_fd = -1;

void log_line(const std::string& rest) {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    auto line = std::to_string(static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec) + " " + rest + "\n";
    if (::write(log_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::_Exit(3);
}

/// Errors after which a write may or may not have taken effect.
bool ambiguous(const std::error_code& ec) {
    return ec == errc::unknown_outcome || ec == errc::deadline_exceeded || ec == errc::quorum_unavailable ||
           ec == errc::backend_error || ec == errc::io_error;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 7) {
        std::fprintf(stderr, "usage: history_worker STORE LOG PROCESS KEYS OPS SEED [--stale-reads]\n");
        return 2;
    }
    const std::string spec = argv[1];
    const long process = std::atol(argv[3]);
    const int keys = std::atoi(argv[4]);
    const int ops = std::atoi(argv[5]);
    std::mt19937_64 rng(std::strtoull(argv[6], nullptr, 10));
    const bool stale_reads = argc > 7 && std::string(argv[7]) == "--stale-reads";
    log_fd = ::open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) return 2;
    std::error_code ec;
    std::string why;
    store_open_options so;
    so.deadline = std::chrono::milliseconds(2000);
    auto store = open_store(spec, so, ec, &why);
    if (!store) {
        std::fprintf(stderr, "history_worker: %s: %s\n", spec.c_str(), why.c_str());
        return 2;
    }
    std::map<std::string, std::string> cache;
    long next = 0;
    for (int i = 0; i < ops; ++i) {
        const std::string key = "lin/k" + std::to_string(rng() % static_cast<unsigned>(keys));
        const auto dice = rng() % 10;
        if (dice < 4) {
            log_line("invoke read " + key);
            if (stale_reads && cache.count(key) && rng() % 2) {
                log_line("ok read " + key + " " + cache[key]);
                continue;
            }
            auto kv = store->get(key, ec);
            if (ec) {
                log_line("fail read " + key); // a failed read says nothing
                continue;
            }
            std::string v = kv ? kv->value : "nil";
            cache[key] = v;
            log_line("ok read " + key + " " + v);
        } else if (dice < 7) {
            const auto v = std::to_string(process * 1000000 + ++next);
            log_line("invoke write " + key + " " + v);
            store->put(key, v, 0, ec);
            if (!ec) {
                log_line("ok write " + key);
            } else if (ambiguous(ec)) {
                log_line("info write " + key);
                return 0; // Jepsen's rule: a process with an unknown outcome never invokes again
            } else {
                log_line("fail write " + key);
            }
        } else {
            // cas against a value this process saw or wrote recently (or a random one).
            std::string from = cache.count(key) && cache[key] != "nil" ? cache[key] : std::to_string(rng() % 3);
            const auto to = std::to_string(process * 1000000 + ++next);
            log_line("invoke cas " + key + " " + from + " " + to);
            store_txn t;
            t.compares.push_back(key_compare::value_is(key, from));
            t.on_success.push_back(store_op::put(key, to));
            auto r = store->commit(t, ec);
            if (!ec) {
                log_line(std::string(r.succeeded ? "ok" : "fail") + " cas " + key);
                if (r.succeeded) cache[key] = to;
            } else if (ambiguous(ec)) {
                log_line("info cas " + key);
                return 0;
            } else {
                log_line("fail cas " + key);
            }
        }
    }
    return 0;
}
