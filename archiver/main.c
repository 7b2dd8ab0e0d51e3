/* kchat-archiver - kchat's topics (chat.events, chat.accounts, chat.audit) into the object
 * store as Avro object container files, one object per partition and offset range
 * (kchat/archive.h), for disaster recovery (`kchatctl restore`) and for analytics.
 *
 * It reads the topics read_committed in a consumer group, so several archivers share the
 * partitions. Each partition's records go into a spool file; the file is rolled when it
 * reaches --roll-bytes or its first record is --roll-age-s old, then uploaded under the name
 * of its first and last offset, and only then is the offset after it committed. Where a
 * partition resumes is decided when it is assigned, by the archive itself: the highest last
 * offset among the objects at or after the committed offset (a crash between an upload and
 * its commit leaves an object the commit does not know of). So a restart rewrites no object
 * and skips no record. One upload per partition is in flight at a time; while it is, the next
 * file keeps growing, and the partition is paused at twice --roll-bytes. A failed upload is
 * tried again, with a growing wait, and the object store's health check is down meanwhile.
 *
 * On SIGTERM the open files are rolled and uploaded, their offsets committed, and the consumer
 * closed; what does not finish within the shutdown timeout is read again by the next owner.
 * A revoked partition's file is dropped (never uploaded, so never committed): its next owner
 * reads those records again.
 */
#include <avro.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kchat/app.h"
#include "kchat/archive.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/s3.h"
#include "kchat/s3_sync.h"
#include "kchat/util.h"

#define AR_MAX_TOPICS 16
#define AR_MAX_RETRY_MS 60000
#define AR_BLOCK_BYTES (4 << 20)

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    char *group_id;
    char *topics;
    long long session_timeout_ms;
    char *s3_endpoint, *s3_bucket, *s3_region, *s3_access_key, *s3_secret_key;
    char *prefix;
    long long roll_bytes;
    long long roll_age_s;
    char *spool_dir;
    long long upload_timeout_ms;
} ar_cfg_t;

static const kc_cfg_opt_t ar_opts[] = {
    KC_CFG_COMMON(ar_cfg_t, common),
    KC_CFG_ADMIN(ar_cfg_t, common, "17099"),
    KC_CFG_KAFKA(ar_cfg_t, kafka),
    {"group-id", KC_CFG_STR, offsetof(ar_cfg_t, group_id), "kchat-archiver", 1, 255,
     "consumer group of the archivers"},
    {"archive-topics", KC_CFG_STR, offsetof(ar_cfg_t, topics), KC_ARCHIVE_TOPICS, 1, 4096,
     "comma-separated topics archived (at most 16)"},
    {"session-timeout-ms", KC_CFG_INT, offsetof(ar_cfg_t, session_timeout_ms), "30000", 6000,
     300000, "consumer group session timeout: how long a killed archiver keeps its partitions"},
    KC_CFG_S3(ar_cfg_t, "the object store of the archive, http(s)://host[:port]",
              "bucket of the archive"),
    {"archive-prefix", KC_CFG_STR, offsetof(ar_cfg_t, prefix), "archive/", 0, 200,
     "folder of the bucket the archive is in (letters, digits and ._/-)"},
    {"roll-bytes", KC_CFG_INT, offsetof(ar_cfg_t, roll_bytes), "33554432", 1024, 1073741824,
     "an object is rolled when its records reach this many bytes"},
    {"roll-age-s", KC_CFG_INT, offsetof(ar_cfg_t, roll_age_s), "300", 1, 86400,
     "an object is rolled when its first record is this old (how far the archive may lag)"},
    {"spool-dir", KC_CFG_STR, offsetof(ar_cfg_t, spool_dir), "/var/tmp/kchat-archiver", 1, 4096,
     "folder of the files being filled (emptied at start: what they held is read again)"},
    {"upload-timeout-ms", KC_CFG_INT, offsetof(ar_cfg_t, upload_timeout_ms), "300000", 1000,
     3600000, "bound on one upload"},
};

/* A partition of an archived topic. */
typedef struct {
    int topic;      /* index into ar_t.topics */
    int32_t partition;
    int assigned;
    int paused;     /* by us: an upload in flight and the file at twice --roll-bytes */
    int64_t next;   /* the next offset to archive; records below it are dropped */
    /* the file being filled */
    avro_file_writer_t w;
    char path[4200];
    int64_t first, last;
    long long bytes, records;
    uint64_t opened_ms;
    /* the upload in flight, or waiting to be tried again */
    int uploading;
    char up_path[4200]; /* the closed file, kept until the store has it (tries read it again) */
    size_t up_len;
    char name[1024];
    int64_t up_last;
    long long up_records;
    uint64_t up_opened_ms;
    uint64_t retry_at_ms;
    long long retry_ms;
    uint64_t seq; /* which upload a callback belongs to (a revoke starts over) */
} ar_part_t;

typedef struct {
    ar_cfg_t cfg;
    kc_app_t app;
    int failed, stopping, drained;
    char *topics[AR_MAX_TOPICS];
    int ntopics;
    kc_s3_cfg_t s3cfg;
    kc_s3_t *s3;
    kc_kafka_bound_t consumer;
    ar_part_t **parts;
    size_t nparts;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    int rec_made;
    uv_timer_t timer;
    int timer_open;
    int store_check;
    uint64_t seq;
    kc_counter_t *records[AR_MAX_TOPICS], *objects[AR_MAX_TOPICS], *bytes[AR_MAX_TOPICS];
    kc_counter_t *upload_errors, *dropped;
    kc_gauge_t *pending_g, *oldest_g, *assigned_g;
} ar_t;

/* ---- partitions ---- */

static ar_part_t *part_of(ar_t *a, const char *topic, int32_t partition, int create)
{
    int t = -1;
    for (int i = 0; i < a->ntopics; i++)
        if (strcmp(a->topics[i], topic) == 0)
            t = i;
    if (t < 0 || partition < 0 || partition > KC_ARCHIVE_MAX_PARTITION)
        return NULL;
    for (size_t i = 0; i < a->nparts; i++)
        if (a->parts[i]->topic == t && a->parts[i]->partition == partition)
            return a->parts[i];
    if (!create)
        return NULL;
    ar_part_t *p = kc_xcalloc(1, sizeof(*p));
    p->topic = t;
    p->partition = partition;
    p->next = -1;
    p->retry_ms = 1000;
    a->parts = kc_xrealloc(a->parts, (a->nparts + 1) * sizeof(*a->parts));
    a->parts[a->nparts++] = p;
    return p;
}

static void drop_file(ar_part_t *p)
{
    if (p->w) {
        (void)avro_file_writer_close(p->w);
        p->w = NULL;
        (void)unlink(p->path);
    }
    p->records = p->bytes = 0;
}

static void set_paused(ar_t *a, ar_part_t *p, int pause)
{
    if (p->paused == pause || !p->assigned)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, a->topics[p->topic], p->partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(a->consumer.rk, l)
                                    : rd_kafka_resume_partitions(a->consumer.rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        kc_log_warn("cannot %s %s [%" PRId32 "]: %s", pause ? "pause" : "resume",
                    a->topics[p->topic], p->partition, rd_kafka_err2str(err));
    else
        p->paused = pause;
}

/* Where the partition resumes: after the highest last offset of the archive's objects at or
 * after the committed offset (committed < 0: none). -1 with err when the archive cannot be
 * read; RD_KAFKA_OFFSET_BEGINNING when it holds nothing and nothing was committed. */
static int64_t resume_offset(ar_t *a, ar_part_t *p, int64_t committed, char *err, size_t errlen)
{
    char dir[1024], after[1100];
    if (kc_archive_dir(dir, sizeof(dir), a->cfg.prefix, a->topics[p->topic], p->partition) != 0) {
        (void)kc_strlcpyf(err, errlen, "the archive's folder name is too long");
        return -1;
    }
    /* Objects whose first offset is below the committed one end below it too. */
    if (committed > 0)
        (void)kc_strlcpyf(after, sizeof(after), "%s%020" PRId64 "~", dir, committed - 1);
    char **keys = NULL;
    size_t n = 0;
    int rc = kc_s3_sync_list(&a->s3cfg, dir, NULL, committed > 0 ? after : NULL, 10000000, &keys,
                             &n, err, errlen);
    int64_t last = -1, first, l;
    for (size_t i = 0; i < n; i++) {
        if (kc_archive_parse(keys[i], &first, &l) == 0 && l > last)
            last = l;
        free(keys[i]);
    }
    free(keys);
    if (rc != 0)
        return -1;
    if (last >= 0 && last + 1 > committed)
        return last + 1;
    return committed >= 0 ? committed : RD_KAFKA_OFFSET_BEGINNING;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ar_t *a = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* The committed offsets, then the archive: blocking, as the assignment must be made
         * here; a failure leaves the partition paused until the timer reads it. */
        rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_resp_err_t cerr = rd_kafka_committed(rk, c, 10000);
        for (int i = 0; i < parts->cnt; i++) {
            ar_part_t *p = part_of(a, parts->elems[i].topic, parts->elems[i].partition, 1);
            if (!p)
                continue;
            int64_t committed = cerr ? -1 : c->elems[i].offset;
            char e[512] = "";
            int64_t at = cerr ? -1 : resume_offset(a, p, committed, e, sizeof(e));
            p->assigned = 1;
            p->paused = 0;
            p->next = at == RD_KAFKA_OFFSET_BEGINNING ? 0 : at;
            if (at == -1) {
                kc_log_warn("%s [%" PRId32 "]: where to resume is not known yet (%s): paused",
                            a->topics[p->topic], p->partition,
                            cerr ? rd_kafka_err2str(cerr) : e);
            } else {
                parts->elems[i].offset = at;
                kc_log_kv(KC_LOG_INFO,
                          KC_FIELDS(KC_STR("topic", a->topics[p->topic]),
                                    KC_INT("partition", p->partition),
                                    KC_INT("committed", committed), KC_INT("resume", at)),
                          "partition assigned");
            }
        }
        rd_kafka_topic_partition_list_destroy(c);
        (void)kc_kafka_rebalance_apply(rk, err, parts);
        for (size_t i = 0; i < a->nparts; i++)
            if (a->parts[i]->assigned && a->parts[i]->next == -1 && !a->parts[i]->paused)
                set_paused(a, a->parts[i], 1);
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            ar_part_t *p = part_of(a, parts->elems[i].topic, parts->elems[i].partition, 0);
            if (!p)
                continue;
            /* Never uploaded, so never committed: the next owner reads them again. An
             * upload in flight finishes; its commit is refused by the group or harmless. */
            drop_file(p);
            p->assigned = 0;
            p->paused = 0;
            p->next = -1;
        }
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
        (void)kc_kafka_rebalance_apply(rk, err, parts);
    }
}

/* ---- the spool files ---- */

static int open_file(ar_t *a, ar_part_t *p, int64_t first)
{
    (void)kc_strlcpyf(p->path, sizeof(p->path), "%s/%s-%05" PRId32 "-%020" PRId64 ".avro",
                      a->cfg.spool_dir, a->topics[p->topic], p->partition, first);
    (void)unlink(p->path); /* avro-c will not write over a file */
    /* A block holds the largest record (the brokers take 1 MiB by default, and avro-c will
     * not split a record across blocks). */
    if (avro_file_writer_create_with_codec(p->path, a->schema, &p->w, "deflate",
                                           AR_BLOCK_BYTES) != 0) {
        kc_log_error("cannot write %s: %s", p->path, avro_strerror());
        p->w = NULL;
        return -1;
    }
    p->first = first;
    p->records = p->bytes = 0;
    p->opened_ms = kc_now_ms();
    return 0;
}

static int set_opt_bytes(avro_value_t *rec, const char *field, const void *buf, size_t len)
{
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, field, &f, NULL) != 0)
        return -1;
    if (!buf)
        return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b);
    return avro_value_set_branch(&f, 1, &b) || avro_value_set_bytes(&b, (void *)buf, len);
}

/* The record as an archive record in rec. */
static int fill(ar_t *a, const rd_kafka_message_t *m)
{
    avro_value_t *r = &a->rec, f, b;
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    if (avro_value_reset(r) != 0 || avro_value_get_by_name(r, "topic", &f, NULL) != 0 ||
        avro_value_set_string(&f, topic) != 0 ||
        avro_value_get_by_name(r, "partition", &f, NULL) != 0 ||
        avro_value_set_int(&f, m->partition) != 0 ||
        avro_value_get_by_name(r, "offset", &f, NULL) != 0 || avro_value_set_long(&f, m->offset) != 0 ||
        avro_value_get_by_name(r, "timestamp", &f, NULL) != 0 ||
        avro_value_set_long(&f, ts < 0 ? 0 : ts) != 0 ||
        set_opt_bytes(r, "key", m->key, m->key_len) != 0 ||
        set_opt_bytes(r, "value", m->payload, m->len) != 0 ||
        avro_value_get_by_name(r, "schema_id", &f, NULL) != 0)
        return -1;
    const unsigned char *v = m->payload;
    if (v && m->len >= 5 && v[0] == 0) {
        int32_t id = (int32_t)((uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 |
                               (uint32_t)v[4]);
        if (avro_value_set_branch(&f, 1, &b) != 0 || avro_value_set_int(&b, id) != 0)
            return -1;
    } else if (avro_value_set_branch(&f, 0, &b) != 0 || avro_value_set_null(&b) != 0) {
        return -1;
    }
    if (avro_value_get_by_name(r, "headers", &f, NULL) != 0)
        return -1;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            avro_value_t h, hf, hb;
            if (avro_value_append(&f, &h, NULL) != 0 ||
                avro_value_get_by_name(&h, "key", &hf, NULL) != 0 ||
                avro_value_set_string(&hf, name) != 0 ||
                avro_value_get_by_name(&h, "value", &hf, NULL) != 0)
                return -1;
            if (val ? avro_value_set_branch(&hf, 1, &hb) || avro_value_set_bytes(&hb, (void *)val, size)
                    : avro_value_set_branch(&hf, 0, &hb) || avro_value_set_null(&hb))
                return -1;
        }
    }
    return 0;
}

static void start_upload(ar_t *a, ar_part_t *p);

/* Closes the file and hands it to the upload. */
static void roll(ar_t *a, ar_part_t *p)
{
    if (!p->w || p->uploading)
        return;
    int closed = avro_file_writer_close(p->w);
    p->w = NULL;
    struct stat sb;
    int ok = closed == 0 && stat(p->path, &sb) == 0 &&
             kc_archive_name(p->name, sizeof(p->name), a->cfg.prefix, a->topics[p->topic],
                             p->partition, p->first, p->last) == 0;
    if (!ok) {
        /* Nothing is committed: the records are read again from the partition. */
        kc_log_error("%s [%" PRId32 "]: the file of offsets %" PRId64 "..%" PRId64
                     " could not be closed (%s): reading them again",
                     a->topics[p->topic], p->partition, p->first, p->last,
                     closed ? avro_strerror() : strerror(errno));
        (void)unlink(p->path);
        kc_counter_inc(a->dropped);
        p->records = p->bytes = 0;
        /* The timer looks in the archive for where to resume, as after an assignment it
         * could not decide, and seeks there. */
        p->next = -1;
        set_paused(a, p, 1);
        return;
    }
    /* The next file of the partition starts at another offset: another name. */
    (void)kc_strlcpyf(p->up_path, sizeof(p->up_path), "%s", p->path);
    p->up_len = (size_t)sb.st_size;
    p->up_last = p->last;
    p->up_records = p->records;
    p->up_opened_ms = p->opened_ms;
    p->records = p->bytes = 0;
    p->uploading = 1;
    p->retry_at_ms = 0;
    p->seq = ++a->seq;
    start_upload(a, p);
}

typedef struct {
    ar_t *a;
    ar_part_t *p;
    uint64_t seq;
} up_ctx_t;

static void on_uploaded(void *arg, const kc_s3_result_t *res)
{
    up_ctx_t *c = arg;
    ar_t *a = c->a;
    ar_part_t *p = c->p;
    uint64_t seq = c->seq;
    free(c);
    if (seq != p->seq || !p->uploading)
        return;
    if (res->status != 200) {
        kc_counter_inc(a->upload_errors);
        char detail[256];
        if (res->status)
            (void)kc_strlcpyf(detail, sizeof(detail), "PUT %s: HTTP %ld", p->name, res->status);
        else
            (void)kc_strlcpyf(detail, sizeof(detail), "PUT %s: %s", p->name,
                              res->error ? res->error : "refused");
        kc_health_set(a->app.health, a->store_check, 0, detail);
        kc_log_warn("%s; tried again in %lld ms", detail, p->retry_ms);
        p->retry_at_ms = kc_now_ms() + (uint64_t)p->retry_ms;
        p->retry_ms = p->retry_ms * 2 > AR_MAX_RETRY_MS ? AR_MAX_RETRY_MS : p->retry_ms * 2;
        if (a->stopping) {
            p->uploading = 0; /* not committed: read again by the next owner */
            (void)unlink(p->up_path);
        }
        return;
    }
    kc_health_set(a->app.health, a->store_check, 1, NULL);
    kc_counter_add(a->objects[p->topic], 1);
    kc_counter_add(a->records[p->topic], (double)p->up_records);
    kc_counter_add(a->bytes[p->topic], (double)p->up_len);
    kc_log_kv(KC_LOG_DEBUG,
              KC_FIELDS(KC_STR("object", p->name), KC_INT("records", p->up_records),
                        KC_INT("bytes", (long long)p->up_len)),
              "archived");
    (void)unlink(p->up_path);
    p->uploading = 0;
    p->retry_ms = 1000;
    /* The offset after it, for the next start; the archive is what counts (see the top). */
    if (p->assigned && a->consumer.rk) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, a->topics[p->topic], p->partition)->offset =
            p->up_last + 1;
        rd_kafka_resp_err_t err = rd_kafka_commit(a->consumer.rk, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
        if (err)
            kc_log_warn("commit of %s [%" PRId32 "]: %s", a->topics[p->topic], p->partition,
                        rd_kafka_err2str(err));
    }
    set_paused(a, p, 0);
    /* A file that grew meanwhile and is due goes next. */
    if (p->w && (a->stopping || p->bytes >= a->cfg.roll_bytes ||
                 kc_now_ms() - p->opened_ms >= (uint64_t)a->cfg.roll_age_s * 1000))
        roll(a, p);
}

/* Reads the closed file and starts its PUT (the request holds its own copy, so the file is
 * the only other one: a try that fails reads it again). */
static void start_upload(ar_t *a, ar_part_t *p)
{
    char *body = kc_xmalloc(p->up_len ? p->up_len : 1);
    FILE *f = fopen(p->up_path, "rb");
    int ok = f && fread(body, 1, p->up_len, f) == p->up_len;
    if (f)
        fclose(f);
    if (!ok) {
        /* Not committed: read again from the partition, found by the timer. */
        kc_log_error("%s cannot be read back (%s): reading its records again", p->up_path,
                     strerror(errno));
        free(body);
        (void)unlink(p->up_path);
        kc_counter_inc(a->dropped);
        p->uploading = 0;
        if (p->assigned) {
            drop_file(p); /* what follows it, too */
            p->next = -1;
            set_paused(a, p, 1);
        }
        return;
    }
    up_ctx_t *c = kc_xcalloc(1, sizeof(*c));
    *c = (up_ctx_t){a, p, p->seq};
    int started = kc_s3_request(a->s3, "PUT", p->name, body, p->up_len, "application/avro", 0,
                                on_uploaded, c) == 0;
    free(body);
    if (!started) {
        free(c);
        kc_log_warn("PUT %s could not start; tried again in %lld ms", p->name, p->retry_ms);
        p->retry_at_ms = kc_now_ms() + (uint64_t)p->retry_ms;
    }
}

/* ---- consuming ---- */

static void drained(ar_t *a);

static int on_records(void *arg)
{
    ar_t *a = arg;
    if (a->stopping || !a->consumer.rk)
        return 0;
    for (int polled = 0; polled < 1000; polled++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(a->consumer.rk, 0);
        if (!m)
            return 0;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        ar_part_t *p = part_of(a, rd_kafka_topic_name(m->rkt), m->partition, 0);
        if (!p || !p->assigned || p->next < 0 || m->offset < p->next) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (!p->w && open_file(a, p, m->offset) != 0) {
            rd_kafka_message_destroy(m);
            kc_daemon_stop(a->app.daemon, "the spool folder cannot be written");
            a->failed = 1;
            return 0;
        }
        if (fill(a, m) != 0 || avro_file_writer_append_value(p->w, &a->rec) != 0) {
            kc_log_error("%s [%" PRId32 "] offset %" PRId64 ": cannot be written: %s",
                         a->topics[p->topic], p->partition, m->offset, avro_strerror());
            rd_kafka_message_destroy(m);
            a->failed = 1;
            kc_daemon_stop(a->app.daemon, "a record could not be archived");
            return 0;
        }
        p->last = m->offset;
        p->next = m->offset + 1;
        p->records++;
        p->bytes += (long long)(m->len + m->key_len) + 24;
        rd_kafka_message_destroy(m);
        if (p->bytes >= a->cfg.roll_bytes) {
            if (!p->uploading)
                roll(a, p);
            else if (p->bytes >= 2 * a->cfg.roll_bytes)
                set_paused(a, p, 1);
        }
    }
    return 1;
}

/* ---- the timer: rolls by age, retries, gauges ---- */

static void on_timer(uv_timer_t *t)
{
    ar_t *a = t->data;
    uint64_t now = kc_now_ms();
    long long pending = 0, assigned = 0;
    uint64_t oldest = 0;
    for (size_t i = 0; i < a->nparts; i++) {
        ar_part_t *p = a->parts[i];
        assigned += p->assigned;
        if (p->assigned && p->next == -1) {
            /* Where to resume was not known at assignment: ask the archive again. */
            char e[512];
            rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(l, a->topics[p->topic], p->partition);
            rd_kafka_resp_err_t cerr = rd_kafka_committed(a->consumer.rk, l, 5000);
            int64_t at = cerr ? -1 : resume_offset(a, p, l->elems[0].offset, e, sizeof(e));
            if (at >= 0 || at == RD_KAFKA_OFFSET_BEGINNING) {
                l->elems[0].offset = at;
                rd_kafka_error_t *se = rd_kafka_seek_partitions(a->consumer.rk, l, 5000);
                if (se) {
                    kc_log_warn("seek: %s", rd_kafka_error_string(se));
                    rd_kafka_error_destroy(se);
                } else {
                    p->next = at < 0 ? 0 : at;
                    set_paused(a, p, 0);
                }
            }
            rd_kafka_topic_partition_list_destroy(l);
        }
        if (p->uploading && p->retry_at_ms && now >= p->retry_at_ms && !a->stopping) {
            p->retry_at_ms = 0;
            p->seq = ++a->seq;
            start_upload(a, p);
        }
        if (p->w && !p->uploading && now - p->opened_ms >= (uint64_t)a->cfg.roll_age_s * 1000)
            roll(a, p);
        pending += p->records + (p->uploading ? p->up_records : 0);
        uint64_t since = p->uploading ? p->up_opened_ms : p->w ? p->opened_ms : 0;
        if (since && (!oldest || since < oldest))
            oldest = since;
    }
    kc_gauge_set(a->pending_g, (double)pending);
    kc_gauge_set(a->oldest_g, oldest ? (double)(now - oldest) / 1000.0 : 0);
    kc_gauge_set(a->assigned_g, (double)assigned);
    if (a->stopping)
        drained(a);
}

/* ---- start and stop ---- */

static void make_metrics(ar_t *a)
{
    kc_metrics_t *m = a->app.metrics;
    for (int i = 0; i < a->ntopics; i++) {
        const char *l[] = {"topic", a->topics[i], NULL};
        a->records[i] = kc_metrics_counter(m, "kchat_archiver_records_total",
                                           "Records archived (in objects the store took).", l);
        a->objects[i] = kc_metrics_counter(m, "kchat_archiver_objects_total",
                                           "Objects written to the archive.", l);
        a->bytes[i] = kc_metrics_counter(m, "kchat_archiver_bytes_total",
                                         "Bytes of the objects written to the archive.", l);
    }
    a->upload_errors = kc_metrics_counter(m, "kchat_archiver_upload_errors_total",
                                          "Uploads the object store did not take (each is "
                                          "tried again).",
                                          NULL);
    a->dropped = kc_metrics_counter(m, "kchat_archiver_files_reread_total",
                                    "Spool files that could not be read back and whose "
                                    "records were read again from Kafka.",
                                    NULL);
    a->pending_g = kc_metrics_gauge(m, "kchat_archiver_pending_records",
                                    "Records read and not yet in the archive.", NULL);
    a->oldest_g = kc_metrics_gauge(m, "kchat_archiver_oldest_pending_seconds",
                                   "Age of the oldest file not yet in the archive (0: none): "
                                   "how far the archive lags.",
                                   NULL);
    a->assigned_g = kc_metrics_gauge(m, "kchat_archiver_partitions",
                                     "Partitions this archiver is assigned.", NULL);
}

static int busy(const ar_t *a)
{
    for (size_t i = 0; i < a->nparts; i++)
        if (a->parts[i]->uploading)
            return 1;
    return 0;
}

static void drained(ar_t *a)
{
    if (!a->stopping || a->drained || busy(a))
        return;
    a->drained = 1;
    if (a->consumer.rk) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(a->consumer.rk);
        if (err)
            kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
        kc_kafka_unbind(&a->consumer);
    }
    kc_s3_close(a->s3);
    a->s3 = NULL;
    if (a->timer_open) {
        a->timer_open = 0;
        uv_close((uv_handle_t *)&a->timer, NULL);
    }
    kc_app_close_admin(&a->app);
    kc_daemon_finish(a->app.daemon);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    (void)d;
    ar_t *a = arg;
    kc_health_set_stopping(a->app.health);
    /* Roll what is open (the uploads run on), try at once an upload that waits to be tried
     * again (once: a failure now leaves it to the next owner), read nothing more. */
    for (size_t i = 0; i < a->nparts; i++) {
        ar_part_t *p = a->parts[i];
        if (p->uploading && p->retry_at_ms) {
            p->retry_at_ms = 0;
            p->seq = ++a->seq;
            start_upload(a, p);
        } else if (p->assigned && !p->uploading) {
            roll(a, p);
        }
    }
    a->stopping = 1;
    if (a->consumer.w)
        kc_kafka_watch_pause(a->consumer.w);
    drained(a);
}

static void spool_clean(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && strcmp(e->d_name + n - 5, ".avro") == 0) {
            (void)kc_strlcpyf(path, sizeof(path), "%s/%s", dir, e->d_name);
            (void)unlink(path);
        }
    }
    closedir(d);
}

static int start(void *arg, char *err, size_t errlen)
{
    ar_t *a = arg;
    ar_cfg_t *c = &a->cfg;
    if (!*c->s3_endpoint || !*c->s3_bucket || !*c->s3_access_key || !*c->s3_secret_key) {
        (void)kc_strlcpyf(err, errlen, "the archive needs its object store: --s3-endpoint, "
                                       "--s3-bucket, --s3-access-key and --s3-secret-key");
        return -1;
    }
    if (!kc_str_only(c->prefix, "._/-")) {
        (void)kc_strlcpyf(err, errlen, "--archive-prefix may hold only letters, digits and ._/-");
        return -1;
    }
    char *list = kc_xstrdup(c->topics), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (a->ntopics == AR_MAX_TOPICS || strlen(t) > 249 || strchr(t, '/')) {
            (void)kc_strlcpyf(err, errlen, "--archive-topics: at most %d topic names",
                              AR_MAX_TOPICS);
            free(list);
            return -1;
        }
        a->topics[a->ntopics++] = kc_xstrdup(t);
    }
    free(list);
    if (!a->ntopics) {
        (void)kc_strlcpyf(err, errlen, "--archive-topics names no topic");
        return -1;
    }
    if (mkdir(c->spool_dir, 0700) != 0 && errno != EEXIST) {
        (void)kc_strlcpyf(err, errlen, "--spool-dir %s: %s", c->spool_dir, strerror(errno));
        return -1;
    }
    spool_clean(c->spool_dir);
    a->s3cfg = (kc_s3_cfg_t){c->s3_endpoint, c->s3_bucket, c->s3_region, c->s3_access_key,
                             c->s3_secret_key};
    a->s3 = kc_s3_new(a->app.loop, &a->s3cfg, (long)c->upload_timeout_ms, err, errlen);
    if (!a->s3)
        return -1;
    if (avro_schema_from_json_length(KC_ARCHIVE_SCHEMA, strlen(KC_ARCHIVE_SCHEMA), &a->schema) != 0 ||
        !(a->iface = avro_generic_class_from_schema(a->schema)) ||
        avro_generic_value_new(a->iface, &a->rec) != 0) {
        (void)kc_strlcpyf(err, errlen, "the archive's schema: %s", avro_strerror());
        return -1;
    }
    a->rec_made = 1;
    a->store_check = kc_health_add(a->app.health, "object_store");
    kc_health_set(a->app.health, a->store_check, 1, NULL);
    make_metrics(a);
    kc_kafka_opts_t ko = {.conn = &c->kafka,
                          .health = a->app.health,
                          .metrics = a->app.metrics,
                          .client_id = "archiver-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = on_rebalance,
                          .opaque = a};
    char session[32];
    (void)kc_strlcpyf(session, sizeof(session), "%lld", c->session_timeout_ms);
    const char *over[] = {"partition.assignment.strategy", "cooperative-sticky",
                          "session.timeout.ms", session,
                          "auto.offset.reset", "earliest",
                          /* an archive waits minutes anyway: fewer, larger fetches */
                          "fetch.wait.max.ms", "500", "fetch.min.bytes", "262144", NULL};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, c->group_id, over, err, errlen);
    if (!rk || kc_kafka_bind(&a->consumer, a->app.loop, rk, on_records, a, err, errlen) != 0)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(a->ntopics);
    for (int i = 0; i < a->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, a->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(a->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        (void)kc_strlcpyf(err, errlen, "cannot subscribe: %s", rd_kafka_err2str(kerr));
        return -1;
    }
    if (uv_timer_init(a->app.loop, &a->timer) != 0)
        abort();
    a->timer.data = a;
    a->timer_open = 1;
    if (uv_timer_start(&a->timer, on_timer, 1000, 1000) != 0)
        abort();
    return 0;
}

static void start_failed(void *arg)
{
    ar_t *a = arg;
    kc_s3_close(a->s3);
    a->s3 = NULL;
    if (a->timer_open) {
        a->timer_open = 0;
        uv_close((uv_handle_t *)&a->timer, NULL);
    }
}

static void started(void *arg)
{
    ar_t *a = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("admin_port", kc_httpd_port(a->app.admin_httpd)),
                        KC_STR("topics", a->cfg.topics), KC_STR("bucket", a->cfg.s3_bucket),
                        KC_STR("prefix", a->cfg.prefix), KC_INT("roll_bytes", a->cfg.roll_bytes),
                        KC_INT("roll_age_s", a->cfg.roll_age_s)),
              "archiver started");
}

static int exit_code(void *arg)
{
    return ((ar_t *)arg)->failed ? 1 : 0;
}

static void release(void *arg)
{
    kc_kafka_bound_destroy(&((ar_t *)arg)->consumer);
}

static void free_all(void *arg)
{
    ar_t *a = arg;
    for (size_t i = 0; i < a->nparts; i++) {
        drop_file(a->parts[i]);
        if (a->parts[i]->uploading)
            (void)unlink(a->parts[i]->up_path);
        free(a->parts[i]);
    }
    free(a->parts);
    for (int i = 0; i < a->ntopics; i++)
        free(a->topics[i]);
    if (a->rec_made)
        avro_value_decref(&a->rec);
    if (a->iface)
        avro_value_iface_decref(a->iface);
    if (a->schema)
        avro_schema_decref(a->schema);
}

int main(int argc, char **argv)
{
    ar_t a = {0};
    kc_app_spec_t spec = {KC_APP_SPEC("archiver", ar_opts, &a),
                          .serve_admin = 1,
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .exit_code = exit_code,
                          .release = release,
                          .free = free_all};
    return kc_app_main(&spec, argc, argv);
}
