/* kchat-projector - chat.events in, Postgres and Redis read models out.
 *
 * At this stage the projector joins its consumer group on chat.events (read_committed),
 * connects to Postgres and Redis through the loop adapters, serves /health and /metrics and
 * drains on SIGTERM. It counts the events it sees; applying them comes with the read side.
 */
#include <stddef.h>

#include "kchat/app.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/util.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
    char *group_id;
    char *events_topic;
} proj_cfg_t;

static const kc_cfg_opt_t proj_opts[] = {
    KC_CFG_COMMON(proj_cfg_t, common),
    KC_CFG_ADMIN(proj_cfg_t, common, "17096"),
    KC_CFG_KAFKA(proj_cfg_t, kafka),
    KC_CFG_PG(proj_cfg_t, pg),
    KC_CFG_REDIS(proj_cfg_t, redis),
    {"group-id", KC_CFG_STR, offsetof(proj_cfg_t, group_id), "kchat-projector", 1, 255,
     "consumer group of the projectors"},
    {"events-topic", KC_CFG_STR, offsetof(proj_cfg_t, events_topic), "chat.events", 1, 249,
     "topic the events are read from"},
};

typedef struct {
    proj_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_pg_t *pg;
    kc_redis_t *redis;
    kc_counter_t *consumed;
} proj_t;

#define POLL_BATCH 500

static int on_events(void *arg)
{
    proj_t *p = arg;
    for (int i = 0; i < POLL_BATCH; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer.rk, 0);
        if (!m)
            return 0;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        else if (!m->err)
            kc_counter_inc(p->consumed);
        rd_kafka_message_destroy(m);
    }
    return 1;
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    proj_t *p = arg;
    kc_health_set_stopping(p->app.health);
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&p->consumer);
    kc_pg_close(p->pg);
    kc_redis_close(p->redis);
    p->pg = NULL;
    p->redis = NULL;
    kc_app_close_admin(&p->app);
    kc_daemon_finish(d);
}

static int start(proj_t *p, char *err, size_t errlen)
{
    p->consumed = kc_metrics_counter(p->app.metrics, "kchat_projector_events_consumed_total",
                                     "Events read from the events topic.", NULL);
    p->pg = kc_pg_new(p->app.loop, p->cfg.pg.dsn, p->app.health, "postgres");
    p->redis = kc_redis_new(p->app.loop, p->cfg.redis.host, (int)p->cfg.redis.port,
                            (int)p->cfg.redis.timeout_ms, p->app.health, "redis");
    kc_kafka_opts_t ko = {.brokers = p->cfg.kafka.brokers,
                          .debug = p->cfg.kafka.debug,
                          .health = p->app.health,
                          .metrics = p->app.metrics,
                          .client_id = "projector-consumer",
                          .check_name = "kafka_consumer"};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, p->cfg.group_id, NULL, err, errlen);
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, on_events, p, err, errlen) != 0)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, p->cfg.events_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(p->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot subscribe to %s: %s", p->cfg.events_topic,
                    rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    proj_t p = {0};
    char err[512];
    int rc = kc_app_config("projector", proj_opts, KC_ARRAY_LEN(proj_opts), &p.cfg,
                           &p.cfg.common, argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&p.app, "projector", &p.cfg.common, 1, on_stop, &p, err, sizeof(err)) ||
            start(&p, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
            kc_pg_close(p.pg);
            kc_redis_close(p.redis);
        } else {
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p.app.admin_httpd)),
                                KC_STR("topic", p.cfg.events_topic)),
                      "projector started");
            kc_app_run(&p.app);
            exit_code = 0;
        }
        kc_kafka_bound_destroy(&p.consumer);
        kc_app_destroy(&p.app);
        kc_log_info("stopped");
    }
    kc_config_free(proj_opts, KC_ARRAY_LEN(proj_opts), &p.cfg);
    return exit_code;
}
