#!/usr/bin/env bash
# Runs every test against a stack of its own: state in .state-test (or .state-test-asan),
# ports from 27000 (27500 for the sanitizer build), so it never touches a stack that
# `make run` started. The stack starts from nothing and is stopped at the end, also when a
# test fails or the run is interrupted.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A run given its own KCHAT_PORT_BASE gets its own state folder too, so that two runs side by
# side never wipe each other's stack.
if [[ ${SANITIZE:-0} == 1 ]]; then
    export KCHAT_STATE_DIR=$ROOT/.state-test-asan${KCHAT_PORT_BASE:+-$KCHAT_PORT_BASE}
    export KCHAT_PORT_BASE=${KCHAT_PORT_BASE:-27500}
    # Leaks fail the run; a UBSan finding aborts the process that made it.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=23
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
    export KCHAT_STATE_DIR=$ROOT/.state-test${KCHAT_PORT_BASE:+-$KCHAT_PORT_BASE}
    export KCHAT_PORT_BASE=${KCHAT_PORT_BASE:-27000}
fi
export KCHAT_BUILD_DIR=${KCHAT_BUILD_DIR:-$ROOT/build}
# Three gateways, not make run's one: the tests cover deliveries and presence between slots.
export KCHAT_GATEWAYS=${KCHAT_GATEWAYS:-3}
. "$ROOT/scripts/env.sh"
. "$ROOT/scripts/own-stack.sh"

cleanup() {
    local rc=$?
    own_stack_down
    # A sanitizer report in any daemon's log fails the run even if every test passed.
    if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$KCHAT_STATE_DIR"/logs/*.log 2>/dev/null; then
        echo "test: sanitizer reports in the daemon logs above" >&2
        grep -hE -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$KCHAT_STATE_DIR"/logs/*.log | head -100 >&2
        rc=1
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# From nothing: stop whatever an interrupted run left, then wipe its state.
own_stack_fresh

echo "== unit tests (CTest)"
ctest --test-dir "$KCHAT_BUILD_DIR" --output-on-failure -j2

echo "== stack"
"$ROOT/scripts/stack.sh" up

echo "== system tests (pytest)"
# the slowest tests at the end of the output: where the run's time goes
"$ROOT/.venv/bin/python" -m pytest "$ROOT/tests/system" -q -p no:cacheprovider \
    --durations=25 --durations-min=5 "$@"
