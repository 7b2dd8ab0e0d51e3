#!/usr/bin/env bash
# Local Apache Kafka (KRaft) from Maven Central jars: one combined broker+controller node, or
# three (KCHAT_KAFKA_NODES=3) that are the brokers and the controller quorum.
#
#   scripts/kafka.sh fetch            copy the broker jars into the cache (Maven; skipped when present)
#   scripts/kafka.sh start            render config, format storage once, start every node not
#                                     running, wait until each answers
#   scripts/kafka.sh stop             SIGTERM, wait, then SIGKILL; fine when not running (every
#                                     node of the state folder, whatever KCHAT_KAFKA_NODES says)
#   scripts/kafka.sh status           exit 0 and say so when running, exit 3 when not (three
#                                     nodes: 0 when all run, 3 when none, 1 when some)
#   scripts/kafka.sh pid [N]          the pid of node N (default 1); exit 3 when it is not running
#   scripts/kafka.sh topics ARGS...   kafka-topics   (TopicCommand) against the local broker
#   scripts/kafka.sh groups ARGS...   kafka-consumer-groups (ConsumerGroupCommand) likewise
#   scripts/kafka.sh run-class CLASS ARGS...   any Kafka main class with the broker's classpath
#   scripts/kafka.sh libs             print the libs directory (after fetch)
#
# Environment:
#   KCHAT_STATE_DIR               required for start/stop/status; the broker lives in $KCHAT_STATE_DIR/kafka
#                                 (three nodes: $KCHAT_STATE_DIR/kafka/node1..node3)
#   KCHAT_KAFKA_NODES             1 (default) or 3; node N of three listens on the three ports
#                                 below plus 3*(N-1) (default 17013-17015 and 17016-17018)
#   KCHAT_KAFKA_PORT              client listener, default 17010 (127.0.0.1 only)
#   KCHAT_KAFKA_CONTROLLER_PORT   KRaft controller listener, default 17011
#   KCHAT_KAFKA_SASL_PORT         SASL_SSL listener (SCRAM-SHA-512 and PLAIN, user "kchat"; the
#                                 certificate and password from scripts/credentials.sh), default 17012
#   KCHAT_CACHE_DIR               jar cache, default <repo>/.cache; jars go to kafka-<version>/libs
#   JAVA                          java binary, default java (Java 17+)
#   KCHAT_KAFKA_HEAP_OPTS         default "-Xms512m -Xmx512m -Xmn256m"
#   KCHAT_KAFKA_JVM_OPTS          extra JVM options, default none
#   KCHAT_KAFKA_CGROUP            a cgroup v2 folder: node N starts in its subfolder nodeN (the
#                                 fault runner matches a node's sockets with iptables to cut
#                                 it off); default: none
#   KCHAT_KAFKA_JMX_PORT          when set, the broker's JMX on 127.0.0.1:PORT (no authentication,
#                                 loopback only; the benchmarks read its request metrics);
#                                 three nodes: node N at PORT+N-1; default: no JMX
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
HEAP_OPTS=${KCHAT_KAFKA_HEAP_OPTS:--Xms512m -Xmx512m -Xmn256m}
EXTRA_JVM_OPTS=${KCHAT_KAFKA_JVM_OPTS:-}
START_TIMEOUT=${KCHAT_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KCHAT_KAFKA_STOP_TIMEOUT:-30}
JMX_PORT=${KCHAT_KAFKA_JMX_PORT:-}
NODES=${KCHAT_KAFKA_NODES:-1}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $NODES == 1 || $NODES == 3 ]] || die "KCHAT_KAFKA_NODES must be 1 or 3, not '$NODES'"
# Three nodes are a quorum that outlives one node: replication factor 3 and min ISR 2 for
# the internal topics and the broker defaults (kchatctl topics applies the same to kchat's).
if ((NODES == 1)); then RF=1 MIN_ISR=1; else RF=3 MIN_ISR=2; fi

# The ports of node N (1..NODES): node 1's, plus 3*(N-1).
client_port() { echo $((KAFKA_PORT + 3 * ($1 - 1))); }
controller_port() { echo $((CONTROLLER_PORT + 3 * ($1 - 1))); }
sasl_port() { echo $((SASL_PORT + 3 * ($1 - 1))); }
node_jmx_port() {
    [[ -n $JMX_PORT ]] || return 1
    # a value that is no number is refused by start, with a message
    if [[ $JMX_PORT =~ ^[0-9]+$ ]]; then echo $((JMX_PORT + $1 - 1)); else echo "$JMX_PORT"; fi
}

BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
QUORUM_VOTERS="1@127.0.0.1:$CONTROLLER_PORT"
for ((n = 2; n <= NODES; n++)); do
    BOOTSTRAP+=",127.0.0.1:$(client_port "$n")"
    QUORUM_VOTERS+=",$n@127.0.0.1:$(controller_port "$n")"
done

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
    CLUSTER_ID_FILE="$KDIR/cluster.id"
    node_paths 1
}

# The folder of node N: $KDIR itself for the one node (as it always was), $KDIR/nodeN for
# each of three. Sets NODE and the paths below, and the node's ports.
node_dir() { if ((NODES == 1)); then echo "$KDIR"; else echo "$KDIR/node$1"; fi; }
node_paths() {
    NODE=$1
    local d
    d=$(node_dir "$NODE")
    DATA_DIR="$d/data"
    LOG_DIR="$d/logs"
    PROPS="$d/server.properties"
    PID_FILE="$d/kafka.pid"
    NODE_PORT=$(client_port "$NODE")
    NODE_CONTROLLER_PORT=$(controller_port "$NODE")
    NODE_SASL_PORT=$(sasl_port "$NODE")
    NODE_JMX_PORT=$(node_jmx_port "$NODE" || true)
    # "node N: " before the messages of a node of three; nothing for the one node
    if ((NODES == 1)); then WHO=; else WHO="node $NODE: "; fi
}

# A state folder is formatted for one node ($KDIR/data) or for three ($KDIR/node1..3/data):
# refuse to start the other shape on it.
check_layout() {
    local formatted=0 n
    for n in 1 2 3; do
        [[ -f $KDIR/node$n/data/meta.properties ]] && formatted=$((formatted + 1))
    done
    if ((NODES == 1)) && ((formatted > 0)); then
        die "$KDIR holds a three-node cluster (formatted with KCHAT_KAFKA_NODES=3): start it with KCHAT_KAFKA_NODES=3, or stop it and remove $KDIR to start one node from nothing"
    fi
    if ((NODES == 3)) && [[ -f $KDIR/data/meta.properties ]]; then
        die "$KDIR holds a one-node broker (formatted with KCHAT_KAFKA_NODES=1): start it without KCHAT_KAFKA_NODES=3, or stop it and remove $KDIR to start three nodes from nothing"
    fi
    if ((NODES == 3)) && ((formatted > 0 && formatted < 3)); then
        die "only $formatted of the 3 nodes in $KDIR are formatted: a voter of a static quorum is not formatted again on its own (its metadata would be lost); remove $KDIR to start from nothing"
    fi
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

# pid of the running broker of this state dir (node NODE), or nothing
running_pid() {
    pid_of_file "$PID_FILE"
}

pid_of_file() {
    [[ -f $1 ]] || return 1
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid may have been reused by something else since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# the broker of node NODE answers a metadata request and lists itself as an (unfenced) broker
broker_answers() {
    port_open "$NODE_PORT" || return 1
    if command -v kcat >/dev/null; then
        kcat -L -b "127.0.0.1:$NODE_PORT" -m 3 -X topic.metadata.refresh.interval.ms=-1 2>/dev/null |
            grep -q "broker $NODE at 127.0.0.1:$NODE_PORT"
    else
        # no kcat: the start-up line, written after LOG_OFFSET[NODE] (the log's size when we launched)
        tail -c +"$((${LOG_OFFSET[$NODE]:-0} + 1))" "$LOG_DIR/server.log" 2>/dev/null | grep -q 'Kafka Server started'
    fi
}

render_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    "$REPO/scripts/credentials.sh" make
    # The password is base64url: nothing sed or the JAAS string would read specially.
    (umask 077 && sed -e "s|@KAFKA_PORT@|$NODE_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$NODE_CONTROLLER_PORT|g" \
        -e "s|@SASL_PORT@|$NODE_SASL_PORT|g" \
        -e "s|@NODE_ID@|$NODE|g" \
        -e "s|@QUORUM_VOTERS@|$QUORUM_VOTERS|g" \
        -e "s|@REPLICATION_FACTOR@|$RF|g" \
        -e "s|@MIN_ISR@|$MIN_ISR|g" \
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
    log "${WHO}formatting $DATA_DIR (cluster id $cid)"
    # static quorum (controller.quorum.voters): no --standalone; every node of three is
    # formatted with the same cluster id (and the same SCRAM user)
    # The SCRAM user of the SASL_SSL listener is part of the first metadata.
    if ! java_cp format.log kafka.tools.StorageTool format -t "$cid" -c "$PROPS" \
        --add-scram "SCRAM-SHA-512=[name=kchat,password=$(cat "$KCHAT_TLS_DIR/kafka-password")]" \
        >"$LOG_DIR/format.out" 2>&1; then
        cat "$LOG_DIR/format.out" >&2
        die "${WHO}kafka-storage format failed"
    fi
}

cmd_start() {
    state_paths
    check_layout
    local n pid t0 launch=() wait_for=()
    PIDS=()
    LOG_OFFSET=()
    t0=$(date +%s%N)
    for ((n = 1; n <= NODES; n++)); do
        node_paths "$n"
        if ! pid=$(running_pid); then
            launch+=("$n")
            continue
        fi
        PIDS[n]=$pid
        if [[ -n $NODE_JMX_PORT ]] && ! port_open "$NODE_JMX_PORT"; then
            log "${WHO}note: the running broker has no JMX on 127.0.0.1:$NODE_JMX_PORT (started without KCHAT_KAFKA_JMX_PORT; stop it to start it with)"
        fi
        if broker_answers; then
            log "${WHO}already running (pid $pid) on 127.0.0.1:$NODE_PORT"
        else
            log "${WHO}already started (pid $pid); waiting for it to answer on 127.0.0.1:$NODE_PORT"
            wait_for+=("$n")
        fi
    done
    if ((${#launch[@]} > 0)); then
        check_java
        need_libs
        [[ -f $TEMPLATE ]] || die "missing $TEMPLATE"
        if [[ -n $JMX_PORT ]]; then
            [[ $JMX_PORT =~ ^[0-9]+$ ]] && ((JMX_PORT > 0 && JMX_PORT < 65536)) ||
                die "KCHAT_KAFKA_JMX_PORT must be a port number, not '$JMX_PORT'"
        fi
        if ((NODES > 1)); then
            # node N's ports are node 1's plus 3*(N-1): moved one by one, they may meet
            local all=() dup
            for ((n = 1; n <= NODES; n++)); do
                node_paths "$n"
                all+=("$NODE_PORT" "$NODE_CONTROLLER_PORT" "$NODE_SASL_PORT" ${NODE_JMX_PORT:+"$NODE_JMX_PORT"})
            done
            dup=$(printf '%s\n' "${all[@]}" | sort | uniq -d | tr '\n' ' ')
            [[ -z $dup ]] || die "the nodes' ports overlap (${dup% }): node N listens on KCHAT_KAFKA_PORT, KCHAT_KAFKA_CONTROLLER_PORT and KCHAT_KAFKA_SASL_PORT plus 3*(N-1) (and KCHAT_KAFKA_JMX_PORT plus N-1); set them at least 9 apart"
        fi
        local p
        for n in "${launch[@]}"; do
            node_paths "$n"
            rm -f "$PID_FILE"
            for p in "$NODE_PORT" "$NODE_CONTROLLER_PORT" "$NODE_SASL_PORT" ${NODE_JMX_PORT:+"$NODE_JMX_PORT"}; do
                if port_open "$p"; then
                    die "${WHO}port 127.0.0.1:$p is already in use by another process (set KCHAT_KAFKA_PORT / KCHAT_KAFKA_CONTROLLER_PORT / KCHAT_KAFKA_SASL_PORT / KCHAT_KAFKA_JMX_PORT)"
                fi
            done
        done
        for n in "${launch[@]}"; do
            node_paths "$n"
            render_config
            format_storage
        done
        t0=$(date +%s%N)
        # every node first, then the wait: three nodes answer only once a majority of the
        # quorum runs
        for n in "${launch[@]}"; do
            node_paths "$n"
            launch_node
            wait_for+=("$n")
        done
    fi
    if ((${#wait_for[@]} > 0)); then
        wait_ready "$t0" "${wait_for[@]}"
    fi
}

# Launches the broker of node NODE detached; its pid goes to PIDS[NODE] and its pid file.
launch_node() {
    LOG_OFFSET[NODE]=$(stat -c %s "$LOG_DIR/server.log" 2>/dev/null || echo 0)
    log "${WHO}starting Kafka $VERSION on 127.0.0.1:$NODE_PORT (controller 127.0.0.1:$NODE_CONTROLLER_PORT, data $DATA_DIR${NODE_JMX_PORT:+, JMX 127.0.0.1:$NODE_JMX_PORT})"
    local jmx
    mapfile -t jmx < <(JMX_PORT=$NODE_JMX_PORT jmx_opts)
    # shellcheck disable=SC2086  # HEAP_OPTS and EXTRA_JVM_OPTS are word lists
    # The parallel collector: on two cores G1's concurrent refinement and marking threads cost
    # more than they save (a broker's heap is almost all short-lived request garbage; young
    # collections take a few ms here); measured in docs/benchmarks.md.
    # With KCHAT_KAFKA_CGROUP (a cgroup v2 folder), node N starts in its subfolder nodeN, so
    # that iptables can match every socket it opens (the fault runner's network partitions).
    local cg=${KCHAT_KAFKA_CGROUP:+$KCHAT_KAFKA_CGROUP/node$NODE}
    if [[ -n $cg ]]; then mkdir -p "$cg" || die "cannot make the cgroup $cg"; fi
    # shellcheck disable=SC2086
    (
        if [[ -n $cg ]]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
        exec setsid "$JAVA" $HEAP_OPTS \
            -XX:+UseParallelGC -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true "${jmx[@]}" \
            -Dkafka.logs.dir="$LOG_DIR" -Dkafka.log.file=server.log -Dlog4j2.configurationFile="$LOG4J_CONF" \
            $EXTRA_JVM_OPTS \
            -cp "$LIBS/*" kafka.Kafka "$PROPS"
    ) </dev/null >>"$LOG_DIR/kafka.out" 2>&1 &
    PIDS[NODE]=$!
    printf '%s\n' "${PIDS[NODE]}" >"$PID_FILE"
}

# wait_ready T0 NODE...: until the broker of every NODE answers (pids in PIDS)
wait_ready() {
    local t0=$1 deadline n pid
    shift
    local pending=("$@") rest
    deadline=$(($(date +%s) + START_TIMEOUT))
    while :; do
        rest=()
        for n in "${pending[@]}"; do
            node_paths "$n"
            pid=${PIDS[n]}
            if ! kill -0 "$pid" 2>/dev/null; then
                rm -f "$PID_FILE"
                show_log_tail
                die "${WHO}Kafka exited during start-up (logs: $LOG_DIR)"
            fi
            if broker_answers; then
                local ms=$((($(date +%s%N) - t0) / 1000000))
                local rss
                rss=$(awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$pid/status" 2>/dev/null || true)
                log "${WHO}Kafka $VERSION up on 127.0.0.1:$NODE_PORT (pid $pid, ${ms} ms, RSS ${rss:-?})"
            else
                rest+=("$n")
            fi
        done
        ((${#rest[@]} > 0)) || return 0
        pending=("${rest[@]}")
        if (($(date +%s) >= deadline)); then
            for n in "${pending[@]}"; do
                node_paths "$n"
                show_log_tail
            done
            node_paths "${pending[0]}"
            die "${WHO}Kafka (pid ${PIDS[${pending[0]}]}) did not answer on 127.0.0.1:$NODE_PORT within ${START_TIMEOUT}s; it is left running, 'scripts/kafka.sh stop' ends it (logs: $LOG_DIR)"
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

# The pid files of every node this state folder may hold: the one node's, then node1..3's.
pid_files() {
    printf '%s\n' "$KDIR/kafka.pid"
    local n
    for n in 1 2 3; do
        [[ -d $KDIR/node$n ]] && printf '%s\n' "$KDIR/node$n/kafka.pid"
    done
    return 0
}

# "node N: " for a pid file of a node of three, nothing for the one node's
who_of() { [[ $1 == */node*/kafka.pid ]] && echo "node $(basename "$(dirname "$1")" | tr -dc 0-9): "; return 0; }

# Every node of the state folder, whatever KCHAT_KAFKA_NODES says: SIGTERM to all at once,
# then each waited for (a node stopped after the others would wait for a quorum that is gone).
cmd_stop() {
    state_paths
    local f pid files=() pids=()
    while IFS= read -r f; do
        if pid=$(pid_of_file "$f"); then
            files+=("$f")
            pids+=("$pid")
        else
            rm -f "$f"
        fi
    done < <(pid_files)
    if ((${#pids[@]} == 0)); then
        log "not running"
        return 0
    fi
    local i
    for i in "${!pids[@]}"; do
        log "$(who_of "${files[i]}")stopping Kafka (pid ${pids[i]})"
        kill -TERM "${pids[i]}" 2>/dev/null || true
    done
    local deadline=$(($(date +%s) + STOP_TIMEOUT))
    for i in "${!pids[@]}"; do
        pid=${pids[i]}
        while kill -0 "$pid" 2>/dev/null; do
            if (($(date +%s) >= deadline)); then
                log "$(who_of "${files[i]}")still running after ${STOP_TIMEOUT}s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        # wait for the kernel to reap it (it is not our child when started by another shell)
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        rm -f "${files[i]}"
        log "$(who_of "${files[i]}")stopped"
    done
}

cmd_status() {
    state_paths
    local pid n up=0
    for ((n = 1; n <= NODES; n++)); do
        node_paths "$n"
        local name=kafka
        ((NODES == 1)) || name="kafka node $n"
        if pid=$(running_pid); then
            up=$((up + 1))
            if broker_answers; then
                echo "$name: running (pid $pid) on 127.0.0.1:$NODE_PORT"
            else
                echo "$name: process running (pid $pid) but not answering on 127.0.0.1:$NODE_PORT"
            fi
        else
            echo "$name: not running"
        fi
    done
    # a node of the other shape in this state folder
    local f others=("$KDIR/kafka.pid")
    ((NODES > 1)) || others=("$KDIR/node1/kafka.pid" "$KDIR/node2/kafka.pid" "$KDIR/node3/kafka.pid")
    for f in "${others[@]}"; do
        if pid=$(pid_of_file "$f"); then
            echo "kafka: ${f#"$KDIR"/} names a running broker (pid $pid): this state folder's nodes do not match KCHAT_KAFKA_NODES=$NODES"
        fi
    done
    ((up == NODES)) && return 0
    ((up == 0)) && return 3
    return 1
}

cmd_pid() {
    local n=${1:-1}
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= NODES)) || die "no node $n (KCHAT_KAFKA_NODES=$NODES)"
    state_paths
    node_paths "$n"
    running_pid || { log "${WHO}not running"; return 3; }
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
        pid) cmd_pid "$@" ;;
        libs) libs_ready || die "jars not fetched yet: scripts/kafka.sh fetch"; printf '%s\n' "$LIBS" ;;
        topics) cmd_run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
        groups) cmd_run_class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
        run-class) cmd_run_class "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
