// quorumreg — open a quorum store from a textual spec, for tools and configuration files.
//
//   dir:/shared/quorum                      directory_store (the embedded default)
//   mem:                                    memory_store (tests; one process)
//   etcd:http://127.0.0.1:2379,http://...   etcd_store; credentials from the environment
//                                           variables QUORUMREG_ETCD_USER / QUORUMREG_ETCD_PASSWORD,
//                                           TLS CA from QUORUMREG_ETCD_CA
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

/// Opens the store named by `spec`; nullptr and `ec` on failure (errc::invalid_argument for
/// an unknown scheme). `deadline` applies to every operation of the store.
inline std::unique_ptr<quorum_store> open_store(std::string_view spec, std::error_code& ec,
                                                std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    ec.clear();
    auto colon = spec.find(':');
    auto scheme = spec.substr(0, colon);
    auto rest = colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
    try {
        if (scheme == "dir" && !rest.empty()) {
            directory_store_options o;
            o.deadline = deadline;
            return std::make_unique<directory_store>(std::string(rest), o);
        }
        if (scheme == "mem") {
            memory_store_options o;
            o.deadline = deadline;
            return std::make_unique<memory_store>(o);
        }
        if (scheme == "etcd" && !rest.empty()) {
            etcd_options o;
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
            return std::make_unique<etcd_store>(std::move(o));
        }
    } catch (const std::system_error& e) {
        ec = e.code();
        return nullptr;
    }
    ec = errc::invalid_argument;
    return nullptr;
}

/// Throwing form.
inline std::unique_ptr<quorum_store> open_store(std::string_view spec,
                                                std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    std::error_code ec;
    auto s = open_store(spec, ec, deadline);
    if (ec)
        throw error(ec, "open store \"" + std::string(spec) + "\"" +
                            (ec == errc::invalid_argument ? " (expected dir:PATH, mem: or etcd:URL[,URL...])" : ""));
    return s;
}

} // namespace quorumreg
