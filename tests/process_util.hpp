// Spawning real child processes for crash tests: fork + exec, stdout through a pipe, kill -9.
#pragma once

#include <csignal>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qr_test {

class child_process {
public:
    explicit child_process(const std::vector<std::string>& argv) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(fds[1], 1);
            std::vector<char*> args;
            for (auto& a : argv)
                args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        out_ = fds[0];
    }
    ~child_process() {
        kill(SIGKILL);
        wait();
        if (out_ >= 0) ::close(out_);
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    pid_t pid() const noexcept { return pid_; }
    void kill(int sig) {
        if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
    }
    /// Exit status as from waitpid (-1 if never started).
    int wait() {
        if (pid_ <= 0) return -1;
        if (!reaped_) {
            pid_t r;
            while ((r = ::waitpid(pid_, &status_, 0)) < 0 && errno == EINTR) {
            }
            if (r < 0) status_ = -1; // already reaped elsewhere
            reaped_ = true;
        }
        return status_;
    }
    /// Reads what is available on the child's stdout within `timeout_ms` (appends to buffer).
    bool read_some(std::string& buffer, int timeout_ms) {
        pollfd p{out_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char buf[65536];
        auto n = ::read(out_, buf, sizeof buf);
        if (n <= 0) return false;
        buffer.append(buf, static_cast<std::size_t>(n));
        return true;
    }
    /// Reads everything until EOF (after the child died).
    void read_all(std::string& buffer) {
        char buf[65536];
        ssize_t n;
        while ((n = ::read(out_, buf, sizeof buf)) > 0)
            buffer.append(buf, static_cast<std::size_t>(n));
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int status_ = 0;
    bool reaped_ = false;
};

} // namespace qr_test
