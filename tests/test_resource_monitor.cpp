// Resource monitors: plugins in separate processes, recovered from the store after crashes.
#include <quorumreg/resource_monitor.hpp>
#include "test_support.hpp"
TEST_SUITE("resource_monitor") {
TEST_CASE("placeholder compile") { CHECK(true); }
}
