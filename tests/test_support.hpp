// Shared test helpers: doctest with std::error_code printing, temporary directories.
#pragma once

#include <ostream> // doctest prints std::error_code through operator<<
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <unistd.h>

namespace qr_test {

/// A fresh directory under $QUORUMREG_TEST_TMP (set by ctest) or the system temp dir,
/// removed on destruction.
class temp_dir {
public:
    explicit temp_dir(const std::string& tag = "t") {
        const char* base = std::getenv("QUORUMREG_TEST_TMP");
        std::filesystem::path root = base ? base : std::filesystem::temp_directory_path();
        std::filesystem::create_directories(root);
        std::random_device rd;
        path_ = root / (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const noexcept { return path_; }
    std::string str() const { return path_.string(); }

private:
    std::filesystem::path path_;
};

/// The code a throwing call threw, or {} if it did not throw.
template <class F> std::error_code code_of(F&& f) {
    try {
        f();
    } catch (const std::system_error& e) {
        return e.code();
    }
    return {};
}

} // namespace qr_test
