// The out-of-line definitions for QUORUMREG_SEPARATE_COMPILATION (see detail/config.hpp):
// include this from exactly one source file of the program. Without the macro the headers
// already define everything inline, and including this is the same as including them.
#pragma once

#include <quorumreg/detail/config.hpp>
#include <quorumreg/stores/etcd_store.hpp>

#if defined(QUORUMREG_SEPARATE_COMPILATION)
#include <quorumreg/detail/impl/etcd_http.ipp>
#include <quorumreg/detail/impl/etcd_store.ipp>
#endif
