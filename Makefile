# quorumreg — thin front end over CMake. `make demo` and `make test` install whatever is
# missing (Debian 12, root or sudo), configure, build and run.
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
STORE      ?= dir
CMAKE_ARGS ?=
# Evaluated when used (after the deps targets may have installed ninja); an existing build
# directory keeps the generator it was configured with.
GENERATOR   = $(if $(wildcard $(1)/CMakeCache.txt),,$(if $(shell command -v ninja 2>/dev/null),-G Ninja,))
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo)

# Packages for building and running the library, demo and tests.
CORE_PKGS  := cmake g++ make ninja-build ccache libboost1.81-dev libboost-filesystem1.81-dev \
              libboost-json1.81-dev libssl-dev doctest-dev
ETCD_PKGS  := etcd-server etcd-client
DEMO_PKGS  := $(CORE_PKGS) $(if $(filter etcd,$(STORE)),$(ETCD_PKGS))
TEST_PKGS  := $(CORE_PKGS) clang clang-tidy clang-format libclang-rt-14-dev $(ETCD_PKGS) openssl \
              libbenchmark-dev libsqlite3-dev liblmdb-dev fuse3 libfuse3-dev pkg-config libfaketime prometheus doxygen
FUZZ_PKGS  := $(CORE_PKGS) clang libclang-rt-14-dev
DOCS_PKGS  := doxygen
BENCH_PKGS := $(CORE_PKGS) libbenchmark-dev libsqlite3-dev liblmdb-dev etcd-server etcd-client

.PHONY: all deps-core deps-demo deps-test deps-bench deps-fuzz deps-docs configure build demo test bench soak fuzz docs clean

all: build

define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps-core:
	$(call install_missing,$(CORE_PKGS))
deps-demo:
	$(call install_missing,$(DEMO_PKGS))
deps-test:
	$(call install_missing,$(TEST_PKGS))
deps-bench:
	$(call install_missing,$(BENCH_PKGS))
deps-fuzz:
	$(call install_missing,$(FUZZ_PKGS))
deps-docs:
	$(call install_missing,$(DOCS_PKGS))

configure:
	cmake -S . -B $(BUILD) $(call GENERATOR,$(BUILD)) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: deps-core configure
	cmake --build $(BUILD)

demo: deps-demo configure
	cmake --build $(BUILD) --target quorumreg_demo
	$(BUILD)/examples/quorumreg_demo --store $(STORE)

# The member reference of the public headers (Doxygen) in build-docs/html; fails on a
# documentation error or on more undocumented members than docs/undocumented.budget.
docs: deps-docs
	tools/check_docs.sh

# The test build includes the benchmarks: ctest runs each once at a tiny size (label bench_smoke).
test: deps-test
	cmake -S . -B $(BUILD) $(call GENERATOR,$(BUILD)) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DQUORUMREG_BUILD_BENCH=ON $(CMAKE_ARGS)
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure --timeout 900 $(CTEST_ARGS)

bench: deps-bench
	cmake -S . -B $(BUILD)-bench $(call GENERATOR,$(BUILD)-bench) -DCMAKE_BUILD_TYPE=Release -DQUORUMREG_BUILD_BENCH=ON $(CMAKE_ARGS)
	cmake --build $(BUILD)-bench --target quorumreg_bench_all
	$(BUILD)-bench/bench/quorumreg_bench_compare $(BENCH_ARGS)

# Soak loops (not in CI; docs/reliability.md): each ends with "acked=N lost=0 corrupt=0".
SOAK_HIVE_ROUNDS     ?= 10000
SOAK_FAILOVER_ROUNDS ?= 500
SOAK_ETCD_ROUNDS     ?= 200
SOAK_POWERLOSS_CUTS  ?= 100000
soak: deps-test configure
	cmake --build $(BUILD) --target quorumreg_soak_all
	@rc=0; \
	$(BUILD)/tests/soak_hive_kill $(SOAK_HIVE_ROUNDS) || rc=1; \
	$(BUILD)/tests/soak_checkpoint_failover $(SOAK_FAILOVER_ROUNDS) || rc=1; \
	$(BUILD)/tests/soak_etcd_members $(SOAK_ETCD_ROUNDS) || rc=1; \
	$(BUILD)/tests/soak_powerloss $(SOAK_POWERLOSS_CUTS) || rc=1; \
	exit $$rc

# make fuzz: every libFuzzer target FUZZ_SECONDS each (FUZZ_TARGETS: a subset, e.g. "journal subtree").
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
fuzz: deps-fuzz
	FUZZ_BUILD=$(BUILD)-fuzz fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD) $(BUILD)-bench $(BUILD)-fuzz
