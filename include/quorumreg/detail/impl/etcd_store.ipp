// Out-of-line members of quorumreg::etcd_store. Included by <quorumreg/stores/etcd_store.hpp>
// (header-only builds) or by <quorumreg/src.hpp> (QUORUMREG_SEPARATE_COMPILATION).
#pragma once

#include <quorumreg/stores/etcd_store.hpp>

namespace quorumreg {

QUORUMREG_DECL etcd_store::~etcd_store() = default;

} // namespace quorumreg
