#!/usr/bin/env bash
# Installs the peers into the bench cache, outside the repository (never committed):
#   Centrifugo  go install github.com/centrifugal/centrifugo/v6@v6.9.1  -> $CACHE/bin/centrifugo
#   Socket.IO   npm install socket.io @socket.io/redis-adapter redis     -> $CACHE/socketio/
# CACHE is $KCHAT_BENCH_CACHE, default ~/.cache/kchat-bench. Prints what is missing and
# exits 1 when a peer cannot be installed (Go or npm missing, no network).
set -uo pipefail
CACHE=${KCHAT_BENCH_CACHE:-$HOME/.cache/kchat-bench}
CENTRIFUGO_VERSION=v6.9.1
mkdir -p "$CACHE/bin" "$CACHE/socketio"
rc=0
if [[ ! -x $CACHE/bin/centrifugo ]]; then
    if command -v go >/dev/null; then
        echo "peers: building Centrifugo $CENTRIFUGO_VERSION into $CACHE/bin (a few minutes)" >&2
        GOBIN=$CACHE/bin go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION" || rc=1
    else
        echo "peers: go is not installed: no Centrifugo" >&2
        rc=1
    fi
fi
if [[ ! -d $CACHE/socketio/node_modules/socket.io ]]; then
    if command -v npm >/dev/null; then
        echo "peers: installing socket.io into $CACHE/socketio" >&2
        (cd "$CACHE/socketio" && { [[ -f package.json ]] || echo '{"private":true}' >package.json; } &&
            npm install --no-audit --no-fund socket.io@4 @socket.io/redis-adapter@8 redis@4 >&2) || rc=1
    else
        echo "peers: npm is not installed: no Socket.IO" >&2
        rc=1
    fi
fi
exit $rc
