/* kc-produce - produces records through lib/'s producer and loop adapter, for the system
 * tests: each delivered record is printed as a JSON line {key, value, partition, offset},
 * so an independent client can read them back from the broker and compare.
 *
 *   kc-produce --kafka-brokers=H:P --topic=T --count=N --prefix=P
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/buf.h"
#include "kchat/config.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/util.h"

typedef struct {
    char *brokers;
    char *topic;
    long long count;
    char *prefix;
} opts_t;

static const kc_cfg_opt_t table[] = {
    {"kafka-brokers", KC_CFG_STR, offsetof(opts_t, brokers), "127.0.0.1:17010", 1, 1024,
     "bootstrap servers"},
    {"topic", KC_CFG_STR, offsetof(opts_t, topic), "kc-produce", 1, 249, "topic"},
    {"count", KC_CFG_INT, offsetof(opts_t, count), "10", 1, 1000000, "records"},
    {"prefix", KC_CFG_STR, offsetof(opts_t, prefix), "k", 1, 64, "key and value prefix"},
};

typedef struct {
    uv_loop_t loop;
    kc_kafka_bound_t producer;
    long long delivered, failed, expected;
} state_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    state_t *s = opaque;
    kc_buf_t line = {0};
    kc_buf_puts(&line, "{\"key\":\"");
    kc_buf_json_str(&line, m->key, m->key_len);
    kc_buf_puts(&line, "\",\"value\":\"");
    kc_buf_json_str(&line, m->payload, m->len);
    kc_buf_printf(&line, "\",\"partition\":%d,\"offset\":%lld,\"error\":", (int)m->partition,
                  (long long)m->offset);
    if (m->err) {
        kc_buf_putc(&line, '"');
        const char *e = rd_kafka_err2str(m->err);
        kc_buf_json_str(&line, e, strlen(e));
        kc_buf_putc(&line, '"');
        s->failed++;
    } else {
        kc_buf_puts(&line, "null");
        s->delivered++;
    }
    printf("%s}\n", line.data);
    kc_buf_free(&line);
    if (s->delivered + s->failed == s->expected)
        kc_kafka_unbind(&s->producer); /* nothing else keeps the loop alive */
}

static int on_ready(void *arg)
{
    state_t *s = arg;
    return kc_kafka_serve(s->producer.rk, 1000);
}

int main(int argc, char **argv)
{
    opts_t o = {0};
    char err[512];
    kc_log_init("kc-produce", KC_LOG_WARN);
    int rc = kc_config_load(table, KC_ARRAY_LEN(table), &o, argc, argv, NULL, stdout, err,
                            sizeof(err));
    if (rc != KC_CFG_OK) {
        if (rc < 0)
            fprintf(stderr, "kc-produce: %s\n", err);
        kc_config_free(table, KC_ARRAY_LEN(table), &o);
        return rc < 0 ? 2 : 0;
    }
    state_t s = {.expected = o.count};
    int exit_code = 1;
    if (uv_loop_init(&s.loop) != 0)
        goto out;
    kc_kafka_opts_t ko = {.conn = &(kc_kafka_cfg_t){.brokers = o.brokers},
                          .client_id = "kc-produce",
                          .dr_msg_cb = on_delivery,
                          .opaque = &s};
    rd_kafka_t *rk = kc_kafka_producer_new(&ko, NULL, err, sizeof(err));
    if (!rk || kc_kafka_bind(&s.producer, &s.loop, rk, on_ready, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "kc-produce: %s\n", err);
        goto destroy;
    }
    for (long long i = 0; i < o.count; i++) {
        char key[96], value[128];
        snprintf(key, sizeof(key), "%s-%lld", o.prefix, i);
        snprintf(value, sizeof(value), "value-%s-%lld", o.prefix, i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o.topic),
                                      RD_KAFKA_V_KEY(key, strlen(key)),
                                      RD_KAFKA_V_VALUE(value, strlen(value)),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            (void)uv_run(&s.loop, UV_RUN_ONCE);
        if (e) {
            fprintf(stderr, "kc-produce: %s\n", rd_kafka_err2str(e));
            goto destroy;
        }
    }
    (void)uv_run(&s.loop, UV_RUN_DEFAULT);
    exit_code = s.failed == 0 && s.delivered == o.count ? 0 : 1;
destroy:
    kc_kafka_bound_destroy(&s.producer);
    (void)uv_run(&s.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s.loop) != 0)
        fprintf(stderr, "kc-produce: loop closed with open handles\n");
out:
    kc_config_free(table, KC_ARRAY_LEN(table), &o);
    return exit_code;
}
