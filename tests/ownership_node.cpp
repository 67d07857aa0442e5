// A node process for the ownership and lease-skew tests (issue 15, defect 10 and the SIGSTOP
// test). Every mode first prints "wall <CLOCK_REALTIME seconds>" so the test can check that a
// faketime skew really applies to it.
//   ownership_node hold DIR KEY TTL_MS RUN_MS   takes KEY with a plain lease (acquire_lock),
//       keeps the lease alive every TTL/4 for RUN_MS and checks the key is still its own;
//       prints "token N", then "held" (exit 0) or "lost WHY" (exit 3).
//   ownership_node take DIR KEY TTL_MS TRY_MS   tries acquire_lock on KEY for TRY_MS; prints
//       "took MS" (MS after it started asking) or "not-taken".
//   ownership_node sidefx DIR KEY TTL_MS LOG RUN_MS   takes KEY with quorumreg::ownership and,
//       for RUN_MS, appends one line "<CLOCK_MONOTONIC ns>" to LOG each time valid() said yes
//       (the time is read just before valid()); prints "acquired TOKEN", "lost CODE".
#include <quorumreg/ownership.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

using namespace quorumreg;
using namespace std::chrono;

namespace {
void say(const std::string& s) {
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
}

long long mono_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

directory_store open_dir(const char* dir) {
    directory_store_options o;
    o.poll_interval = milliseconds(10);
    return directory_store(dir, o);
}
} // namespace

int main(int argc, char** argv) {
    if (argc < 6) return 2;
    std::string mode = argv[1];
    say("wall " + std::to_string(static_cast<long long>(std::time(nullptr))));
    auto store = open_dir(argv[2]);
    std::string key = argv[3];
    milliseconds ttl(std::stoll(argv[4]));
    if (mode == "hold") {
        milliseconds run(std::stoll(argv[5]));
        auto lease = store.grant_lease(ttl);
        auto token = store.acquire_lock(key, lease, "holder");
        say("token " + std::to_string(token));
        auto end = steady_clock::now() + run;
        while (steady_clock::now() < end) {
            std::this_thread::sleep_for(ttl / 4);
            std::error_code ec;
            store.keep_alive(lease, ec);
            if (ec) {
                say("lost keep_alive: " + ec.message());
                return 3;
            }
            auto kv = store.get(key, ec);
            if (ec || !kv || kv->create_revision != token) {
                say("lost the lock key");
                return 3;
            }
        }
        say("held");
        return 0;
    }
    if (mode == "take") {
        milliseconds try_for(std::stoll(argv[5]));
        auto lease = store.grant_lease(ttl);
        auto start = steady_clock::now();
        while (steady_clock::now() - start < try_for) {
            std::error_code ec;
            store.acquire_lock(key, lease, "taker", ec);
            if (!ec) {
                say("took " + std::to_string(duration_cast<milliseconds>(steady_clock::now() - start).count()));
                return 0;
            }
            if (ec == errc::lease_expired) lease = store.grant_lease(ttl);
            std::this_thread::sleep_for(milliseconds(5));
        }
        say("not-taken");
        return 0;
    }
    if (mode == "sidefx" && argc >= 7) {
        std::string log = argv[5];
        milliseconds run(std::stoll(argv[6]));
        ownership_options o;
        o.node = "sidefx";
        o.ttl = ttl;
        o.on_lost = [](std::error_code ec) { say("lost " + ec.message()); };
        ownership own(store, key, o);
        own.acquire(seconds(10));
        say("acquired " + std::to_string(own.token()));
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) return 4;
        auto end = steady_clock::now() + run;
        while (steady_clock::now() < end) {
            auto t = mono_ns(); // the side effect is decided at t
            if (own.valid()) {
                auto line = std::to_string(t) + "\n";
                if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 4;
            }
            std::this_thread::sleep_for(milliseconds(2));
        }
        ::close(fd);
        say("done");
        return 0;
    }
    return 2;
}
