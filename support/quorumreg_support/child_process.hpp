// Real child processes for crash tests, examples and the demo: fork + exec, the child's stdout
// through a pipe (read raw or line by line), kill -9, reap. Shared by tests/, examples/ and
// bench/; not installed (it is harness code, not library API).
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qr_support {

/// The running executable (examples and tests re-execute themselves as other nodes).
inline std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

/// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class temp_folder {
public:
    explicit temp_folder(const std::string& prefix) {
        auto tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        if (!::mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
        path_ = tmpl;
    }
    ~temp_folder() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_folder(const temp_folder&) = delete;
    temp_folder& operator=(const temp_folder&) = delete;
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

/// A child process (fork + exec of argv[0]) whose stdout we read; stderr is inherited, so a
/// child's error messages reach the terminal or the ctest log. It leads its own process group,
/// and the whole group is killed (SIGKILL) on destruction: a failing test cannot leave it, or a
/// grandchild holding the stdout pipe that ctest waits on, behind.
///
/// `env` entries ("NAME=VALUE") are added to (or replace in) the inherited environment.
///
/// Two ways to read: raw (read_some/read_all into the caller's buffer) or by line through the
/// object's own buffer (wait_for, value_of, output). Use one per process.
class child_process {
public:
    explicit child_process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
        std::vector<std::string> environment = merged_environment(env);
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
        pid_ = ::fork();
        if (pid_ < 0) {
            int e = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            throw std::system_error(e, std::generic_category(), "fork");
        }
        if (pid_ == 0) {
            ::setpgid(0, 0);
            ::dup2(fds[1], 1);
            std::vector<char*> args;
            for (auto& a : argv)
                args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            std::vector<char*> envp;
            for (auto& e : environment)
                envp.push_back(const_cast<char*>(e.c_str()));
            envp.push_back(nullptr);
            ::execve(args[0], args.data(), envp.data());
            ::_exit(127);
        }
        ::setpgid(pid_, pid_); // also here, so the group exists before the constructor returns
        ::close(fds[1]);
        out_ = fds[0];
    }
    ~child_process() {
        kill(SIGKILL);
        wait();
        if (pid_ > 0) ::kill(-pid_, SIGKILL); // what it started and left running
        if (out_ >= 0) ::close(out_);
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    pid_t pid() const noexcept { return pid_; }
    void kill(int sig) {
        if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
    }

    /// Waits for exit; the status as from waitpid (-1 if it could not be reaped).
    int wait() {
        if (pid_ <= 0) return -1;
        while (!reaped_) {
            pid_t r = ::waitpid(pid_, &status_, 0);
            if (r == pid_ || (r < 0 && errno != EINTR)) {
                if (r < 0) status_ = -1; // already reaped elsewhere
                reaped_ = true;
            }
        }
        return status_;
    }

    /// Raw read: appends what arrives on the child's stdout within `timeout_ms` to `buffer`.
    bool read_some(std::string& buffer, int timeout_ms) { return read_into(buffer, timeout_ms); }
    /// Raw read: everything until EOF (after the child died).
    void read_all(std::string& buffer) {
        char b[65536];
        ssize_t n;
        while ((n = ::read(out_, b, sizeof b)) > 0)
            buffer.append(b, static_cast<std::size_t>(n));
    }

    /// The next line starting with `prefix` (without the prefix), or nullopt if the process ended
    /// or `timeout` passed first. Every line read is kept in output().
    std::optional<std::string> wait_for(const std::string& prefix, std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (true) {
            auto nl = buf_.find('\n', scan_);
            if (nl != std::string::npos) {
                std::string line = buf_.substr(scan_, nl - scan_);
                scan_ = nl + 1;
                if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
                continue;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !read_into(buf_, static_cast<int>(left.count()))) return std::nullopt;
        }
    }

    /// Waits for the process to exit (killing it after `timeout`); returns its exit code, or -1
    /// if it was killed or crashed.
    int finish(std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (!exited()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                kill(SIGKILL);
                break;
            }
            if (!read_into(buf_, static_cast<int>(std::min<long long>(left.count(), 200)))) ::usleep(10000);
        }
        int st = wait();
        while (read_into(buf_, 0)) {
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

    /// Everything read by line so far.
    const std::string& output() const noexcept { return buf_; }

    /// The last "NAME=VALUE" line read by line so far.
    std::optional<std::string> value_of(const std::string& name) const {
        std::optional<std::string> v;
        std::size_t pos = 0;
        while (pos < buf_.size()) {
            auto nl = buf_.find('\n', pos);
            if (nl == std::string::npos) nl = buf_.size();
            if (buf_.compare(pos, name.size() + 1, name + "=") == 0)
                v = buf_.substr(pos + name.size() + 1, nl - pos - name.size() - 1);
            pos = nl + 1;
        }
        return v;
    }

    /// Has it exited? Reaps it if so (wait() then returns its status at once).
    bool exited() {
        if (reaped_) return true;
        pid_t r = ::waitpid(pid_, &status_, WNOHANG);
        if (r == pid_ || r < 0) {
            if (r < 0) status_ = -1;
            reaped_ = true;
        }
        return reaped_;
    }

private:
    static std::vector<std::string> merged_environment(const std::vector<std::string>& extra) {
        std::vector<std::string> out;
        auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
        for (char** e = environ; e && *e; ++e) {
            std::string entry(*e);
            bool replaced = std::any_of(extra.begin(), extra.end(),
                                        [&](const std::string& x) { return name_of(x) == name_of(entry); });
            if (!replaced) out.push_back(std::move(entry));
        }
        out.insert(out.end(), extra.begin(), extra.end());
        return out;
    }

    bool read_into(std::string& buffer, int timeout_ms) {
        if (out_ < 0) return false;
        pollfd p{out_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char b[65536];
        auto n = ::read(out_, b, sizeof b);
        if (n <= 0) return false;
        buffer.append(b, static_cast<std::size_t>(n));
        return true;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    int status_ = 0;
    bool reaped_ = false;
    std::string buf_;
    std::size_t scan_ = 0;
};

} // namespace qr_support
