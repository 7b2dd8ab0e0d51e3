/* kchat-notifier - chat.events in, Web Push and signed webhooks out, for the members who are
 * not connected.
 *
 * intake.c decides who hears of each new message and gathers it into a pending notification
 * (Postgres), close.c turns the due ones into sends, send.c sends them. This file holds the
 * options, start-up, metrics and the stop: on SIGTERM the batch in flight and the round in
 * flight finish, the sends in flight are cancelled and released for the next notifier (their
 * ids stay theirs), then the consumer closes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/schema_registry.h"
#include "kchat/util.h"
#include "notifier.h"

static const kc_cfg_opt_t nt_opts[] = {
    KC_CFG_COMMON(nt_cfg_t, common),
    KC_CFG_ADMIN(nt_cfg_t, common, "17097"),
    KC_CFG_KAFKA(nt_cfg_t, kafka),
    KC_CFG_PG(nt_cfg_t, pg),
    KC_CFG_REDIS(nt_cfg_t, redis),
    {"group-id", KC_CFG_STR, offsetof(nt_cfg_t, group_id), "kchat-notifier", 1, 255,
     "consumer group of the notifiers"},
    KC_CFG_EVENTS_TOPIC(nt_cfg_t, events_topic, "read from"),
    KC_CFG_SCHEMAS_DIR(nt_cfg_t, schemas_dir),
    KC_CFG_SCHEMA_REGISTRY(nt_cfg_t, schema_registry),
    {"session-timeout-ms", KC_CFG_INT, offsetof(nt_cfg_t, session_timeout_ms), "10000", 6000,
     300000, "consumer group session timeout: how long a killed notifier keeps its partitions"},
    {"batch-max", KC_CFG_INT, offsetof(nt_cfg_t, batch_max), "500", 1, 10000,
     "most new messages decided in one batch"},
    {"coalesce-ms", KC_CFG_INT, offsetof(nt_cfg_t, coalesce_ms), "10000", 0, 3600000,
     "how long a member's first unheard message in a conversation waits for more before one "
     "notification tells of them all (a mention goes at once)"},
    {"content", KC_CFG_STR, offsetof(nt_cfg_t, content), "preview", 4, 7,
     "what a notification shows: preview (sender and text), sender, or none"},
    {"vapid-private-key", KC_CFG_STR, offsetof(nt_cfg_t, vapid_private_key), "", 0, 4096,
     "PEM file of the P-256 key that signs Web Push requests (VAPID); empty: no Web Push"},
    {"vapid-subject", KC_CFG_STR, offsetof(nt_cfg_t, vapid_subject), "mailto:admin@localhost", 8,
     256, "contact the push services see in VAPID's sub claim (mailto: or https: URL)"},
    {"push-ttl-s", KC_CFG_INT, offsetof(nt_cfg_t, push_ttl_s), "86400", 0, 2419200,
     "how long a push service keeps a push for a browser that is offline (TTL header)"},
    {"webhook-urls", KC_CFG_STR, offsetof(nt_cfg_t, webhook_urls), "", 0, 8192,
     "comma-separated http(s) URLs that get every notification as a signed JSON POST (at most "
     "8; empty: none)"},
    {"webhook-secret", KC_CFG_STR, offsetof(nt_cfg_t, webhook_secret), "", 0, 1024,
     "the webhooks' signing secret, whsec_<base64> (prefer the environment variable)"},
    {"send-deadline-s", KC_CFG_INT, offsetof(nt_cfg_t, send_deadline_s), "3600", 1, 604800,
     "how long a send is tried again (429, 5xx, no answer) before it is dropped"},
    {"retry-min-ms", KC_CFG_INT, offsetof(nt_cfg_t, retry_min_ms), "1000", 10, 600000,
     "first wait before a send is tried again"},
    {"retry-max-ms", KC_CFG_INT, offsetof(nt_cfg_t, retry_max_ms), "300000", 10, 86400000,
     "longest wait between two tries of a send (a Retry-After included)"},
    {"origin-concurrency", KC_CFG_INT, offsetof(nt_cfg_t, origin_concurrency), "8", 1, 1000,
     "requests in flight to one origin (push service or webhook host) at most"},
    {"sends-max", KC_CFG_INT, offsetof(nt_cfg_t, sends_max), "256", 1, 10000,
     "sends claimed and not yet settled at most"},
    {"http-timeout-ms", KC_CFG_INT, offsetof(nt_cfg_t, http_timeout_ms), "10000", 100, 120000,
     "bound on one push or webhook request, connection included"},
    {"projector-wait-ms", KC_CFG_INT, offsetof(nt_cfg_t, projector_wait_ms), "2000", 0, 600000,
     "how long a batch waits for the read model to hold its messages (and so their members)"},
};

/* ---- metrics ---- */

static void make_metrics(nt_t *n)
{
    kc_metrics_t *m = n->app.metrics;
    n->consumed = kc_metrics_counter(m, "kchat_notifier_events_consumed_total",
                                     "Records read from the events topic.", NULL);
    n->messages = kc_metrics_counter(m, "kchat_notifier_messages_total",
                                     "New messages (MessageCreated) read.", NULL);
    n->pending_made = kc_metrics_counter(
        m, "kchat_notifier_notifications_total",
        "Notifications opened for a member and a conversation (each then waits for company).",
        NULL);
    n->coalesced = kc_metrics_counter(
        m, "kchat_notifier_coalesced_total",
        "Messages folded into a notification another message had opened.", NULL);
    static const char skip_help[] = "Member-messages or notifications not sent, by reason.";
    const char *l_conn[] = {"reason", "connected", NULL}, *l_muted[] = {"reason", "muted", NULL},
               *l_nt[] = {"reason", "no_target", NULL},
               *l_back[] = {"reason", "connected_at_send", NULL};
    n->skip_connected = kc_metrics_counter(m, "kchat_notifier_skipped_total", skip_help, l_conn);
    n->skip_muted = kc_metrics_counter(m, "kchat_notifier_skipped_total", skip_help, l_muted);
    n->skip_no_target = kc_metrics_counter(m, "kchat_notifier_skipped_total", skip_help, l_nt);
    n->skip_online_at_close =
        kc_metrics_counter(m, "kchat_notifier_skipped_total", skip_help, l_back);
    static const char sent_help[] = "Sends a push service or webhook took (2xx).";
    const char *l_push[] = {"kind", "push", NULL}, *l_hook[] = {"kind", "webhook", NULL};
    n->sent_push = kc_metrics_counter(m, "kchat_notifier_sent_total", sent_help, l_push);
    n->sent_webhook = kc_metrics_counter(m, "kchat_notifier_sent_total", sent_help, l_hook);
    static const char fail_help[] = "Sends dropped, by reason: gone (404 or 410: the "
                                    "subscription is removed), refused (another 4xx), deadline "
                                    "(retries ran out), encrypt (the keys did not work).";
    const char *l_gone[] = {"reason", "gone", NULL}, *l_ref[] = {"reason", "refused", NULL},
               *l_dl[] = {"reason", "deadline", NULL}, *l_enc[] = {"reason", "encrypt", NULL};
    n->fail_gone = kc_metrics_counter(m, "kchat_notifier_failed_total", fail_help, l_gone);
    n->fail_refused = kc_metrics_counter(m, "kchat_notifier_failed_total", fail_help, l_ref);
    n->fail_deadline = kc_metrics_counter(m, "kchat_notifier_failed_total", fail_help, l_dl);
    n->fail_encrypt = kc_metrics_counter(m, "kchat_notifier_failed_total", fail_help, l_enc);
    static const char retry_help[] = "Sends to be tried again, by what the target answered.";
    const char *l_429[] = {"status", "429", NULL}, *l_5xx[] = {"status", "5xx", NULL},
               *l_net[] = {"status", "none", NULL};
    n->retry_429 = kc_metrics_counter(m, "kchat_notifier_retries_total", retry_help, l_429);
    n->retry_5xx = kc_metrics_counter(m, "kchat_notifier_retries_total", retry_help, l_5xx);
    n->retry_network = kc_metrics_counter(m, "kchat_notifier_retries_total", retry_help, l_net);
    static const char resp_help[] = "What push services and webhooks answered, by status "
                                    "(none: no answer, a timeout or a refused connection).";
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < NT_STATUS_CLASSES; c++) {
            const char *l[] = {"kind", k ? "webhook" : "push", "status", nt_status_names[c], NULL};
            n->responses[k][c] =
                kc_metrics_counter(m, "kchat_notifier_responses_total", resp_help, l);
        }
    n->resyncs = kc_metrics_counter(m, "kchat_notifier_resyncs_total",
                                    "Batches given up, after which the stored offsets were read "
                                    "again.",
                                    NULL);
    static const double secs[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800};
    static const char lat_help[] = "From the newest message a notification tells of to the "
                                   "target taking it (the coalescing wait included).";
    n->latency_push = kc_metrics_histogram(m, "kchat_notifier_latency_seconds", lat_help, l_push,
                                           secs, KC_ARRAY_LEN(secs));
    n->latency_webhook = kc_metrics_histogram(m, "kchat_notifier_latency_seconds", lat_help,
                                              l_hook, secs, KC_ARRAY_LEN(secs));
    n->inflight_g = kc_metrics_gauge(m, "kchat_notifier_sends_claimed",
                                     "Sends claimed and not yet settled.", NULL);
}

/* ---- start and stop ---- */

void nt_fail(nt_t *n, const char *why)
{
    kc_log_error("giving up: %s", why);
    n->failed = 1;
    kc_daemon_stop(n->app.daemon, why);
}

static void on_timer_closed(uv_handle_t *h)
{
    nt_t *n = h->data;
    n->timers_open--;
}

static void close_timers(nt_t *n)
{
    if (!n->timers_open)
        return;
    uv_close((uv_handle_t *)&n->intake_timer, on_timer_closed);
    uv_close((uv_handle_t *)&n->close_timer, on_timer_closed);
    uv_close((uv_handle_t *)&n->send_timer, on_timer_closed);
}

void nt_drained(nt_t *n)
{
    if (!n->stopping || n->busy || n->closing_busy || n->claiming || n->queued || n->drained)
        return;
    n->drained = 1;
    if (n->consumer.rk) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(n->consumer.rk);
        if (err)
            kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
        kc_kafka_unbind(&n->consumer);
    }
    kc_pg_close(n->pg);
    kc_redis_close(n->redis);
    n->pg = NULL;
    n->redis = NULL;
    close_timers(n);
    kc_app_close_admin(&n->app);
    kc_daemon_finish(n->app.daemon);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    (void)d;
    nt_t *n = arg;
    kc_health_set_stopping(n->app.health);
    n->stopping = 1;
    if (uv_timer_stop(&n->close_timer) != 0)
        kc_log_warn("cannot stop a timer");
    nt_intake_stop(n);
    nt_send_stop(n);
    nt_drained(n);
}

/* The webhook URLs from --webhook-urls: each http(s)://host... (checked with nt_origin). */
static int parse_webhooks(nt_t *n, char *err, size_t errlen)
{
    const char *s = n->cfg.webhook_urls;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len) {
            if (n->nwebhooks == NT_MAX_WEBHOOKS) {
                (void)kc_strlcpyf(err, errlen, "--webhook-urls: at most %d URLs", NT_MAX_WEBHOOKS);
                return -1;
            }
            char *url = kc_xstrndup(s, len);
            char origin[256];
            if (nt_origin(url, origin, sizeof(origin)) != 0 || !kc_httpc_header_value_ok(url) ||
                strchr(url, ' ')) {
                (void)kc_strlcpyf(err, errlen, "--webhook-urls: not an http(s) URL: %.200s", url);
                free(url);
                return -1;
            }
            n->webhooks[n->nwebhooks++] = url;
        }
        if (!e)
            break;
        s = e + 1;
    }
    if (n->nwebhooks && strncmp(n->cfg.webhook_secret, "whsec_", 6) != 0) {
        (void)kc_strlcpyf(err, errlen,
                          "--webhook-secret must be whsec_<base64> when webhooks are set");
        return -1;
    }
    return 0;
}

static int start(void *arg, char *err, size_t errlen)
{
    nt_t *n = arg;
    int c = nt_content_parse(n->cfg.content);
    if (c < 0) {
        (void)kc_strlcpyf(err, errlen, "--content must be preview, sender or none");
        return -1;
    }
    n->content = (nt_content_t)c;
    if (parse_webhooks(n, err, errlen) != 0)
        return -1;
    if (*n->cfg.vapid_private_key) {
        n->vapid = kc_vapid_load(n->cfg.vapid_private_key, 1, err, errlen);
        if (!n->vapid)
            return -1;
    }
    n->schemas = kc_schemas_load(n->cfg.schemas_dir, err, errlen);
    if (!n->schemas)
        return -1;
    if (kc_sr_check(n->schemas, &n->cfg.schema_registry, err, errlen) != 0)
        return -1;
    n->http = kc_httpc_new(n->app.loop, n->cfg.http_timeout_ms,
                           (size_t)n->cfg.sends_max, err, errlen);
    if (!n->http)
        return -1;
    kc_kafka_opts_t ko = {.conn = &n->cfg.kafka,
                          .health = n->app.health,
                          .metrics = n->app.metrics,
                          .client_id = "notifier-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = nt_on_rebalance,
                          .opaque = n};
    char session[32];
    (void)kc_strlcpyf(session, sizeof(session), "%lld", n->cfg.session_timeout_ms);
    const char *over[] = {"partition.assignment.strategy",
                          "cooperative-sticky",
                          "session.timeout.ms",
                          session,
                          /* notifications wait --coalesce-ms anyway: fewer, larger batches */
                          "fetch.wait.max.ms",
                          "500",
                          "fetch.min.bytes",
                          "65536",
                          NULL};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, n->cfg.group_id, over, err, errlen);
    if (!rk || kc_kafka_bind(&n->consumer, n->app.loop, rk, nt_on_events, n, err, errlen) != 0)
        return -1;
    n->nparts = kc_kafka_partition_count(n->consumer.rk, n->cfg.events_topic, 15000, err, errlen);
    if (n->nparts < 0)
        return -1;
    if (n->nparts > NT_MAX_PARTS) {
        (void)kc_strlcpyf(err, errlen, "%s has more than %d partitions", n->cfg.events_topic,
                          NT_MAX_PARTS);
        return -1;
    }
    make_metrics(n);
    nt_intake_init(n);
    if (uv_timer_init(n->app.loop, &n->intake_timer) != 0 ||
        uv_timer_init(n->app.loop, &n->close_timer) != 0 ||
        uv_timer_init(n->app.loop, &n->send_timer) != 0)
        abort();
    n->intake_timer.data = n->close_timer.data = n->send_timer.data = n;
    n->timers_open = 3;
    n->pg = kc_pg_new(n->app.loop, n->cfg.pg.dsn, n->app.health, "postgres");
    n->redis = kc_redis_new(n->app.loop, &n->cfg.redis, n->app.health, "redis");
    nt_close_init(n);
    nt_send_init(n);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, n->cfg.events_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(n->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        (void)kc_strlcpyf(err, errlen, "cannot subscribe to %s: %s", n->cfg.events_topic,
                          rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

static void start_failed(void *arg)
{
    nt_t *n = arg;
    kc_pg_close(n->pg);
    kc_redis_close(n->redis);
    kc_httpc_close(n->http);
    n->pg = NULL;
    n->redis = NULL;
    n->http = NULL;
    close_timers(n);
}

static void started(void *arg)
{
    nt_t *n = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("admin_port", kc_httpd_port(n->app.admin_httpd)),
                        KC_STR("topic", n->cfg.events_topic), KC_INT("partitions", n->nparts),
                        KC_STR("web_push", n->vapid ? "on" : "off"),
                        KC_INT("webhooks", (long long)n->nwebhooks),
                        KC_STR("content", n->cfg.content)),
              "notifier started");
}

static int exit_code(void *arg)
{
    return ((nt_t *)arg)->failed ? 1 : 0;
}

static void release(void *arg)
{
    kc_kafka_bound_destroy(&((nt_t *)arg)->consumer);
}

static void free_all(void *arg)
{
    nt_t *n = arg;
    nt_intake_free(n);
    nt_send_free(n);
    for (size_t i = 0; i < n->nwebhooks; i++)
        free(n->webhooks[i]);
    kc_vapid_free(n->vapid);
    kc_schemas_destroy(n->schemas);
}

int main(int argc, char **argv)
{
    nt_t n = {0};
    kc_app_spec_t spec = {KC_APP_SPEC("notifier", nt_opts, &n),
                          .serve_admin = 1,
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .exit_code = exit_code,
                          .release = release,
                          .free = free_all};
    return kc_app_main(&spec, argc, argv);
}
