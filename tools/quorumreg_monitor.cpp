// quorumreg_monitor — the resource monitor process. The controller (quorumreg::monitor_controller)
// starts one per monitor it needs and talks to it over a socketpair (fds 3 and 4: channel and board); the
// registry starts a throwaway one to probe a plugin at registration. Not meant to be run by hand.
#include <quorumreg/resource_monitor.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    if (auto rc = quorumreg::run_monitor_if_requested(argc, argv)) return *rc;
    std::fprintf(stderr,
                 "quorumreg_monitor: hosts quorumreg resource plugins for a controller process.\n"
                 "It is started by quorumreg (argv[1] = --quorumreg-monitor or --quorumreg-probe), not by hand.\n");
    return 2;
}
