/* kafka.c - librdkafka clients with kchat's defaults; io-event adapter to the libuv loop. */
#include "kchat/kafka.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kchat/log.h"
#include "kchat/util.h"

/* What kchat hangs on a client as its opaque. */
typedef struct {
    void *user_opaque;
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
    void (*offset_commit_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque);
    char *client_id;
    kc_health_t *health;
    int check;
    kc_gauge_t *brokers_up;
    kc_gauge_t *lag; /* consumers */
    kc_gauge_t *rtt[2], *queued[2]; /* p50, p99 over the brokers' last statistics window */
    kc_counter_t *errors;
} kopaque_t;

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug */
    kc_log_level_t lvl = level <= 3 ? KC_LOG_ERROR : level == 4 ? KC_LOG_WARN
                                                 : level <= 6  ? KC_LOG_INFO
                                                               : KC_LOG_DEBUG;
    kc_log_kv(lvl, KC_FIELDS(KC_STR("lib", "librdkafka"), KC_STR("fac", fac),
                             KC_STR("client", rd_kafka_name(rk))),
              "%s", buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kopaque_t *o = opaque;
    kc_counter_inc(o->errors);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("client", o->client_id),
                                          KC_STR("error", rd_kafka_err2name(ferr))),
                  "fatal Kafka client error: %s", fatal);
        kc_health_set(o->health, o->check, 0, "fatal client error");
        return;
    }
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("client", o->client_id),
                                     KC_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err))),
              "Kafka client error: %s", reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        kc_health_set(o->health, o->check, 0, "all brokers down");
}

/* Statistics arrive every statistics.interval.ms on the main queue: count the brokers
 * (not the bootstrap placeholders, whose nodeid is -1) whose connection is UP. */
static long long stats_offset(const cJSON *pt, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pt, name);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
}

long long kc_kafka_stats_lag(const struct cJSON *stats)
{
    long long lag = 0;
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(stats, "topics"), *t;
    cJSON_ArrayForEach(t, topics)
    {
        const cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions"), *pt;
        cJSON_ArrayForEach(pt, parts)
        {
            const cJSON *desired = cJSON_GetObjectItemCaseSensitive(pt, "desired");
            if (stats_offset(pt, "partition") < 0 || !cJSON_IsTrue(desired))
                continue; /* the internal UA partition, or one this consumer does not fetch */
            long long end = stats_offset(pt, "ls_offset");
            if (end < 0)
                end = stats_offset(pt, "hi_offset");
            long long pos = stats_offset(pt, "app_offset");
            if (pos < 0)
                pos = stats_offset(pt, "next_offset");
            if (end >= 0 && pos >= 0 && end > pos)
                lag += end - pos;
        }
    }
    return lag;
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    kopaque_t *o = opaque;
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (!root)
        return 0;
    /* A broker can appear twice (its own connection and the group coordinator's): count
     * distinct node ids, up when any of its connections is. */
    int ids[64], isup[64], total = 0, up = 0;
    const cJSON *brokers = cJSON_GetObjectItemCaseSensitive(root, "brokers");
    const cJSON *b;
    cJSON_ArrayForEach(b, brokers)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "nodeid");
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
        if (!cJSON_IsNumber(id) || id->valueint < 0)
            continue;
        int k = 0;
        while (k < total && ids[k] != id->valueint)
            k++;
        if (k == total) {
            if (total == 64)
                continue;
            ids[total] = id->valueint;
            isup[total++] = 0;
        }
        if (cJSON_IsString(state) && strcmp(state->valuestring, "UP") == 0)
            isup[k] = 1;
    }
    for (int k = 0; k < total; k++)
        up += isup[k];
    /* Request round trips and (producers) the time a record waits in the client's queue
     * before it is sent: the slowest broker's window percentiles, in seconds. */
    double rtt[2] = {0, 0}, queued[2] = {0, 0};
    cJSON_ArrayForEach(b, brokers)
    {
        const char *names[] = {"rtt", "int_latency"};
        double *dst[] = {rtt, queued};
        for (int w = 0; w < 2; w++) {
            const cJSON *win = cJSON_GetObjectItemCaseSensitive(b, names[w]);
            const cJSON *p50 = cJSON_GetObjectItemCaseSensitive(win, "p50");
            const cJSON *p99 = cJSON_GetObjectItemCaseSensitive(win, "p99");
            if (cJSON_IsNumber(p50) && p50->valuedouble / 1e6 > dst[w][0])
                dst[w][0] = p50->valuedouble / 1e6;
            if (cJSON_IsNumber(p99) && p99->valuedouble / 1e6 > dst[w][1])
                dst[w][1] = p99->valuedouble / 1e6;
        }
    }
    for (int q = 0; q < 2; q++) {
        kc_gauge_set(o->rtt[q], rtt[q]);
        kc_gauge_set(o->queued[q], queued[q]);
    }
    if (o->lag)
        kc_gauge_set(o->lag, (double)kc_kafka_stats_lag(root));
    cJSON_Delete(root);
    kc_gauge_set(o->brokers_up, up);
    char detail[64];
    kc_strlcpyf(detail, sizeof(detail), "%d of %d brokers up", up, total);
    kc_health_set(o->health, o->check, up > 0, detail);
    return 0;
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    kopaque_t *o = opaque;
    o->offset_commit_cb(rk, err, offsets, o->user_opaque);
}

/* Logs each rebalance and applies it, for eager and cooperative assignors alike. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kopaque_t *o = opaque;
    if (o->rebalance_cb) {
        o->rebalance_cb(rk, err, parts, o->user_opaque);
        return;
    }
    int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    kc_buf_t list = {0};
    for (int i = 0; i < parts->cnt; i++)
        kc_buf_printf(&list, "%s%s[%d]", i ? "," : "", parts->elems[i].topic,
                      (int)parts->elems[i].partition);
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_STR("partitions", list.data ? list.data : ""),
                        KC_STR("protocol", coop ? "cooperative" : "eager")),
              assign ? "partitions assigned" : "partitions revoked");
    kc_buf_free(&list);
    (void)kc_kafka_rebalance_apply(rk, err, parts);
}

rd_kafka_topic_t *kc_kafka_topic_hold(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                      char *errstr, size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        kc_strlcpyf(errstr, errstr_size, "cannot make a handle of %s: %s", topic,
                    rd_kafka_err2str(rd_kafka_last_error()));
        return NULL;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    int ok = !err && md->topic_cnt == 1 && !md->topics[0].err;
    if (!ok)
        kc_strlcpyf(errstr, errstr_size, "cannot read the metadata of %s: %s", topic,
                    err ? rd_kafka_err2str(err) : rd_kafka_err2str(md->topics[0].err));
    if (md)
        rd_kafka_metadata_destroy(md);
    if (!ok) {
        rd_kafka_topic_destroy(rkt);
        return NULL;
    }
    return rkt;
}

void kc_kafka_event_serve(rd_kafka_t *rk, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_LOG: {
        const char *fac = NULL, *str = NULL;
        int level = 6;
        if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
            log_cb(rk, level, fac ? fac : "", str ? str : "");
        break;
    }
    case RD_KAFKA_EVENT_STATS: {
        const char *json = rd_kafka_event_stats(ev);
        if (json)
            (void)stats_cb(rk, (char *)json, strlen(json), rd_kafka_opaque(rk));
        break;
    }
    case RD_KAFKA_EVENT_ERROR:
        error_cb(rk, rd_kafka_event_error_is_fatal(ev) ? RD_KAFKA_RESP_ERR__FATAL
                                                       : rd_kafka_event_error(ev),
                 rd_kafka_event_error_string(ev), rd_kafka_opaque(rk));
        break;
    default: break;
    }
}

int kc_kafka_rebalance_apply(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts)
{
    int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0) {
        rd_kafka_error_t *e = assign ? rd_kafka_incremental_assign(rk, parts)
                                     : rd_kafka_incremental_unassign(rk, parts);
        if (!e)
            return 0;
        kc_log_error("incremental rebalance failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -EIO;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, assign ? parts : NULL);
    if (!e)
        return 0;
    kc_log_error("rebalance failed: %s", rd_kafka_err2str(e));
    return -EIO;
}

int32_t kc_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                                 size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms)
                                : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int32_t n = !err && md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : -1;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    if (n < 0)
        kc_strlcpyf(errstr, errstr_size, "cannot read the partitions of %s: %s", topic,
                    err ? rd_kafka_err2str(err) : "unknown topic");
    return n;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kopaque_t *o = opaque;
    o->dr_msg_cb(rk, m, o->user_opaque);
}

void *kc_kafka_user_opaque(rd_kafka_t *rk)
{
    kopaque_t *o = rd_kafka_opaque(rk);
    return o ? o->user_opaque : NULL;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                    size_t errstr_size)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        kc_strlcpyf(errstr, errstr_size, "Kafka setting %s=%s: %s", k, v, err);
        return -EINVAL;
    }
    return 0;
}

static int is_set(const char *s)
{
    return s && *s;
}

int kc_kafka_conf_connect(rd_kafka_conf_t *conf, const kc_kafka_cfg_t *c, char *errstr,
                          size_t errstr_size)
{
    const char *proto = is_set(c->security_protocol) ? c->security_protocol : "plaintext";
    int sasl = strncasecmp(proto, "sasl_", 5) == 0;
    if (!sasl && (is_set(c->sasl_username) || is_set(c->sasl_password))) {
        kc_strlcpyf(errstr, errstr_size,
                    "kafka-sasl-username and kafka-sasl-password need kafka-security-protocol "
                    "sasl_ssl or sasl_plaintext (it is %s)",
                    proto);
        return -EINVAL;
    }
    if (sasl && !is_set(c->sasl_username)) {
        kc_strlcpyf(errstr, errstr_size,
                    "kafka-security-protocol %s needs kafka-sasl-username (and "
                    "kafka-sasl-password)",
                    proto);
        return -EINVAL;
    }
    if (is_set(c->ssl_certificate_location) != is_set(c->ssl_key_location)) {
        kc_strlcpyf(errstr, errstr_size,
                    "kafka-ssl-certificate-location and kafka-ssl-key-location go together");
        return -EINVAL;
    }
    if (conf_set(conf, "bootstrap.servers", c->brokers, errstr, errstr_size) ||
        (is_set(c->debug) && conf_set(conf, "debug", c->debug, errstr, errstr_size)) ||
        conf_set(conf, "security.protocol", proto, errstr, errstr_size))
        return -EINVAL;
    /* Certificates are checked against the broker's host name (librdkafka's default,
     * ssl.endpoint.identification.algorithm=https), never turned off here. */
    if ((is_set(c->ssl_ca_location) &&
         conf_set(conf, "ssl.ca.location", c->ssl_ca_location, errstr, errstr_size)) ||
        (is_set(c->ssl_certificate_location) &&
         (conf_set(conf, "ssl.certificate.location", c->ssl_certificate_location, errstr,
                   errstr_size) ||
          conf_set(conf, "ssl.key.location", c->ssl_key_location, errstr, errstr_size))))
        return -EINVAL;
    if (!sasl)
        return 0;
    const char *mech = is_set(c->sasl_mechanism) ? c->sasl_mechanism : "SCRAM-SHA-512";
    if (strcmp(mech, "PLAIN") != 0 && strcmp(mech, "SCRAM-SHA-256") != 0 &&
        strcmp(mech, "SCRAM-SHA-512") != 0) {
        kc_strlcpyf(errstr, errstr_size,
                    "kafka-sasl-mechanism %s: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mech);
        return -EINVAL;
    }
    char err[256];
    if (conf_set(conf, "sasl.mechanisms", mech, errstr, errstr_size) ||
        conf_set(conf, "sasl.username", c->sasl_username, errstr, errstr_size))
        return -EINVAL;
    /* Not through conf_set: its message would carry the password. */
    if (rd_kafka_conf_set(conf, "sasl.password", is_set(c->sasl_password) ? c->sasl_password : "",
                          err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        kc_strlcpyf(errstr, errstr_size, "Kafka setting sasl.password: %s", err);
        return -EINVAL;
    }
    return 0;
}

static rd_kafka_t *client_new(rd_kafka_type_t type, const kc_kafka_opts_t *o,
                              const char *const *defaults, const char *const *overrides,
                              char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kopaque_t *op = kc_xcalloc(1, sizeof(*op));
    op->client_id = kc_xstrdup(o->client_id ? o->client_id : "kchat");
    op->user_opaque = o->opaque;
    op->dr_msg_cb = o->dr_msg_cb;
    op->rebalance_cb = o->rebalance_cb;
    op->offset_commit_cb = o->offset_commit_cb;
    op->health = o->health;
    op->check = o->health ? kc_health_add(o->health, o->check_name ? o->check_name : "kafka") : -1;
    if (o->metrics) {
        const char *lbl[] = {"client", op->client_id, NULL};
        op->brokers_up = kc_metrics_gauge(o->metrics, "kchat_kafka_brokers_up",
                                          "Broker connections that are up, per client.", lbl);
        op->errors = kc_metrics_counter(o->metrics, "kchat_kafka_client_errors_total",
                                        "Errors reported by the Kafka client.", lbl);
        if (type == RD_KAFKA_CONSUMER)
            op->lag = kc_metrics_gauge(o->metrics, "kchat_kafka_consumer_lag_messages",
                                       "Messages a consumer is behind, over its partitions.",
                                       lbl);
        const char *q50[] = {"client", op->client_id, "percentile", "50", NULL};
        const char *q99[] = {"client", op->client_id, "percentile", "99", NULL};
        op->rtt[0] = kc_metrics_gauge(o->metrics, "kchat_kafka_request_rtt_seconds",
                                      "Round trip of the client's requests to the slowest broker, "
                                      "over the last statistics window.",
                                      q50);
        op->rtt[1] = kc_metrics_gauge(o->metrics, "kchat_kafka_request_rtt_seconds", NULL, q99);
        if (type == RD_KAFKA_PRODUCER) {
            op->queued[0] = kc_metrics_gauge(o->metrics, "kchat_kafka_produce_queue_seconds",
                                             "Time a record waits in the producer's queue "
                                             "before it is sent, over the last statistics "
                                             "window.",
                                             q50);
            op->queued[1] =
                kc_metrics_gauge(o->metrics, "kchat_kafka_produce_queue_seconds", NULL, q99);
        }
    }
    rd_kafka_t *rk = NULL;
    if (kc_kafka_conf_connect(conf, o->conn, errstr, errstr_size) ||
        conf_set(conf, "client.id", op->client_id, errstr, errstr_size) ||
        conf_set(conf, "log.queue", "true", errstr, errstr_size) ||
        conf_set(conf, "statistics.interval.ms", "1000", errstr, errstr_size))
        goto fail;
    for (size_t i = 0; defaults && defaults[i] && defaults[i + 1]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size))
            goto fail;
    for (size_t i = 0; overrides && overrides[i] && overrides[i + 1]; i += 2)
        if (conf_set(conf, overrides[i], overrides[i + 1], errstr, errstr_size))
            goto fail;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, op);
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (type == RD_KAFKA_CONSUMER && o->offset_commit_cb)
        rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    if (o->dr_msg_cb)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    else if (o->dr_events && type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR);

    char err[512];
    rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        kc_strlcpyf(errstr, errstr_size, "cannot create Kafka client: %s", err);
        goto fail;
    }
    conf = NULL; /* rd_kafka_new took it */
    /* Logs go to the main queue and are served on the loop with everything else. */
    if (rd_kafka_set_log_queue(rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kc_strlcpyf(errstr, errstr_size, "cannot route Kafka client logs");
        goto fail;
    }
    return rk;
fail:
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    kc_kafka_opaque_free(op);
    return NULL;
}

rd_kafka_t *kc_kafka_producer_new(const kc_kafka_opts_t *o, const char *const *overrides,
                                  char *errstr, size_t errstr_size)
{
    static const char *const defaults[] = {"enable.idempotence", "true",
                                           "acks", "all",
                                           "partitioner", "murmur2_random",
                                           "socket.nagle.disable", "true",
                                           NULL};
    return client_new(RD_KAFKA_PRODUCER, o, defaults, overrides, errstr, errstr_size);
}

rd_kafka_t *kc_kafka_consumer_new(const kc_kafka_opts_t *o, const char *group_id,
                                  const char *const *overrides, char *errstr, size_t errstr_size)
{
    const char *const defaults[] = {"group.id", group_id,
                                    "isolation.level", "read_committed",
                                    "enable.auto.commit", "false",
                                    "enable.auto.offset.store", "false",
                                    "auto.offset.reset", "earliest",
                                    "socket.nagle.disable", "true",
                                    NULL};
    rd_kafka_t *rk = client_new(RD_KAFKA_CONSUMER, o, defaults, overrides, errstr, errstr_size);
    if (rk && rd_kafka_poll_set_consumer(rk) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kc_strlcpyf(errstr, errstr_size, "cannot redirect the main queue to the consumer");
        kc_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

void kc_kafka_opaque_free(void *opaque)
{
    kopaque_t *op = opaque;
    if (!op)
        return;
    free(op->client_id);
    free(op);
}

void kc_kafka_destroy(rd_kafka_t *rk)
{
    if (!rk)
        return;
    void *op = rd_kafka_opaque(rk);
    rd_kafka_destroy(rk);
    kc_kafka_opaque_free(op);
}

int kc_kafka_serve(rd_kafka_t *rk, int max)
{
    for (int i = 0; i < max; i++)
        if (rd_kafka_poll(rk, 0) == 0)
            return 0;
    return 1;
}

struct kc_kafka_watch {
    rd_kafka_queue_t *q;
    int fds[2];
    uv_poll_t poll;
    uv_idle_t idle;
    int idle_active;
    int paused;
    int open_handles;
    kc_kafka_ready_fn ready;
    void *arg;
};

/* Serves the queue once; returns 1 when it must be served again without waiting for a byte.
 * A poll can return nothing while ops are still queued (librdkafka yields after a rebalance
 * callback, for one), and the queue writes its byte only when it goes from empty to
 * non-empty, so "the callback found nothing" does not mean "the queue is empty": ask it. */
static int serve(kc_kafka_watch_t *w)
{
    return w->ready(w->arg) || rd_kafka_queue_length(w->q) > 0;
}

static void on_idle(uv_idle_t *i)
{
    kc_kafka_watch_t *w = i->data;
    if (w->paused || !serve(w)) {
        w->idle_active = 0;
        (void)uv_idle_stop(&w->idle);
    }
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    kc_kafka_watch_t *w = p->data;
    char buf[256];
    while (read(w->fds[0], buf, sizeof(buf)) > 0)
        ;
    if (w->paused)
        return;
    int more = serve(w);
    if (more && !w->idle_active && uv_idle_start(&w->idle, on_idle) == 0)
        w->idle_active = 1;
}

kc_kafka_watch_t *kc_kafka_watch_new(uv_loop_t *loop, rd_kafka_queue_t *q, kc_kafka_ready_fn ready,
                                     void *arg, char *errstr, size_t errstr_size)
{
    kc_kafka_watch_t *w = kc_xcalloc(1, sizeof(*w));
    w->q = q;
    w->ready = ready;
    w->arg = arg;
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        kc_strlcpyf(errstr, errstr_size, "pipe2: %s", strerror(errno));
        free(w);
        return NULL;
    }
    if (uv_poll_init(loop, &w->poll, w->fds[0]) != 0 || uv_idle_init(loop, &w->idle) != 0) {
        kc_strlcpyf(errstr, errstr_size, "cannot watch the Kafka queue");
        close(w->fds[0]);
        close(w->fds[1]);
        free(w);
        return NULL;
    }
    w->poll.data = w->idle.data = w;
    w->open_handles = 2;
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    if (uv_poll_start(&w->poll, UV_READABLE, on_readable) != 0) {
        kc_strlcpyf(errstr, errstr_size, "cannot poll the Kafka queue pipe");
        kc_kafka_watch_close(w);
        return NULL;
    }
    /* Events queued before the io event was enabled wrote no byte: serve them now. */
    if (uv_idle_start(&w->idle, on_idle) == 0)
        w->idle_active = 1;
    return w;
}

void kc_kafka_watch_pause(kc_kafka_watch_t *w)
{
    w->paused = 1;
    if (w->idle_active) {
        w->idle_active = 0;
        (void)uv_idle_stop(&w->idle);
    }
}

void kc_kafka_watch_resume(kc_kafka_watch_t *w)
{
    if (!w->paused)
        return;
    w->paused = 0;
    /* Bytes that came while paused were drained unserved: serve on the next iteration. */
    if (!w->idle_active && uv_idle_start(&w->idle, on_idle) == 0)
        w->idle_active = 1;
}

static void on_watch_closed(uv_handle_t *h)
{
    kc_kafka_watch_t *w = h->data;
    if (--w->open_handles == 0) {
        close(w->fds[0]);
        close(w->fds[1]);
        free(w);
    }
}

void kc_kafka_watch_close(kc_kafka_watch_t *w)
{
    if (!w)
        return;
    rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
    uv_close((uv_handle_t *)&w->idle, on_watch_closed);
}

int kc_kafka_bind(kc_kafka_bound_t *b, uv_loop_t *loop, rd_kafka_t *rk, kc_kafka_ready_fn ready,
                  void *arg, char *errstr, size_t errstr_size)
{
    b->rk = rk;
    b->q = rd_kafka_type(rk) == RD_KAFKA_CONSUMER ? rd_kafka_queue_get_consumer(rk)
                                                  : rd_kafka_queue_get_main(rk);
    if (!b->q) {
        kc_strlcpyf(errstr, errstr_size, "Kafka client has no queue to serve");
        return -EINVAL;
    }
    b->w = kc_kafka_watch_new(loop, b->q, ready, arg, errstr, errstr_size);
    return b->w ? 0 : -EIO;
}

void kc_kafka_unbind(kc_kafka_bound_t *b)
{
    kc_kafka_watch_close(b->w);
    b->w = NULL;
}

void kc_kafka_bound_destroy(kc_kafka_bound_t *b)
{
    kc_kafka_unbind(b);
    if (b->q)
        rd_kafka_queue_destroy(b->q);
    b->q = NULL;
    kc_kafka_destroy(b->rk);
    b->rk = NULL;
}

int32_t kc_kafka_murmur2(const void *key, size_t len)
{
    const unsigned char *d = key;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const unsigned char *p = d + i * 4;
        uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                     ((uint32_t)p[3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = d + (len & ~(size_t)3);
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        __attribute__((fallthrough));
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        __attribute__((fallthrough));
    case 1:
        h ^= tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t kc_kafka_partition_for(const void *key, size_t len, int32_t partitions)
{
    return (int32_t)(((uint32_t)kc_kafka_murmur2(key, len) & 0x7fffffffu) % (uint32_t)partitions);
}
