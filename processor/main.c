/* kchat-processor - chat.commands in, chat.events and chat.deliveries out.
 *
 * At this stage the processor connects its consumer (read_committed, manual offsets) and its
 * producer (idempotent, acks=all), serves /health and /metrics, and drains on SIGTERM. It
 * counts the commands it sees but neither processes nor commits them yet.
 */
#include <stddef.h>

#include "kchat/app.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/util.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    char *group_id;
    char *commands_topic;
} proc_cfg_t;

static const kc_cfg_opt_t proc_opts[] = {
    KC_CFG_COMMON(proc_cfg_t, common),
    KC_CFG_ADMIN(proc_cfg_t, common, "17095"),
    KC_CFG_KAFKA(proc_cfg_t, kafka),
    {"group-id", KC_CFG_STR, offsetof(proc_cfg_t, group_id), "kchat-processor", 1, 255,
     "consumer group of the processors"},
    {"commands-topic", KC_CFG_STR, offsetof(proc_cfg_t, commands_topic), "chat.commands", 1, 249,
     "topic the commands are read from"},
};

typedef struct {
    proc_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_kafka_bound_t producer;
    kc_counter_t *consumed;
} proc_t;

#define POLL_BATCH 500

static int on_commands(void *arg)
{
    proc_t *p = arg;
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

static int on_producer_events(void *arg)
{
    proc_t *p = arg;
    return kc_kafka_serve(p->producer.rk, POLL_BATCH);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    proc_t *p = arg;
    kc_health_set_stopping(p->app.health);
    /* Leave the group (revokes our partitions), then flush what we produced. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    err = rd_kafka_flush(p->producer.rk, (int)(p->cfg.common.shutdown_timeout_ms / 2));
    if (err)
        kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&p->consumer);
    kc_kafka_unbind(&p->producer);
    kc_app_close_admin(&p->app);
    kc_daemon_finish(d);
}

static int start(proc_t *p, char *err, size_t errlen)
{
    p->consumed = kc_metrics_counter(p->app.metrics, "kchat_processor_commands_consumed_total",
                                     "Commands read from the commands topic.", NULL);
    kc_kafka_opts_t ko = {.brokers = p->cfg.kafka.brokers,
                          .health = p->app.health,
                          .metrics = p->app.metrics,
                          .client_id = "processor-consumer",
                          .check_name = "kafka_consumer"};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, p->cfg.group_id, NULL, err, errlen);
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, on_commands, p, err, errlen) != 0)
        return -1;
    ko.client_id = "processor-producer";
    ko.check_name = "kafka_producer";
    rk = kc_kafka_producer_new(&ko, NULL, err, errlen);
    if (!rk ||
        kc_kafka_bind(&p->producer, p->app.loop, rk, on_producer_events, p, err, errlen) != 0)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, p->cfg.commands_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(p->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot subscribe to %s: %s", p->cfg.commands_topic,
                    rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    proc_t p = {0};
    char err[512];
    int rc = kc_app_config("processor", proc_opts, KC_ARRAY_LEN(proc_opts), &p.cfg,
                           &p.cfg.common, argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&p.app, "processor", &p.cfg.common, 1, on_stop, &p, err, sizeof(err)) ||
            start(&p, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
        } else {
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p.app.admin_httpd)),
                                KC_STR("topic", p.cfg.commands_topic)),
                      "processor started");
            kc_app_run(&p.app);
            exit_code = 0;
        }
        kc_kafka_bound_destroy(&p.consumer);
        kc_kafka_bound_destroy(&p.producer);
        kc_app_destroy(&p.app);
        kc_log_info("stopped");
    }
    kc_config_free(proc_opts, KC_ARRAY_LEN(proc_opts), &p.cfg);
    return exit_code;
}
