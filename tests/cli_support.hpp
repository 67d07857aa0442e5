// Helpers for the qreg command-line tests: run the binary, capture stdout/stderr/exit code.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qr_cli {

namespace fs = std::filesystem;

struct result {
    int rc = -1;
    std::string out, err;
};

inline std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// True if some line of `text` has two equal ": "-separated parts in a row
/// ("resource library is missing: resource library is missing").
inline bool repeats_itself(const std::string& text) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> parts;
        for (std::size_t at = 0;;) {
            auto next = line.find(": ", at);
            parts.push_back(line.substr(at, next == std::string::npos ? std::string::npos : next - at));
            if (next == std::string::npos) break;
            at = next + 2;
        }
        for (std::size_t i = 1; i < parts.size(); ++i)
            if (!parts[i].empty() && parts[i] == parts[i - 1]) return true;
    }
    return false;
}

/// Runs qreg with `args` in `cwd`; stdout and stderr are captured separately. Every run checks
/// that stderr does not repeat itself.
/// `as_uid`: run as that user (and its own group), for tests of what an unprivileged
/// operator can do; by default qreg runs as the test does. `exe`: another copy of qreg.
inline result qreg(const fs::path& cwd, std::vector<std::string> args, std::optional<unsigned> as_uid = {},
                   const std::string& exe = QR_QREG_EXE) {
    args.insert(args.begin(), exe);
    auto out = cwd / ".qreg.out", err = cwd / ".qreg.err";
    pid_t pid = ::fork();
    if (pid == 0) {
        if (::chdir(cwd.c_str()) != 0) ::_exit(126);
        int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(o, 1);
        ::dup2(e, 2);
        if (as_uid && *as_uid != ::geteuid()) {
            if (::setgroups(0, nullptr) != 0 || ::setgid(*as_uid) != 0 || ::setuid(*as_uid) != 0) ::_exit(125);
        }
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    result r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    CHECK_MESSAGE(!repeats_itself(r.err), "a message repeats itself: " << r.err);
    return r;
}

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

inline void write_file(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

} // namespace qr_cli
