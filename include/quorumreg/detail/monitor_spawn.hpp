// Starting monitor processes: locating the monitor executable, posix_spawn, and the throwaway
// "probe" monitor that registration uses to check a plugin without loading it into the
// caller's own process (a plugin whose constructors crash must not take the registering
// process down with it).
#pragma once

#include <quorumreg/error.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace quorumreg::detail {

/// argv[1] that makes a monitor-capable program act as a long-lived resource monitor.
inline constexpr const char* monitor_flag = "--quorumreg-monitor";
/// argv[1] that makes it act as a throwaway registration probe.
inline constexpr const char* probe_flag = "--quorumreg-probe";

/// The command that starts a monitor when the caller configured none: $QUORUMREG_MONITOR, else
/// `quorumreg_monitor` next to the running executable, else `quorumreg_monitor` from PATH.
inline std::vector<std::string> default_monitor_command() {
    if (const char* env = std::getenv("QUORUMREG_MONITOR"); env && *env) return {env};
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto beside = self.parent_path() / "quorumreg_monitor";
        if (std::filesystem::exists(beside, ec)) return {beside.string()};
    }
    return {"quorumreg_monitor"};
}

/// Spawns `argv` (PATH-searched). `stdout_fd` >= 0 becomes the child's stdout; each pair of
/// `inherit` is dup2()ed (source, target) in the child — the only descriptors it inherits
/// besides 0–2, since everything else is close-on-exec. The child leads a process group of its
/// own (pgid = pid), so killing the group also kills what plugins forked. Returns the pid.
inline pid_t spawn_process(const std::vector<std::string>& argv, int stdout_fd, std::error_code& ec,
                           const std::vector<std::pair<int, int>>& inherit = {}) {
    ec.clear();
    if (argv.empty()) {
        ec = errc::invalid_argument;
        return -1;
    }
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stdout_fd, STDOUT_FILENO);
    for (auto [from, to] : inherit)
        posix_spawn_file_actions_adddup2(&fa, from, to);
    // A monitor must not inherit signal dispositions or a blocked mask from the application.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        ec = std::error_code(rc, std::system_category());
        return -1;
    }
    return pid;
}

/// Marks the probe's answer on its stdout (a plugin's constructors may print there too).
inline constexpr const char* probe_marker = "quorumreg-probe-result ";

/// Outcome of a probe: the error (empty when the plugin is fine) and the monitor's explanation.
struct probe_result {
    std::error_code ec;
    std::string message;
};

/// Whether `file` (already resolved: no symlinks, absolute) lies strictly inside one of `dirs`
/// (each resolved, symlinks included). Shared by the registry, the controller and the monitor.
inline bool path_inside_dirs(const std::filesystem::path& file, const std::vector<std::filesystem::path>& dirs) {
    namespace fs = std::filesystem;
    if (!file.is_absolute()) return false;
    for (auto& dir : dirs) {
        std::error_code ec;
        auto d = fs::weakly_canonical(dir, ec);
        if (ec || !d.is_absolute()) continue;
        auto rel = file.lexically_relative(d);
        if (!rel.empty() && *rel.begin() != ".." && rel != ".") return true;
    }
    return false;
}

/// Runs `command --quorumreg-probe <library> <type> <sha256> <dir>...` and waits up to `timeout`.
/// The directories are passed so the probe re-checks them itself (it trusts no caller).
/// The probe hashes the file it opened, dlopen()s exactly that file, resolves the startup
/// symbol and asks for `type`. A probe that dies or hangs reports errc::plugin_load_failed.
inline probe_result probe_plugin(const std::vector<std::string>& command, const std::string& library,
                                 const std::string& type, const std::string& sha256, std::chrono::milliseconds timeout,
                                 const std::vector<std::filesystem::path>& plugin_directories) {
    probe_result out;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        out.ec = from_errno(errno);
        out.message = "pipe failed";
        return out;
    }
    auto argv = command;
    argv.insert(argv.end(), {probe_flag, library, type, sha256});
    for (auto& d : plugin_directories)
        argv.push_back(d.string());
    std::error_code sec;
    pid_t pid = spawn_process(argv, fds[1], sec);
    ::close(fds[1]);
    if (pid < 0) {
        ::close(fds[0]);
        out.ec = errc::plugin_load_failed;
        out.message = "cannot start the monitor program \"" + argv[0] + "\": " + sec.message();
        return out;
    }
    // One deadline for the whole probe: its output and its exit. EOF proves nothing (the plugin
    // may close stdout and hang, or fork a child that keeps it open), so the probe's exit is
    // watched too (waitid WNOWAIT: the zombie keeps its process group reserved until the group
    // is killed). The probe makes itself a process-group leader; whatever it started dies with it.
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool timed_out = false, eof = false;
    auto read_some = [&](int wait_ms) {
        pollfd p{fds[0], POLLIN, 0};
        int r = ::poll(&p, 1, wait_ms);
        if (r <= 0) return false;
        char buf[4096];
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n < 0) return errno == EINTR;
        if (n == 0) {
            eof = true;
            return false;
        }
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > 65536) text.erase(0, text.size() - 65536); // the answer is at the end
        return true;
    };
    for (;;) { // until the probe exits (left as a zombie by WNOWAIT, reaped below) or the deadline
        siginfo_t si{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) break;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        if (eof)
            std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(5)));
        else
            read_some(static_cast<int>(std::min<std::int64_t>(left.count(), 20)));
    }
    while (!eof && read_some(0)) { // what the probe wrote before it exited
    }
    ::close(fds[0]);
    ::kill(-pid, SIGKILL); // the probe's process group: children a plugin forked
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        out.ec = errc::plugin_load_failed;
        out.message = "the probe monitor did not answer within " + std::to_string(timeout.count()) + " ms";
        return out;
    }
    if (WIFSIGNALED(status)) {
        out.ec = errc::plugin_load_failed;
        out.message = "the probe monitor died with signal " + std::to_string(WTERMSIG(status)) + " while loading";
        return out;
    }
    // Protocol: a line "<marker>ok" or "<marker>err <errc value> <message>"; anything else the
    // plugin printed is ignored.
    auto at = text.rfind(probe_marker);
    std::string answer = at == std::string::npos ? std::string() : text.substr(at + std::strlen(probe_marker));
    if (answer.rfind("ok", 0) == 0) return out;
    if (answer.rfind("err ", 0) == 0) {
        char* end = nullptr;
        long code = std::strtol(answer.c_str() + 4, &end, 10);
        std::string msg = end ? std::string(end) : std::string();
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
            msg.pop_back();
        while (!msg.empty() && msg.front() == ' ')
            msg.erase(0, 1);
        out.ec = make_error_code(static_cast<errc>(code));
        out.message = msg;
        return out;
    }
    out.ec = errc::plugin_load_failed;
    out.message = "the probe monitor \"" + argv[0] + "\" gave no answer (exit status " +
                  std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")";
    return out;
}

} // namespace quorumreg::detail
