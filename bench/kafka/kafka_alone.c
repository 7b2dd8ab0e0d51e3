/* kchat-kafka-alone - what the broker does without kchat, for the ratio kchat / Kafka: a
 * fresh topic, N records of S bytes produced with acks=all and idempotence (kchat's producer
 * settings), then all of them consumed back with read_committed through librdkafka.
 *
 *   kchat-kafka-alone --brokers H:P [--records N] [--size S] [--partitions P] [--linger-ms L]
 *
 * Produce rate: first produce call to the last delivery report. Consume rate: subscribe to
 * the last record read. Prints one JSON object. Exit 0, or 1 when a record failed or was not
 * read back, 2 on a setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC_MAX 128

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    long delivered, failed;
    double last_dr;
} dr_state_t;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    dr_state_t *st = opaque;
    if (m->err)
        st->failed++;
    else
        st->delivered++;
    st->last_dr = now_s();
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kchat-kafka-alone: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

static long num(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "kchat-kafka-alone: %s must be in %ld..%ld\n", what, lo, hi);
        exit(2);
    }
    return v;
}

static int create_topic(rd_kafka_t *rk, const char *topic, int partitions)
{
    char err[256];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    if (!nt || !q) {
        fprintf(stderr, "kchat-kafka-alone: new topic: %s\n", err);
        goto out;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, "kchat-kafka-alone: CreateTopics: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out");
    } else {
        size_t n;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        if (n == 1 && rd_kafka_topic_result_error(tr[0]) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rc = 0;
        else
            fprintf(stderr, "kchat-kafka-alone: CreateTopics: %s\n",
                    n ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
out:
    if (q)
        rd_kafka_queue_destroy(q);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"brokers", 1, 0, 'b'},
                                       {"records", 1, 0, 'n'},
                                       {"size", 1, 0, 's'},
                                       {"partitions", 1, 0, 'p'},
                                       {"linger-ms", 1, 0, 'l'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *brokers = NULL;
    long records = 100000, size = 200, partitions = 12, linger = 5;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'b': brokers = optarg; break;
        case 'n': records = num(optarg, 1, 100000000, "--records"); break;
        case 's': size = num(optarg, 1, 1000000, "--size"); break;
        case 'p': partitions = num(optarg, 1, 1000, "--partitions"); break;
        case 'l': linger = num(optarg, 0, 10000, "--linger-ms"); break;
        case 'h':
            puts("usage: kchat-kafka-alone --brokers H:P [--records N] [--size S] "
                 "[--partitions P] [--linger-ms L]");
            return 0;
        default: return 2;
        }
    }
    if (!brokers || optind < argc) {
        fprintf(stderr, "kchat-kafka-alone: --brokers is required (see --help)\n");
        return 2;
    }
    char topic[TOPIC_MAX], err[512], lingerv[32];
    (void)snprintf(topic, sizeof(topic), "bench.kafka-alone.%ld.%d", (long)time(NULL),
                   (int)(now_s() * 1000) % 100000);
    (void)snprintf(lingerv, sizeof(lingerv), "%ld", linger);

    dr_state_t st = {0};
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (conf_set(pc, "bootstrap.servers", brokers) || conf_set(pc, "acks", "all") ||
        conf_set(pc, "enable.idempotence", "true") || conf_set(pc, "linger.ms", lingerv) ||
        conf_set(pc, "partitioner", "murmur2_random") ||
        conf_set(pc, "socket.nagle.disable", "true")) {
        rd_kafka_conf_destroy(pc);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, on_dr);
    rd_kafka_conf_set_opaque(pc, &st);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!p) {
        rd_kafka_conf_destroy(pc);
        fprintf(stderr, "kchat-kafka-alone: producer: %s\n", err);
        return 2;
    }
    if (create_topic(p, topic, (int)partitions) != 0) {
        rd_kafka_destroy(p);
        return 2;
    }
    char *val = malloc((size_t)size);
    if (!val) {
        rd_kafka_destroy(p);
        return 2;
    }
    memset(val, 'v', (size_t)size);
    int exit_code = 0;
    double t0 = 0;
    /* warm-up: one record, so metadata and the producer id are in place before timing */
    char key[32];
    if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("w", 1),
                          RD_KAFKA_V_VALUE(val, (size_t)size), RD_KAFKA_V_END) ||
        rd_kafka_flush(p, 30000)) {
        fprintf(stderr, "kchat-kafka-alone: warm-up record not acknowledged\n");
        exit_code = 2;
        goto done_p;
    }
    st.delivered = 0;
    t0 = now_s();
    for (long i = 0; i < records; i++) {
        int kl = snprintf(key, sizeof(key), "c_%ld", i % 10000);
        for (;;) {
            rd_kafka_resp_err_t e =
                rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)kl),
                                  RD_KAFKA_V_VALUE(val, (size_t)size),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 10);
                continue;
            }
            if (e) {
                fprintf(stderr, "kchat-kafka-alone: produce: %s\n", rd_kafka_err2str(e));
                exit_code = 1;
                goto done_p;
            }
            break;
        }
        rd_kafka_poll(p, 0);
    }
    if (rd_kafka_flush(p, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kchat-kafka-alone: records not acknowledged in 120 s\n");
        exit_code = 1;
    }
done_p:;
    double produce_s = st.last_dr - t0;
    rd_kafka_destroy(p);
    free(val);
    if (exit_code)
        return exit_code;

    /* consume everything back, from the start */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    char group[TOPIC_MAX + 8];
    (void)snprintf(group, sizeof(group), "g.%s", topic);
    if (conf_set(cc, "bootstrap.servers", brokers) || conf_set(cc, "group.id", group) ||
        conf_set(cc, "isolation.level", "read_committed") ||
        conf_set(cc, "enable.auto.commit", "false") ||
        conf_set(cc, "auto.offset.reset", "earliest")) {
        rd_kafka_conf_destroy(cc);
        return 2;
    }
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!c) {
        rd_kafka_conf_destroy(cc);
        fprintf(stderr, "kchat-kafka-alone: consumer: %s\n", err);
        return 2;
    }
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(tl, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    long got = 0, want = records + 1; /* the warm-up record too */
    double c0 = now_s(), clast = c0;
    if (rd_kafka_assign(c, tl) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kchat-kafka-alone: assign failed\n");
        exit_code = 2;
    }
    double deadline = c0 + 120;
    while (!exit_code && got < want && now_s() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            clast = now_s();
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tl);
    if (rd_kafka_consumer_close(c) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "kchat-kafka-alone: consumer close failed\n");
    rd_kafka_destroy(c);
    if (!exit_code && got < want) {
        fprintf(stderr, "kchat-kafka-alone: read %ld of %ld records back\n", got, want);
        exit_code = 1;
    }
    double consume_s = clast - c0;
    printf("{\"tool\":\"kchat-kafka-alone\",\"topic\":\"%s\",\"records\":%ld,\"size\":%ld,"
           "\"partitions\":%ld,\"linger_ms\":%ld,\"delivered\":%ld,\"failed\":%ld,"
           "\"produce_seconds\":%.3f,\"produce_per_s\":%.0f,\"consumed\":%ld,"
           "\"consume_seconds\":%.3f,\"consume_per_s\":%.0f}\n",
           topic, records, size, partitions, linger, st.delivered, st.failed, produce_s,
           produce_s > 0 ? (double)st.delivered / produce_s : 0, got, consume_s,
           consume_s > 0 ? (double)got / consume_s : 0);
    return exit_code ? exit_code : (st.failed ? 1 : 0);
}
