# kchat: the two commands of the quick start are `make run` and `make test`.
#
#   make run      install what is missing, build, start the whole stack, print where it runs
#   make stop     stop the stack started by make run
#   make status   what is running
#   make test     the same set-up into its own state folder and ports, then every test
#   make chaos    the fault runner on a stack of its own (.state-chaos): load over the public
#                 protocol while a seeded schedule kills, pauses and restarts processes, then
#                 the checker (CHAOS_ARGS="--seed N --duration S --faults K")
#   make bench    the short version of every benchmark on a stack of its own (.state-bench),
#                 under 10 minutes; see docs/benchmarks.md
#   make build    only build (SANITIZE=1: ASan+UBSan build with clang in build-asan/)
#   make fuzz     build the libFuzzer drivers with clang (build-fuzz/) and run each for
#                 FUZZ_RUNS executions (default 10 million), one at a time at the lowest
#                 priority, merging what they find into fuzz/corpus/ (FUZZ_TARGETS: some of
#                 them); see docs/fuzzing.md
#   make clean    remove the build folders (state folders are kept; make distclean removes them)

SANITIZE ?= 0
# The sanitizer build is clang's (make test-deps installs it), so that the tree also builds
# with a second compiler's -Wall -Wextra -Werror; the regular build is gcc's.
ifeq ($(SANITIZE),1)
BUILD_DIR ?= build-asan
CMAKE_FLAGS += -DKCHAT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang
else
BUILD_DIR ?= build
endif
export KCHAT_BUILD_DIR := $(CURDIR)/$(BUILD_DIR)

FUZZ_RUNS ?= 10000000
FUZZ_TARGETS ?= $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))

.PHONY: all deps test-deps build web run stop status test chaos bench fuzz clean distclean

all: build

deps:
	@scripts/deps.sh

test-deps:
	@scripts/deps.sh --test

build:
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR)

# The browser client: web/dist, served by the ingress.
web:
	@cd web && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
	    npm ci --no-audit --no-fund --loglevel=error; } && npm run build --silent

run: deps build web
	@scripts/stack.sh up

stop:
	@scripts/stack.sh down

status:
	@scripts/stack.sh status

test: test-deps build web
	@SANITIZE=$(SANITIZE) scripts/test.sh

chaos: test-deps build web
	@scripts/chaos.sh $(CHAOS_ARGS)

bench: test-deps build
	@bench/run.sh

# Only the drivers are built with clang: the daemons are gcc's (make build).
fuzz: test-deps
	@CC=clang cmake -S . -B build-fuzz -G Ninja -DKCHAT_FUZZ=ON -DKCHAT_TESTS=OFF \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build-fuzz --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh $(FUZZ_TARGETS)

clean:
	rm -rf build build-asan build-fuzz

distclean: clean
	-@scripts/stack.sh down
	rm -rf .state .state-test .state-test-* .venv .cache web/node_modules web/dist
