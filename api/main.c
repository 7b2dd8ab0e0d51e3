/* kchat-api - the REST surface: auth, conversations, history, search, attachments, Web Push
 * subscriptions.
 *
 * main.c holds the options, start-up and the drain. A request flows through http.c (route,
 * token, body) to auth.c, conversations.c, messages.c, mutes.c, presign.c, attachments.c or
 * push.c; changes go out as Commands through commands.c and are answered once the projector
 * reports them applied.
 * On SIGTERM the listener closes, requests in flight are answered (each has a deadline),
 * then the producer is flushed and the connections close.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>

#include "api.h"
#include "kchat/log.h"
#include "kchat/schema_registry.h"

/* The API serves /health and /metrics on its own port, so it has no admin-* options. */
static const kc_cfg_opt_t api_opts[] = {
    KC_CFG_COMMON(api_cfg_t, common),
    KC_CFG_KAFKA(api_cfg_t, kafka),
    KC_CFG_PG(api_cfg_t, pg),
    KC_CFG_REDIS(api_cfg_t, redis),
    {"listen-addr", KC_CFG_STR, offsetof(api_cfg_t, listen_addr), "127.0.0.1", 7, 15,
     "IPv4 address the REST API listens on"},
    {"listen-port", KC_CFG_INT, offsetof(api_cfg_t, port), "17080", 0, 65535,
     "port of the REST API (which also serves /health and /metrics)"},
    {"max-body-bytes", KC_CFG_INT, offsetof(api_cfg_t, max_body_bytes), "65536", 1024, 16777216,
     "largest request body accepted; larger ones get 413"},
    {"pg-pool-size", KC_CFG_INT, offsetof(api_cfg_t, pg_pool_size), "4", 1, API_MAX_POOL,
     "Postgres connections for queries (each runs one query at a time), besides the LISTEN one"},
    {"instance-id", KC_CFG_STR, offsetof(api_cfg_t, instance_id), "0", 1, 64,
     "name of this instance: commands carry the origin api:<instance-id>"},
    KC_CFG_SCHEMAS_DIR(api_cfg_t, schemas_dir),
    KC_CFG_SCHEMA_REGISTRY(api_cfg_t, schema_registry),
    KC_CFG_COMMANDS_TOPIC(api_cfg_t, commands_topic, "written to"),
    KC_CFG_TOPIC_("accounts-topic", "account events", api_cfg_t, accounts_topic, "chat.accounts",
                  "written to (from account_outbox)"),
    KC_CFG_TOPIC_("audit-topic", "audit events", api_cfg_t, audit_topic, "chat.audit",
                  "written to (from audit_log)"),
    {"audit-retention-days", KC_CFG_INT, offsetof(api_cfg_t, audit_retention_days), "400", 1,
     36500, "days an audit event stays in Postgres for GET /admin/audit (once relayed)"},
    {"command-timeout-ms", KC_CFG_INT, offsetof(api_cfg_t, command_timeout_ms), "10000", 100,
     600000, "how long a change waits for its outcome before the answer is 504"},
    {"jwt-private-key", KC_CFG_STR, offsetof(api_cfg_t, jwt_private_key), "jwt-private.pem", 1,
     4096, "PEM file of the RSA private key that signs access tokens"},
    KC_CFG_JWT(api_cfg_t, jwt, "jwt-public.pem"),
    {"access-ttl-s", KC_CFG_INT, offsetof(api_cfg_t, access_ttl_s), "900", 10, 86400,
     "lifetime of an access token, seconds"},
    {"refresh-ttl-s", KC_CFG_INT, offsetof(api_cfg_t, refresh_ttl_s), "2592000", 60, 31536000,
     "lifetime of a refresh token, seconds (each refresh issues a new one)"},
    {"pwhash-max-inflight", KC_CFG_INT, offsetof(api_cfg_t, pwhash_max_inflight), "4", 1, 256,
     "password hashes or checks running at once; more wait in the fair queue"},
    {"pwhash-queue-max", KC_CFG_INT, offsetof(api_cfg_t, pwhash_queue_max), "256", 0, 65536,
     "password hashes or checks waiting for a slot (round-robin by client address); more get "
     "503 busy"},
    {"pwhash-per-address", KC_CFG_INT, offsetof(api_cfg_t, pwhash_per_address), "2", 1, 1024,
     "password hashes or checks queued or running for one client address; more get 429"},
    {"max-connections", KC_CFG_INT, offsetof(api_cfg_t, max_connections), "1024", 1, 100000,
     "connections held at once; more wait in the kernel's backlog"},
    {"max-connections-per-address", KC_CFG_INT, offsetof(api_cfg_t, max_connections_per_address),
     "32", 1, 100000,
     "connections one client address may hold (trusted proxies are not counted); more are "
     "closed at accept"},
    {"request-timeout-s", KC_CFG_INT, offsetof(api_cfg_t, request_timeout_s), "10", 1, 3600,
     "a request's header and body must arrive within this many seconds, however slowly they "
     "trickle (trusted proxies bound their own clients)"},
    {"idle-timeout-s", KC_CFG_INT, offsetof(api_cfg_t, idle_timeout_s), "30", 1, 3600,
     "a connection silent this long is closed"},
    {"trusted-proxies", KC_CFG_STR, offsetof(api_cfg_t, trusted_proxies), "127.0.0.1,::1", 0,
     1024,
     "comma-separated proxy addresses whose X-Forwarded-For names the client (right-most "
     "untrusted entry); their own requests skip the per-address limits"},
    {"login-fails-per-account-address", KC_CFG_INT, offsetof(api_cfg_t, login_fails_per_pair),
     "5", 1, 1000000,
     "failed logins of one account from one address before each further one doubles a delay "
     "(429)"},
    {"login-fails-per-address", KC_CFG_INT, offsetof(api_cfg_t, login_fails_per_address), "20",
     1, 1000000,
     "failed logins from one address (any account) before each further one doubles a delay "
     "(429)"},
    {"login-fails-per-account", KC_CFG_INT, offsetof(api_cfg_t, login_fails_per_account), "10",
     1, 1000000,
     "failed logins of one account (any address) before its attempts are paced (never "
     "locked)"},
    {"login-account-pace-ms", KC_CFG_INT, offsetof(api_cfg_t, login_account_pace_ms), "1000", 0,
     60000, "the pacing: one login attempt per this many ms for an account under attack (0: none)"},
    {"login-delay-max-s", KC_CFG_INT, offsetof(api_cfg_t, login_delay_max_s), "900", 1, 86400,
     "longest delay after failed logins (the first is 1 s, each failure doubles it)"},
    {"login-fail-window-s", KC_CFG_INT, offsetof(api_cfg_t, login_fail_window_s), "900", 1,
     86400, "failed logins are forgotten this long after the last one (or its delay's end)"},
    {"register-per-address-hour", KC_CFG_INT, offsetof(api_cfg_t, register_per_address_hour),
     "60", 1, 1000000, "registrations one client address may make per hour; more get 429"},
    {"user-lookups-per-minute", KC_CFG_INT, offsetof(api_cfg_t, user_lookups_per_minute), "120",
     1, 100000, "people lookups (GET /users?prefix=) one user may make per minute; more get 429"},
    {"pwhash-opslimit", KC_CFG_INT, offsetof(api_cfg_t, pwhash_opslimit), "2", 1, 10,
     "Argon2id passes (libsodium's interactive limit is 2)"},
    {"pwhash-memlimit-kib", KC_CFG_INT, offsetof(api_cfg_t, pwhash_memlimit_kib), "65536", 8,
     1048576, "Argon2id memory per hash, KiB (interactive: 65536)"},
    {"max-members", KC_CFG_INT, offsetof(api_cfg_t, max_members), KC_CHAT_MAX_MEMBERS, 1,
     KC_CHAT_MAX_MEMBERS_TOP,
     "most user ids one request may list (the processor's max-members)"},
    KC_CFG_S3(api_cfg_t,
              "object store for attachments, http(s)://host[:port] (empty: presign answers 404)",
              "bucket of the attachments"),
    {"presign-ttl-s", KC_CFG_INT, offsetof(api_cfg_t, presign_ttl_s), "900", 1, 604800,
     "how long an upload URL is valid, seconds"},
    {"attachment-max-bytes", KC_CFG_INT, offsetof(api_cfg_t, attachment_max_bytes), "104857600",
     1, 5368709120LL, "largest attachment, checked at presign and against the stored object"},
    {"attachment-types", KC_CFG_STR, offsetof(api_cfg_t, attachment_types),
     "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,text/csv,"
     "application/zip,application/octet-stream,audio/*,video/*",
     1, 4096, "media types accepted for attachments, comma-separated (type/* for any subtype)"},
    {"attachment-send-window-s", KC_CFG_INT, offsetof(api_cfg_t, attachment_send_window_s),
     "86400", 10, 2592000, "how long after its presign a message may carry an upload, seconds"},
    {"attachment-pending-max", KC_CFG_INT, offsetof(api_cfg_t, attachment_pending_max), "50", 1,
     100000, "uploads one user may have presigned and not yet completed; more get 429"},
    {"attachment-orphan-grace-s", KC_CFG_INT, offsetof(api_cfg_t, attachment_orphan_grace_s),
     "3600", 0, 2592000,
     "after an upload's send window, how long before an upload no message carries is removed"},
    {"attachment-sweep-s", KC_CFG_INT, offsetof(api_cfg_t, attachment_sweep_s), "60", 1, 86400,
     "how often orphaned uploads and the files of deleted messages are removed, seconds"},
    {"image-max-bytes", KC_CFG_INT, offsetof(api_cfg_t, image_max_bytes), "26214400", 1024,
     268435456, "largest image attachment (it is read whole to check it and make a thumbnail)"},
    {"image-max-pixels", KC_CFG_INT, offsetof(api_cfg_t, image_max_pixels), "50000000", 1024,
     1000000000, "largest image attachment in pixels, read from its header before decoding"},
    {"download-ttl-s", KC_CFG_INT, offsetof(api_cfg_t, download_ttl_s), "300", 10, 86400,
     "how long an attachment's download URL is valid, seconds"},
    {"vapid-public-key", KC_CFG_STR, offsetof(api_cfg_t, vapid_public_key), "", 0, 4096,
     "PEM file of the VAPID (Web Push) EC P-256 public key that browsers subscribe with "
     "(kchat-notifier signs with its private key); empty: no Web Push, the push endpoints "
     "answer 503"},
    {"push-allow-http", KC_CFG_BOOL, offsetof(api_cfg_t, push_allow_http), "false", 0, 1,
     "also take http:// push endpoints on a loopback host (127.0.0.0/8, [::1], localhost): "
     "the local stack's stand-in push service, never a real browser's"},
    {"push-subscriptions-max", KC_CFG_INT, offsetof(api_cfg_t, push_subscriptions_max), "10", 1,
     1000, "Web Push subscriptions (browsers) one user may hold; more get 409"},
};

static void finish_stop(api_t *a)
{
    rd_kafka_resp_err_t err =
        rd_kafka_flush(a->producer.rk, (int)(a->cfg.common.shutdown_timeout_ms / 2));
    if (err)
        kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&a->producer);
    api_relay_close(a->accounts);
    api_relay_close(a->audit);
    api_audit_close(a);
    api_commands_close(a);
    api_auth_close(a);
    api_attachments_close(a);
    for (int i = 0; i < a->npool; i++) {
        kc_pg_close(a->pool[i]);
        a->pool[i] = NULL;
    }
    kc_redis_close(a->redis);
    a->redis = NULL;
    kc_httpd_destroy(a->http);
    a->http = NULL;
    kc_daemon_t *d = a->stop_daemon;
    a->stop_daemon = NULL;
    kc_daemon_finish(d);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    api_t *a = arg;
    kc_health_set_stopping(a->app.health);
    kc_httpd_stop_accepting(a->http);
    api_auth_stop(a);
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("inflight", a->inflight)),
              "waiting for the requests in flight");
    api_stop_when_drained(a, d, finish_stop);
}

/* The HTTP server's own counts, as counters. */
static void collect_http(void *arg)
{
    api_t *a = arg;
    if (!a->http)
        return;
    unsigned long refused = kc_httpd_refused(a->http), cut = kc_httpd_cut(a->http);
    kc_counter_add(a->conns_refused, (double)(refused - a->conns_refused_seen));
    kc_counter_add(a->requests_cut, (double)(cut - a->requests_cut_seen));
    a->conns_refused_seen = refused;
    a->requests_cut_seen = cut;
}

static int start(void *arg, char *err, size_t errlen)
{
    api_t *a = arg;
    if (sodium_init() < 0) {
        kc_strlcpyf(err, errlen, "libsodium cannot start");
        return -1;
    }
    if (kc_strlcpyf(a->origin, sizeof(a->origin), "api:%s", a->cfg.instance_id) != 0) {
        kc_strlcpyf(err, errlen, "instance-id too long");
        return -1;
    }
    a->requests = kc_metrics_counter(a->app.metrics, "kchat_api_requests_total",
                                     "HTTP requests received by the API.", NULL);
    a->conns_refused = kc_metrics_counter(
        a->app.metrics, "kchat_api_connections_refused_total",
        "Connections closed at accept: their address held max-connections-per-address.", NULL);
    a->requests_cut = kc_metrics_counter(
        a->app.metrics, "kchat_api_requests_cut_total",
        "Connections cut because a request did not arrive within request-timeout-s.", NULL);
    kc_metrics_on_collect(a->app.metrics, collect_http, a);
    a->schemas = kc_schemas_load(a->cfg.schemas_dir, err, errlen);
    if (!a->schemas)
        return -1;
    if (kc_sr_check(a->schemas, &a->cfg.schema_registry, err, errlen) != 0)
        return -1;
    a->signer = kc_jwt_key_load(a->cfg.jwt_private_key, a->cfg.jwt.issuer, a->cfg.jwt.audience,
                                err, errlen);
    if (!a->signer)
        return -1;
    a->verifier = kc_jwt_key_load(a->cfg.jwt.public_key, a->cfg.jwt.issuer, a->cfg.jwt.audience,
                                  err, errlen);
    if (!a->verifier)
        return -1;
    if (api_presign_check(a, err, errlen) != 0 || api_push_init(a, err, errlen) != 0 ||
        api_auth_init(a, err, errlen) != 0)
        return -1;
    api_users_init(a);
    a->npool = (int)a->cfg.pg_pool_size;
    for (int i = 0; i < a->npool; i++) {
        char name[32];
        (void)kc_strlcpyf(name, sizeof(name), i == 0 ? "postgres" : "postgres_%d", i);
        a->pool[i] = kc_pg_new(a->app.loop, a->cfg.pg.dsn, i == 0 ? a->app.health : NULL, name);
    }
    a->redis = kc_redis_new(a->app.loop, &a->cfg.redis, a->app.health, "redis");
    if (api_commands_init(a, err, errlen) != 0 ||
        api_relay_start(a, &API_RELAY_ACCOUNTS, a->cfg.accounts_topic, &a->accounts, err,
                        errlen) != 0 ||
        api_relay_start(a, &API_RELAY_AUDIT, a->cfg.audit_topic, &a->audit, err, errlen) != 0 ||
        api_audit_start(a, err, errlen) != 0 ||
        api_attachments_start(a, err, errlen) != 0)
        return -1;
    /* the trusted proxies as the server writes addresses (inet_ntop's canonical text) */
    const char *trusted[API_ADDRSET_MAX + 1];
    char texts[API_ADDRSET_MAX][KC_HTTP_PEER_MAX];
    size_t nt = api_addrset_texts(&a->trusted_proxies, texts, API_ADDRSET_MAX);
    for (size_t i = 0; i < nt; i++)
        trusted[i] = texts[i];
    trusted[nt] = NULL;
    kc_httpd_limits_t lim = {.max_connections = (unsigned)a->cfg.max_connections,
                             .per_address = (unsigned)a->cfg.max_connections_per_address,
                             .idle_timeout_s = (unsigned)a->cfg.idle_timeout_s,
                             .request_timeout_s = (unsigned)a->cfg.request_timeout_s,
                             .trusted = trusted};
    a->http = kc_httpd_new(a->app.loop, a->cfg.listen_addr, (int)a->cfg.port,
                           (size_t)a->cfg.max_body_bytes, &lim, api_handle, a, err, errlen);
    return a->http ? 0 : -1;
}

static void cleanup(api_t *a)
{
    api_attachments_close(a);
    for (int i = 0; i < a->npool; i++)
        kc_pg_close(a->pool[i]);
    api_relay_close(a->accounts);
    api_relay_close(a->audit);
    api_audit_close(a);
    kc_revoked_close(a->revoked);
    a->revoked = NULL;
    kc_pg_close(a->listen_pg);
    kc_redis_close(a->redis);
    api_auth_close(a);
    if (a->wait_timer.loop && !uv_is_closing((uv_handle_t *)&a->wait_timer))
        uv_close((uv_handle_t *)&a->wait_timer, NULL);
}

static void start_failed(void *arg)
{
    cleanup(arg);
}

static void started(void *arg)
{
    api_t *a = arg;
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("port", kc_httpd_port(a->http))), "api started");
}

static void release(void *arg)
{
    api_t *a = arg;
    if (a->commands_rkt)
        rd_kafka_topic_destroy(a->commands_rkt);
    a->commands_rkt = NULL;
    api_relay_free(a->accounts);
    api_relay_free(a->audit);
    a->accounts = a->audit = NULL;
    kc_kafka_bound_destroy(&a->producer);
}

static void free_rest(void *arg)
{
    api_t *a = arg;
    kc_map_destroy(a->waiters, NULL);
    kc_schemas_destroy(a->schemas);
    kc_jwt_key_free(a->signer);
    kc_jwt_key_free(a->verifier);
    api_push_close(a);
}

int main(int argc, char **argv)
{
    api_t *a = kc_xcalloc(1, sizeof(*a));
    kc_app_spec_t spec = {KC_APP_SPEC("api", api_opts, a),
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .release = release,
                          .free = free_rest};
    int rc = kc_app_main(&spec, argc, argv);
    free(a);
    return rc;
}
