/* topics.c - `kchatctl topics`: make the cluster's topics match kafka/topics.json.
 *
 * Missing topics are created; a topic with fewer partitions than the spec gets more (Kafka
 * cannot take partitions away, so more than the spec is an error); a topic whose
 * configuration differs from the spec gets exactly the spec's configuration (AlterConfigs
 * replaces the whole set, which is what a declarative spec means). Running it twice changes
 * nothing the second time.
 *
 * --replication-factor and --min-insync-replicas, when not 0, stand for every topic's
 * replication_factor and min.insync.replicas: the one spec serves one broker (1 and 1, as
 * written) and a cluster of three (3 and 2, what the local stack passes with three nodes).
 */
#include "ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define SPEC_MAX_BYTES (1 << 20)
#define ADMIN_TIMEOUT_MS 30000

typedef struct {
    const char *name;
    int partitions;
    int rf;
    const cJSON *config;
} topic_spec_t;

static int read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = kc_xmalloc(max + 1);
    size_t n = fread(buf, 1, max + 1, f);
    int err = ferror(f);
    if (fclose(f) != 0 || err) {
        free(buf);
        return -EIO;
    }
    if (n > max) {
        free(buf);
        return -EFBIG;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int ctl_read_file(const char *path, size_t max, char **out, size_t *len)
{
    return read_file(path, max, out, len);
}

static int parse_spec(const cJSON *t, topic_spec_t *s)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(t, "replication_factor");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(t, "config");
    if (!cJSON_IsString(name) || !cJSON_IsNumber(parts) || parts->valueint < 1 ||
        parts->valueint > 10000 || !cJSON_IsNumber(rf) || rf->valueint < 1 || rf->valueint > 16 ||
        (cfg && !cJSON_IsObject(cfg)))
        return -EINVAL;
    const cJSON *c;
    cJSON_ArrayForEach(c, cfg)
    {
        if (!cJSON_IsString(c))
            return -EINVAL;
    }
    s->name = name->valuestring;
    s->partitions = parts->valueint;
    s->rf = rf->valueint;
    s->config = cfg;
    return 0;
}

/* Applies the command line's replication factor and min.insync.replicas to s. A changed
 * configuration is a copy, returned in *owned for the caller to free (NULL when none). */
static int apply_overrides(const ctl_cfg_t *cfg, topic_spec_t *s, cJSON **owned)
{
    *owned = NULL;
    if (cfg->replication_factor > 0)
        s->rf = (int)cfg->replication_factor;
    long long min_isr = 0;
    if (cfg->min_insync_replicas > 0) {
        cJSON *copy = s->config ? cJSON_Duplicate(s->config, 1) : cJSON_CreateObject();
        char value[24];
        if (!copy)
            return -ENOMEM;
        snprintf(value, sizeof(value), "%lld", cfg->min_insync_replicas);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "min.insync.replicas");
        if (!cJSON_AddStringToObject(copy, "min.insync.replicas", value)) {
            cJSON_Delete(copy);
            return -ENOMEM;
        }
        s->config = copy;
        *owned = copy;
        min_isr = cfg->min_insync_replicas;
    } else if (cfg->replication_factor > 0) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->config, "min.insync.replicas");
        if (cJSON_IsString(v))
            min_isr = strtoll(v->valuestring, NULL, 10);
    }
    if (min_isr > s->rf) {
        fprintf(stderr, "topic %s: min.insync.replicas %lld exceeds its replication factor %d "
                        "(no write with acks=all could succeed)\n",
                s->name, min_isr, s->rf);
        cJSON_Delete(*owned);
        *owned = NULL;
        return -EINVAL;
    }
    return 0;
}

/* Waits for the admin result event of the given type on q. */
static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q, rd_kafka_event_type_t type)
{
    for (;;) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS);
        if (!ev)
            return NULL;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
}

static int create_topic(rd_kafka_t *rk, rd_kafka_queue_t *q, const topic_spec_t *s)
{
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(s->name, s->partitions, s->rf, err, sizeof(err));
    if (!nt) {
        fprintf(stderr, "topic %s: %s\n", s->name, err);
        return -EINVAL;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, s->config)
    {
        if (rd_kafka_NewTopic_set_config(nt, c->string, c->valuestring)) {
            rd_kafka_NewTopic_destroy(nt);
            return -EINVAL;
        }
    }
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    if (!ev) {
        fprintf(stderr, "topic %s: no answer from the cluster\n", s->name);
        return -ETIMEDOUT;
    }
    int rc = 0;
    size_t n;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "topic %s: %s\n", s->name, rd_kafka_event_error_string(ev));
        rc = -EIO;
    } else if (n == 1 && rd_kafka_topic_result_error(res[0]) &&
               rd_kafka_topic_result_error(res[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "topic %s: %s\n", s->name, rd_kafka_topic_result_error_string(res[0]));
        rc = -EIO;
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

static int add_partitions(rd_kafka_t *rk, rd_kafka_queue_t *q, const topic_spec_t *s)
{
    char err[256];
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(s->name, (size_t)s->partitions, err,
                                                              sizeof(err));
    if (!np)
        return -EINVAL;
    rd_kafka_CreatePartitions(rk, &np, 1, NULL, q);
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT);
    if (!ev)
        return -ETIMEDOUT;
    int rc = 0;
    size_t n;
    const rd_kafka_topic_result_t **res = rd_kafka_CreatePartitions_result_topics(
        rd_kafka_event_CreatePartitions_result(ev), &n);
    if (rd_kafka_event_error(ev) || (n == 1 && rd_kafka_topic_result_error(res[0]))) {
        fprintf(stderr, "topic %s: cannot add partitions: %s\n", s->name,
                rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                                         : rd_kafka_topic_result_error_string(res[0]));
        rc = -EIO;
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

/* Returns 1 when the topic's configuration differs from the spec, 0 when equal. */
static int config_differs(rd_kafka_t *rk, rd_kafka_queue_t *q, const topic_spec_t *s)
{
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, s->name);
    rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (!ev)
        return -ETIMEDOUT;
    int rc = 0;
    size_t nres;
    const rd_kafka_ConfigResource_t **res = rd_kafka_DescribeConfigs_result_resources(
        rd_kafka_event_DescribeConfigs_result(ev), &nres);
    if (rd_kafka_event_error(ev) || nres != 1 || rd_kafka_ConfigResource_error(res[0])) {
        fprintf(stderr, "topic %s: cannot describe its configuration\n", s->name);
        rc = -EIO;
        goto out;
    }
    size_t ncfg;
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res[0], &ncfg);
    const cJSON *c;
    cJSON_ArrayForEach(c, s->config)
    {
        const char *cur = NULL;
        for (size_t i = 0; i < ncfg; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), c->string) == 0)
                cur = rd_kafka_ConfigEntry_value(entries[i]);
        if (!cur || strcmp(cur, c->valuestring) != 0)
            rc = 1;
    }
    /* A dynamic setting that the spec does not list also counts as drift. */
    for (size_t i = 0; i < ncfg; i++)
        if (rd_kafka_ConfigEntry_source(entries[i]) == RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG &&
            !cJSON_GetObjectItemCaseSensitive(s->config, rd_kafka_ConfigEntry_name(entries[i])))
            rc = 1;
out:
    rd_kafka_event_destroy(ev);
    return rc;
}

static int alter_config(rd_kafka_t *rk, rd_kafka_queue_t *q, const topic_spec_t *s)
{
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, s->name);
    const cJSON *c;
    cJSON_ArrayForEach(c, s->config)
    {
        if (rd_kafka_ConfigResource_set_config(cr, c->string, c->valuestring)) {
            rd_kafka_ConfigResource_destroy(cr);
            return -EINVAL;
        }
    }
    rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_ALTERCONFIGS_RESULT);
    if (!ev)
        return -ETIMEDOUT;
    size_t n;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
    int rc = 0;
    if (rd_kafka_event_error(ev) || n != 1 || rd_kafka_ConfigResource_error(res[0])) {
        fprintf(stderr, "topic %s: cannot set its configuration: %s\n", s->name,
                rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                : n == 1                 ? rd_kafka_ConfigResource_error_string(res[0])
                                         : "no result");
        rc = -EIO;
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

/* Waits until every topic of the spec has a leader for each partition, so that daemons
 * started next find them ready. */
static int wait_for_leaders(rd_kafka_t *rk, const cJSON *topics)
{
    for (int attempt = 0; attempt < 300; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return -EIO;
        int ready = 1;
        const cJSON *t;
        cJSON_ArrayForEach(t, topics)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
            int found = 0;
            for (int i = 0; i < md->topic_cnt; i++) {
                const struct rd_kafka_metadata_topic *mt = &md->topics[i];
                if (!cJSON_IsString(name) || strcmp(mt->topic, name->valuestring) != 0)
                    continue;
                found = !mt->err;
                for (int p = 0; p < mt->partition_cnt; p++)
                    found = found && mt->partitions[p].leader >= 0;
            }
            ready = ready && found;
        }
        rd_kafka_metadata_destroy(md);
        if (ready)
            return 0;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "topics have no leaders after 30 s\n");
    return -ETIMEDOUT;
}

/* Makes one topic match its spec: creates it, adds partitions, repairs its configuration.
 * Prints one line about it; returns 0, or non-zero when something failed. */
static int apply_topic(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct rd_kafka_metadata *md,
                       const topic_spec_t *s)
{
    const struct rd_kafka_metadata_topic *mt = NULL;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, s->name) == 0 &&
            md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            mt = &md->topics[i];
    int rc;
    if (!mt) {
        rc = create_topic(rk, q, s);
        printf("%-24s %s\n", s->name, rc ? "FAILED to create" : "created");
        return rc;
    }
    const char *what = "unchanged";
    if (mt->partition_cnt > s->partitions) {
        fprintf(stderr, "topic %s has %d partitions, the spec %d: Kafka cannot remove "
                        "partitions\n",
                s->name, mt->partition_cnt, s->partitions);
        return -EINVAL;
    }
    if (mt->partition_cnt < s->partitions) {
        if ((rc = add_partitions(rk, q, s)) != 0)
            return rc;
        what = "partitions added";
    }
    if (mt->partition_cnt > 0 && mt->partitions[0].replica_cnt != s->rf)
        fprintf(stderr, "topic %s: replication factor is %d, the spec %d (not changed here: "
                        "reassign partitions to change it)\n",
                s->name, mt->partitions[0].replica_cnt, s->rf);
    rc = config_differs(rk, q, s);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if ((rc = alter_config(rk, q, s)) != 0)
            return rc;
        what = "configuration updated";
    }
    printf("%-24s %s\n", s->name, what);
    return 0;
}

int ctl_topics(const ctl_cfg_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(cfg->topics_file, SPEC_MAX_BYTES, &text, &len);
    if (rc) {
        fprintf(stderr, "cannot read %s: %s\n", cfg->topics_file, strerror(-rc));
        return 1;
    }
    cJSON *spec = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *topics = spec ? cJSON_GetObjectItemCaseSensitive(spec, "topics") : NULL;
    if (!cJSON_IsArray(topics)) {
        fprintf(stderr, "%s: expected an object with a \"topics\" array\n", cfg->topics_file);
        cJSON_Delete(spec);
        return 1;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    int failed = 0;
    if (kc_kafka_conf_connect(conf, &cfg->kafka, err, sizeof(err)) != 0 ||
        rd_kafka_conf_set(conf, "client.id", "kchatctl", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s\n", err);
        rd_kafka_conf_destroy(conf);
        failed = 1;
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "%s\n", err);
        rd_kafka_conf_destroy(conf);
        failed = 1;
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t merr = rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_TIMEOUT_MS);
    if (merr) {
        fprintf(stderr, "cannot reach Kafka at %s: %s\n", cfg->kafka.brokers, rd_kafka_err2str(merr));
        failed = 1;
        goto out;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, topics)
    {
        topic_spec_t s;
        if (parse_spec(t, &s) != 0) {
            fprintf(stderr, "%s: a topic entry needs name, partitions (1..10000), "
                            "replication_factor (1..16) and string config values\n",
                    cfg->topics_file);
            failed = 1;
            continue;
        }
        cJSON *owned = NULL;
        if (apply_overrides(cfg, &s, &owned) != 0) {
            failed = 1;
            continue;
        }
        rc = apply_topic(rk, q, md, &s);
        cJSON_Delete(owned);
        failed |= rc != 0;
    }
    rd_kafka_metadata_destroy(md);
    md = NULL;
    if (!failed && wait_for_leaders(rk, topics) != 0)
        failed = 1;
out:
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    cJSON_Delete(spec);
    return failed ? 1 : 0;
}
