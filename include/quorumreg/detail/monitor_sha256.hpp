// SHA-256 of plugin libraries (OpenSSL EVP). Hashing reads from an already-open descriptor so
// the monitor can hash exactly the bytes it then dlopen()s through /proc/self/fd/N.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/error.hpp>

#include <openssl/evp.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

namespace quorumreg::detail {

/// Is `s` 64 lower-case hex digits?
inline bool is_sha256_hex(std::string_view s) noexcept {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

/// SHA-256 (hex) of everything readable from `fd`, from its current offset.
inline std::string sha256_fd(int fd, std::error_code& ec) {
    ec.clear();
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
        ec = errc::backend_error;
        return {};
    }
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            ec = from_errno(errno);
            return {};
        }
        if (n == 0) break;
        if (EVP_DigestUpdate(ctx.get(), buf, static_cast<std::size_t>(n)) != 1) {
            ec = errc::backend_error;
            return {};
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
        ec = errc::backend_error;
        return {};
    }
    return hex_encode(md, len);
}

/// SHA-256 (hex) of the file at `path`. A missing file is errc::plugin_missing.
inline std::string sha256_file(const std::string& path, std::error_code& ec) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ec = (errno == ENOENT || errno == ENOTDIR) ? make_error_code(errc::plugin_missing) : from_errno(errno);
        return {};
    }
    auto h = sha256_fd(fd, ec);
    ::close(fd);
    return h;
}

} // namespace quorumreg::detail
