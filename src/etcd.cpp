// The one translation unit that holds the etcd transport and store for programs built with
// QUORUMREG_SEPARATE_COMPILATION (the quorumreg_etcd_separate target; see detail/config.hpp).
#include <quorumreg/src.hpp>
