/* conv.c - see conv.h. The command is built from its Avro JSON form (kc_avro_from_json) and
 * framed with the registry's schema id, so it is byte for byte what the daemons write. */
#include "conv.h"

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

#include "kchat/avro.h"
#include "kchat/buf.h"
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

static cJSON *command_json(const lg_conv_spec_t *s)
{
    char uuid[37];
    kc_uuid4(uuid);
    /* every child is added to its parent as soon as it exists: deleting cmd frees all */
    cJSON *cmd = cJSON_CreateObject();
    if (!cmd)
        return NULL;
    cJSON *body, *create, *members;
    if (!cJSON_AddStringToObject(cmd, "command_id", uuid) ||
        !cJSON_AddStringToObject(cmd, "convo_id", s->id) ||
        !cJSON_AddStringToObject(cmd, "sender_id", s->creator) ||
        !cJSON_AddNumberToObject(cmd, "issued_at", (double)kc_now_ms()) ||
        !cJSON_AddStringToObject(cmd, "origin", "api:bench") ||
        !(body = cJSON_AddObjectToObject(cmd, "body")) ||
        !(create = cJSON_AddObjectToObject(body, "io.kchat.CreateConversation")) ||
        !cJSON_AddStringToObject(create, "title", "bench") ||
        !(members = cJSON_AddArrayToObject(create, "members")))
        goto fail;
    for (size_t i = 0; i < s->nothers; i++) {
        cJSON *m = cJSON_CreateString(s->others[i]);
        if (!m)
            goto fail;
        if (!cJSON_AddItemToArray(members, m)) {
            cJSON_Delete(m);
            goto fail;
        }
    }
    return cmd;
fail:
    cJSON_Delete(cmd);
    return NULL;
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
    for (size_t i = 0; i < n; i++) {
        cJSON *json = command_json(&specs[i]);
        avro_value_t v;
        if (!json) {
            kc_strlcpyf(errstr, errstr_size, "out of memory building a command");
            goto out;
        }
        if (kc_avro_value_new(schemas, SUBJECT, &v) != 0) {
            cJSON_Delete(json);
            kc_strlcpyf(errstr, errstr_size, "no schema for %s", SUBJECT);
            goto out;
        }
        int erc = kc_avro_from_json(&v, json, errstr, errstr_size);
        cJSON_Delete(json);
        kc_buf_reset(&buf);
        if (erc == 0 && kc_avro_encode(schemas, SUBJECT, &v, &buf) != 0) {
            kc_strlcpyf(errstr, errstr_size, "cannot encode CreateConversation");
            erc = -1;
        }
        avro_value_decref(&v);
        if (erc != 0)
            goto out;
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
