#!/usr/bin/env bash
# Brings the local kchat stack up or down: Kafka (KRaft), Postgres, Redis, MinIO, the topics, the
# migrations, the daemons and the ingress (nginx, the browser's one origin), each a local process with its files under
# $KCHAT_STATE_DIR (logs in $KCHAT_STATE_DIR/logs). Ports derive from KCHAT_PORT_BASE
# (scripts/env.sh).
#
#   scripts/stack.sh up       start what is not running, wait for every /health, print the map
#   scripts/stack.sh down     stop the daemons (SIGTERM, drained), then Redis, Postgres, Kafka
#   scripts/stack.sh status
#   scripts/stack.sh restart NAME   SIGTERM one daemon (registry, processor, projector, notifier,
#                                   archiver, gateway, gateway1, gateway2, api), start it
#   scripts/stack.sh stop NAME      SIGTERM one daemon and leave it stopped (up starts it again)
#   scripts/stack.sh kill NAME      SIGKILL one daemon (for failure tests), then start it again
#   scripts/stack.sh daemons        one line per daemon: name, binary, health URL, flags
#                                   (tab-separated; checked against scripts/daemons.json)
#
# KCHAT_KAFKA_NODES=3 runs Kafka as three combined broker+controller nodes (scripts/kafka.sh;
# scripts/env.sh lists them all in KCHAT_KAFKA_BROKERS and has kchatctl give every topic
# replication factor 3 and min.insync.replicas 2); the default is one node.
#
# KCHAT_GATEWAYS (default 1, at most 4) gateways run side by side: `gateway` owns slot 0,
# `gatewayN` slot N; gateway N listens for WebSockets on KCHAT_GATEWAY_PORT+N and serves
# /health and /metrics on KCHAT_GATEWAY_ADMIN_PORT+N. One is the default: the whole stack
# shares one machine's cores, and each gateway more on the same cores adds a deliveries
# partition to the processor's transactions and splits the commands into more, smaller
# produce requests (docs/benchmarks.md, "One gateway per machine"). The tests run three
# (scripts/test.sh), to cover the routing between slots.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

RUN=$KCHAT_STATE_DIR/run
LOGS=$KCHAT_STATE_DIR/logs
KCHAT_GATEWAYS=${KCHAT_GATEWAYS:-1}
if ((KCHAT_GATEWAYS < 1 || KCHAT_GATEWAYS > 4)); then
    echo "stack: KCHAT_GATEWAYS must be 1..4 (the admin ports of the gateways end where the processor's begins)" >&2
    exit 2
fi
GATEWAYS=(gateway)
for ((i = 1; i < KCHAT_GATEWAYS; i++)); do GATEWAYS+=("gateway$i"); done
DAEMONS=(registry processor projector notifier archiver "${GATEWAYS[@]}" api)
CTL=$KCHAT_BUILD_DIR/ctl/kchatctl

# gateway -> 0, gatewayN -> N
gw_slot() { local s=${1#gateway}; echo "${s:-0}"; }

binary() {
    case $1 in
    gateway*) echo "$KCHAT_BUILD_DIR/gateway/kchat-gateway" ;;
    *) echo "$KCHAT_BUILD_DIR/$1/kchat-$1" ;;
    esac
}

health_url() {
    case $1 in
    processor) echo "http://127.0.0.1:$KCHAT_PROCESSOR_ADMIN_PORT/health" ;;
    projector) echo "http://127.0.0.1:$KCHAT_PROJECTOR_ADMIN_PORT/health" ;;
    notifier) echo "http://127.0.0.1:$KCHAT_NOTIFIER_ADMIN_PORT/health" ;;
    archiver) echo "http://127.0.0.1:$KCHAT_ARCHIVER_ADMIN_PORT/health" ;;
    gateway*) echo "http://127.0.0.1:$((KCHAT_GATEWAY_ADMIN_PORT + $(gw_slot "$1")))/health" ;;
    api) echo "http://127.0.0.1:$KCHAT_API_PORT/health" ;;
    registry) echo "http://127.0.0.1:$KCHAT_REGISTRY_PORT/health" ;;
    esac
}

flags() {
    # Every daemon but the registry checks at start that the registry holds its schemas.
    local sr="--schema-registry-url=http://127.0.0.1:$KCHAT_REGISTRY_PORT"
    case $1 in
    processor) echo "--admin-port=$KCHAT_PROCESSOR_ADMIN_PORT --schemas-dir=$KCHAT_ROOT/schemas $sr" ;;
    projector) echo "--admin-port=$KCHAT_PROJECTOR_ADMIN_PORT --schemas-dir=$KCHAT_ROOT/schemas $sr" ;;
    notifier) echo "--admin-port=$KCHAT_NOTIFIER_ADMIN_PORT --schemas-dir=$KCHAT_ROOT/schemas $sr" ;;
    # The archive goes into MinIO's attachments bucket under archive/ (the S3 endpoint,
    # bucket, region and credentials are the KCHAT_S3_* variables, as for the API); the
    # files being filled are in the state folder.
    archiver) echo "--admin-port=$KCHAT_ARCHIVER_ADMIN_PORT --archive-prefix=archive/ --spool-dir=$KCHAT_STATE_DIR/archiver" ;;
    gateway*)
        local n
        n=$(gw_slot "$1")
        echo "--slot=$n --admin-port=$((KCHAT_GATEWAY_ADMIN_PORT + n)) --listen-port=$((KCHAT_GATEWAY_PORT + n)) --schemas-dir=$KCHAT_ROOT/schemas $sr"
        ;;
    api) echo "--listen-port=$KCHAT_API_PORT --schemas-dir=$KCHAT_ROOT/schemas $sr" ;;
    registry) echo "--listen-port=$KCHAT_REGISTRY_PORT --schemas-dir=$KCHAT_ROOT/schemas" ;;
    esac
}

running() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start_daemon() {
    local d=$1
    if running "$d"; then
        return
    fi
    local bin
    bin=$(binary "$d")
    [[ -x $bin ]] || { echo "stack: $bin is not built (run make build)" >&2; exit 1; }
    # The gateways hold a socket per client: as many descriptors as the hard limit allows.
    # shellcheck disable=SC2046
    (ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; exec nohup "$bin" $(flags "$d") >>"$LOGS/$d.log" 2>&1 </dev/null) &
    echo $! >"$RUN/$d.pid"
}

wait_healthy() {
    local d=$1 url
    url=$(health_url "$d")
    for _ in $(seq 300); do
        if curl -fsS -m 2 "$url" >/dev/null 2>&1; then
            return 0
        fi
        if ! running "$d"; then
            echo "stack: kchat-$d exited during start-up; the end of $LOGS/$d.log:" >&2
            tail -n 20 "$LOGS/$d.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "stack: kchat-$d is not healthy after 60 s: $(curl -sS -m 2 "$url" 2>&1)" >&2
    return 1
}

stop_daemon() {
    local d=$1
    running "$d" || { rm -f "$RUN/$d.pid"; return 0; }
    local pid
    pid=$(cat "$RUN/$d.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stack: kchat-$d did not stop in 15 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$d.pid"
    echo "kchat-$d stopped"
}

# kchat-api presigns uploads, and kchat-archiver writes the archive, with MinIO's credentials
# (made by minio.sh on its first start).
s3_env() {
    local creds=$KCHAT_STATE_DIR/minio/credentials
    [[ -s $creds ]] || return 0
    # shellcheck disable=SC1090
    . "$creds"
    export KCHAT_S3_ACCESS_KEY KCHAT_S3_SECRET_KEY
    export KCHAT_S3_ENDPOINT=${KCHAT_S3_ENDPOINT:-http://127.0.0.1:$KCHAT_MINIO_PORT}
}
s3_env

# The RS256 key pair of the access tokens and the VAPID key pair of Web Push (EC P-256), each
# made once per state folder (a state folder from before Web Push gets its VAPID pair on its
# next start).
keys() {
    if [[ ! -s $KCHAT_JWT_PRIVATE_KEY || ! -s $KCHAT_JWT_PUBLIC_KEY ]]; then
        mkdir -p "$(dirname "$KCHAT_JWT_PRIVATE_KEY")" "$(dirname "$KCHAT_JWT_PUBLIC_KEY")"
        (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
            -out "$KCHAT_JWT_PRIVATE_KEY" 2>/dev/null)
        openssl pkey -in "$KCHAT_JWT_PRIVATE_KEY" -pubout -out "$KCHAT_JWT_PUBLIC_KEY" 2>/dev/null
        echo "token keys made: $KCHAT_JWT_PRIVATE_KEY (private), $KCHAT_JWT_PUBLIC_KEY (public)"
    fi
    if [[ ! -s $KCHAT_VAPID_PRIVATE_KEY || ! -s $KCHAT_VAPID_PUBLIC_KEY ]]; then
        mkdir -p "$(dirname "$KCHAT_VAPID_PRIVATE_KEY")" "$(dirname "$KCHAT_VAPID_PUBLIC_KEY")"
        (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -out "$KCHAT_VAPID_PRIVATE_KEY" 2>/dev/null)
        openssl pkey -in "$KCHAT_VAPID_PRIVATE_KEY" -pubout -out "$KCHAT_VAPID_PUBLIC_KEY" 2>/dev/null
        echo "push keys made: $KCHAT_VAPID_PRIVATE_KEY (private), $KCHAT_VAPID_PUBLIC_KEY (public)"
    fi
}

up() {
    mkdir -p "$RUN" "$LOGS"
    keys
    "$KCHAT_ROOT/scripts/kafka.sh" start
    "$KCHAT_ROOT/scripts/pg.sh" start
    "$KCHAT_ROOT/scripts/redis.sh" start
    "$KCHAT_ROOT/scripts/minio.sh" start
    s3_env
    [[ -x $CTL ]] || { echo "stack: $CTL is not built (run make build)" >&2; exit 1; }
    "$CTL" topics --topics-file="${KCHAT_TOPICS_FILE:-$KCHAT_ROOT/kafka/topics.json}"
    "$CTL" migrate --migrations-dir="$KCHAT_ROOT/db/migrations"
    # The registry first: the others check their schemas against it as they start.
    for d in "${DAEMONS[@]}"; do
        start_daemon "$d"
        if [[ $d == registry ]]; then wait_healthy registry; fi
    done
    for d in "${DAEMONS[@]}"; do wait_healthy "$d"; done
    local gws=() g
    for g in "${GATEWAYS[@]}"; do gws+=("127.0.0.1:$((KCHAT_GATEWAY_PORT + $(gw_slot "$g")))"); done
    KCHAT_INGRESS_GATEWAYS=$(IFS=,; echo "${gws[*]}") "$KCHAT_ROOT/scripts/nginx.sh" start
    cat <<MAP

kchat is up (state in $KCHAT_STATE_DIR, logs in $LOGS)

  Open            $("$KCHAT_ROOT/scripts/nginx.sh" url)     <- the chat, in a browser

  REST API        http://127.0.0.1:$KCHAT_API_PORT        /health  /metrics
$(for g in "${GATEWAYS[@]}"; do n=$(gw_slot "$g"); printf '  %-15s ws://127.0.0.1:%s/ws   http://127.0.0.1:%s  /health  /metrics   (slot %s)\n' "$g" "$((KCHAT_GATEWAY_PORT + n))" "$((KCHAT_GATEWAY_ADMIN_PORT + n))" "$n"; done)
  processor       http://127.0.0.1:$KCHAT_PROCESSOR_ADMIN_PORT        /health  /metrics
  projector       http://127.0.0.1:$KCHAT_PROJECTOR_ADMIN_PORT        /health  /metrics
  notifier        http://127.0.0.1:$KCHAT_NOTIFIER_ADMIN_PORT        /health  /metrics
  archiver        http://127.0.0.1:$KCHAT_ARCHIVER_ADMIN_PORT        /health  /metrics   (archive in s3://$KCHAT_S3_BUCKET/archive/)
  Schema registry http://127.0.0.1:$KCHAT_REGISTRY_PORT        /subjects  /health  /metrics
  Kafka           $(if [[ $KCHAT_KAFKA_NODES == 3 ]]; then echo "$KCHAT_KAFKA_BROKERS   (3 nodes)"; else echo "127.0.0.1:$KCHAT_KAFKA_PORT"; fi)
  Postgres        postgresql://kchat@127.0.0.1:$KCHAT_PG_PORT/kchat
  Redis           redis://127.0.0.1:$KCHAT_REDIS_PORT
  MinIO (S3)      http://127.0.0.1:$KCHAT_MINIO_PORT        bucket $KCHAT_S3_BUCKET
Stop it with: make stop
MAP
}

down() {
    "$KCHAT_ROOT/scripts/nginx.sh" stop || true
    # Every gateway slot that may have run, whatever KCHAT_GATEWAYS says now.
    for d in api gateway3 gateway2 gateway1 gateway archiver notifier projector processor registry; do stop_daemon "$d"; done
    "$KCHAT_ROOT/scripts/minio.sh" stop || true
    "$KCHAT_ROOT/scripts/redis.sh" stop || true
    "$KCHAT_ROOT/scripts/pg.sh" stop || true
    "$KCHAT_ROOT/scripts/kafka.sh" stop || true
}

status() {
    "$KCHAT_ROOT/scripts/kafka.sh" status || true
    "$KCHAT_ROOT/scripts/pg.sh" status || true
    "$KCHAT_ROOT/scripts/redis.sh" status || true
    "$KCHAT_ROOT/scripts/minio.sh" status || true
    "$KCHAT_ROOT/scripts/nginx.sh" status || true
    for d in "${DAEMONS[@]}"; do
        if running "$d"; then echo "kchat-$d running (pid $(cat "$RUN/$d.pid"))"; else echo "kchat-$d not running"; fi
    done
}

restart() {
    local d=$1 how=$2
    [[ " ${DAEMONS[*]} " == *" $d "* ]] || { echo "stack: no daemon named $d" >&2; exit 2; }
    if [[ $how == kill ]] && running "$d"; then
        kill -KILL "$(cat "$RUN/$d.pid")"
        while running "$d"; do sleep 0.05; done
        rm -f "$RUN/$d.pid"
        echo "kchat-$d killed"
    else
        stop_daemon "$d"
    fi
    start_daemon "$d"
    wait_healthy "$d"
    echo "kchat-$d started (pid $(cat "$RUN/$d.pid"))"
}

stop_one() {
    local d=$1
    [[ " ${DAEMONS[*]} " == *" $d "* ]] || { echo "stack: no daemon named $d" >&2; exit 2; }
    stop_daemon "$d"
}

daemons() {
    local d
    for d in "${DAEMONS[@]}"; do
        printf '%s\t%s\t%s\t%s\n' "$d" "$(binary "$d")" "$(health_url "$d")" "$(flags "$d")"
    done
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
restart) restart "${2:-}" stop ;;
stop) stop_one "${2:-}" ;;
kill) restart "${2:-}" kill ;;
daemons) daemons ;;
*) echo "usage: $0 up|down|status|restart NAME|stop NAME|kill NAME|daemons" >&2; exit 2 ;;
esac
