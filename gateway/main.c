/* kchat-gateway - client sockets in, commands to chat.commands; chat.deliveries of its own
 * slot in, frames to sockets.
 *
 * At this stage the gateway connects its producer (idempotent, acks=all), reads its own slot
 * (one partition of chat.deliveries, assigned rather than subscribed, so no group rebalances
 * it away), connects to Redis for presence, serves /health and /metrics on its operations
 * port and drains on SIGTERM. The WebSocket endpoint comes with the gateway's own work.
 */
#include <stddef.h>
#include <stdio.h>

#include "kchat/app.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/redis.h"
#include "kchat/util.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_redis_cfg_t redis;
    long long slot;
    char *deliveries_topic;
} gw_cfg_t;

static const kc_cfg_opt_t gw_opts[] = {
    KC_CFG_COMMON(gw_cfg_t, common),
    KC_CFG_ADMIN(gw_cfg_t, common, "17091"),
    KC_CFG_KAFKA(gw_cfg_t, kafka),
    KC_CFG_REDIS(gw_cfg_t, redis),
    {"slot", KC_CFG_INT, offsetof(gw_cfg_t, slot), "0", 0, 4095,
     "this gateway's slot: the partition of the deliveries topic it owns"},
    {"deliveries-topic", KC_CFG_STR, offsetof(gw_cfg_t, deliveries_topic), "chat.deliveries", 1,
     249, "topic the deliveries are read from"},
};

typedef struct {
    gw_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_kafka_bound_t producer;
    kc_redis_t *redis;
    kc_counter_t *consumed;
} gw_t;

#define POLL_BATCH 500

static int on_deliveries(void *arg)
{
    gw_t *g = arg;
    for (int i = 0; i < POLL_BATCH; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g->consumer.rk, 0);
        if (!m)
            return 0;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        else if (!m->err)
            kc_counter_inc(g->consumed);
        rd_kafka_message_destroy(m);
    }
    return 1;
}

static int on_producer_events(void *arg)
{
    gw_t *g = arg;
    return kc_kafka_serve(g->producer.rk, POLL_BATCH);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    gw_t *g = arg;
    kc_health_set_stopping(g->app.health);
    rd_kafka_resp_err_t err = rd_kafka_assign(g->consumer.rk, NULL);
    if (err)
        kc_log_warn("unassign: %s", rd_kafka_err2str(err));
    err = rd_kafka_flush(g->producer.rk, (int)(g->cfg.common.shutdown_timeout_ms / 2));
    if (err)
        kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    err = rd_kafka_consumer_close(g->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&g->consumer);
    kc_kafka_unbind(&g->producer);
    kc_redis_close(g->redis);
    g->redis = NULL;
    kc_app_close_admin(&g->app);
    kc_daemon_finish(d);
}

static int start(gw_t *g, char *err, size_t errlen)
{
    g->consumed = kc_metrics_counter(g->app.metrics, "kchat_gateway_deliveries_consumed_total",
                                     "Delivery records read from this gateway's slot.", NULL);
    g->redis = kc_redis_new(g->app.loop, g->cfg.redis.host, (int)g->cfg.redis.port,
                            (int)g->cfg.redis.timeout_ms, g->app.health, "redis");
    char client[64], group[64];
    kc_strlcpyf(client, sizeof(client), "gateway-%lld-consumer", g->cfg.slot);
    kc_strlcpyf(group, sizeof(group), "kchat-gateway-%lld", g->cfg.slot);
    kc_kafka_opts_t ko = {.brokers = g->cfg.kafka.brokers,
                          .debug = g->cfg.kafka.debug,
                          .health = g->app.health,
                          .metrics = g->app.metrics,
                          .client_id = client,
                          .check_name = "kafka_consumer"};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, group, NULL, err, errlen);
    if (!rk || kc_kafka_bind(&g->consumer, g->app.loop, rk, on_deliveries, g, err, errlen) != 0)
        return -1;
    char pclient[64];
    kc_strlcpyf(pclient, sizeof(pclient), "gateway-%lld-producer", g->cfg.slot);
    ko.client_id = pclient;
    ko.check_name = "kafka_producer";
    rk = kc_kafka_producer_new(&ko, NULL, err, errlen);
    if (!rk ||
        kc_kafka_bind(&g->producer, g->app.loop, rk, on_producer_events, g, err, errlen) != 0)
        return -1;
    /* A slot is a partition: one beyond the topic would read nothing, healthy and useless. */
    int32_t partitions =
        kc_kafka_partition_count(g->consumer.rk, g->cfg.deliveries_topic, 10000, err, errlen);
    if (partitions < 0)
        return -1;
    if (g->cfg.slot >= partitions) {
        kc_strlcpyf(err, errlen, "invalid value for slot: %lld, but %s has %d partitions (slots 0..%d)",
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
        kc_strlcpyf(err, errlen, "cannot assign %s[%lld]: %s", g->cfg.deliveries_topic,
                    g->cfg.slot, rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    gw_t g = {0};
    char err[512];
    int rc = kc_app_config("gateway", gw_opts, KC_ARRAY_LEN(gw_opts), &g.cfg, &g.cfg.common,
                           argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&g.app, "gateway", &g.cfg.common, 1, on_stop, &g, err, sizeof(err)) ||
            start(&g, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
            kc_redis_close(g.redis);
        } else {
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("admin_port", kc_httpd_port(g.app.admin_httpd)),
                                KC_INT("slot", g.cfg.slot)),
                      "gateway started");
            kc_app_run(&g.app);
            exit_code = 0;
        }
        kc_kafka_bound_destroy(&g.consumer);
        kc_kafka_bound_destroy(&g.producer);
        kc_app_destroy(&g.app);
        kc_log_info("stopped");
    }
    kc_config_free(gw_opts, KC_ARRAY_LEN(gw_opts), &g.cfg);
    return exit_code;
}
