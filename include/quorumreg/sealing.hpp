// Sealing: AES-256-GCM under a cluster key, for secrets that travel through the quorum
// (issue 23's secret checkpoints build on it).
//
//   quorumreg::create_key_file("/etc/app/cluster.key", "k2026");     // once, on one node; copy 0600
//   auto ring = quorumreg::key_ring::from_file("/etc/app/cluster.key");
//   std::string blob = quorumreg::seal(ring, secret_view, "SQL|Software\\App|7");
//   quorumreg::secret s = quorumreg::unseal(ring, blob, "SQL|Software\\App|7");
//
// - Blob: "QRSL" | version 1 | key-id length u8 | key id | 96-bit random nonce | ciphertext |
//   128-bit tag. The header (key id included) and the caller's associated data are
//   authenticated: a blob opens only with the same key AND the same associated data, so a blob
//   moved to another resource, subtree or generation (the checkpoint layer binds those) fails.
// - Random nonces: at most 2^32 seals per key keep the nonce-collision probability below 2^-32
//   (NIST SP 800-38D); rotate the key long before that.
// - Keys: 32 random bytes with an id of 1-64 characters [A-Za-z0-9._-]. A key file is one line
//   `quorumreg-key 1 ID HEX` and must be a regular file (no symlink), owned by the effective
//   user, with no group or other permission bits (errc::key_file_unsafe otherwise). A provider
//   callback can serve keys the ring has not loaded (a KMS, a TPM).
// - Plaintext lives only in `secret` objects, whose buffers are wiped (OPENSSL_cleanse) when
//   freed or grown; so are key bytes and the key file's text once parsed.
// - Errors: errc::secret_key_unknown (no loaded key and no provider answer for the blob's key
//   id), errc::secret_auth_failed (wrong key, tampered bytes, or other associated data: GCM
//   cannot tell which), errc::corrupt_data (not a sealed blob), errc::invalid_argument.
#pragma once

#include <quorumreg/detail/text.hpp>
#include <quorumreg/error.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg {

/// Allocator whose memory is wiped before it is returned.
template <class T> struct wiping_allocator {
    using value_type = T; ///< what it allocates
    wiping_allocator() = default;
    /// Rebinding (allocators of every T are equal).
    template <class U> wiping_allocator(const wiping_allocator<U>&) noexcept {}
    /// std::allocator's.
    T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
    /// Wipes the `n` objects' bytes (OPENSSL_cleanse, not optimised away), then frees them.
    void deallocate(T* p, std::size_t n) noexcept {
        OPENSSL_cleanse(p, n * sizeof(T));
        std::allocator<T>{}.deallocate(p, n);
    }
    /// Always equal: memory from one may be freed by another.
    template <class U> bool operator==(const wiping_allocator<U>&) const noexcept { return true; }
};

/// Bytes that must not outlive their use: moved, never copied implicitly, wiped when freed.
class secret {
public:
    secret() = default;
    /// A copy of `bytes` (wipe the source yourself if it held the secret).
    explicit secret(std::string_view bytes) : b_(bytes.begin(), bytes.end()) {}
    /// Takes over `o`'s bytes.
    secret(secret&&) noexcept = default;
    /// Wipes this secret's bytes and takes over `o`'s.
    secret& operator=(secret&&) noexcept = default;
    secret(const secret&) = delete;
    secret& operator=(const secret&) = delete;
    ~secret() = default;

    /// An explicit copy, for the rare place that needs two.
    secret clone() const { return secret(view()); }
    /// The bytes (valid until the secret changes or dies).
    std::string_view view() const noexcept { return {b_.data(), b_.size()}; }
    /// How many bytes.
    std::size_t size() const noexcept { return b_.size(); }
    /// No bytes.
    bool empty() const noexcept { return b_.empty(); }
    /// Writable storage of `n` bytes (contents unspecified until written).
    char* resize(std::size_t n) {
        b_.resize(n);
        return b_.data();
    }
    /// Wipes the bytes now and empties the secret.
    void clear() noexcept {
        OPENSSL_cleanse(b_.data(), b_.size());
        b_.clear();
    }

private:
    std::vector<char, wiping_allocator<char>> b_;
};

inline constexpr std::size_t sealing_key_size = 32;

namespace detail {

inline constexpr std::string_view sealed_magic = "QRSL";
inline constexpr std::uint8_t sealed_version = 1;
inline constexpr std::size_t gcm_nonce_size = 12;
inline constexpr std::size_t gcm_tag_size = 16;

inline bool valid_key_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

struct cipher_ctx {
    EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
    cipher_ctx() = default;
    cipher_ctx(const cipher_ctx&) = delete;
    cipher_ctx& operator=(const cipher_ctx&) = delete;
    ~cipher_ctx() { EVP_CIPHER_CTX_free(p); }
};

inline const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

[[noreturn]] inline void throw_sealing(errc e, const std::string& what) { throw error(make_error_code(e), what); }

} // namespace detail

/// Cluster keys by id, one of them current (what seal() uses).
class key_ring {
public:
    /// Serves keys the ring does not hold (a KMS, a TPM): the key for an id, or nullopt.
    using provider = std::function<std::optional<secret>(std::string_view key_id)>;

    key_ring() = default;

    /// Adds (or replaces) a key; the first key added becomes current.
    void add(std::string_view id, secret key) {
        if (!detail::valid_key_id(id)) {
            detail::throw_sealing(errc::invalid_argument,
                                  "key id \"" + std::string(id) + "\": 1-64 characters of [A-Za-z0-9._-]");
        }
        if (key.size() != sealing_key_size) {
            detail::throw_sealing(errc::invalid_argument, "key \"" + std::string(id) + "\": must be 32 bytes, not " +
                                                              std::to_string(key.size()));
        }
        keys_.insert_or_assign(std::string(id), std::move(key));
        if (current_.empty()) current_ = std::string(id);
    }
    /// Seals new blobs under key `id` (errc::secret_key_unknown if it is not loaded).
    void set_current(std::string_view id) {
        if (!keys_.count(std::string(id))) {
            detail::throw_sealing(errc::secret_key_unknown, "key \"" + std::string(id) + "\" is not loaded");
        }
        current_ = std::string(id);
    }
    /// Forgets a key (after every blob sealed under it was resealed). Not the current one.
    void retire(std::string_view id) {
        if (id == current_) {
            detail::throw_sealing(errc::invalid_argument,
                                  "key \"" + std::string(id) + "\" is current; set another first");
        }
        keys_.erase(std::string(id));
    }
    /// Asks `p` for keys that are not loaded (a KMS, a file per key id).
    void set_provider(provider p) { provider_ = std::move(p); }

    /// The id new blobs are sealed under ("" if no key is loaded).
    const std::string& current() const noexcept { return current_; }
    /// Whether key `id` is loaded (the provider is not asked).
    bool has(std::string_view id) const { return keys_.count(std::string(id)) != 0; }
    /// The loaded key ids, in order.
    std::vector<std::string> ids() const {
        std::vector<std::string> out;
        for (const auto& [id, k] : keys_)
            out.push_back(id);
        return out;
    }

    /// The key for `id`: loaded, else from the provider; nullopt if neither has it.
    std::optional<secret> key(std::string_view id) const {
        auto it = keys_.find(std::string(id));
        if (it != keys_.end()) return it->second.clone();
        if (provider_) return provider_(id);
        return std::nullopt;
    }

    /// Loads one key file (see the header comment); its key becomes current if none is.
    void load_file(const std::filesystem::path& path, std::error_code& ec, std::string* why = nullptr);
    /// Throwing form of load_file(path, ec, why).
    void load_file(const std::filesystem::path& path) {
        std::error_code ec;
        std::string why;
        load_file(path, ec, &why);
        if (ec) throw error(ec, "load key file \"" + path.string() + "\": " + why);
    }
    /// A ring holding the one key of `path`, current.
    static key_ring from_file(const std::filesystem::path& path) {
        key_ring r;
        r.load_file(path);
        return r;
    }

private:
    std::map<std::string, secret> keys_;
    std::string current_;
    provider provider_;
};

inline void key_ring::load_file(const std::filesystem::path& path, std::error_code& ec, std::string* why) {
    ec.clear();
    auto fail = [&](errc e, std::string msg) {
        ec = make_error_code(e);
        if (why) *why = std::move(msg);
    };
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) return fail(errc::key_file_unsafe, "is a symbolic link");
        return fail(e == ENOENT   ? errc::not_found
                    : e == EACCES ? errc::access_denied
                                  : errc::io_error,
                    std::generic_category().message(e));
    }
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } c{fd};
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) return fail(errc::io_error, std::generic_category().message(errno));
    if (!S_ISREG(st.st_mode)) return fail(errc::key_file_unsafe, "not a regular file");
    if (st.st_uid != ::geteuid()) {
        return fail(errc::key_file_unsafe, "owned by uid " + std::to_string(st.st_uid) +
                                               ", not by this process's uid " + std::to_string(::geteuid()));
    }
    if (st.st_mode & 077) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return fail(errc::key_file_unsafe, std::string("mode ") + mode + " lets others read it; chmod 600");
    }
    secret text;
    char* buf = text.resize(4096);
    ssize_t n = ::read(fd, buf, 4096);
    if (n < 0) return fail(errc::io_error, std::generic_category().message(errno));
    std::string_view t(buf, static_cast<std::size_t>(n));
    // quorumreg-key 1 ID HEX\n
    constexpr std::string_view prefix = "quorumreg-key 1 ";
    if (t.substr(0, prefix.size()) != prefix) return fail(errc::corrupt_data, "not a quorumreg key file");
    t.remove_prefix(prefix.size());
    auto sp = t.find(' ');
    if (sp == std::string_view::npos) return fail(errc::corrupt_data, "no key after the id");
    auto id = t.substr(0, sp);
    auto hex = t.substr(sp + 1);
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r'))
        hex.remove_suffix(1);
    if (!detail::valid_key_id(id)) return fail(errc::corrupt_data, "bad key id \"" + std::string(id) + "\"");
    if (hex.size() != 2 * sealing_key_size) return fail(errc::corrupt_data, "the key must be 64 hex digits");
    secret key;
    char* k = key.resize(sealing_key_size);
    for (std::size_t i = 0; i < sealing_key_size; ++i) {
        int hi = detail::hex_digit_value(hex[2 * i]), lo = detail::hex_digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return fail(errc::corrupt_data, "the key must be 64 hex digits");
        k[i] = static_cast<char>((hi << 4) | lo);
    }
    add(id, std::move(key));
}

/// Writes a new random key to `path` (0600, O_EXCL: never over an existing file), synced.
inline void create_key_file(const std::filesystem::path& path, std::string_view id) {
    if (!detail::valid_key_id(id)) {
        detail::throw_sealing(errc::invalid_argument,
                              "key id \"" + std::string(id) + "\": 1-64 characters of [A-Za-z0-9._-]");
    }
    unsigned char raw[sealing_key_size];
    if (RAND_bytes(raw, sizeof raw) != 1) detail::throw_sealing(errc::io_error, "no randomness for a key");
    secret line;
    std::string head = "quorumreg-key 1 " + std::string(id) + " ";
    char* p = line.resize(head.size() + 2 * sealing_key_size + 1);
    std::copy(head.begin(), head.end(), p);
    detail::hex_encode_into(p + head.size(), raw, sealing_key_size);
    p[line.size() - 1] = '\n';
    OPENSSL_cleanse(raw, sizeof raw);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        detail::throw_sealing(e == EEXIST ? errc::already_exists : errc::io_error,
                              "create key file \"" + path.string() + "\": " + std::generic_category().message(e));
    }
    bool ok = ::write(fd, line.view().data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
        ::unlink(path.c_str());
        detail::throw_sealing(errc::io_error, "write key file \"" + path.string() + "\"");
    }
    int dfd = ::open(path.parent_path().empty() ? "." : path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

/// The key id a sealed blob names, or nullopt if `blob` is not one.
inline std::optional<std::string> sealed_key_id(std::string_view blob) {
    if (blob.size() < 6 || blob.substr(0, 4) != detail::sealed_magic ||
        static_cast<std::uint8_t>(blob[4]) != detail::sealed_version)
        return std::nullopt;
    auto n = static_cast<std::uint8_t>(blob[5]);
    if (blob.size() < 6 + n + detail::gcm_nonce_size + detail::gcm_tag_size) return std::nullopt;
    return std::string(blob.substr(6, n));
}

/// Seals `plaintext` under key `key_id` (default: the ring's current key), bound to `aad`.
inline std::string seal(const key_ring& ring, std::string_view plaintext, std::string_view aad,
                        std::string_view key_id = {}) {
    std::string id(key_id.empty() ? std::string_view(ring.current()) : key_id);
    auto key = ring.key(id);
    if (!key) detail::throw_sealing(errc::secret_key_unknown, "seal: no key \"" + id + "\" is loaded");
    if (key->size() != sealing_key_size) detail::throw_sealing(errc::invalid_argument, "seal: key must be 32 bytes");
    std::string out(detail::sealed_magic);
    out += static_cast<char>(detail::sealed_version);
    out += static_cast<char>(id.size());
    out += id;
    unsigned char nonce[detail::gcm_nonce_size];
    if (RAND_bytes(nonce, sizeof nonce) != 1) detail::throw_sealing(errc::io_error, "seal: no randomness for a nonce");
    out.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
    const std::size_t header = out.size();
    detail::cipher_ctx c;
    int len = 0;
    bool ok = c.p && EVP_EncryptInit_ex(c.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(sizeof nonce), nullptr) == 1 &&
              EVP_EncryptInit_ex(c.p, nullptr, nullptr, detail::u8(key->view()), nonce) == 1 &&
              EVP_EncryptUpdate(c.p, nullptr, &len, detail::u8(out), static_cast<int>(header)) == 1 &&
              EVP_EncryptUpdate(c.p, nullptr, &len, detail::u8(aad), static_cast<int>(aad.size())) == 1;
    out.resize(header + plaintext.size() + detail::gcm_tag_size);
    auto* ct = reinterpret_cast<unsigned char*>(out.data() + header);
    ok = ok && EVP_EncryptUpdate(c.p, ct, &len, detail::u8(plaintext), static_cast<int>(plaintext.size())) == 1 &&
         EVP_EncryptFinal_ex(c.p, ct + len, &len) == 1 &&
         EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_GET_TAG, static_cast<int>(detail::gcm_tag_size),
                             ct + plaintext.size()) == 1;
    if (!ok) detail::throw_sealing(errc::io_error, "seal: OpenSSL AES-256-GCM failed");
    return out;
}

/// Opens a sealed blob bound to `aad`; `ec` and an empty secret on failure.
inline secret unseal(const key_ring& ring, std::string_view blob, std::string_view aad, std::error_code& ec,
                     std::string* why = nullptr) {
    ec.clear();
    auto fail = [&](errc e, std::string msg) {
        ec = make_error_code(e);
        if (why) *why = std::move(msg);
        return secret{};
    };
    auto id = sealed_key_id(blob);
    if (!id) return fail(errc::corrupt_data, "not a sealed blob (or truncated)");
    auto key = ring.key(*id);
    if (!key)
        return fail(errc::secret_key_unknown, "the blob is sealed under key \"" + *id + "\", which is not loaded");
    if (key->size() != sealing_key_size) return fail(errc::invalid_argument, "key \"" + *id + "\" is not 32 bytes");
    const std::size_t header = 6 + id->size() + detail::gcm_nonce_size;
    const std::size_t ct_len = blob.size() - header - detail::gcm_tag_size;
    const auto* nonce = detail::u8(blob.substr(6 + id->size()));
    secret out;
    auto* pt = reinterpret_cast<unsigned char*>(out.resize(ct_len == 0 ? 1 : ct_len));
    detail::cipher_ctx c;
    int len = 0;
    std::string tag(blob.substr(header + ct_len, detail::gcm_tag_size));
    bool ok =
        c.p && EVP_DecryptInit_ex(c.p, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(detail::gcm_nonce_size), nullptr) == 1 &&
        EVP_DecryptInit_ex(c.p, nullptr, nullptr, detail::u8(key->view()), nonce) == 1 &&
        EVP_DecryptUpdate(c.p, nullptr, &len, detail::u8(blob), static_cast<int>(header)) == 1 &&
        EVP_DecryptUpdate(c.p, nullptr, &len, detail::u8(aad), static_cast<int>(aad.size())) == 1 &&
        EVP_DecryptUpdate(c.p, pt, &len, detail::u8(blob.substr(header)), static_cast<int>(ct_len)) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_SET_TAG, static_cast<int>(detail::gcm_tag_size), tag.data()) == 1;
    if (!ok || EVP_DecryptFinal_ex(c.p, pt + len, &len) != 1) {
        out.clear();
        return fail(errc::secret_auth_failed, "sealed blob (key \"" + *id +
                                                  "\") does not open: wrong key, tampered bytes, or it belongs to "
                                                  "another resource, subtree or generation");
    }
    if (ct_len == 0)
        out.clear();
    else
        out.resize(ct_len);
    return out;
}

inline secret unseal(const key_ring& ring, std::string_view blob, std::string_view aad) {
    std::error_code ec;
    std::string why;
    auto s = unseal(ring, blob, aad, ec, &why);
    if (ec) throw error(ec, "unseal: " + why);
    return s;
}

/// Opens `blob` and seals its content again under `new_key_id` (default: current), same `aad`:
/// what key rotation does to every kept generation.
inline std::string reseal(const key_ring& ring, std::string_view blob, std::string_view aad,
                          std::string_view new_key_id = {}) {
    auto plain = unseal(ring, blob, aad);
    return seal(ring, plain.view(), aad, new_key_id);
}

} // namespace quorumreg
