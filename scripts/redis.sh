#!/usr/bin/env bash
# Local Redis 7 for kchat: 127.0.0.1 only, its files under $KCHAT_STATE_DIR/redis.
#
#   scripts/redis.sh start | stop | status
#
# Redis holds read models that are rebuilt from chat.events, so it runs without persistence.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

DIR=$KCHAT_STATE_DIR/redis
PIDFILE=$DIR/redis.pid
CLI=(redis-cli -h 127.0.0.1 -p "$KCHAT_REDIS_PORT")

status() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
    mkdir -p "$DIR"
    if status; then
        echo "redis already running on 127.0.0.1:$KCHAT_REDIS_PORT"
        return
    fi
    cat >"$DIR/redis.conf" <<CONF
bind 127.0.0.1
port $KCHAT_REDIS_PORT
protected-mode yes
daemonize yes
pidfile $PIDFILE
logfile $DIR/redis.log
dir $DIR
save ""
appendonly no
maxclients 10000
CONF
    redis-server "$DIR/redis.conf"
    for _ in $(seq 100); do
        if [[ $("${CLI[@]}" ping 2>/dev/null) == PONG ]]; then
            echo "redis started on 127.0.0.1:$KCHAT_REDIS_PORT"
            return
        fi
        sleep 0.1
    done
    tail -n 20 "$DIR/redis.log" >&2
    exit 1
}

stop() {
    if status; then
        local pid
        pid=$(cat "$PIDFILE")
        "${CLI[@]}" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "redis stopped"
    fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) if status; then echo "redis running on 127.0.0.1:$KCHAT_REDIS_PORT"; else echo "redis not running"; exit 3; fi ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
