// The tests' name for the shared etcd harness (support/quorumreg_support/etcd_cluster.hpp).
#pragma once

#include <quorumreg_support/etcd_cluster.hpp>

namespace qr_test {
using qr_support::etcd_cluster;
namespace etcd_detail = qr_support::etcd_detail;
} // namespace qr_test
