#!/usr/bin/env bash
# The local stack's secured connections: made once per state folder, in $KCHAT_TLS_DIR
# ($KCHAT_STATE_DIR/tls), readable by its owner only.
#
#   scripts/credentials.sh make     make what is missing (called by kafka.sh and pg.sh start)
#
#   ca.pem            the stack's own CA (ca.key beside it)
#   server.pem        certificate for 127.0.0.1 and localhost, signed by the CA; server.key its
#                     key (PKCS#8): the broker's SASL_SSL listener and Postgres (pg.sh copies
#                     both into its data folder) present it
#   kafka.pem         server.key and server.pem in one file (the broker's PEM key store)
#   kafka-password    password of the SASL user "kchat" (SCRAM-SHA-512 and PLAIN)
#   redis-password    password of the Redis ACL user "kchat" (scripts/redis.sh's second server)
#
# Clients verify the server's name against the certificate: Kafka clients with
# ssl.ca.location=ca.pem (host name check on by default), libpq with sslmode=verify-full
# sslrootcert=ca.pem. Nothing here is for production: it is how the tests prove the daemons
# speak TLS, SASL and Redis AUTH (docs/operations.md, "Secured connections").
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
DIR=$KCHAT_TLS_DIR

password() { [[ -s $1 ]] || (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$1"); }

make_all() {
    command -v openssl >/dev/null || { echo "credentials.sh: openssl not found" >&2; exit 1; }
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [[ ! -s $DIR/ca.pem || ! -s $DIR/server.pem || ! -s $DIR/server.key ]]; then
        local tmp
        tmp=$(mktemp -d "$DIR/.tmp.XXXXXX")
        (
            umask 077
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
                -subj "/CN=kchat local stack CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
                -keyout "$tmp/server.key" -out "$tmp/server.csr"
            printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
                "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$tmp/ext"
            openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
                -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/server.pem"
            openssl pkcs8 -topk8 -nocrypt -in "$tmp/server.key" -out "$tmp/server.pk8"
            mv "$tmp/server.pk8" "$tmp/server.key"
        ) 2>"$tmp/openssl.log" || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; exit 1; }
        mv "$tmp/ca.key" "$tmp/ca.pem" "$tmp/server.key" "$tmp/server.pem" "$DIR/"
        rm -rf "$tmp" "$DIR/kafka.pem"
    fi
    [[ -s $DIR/kafka.pem ]] || (umask 077 && cat "$DIR/server.key" "$DIR/server.pem" >"$DIR/kafka.pem")
    password "$DIR/kafka-password"
    password "$DIR/redis-password"
    chmod 600 "$DIR"/*
}

case ${1:-} in
make) make_all ;;
*) echo "usage: $0 make" >&2; exit 2 ;;
esac
