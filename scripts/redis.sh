#!/usr/bin/env bash
# Local Redis 7 for kchat: 127.0.0.1 only, its files under $KCHAT_STATE_DIR/redis.
#
#   scripts/redis.sh start | stop | status
#
# Redis holds read models that are rebuilt from chat.events, so it runs without persistence.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Two servers: the stack's (no password, what the daemons use) and a second one on
# KCHAT_REDIS_AUTH_PORT that lets in only the ACL user "kchat" with the password of
# scripts/credentials.sh (default user off): the tests run daemons against it to show AUTH.
ROOT_DIR=$KCHAT_STATE_DIR/redis

# inst NAME: the variables of one server
inst() {
    if [[ $1 == main ]]; then
        DIR=$ROOT_DIR PORT=$KCHAT_REDIS_PORT
    else
        DIR=$ROOT_DIR/auth PORT=$KCHAT_REDIS_AUTH_PORT
    fi
    PIDFILE=$DIR/redis.pid
}

status_of() { inst "$1"; [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
status() { status_of main && status_of auth; }

start_one() {
    inst "$1"
    mkdir -p "$DIR"
    if status_of "$1"; then
        echo "redis already running on 127.0.0.1:$PORT"
        return
    fi
    local acl="" cli=(redis-cli -h 127.0.0.1 -p "$PORT")
    if [[ $1 == auth ]]; then
        "$(dirname "${BASH_SOURCE[0]}")/credentials.sh" make
        # The password goes into the ACL as its SHA-256 (#<hex>), never in clear text; the user
        # may touch only kchat's keys and channels, and no admin or dangerous command.
        acl="user default off
user kchat on #$(tr -d '\n' <"$KCHAT_TLS_DIR/redis-password" | sha256sum | cut -d' ' -f1) ~kchat:* &kchat:* +@all -@admin -@dangerous"
        cli+=(--user kchat --pass "$(cat "$KCHAT_TLS_DIR/redis-password")" --no-auth-warning)
    fi
    (umask 077 && cat >"$DIR/redis.conf" <<CONF
bind 127.0.0.1
port $PORT
protected-mode yes
daemonize yes
pidfile $PIDFILE
logfile $DIR/redis.log
dir $DIR
save ""
appendonly no
maxclients 10000
$acl
CONF
)
    redis-server "$DIR/redis.conf"
    for _ in $(seq 100); do
        if [[ $("${cli[@]}" ping 2>/dev/null) == PONG ]]; then
            echo "redis started on 127.0.0.1:$PORT${acl:+ (ACL user kchat only)}"
            return
        fi
        sleep 0.1
    done
    tail -n 20 "$DIR/redis.log" >&2
    exit 1
}

start() {
    command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
    start_one main
    start_one auth
}

stop_one() {
    if status_of "$1"; then
        local pid
        pid=$(cat "$PIDFILE")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "redis stopped (127.0.0.1:$PORT)"
    fi
}

stop() {
    stop_one auth
    stop_one main
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) if status; then echo "redis running on 127.0.0.1:$KCHAT_REDIS_PORT and :$KCHAT_REDIS_AUTH_PORT"; else echo "redis not running"; exit 3; fi ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
