/* conv.c - see conv.h. The command is written by kchat/chat.h with the registry's newest schema
 * id, as the gateway and the API write theirs. */
#include "conv.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "kchat/chat.h"
#include "kchat/util.h"

#define SUBJECT "chat.commands-value"
#define FLUSH_TIMEOUT_MS 60000

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                    size_t errstr_size)
{
    return rd_kafka_conf_set(conf, k, v, errstr, errstr_size) == RD_KAFKA_CONF_OK ? 0 : -1;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    size_t *failed = opaque;
    if (m->err)
        (*failed)++;
}

int lg_conv_create(const char *brokers, const char *schemas_dir, const lg_conv_spec_t *specs,
                   size_t n, char *errstr, size_t errstr_size)
{
    int rc = -1;
    size_t failed = 0;
    rd_kafka_t *rk = NULL;
    kc_buf_t buf = {0};
    kc_schemas_t *schemas = kc_schemas_load(schemas_dir, errstr, errstr_size);
    if (!schemas)
        return -1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set_conf(conf, "bootstrap.servers", brokers, errstr, errstr_size) ||
        set_conf(conf, "enable.idempotence", "true", errstr, errstr_size) ||
        set_conf(conf, "acks", "all", errstr, errstr_size) ||
        set_conf(conf, "partitioner", "murmur2_random", errstr, errstr_size) ||
        set_conf(conf, "linger.ms", "5", errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &failed);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    conf = NULL; /* rd_kafka_new took it */
    int32_t schema_id = kc_schemas_current_id(schemas, SUBJECT);
    if (schema_id < 0) {
        kc_strlcpyf(errstr, errstr_size, "no schema for %s", SUBJECT);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char uuid[37];
        kc_uuid4(uuid);
        kc_chat_command_t cmd = {.kind = KC_CMD_CREATE_CONVERSATION,
                                 .command_id = kc_str(uuid),
                                 .convo_id = kc_str(specs[i].id),
                                 .sender_id = kc_str(specs[i].creator),
                                 .issued_at = kc_now_ms(),
                                 .origin = kc_str("api:bench"),
                                 .title = kc_str("bench"),
                                 .members_out = specs[i].others,
                                 .nmembers_out = specs[i].nothers};
        kc_buf_reset(&buf);
        kc_chat_command_encode(&buf, schema_id, &cmd);
        for (;;) {
            rd_kafka_resp_err_t err =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("chat.commands"),
                                  RD_KAFKA_V_KEY(specs[i].id, strlen(specs[i].id)),
                                  RD_KAFKA_V_VALUE(buf.data, buf.len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 50);
                continue;
            }
            if (err) {
                kc_strlcpyf(errstr, errstr_size, "produce: %s", rd_kafka_err2str(err));
                goto out;
            }
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kc_strlcpyf(errstr, errstr_size, "conversations not acknowledged within %d ms",
                    FLUSH_TIMEOUT_MS);
        goto out;
    }
    if (failed) {
        kc_strlcpyf(errstr, errstr_size, "%zu CreateConversation commands failed", failed);
        goto out;
    }
    rc = 0;
out:
    if (rk)
        rd_kafka_destroy(rk);
    kc_buf_free(&buf);
    kc_schemas_destroy(schemas);
    return rc;
}
