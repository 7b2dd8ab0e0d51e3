#!/usr/bin/env bash
# `make chaos`: the fault runner (tests/chaos/kchat_chaos.py) on a stack of its own: state in
# .state-chaos, ports from 26000, three brokers when KCHAT_KAFKA_NODES=3 is set. The stack
# starts from nothing and is stopped at the end, also on failure. Arguments go to the runner
# (CHAOS_ARGS from make), e.g. --seed 42 --duration 600 --faults 30; the report is written to
# .state-chaos/chaos/report.txt and report.json.
#
# As root, with unshare and iptables, the whole run happens in a network namespace of its own
# (only a loopback), so the runner's network partitions (iptables rules) touch nothing else.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${KCHAT_CHAOS_NETNS:-} && $(id -u) -eq 0 ]] && command -v unshare >/dev/null &&
    command -v iptables >/dev/null; then
    exec unshare --net -- env KCHAT_CHAOS_NETNS=1 bash "$0" "$@"
fi
if [[ ${KCHAT_CHAOS_NETNS:-} == 1 ]]; then
    ip link set lo up
    # Each broker in a cgroup of its own (cgroup v2, when it can be written), so a partition
    # drops everything the broker sends, its own connections included, not only what
    # reaches its listeners.
    cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    if [[ -n $cg2 ]] && mkdir -p "$cg2/kchat-chaos-$$" 2>/dev/null; then
        export KCHAT_KAFKA_CGROUP=$cg2/kchat-chaos-$$ KCHAT_KAFKA_CGROUP_ROOT=$cg2
    fi
fi
export KCHAT_STATE_DIR=$ROOT/.state-chaos KCHAT_PORT_BASE=${KCHAT_PORT_BASE:-26000}
export KCHAT_BUILD_DIR=${KCHAT_BUILD_DIR:-$ROOT/build}
# Three gateways, as the tests run: faults between slots (a gateway killed, its clients
# reconnecting to another) need more than make run's one.
export KCHAT_GATEWAYS=${KCHAT_GATEWAYS:-3}
. "$ROOT/scripts/env.sh"
. "$ROOT/scripts/own-stack.sh"

cleanup() {
    local rc=$?
    own_stack_down
    if [[ -n ${KCHAT_KAFKA_CGROUP:-} ]]; then
        rmdir "$KCHAT_KAFKA_CGROUP"/node* "$KCHAT_KAFKA_CGROUP" 2>/dev/null || true
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

own_stack_fresh
"$ROOT/scripts/stack.sh" up >/dev/null
"$ROOT/.venv/bin/python" "$ROOT/tests/chaos/kchat_chaos.py" --report "$KCHAT_STATE_DIR/chaos" "$@"
