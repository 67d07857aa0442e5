// quorumreg — umbrella header: every core component and the embedded stores. The etcd backend
// is opt-in: include <quorumreg/stores/etcd_store.hpp> and link quorumreg::etcd for it.
#pragma once

#include <quorumreg/checkpoint.hpp>
#include <quorumreg/cluster_writer.hpp>
#include <quorumreg/dependency_graph.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/lifecycle.hpp>
#include <quorumreg/quorum_store.hpp>
#include <quorumreg/registry.hpp>
#include <quorumreg/registry_types.hpp>
#include <quorumreg/resource_monitor.hpp>
#include <quorumreg/resource_types.hpp>
#include <quorumreg/service_controller.hpp>
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg/stores/memory_store.hpp>
#include <quorumreg/value.hpp>
#include <quorumreg/version.hpp>
