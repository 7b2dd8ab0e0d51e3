/* kchat-gateway - client sockets in, commands to chat.commands; chat.deliveries of its own
 * slot in, frames to sockets. The modules are listed in gw.h.
 *
 * Start-up: the options, the schemas and the token key, the Kafka clients (an idempotent
 * producer with acks=all; a consumer assigned only partition --slot of chat.deliveries,
 * starting at its end), Redis (commands and a subscriber), Postgres (sync), then the
 * WebSocket listener.
 *
 * SIGTERM: stop accepting (upgrades get 503), send every client system.notice and close it
 * with 1001; once the sockets are closed (or half the shutdown deadline has passed) the lws
 * context is destroyed, the last Redis writes (each user's route removed, presence offline)
 * are awaited, then Kafka, Redis and Postgres are closed and the loop ends.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/schema_registry.h"
#include "kchat/util.h"

static const kc_cfg_opt_t gw_opts[] = {
    KC_CFG_COMMON(gw_cfg_t, common),
    KC_CFG_ADMIN(gw_cfg_t, common, "17091"),
    KC_CFG_KAFKA(gw_cfg_t, kafka),
    KC_CFG_REDIS(gw_cfg_t, redis),
    KC_CFG_PG(gw_cfg_t, pg),
    {"slot", KC_CFG_INT, offsetof(gw_cfg_t, slot), "0", 0, 4095,
     "this gateway's slot: the partition of the deliveries topic it owns"},
    KC_CFG_DELIVERIES_TOPIC(gw_cfg_t, deliveries_topic, "read from"),
    KC_CFG_COMMANDS_TOPIC(gw_cfg_t, commands_topic, "written to"),
    KC_CFG_SCHEMAS_DIR(gw_cfg_t, schemas_dir),
    KC_CFG_SCHEMA_REGISTRY(gw_cfg_t, schema_registry),
    {"listen-addr", KC_CFG_STR, offsetof(gw_cfg_t, listen_addr), "127.0.0.1", 7, 15,
     "IPv4 address the WebSocket endpoint /ws listens on"},
    {"listen-port", KC_CFG_INT, offsetof(gw_cfg_t, listen_port), "17081", 1, 65535,
     "port of the WebSocket endpoint /ws"},
    {"tls-cert", KC_CFG_STR, offsetof(gw_cfg_t, tls_cert), "", 0, 4096,
     "PEM certificate (chain) file: with tls-key, /ws is served over TLS (wss://)"},
    {"tls-key", KC_CFG_STR, offsetof(gw_cfg_t, tls_key), "", 0, 4096,
     "PEM private key file of tls-cert"},
    KC_CFG_JWT(gw_cfg_t, jwt, ""),
    {"allowed-origins", KC_CFG_STR, offsetof(gw_cfg_t, allowed_origins), "", 0, 4096,
     "comma-separated Origins browsers may connect from (* for any); a request without "
     "Origin is allowed, one with another Origin gets 403"},
    {"max-conns-per-user", KC_CFG_INT, offsetof(gw_cfg_t, max_conns_per_user), "32", 1,
     100000,
     "most sockets one user may hold on this gateway (more get 429)"},
    {"max-header-bytes", KC_CFG_INT, offsetof(gw_cfg_t, max_header_bytes), "16384", 4096, 65535,
     "most bytes of header values a handshake may carry (the ingress refuses larger "
     "requests first)"},
    {"max-frame-bytes", KC_CFG_INT, offsetof(gw_cfg_t, max_frame_bytes), "65536", 1024, 1048576,
     "largest client message (all its fragments); larger ones close the socket with 1009"},
    {"rx-buffer-bytes", KC_CFG_INT, offsetof(gw_cfg_t, rx_buffer_bytes), "1024", 128, 65536,
     "receive buffer each socket holds for its life, and the most read from it at once: longer "
     "messages are assembled (up to max-frame-bytes) in a buffer freed after each; smaller saves "
     "memory per idle socket, larger saves CPU on long messages"},
    {"max-content-bytes", KC_CFG_INT, offsetof(gw_cfg_t, max_content_bytes), KC_CHAT_MAX_CONTENT_BYTES, 1,
     KC_CHAT_MAX_CONTENT_BYTES_TOP,
     "largest message text accepted by message.send"},
    {"max-queued-bytes", KC_CFG_INT, offsetof(gw_cfg_t, max_queued_bytes), "1048576", 4096,
     67108864, "most bytes waiting to be sent to one socket; beyond, it is closed with 4008"},
    {"max-connections", KC_CFG_INT, offsetof(gw_cfg_t, max_connections), "20000", 1, 1000000,
     "most sockets held; beyond, upgrades get 503"},
    {"max-inflight", KC_CFG_INT, offsetof(gw_cfg_t, max_inflight), "256", 1, 100000,
     "most message.send of one socket waiting for their ack"},
    {"rate-conn", KC_CFG_INT, offsetof(gw_cfg_t, rate_conn), "20", 1, 100000,
     "frames per second one socket may send (message.send, message.read, sync; bursts of twice "
     "that)"},
    {"rate-user", KC_CFG_INT, offsetof(gw_cfg_t, rate_user), "50", 1, 100000,
     "frames per second one user may send over all its sockets here (bursts of twice that)"},
    {"typing-rate", KC_CFG_INT, offsetof(gw_cfg_t, typing_rate), "5", 1, 1000,
     "typing frames per second one socket may send (bursts of twice that)"},
    {"typing-ttl-ms", KC_CFG_INT, offsetof(gw_cfg_t, typing_ttl_ms), "6000", 500, 60000,
     "a typing indicator without typing.stop ends by itself after this long"},
    {"ping-interval-s", KC_CFG_INT, offsetof(gw_cfg_t, ping_interval_s), "30", 1, 3600,
     "a socket silent this long is sent a ping"},
    {"idle-timeout-s", KC_CFG_INT, offsetof(gw_cfg_t, idle_timeout_s), "75", 2, 7200,
     "a socket with no frame or pong for this long is closed (dead or half-open peers)"},
    {"route-ttl-ms", KC_CFG_INT, offsetof(gw_cfg_t, route_ttl_ms), "30000", 1000, 600000,
     "how long a route (and online presence) holds without a refresh; refreshed every third"},
    {"ack-timeout-ms", KC_CFG_INT, offsetof(gw_cfg_t, ack_timeout_ms), "30000", 100, 600000,
     "a message.send not answered by then gets the ack error timeout (outcome unknown)"},
    {"sync-max-messages", KC_CFG_INT, offsetof(gw_cfg_t, sync_max_messages), "500", 1, 10000,
     "most messages one sync answers with (sync.complete says more:true)"},
};

static int on_producer_events(void *arg)
{
    gw_t *g = arg;
    return kc_kafka_serve(g->producer.rk, 500);
}

/* ---- the drain ---- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_rest(gw_t *g, kc_daemon_t *d)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(g->producer.rk, 2000);
    if (err)
        kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    /* What could not be written gets its report now, so no pending entry is left behind. */
    if (rd_kafka_purge(g->producer.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT) == 0)
        (void)rd_kafka_poll(g->producer.rk, 100);
    err = rd_kafka_consumer_close(g->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&g->consumer);
    kc_kafka_unbind(&g->producer);
    kc_redis_close(g->redis);
    g->redis = NULL;
    kc_redis_sub_close(g->sub);
    g->sub = NULL;
    kc_revoked_close(g->revoked);
    g->revoked = NULL;
    kc_pg_close(g->pg);
    g->pg = NULL;
    if (g->tick_open) {
        g->tick_open = 0;
        uv_close((uv_handle_t *)&g->tick, on_handle_closed);
    }
    if (g->drain_timer_open) {
        g->drain_timer_open = 0;
        uv_close((uv_handle_t *)&g->drain_timer, on_handle_closed);
    }
    kc_app_close_admin(&g->app);
    kc_daemon_finish(d);
}

static uint64_t drain_deadline_ns, drain_phase2_ns;

static void on_drain_tick(uv_timer_t *t)
{
    gw_t *g = t->data;
    uint64_t now = kc_mono_ns();
    if (!g->lws_destroyed) {
        if (g->nconns > 0 && now < drain_deadline_ns)
            return;
        if (g->nconns > 0)
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("connections", g->nconns)),
                      "drain deadline: closing the sockets still open");
        gw_ws_destroy(g);
        return;
    }
    /* The sockets are gone; their routes and presence are being removed in Redis. */
    if (g->redis && kc_redis_connected(g->redis) && kc_redis_pending(g->redis) > 0 &&
        now < drain_phase2_ns)
        return;
    kc_log_info("sockets closed and routes removed");
    close_rest(g, g->app.daemon);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    (void)d;
    gw_t *g = arg;
    g->stopping = 1;
    kc_health_set_stopping(g->app.health);
    rd_kafka_resp_err_t err = rd_kafka_assign(g->consumer.rk, NULL);
    if (err)
        kc_log_warn("unassign: %s", rd_kafka_err2str(err));
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("connections", g->nconns)),
              "closing the sockets with 1001");
    gw_ws_drain(g);
    uint64_t now = kc_mono_ns(), budget = (uint64_t)g->cfg.common.shutdown_timeout_ms * 1000000u;
    drain_deadline_ns = now + budget / 2;
    drain_phase2_ns = now + budget * 3 / 4;
    if (uv_timer_init(g->app.loop, &g->drain_timer) != 0)
        abort();
    g->drain_timer.data = g;
    g->drain_timer_open = 1;
    if (uv_timer_start(&g->drain_timer, on_drain_tick, 20, 20) != 0)
        abort();
}

/* ---- start-up ---- */

static void metrics_init(gw_t *g)
{
    kc_metrics_t *m = g->app.metrics;
    gw_metrics_t *x = &g->m;
    x->frames_in = kc_map_new();
    x->frames_out = kc_map_new();
    x->acks = kc_map_new();
    x->connections = kc_metrics_gauge(m, "kchat_gateway_connections", "Open WebSockets.", NULL);
    const char *acc[] = {"outcome", "accepted", NULL}, *tok[] = {"outcome", "refused_token", NULL},
               *ori[] = {"outcome", "refused_origin", NULL},
               *full[] = {"outcome", "refused_unavailable", NULL},
               *per_user[] = {"outcome", "refused_per_user", NULL};
    const char *h = "WebSocket handshakes, by outcome.";
    x->accepted = kc_metrics_counter(m, "kchat_gateway_handshakes_total", h, acc);
    x->refused_token = kc_metrics_counter(m, "kchat_gateway_handshakes_total", h, tok);
    x->refused_origin = kc_metrics_counter(m, "kchat_gateway_handshakes_total", h, ori);
    x->refused_full = kc_metrics_counter(m, "kchat_gateway_handshakes_total", h, full);
    x->refused_per_user = kc_metrics_counter(m, "kchat_gateway_handshakes_total", h, per_user);
    x->ack_latency = kc_metrics_histogram(
        m, "kchat_gateway_ack_latency_seconds",
        "From a message.send read to its ack (the processor's answer) queued to the socket.", NULL,
        NULL, 0);
    x->delivery_latency = kc_metrics_histogram(
        m, "kchat_gateway_delivery_latency_seconds",
        "From a message's acceptance by the processor (occurred_at) to its message.create "
        "queued to a recipient's socket (wall clocks of two hosts).",
        NULL, NULL, 0);
    x->queue_drops =
        kc_metrics_counter(m, "kchat_gateway_send_queue_drops_total",
                           "Frames dropped because a socket's send queue was full.", NULL);
    x->slow_closes =
        kc_metrics_counter(m, "kchat_gateway_slow_consumer_closes_total",
                           "Sockets closed (4008) because they could not keep up.", NULL);
    gw_count_close_init(g);
    x->sync_pages_cut = kc_metrics_counter(
        m, "kchat_gateway_sync_pages_cut_total",
        "Sync pages ended early (more: true) to keep a socket's send queue under half of "
        "max-queued-bytes; the client asks for the rest.",
        NULL);
    x->deliveries_consumed =
        kc_metrics_counter(m, "kchat_gateway_deliveries_consumed_total",
                           "Delivery records read from this gateway's slot.", NULL);
    x->delivery_errors =
        kc_metrics_counter(m, "kchat_gateway_delivery_errors_total",
                           "Delivery records or events that could not be read.", NULL);
    x->commands_produced = kc_metrics_counter(m, "kchat_gateway_commands_produced_total",
                                              "Commands handed to the producer.", NULL);
    x->produce_errors =
        kc_metrics_counter(m, "kchat_gateway_produce_errors_total",
                           "Commands the producer refused or could not write.", NULL);
    x->pubsub_in =
        kc_metrics_counter(m, "kchat_gateway_pubsub_messages_total",
                           "Redis pub/sub messages read (typing, receipts, presence).", NULL);
    x->pubsub_errors = kc_metrics_counter(m, "kchat_gateway_redis_errors_total",
                                          "Redis commands that failed or could not be sent.", NULL);
    x->presence_refused = kc_metrics_counter(
        m, "kchat_gateway_presence_refused_total",
        "User ids of presence.subscribe refused: the watcher shares no conversation with them.",
        NULL);
    x->delivered_dropped = kc_metrics_counter(
        m, "kchat_gateway_delivered_dropped_total",
        "Delivery marks dropped: too many waited for Postgres (the receipts lag).", NULL);
    x->delivered_errors = kc_metrics_counter(
        m, "kchat_gateway_delivered_errors_total",
        "Writes of delivery marks to Postgres that failed (retried with the next tick's).", NULL);
}

static void split_origins(gw_t *g)
{
    char *s = g->cfg.allowed_origins, *save = NULL;
    char *copy = kc_xstrdup(s);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '/'))
            tok[--n] = '\0';
        if (!n)
            continue;
        g->origins = kc_xrealloc(g->origins, (g->norigins + 1) * sizeof(char *));
        g->origins[g->norigins++] = kc_xstrdup(tok);
    }
    free(copy);
}

static int start(void *arg, char *err, size_t errlen)
{
    gw_t *g = arg;
    metrics_init(g);
    gw_conns_init(g);
    gw_commands_init(g);
    gw_presence_init(g);
    g->delivered = kc_map_new();
    split_origins(g);
    kc_strlcpyf(g->origin, sizeof(g->origin), "gateway:%lld", g->cfg.slot);
    kc_strlcpyf(g->slot_channel, sizeof(g->slot_channel), KC_REDIS_GW "%lld", g->cfg.slot);
    if (g->cfg.idle_timeout_s <= g->cfg.ping_interval_s) {
        kc_strlcpyf(err, errlen,
                    "invalid value for idle-timeout-s: %lld must exceed "
                    "ping-interval-s (%lld)",
                    g->cfg.idle_timeout_s, g->cfg.ping_interval_s);
        return -1;
    }
    g->schemas = kc_schemas_load(g->cfg.schemas_dir, err, errlen);
    if (!g->schemas)
        return -1;
    if (kc_sr_check(g->schemas, &g->cfg.schema_registry, err, errlen) != 0)
        return -1;
    g->command_schema_id = kc_schemas_current_id(g->schemas, "chat.commands-value");
    if (g->command_schema_id < 0) {
        kc_strlcpyf(err, errlen, "registry.json has no chat.commands-value");
        return -1;
    }
    g->jwt =
        kc_jwt_key_load(g->cfg.jwt.public_key, g->cfg.jwt.issuer, g->cfg.jwt.audience, err, errlen);
    if (!g->jwt)
        return -1;
    g->redis = kc_redis_new(g->app.loop, &g->cfg.redis, g->app.health, "redis");
    g->sub = kc_redis_sub_new(g->app.loop, &g->cfg.redis, g->app.health, "redis_pubsub",
                              gw_on_pubsub, g);
    if (kc_redis_sub_add(g->sub, g->slot_channel) != 0) {
        kc_strlcpyf(err, errlen, "cannot subscribe to %s", g->slot_channel);
        return -1;
    }
    /* Postgres serves only sync: not a health check, so a database outage degrades sync
     * (clients get an error and retry) without taking the sockets down. */
    g->pg = kc_pg_new(g->app.loop, g->cfg.pg.dsn, NULL, "postgres");
    g->revoked = kc_revoked_new(g->app.loop, g->pg, NULL, gw_revoke, g, err, errlen);
    if (!g->revoked)
        return -1;
    char client[64], group[64];
    kc_strlcpyf(client, sizeof(client), "gateway-%lld-consumer", g->cfg.slot);
    kc_strlcpyf(group, sizeof(group), "kchat-gateway-%lld", g->cfg.slot);
    kc_kafka_opts_t ko = {.conn = &g->cfg.kafka,
                          .health = g->app.health,
                          .metrics = g->app.metrics,
                          .client_id = client,
                          .check_name = "kafka_consumer"};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, group, NULL, err, errlen);
    if (!rk || kc_kafka_bind(&g->consumer, g->app.loop, rk, gw_on_deliveries, g, err, errlen) != 0)
        return -1;
    char pclient[64];
    kc_strlcpyf(pclient, sizeof(pclient), "gateway-%lld-producer", g->cfg.slot);
    ko.client_id = pclient;
    ko.check_name = "kafka_producer";
    ko.dr_msg_cb = gw_producer_dr;
    ko.opaque = g;
    /* Only failures are reported (commands.c): a report per request woke the loop once per
     * message for nothing. One request in flight per connection: while the broker answers,
     * the commands that arrive gather into the next request instead of each leaving in a
     * request of its own (docs/benchmarks.md: at 8 000 msg/s the gateways' CPU fell by a
     * third and the ack p99 by three quarters; at 2 000 msg/s, where the broker answers
     * before the next command, nothing changes). Ordering is kept either way: the producer
     * is idempotent. */
    const char *const povr[] = {"linger.ms", "0",
                                "delivery.report.only.error", "true",
                                "max.in.flight.requests.per.connection", "1",
                                NULL};
    rk = kc_kafka_producer_new(&ko, povr, err, errlen);
    if (!rk ||
        kc_kafka_bind(&g->producer, g->app.loop, rk, on_producer_events, g, err, errlen) != 0)
        return -1;
    g->commands_rkt = kc_kafka_topic_hold(rk, g->cfg.commands_topic, 15000, err, errlen);
    if (!g->commands_rkt)
        return -1;
    /* A slot is a partition: one beyond the topic would read nothing, healthy and useless. */
    int32_t partitions =
        kc_kafka_partition_count(g->consumer.rk, g->cfg.deliveries_topic, 10000, err, errlen);
    if (partitions < 0)
        return -1;
    if (g->cfg.slot >= partitions) {
        kc_strlcpyf(err, errlen,
                    "invalid value for slot: %lld, but %s has %d partitions (slots 0..%d)",
                    g->cfg.slot, g->cfg.deliveries_topic, partitions, partitions - 1);
        return -1;
    }
    /* Deliveries are live traffic: a gateway starts at the end of its slot. */
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, g->cfg.deliveries_topic, (int32_t)g->cfg.slot)
        ->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(g->consumer.rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot assign %s[%lld]: %s", g->cfg.deliveries_topic, g->cfg.slot,
                    rd_kafka_err2str(kerr));
        return -1;
    }
    gw_tick_start(g);
    return gw_ws_start(g, err, errlen);
}

static void cleanup(gw_t *g)
{
    /* The counters belong to the registry; only the caches go. */
    kc_map_destroy(g->m.frames_in, NULL);
    kc_map_destroy(g->m.frames_out, NULL);
    kc_map_destroy(g->m.acks, NULL);
    g->m.frames_in = g->m.frames_out = g->m.acks = NULL;
    kc_kafka_bound_destroy(&g->consumer);
    if (g->commands_rkt)
        rd_kafka_topic_destroy(g->commands_rkt);
    g->commands_rkt = NULL;
    kc_kafka_bound_destroy(&g->producer);
    gw_commands_destroy(g);
    gw_presence_destroy(g);
    kc_map_destroy(g->delivered, free);
    g->delivered = NULL;
    kc_map_destroy(g->writing, free); /* a write that never answered */
    g->writing = NULL;
    gw_conns_destroy(g);
    kc_schemas_destroy(g->schemas);
    kc_jwt_key_free(g->jwt);
    for (size_t i = 0; i < g->norigins; i++)
        free(g->origins[i]);
    free(g->origins);
}

static void start_failed(void *arg)
{
    gw_t *g = arg;
    kc_redis_close(g->redis);
    kc_redis_sub_close(g->sub);
    kc_revoked_close(g->revoked);
    kc_pg_close(g->pg);
    g->redis = NULL;
    g->sub = NULL;
    g->revoked = NULL;
    g->pg = NULL;
    if (g->tick_open) {
        g->tick_open = 0;
        uv_close((uv_handle_t *)&g->tick, on_handle_closed);
    }
    kc_kafka_bound_destroy(&g->consumer);
    if (g->commands_rkt)
        rd_kafka_topic_destroy(g->commands_rkt);
    g->commands_rkt = NULL;
    kc_kafka_bound_destroy(&g->producer);
    if (g->lws && g->app.loop) {
        /* A foreign-loop lws context closes its handles on the loop and unloads its
         * event-lib plugin at the end: everything else is closed first, then the loop runs
         * until lws is done. */
        kc_app_close_admin(&g->app);
        if (g->app.daemon)
            kc_daemon_finish(g->app.daemon);
        gw_ws_destroy(g);
        (void)uv_run(g->app.loop, UV_RUN_DEFAULT);
    }
}

static void started(void *arg)
{
    gw_t *g = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("admin_port", kc_httpd_port(g->app.admin_httpd)),
                        KC_INT("ws_port", g->cfg.listen_port),
                        KC_STR("tls", g->cfg.tls_cert[0] ? "yes" : "no"),
                        KC_INT("slot", g->cfg.slot)),
              "gateway started");
}

static void release(void *arg)
{
    gw_t *g = arg;
    if (g->lws) /* a foreign-loop context finishes its destruction here */
        lws_context_destroy(g->lws);
    cleanup(g);
}

int main(int argc, char **argv)
{
    gw_t g = {0};
    kc_app_spec_t spec = {KC_APP_SPEC("gateway", gw_opts, &g),
                          .serve_admin = 1,
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .release = release};
    return kc_app_main(&spec, argc, argv);
}
