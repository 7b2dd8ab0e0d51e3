#!/usr/bin/env bash
# Local ingress for kchat (Debian's nginx): one origin on 127.0.0.1 for the web client, the
# REST API and the WebSocket, its files under $KCHAT_STATE_DIR/nginx, run as the current
# user (no system service, nothing under /etc or /var is written).
#
#   scripts/nginx.sh start | stop | status | reload
#
# Settings (environment):
#   KCHAT_INGRESS_PORT      port of the ingress (8080 for the base 17000 of `make run`,
#                           base + 88 for any other base)
#   KCHAT_INGRESS_GATEWAYS  the gateways' WebSocket listeners, host:port[,host:port...]
#                           (default 127.0.0.1:$KCHAT_GATEWAY_PORT)
#   KCHAT_INGRESS_WS_TIMEOUT_S  idle time after which the ingress closes a WebSocket (default
#                           120, above the gateways' keepalive interval)
#   KCHAT_INGRESS_TLS_CERT, KCHAT_INGRESS_TLS_KEY   PEM files: when both are set, the port
#                           speaks TLS (https:// and wss://) instead of plain HTTP
#   KCHAT_INGRESS_S3_ORIGIN the object store's origin as browsers reach it, scheme://host[:port]:
#                           the page's Content-Security-Policy lets it upload there and show
#                           images from there (attachments' presigned URLs). Default: the
#                           origin of KCHAT_S3_ENDPOINT (scripts/stack.sh exports MinIO's);
#                           none when both are empty
#   KCHAT_WEB_DIST          the built client (default web/dist: cd web && npm ci && npm run build)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if [[ -z ${KCHAT_INGRESS_PORT:-} ]]; then
    if [[ $KCHAT_PORT_BASE == 17000 ]]; then KCHAT_INGRESS_PORT=8080; else KCHAT_INGRESS_PORT=$((KCHAT_PORT_BASE + 88)); fi
fi
KCHAT_INGRESS_GATEWAYS=${KCHAT_INGRESS_GATEWAYS:-127.0.0.1:$KCHAT_GATEWAY_PORT}
KCHAT_INGRESS_WS_TIMEOUT_S=${KCHAT_INGRESS_WS_TIMEOUT_S:-120}
KCHAT_WEB_DIST=${KCHAT_WEB_DIST:-$KCHAT_ROOT/web/dist}

DIR=$KCHAT_STATE_DIR/nginx
PIDFILE=$DIR/nginx.pid
CONF=$DIR/nginx.conf
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

scheme() { if [[ -n ${KCHAT_INGRESS_TLS_CERT:-} ]]; then echo https; else echo http; fi; }
url() { echo "$(scheme)://127.0.0.1:$KCHAT_INGRESS_PORT"; }

status() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; }

die() { echo "nginx.sh: $*" >&2; exit 1; }

valid_hostport() { [[ $1 =~ ^[A-Za-z0-9.-]+:[0-9]{1,5}$ ]]; }

# The origin (scheme://host[:port]) of an http(s) URL, or nothing when it is not one.
origin_of() {
    local re='^(https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?)(/[^[:space:];"'"'"']*)?$'
    [[ $1 =~ $re ]] || return 1
    printf '%s' "${BASH_REMATCH[1],,}"
}

render() {
    [[ -x $NGINX ]] || die "nginx not found (apt-get install nginx-light or nginx)"
    [[ -f $KCHAT_WEB_DIST/index.html ]] ||
        die "the web client is not built: $KCHAT_WEB_DIST/index.html is missing (cd web && npm ci && npm run build)"
    [[ $KCHAT_INGRESS_PORT =~ ^[0-9]+$ ]] && ((KCHAT_INGRESS_PORT > 0 && KCHAT_INGRESS_PORT < 65536)) ||
        die "KCHAT_INGRESS_PORT must be a port number, not '$KCHAT_INGRESS_PORT'"
    [[ $KCHAT_INGRESS_WS_TIMEOUT_S =~ ^[0-9]+$ ]] && ((KCHAT_INGRESS_WS_TIMEOUT_S >= 10)) ||
        die "KCHAT_INGRESS_WS_TIMEOUT_S must be a number of seconds, at least 10"
    local api=127.0.0.1:$KCHAT_API_PORT gateways='' gw listen hsts='' user_line=''
    valid_hostport "$api" || die "bad API address $api"
    IFS=, read -ra gws <<<"$KCHAT_INGRESS_GATEWAYS"
    ((${#gws[@]} > 0)) || die "KCHAT_INGRESS_GATEWAYS is empty"
    for gw in "${gws[@]}"; do
        valid_hostport "$gw" || die "KCHAT_INGRESS_GATEWAYS: '$gw' is not host:port"
        # a gateway that fails is left alone for 10 s; its clients reconnect to the others
        gateways+="        server $gw max_fails=1 fail_timeout=10s;"$'\n'
    done
    if [[ -n ${KCHAT_INGRESS_TLS_CERT:-} || -n ${KCHAT_INGRESS_TLS_KEY:-} ]]; then
        [[ -r ${KCHAT_INGRESS_TLS_CERT:-} && -r ${KCHAT_INGRESS_TLS_KEY:-} ]] ||
            die "KCHAT_INGRESS_TLS_CERT and KCHAT_INGRESS_TLS_KEY must both name readable PEM files"
        listen="        listen 127.0.0.1:$KCHAT_INGRESS_PORT ssl;
        ssl_certificate $KCHAT_INGRESS_TLS_CERT;
        ssl_certificate_key $KCHAT_INGRESS_TLS_KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:kchat_tls:1m;"
        hsts="        add_header Strict-Transport-Security \"max-age=31536000\" always;"
    else
        listen="        listen 127.0.0.1:$KCHAT_INGRESS_PORT;"
    fi
    # As root, nginx would hand its workers to 'nobody', who cannot write the state folder.
    if [[ $(id -u) == 0 ]]; then user_line="user $(id -un) $(id -gn);"; fi
    local s3_origin='' s3=${KCHAT_INGRESS_S3_ORIGIN:-${KCHAT_S3_ENDPOINT:-}}
    if [[ -n $s3 ]]; then
        s3_origin=$(origin_of "$s3") ||
            die "the object store's address '$s3' is not an http(s) URL (KCHAT_INGRESS_S3_ORIGIN or KCHAT_S3_ENDPOINT)"
        s3_origin=" $s3_origin"
    fi

    mkdir -p "$DIR/tmp"
    cp "$KCHAT_ROOT/web/nginx-proxy-api.conf" "$DIR/proxy-api.conf"
    local tpl
    tpl=$(<"$KCHAT_ROOT/web/nginx.conf.in")
    tpl=${tpl//@USER_LINE@/$user_line}
    tpl=${tpl//@DIR@/$DIR}
    tpl=${tpl//@DIST@/$KCHAT_WEB_DIST}
    tpl=${tpl//@API@/$api}
    tpl=${tpl//@GATEWAYS@/${gateways%$'\n'}}
    tpl=${tpl//@LISTEN@/$listen}
    tpl=${tpl//@HSTS@/$hsts}
    tpl=${tpl//@WS_TIMEOUT@/$KCHAT_INGRESS_WS_TIMEOUT_S}
    tpl=${tpl//@S3_ORIGIN@/$s3_origin}
    [[ $tpl != *@[A-Z_]*@* ]] || die "the template has a placeholder this script does not know: $(grep -o '@[A-Z_]*@' <<<"$tpl" | head -1)"
    printf '%s\n' "$tpl" >"$CONF.new"
    if ! "$NGINX" -t -q -p "$DIR" -c "$CONF.new" -e "$DIR/error.log" 2>"$DIR/check.log"; then
        cat "$DIR/check.log" >&2
        die "the rendered configuration $CONF.new does not pass nginx -t"
    fi
    mv "$CONF.new" "$CONF"
}

start() {
    if status; then
        echo "nginx already running: $(url)"
        return
    fi
    render
    rm -f "$PIDFILE"
    "$NGINX" -p "$DIR" -c "$CONF" -e "$DIR/error.log"
    for _ in $(seq 100); do
        if status && curl -ks -o /dev/null -m 2 "$(url)/"; then
            echo "nginx started: $(url)"
            return
        fi
        sleep 0.1
    done
    tail -n 20 "$DIR/error.log" >&2
    die "nginx did not start on 127.0.0.1:$KCHAT_INGRESS_PORT"
}

stop() {
    if status; then
        local pid
        pid=$(cat "$PIDFILE")
        kill -QUIT "$pid" 2>/dev/null || true # graceful: finish open requests, then exit
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "nginx stopped"
    fi
}

reload() {
    status || die "nginx is not running"
    render
    kill -HUP "$(cat "$PIDFILE")"
    echo "nginx reloaded: $(url)"
}

case ${1:-} in
start) start ;;
stop) stop ;;
reload) reload ;;
status) if status; then echo "nginx running: $(url)"; else echo "nginx not running"; exit 3; fi ;;
url) url ;;
*) echo "usage: $0 start|stop|status|reload|url" >&2; exit 2 ;;
esac
