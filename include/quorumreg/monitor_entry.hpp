// quorumreg::monitor_entry_options: how a program that embeds the resource monitor's entry
// point (run_monitor_if_requested, <quorumreg/resource_monitor.hpp>) lets it run.
#pragma once

namespace quorumreg {

/// Options of the monitor entry point (set by the program that embeds it, never from argv or
/// the environment, which whoever starts the program controls).
struct monitor_entry_options {
    /// Run even when the process's privileges differ from its caller's (setuid/setgid binary,
    /// file capabilities, AT_SECURE). Off: refuse, since anyone who can run the program could
    /// have it load code with those privileges.
    bool allow_privileged = false;
};

} // namespace quorumreg
