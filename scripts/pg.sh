#!/usr/bin/env bash
# Local Postgres 15 for kchat: its data under $KCHAT_STATE_DIR/pg, listening on 127.0.0.1 only.
#
#   scripts/pg.sh start    initdb once (as the postgres user when run as root), start, create the
#                          kchat role and database; harmless when already running
#   scripts/pg.sh stop     fast shutdown; fine when not running
#   scripts/pg.sh status
#   scripts/pg.sh destroy  stop and delete the cluster
#
# Local connections are trusted (loopback only, a development stack); production points
# KCHAT_PG_DSN at a managed server with its own authentication.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PGBIN=${KCHAT_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[[ -x $PGBIN/pg_ctl ]] || { echo "pg.sh: Postgres binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Postgres will not run as root, so as root the cluster belongs to the postgres user, who
# must be able to reach it. When the state folder lies below a folder closed to others (a
# mktemp checkout, a home folder), the cluster lives in /var/tmp/kchat-pg/<hash of the state
# folder> instead, and $KCHAT_STATE_DIR/pg is a link to it. A state folder wiped by hand
# leaves no link, so a cluster found without one is stale and removed.
PGROOT=$KCHAT_STATE_DIR/pg
if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$KCHAT_STATE_DIR"
    if ! runuser -u postgres -- test -x "$KCHAT_STATE_DIR" 2>/dev/null; then
        hash=$(printf '%s' "$(cd "$KCHAT_STATE_DIR" && pwd -P)" | sha256sum | cut -c1-16)
        external=/var/tmp/kchat-pg/$hash
        if [[ ! -L $PGROOT ]]; then
            if [[ -d $external ]]; then
                [[ -f $external/data/postmaster.pid ]] && runuser -u postgres -- \
                    "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/pg_ctl" -D "$external/data" -m immediate stop >/dev/null 2>&1 || true
                rm -rf "$external"
            fi
            mkdir -p /var/tmp/kchat-pg "$external"
            chmod 755 /var/tmp/kchat-pg
            ln -sfn "$external" "$PGROOT"
        fi
        PGROOT=$external
    fi
fi
DATA=$PGROOT/data
SOCK=$PGROOT/sock
LOG=$PGROOT/postgres.log

status() { [[ -f $DATA/PG_VERSION ]] && as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
    mkdir -p "$PGROOT" "$SOCK"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PGROOT" "$SOCK"; fi
    if [[ ! -f $DATA/PG_VERSION ]]; then
        as_owner "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PGROOT/initdb.log" 2>&1 \
            || { cat "$PGROOT/initdb.log" >&2; exit 1; }
        cat >>"$DATA/postgresql.conf" <<CONF
# kchat local stack
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = on
log_min_messages = warning
CONF
    fi
    if status; then
        echo "postgres already running on 127.0.0.1:$KCHAT_PG_PORT"
    else
        # TLS with the stack's certificate (scripts/credentials.sh): clients choose it with
        # sslmode (verify-full sslrootcert=$KCHAT_TLS_DIR/ca.pem checks the name too).
        "$(dirname "${BASH_SOURCE[0]}")/credentials.sh" make
        install -m 600 "$KCHAT_TLS_DIR/server.pem" "$DATA/server.crt"
        install -m 600 "$KCHAT_TLS_DIR/server.key" "$DATA/server.key"
        if [[ $(id -u) -eq 0 ]]; then chown postgres: "$DATA/server.crt" "$DATA/server.key"; fi
        as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $KCHAT_PG_PORT -c ssl=on" -w -t 60 start >/dev/null \
            || { tail -n 20 "$LOG" >&2; exit 1; }
        echo "postgres started on 127.0.0.1:$KCHAT_PG_PORT"
    fi
    local psql=("$PGBIN/psql" -h 127.0.0.1 -p "$KCHAT_PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
    if [[ -z $("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'kchat'") ]]; then
        "${psql[@]}" -d postgres -c "CREATE ROLE kchat LOGIN"
    fi
    if [[ -z $("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'kchat'") ]]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE kchat OWNER kchat"
    fi
}

stop() {
    if status; then
        as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        echo "postgres stopped"
    fi
}

# Stops and deletes the cluster (the test runs' clean-up: a cluster outside the state
# folder would otherwise outlive it).
destroy() {
    stop
    if [[ -L $KCHAT_STATE_DIR/pg ]]; then rm -rf "$PGROOT" "$KCHAT_STATE_DIR/pg"; else rm -rf "$PGROOT"; fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
destroy) destroy ;;
status) if status; then echo "postgres running on 127.0.0.1:$KCHAT_PG_PORT"; else echo "postgres not running"; exit 3; fi ;;
*) echo "usage: $0 start|stop|status|destroy" >&2; exit 2 ;;
esac
