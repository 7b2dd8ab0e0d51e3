#!/usr/bin/env bash
# Validates a Compose file with compose-go, the loader of Docker Compose v2 (no Docker engine
# needed): scripts/compose-check/ built once per version of its sources into
# ${XDG_CACHE_HOME:-~/.cache}/kchat/ (from the Go module proxy), then run.
#
#   scripts/compose-check.sh [-json] [FILE]     FILE defaults to compose/docker-compose.yml
#   scripts/compose-check.sh build              only build it; prints the binary's path
#
# Exit status 0 when the file loads without an error or a warning; -json prints the loaded
# project (interpolated with the .env beside the file, normalized).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/scripts/compose-check
COMPOSE_GO=$(awk '$1 == "github.com/compose-spec/compose-go/v2" { print $2 }' "$SRC/go.mod")
[[ -n $COMPOSE_GO ]] || { echo "compose-check.sh: no compose-go version in $SRC/go.mod" >&2; exit 1; }
# The binary is named by compose-go's version and a digest of the sources, so an edit of
# main.go or go.sum builds a new one.
DIGEST=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)
TOOLS=${KCHAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kchat}
BIN=$TOOLS/compose-check-$COMPOSE_GO-$DIGEST/compose-check

build() {
    [[ -x $BIN ]] && return 0
    command -v go >/dev/null || { echo "compose-check.sh: go not found (apt-get install golang)" >&2; exit 1; }
    mkdir -p "$(dirname "$BIN")"
    # -mod=readonly: go.sum must already hold every module (it is committed).
    local tmp
    tmp=$(mktemp "$BIN.XXXXXX")
    (cd "$SRC" && go build -mod=readonly -trimpath -o "$tmp" .) || { rm -f "$tmp"; exit 1; }
    mv "$tmp" "$BIN"
}

if [[ ${1:-} == build ]]; then
    build
    echo "$BIN"
    exit 0
fi
build
args=()
if [[ ${1:-} == -json ]]; then args+=(-json); shift; fi
exec "$BIN" "${args[@]}" "${1:-$ROOT/compose/docker-compose.yml}"
