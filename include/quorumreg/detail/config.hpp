// Build configuration shared by the headers.
//
// QUORUMREG_SEPARATE_COMPILATION (off by default): quorumreg stays header-only, but the etcd
// transport and store (Boost.Beast's HTTP code, the bulk of a translation unit that uses etcd)
// are compiled once, in the one source file that includes <quorumreg/src.hpp>, instead of in
// every file that includes <quorumreg/stores/etcd_store.hpp>. Define it for every file of the
// program, as with BOOST_ASIO_SEPARATE_COMPILATION.
#pragma once

#if defined(QUORUMREG_SEPARATE_COMPILATION)
#define QUORUMREG_DECL
#else
#define QUORUMREG_DECL inline
#endif
