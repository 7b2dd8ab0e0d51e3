/* app.h - what every kchat daemon does the same way: its common options, logging, the loop,
 * metrics, health, the operations endpoints and the two-phase stop.
 *
 * A daemon's config struct embeds kc_common_cfg_t (and the connection groups it needs) and
 * lists the matching KC_CFG_* rows in its table, so `--help` shows one table per daemon.
 */
#ifndef KCHAT_APP_H
#define KCHAT_APP_H

#include <stddef.h>
#include <uv.h>

#include "kchat/admin.h"
#include "kchat/config.h"
#include "kchat/daemon.h"
#include "kchat/health.h"
#include "kchat/httpd.h"
#include "kchat/kafka.h"
#include "kchat/metrics.h"
#include "kchat/redis.h"

typedef struct {
    char *log_level;
    char *admin_addr;
    long long admin_port;
    long long shutdown_timeout_ms;
} kc_common_cfg_t;

typedef struct {
    char *dsn;
} kc_pg_cfg_t;


/* What verifies access tokens (every daemon that takes them; kchat-api also signs with the
 * issuer and audience). */
typedef struct {
    char *public_key;
    char *issuer;
    char *audience;
} kc_jwt_cfg_t;

#define KC_CFG_COMMON(type, f)                                                                    \
    {"log-level", KC_CFG_STR, offsetof(type, f.log_level), "info", 4, 5,                          \
     "log threshold: debug, info, warn or error"},                                                \
    {                                                                                             \
        "shutdown-timeout-ms", KC_CFG_INT, offsetof(type, f.shutdown_timeout_ms), "10000", 100,   \
            600000, "on SIGTERM, how long draining may take before the process exits anyway"      \
    }

/* The options naming what the daemons share, declared once so that a default or a limit
 * cannot differ from one daemon to the next. `use` ends the help text of a topic: "read
 * from", "written to". */
#define KC_CFG_SCHEMAS_DIR(type, f)                                                               \
    {                                                                                             \
        "schemas-dir", KC_CFG_STR, offsetof(type, f), "schemas", 1, 4096,                         \
            "folder of the Avro schemas and registry.json"                                        \
    }
/* Where an object store is and who we are to it (kchat/s3.h), in the fields s3_endpoint,
 * s3_bucket, s3_region, s3_access_key and s3_secret_key of type: the API's attachments,
 * the archiver's archive, kchatctl's backups. `what` is the daemon's own text for the
 * endpoint and `bucket` for the bucket. */
#define KC_CFG_S3(type, what, bucket)                                                             \
    {"s3-endpoint", KC_CFG_STR, offsetof(type, s3_endpoint), "", 0, 1024, (what)},               \
        {"s3-bucket", KC_CFG_STR, offsetof(type, s3_bucket), "", 0, 63, (bucket)},               \
        {"s3-region", KC_CFG_STR, offsetof(type, s3_region), "us-east-1", 1, 64,                 \
         "region in the signature's scope"},                                                      \
        {"s3-access-key", KC_CFG_STR, offsetof(type, s3_access_key), "", 0, 128,                 \
         "access key id"},                                                                        \
    {                                                                                             \
        "s3-secret-key", KC_CFG_STR, offsetof(type, s3_secret_key), "", 0, 128,                   \
            "secret key (prefer the environment variable)"                                        \
    }

/* The registry every schema must be in under registry.json's id, checked at start. */
typedef struct {
    char *url;
    long long wait_ms;
} kc_sr_cfg_t;
#define KC_CFG_SCHEMA_REGISTRY(type, f)                                                           \
    {"schema-registry-url", KC_CFG_STR, offsetof(type, f.url), "", 0, 1024,                       \
     "base URL of a schema registry (Confluent's REST API) that must hold every schema under "    \
     "its id in registry.json, checked at start (empty: no check)"},                              \
    {                                                                                             \
        "schema-registry-wait-ms", KC_CFG_INT, offsetof(type, f.wait_ms), "30000", 0, 600000,     \
            "how long the start waits for a registry that does not answer or lacks a schema "     \
            "(one rolling out beside the daemon)"                                                 \
    }
#define KC_CFG_TOPIC_(opt, what, type, f, def, use)                                               \
    {                                                                                             \
        opt, KC_CFG_STR, offsetof(type, f), def, 1, 249, "topic the " what " are " use            \
    }
#define KC_CFG_COMMANDS_TOPIC(type, f, use)                                                       \
    KC_CFG_TOPIC_("commands-topic", "commands", type, f, "chat.commands", use)
#define KC_CFG_EVENTS_TOPIC(type, f, use)                                                         \
    KC_CFG_TOPIC_("events-topic", "events", type, f, "chat.events", use)
#define KC_CFG_DELIVERIES_TOPIC(type, f, use)                                                     \
    KC_CFG_TOPIC_("deliveries-topic", "deliveries", type, f, "chat.deliveries", use)

/* A kc_jwt_cfg_t's three options; key_def is the public key's default ("": required). */
#define KC_CFG_JWT(type, f, key_def)                                                              \
    {"jwt-public-key", KC_CFG_STR, offsetof(type, f.public_key), key_def, 1, 4096,                \
     "PEM file of the RSA public keys that verify access tokens (RS256): one, or up to 4 while "   \
     "keys rotate"},                                                                              \
        {"jwt-issuer", KC_CFG_STR, offsetof(type, f.issuer), "kchat", 1, 256,                     \
         "iss claim of access tokens (kchat-api writes it; every verifier requires it)"},         \
    {                                                                                             \
        "jwt-audience", KC_CFG_STR, offsetof(type, f.audience), "kchat", 1, 256,                  \
            "aud claim of access tokens (kchat-api writes it; every verifier requires it)"        \
    }

/* The operations listener of daemons without an HTTP surface of their own. */
#define KC_CFG_ADMIN(type, f, admin_port_def)                                                     \
    {"admin-addr", KC_CFG_STR, offsetof(type, f.admin_addr), "127.0.0.1", 7, 15,                  \
     "IPv4 address of the /health and /metrics listener"},                                        \
    {                                                                                             \
        "admin-port", KC_CFG_INT, offsetof(type, f.admin_port), admin_port_def, 0, 65535,         \
            "port of the /health and /metrics listener (0: any free port)"                        \
    }

#define KC_CFG_KAFKA(type, f)                                                                     \
    {"kafka-brokers", KC_CFG_STR, offsetof(type, f.brokers), "127.0.0.1:17010", 1, 1024,         \
     "Kafka bootstrap servers, host:port[,host:port]"},                                           \
    {"kafka-debug", KC_CFG_STR, offsetof(type, f.debug), "", 0, 256,                              \
     "librdkafka debug contexts for troubleshooting (e.g. cgrp,fetch), logged at debug"},         \
    {"kafka-security-protocol", KC_CFG_STR, offsetof(type, f.security_protocol), "plaintext", 3,  \
     14, "how to reach the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl"},                 \
    {"kafka-sasl-mechanism", KC_CFG_STR, offsetof(type, f.sasl_mechanism), "SCRAM-SHA-512", 5,    \
     13, "SASL mechanism with a sasl_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},         \
    {"kafka-sasl-username", KC_CFG_STR, offsetof(type, f.sasl_username), "", 0, 256,              \
     "SASL user name (required with a sasl_* protocol)"},                                         \
    {"kafka-sasl-password", KC_CFG_STR, offsetof(type, f.sasl_password), "", 0, 1024,             \
     "SASL password (prefer the environment variable)"},                                          \
    {"kafka-ssl-ca-location", KC_CFG_STR, offsetof(type, f.ssl_ca_location), "", 0, 4096,         \
     "PEM file of the CAs that sign the brokers' certificates (empty: the system's CAs)"},        \
    {"kafka-ssl-certificate-location", KC_CFG_STR, offsetof(type, f.ssl_certificate_location),    \
     "", 0, 4096, "PEM file of the client's certificate, for brokers that require one"},          \
    {                                                                                             \
        "kafka-ssl-key-location", KC_CFG_STR, offsetof(type, f.ssl_key_location), "", 0, 4096,    \
            "PEM file of the client certificate's private key"                                    \
    }

#define KC_CFG_PG(type, f)                                                                        \
    {                                                                                             \
        "pg-dsn", KC_CFG_STR, offsetof(type, f.dsn),                                              \
            "host=127.0.0.1 port=17020 dbname=kchat user=kchat", 1, 1024,                         \
            "libpq connection string of the read-model database"                                  \
    }

#define KC_CFG_REDIS(type, f)                                                                     \
    {"redis-host", KC_CFG_STR, offsetof(type, f.host), "127.0.0.1", 1, 255, "Redis host"},        \
        {"redis-port", KC_CFG_INT, offsetof(type, f.port), "17030", 1, 65535, "Redis port"},      \
    {"redis-timeout-ms", KC_CFG_INT, offsetof(type, f.timeout_ms), "1000", 10, 60000,            \
     "Redis connect and command timeout"},                                                        \
    {"redis-username", KC_CFG_STR, offsetof(type, f.username), "", 0, 256,                        \
     "Redis ACL user (empty: the default user)"},                                                 \
    {                                                                                             \
        "redis-password", KC_CFG_STR, offsetof(type, f.password), "", 0, 1024,                    \
            "Redis password, sent with AUTH (empty: none; prefer the environment variable)"       \
    }

typedef struct {
    const char *svc;
    uv_loop_t *loop;
    kc_metrics_t *metrics;
    kc_health_t *health;
    kc_admin_t admin;
    kc_httpd_t *admin_httpd; /* NULL when the daemon serves the admin paths itself */
    kc_daemon_t *daemon;
} kc_app_t;

/* What a daemon's main() hands kc_app_main: its table and config, and the steps that differ
 * from one daemon to the next. arg is the daemon's state, passed to every step. */
typedef struct {
    const char *svc;
    const kc_cfg_opt_t *opts;
    size_t nopts;
    void *cfg;                     /* filled from opts */
    const kc_common_cfg_t *common; /* inside cfg */
    kc_app_t *app;                 /* inside the daemon's state */
    int serve_admin;               /* see kc_app_init */
    kc_daemon_stop_fn on_stop;     /* SIGTERM: begins the drain (see kc_daemon_new) */
    void *arg;
    /* Opens what the daemon runs: 0, or -1 with err set. */
    int (*start)(void *arg, char *err, size_t errlen);
    /* After a failed start: closes what start opened on the loop (may be NULL). */
    void (*start_failed)(void *arg);
    /* Logs the start-up line. */
    void (*started)(void *arg);
    /* After the loop ended: the exit code, 0 or 1 (NULL: 0). */
    int (*exit_code)(void *arg);
    /* Frees what start made, before the loop is closed (may be NULL). */
    void (*release)(void *arg);
    /* Frees what is left, after the loop is closed (may be NULL). */
    void (*free)(void *arg);
} kc_app_spec_t;

/* The members every daemon fills alike, from the name, the option table and the state (a
 * pointer to a struct with members cfg, cfg.common and app). */
#define KC_APP_SPEC(name, table, state)                                                           \
    .svc = (name), .opts = (table), .nopts = sizeof(table) / sizeof((table)[0]),                   \
    .cfg = &(state)->cfg, .common = &(state)->cfg.common, .app = &(state)->app, .arg = (state)

/* The sequence every main() runs: the options (--help exits 0, a bad value 2), logging, the
 * loop, metrics and health, start, the loop until the drain ends, and the tear-down in
 * order. Returns the process's exit code: 0, 1 (start-up failed, or exit_code said so) or 2. */
int kc_app_main(const kc_app_spec_t *spec, int argc, char **argv);

/* Loads the table, then starts logging. Returns 0 to go on, 1 when --help was printed (exit
 * 0), -1 after logging the bad value (exit 2). */
int kc_app_config(const char *svc, const kc_cfg_opt_t *table, size_t n, void *cfg,
                  const kc_common_cfg_t *common, int argc, char **argv);

/* Creates the loop, metrics (with process_* series), health (its checks exported into those
 * metrics), the daemon lifecycle and, when serve_admin is set, the operations listener.
 * Returns 0 or -1 with errstr set. */
int kc_app_init(kc_app_t *app, const char *svc, const kc_common_cfg_t *c, int serve_admin,
                kc_daemon_stop_fn on_stop, void *arg, char *errstr, size_t errstr_size);
/* Runs the loop until every handle is closed. */
int kc_app_run(kc_app_t *app);
/* Closes the operations listener (the last thing a drain does). */
void kc_app_close_admin(kc_app_t *app);
/* After kc_app_run: frees what kc_app_init made and closes the loop. */
void kc_app_destroy(kc_app_t *app);

#endif
