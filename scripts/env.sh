# Sourced by the stack scripts: where the state lives and which ports everything uses.
# Every port derives from KCHAT_PORT_BASE unless set on its own; `make run` uses 17000,
# `make test` 27000, so a test run never touches a running stack.
KCHAT_ROOT=${KCHAT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
KCHAT_STATE_DIR=${KCHAT_STATE_DIR:-$KCHAT_ROOT/.state}
KCHAT_PORT_BASE=${KCHAT_PORT_BASE:-17000}
KCHAT_BUILD_DIR=${KCHAT_BUILD_DIR:-$KCHAT_ROOT/build}
KCHAT_KAFKA_PORT=${KCHAT_KAFKA_PORT:-$((KCHAT_PORT_BASE + 10))}
KCHAT_KAFKA_CONTROLLER_PORT=${KCHAT_KAFKA_CONTROLLER_PORT:-$((KCHAT_PORT_BASE + 11))}
# The broker's second listener, SASL_SSL (scripts/credentials.sh makes its certificate and
# password); the daemons use the PLAINTEXT one unless told otherwise.
KCHAT_KAFKA_SASL_PORT=${KCHAT_KAFKA_SASL_PORT:-$((KCHAT_PORT_BASE + 12))}
KCHAT_PG_PORT=${KCHAT_PG_PORT:-$((KCHAT_PORT_BASE + 20))}
KCHAT_REDIS_PORT=${KCHAT_REDIS_PORT:-$((KCHAT_PORT_BASE + 30))}
# A second Redis that lets in only the ACL user "kchat" with its password.
KCHAT_REDIS_AUTH_PORT=${KCHAT_REDIS_AUTH_PORT:-$((KCHAT_PORT_BASE + 31))}
KCHAT_TLS_DIR=${KCHAT_TLS_DIR:-$KCHAT_STATE_DIR/tls}
KCHAT_MINIO_PORT=${KCHAT_MINIO_PORT:-$((KCHAT_PORT_BASE + 40))}
KCHAT_MINIO_CONSOLE_PORT=${KCHAT_MINIO_CONSOLE_PORT:-$((KCHAT_PORT_BASE + 41))}
KCHAT_S3_BUCKET=${KCHAT_S3_BUCKET:-kchat-attachments}
KCHAT_S3_REGION=${KCHAT_S3_REGION:-us-east-1}
KCHAT_API_PORT=${KCHAT_API_PORT:-$((KCHAT_PORT_BASE + 80))}
# The ingress (nginx): the one origin a browser opens. 8080 for `make run`, base + 88 otherwise.
if [[ -z ${KCHAT_INGRESS_PORT:-} ]]; then
    if [[ $KCHAT_PORT_BASE == 17000 ]]; then KCHAT_INGRESS_PORT=8080; else KCHAT_INGRESS_PORT=$((KCHAT_PORT_BASE + 88)); fi
fi
# Browsers may open /ws only from the ingress's origin (the gateways' --allowed-origins).
KCHAT_ALLOWED_ORIGINS=${KCHAT_ALLOWED_ORIGINS:-http://127.0.0.1:$KCHAT_INGRESS_PORT,http://localhost:$KCHAT_INGRESS_PORT,https://127.0.0.1:$KCHAT_INGRESS_PORT,https://localhost:$KCHAT_INGRESS_PORT}
KCHAT_GATEWAY_PORT=${KCHAT_GATEWAY_PORT:-$((KCHAT_PORT_BASE + 81))}
KCHAT_GATEWAY_ADMIN_PORT=${KCHAT_GATEWAY_ADMIN_PORT:-$((KCHAT_PORT_BASE + 91))}
KCHAT_PROCESSOR_ADMIN_PORT=${KCHAT_PROCESSOR_ADMIN_PORT:-$((KCHAT_PORT_BASE + 95))}
KCHAT_PROJECTOR_ADMIN_PORT=${KCHAT_PROJECTOR_ADMIN_PORT:-$((KCHAT_PORT_BASE + 96))}
KCHAT_NOTIFIER_ADMIN_PORT=${KCHAT_NOTIFIER_ADMIN_PORT:-$((KCHAT_PORT_BASE + 97))}
# kchat-registry: the schema registry API (read-only, over schemas/), /health and /metrics.
KCHAT_REGISTRY_PORT=${KCHAT_REGISTRY_PORT:-$((KCHAT_PORT_BASE + 98))}
# kchat-archiver: the topics into the object store (MinIO here), /health and /metrics.
KCHAT_ARCHIVER_ADMIN_PORT=${KCHAT_ARCHIVER_ADMIN_PORT:-$((KCHAT_PORT_BASE + 99))}
# Kafka nodes: 1, or 3 combined broker+controller nodes that are the controller quorum
# (scripts/kafka.sh). Node N listens on the three Kafka ports above plus 3*(N-1): base + 13..15
# and base + 16..18. The bootstrap list names every node.
KCHAT_KAFKA_NODES=${KCHAT_KAFKA_NODES:-1}
kchat_brokers=127.0.0.1:$KCHAT_KAFKA_PORT
if [[ $KCHAT_KAFKA_NODES == 3 ]]; then
    kchat_brokers+=,127.0.0.1:$((KCHAT_KAFKA_PORT + 3)),127.0.0.1:$((KCHAT_KAFKA_PORT + 6))
fi
KCHAT_KAFKA_BROKERS=${KCHAT_KAFKA_BROKERS:-$kchat_brokers}
unset kchat_brokers
# With three nodes every topic kchatctl applies gets replication factor 3 and
# min.insync.replicas 2 (kchatctl's --replication-factor and --min-insync-replicas, read from
# these variables; kafka/topics.json stays the one spec, written for one node).
if [[ $KCHAT_KAFKA_NODES == 3 ]]; then
    KCHAT_REPLICATION_FACTOR=${KCHAT_REPLICATION_FACTOR:-3}
    KCHAT_MIN_INSYNC_REPLICAS=${KCHAT_MIN_INSYNC_REPLICAS:-2}
    export KCHAT_REPLICATION_FACTOR KCHAT_MIN_INSYNC_REPLICAS
fi
# Loopback: no TLS (libpq's default, sslmode=prefer, would encrypt every row now that the
# stack's Postgres has TLS on for the tests of verify-full; see docs/operations.md).
KCHAT_PG_DSN=${KCHAT_PG_DSN:-host=127.0.0.1 port=$KCHAT_PG_PORT dbname=kchat user=kchat sslmode=disable}
KCHAT_REDIS_HOST=${KCHAT_REDIS_HOST:-127.0.0.1}
# The token key pair (RS256), made by `stack.sh up` on first start: kchat-api signs with the
# private key, every daemon that checks tokens holds only the public one. The variables are
# the daemons' --jwt-private-key / --jwt-public-key options.
KCHAT_JWT_PRIVATE_KEY=${KCHAT_JWT_PRIVATE_KEY:-$KCHAT_STATE_DIR/keys/jwt-private.pem}
KCHAT_JWT_PUBLIC_KEY=${KCHAT_JWT_PUBLIC_KEY:-$KCHAT_STATE_DIR/keys/jwt-public.pem}
# The VAPID key pair of Web Push (EC P-256, RFC 8292), made by `stack.sh up` on first start
# like the token keys: kchat-notifier signs each push with the private key; kchat-api holds
# only the public one (its --vapid-public-key), which it hands to browsers to subscribe with.
KCHAT_VAPID_PRIVATE_KEY=${KCHAT_VAPID_PRIVATE_KEY:-$KCHAT_STATE_DIR/keys/vapid-private.pem}
KCHAT_VAPID_PUBLIC_KEY=${KCHAT_VAPID_PUBLIC_KEY:-$KCHAT_STATE_DIR/keys/vapid-public.pem}
# The local stack's browsers and tests may subscribe with an http:// push endpoint on a
# loopback host (kchat-api's --push-allow-http): a stand-in push service on this machine.
# A deployment leaves it off: real push services are https.
KCHAT_PUSH_ALLOW_HTTP=${KCHAT_PUSH_ALLOW_HTTP:-1}
export KCHAT_ROOT KCHAT_STATE_DIR KCHAT_PORT_BASE KCHAT_BUILD_DIR KCHAT_KAFKA_PORT \
    KCHAT_KAFKA_CONTROLLER_PORT KCHAT_KAFKA_SASL_PORT KCHAT_PG_PORT KCHAT_REDIS_PORT KCHAT_REDIS_AUTH_PORT KCHAT_TLS_DIR KCHAT_MINIO_PORT KCHAT_MINIO_CONSOLE_PORT KCHAT_S3_BUCKET KCHAT_S3_REGION KCHAT_API_PORT KCHAT_GATEWAY_PORT \
    KCHAT_GATEWAY_ADMIN_PORT KCHAT_PROCESSOR_ADMIN_PORT KCHAT_PROJECTOR_ADMIN_PORT KCHAT_NOTIFIER_ADMIN_PORT KCHAT_REGISTRY_PORT KCHAT_ARCHIVER_ADMIN_PORT \
    KCHAT_KAFKA_NODES KCHAT_KAFKA_BROKERS KCHAT_PG_DSN KCHAT_REDIS_HOST KCHAT_JWT_PRIVATE_KEY KCHAT_JWT_PUBLIC_KEY \
    KCHAT_VAPID_PRIVATE_KEY KCHAT_VAPID_PUBLIC_KEY KCHAT_PUSH_ALLOW_HTTP KCHAT_INGRESS_PORT KCHAT_ALLOWED_ORIGINS
