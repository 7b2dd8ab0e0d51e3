#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, one combined broker+controller node) from Maven Central jars.
#
#   scripts/kafka.sh fetch            copy the broker jars into the cache (Maven; skipped when present)
#   scripts/kafka.sh start            render config, format storage once, start, wait until it answers
#   scripts/kafka.sh stop             SIGTERM, wait, then SIGKILL; fine when not running
#   scripts/kafka.sh status           exit 0 and say so when running, exit 3 when not
#   scripts/kafka.sh topics ARGS...   kafka-topics   (TopicCommand) against the local broker
#   scripts/kafka.sh groups ARGS...   kafka-consumer-groups (ConsumerGroupCommand) likewise
#   scripts/kafka.sh run-class CLASS ARGS...   any Kafka main class with the broker's classpath
#   scripts/kafka.sh libs             print the libs directory (after fetch)
#
# Environment:
#   KCHAT_STATE_DIR               required for start/stop/status; the broker lives in $KCHAT_STATE_DIR/kafka
#   KCHAT_KAFKA_PORT              client listener, default 17010 (127.0.0.1 only)
#   KCHAT_KAFKA_CONTROLLER_PORT   KRaft controller listener, default 17011
#   KCHAT_KAFKA_SASL_PORT         SASL_SSL listener (SCRAM-SHA-512 and PLAIN, user "kchat"; the
#                                 certificate and password from scripts/credentials.sh), default 17012
#   KCHAT_CACHE_DIR               jar cache, default <repo>/.cache; jars go to kafka-<version>/libs
#   JAVA                          java binary, default java (Java 17+)
#   KCHAT_KAFKA_HEAP_OPTS         default "-Xms128m -Xmx512m"
#   KCHAT_KAFKA_JVM_OPTS          extra JVM options, default none
#   KCHAT_KAFKA_JMX_PORT          when set, the broker's JMX on 127.0.0.1:PORT (no authentication,
#                                 loopback only; the benchmarks read its request metrics);
#                                 default: no JMX
#   KCHAT_KAFKA_START_TIMEOUT     seconds to wait for the broker to answer, default 90
#   KCHAT_KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM before SIGKILL, default 30
#
# The only download is Maven's (Maven Central); see kafka/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Ports and the state folder derive from KCHAT_PORT_BASE like the rest of the stack.
. "$REPO/scripts/env.sh"
POM="$REPO/kafka/pom.xml"
TEMPLATE="$REPO/kafka/server.properties.in"
LOG4J_CONF="$REPO/kafka/log4j2.xml"

JAVA=${JAVA:-java}
KAFKA_PORT=${KCHAT_KAFKA_PORT:-17010}
CONTROLLER_PORT=${KCHAT_KAFKA_CONTROLLER_PORT:-17011}
SASL_PORT=${KCHAT_KAFKA_SASL_PORT:-17012}
HEAP_OPTS=${KCHAT_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
EXTRA_JVM_OPTS=${KCHAT_KAFKA_JVM_OPTS:-}
START_TIMEOUT=${KCHAT_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KCHAT_KAFKA_STOP_TIMEOUT:-30}
JMX_PORT=${KCHAT_KAFKA_JMX_PORT:-}
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

# The JVM options of JMX: none unless KCHAT_KAFKA_JMX_PORT asks for it, then a connector
# on loopback whose registry and objects share the one port.
jmx_opts() {
    if [[ -z $JMX_PORT ]]; then
        printf '%s\n' -Dcom.sun.management.jmxremote=false
        return
    fi
    printf '%s\n' -Dcom.sun.management.jmxremote.port="$JMX_PORT" \
        -Dcom.sun.management.jmxremote.rmi.port="$JMX_PORT" \
        -Dcom.sun.management.jmxremote.host=127.0.0.1 -Djava.rmi.server.hostname=127.0.0.1 \
        -Dcom.sun.management.jmxremote.local.only=true \
        -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

kafka_version() {
    local v
    v=$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n1)
    [[ -n $v ]] || die "cannot read <kafka.version> from $POM"
    printf '%s\n' "$v"
}

VERSION=$(kafka_version)
CACHE_DIR=${KCHAT_CACHE_DIR:-$REPO/.cache}
LIBS="$CACHE_DIR/kafka-$VERSION/libs"
# The jar set is valid for exactly this pom: its hash is stored beside the jars.
POM_HASH=$(sha256sum "$POM" | cut -d' ' -f1)
STAMP="$LIBS/.kchat-pom.sha256"

state_paths() {
    [[ -n ${KCHAT_STATE_DIR:-} ]] || die "KCHAT_STATE_DIR is not set (the broker keeps its data, config, pid and logs under \$KCHAT_STATE_DIR/kafka)"
    mkdir -p "$KCHAT_STATE_DIR"
    KDIR="$(cd "$KCHAT_STATE_DIR" && pwd)/kafka"
    DATA_DIR="$KDIR/data"
    LOG_DIR="$KDIR/logs"
    PROPS="$KDIR/server.properties"
    PID_FILE="$KDIR/kafka.pid"
    CLUSTER_ID_FILE="$KDIR/cluster.id"
}

libs_ready() { [[ -f $STAMP && $(cat "$STAMP") == "$POM_HASH" ]]; }

cmd_fetch() {
    if libs_ready; then
        log "jars of Kafka $VERSION already in $LIBS"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install -y maven)"
    local tmp
    mkdir -p "$(dirname "$LIBS")"
    tmp=$(mktemp -d "$(dirname "$LIBS")/libs.tmp.XXXXXX")
    log "fetching Kafka $VERSION jars from Maven Central into $LIBS"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
        cat "$tmp.mvn.log" >&2
        rm -rf "$tmp" "$tmp.mvn.log"
        die "mvn could not fetch the Kafka jars (see above)"
    fi
    rm -f "$tmp.mvn.log"
    ls "$tmp"/kafka_2.13-"$VERSION".jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "kafka_2.13-$VERSION.jar missing after mvn"; }
    printf '%s\n' "$POM_HASH" >"$tmp/.kchat-pom.sha256"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    log "fetched $(find "$LIBS" -name "*.jar" | wc -l) jars ($(du -sh "$LIBS" | cut -f1))"
}

need_libs() {
    libs_ready || cmd_fetch
}

check_java() {
    command -v "$JAVA" >/dev/null || die "java not found ('$JAVA'); Kafka $VERSION needs Java 17+ (apt-get install -y openjdk-17-jre-headless)"
    local major
    major=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [[ -n $major && ${major%%.*} -ge 17 ]] || die "Kafka $VERSION needs Java 17+, '$JAVA' is Java ${major:-unknown}"
}

# java with the broker's classpath; logs go to $LOG_DIR/$1 (server.log is the broker's own)
java_cp() {
    local file=$1
    shift
    "$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
        -Dkafka.log.file="$file" -cp "$LIBS/*" "$@"
}

# pid of the running broker of this state dir, or nothing
running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid may have been reused by something else since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# the broker answers a metadata request and lists itself as an (unfenced) broker
broker_answers() {
    port_open "$KAFKA_PORT" || return 1
    if command -v kcat >/dev/null; then
        kcat -L -b "$BOOTSTRAP" -m 3 -X topic.metadata.refresh.interval.ms=-1 2>/dev/null |
            grep -q "broker 1 at 127.0.0.1:$KAFKA_PORT"
    else
        # no kcat: the start-up line, written after LOG_OFFSET (the log's size when we launched)
        tail -c +"$((${LOG_OFFSET:-0} + 1))" "$LOG_DIR/server.log" 2>/dev/null | grep -q 'Kafka Server started'
    fi
}

render_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    "$REPO/scripts/credentials.sh" make
    # The password is base64url: nothing sed or the JAAS string would read specially.
    (umask 077 && sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@SASL_PORT@|$SASL_PORT|g" \
        -e "s|@TLS_DIR@|$KCHAT_TLS_DIR|g" \
        -e "s|@SASL_PASSWORD@|$(cat "$KCHAT_TLS_DIR/kafka-password")|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" "$TEMPLATE" >"$PROPS.tmp")
    ! grep -n '@[A-Z_]*@' "$PROPS.tmp" || die "unreplaced placeholder in $TEMPLATE"
    mv "$PROPS.tmp" "$PROPS"
}

# A Kafka cluster id: 16 random bytes, base64url without padding, not starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id != -* ]] && break
    done
    printf '%s\n' "$id"
}

format_storage() {
    if [[ -f $DATA_DIR/meta.properties ]]; then
        return 0
    fi
    if [[ ! -s $CLUSTER_ID_FILE ]]; then
        new_cluster_id >"$CLUSTER_ID_FILE"
    fi
    local cid
    cid=$(cat "$CLUSTER_ID_FILE")
    log "formatting $DATA_DIR (cluster id $cid)"
    # static quorum (controller.quorum.voters): no --standalone
    # The SCRAM user of the SASL_SSL listener is part of the first metadata.
    if ! java_cp format.log kafka.tools.StorageTool format -t "$cid" -c "$PROPS" \
        --add-scram "SCRAM-SHA-512=[name=kchat,password=$(cat "$KCHAT_TLS_DIR/kafka-password")]" \
        >"$LOG_DIR/format.out" 2>&1; then
        cat "$LOG_DIR/format.out" >&2
        die "kafka-storage format failed"
    fi
}

cmd_start() {
    state_paths
    local pid
    if pid=$(running_pid); then
        if [[ -n $JMX_PORT ]] && ! port_open "$JMX_PORT"; then
            log "note: the running broker has no JMX on 127.0.0.1:$JMX_PORT (started without KCHAT_KAFKA_JMX_PORT; stop it to start it with)"
        fi
        if broker_answers; then
            log "already running (pid $pid) on $BOOTSTRAP"
            return 0
        fi
        log "already started (pid $pid); waiting for it to answer on $BOOTSTRAP"
        wait_ready "$pid" "$(date +%s%N)"
        return 0
    fi
    rm -f "$PID_FILE"
    check_java
    need_libs
    [[ -f $TEMPLATE ]] || die "missing $TEMPLATE"
    if [[ -n $JMX_PORT ]]; then
        [[ $JMX_PORT =~ ^[0-9]+$ ]] && ((JMX_PORT > 0 && JMX_PORT < 65536)) ||
            die "KCHAT_KAFKA_JMX_PORT must be a port number, not '$JMX_PORT'"
    fi
    local p
    for p in "$KAFKA_PORT" "$CONTROLLER_PORT" "$SASL_PORT" ${JMX_PORT:+"$JMX_PORT"}; do
        if port_open "$p"; then
            die "port 127.0.0.1:$p is already in use by another process (set KCHAT_KAFKA_PORT / KCHAT_KAFKA_CONTROLLER_PORT / KCHAT_KAFKA_SASL_PORT / KCHAT_KAFKA_JMX_PORT)"
        fi
    done
    render_config
    format_storage

    local t0
    t0=$(date +%s%N)
    LOG_OFFSET=$(stat -c %s "$LOG_DIR/server.log" 2>/dev/null || echo 0)
    log "starting Kafka $VERSION on $BOOTSTRAP (controller 127.0.0.1:$CONTROLLER_PORT, data $DATA_DIR${JMX_PORT:+, JMX 127.0.0.1:$JMX_PORT})"
    local jmx
    mapfile -t jmx < <(jmx_opts)
    # shellcheck disable=SC2086  # HEAP_OPTS and EXTRA_JVM_OPTS are word lists
    # The parallel collector: on two cores G1's concurrent refinement and marking threads cost
    # more than they save (a broker's heap is almost all short-lived request garbage; young
    # collections take a few ms here); measured in docs/benchmarks.md.
    setsid "$JAVA" $HEAP_OPTS \
        -XX:+UseParallelGC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true "${jmx[@]}" \
        -Dkafka.logs.dir="$LOG_DIR" -Dkafka.log.file=server.log -Dlog4j2.configurationFile="$LOG4J_CONF" \
        $EXTRA_JVM_OPTS \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG_DIR/kafka.out" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    wait_ready "$pid" "$t0"
}

wait_ready() {
    local pid=$1 t0=$2 deadline
    deadline=$(($(date +%s) + START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            show_log_tail
            die "Kafka exited during start-up (logs: $LOG_DIR)"
        fi
        if broker_answers; then
            local ms=$((($(date +%s%N) - t0) / 1000000))
            local rss
            rss=$(awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$pid/status" 2>/dev/null || true)
            log "Kafka $VERSION up on $BOOTSTRAP (pid $pid, ${ms} ms, RSS ${rss:-?})"
            return 0
        fi
        if (($(date +%s) >= deadline)); then
            show_log_tail
            die "Kafka (pid $pid) did not answer on $BOOTSTRAP within ${START_TIMEOUT}s; it is left running, 'scripts/kafka.sh stop' ends it (logs: $LOG_DIR)"
        fi
        sleep 0.5
    done
}

show_log_tail() {
    local f
    for f in "$LOG_DIR/kafka.out" "$LOG_DIR/server.log"; do
        if [[ -s $f ]]; then
            printf -- '--- last lines of %s ---\n' "$f" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

cmd_stop() {
    state_paths
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(($(date +%s) + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if (($(date +%s) >= deadline)); then
            log "still running after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    # wait for the kernel to reap it (it is not our child when started by another shell)
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    state_paths
    local pid
    if pid=$(running_pid); then
        if broker_answers; then
            echo "kafka: running (pid $pid) on $BOOTSTRAP"
        else
            echo "kafka: process running (pid $pid) but not answering on $BOOTSTRAP"
        fi
        return 0
    fi
    echo "kafka: not running"
    return 3
}

cmd_run_class() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh run-class CLASS [ARGS...]"
    check_java
    need_libs
    if [[ -n ${KCHAT_STATE_DIR:-} ]]; then
        state_paths
        mkdir -p "$LOG_DIR"
    else
        LOG_DIR=${TMPDIR:-/tmp}
    fi
    java_cp tools.log "$@"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        libs) libs_ready || die "jars not fetched yet: scripts/kafka.sh fetch"; printf '%s\n' "$LIBS" ;;
        topics) cmd_run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
        groups) cmd_run_class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
        run-class) cmd_run_class "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
