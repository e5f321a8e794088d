# kvstore: a thin front for CMake presets and the project's scripts.
# `make help` lists the targets. Every target installs missing Debian packages first.

PRESET       ?= release
BUILD        := build/$(PRESET)
FUZZ_SECONDS ?= 60
SEEDS        ?= 20000
ARGS         ?=
SOAK_CYCLES  ?= 500
SOAK_KEYS    ?= 10000000

ifeq ($(CI),true)
export KV_WERROR := ON
endif

.PHONY: help deps configure build run test unit system asan tsan fuzz sim bench \
        format format-check clean soak

help:
	@echo "kvstore targets:"
	@echo "  make run            build (release) and start kvd on 127.0.0.1:7379 (ARGS='--threads 2')"
	@echo "  make test           install deps, build (release) and run every test through ctest"
	@echo "  make unit           unit tests only;   make system: system tests only"
	@echo "  make asan           build and run every test under ASan+UBSan (preset asan)"
	@echo "  make tsan           build and run every test under TSan (preset tsan; Criterion"
	@echo "                      cannot start under TSan, so its unit tests are left out)"
	@echo "  make fuzz           build the libFuzzer targets (clang) and run each FUZZ_SECONDS=$(FUZZ_SECONDS)"
	@echo "  make sim            run the Raft simulator over SEEDS=$(SEEDS) seeds"
	@echo "  make bench          run the benchmarks in perf/ and append figures to docs/PERFORMANCE.md"
	@echo "  make soak           build (release), then the kill -9 torture test over SOAK_CYCLES=$(SOAK_CYCLES)"
	@echo "                      cycles and the recovery of SOAK_KEYS=$(SOAK_KEYS) keys (KV_SEED=N replays)"
	@echo "  make format         clang-format every C file;  make format-check: fail if one differs"
	@echo "  make deps           install the Debian packages the project needs (apt-get)"
	@echo "  make clean          remove build/"
	@echo "Variables: PRESET=release|debug|asan|tsan (default release), CI=true turns on -Werror."

deps:
	@bash tools/deps.sh

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build --preset $(PRESET)

run: build
	@if [ -x $(BUILD)/io/kvd ]; then \
	  mkdir -p data && exec $(BUILD)/io/kvd $(ARGS); \
	else \
	  echo "kvd is not built yet: the server lands with the kvd server issue (io/)."; exit 1; \
	fi

test: build
	@ctest --preset $(PRESET)

unit: build
	@ctest --preset $(PRESET) -L unit

system: build
	@ctest --preset $(PRESET) -L system

asan:
	@$(MAKE) --no-print-directory test PRESET=asan

tsan:
	@$(MAKE) --no-print-directory test PRESET=tsan

fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz
	@bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

sim: build
	@bash cluster/sim.sh $(BUILD) $(SEEDS)

bench: build
	@bash perf/bench.sh $(BUILD)

soak: build
	@KV_BUILD_DIR=$(CURDIR)/$(BUILD) KV_SOURCE_DIR=$(CURDIR) KV_TORTURE_CYCLES=$(SOAK_CYCLES) \
	  KV_RECOVERY_KEYS=$(SOAK_KEYS) /usr/bin/python3 -m pytest -q -s -p no:cacheprovider \
	  tests/system/test_torture.py

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check: deps
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf build
