// quorumreg::store_limits: the size limits of the embedded backends (memory_store_options and
// directory_store_options carry one).
#pragma once

#include <cstddef>

namespace quorumreg {

/// Size limits applied by the embedded backends (etcd has its own request limit).
struct store_limits {
    std::size_t max_key_bytes = 4096;               ///< longer keys: errc::name_too_long
    std::size_t max_value_bytes = 64 * 1024 * 1024; ///< larger values: errc::value_too_large
};

} // namespace quorumreg
