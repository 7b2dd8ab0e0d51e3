#!/usr/bin/env bash
# make bench: the short version of every scenario on a stack of its own, stopped at the end.
#
#   bench/run.sh [--full] [--only NAME,...]
#
# The stack uses KCHAT_STATE_DIR (default .state-bench) and KCHAT_PORT_BASE (default 26500);
# the gateways' rate limits are raised so the load generator's senders are not throttled.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export KCHAT_STATE_DIR=${KCHAT_STATE_DIR:-$ROOT/.state-bench}
export KCHAT_PORT_BASE=${KCHAT_PORT_BASE:-26500}
export KCHAT_RATE_CONN=${KCHAT_RATE_CONN:-100000} KCHAT_RATE_USER=${KCHAT_RATE_USER:-100000}
export KCHAT_MAX_INFLIGHT=${KCHAT_MAX_INFLIGHT:-100000}
short=--short
args=()
for a in "$@"; do
    case $a in
        --full) short= ;;
        *) args+=("$a") ;;
    esac
done
# shellcheck source=../scripts/env.sh
. "$ROOT/scripts/env.sh"
trap '"$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
"$ROOT/scripts/stack.sh" up
"$ROOT/.venv/bin/python" "$ROOT/bench/run.py" $short "${args[@]}"
