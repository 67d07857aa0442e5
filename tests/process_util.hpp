// The tests' name for the shared child-process harness (support/quorumreg_support/child_process.hpp).
#pragma once

#include <quorumreg_support/child_process.hpp>

namespace qr_test {
using qr_support::child_process;
} // namespace qr_test
