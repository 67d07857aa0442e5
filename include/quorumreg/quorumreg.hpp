// quorumreg — umbrella header: every core component. Opt-in backends (etcd) are not included;
// include <quorumreg/stores/etcd_store.hpp> and link quorumreg::etcd for those.
#pragma once

#include <quorumreg/error.hpp>
#include <quorumreg/registry.hpp>
#include <quorumreg/value.hpp>
#include <quorumreg/version.hpp>
