/* test_kafka_mock.c - kchat's Kafka client defaults, the libuv loop adapter (producing and
 * consuming through librdkafka's in-process mock cluster) and Java-compatible murmur2. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "kchat/health.h"
#include "kchat/kafka.h"
#include "kchat/log.h"

#define TOPIC "kchat.test.events"
#define PARTITIONS 6
#define NMSG 200
#define SAFETY_MS 30000

static const char *const mock3[] = {"test.mock.num.brokers", "3", NULL};

/* Reads a property back from a live client's configuration. */
static void expect_conf(rd_kafka_t *rk, const char *key, const char *want, const char *alt)
{
    char val[256];
    size_t sz = sizeof(val);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), key, val, &sz) != RD_KAFKA_CONF_OK)
        fail_msg("cannot read %s", key);
    if (strcmp(val, want) != 0 && !(alt && strcmp(val, alt) == 0))
        fail_msg("%s is '%s', expected '%s'", key, val, want);
}

static int setup(void **state)
{
    (void)state;
    kc_log_init("test_kafka_mock", KC_LOG_WARN);
    return 0;
}

/* ---- configuration ---- */

static void test_producer_defaults(void **state)
{
    (void)state;
    char err[512];
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}, .client_id = "unit-producer"};
    rd_kafka_t *rk = kc_kafka_producer_new(&o, mock3, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    assert_int_equal(rd_kafka_type(rk), RD_KAFKA_PRODUCER);
    expect_conf(rk, "enable.idempotence", "true", NULL);
    expect_conf(rk, "acks", "all", "-1");
    expect_conf(rk, "partitioner", "murmur2_random", NULL);
    expect_conf(rk, "socket.nagle.disable", "true", NULL);
    expect_conf(rk, "client.id", "unit-producer", NULL);
    kc_kafka_destroy(rk);
    kc_kafka_destroy(NULL);
}

static void test_consumer_defaults(void **state)
{
    (void)state;
    char err[512];
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}, .client_id = "unit-consumer"};
    rd_kafka_t *rk = kc_kafka_consumer_new(&o, "unit-group", mock3, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_consumer_new: %s", err);
    assert_int_equal(rd_kafka_type(rk), RD_KAFKA_CONSUMER);
    expect_conf(rk, "isolation.level", "read_committed", NULL);
    expect_conf(rk, "enable.auto.commit", "false", NULL);
    expect_conf(rk, "enable.auto.offset.store", "false", NULL);
    expect_conf(rk, "group.id", "unit-group", NULL);
    kc_kafka_destroy(rk);
}

static void test_overrides_apply_after_defaults(void **state)
{
    (void)state;
    char err[512];
    const char *ov[] = {"test.mock.num.brokers", "1",     "linger.ms", "7",
                        "socket.nagle.disable",  "false", NULL};
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}};
    rd_kafka_t *rk = kc_kafka_producer_new(&o, ov, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    expect_conf(rk, "linger.ms", "7", NULL);
    expect_conf(rk, "socket.nagle.disable", "false", NULL);
    expect_conf(rk, "client.id", "kchat", NULL); /* the default client id */
    kc_kafka_destroy(rk);
}

static void test_bad_override_fails_with_errstr(void **state)
{
    (void)state;
    char err[512] = "";
    const char *ov[] = {"no.such.setting", "1", NULL};
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}};
    assert_null(kc_kafka_producer_new(&o, ov, err, sizeof(err)));
    assert_non_null(strstr(err, "no.such.setting"));
    err[0] = '\0';
    assert_null(kc_kafka_consumer_new(&o, "g", ov, err, sizeof(err)));
    assert_non_null(strstr(err, "no.such.setting"));
}

/* The security options: what each sets, what contradicts, and no password in a message. */
static int conf_connect(kc_kafka_cfg_t c, char *err, size_t errlen, rd_kafka_conf_t **out)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = kc_kafka_conf_connect(conf, &c, err, errlen);
    if (out && rc == 0)
        *out = conf;
    else
        rd_kafka_conf_destroy(conf);
    return rc;
}

static void expect_get(rd_kafka_conf_t *conf, const char *key, const char *want)
{
    char val[256];
    size_t sz = sizeof(val);
    if (rd_kafka_conf_get(conf, key, val, &sz) != RD_KAFKA_CONF_OK)
        fail_msg("cannot read %s", key);
    if (strcmp(val, want) != 0)
        fail_msg("%s is '%s', expected '%s'", key, val, want);
}

static void test_security_options(void **state)
{
    (void)state;
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    char b[] = "127.0.0.1:1", p[] = "sasl_ssl", m[] = "PLAIN", u[] = "kchat", pw[] = "s3cret-pw",
         ca[] = "/etc/ssl/certs/ca-certificates.crt";
    assert_int_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .security_protocol = p,
                                                   .sasl_mechanism = m, .sasl_username = u,
                                                   .sasl_password = pw, .ssl_ca_location = ca},
                                  err, sizeof(err), &conf),
                     0);
    expect_get(conf, "security.protocol", "sasl_ssl");
    expect_get(conf, "sasl.mechanisms", "PLAIN");
    expect_get(conf, "sasl.username", "kchat");
    expect_get(conf, "ssl.ca.location", ca);
    rd_kafka_conf_destroy(conf);
    conf = NULL;
    /* Plaintext by default, SCRAM-SHA-512 as the default mechanism of a sasl_* protocol. */
    assert_int_equal(conf_connect((kc_kafka_cfg_t){.brokers = b}, err, sizeof(err), &conf), 0);
    expect_get(conf, "security.protocol", "plaintext");
    rd_kafka_conf_destroy(conf);
    conf = NULL;
    assert_int_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .security_protocol = p,
                                                   .sasl_username = u, .sasl_password = pw},
                                  err, sizeof(err), &conf),
                     0);
    expect_get(conf, "sasl.mechanisms", "SCRAM-SHA-512");
    rd_kafka_conf_destroy(conf);
    /* Contradictions, each named. */
    assert_int_not_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .sasl_username = u}, err,
                                      sizeof(err), NULL),
                         0);
    assert_non_null(strstr(err, "need kafka-security-protocol"));
    assert_int_not_equal(
        conf_connect((kc_kafka_cfg_t){.brokers = b, .security_protocol = p}, err, sizeof(err),
                     NULL),
        0);
    assert_non_null(strstr(err, "needs kafka-sasl-username"));
    char cert[] = "/tmp/c.pem", gss[] = "GSSAPI", bogus[] = "carrier_pigeon";
    assert_int_not_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .ssl_certificate_location =
                                                                          cert},
                                      err, sizeof(err), NULL),
                         0);
    assert_non_null(strstr(err, "go together"));
    assert_int_not_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .security_protocol = p,
                                                       .sasl_mechanism = gss, .sasl_username = u,
                                                       .sasl_password = pw},
                                      err, sizeof(err), NULL),
                         0);
    assert_non_null(strstr(err, "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"));
    assert_null(strstr(err, pw));
    assert_int_not_equal(conf_connect((kc_kafka_cfg_t){.brokers = b, .security_protocol = bogus},
                                      err, sizeof(err), NULL),
                         0);
    assert_non_null(strstr(err, "security.protocol"));
}

static void test_health_check_registered(void **state)
{
    (void)state;
    char err[512];
    kc_health_t *h = kc_health_new(NULL);
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}, .health = h, .check_name = "kafka_unit"};
    rd_kafka_t *rk = kc_kafka_producer_new(&o, mock3, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    kc_buf_t b = {0};
    kc_health_render(h, &b);
    assert_non_null(strstr(b.data, "\"kafka_unit\":{"));
    kc_buf_free(&b);
    kc_kafka_destroy(rk);
    kc_health_destroy(h);
}

/* ---- loop adapter ---- */

typedef struct {
    char key[32];
    size_t keylen;
    int reports;
    rd_kafka_resp_err_t err;
    int32_t partition;
} rec_t;

typedef struct {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    uv_timer_t safety;
    int timed_out;
    int delivered;
    int ready_calls;
    void *dr_opaque_seen;
    rec_t recs[NMSG];
    /* consumer side */
    int consumed;
    int consumed_ok;
    int consume_errors;
} prod_t;

static int serve_ready(void *arg)
{
    prod_t *p = arg;
    p->ready_calls++;
    return kc_kafka_serve(p->rk, 100);
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    prod_t *p = opaque;
    p->dr_opaque_seen = opaque;
    rec_t *r = m->_private;
    r->reports++;
    r->err = m->err;
    r->partition = m->partition;
    if (++p->delivered == NMSG)
        uv_stop(p->loop);
}

static void on_safety(uv_timer_t *t)
{
    prod_t *p = t->data;
    p->timed_out = 1;
    uv_stop(p->loop);
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

/* Consumer side: drains the consumer queue on each wake, checking each record against
 * what was produced. */
typedef struct {
    prod_t *p;
    rd_kafka_t *rk;
} cons_t;

static int consume_ready(void *arg)
{
    cons_t *c = arg;
    prod_t *p = c->p;
    for (int i = 0; i < 100; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m)
            return 0;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                p->consume_errors++;
        } else {
            p->consumed++;
            int idx = -1;
            char key[32];
            size_t kl = m->key_len < sizeof(key) - 1 ? m->key_len : sizeof(key) - 1;
            if (m->key)
                memcpy(key, m->key, kl);
            else
                kl = 0;
            key[kl] = '\0';
            if (sscanf(key, "convo-%d", &idx) == 1 && idx >= 0 && idx < NMSG &&
                strcmp(p->recs[idx].key, key) == 0 && m->partition == p->recs[idx].partition &&
                m->len == kl && memcmp(m->payload, key, kl) == 0)
                p->consumed_ok++;
        }
        rd_kafka_message_destroy(m);
        if (p->consumed == NMSG) {
            uv_stop(p->loop);
            return 0;
        }
    }
    return 1;
}

static void test_loop_adapter_produce_and_consume(void **state)
{
    (void)state;
    char err[512];
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    prod_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->loop = &loop;

    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"},
                         .client_id = "unit-loop-producer",
                         .dr_msg_cb = on_dr,
                         .opaque = p};
    rd_kafka_t *rk = kc_kafka_producer_new(&o, mock3, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    assert_ptr_equal(kc_kafka_user_opaque(rk), p);
    p->rk = rk;
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, TOPIC, PARTITIONS, 3),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    char *bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(mc));
    assert_non_null(bootstraps);

    kc_kafka_bound_t prod = {0};
    if (kc_kafka_bind(&prod, &loop, rk, serve_ready, p, err, sizeof(err)) != 0)
        fail_msg("kc_kafka_bind: %s", err);

    assert_int_equal(uv_timer_init(&loop, &p->safety), 0);
    p->safety.data = p;
    assert_int_equal(uv_timer_start(&p->safety, on_safety, SAFETY_MS, 0), 0);

    for (int i = 0; i < NMSG; i++) {
        rec_t *r = &p->recs[i];
        r->keylen = (size_t)snprintf(r->key, sizeof(r->key), "convo-%d", i);
        r->partition = -1;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_KEY(r->key, r->keylen),
            RD_KAFKA_V_VALUE(r->key, r->keylen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(p->timed_out);
    assert_int_equal(p->delivered, NMSG);
    assert_ptr_equal(p->dr_opaque_seen, p);
    assert_true(p->ready_calls > 0);
    int per_partition[PARTITIONS] = {0};
    for (int i = 0; i < NMSG; i++) {
        const rec_t *r = &p->recs[i];
        assert_int_equal(r->reports, 1);
        if (r->err)
            fail_msg("message %d: %s", i, rd_kafka_err2str(r->err));
        assert_int_equal(r->partition, kc_kafka_partition_for(r->key, r->keylen, PARTITIONS));
        per_partition[r->partition]++;
    }
    for (int i = 0; i < PARTITIONS; i++)
        assert_true(per_partition[i] > 0); /* 200 keys spread over all six */

    /* Read them back through a consumer bound to the same loop (assigned, no group join). */
    kc_kafka_opts_t co = {.conn = &(kc_kafka_cfg_t){.brokers = bootstraps}, .client_id = "unit-loop-consumer"};
    rd_kafka_t *crk = kc_kafka_consumer_new(&co, "unit-loop-group", NULL, err, sizeof(err));
    if (!crk)
        fail_msg("kc_kafka_consumer_new: %s", err);
    cons_t cons = {.p = p, .rk = crk};
    kc_kafka_bound_t consb = {0};
    if (kc_kafka_bind(&consb, &loop, crk, consume_ready, &cons, err, sizeof(err)) != 0)
        fail_msg("kc_kafka_bind (consumer): %s", err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int i = 0; i < PARTITIONS; i++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(crk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);

    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(p->timed_out);
    assert_int_equal(p->consumed, NMSG);
    assert_int_equal(p->consumed_ok, NMSG);
    assert_int_equal(p->consume_errors, 0);

    /* Tear down: unbind, destroy the clients, close the remaining handles, close the loop. */
    assert_int_equal(rd_kafka_assign(crk, NULL), RD_KAFKA_RESP_ERR_NO_ERROR);
    kc_kafka_unbind(&consb);
    assert_null(consb.w);
    assert_int_equal(rd_kafka_consumer_close(crk), RD_KAFKA_RESP_ERR_NO_ERROR);
    kc_kafka_bound_destroy(&consb);
    assert_null(consb.rk);
    kc_kafka_bound_destroy(&prod);
    assert_null(prod.rk);
    assert_null(prod.q);
    assert_int_equal(uv_timer_stop(&p->safety), 0);
    uv_close((uv_handle_t *)&p->safety, on_closed_noop);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(bootstraps);
    free(p);
}

/* A watch closed right after it is made frees itself once the loop closes its handles. */
static int never_ready(void *arg)
{
    (void)arg;
    return 0;
}

static void test_watch_close_frees(void **state)
{
    (void)state;
    char err[512];
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}};
    rd_kafka_t *rk = kc_kafka_producer_new(&o, mock3, err, sizeof(err));
    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);
    kc_kafka_watch_t *w = kc_kafka_watch_new(&loop, q, never_ready, NULL, err, sizeof(err));
    if (!w)
        fail_msg("kc_kafka_watch_new: %s", err);
    kc_kafka_watch_close(w);
    kc_kafka_watch_close(NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    rd_kafka_queue_destroy(q);
    kc_kafka_destroy(rk);
}

/* ---- murmur2 ---- */

/* Test vectors computed with Apache Kafka 4.4.0's own implementation,
 * org.apache.kafka.common.utils.Utils.murmur2(byte[]) from kafka-clients-4.4.0.jar, and
 * the default partitioner's Utils.toPositive(murmur2(key)) % 12. */
static const struct {
    const char *key;
    size_t len;
    int32_t murmur2;
    int32_t p12;
} java_vectors[] = {
    {"", 0, 275646681, 9},
    {"21", 2, -973932308, 0},
    {"foobar", 6, -790332482, 6},
    {"abc", 3, 479470107, 3},
    {"\xff", 1, -311467685, 3},
    {"\x00\x80", 2, 327244933, 1},
    {"\xfe\x7f\x01", 3, 534865868, 8},
    {"The quick brown fox jumps over the lazy dog, twice", 50, -447713551, 1},
    {"conversation-\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 22, -1157764328, 0},
};

static void test_murmur2_matches_java(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(java_vectors) / sizeof(java_vectors[0]); i++) {
        int32_t h = kc_kafka_murmur2(java_vectors[i].key, java_vectors[i].len);
        if (h != java_vectors[i].murmur2)
            fail_msg("vector %zu: murmur2 %d, Java says %d", i, h, java_vectors[i].murmur2);
        assert_int_equal(kc_kafka_partition_for(java_vectors[i].key, java_vectors[i].len, 12),
                         java_vectors[i].p12);
    }
}

static void test_partition_for_range(void **state)
{
    (void)state;
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        int32_t p = kc_kafka_partition_for(key, (size_t)n, 7);
        assert_true(p >= 0 && p < 7);
        assert_int_equal(kc_kafka_partition_for(key, (size_t)n, 1), 0);
    }
}

/* The lag from librdkafka's statistics, as a consumer would emit them. */
static void test_lag_from_statistics(void **state)
{
    (void)state;
    const char *json =
        "{\"topics\":{\"chat.events\":{\"partitions\":{"
        /* read_committed: up to the last stable offset, from the position handed out */
        "\"0\":{\"partition\":0,\"desired\":true,\"hi_offset\":120,\"ls_offset\":100,"
        "\"app_offset\":90,\"next_offset\":110,\"committed_offset\":-1001,"
        "\"consumer_lag\":-1},"
        /* committed far behind (a transaction's offsets): does not count */
        "\"1\":{\"partition\":1,\"desired\":true,\"hi_offset\":5000,\"ls_offset\":5000,"
        "\"app_offset\":5000,\"next_offset\":5000,\"committed_offset\":3449,"
        "\"consumer_lag\":1551},"
        /* nothing handed out yet: from the next offset to fetch */
        "\"2\":{\"partition\":2,\"desired\":true,\"hi_offset\":30,\"ls_offset\":-1,"
        "\"app_offset\":-1001,\"next_offset\":25},"
        /* not fetched by this consumer, and the internal unassigned partition */
        "\"3\":{\"partition\":3,\"desired\":false,\"hi_offset\":99,\"ls_offset\":99,"
        "\"app_offset\":0},"
        "\"-1\":{\"partition\":-1,\"desired\":false,\"hi_offset\":-1001}"
        "}}}}";
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_int_equal(kc_kafka_stats_lag(root), 10 + 0 + 5);
    cJSON_Delete(root);
    cJSON *empty = cJSON_Parse("{}");
    assert_int_equal(kc_kafka_stats_lag(empty), 0);
    cJSON_Delete(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producer_defaults),
        cmocka_unit_test(test_consumer_defaults),
        cmocka_unit_test(test_overrides_apply_after_defaults),
        cmocka_unit_test(test_bad_override_fails_with_errstr),
        cmocka_unit_test(test_security_options),
        cmocka_unit_test(test_health_check_registered),
        cmocka_unit_test(test_loop_adapter_produce_and_consume),
        cmocka_unit_test(test_watch_close_frees),
        cmocka_unit_test(test_murmur2_matches_java),
        cmocka_unit_test(test_partition_for_range),
        cmocka_unit_test(test_lag_from_statistics),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
