#!/usr/bin/env bash
# Local MinIO (S3-compatible object store) for attachments: 127.0.0.1 only, its data under
# $KCHAT_STATE_DIR/minio, one bucket ($KCHAT_S3_BUCKET). MinIO is built from its Go module
# (no download site is needed, only the Go module proxy) once per user into
# ${XDG_CACHE_HOME:-~/.cache}/kchat/, so clean clones of the project reuse it.
#
#   scripts/minio.sh install | start | stop | status
#
# The root credentials are made on first start and kept in $KCHAT_STATE_DIR/minio/credentials
# (KCHAT_S3_ACCESS_KEY / KCHAT_S3_SECRET_KEY override them); kchat-api signs presigned URLs
# with them.
#
# Browsers upload attachments straight to MinIO (a presigned PUT from the web client's page,
# another origin): MinIO answers their CORS preflight for the origins of
# KCHAT_MINIO_CORS_ORIGINS (comma-separated; default *, MinIO's own default, which answers any
# origin; set it to the ingress's origin, e.g. http://127.0.0.1:8080, to allow that one only).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# MinIO publishes no semver tags, so the module is pinned by its pseudo-version.
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TOOLS=${KCHAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kchat}
BIN=$TOOLS/minio-$MINIO_VERSION/minio
DIR=$KCHAT_STATE_DIR/minio
PIDFILE=$DIR/minio.pid

status() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

install() {
    [[ -x $BIN ]] && return 0
    command -v go >/dev/null || { echo "minio.sh: go not found (apt-get install golang)" >&2; exit 1; }
    echo "minio: building $MINIO_MODULE@$MINIO_VERSION (once per machine; a few minutes)"
    mkdir -p "$(dirname "$BIN")"
    GOBIN=$(dirname "$BIN") GOFLAGS=-mod=mod go install "$MINIO_MODULE@$MINIO_VERSION"
    [[ -x $BIN ]] || { echo "minio.sh: the build left no binary at $BIN" >&2; exit 1; }
}

credentials() {
    mkdir -p "$DIR"
    if [[ ! -s $DIR/credentials ]]; then
        (umask 077 && printf 'KCHAT_S3_ACCESS_KEY=kchat%s\nKCHAT_S3_SECRET_KEY=%s\n' \
            "$(openssl rand -hex 6)" "$(openssl rand -hex 20)" >"$DIR/credentials")
    fi
    # shellcheck disable=SC1091
    . "$DIR/credentials"
    KCHAT_S3_ACCESS_KEY=${KCHAT_S3_ACCESS_KEY_OVERRIDE:-$KCHAT_S3_ACCESS_KEY}
    KCHAT_S3_SECRET_KEY=${KCHAT_S3_SECRET_KEY_OVERRIDE:-$KCHAT_S3_SECRET_KEY}
}

start() {
    install
    credentials
    if status; then
        echo "minio already running on 127.0.0.1:$KCHAT_MINIO_PORT"
        return
    fi
    mkdir -p "$DIR/data"
    MINIO_ROOT_USER=$KCHAT_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$KCHAT_S3_SECRET_KEY \
        MINIO_BROWSER=off MINIO_UPDATE=off MINIO_REGION=$KCHAT_S3_REGION \
        MINIO_API_CORS_ALLOW_ORIGIN=${KCHAT_MINIO_CORS_ORIGINS:-*} \
        nohup "$BIN" server --quiet --address "127.0.0.1:$KCHAT_MINIO_PORT" \
        --console-address "127.0.0.1:$KCHAT_MINIO_CONSOLE_PORT" "$DIR/data" \
        >>"$DIR/minio.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 300); do
        if curl -fsS -m 1 "http://127.0.0.1:$KCHAT_MINIO_PORT/minio/health/ready" >/dev/null 2>&1; then
            break
        fi
        status || { tail -n 20 "$DIR/minio.log" >&2; exit 1; }
        sleep 0.2
    done
    # The bucket, made with a SigV4-signed PUT (curl signs it); 409 = it exists already. Right
    # after it reports ready, MinIO may still answer 503 while it initialises: try again.
    local code
    for _ in $(seq 50); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT \
            --aws-sigv4 "aws:amz:$KCHAT_S3_REGION:s3" --user "$KCHAT_S3_ACCESS_KEY:$KCHAT_S3_SECRET_KEY" \
            "http://127.0.0.1:$KCHAT_MINIO_PORT/$KCHAT_S3_BUCKET")
        [[ $code == 503 ]] || break
        sleep 0.2
    done
    if [[ $code != 200 && $code != 409 ]]; then
        echo "minio.sh: creating bucket $KCHAT_S3_BUCKET answered HTTP $code" >&2
        exit 1
    fi
    echo "minio started on 127.0.0.1:$KCHAT_MINIO_PORT (bucket $KCHAT_S3_BUCKET)"
}

stop() {
    if status; then
        local pid
        pid=$(cat "$PIDFILE")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
        echo "minio stopped"
    fi
}

case ${1:-} in
install) install ;;
start) start ;;
stop) stop ;;
env) credentials; printf 'KCHAT_S3_ACCESS_KEY=%s\nKCHAT_S3_SECRET_KEY=%s\n' "$KCHAT_S3_ACCESS_KEY" "$KCHAT_S3_SECRET_KEY" ;;
status) if status; then echo "minio running on 127.0.0.1:$KCHAT_MINIO_PORT"; else echo "minio not running"; exit 3; fi ;;
*) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
