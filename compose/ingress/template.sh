#!/bin/sh
# Turns web/nginx.conf.in, the template scripts/nginx.sh renders for the local ingress, into
# a template for the envsubst step of the nginx image's entrypoint (/etc/nginx/templates):
# what the image's layout fixes is written in, what Compose sets becomes a ${KCHAT_INGRESS_*}
# variable. Run by compose/Dockerfile.web, and by tests/system/deploy/test_compose.py.
#
#   template.sh NGINX_CONF_IN OUT DIR DIST USER_LINE
#
#   DIR        the folder of the pid file, the logs, the temporary files and proxy-api.conf
#   DIST       the built client
#   USER_LINE  the user the workers run as ("user nginx;"), or empty
#
# Left to the container's environment (compose/docker-compose.yml, service ingress):
#   KCHAT_INGRESS_LISTEN           what nginx listens on (a port, or address:port)
#   KCHAT_INGRESS_API              host:port of kchat-api
#   KCHAT_INGRESS_GATEWAY_SERVERS  the gateways' server lines, made by 18-kchat-ingress.envsh
#                                  from KCHAT_INGRESS_GATEWAYS
#   KCHAT_INGRESS_WS_TIMEOUT_S     idle time after which a WebSocket is closed
#   KCHAT_INGRESS_CSP_S3           " <origin>" of the object store for the Content-Security-Policy
#                                  (or empty), made by 18-kchat-ingress.envsh from
#                                  KCHAT_INGRESS_S3_ORIGIN
set -eu
[ $# -eq 5 ] || { echo "usage: $0 NGINX_CONF_IN OUT DIR DIST USER_LINE" >&2; exit 2; }
in=$1 out=$2 dir=$3 dist=$4 user_line=$5
# shellcheck disable=SC2016 # the ${...} are written for envsubst, not expanded here
sed -e "s|@USER_LINE@|$user_line|" \
    -e "s|@DIR@|$dir|g" \
    -e "s|@DIST@|$dist|g" \
    -e 's|@LISTEN@|        listen ${KCHAT_INGRESS_LISTEN};|' \
    -e 's|@HSTS@||' \
    -e 's|@API@|${KCHAT_INGRESS_API}|g' \
    -e 's|@GATEWAYS@|${KCHAT_INGRESS_GATEWAY_SERVERS}|' \
    -e 's|@WS_TIMEOUT@|${KCHAT_INGRESS_WS_TIMEOUT_S}|g' \
    -e 's|@S3_ORIGIN@|${KCHAT_INGRESS_CSP_S3}|g' \
    "$in" >"$out"
if grep -q '@[A-Z_]*@' "$out"; then
    echo "template.sh: $in has a placeholder this script does not know: $(grep -o '@[A-Z_]*@' "$out" | head -n 1)" >&2
    exit 1
fi
