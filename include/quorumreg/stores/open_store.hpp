// quorumreg — open a quorum store from a textual spec, for tools and configuration files.
//
//   dir:/shared/quorum                      directory_store (the embedded default)
//   mem:                                    memory_store (tests; one process)
//   etcd:http://127.0.0.1:2379,http://...   etcd_store; credentials from the environment
//                                           variables QUORUMREG_ETCD_USER / QUORUMREG_ETCD_PASSWORD,
//                                           TLS CA from QUORUMREG_ETCD_CA
//
// open_store never creates a store (a typo or an unmounted share must not become a new,
// empty quorum); create_store does, and only where none exists (`qreg store init`).
//
// Including this header pulls in the etcd backend: link quorumreg::etcd.
#pragma once

#include <quorumreg/quorum_store.hpp>
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/etcd_store.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace quorumreg {

/// How open_store opens a store.
struct store_open_options {
    std::chrono::milliseconds deadline{5000}; ///< of every operation of the store
    /// dir: never write anything (directory_store_options::read_only). etcd and mem: no
    /// effect (an etcd client writes only when asked to; its identity key is created on first
    /// use, see etcd_store::identity).
    bool read_only = false;
};

namespace detail {

inline etcd_store_options etcd_options_from_spec(std::string_view rest, std::chrono::milliseconds deadline) {
    etcd_store_options o;
    o.deadline = deadline;
    o.endpoints.clear();
    std::size_t start = 0;
    while (start <= rest.size()) {
        auto end = rest.find(',', start);
        auto url = rest.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (!url.empty()) o.endpoints.emplace_back(url);
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    if (const char* u = std::getenv("QUORUMREG_ETCD_USER")) o.username = u;
    if (const char* p = std::getenv("QUORUMREG_ETCD_PASSWORD")) o.password = p;
    if (const char* ca = std::getenv("QUORUMREG_ETCD_CA")) o.tls.ca_file = ca;
    return o;
}

/// Opens (create: creates, failing with already_exists if the store exists) `spec`.
inline std::unique_ptr<quorum_store> open_store_spec(std::string_view spec, const store_open_options& opts, bool create,
                                                     std::error_code& ec, std::string* why) {
    ec.clear();
    if (why) why->clear();
    auto colon = spec.find(':');
    auto scheme = spec.substr(0, colon);
    auto rest = colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
    try {
        if (scheme == "dir" && !rest.empty()) {
            directory_store_options o;
            o.deadline = opts.deadline;
            o.read_only = opts.read_only && !create;
            o.create = create;
            o.exclusive = create;
            return std::make_unique<directory_store>(std::string(rest), o);
        }
        if (scheme == "mem") {
            memory_store_options o;
            o.deadline = opts.deadline;
            return std::make_unique<memory_store>(o);
        }
        if (scheme == "etcd" && !rest.empty()) {
            auto s = std::make_unique<etcd_store>(etcd_options_from_spec(rest, opts.deadline));
            if (create) {
                // The store is the cluster; creating it means giving it its identity.
                s->create(etcd_store::identity_key, random_store_identity(), 0, ec);
                if (ec == errc::compare_failed) {
                    ec = errc::already_exists;
                    if (why) *why = "the store " + s->describe() + " already has an identity";
                }
                if (ec) return nullptr;
            }
            return s;
        }
    } catch (const std::system_error& e) {
        ec = e.code();
        if (why) *why = e.what();
        return nullptr;
    }
    ec = errc::invalid_argument;
    if (why) *why = "unknown store \"" + std::string(spec) + "\" (expected dir:PATH, mem: or etcd:URL[,URL...])";
    return nullptr;
}

} // namespace detail

/// Opens the store named by `spec`; nullptr and `ec` on failure (errc::invalid_argument for
/// an unknown scheme). Never creates a store: a missing directory store is errc::not_found
/// ("no store at PATH"); see create_store. `why` (optional) receives the full message.
inline std::unique_ptr<quorum_store> open_store(std::string_view spec, const store_open_options& opts,
                                                std::error_code& ec, std::string* why = nullptr) {
    return detail::open_store_spec(spec, opts, false, ec, why);
}

/// Opens the store named by `spec`; `deadline` applies to every operation of the store.
inline std::unique_ptr<quorum_store> open_store(std::string_view spec, std::chrono::milliseconds deadline,
                                                std::error_code& ec) {
    store_open_options o;
    o.deadline = deadline;
    return open_store(spec, o, ec);
}
/// Opens the store named by `spec` with the default deadline (5 s).
inline std::unique_ptr<quorum_store> open_store(std::string_view spec, std::error_code& ec) {
    return open_store(spec, store_open_options{}, ec);
}
/// The old argument order (the error code is last everywhere else).
[[deprecated("use open_store(spec, deadline, ec)")]] inline std::unique_ptr<quorum_store>
open_store(std::string_view spec, std::error_code& ec, std::chrono::milliseconds deadline) {
    return open_store(spec, deadline, ec);
}

/// Creates a new store (what `qreg store init` does): dir: the directory (if missing) and an
/// empty store with a new identity; etcd: the cluster's identity key; mem: a fresh store.
/// errc::already_exists if there is a store already (nothing is changed then).
inline std::unique_ptr<quorum_store> create_store(std::string_view spec, const store_open_options& opts,
                                                  std::error_code& ec, std::string* why = nullptr) {
    return detail::open_store_spec(spec, opts, true, ec, why);
}
/// create_store with `deadline` applied to every operation of the new store.
inline std::unique_ptr<quorum_store> create_store(std::string_view spec, std::chrono::milliseconds deadline,
                                                  std::error_code& ec) {
    store_open_options o;
    o.deadline = deadline;
    return create_store(spec, o, ec);
}

/// Throwing form.
inline std::unique_ptr<quorum_store> open_store(std::string_view spec,
                                                std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    std::error_code ec;
    std::string why;
    store_open_options o;
    o.deadline = deadline;
    auto s = open_store(spec, o, ec, &why);
    if (ec) throw error(ec, why);
    return s;
}

/// Throwing form of create_store.
inline std::unique_ptr<quorum_store> create_store(std::string_view spec,
                                                  std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    std::error_code ec;
    std::string why;
    store_open_options o;
    o.deadline = deadline;
    auto s = create_store(spec, o, ec, &why);
    if (ec) throw error(ec, why);
    return s;
}

} // namespace quorumreg
