#!/usr/bin/env bash
# make bench: the short version of every scenario on a stack of its own, stopped at the end.
#
#   bench/run.sh [--full] [--only NAME,...] [--baseline REF]
#
# The stack uses KCHAT_STATE_DIR (default .state-bench) and KCHAT_PORT_BASE (default 26500);
# the gateways' rate limits are raised so the load generator's senders are not throttled, and
# the broker opens JMX on 127.0.0.1, port KCHAT_PORT_BASE + 50 (KCHAT_KAFKA_JMX_PORT), for
# its request counters.
#
# --baseline REF (a commit id, HEAD~1, a branch) compares the working tree with REF in the
# same run. REF is checked out in a git worktree of its own, $KCHAT_STATE_DIR/compare/
# baseline-src (detached, never committed; kept and moved to the next REF given, `git
# worktree remove --force` drops it), and built there by its own Makefile. Its stack (its
# scripts, schemas and topics; state in $KCHAT_STATE_DIR/compare/baseline, ports from
# KCHAT_BASELINE_PORT_BASE, default KCHAT_PORT_BASE + 200) runs the kchat scenarios among
# those chosen (idle, one2one, groups, ramp, kchat's part of peers) and is stopped; then the
# working tree's stack (state in $KCHAT_STATE_DIR/compare/current) runs every scenario
# chosen, and the summary ends with a table baseline vs current. Both state folders start
# empty and both stacks get the same unmeasured 1:1 load before their first kchat scenario
# (run.py --warmup: 10 s, 30 s with --full) to warm the broker's JIT; both are driven by this
# tree's run.py and load generator; the second starts only once no process of the first is
# left. A tree without a built web client (web/dist) gets a placeholder page for its ingress.
#
# Exit status: 0 when every scenario ran and every check of the load generator passed, 1
# otherwise (never because of a timing or a ratio), 2 when the baseline cannot be built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${KCHAT_STATE_DIR:-$ROOT/.state-bench}
BASE=${KCHAT_PORT_BASE:-26500}
BASELINE_BASE=${KCHAT_BASELINE_PORT_BASE:-$((BASE + 200))}
export KCHAT_RATE_CONN=${KCHAT_RATE_CONN:-100000} KCHAT_RATE_USER=${KCHAT_RATE_USER:-100000}
export KCHAT_MAX_INFLIGHT=${KCHAT_MAX_INFLIGHT:-100000}
# The load generator and kchat-kafka-alone are this tree's, whichever stack they drive; the
# brokers of both trees take their jars from this tree's cache.
export KCHAT_BENCH_BUILD_DIR=${KCHAT_BUILD_DIR:-$ROOT/build}
export KCHAT_CACHE_DIR=${KCHAT_CACHE_DIR:-$ROOT/.cache}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

short=--short
warmup=10
baseline=
only=
args=()
while (($#)); do
    case $1 in
        --full) short= warmup=30 ;;
        --baseline) (($# >= 2)) || usage; baseline=$2; shift ;;
        --baseline=*) baseline=${1#--baseline=} ;;
        --only) (($# >= 2)) || usage; only=$2; args+=("$1" "$2"); shift ;;
        --only=*) only=${1#--only=}; args+=("$1") ;;
        -h | --help) usage ;;
        *) args+=("$1") ;;
    esac
    shift
done

# The JVM options scripts/kafka.sh adds for KCHAT_KAFKA_JMX_PORT, for a baseline whose
# kafka.sh predates that variable (it passes them on through KCHAT_KAFKA_JVM_OPTS).
jmx_jvm_opts() {
    echo "-Dcom.sun.management.jmxremote.port=$1 -Dcom.sun.management.jmxremote.rmi.port=$1" \
        "-Dcom.sun.management.jmxremote.host=127.0.0.1 -Djava.rmi.server.hostname=127.0.0.1" \
        "-Dcom.sun.management.jmxremote.local.only=true" \
        "-Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false"
}

# The environment of a stack of TREE with state in STATE_DIR and ports from PORT_BASE (to be
# called in a subshell). For another tree than this one, every variable scripts/env.sh
# derives from those is unset first, so that a port set for this tree's stack is not the
# baseline's too.
stack_env() {
    local tree=$1 build=$2 state=$3 base=$4 v
    if [[ $tree != "$ROOT" ]]; then
        for v in $(sed -n 's/^ *\(KCHAT_[A-Z0-9_]*\)=\${\1:-.*/\1/p' "$ROOT/scripts/env.sh" \
            "$tree/scripts/env.sh") KCHAT_INGRESS_PORT; do
            unset "$v"
        done
    fi
    export KCHAT_ROOT=$tree KCHAT_BUILD_DIR=$build KCHAT_STATE_DIR=$state KCHAT_PORT_BASE=$base
    export KCHAT_KAFKA_JMX_PORT=$((base + 50))
    # The broker's collections, for the summary's pauses (run.py, broker_gc).
    export KCHAT_KAFKA_JVM_OPTS="${KCHAT_KAFKA_JVM_OPTS:-} -Xlog:gc:file=$state/kafka-gc.log:uptime"
    if ! grep -q KCHAT_KAFKA_JMX_PORT "$tree/scripts/kafka.sh"; then
        KCHAT_KAFKA_JVM_OPTS="${KCHAT_KAFKA_JVM_OPTS:-} $(jmx_jvm_opts "$KCHAT_KAFKA_JMX_PORT")"
        export KCHAT_KAFKA_JVM_OPTS
    fi
    # The ingress serves the web client, which no scenario loads: a tree without a built
    # client (web/dist) gets this tree's, or a placeholder page, so that the stack starts.
    if [[ -z ${KCHAT_WEB_DIST:-} && ! -f $tree/web/dist/index.html ]]; then
        if [[ -f $ROOT/web/dist/index.html ]]; then
            export KCHAT_WEB_DIST=$ROOT/web/dist
        else
            mkdir -p "$state/web-placeholder"
            echo '<!doctype html><title>kchat</title><p>No web client built (make web).</p>' \
                >"$state/web-placeholder/index.html"
            export KCHAT_WEB_DIST=$state/web-placeholder
        fi
    fi
    # shellcheck source=../scripts/env.sh
    . "$tree/scripts/env.sh"
}

# One stack from start to stop, in a subshell: TREE's scripts and daemons (BUILD), state in
# STATE_DIR, ports from PORT_BASE; this tree's run.py with the arguments that follow. The
# stack is stopped however the run ends.
phase() {
    local tree=$1 build=$2 state=$3 base=$4
    shift 4
    (
        stack_env "$tree" "$build" "$state" "$base"
        # shellcheck disable=SC2064  # the tree is known now
        trap "$(printf '%q' "$tree/scripts/stack.sh") down >/dev/null 2>&1 || true" EXIT
        trap 'exit 130' INT TERM
        "$tree/scripts/stack.sh" up
        "$ROOT/.venv/bin/python" "$ROOT/bench/run.py" "$@"
    )
}

# The processes of the stack of STATE_DIR still alive, by its pid files: none once it is down.
alive() {
    local state=$1 f pid
    for f in "$state"/run/*.pid "$state"/kafka/kafka.pid "$state"/redis/redis.pid \
        "$state"/minio/minio.pid "$state"/nginx/nginx.pid "$state"/pg/data/postmaster.pid; do
        [[ -f $f ]] || continue
        pid=$(head -n1 "$f" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null || true)"
        fi
    done
}

# Empties a state folder, stopping first whatever still runs from it.
fresh() {
    local tree=$1 state=$2 base=$3
    [[ -e $state ]] || return 0
    (
        stack_env "$tree" "$tree/build" "$state" "$base"
        "$tree/scripts/stack.sh" down
        "$tree/scripts/pg.sh" destroy
    ) >/dev/null 2>&1 || true
    if [[ -n $(alive "$state") ]]; then
        echo "bench: processes of $state still run: $(alive "$state" | tr '\n' ' ')" >&2
        exit 1
    fi
    rm -rf "$state"
}

# REF's tree in its worktree (made, or moved to REF), built by its own Makefile.
build_baseline() {
    local commit=$1 src=$2
    if [[ -e $src/.git ]]; then
        git -C "$src" checkout -q --force --detach "$commit"
    else
        mkdir -p "$(dirname "$src")"
        # a worktree whose folder went with an emptied state folder is still registered
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add -q --detach "$src" "$commit" || return 1
    fi
    echo "bench: building the baseline, $(git -C "$src" log -1 --format='%h %s'), in $src" >&2
    if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$src" build BUILD_DIR=build SANITIZE=0 \
        >"$src.build.log" 2>&1; then
        tail -n 30 "$src.build.log" >&2
        echo "bench: the baseline does not build (the log: $src.build.log)" >&2
        return 1
    fi
}

if [[ -z $baseline ]]; then
    phase "$ROOT" "$KCHAT_BENCH_BUILD_DIR" "$STATE" "$BASE" $short "${args[@]}"
    exit
fi

commit=$(git -C "$ROOT" rev-parse --verify --quiet "$baseline^{commit}") ||
    { echo "bench: --baseline $baseline: no such commit" >&2; exit 2; }
CMP=$STATE/compare
SRC=$CMP/baseline-src
rc=0
wanted=${only:-idle,one2one,groups,ramp,peers}
if [[ ,$wanted, =~ ,(idle|one2one|groups|ramp|peers), ]]; then
    build_baseline "$commit" "$SRC" || exit 2
    fresh "$SRC" "$CMP/baseline" "$BASELINE_BASE"
    echo "bench: the baseline's stack ($baseline, $(git -C "$SRC" rev-parse --short HEAD))" >&2
    phase "$SRC" "$SRC/build" "$CMP/baseline" "$BASELINE_BASE" $short --warmup=$warmup \
        "${args[@]}" --kchat-only --name "$baseline" --out "$CMP/baseline/bench-results.json" ||
        rc=1
    if [[ -n $(alive "$CMP/baseline") ]]; then
        echo "bench: the baseline's stack did not stop ($(alive "$CMP/baseline" | tr '\n' ' '));" \
            "the current one is not started" >&2
        exit 1
    fi
else
    echo "bench: none of the scenarios chosen ($only) runs against the baseline" >&2
fi
fresh "$ROOT" "$CMP/current" "$BASE"
echo "bench: the working tree's stack" >&2
phase "$ROOT" "$KCHAT_BENCH_BUILD_DIR" "$CMP/current" "$BASE" $short --warmup=$warmup \
    "${args[@]}" --name current --baseline-results "$CMP/baseline/bench-results.json" || rc=1
exit $rc
