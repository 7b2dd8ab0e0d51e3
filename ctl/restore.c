/* restore.c - `kchatctl restore`: kchat's topics replayed from the archive that
 * kchat-archiver keeps in the object store (kchat/archive.h) into a cluster, after the loss
 * of a cluster or for a drill.
 *
 * For each topic of --restore-topics, its destination (--restore-topic-prefix and its name:
 * "drill." restores beside the live topics) must exist, made by `kchatctl topics` or the
 * operator, with at least as many partitions as the archive has, and be empty: a restore
 * only fills empty topics, so that running it twice, or into the wrong cluster, cannot mix
 * two logs. Everything is listed and checked before the first record is written.
 *
 * Then, partition by partition, the objects are read in the order of their first offset and
 * every record is written to the same partition with its key (a null key stays null), value
 * (still in the Confluent wire format), headers and timestamp. The producer is idempotent
 * with acks=all, so each partition keeps its order through retries; the records of a topic
 * keep their partitions, so a key stays where the keyed readers expect it. A record whose
 * offset is not above the last one written for its partition is skipped: two archivers
 * racing for a partition in a rebalance can leave overlapping objects.
 *
 * The offsets differ: the transactions' markers are not archived, so they are not restored,
 * and the new topic's offsets start at 0. Consumer group offsets and the projectors' stored
 * positions of the old cluster mean nothing in the new one: consumers of a restored cluster
 * start from the beginning, and the read models (Postgres' projections, Redis) are rebuilt
 * from the restored log. The records keep their old timestamps, so a topic with a time
 * retention (chat.audit) deletes what is older than its retention as it would have.
 *
 * The records the projectors pass over on purpose (event_skips, named by topic, partition and
 * offset: `kchatctl skip-event`) would point at other records after a restore. With
 * --restore-skips, the rows of each restored topic are read from --pg-dsn first; once every
 * record is delivered, one transaction deletes the rows of the destination topic (an old
 * cluster's offsets) and writes each skip at its record's new offset: in an empty topic a
 * record's offset is the number of records restored before it in its partition.
 *
 * A failure (a delivery that fails, an object that does not hold what its name says or is
 * larger than 2 GiB) stops the restore with exit status 1; what was already written stays,
 * and the destination topics must be deleted and made again before the next attempt. The requests to the store block
 * (kchat/s3_sync.h): a command line tool may.
 */
#include <avro.h>
#include <errno.h>
#include <libpq-fe.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "kchat/archive.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/s3.h"
#include "kchat/s3_sync.h"
#include "kchat/util.h"

#define OBJECT_MAX (2LL << 30)  /* the largest object read: 2 GiB */
#define LIST_MAX 1000000        /* objects of one topic */
#define TOPICS_MAX 64
#define KAFKA_TIMEOUT_MS 15000
#define FLUSH_TIMEOUT_MS 60000

/* An object of the archive. */
typedef struct {
    char *key;
    int32_t partition;
    int64_t first, last;
} obj_t;

/* A partition of a topic: objs[from, from + n) of its topic, and what was restored. */
typedef struct {
    int32_t partition;
    size_t from, n;
    long long restored, skipped;
    int64_t first, last; /* the original offsets of the first and last record restored; -1 */
} part_t;

/* A row of event_skips, and where its record went. */
typedef struct {
    int32_t partition;
    int64_t offset, moved_to; /* moved_to: -1 until its record is restored */
    char *reason;
} skip_t;

typedef struct {
    const char *name; /* in the archive */
    char *dest;       /* in the cluster */
    obj_t *objs;
    size_t nobjs;
    part_t *parts;
    size_t nparts;
    rd_kafka_topic_t *rkt;
    skip_t *skips;
    size_t nskips;
} topic_t;

typedef struct {
    kc_s3_cfg_t s3;
    const char *prefix;
    rd_kafka_t *rk;
    long long produced, delivered, failed;
    char error[512]; /* the first delivery that failed */
} restore_t;

/* ---- the archive's listing ---- */

static int obj_cmp(const void *a, const void *b)
{
    const obj_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    if (x->last != y->last)
        return x->last < y->last ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* Reads the partition of a key under dir_prefix ("<prefix><topic>/"): "NNNNN/<name>", where
 * kc_archive_dir gives the same folder back. 0, or -1. */
static int key_partition(const char *key, const char *dir_prefix, const char *prefix,
                         const char *topic, int32_t *partition)
{
    const char *rest = key + strlen(dir_prefix);
    int32_t p = 0;
    for (int i = 0; i < 5; i++) {
        if (rest[i] < '0' || rest[i] > '9')
            return -1;
        p = p * 10 + (rest[i] - '0');
    }
    char dir[1024];
    if (rest[5] != '/' || strchr(rest + 6, '/') ||
        kc_archive_dir(dir, sizeof(dir), prefix, topic, p) != 0 ||
        (size_t)(rest + 6 - key) != strlen(dir) || strncmp(key, dir, strlen(dir)) != 0)
        return -1;
    *partition = p;
    return 0;
}

/* Lists the archive of t->name: its objects, sorted by partition and offsets, and its
 * partitions. 0, or -1 (said). */
static int list_topic(restore_t *r, topic_t *t)
{
    kc_buf_t dir = {0};
    kc_buf_printf(&dir, "%s%s/", r->prefix, t->name);
    char err[512];
    char **keys = NULL;
    size_t n = 0;
    int rc = kc_s3_sync_list(&r->s3, dir.data, NULL, NULL, LIST_MAX, &keys, &n, err,
                             sizeof(err));
    if (rc != 0)
        fprintf(stderr, "kchatctl: %s\n", err);
    for (size_t i = 0; i < n; i++) {
        obj_t o = {.key = keys[i]};
        keys[i] = NULL;
        const char *base = strrchr(o.key, '/') ? strrchr(o.key, '/') + 1 : o.key;
        size_t blen = strlen(base);
        int parsed = kc_archive_parse(base, &o.first, &o.last) == 0;
        if (rc == 0 && parsed &&
            key_partition(o.key, dir.data, r->prefix, t->name, &o.partition) == 0) {
            t->objs = kc_xrealloc(t->objs, (t->nobjs + 1) * sizeof(obj_t));
            t->objs[t->nobjs++] = o;
            continue;
        }
        if (rc == 0 && (parsed || (blen > 5 && strcmp(base + blen - 5, ".avro") == 0))) {
            /* Named as an object of the archive, but not one: its records would be lost. */
            fprintf(stderr, "kchatctl: %s/%s: not the name of an archive object "
                            "(<partition, 5 digits>/<first>-<last>.avro, 20 digits each)\n",
                    r->s3.bucket, o.key);
            rc = -1;
        } else if (rc == 0) {
            fprintf(stderr, "kchatctl: warning: %s/%s is not an archive object: ignored\n",
                    r->s3.bucket, o.key);
        }
        free(o.key);
    }
    free(keys);
    kc_buf_free(&dir);
    if (rc != 0)
        return -1;
    qsort(t->objs, t->nobjs, sizeof(obj_t), obj_cmp);
    for (size_t i = 0; i < t->nobjs; i++) {
        if (i == 0 || t->objs[i].partition != t->objs[i - 1].partition) {
            t->parts = kc_xrealloc(t->parts, (t->nparts + 1) * sizeof(part_t));
            t->parts[t->nparts++] =
                (part_t){.partition = t->objs[i].partition, .from = i, .first = -1, .last = -1};
        }
        t->parts[t->nparts - 1].n++;
    }
    return 0;
}

/* ---- the destination ---- */

/* The destination of t exists, has the partitions of the archive and is empty. 0, or -1
 * (said). */
static int check_dest(restore_t *r, topic_t *t)
{
    char err[512];
    int32_t n = kc_kafka_partition_count(r->rk, t->dest, KAFKA_TIMEOUT_MS, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "kchatctl: %s: the topic must exist before a restore (kchatctl topics, "
                        "or made by the operator)\n", err);
        return -1;
    }
    int32_t need = t->nparts ? t->parts[t->nparts - 1].partition + 1 : 0;
    if (n < need) {
        fprintf(stderr, "kchatctl: topic %s has %" PRId32 " partitions; the archive of %s has "
                        "records of partition %" PRId32 ": it needs at least %" PRId32 "\n",
                t->dest, n, t->name, need - 1, need);
        return -1;
    }
    for (int32_t p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e;
        /* A topic made a moment ago may have no leader yet everywhere: asked again. */
        for (int tries = 0;; tries++) {
            e = rd_kafka_query_watermark_offsets(r->rk, t->dest, p, &lo, &hi, KAFKA_TIMEOUT_MS);
            if (tries >= 50 || !(e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                                 e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                                 e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
                break;
            usleep(200 * 1000);
        }
        if (e) {
            fprintf(stderr, "kchatctl: the offsets of %s [%" PRId32 "]: %s\n", t->dest, p,
                    rd_kafka_err2str(e));
            return -1;
        }
        if (hi != 0) {
            fprintf(stderr, "kchatctl: topic %s is not empty: a restore only fills empty "
                            "topics (its partition %" PRId32 " ends at offset %" PRId64 "; "
                            "delete and make it again)\n", t->dest, p, hi);
            return -1;
        }
    }
    t->rkt = kc_kafka_topic_hold(r->rk, t->dest, KAFKA_TIMEOUT_MS, err, sizeof(err));
    if (!t->rkt) {
        fprintf(stderr, "kchatctl: %s\n", err);
        return -1;
    }
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    restore_t *r = opaque;
    if (!m->err) {
        r->delivered++;
        return;
    }
    if (r->failed++ == 0)
        kc_strlcpyf(r->error, sizeof(r->error), "%s [%" PRId32 "]: %s",
                    m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
                    rd_kafka_err2str(m->err));
}

/* ---- reading an object ---- */

/* A record of the archive, pointing into the reader's value. */
typedef struct {
    const char *topic;
    size_t topic_len;
    int32_t partition;
    int64_t offset, timestamp;
    const void *key, *value; /* NULL: null */
    size_t key_len, value_len;
    avro_value_t headers;
    size_t nheaders;
} rec_t;

static int field(avro_value_t *rec, const char *name, avro_type_t type, avro_value_t *out)
{
    return avro_value_get_by_name(rec, name, out, NULL) == 0 &&
                   avro_value_get_type(out) == type
               ? 0
               : -1;
}

/* A ["null", "bytes"] field: *p NULL for null, else the bytes (never NULL, even empty). */
static int opt_bytes(avro_value_t *rec, const char *name, const void **p, size_t *len)
{
    avro_value_t u, b;
    if (field(rec, name, AVRO_UNION, &u) != 0 || avro_value_get_current_branch(&u, &b) != 0)
        return -1;
    *p = NULL;
    *len = 0;
    if (avro_value_get_type(&b) == AVRO_NULL)
        return 0;
    if (avro_value_get_type(&b) != AVRO_BYTES || avro_value_get_bytes(&b, p, len) != 0)
        return -1;
    if (!*p)
        *p = "";
    return 0;
}

static int get_string(avro_value_t *v, const char **s, size_t *len)
{
    /* avro-c counts the terminating NUL */
    if (avro_value_get_string(v, s, len) != 0 || !*s || *len == 0)
        return -1;
    (*len)--;
    return 0;
}

static int read_rec(avro_value_t *v, rec_t *out)
{
    avro_value_t f;
    return field(v, "topic", AVRO_STRING, &f) || get_string(&f, &out->topic, &out->topic_len) ||
                   field(v, "partition", AVRO_INT32, &f) ||
                   avro_value_get_int(&f, &out->partition) ||
                   field(v, "offset", AVRO_INT64, &f) || avro_value_get_long(&f, &out->offset) ||
                   field(v, "timestamp", AVRO_INT64, &f) ||
                   avro_value_get_long(&f, &out->timestamp) ||
                   opt_bytes(v, "key", &out->key, &out->key_len) ||
                   opt_bytes(v, "value", &out->value, &out->value_len) ||
                   field(v, "headers", AVRO_ARRAY, &out->headers) ||
                   avro_value_get_size(&out->headers, &out->nheaders)
               ? -1
               : 0;
}

/* The record's headers as librdkafka's, or NULL when it has none; -1 when malformed. */
static int headers_of(rec_t *rec, rd_kafka_headers_t **out)
{
    *out = NULL;
    if (rec->nheaders == 0)
        return 0;
    rd_kafka_headers_t *h = rd_kafka_headers_new(rec->nheaders);
    for (size_t i = 0; i < rec->nheaders; i++) {
        avro_value_t e, k;
        const char *name;
        size_t name_len, vlen;
        const void *val;
        if (avro_value_get_by_index(&rec->headers, i, &e, NULL) != 0 ||
            avro_value_get_type(&e) != AVRO_RECORD || field(&e, "key", AVRO_STRING, &k) != 0 ||
            get_string(&k, &name, &name_len) != 0 || opt_bytes(&e, "value", &val, &vlen) != 0 ||
            rd_kafka_header_add(h, name, (ssize_t)name_len, val, val ? (ssize_t)vlen : 0)) {
            rd_kafka_headers_destroy(h);
            return -1;
        }
    }
    *out = h;
    return 0;
}

/* Writes rec to t's destination, partition p, waiting while the producer's queue is full.
 * 0, or -1 (said). */
static int produce(restore_t *r, topic_t *t, int32_t p, rec_t *rec)
{
    rd_kafka_headers_t *h;
    if (headers_of(rec, &h) != 0) {
        fprintf(stderr, "kchatctl: %s [%" PRId32 "] offset %" PRId64 ": malformed headers\n",
                t->name, p, rec->offset);
        return -1;
    }
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            r->rk, RD_KAFKA_V_RKT(t->rkt), RD_KAFKA_V_PARTITION(p),
            RD_KAFKA_V_KEY(rec->key, rec->key_len), RD_KAFKA_V_VALUE((void *)rec->value,
                                                                     rec->value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(rec->timestamp > 0 ? rec->timestamp : 0),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!e) { /* the headers are the producer's now */
            r->produced++;
            (void)rd_kafka_poll(r->rk, 0);
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || r->failed) {
            if (h)
                rd_kafka_headers_destroy(h);
            if (!r->failed)
                fprintf(stderr, "kchatctl: cannot write to %s [%" PRId32 "]: %s\n", t->dest, p,
                        rd_kafka_err2str(e));
            return -1;
        }
        /* Full: what is in flight must be delivered first. */
        (void)rd_kafka_poll(r->rk, 100);
    }
}

/* The capped file a GET writes into: a larger object fails the transfer. */
typedef struct {
    FILE *f;
    long long n;
    int over;
} capped_t;

static ssize_t capped_write(void *cookie, const char *buf, size_t size)
{
    capped_t *c = cookie;
    if (c->n + (long long)size > OBJECT_MAX) {
        c->over = 1;
        return 0;
    }
    size_t w = fwrite(buf, 1, size, c->f);
    c->n += (long long)w;
    return (ssize_t)w;
}

/* GETs key into a new temporary file, removed already (it goes when it is closed), read from
 * its start. NULL (said) on failure. */
static FILE *fetch(restore_t *r, const char *key)
{
    const char *dir = getenv("TMPDIR");
    kc_buf_t path = {0};
    kc_buf_printf(&path, "%s/kchat-restore-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path.data);
    FILE *f = fd >= 0 ? fdopen(fd, "w+b") : NULL;
    if (!f) {
        fprintf(stderr, "kchatctl: %s: %s\n", path.data, strerror(errno));
        if (fd >= 0) {
            (void)unlink(path.data);
            close(fd);
        }
        kc_buf_free(&path);
        return NULL;
    }
    (void)unlink(path.data);
    capped_t cap = {.f = f};
    FILE *out = fopencookie(&cap, "wb", (cookie_io_functions_t){.write = capped_write});
    int ok = out && setvbuf(out, NULL, _IONBF, 0) == 0;
    if (!ok)
        fprintf(stderr, "kchatctl: cannot write %s: %s\n", path.data, strerror(errno));
    char err[512];
    kc_s3_sink_t sink = {.out = out};
    long s = ok ? kc_s3_sync(&r->s3, "GET", key, NULL, NULL, 0, &sink, err, sizeof(err)) : -1;
    if (out && fclose(out) != 0)
        ok = 0;
    if (ok && cap.over) {
        fprintf(stderr, "kchatctl: %s/%s is larger than 2 GiB: not read\n", r->s3.bucket, key);
        ok = 0;
    } else if (ok && s < 0) {
        fprintf(stderr, "kchatctl: %s\n", err);
        ok = 0;
    } else if (ok && s != 200) {
        fprintf(stderr, "kchatctl: GET %s/%s: HTTP %ld\n", r->s3.bucket, key, s);
        ok = 0;
    } else if (ok && (fflush(f) != 0 || ferror(f) || fseeko(f, 0, SEEK_SET) != 0)) {
        fprintf(stderr, "kchatctl: %s: %s\n", path.data, strerror(errno));
        ok = 0;
    }
    kc_buf_free(&path);
    if (!ok) {
        fclose(f);
        return NULL;
    }
    return f;
}

/* Restores one object of partition pt of t. 0, or -1 (said). last: the offset of the last
 * record written to the partition (-1: none yet). */
static int restore_object(restore_t *r, topic_t *t, part_t *pt, const obj_t *o, int64_t *last)
{
    FILE *f = fetch(r, o->key);
    if (!f)
        return -1;
    avro_file_reader_t rd = NULL;
    avro_schema_t schema = NULL;
    avro_value_iface_t *iface = NULL;
    avro_value_t v;
    int have_value = 0, rc = 0;
    /* The magic first: avro-c 1.11.1 leaks a little when it refuses a header. */
    char magic[4];
    int is_ocf = fread(magic, 1, 4, f) == 4 && memcmp(magic, "Obj\x01", 4) == 0 &&
                 fseeko(f, 0, SEEK_SET) == 0;
    if (!is_ocf || avro_file_reader_fp(f, o->key, 0, &rd) != 0) {
        fprintf(stderr, "kchatctl: %s/%s: not an Avro object container file%s%s\n",
                r->s3.bucket, o->key, is_ocf ? ": " : "", is_ocf ? avro_strerror() : "");
        rd = NULL;
        rc = -1;
    } else if (!(schema = avro_file_reader_get_writer_schema(rd)) || /* a reference of ours */
               !(iface = avro_generic_class_from_schema(schema)) ||
               avro_generic_value_new(iface, &v) != 0) {
        fprintf(stderr, "kchatctl: %s/%s: cannot read its schema: %s\n", r->s3.bucket, o->key,
                avro_strerror());
        rc = -1;
    } else {
        have_value = 1;
    }
    /* The name says which offsets the object holds: the records must run from first to last
     * (an object cut short at a block's end reads as a whole file). */
    int64_t prev = -1;
    long long n = 0;
    int e = 0;
    while (rc == 0 && (e = avro_file_reader_read_value(rd, &v)) == 0) {
        rec_t rec;
        if (read_rec(&v, &rec) != 0) {
            fprintf(stderr, "kchatctl: %s/%s: record %lld is not an archived record (schema "
                            "kchat.archive.Record)\n", r->s3.bucket, o->key, n);
            rc = -1;
        } else if (rec.topic_len != strlen(t->name) ||
                   memcmp(rec.topic, t->name, rec.topic_len) != 0 ||
                   rec.partition != pt->partition) {
            fprintf(stderr, "kchatctl: %s/%s holds a record of another partition (%.*s [%" PRId32
                            "] offset %" PRId64 ")\n", r->s3.bucket, o->key,
                    (int)(rec.topic_len > 249 ? 249 : rec.topic_len), rec.topic, rec.partition,
                    rec.offset);
            rc = -1;
        } else if ((n == 0 && rec.offset != o->first) || (n > 0 && rec.offset <= prev) ||
                   rec.offset > o->last) {
            fprintf(stderr, "kchatctl: %s/%s: a record at offset %" PRId64 " does not belong "
                            "there (after %" PRId64 ")\n", r->s3.bucket, o->key, rec.offset,
                    prev);
            rc = -1;
        } else if (rec.offset <= *last) {
            pt->skipped++;
        } else if (produce(r, t, pt->partition, &rec) != 0) {
            rc = -1;
        } else {
            for (size_t s = 0; s < t->nskips; s++)
                if (t->skips[s].partition == pt->partition && t->skips[s].offset == rec.offset)
                    t->skips[s].moved_to = pt->restored; /* records before it in the topic */
            *last = rec.offset;
            if (pt->first < 0)
                pt->first = rec.offset;
            pt->last = rec.offset;
            pt->restored++;
        }
        prev = rec.offset;
        n++;
        if (rc == 0 && r->failed)
            rc = -1; /* said at the end */
    }
    if (rc == 0 && e != EOF) {
        fprintf(stderr, "kchatctl: %s/%s: damaged after %lld records: %s\n", r->s3.bucket,
                o->key, n, avro_strerror());
        rc = -1;
    } else if (rc == 0 && prev != o->last) {
        fprintf(stderr, "kchatctl: %s/%s ends at offset %" PRId64 ", its name at %" PRId64
                        ": cut short\n", r->s3.bucket, o->key, prev, o->last);
        rc = -1;
    }
    if (have_value)
        avro_value_decref(&v);
    if (iface)
        avro_value_iface_decref(iface);
    if (schema)
        avro_schema_decref(schema);
    if (rd)
        (void)avro_file_reader_close(rd);
    fclose(f);
    return rc;
}

/* ---- event_skips ---- */

static int pg_ok(PGconn *c, PGresult *res, ExecStatusType want, const char *what)
{
    int ok = PQresultStatus(res) == want;
    if (!ok)
        fprintf(stderr, "kchatctl: %s: %s", what, PQerrorMessage(c));
    PQclear(res);
    return ok ? 0 : -1;
}

/* The rows of event_skips of each topic. 0, or -1 (said). */
static int skips_read(PGconn *c, topic_t *topics, int nt)
{
    for (int i = 0; i < nt; i++) {
        const char *p[] = {topics[i].name};
        PGresult *res = PQexecParams(c,
                                     "SELECT partition, \"offset\", reason FROM event_skips "
                                     "WHERE topic = $1 ORDER BY 1, 2",
                                     1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return pg_ok(c, res, PGRES_TUPLES_OK, "reading event_skips");
        int n = PQntuples(res);
        topics[i].skips = n ? kc_xcalloc((size_t)n, sizeof(skip_t)) : NULL;
        for (int k = 0; k < n; k++) {
            skip_t *s = &topics[i].skips[topics[i].nskips++];
            s->partition = (int32_t)strtol(PQgetvalue(res, k, 0), NULL, 10);
            s->offset = strtoll(PQgetvalue(res, k, 1), NULL, 10);
            s->moved_to = -1;
            s->reason = kc_xstrdup(PQgetvalue(res, k, 2));
        }
        PQclear(res);
    }
    return 0;
}

/* Replaces the destinations' rows by the skips at their new offsets, in one transaction.
 * Returns how many were written, or -1 (said). */
static long long skips_write(PGconn *c, topic_t *topics, int nt)
{
    if (pg_ok(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, "BEGIN") != 0)
        return -1;
    long long n = 0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < nt; i++) {
        const char *d[] = {topics[i].dest};
        rc = pg_ok(c, PQexecParams(c, "DELETE FROM event_skips WHERE topic = $1", 1, NULL, d,
                                   NULL, NULL, 0),
                   PGRES_COMMAND_OK, "clearing event_skips");
        for (size_t k = 0; rc == 0 && k < topics[i].nskips; k++) {
            const skip_t *s = &topics[i].skips[k];
            if (s->moved_to < 0) {
                fprintf(stderr, "kchatctl: warning: %s [%" PRId32 "] offset %" PRId64
                                " is skipped but not in the archive\n",
                        topics[i].name, s->partition, s->offset);
                continue;
            }
            char part[16], off[24];
            snprintf(part, sizeof(part), "%" PRId32, s->partition);
            snprintf(off, sizeof(off), "%" PRId64, s->moved_to);
            const char *p[] = {topics[i].dest, part, off, s->reason};
            rc = pg_ok(c, PQexecParams(c,
                                       "INSERT INTO event_skips (topic, partition, \"offset\", "
                                       "reason) VALUES ($1, $2::int, $3::bigint, $4)",
                                       4, NULL, p, NULL, NULL, 0),
                       PGRES_COMMAND_OK, "writing event_skips");
            n += rc == 0;
        }
    }
    if (rc == 0)
        rc = pg_ok(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
    else
        PQclear(PQexec(c, "ROLLBACK"));
    return rc == 0 ? n : -1;
}

/* ---- the command ---- */

/* Splits the topic list into t (names pointing into list, which it edits). The count, or -1
 * (said). */
static int parse_topics(const ctl_cfg_t *cfg, char *list, topic_t *t)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        size_t len = strlen(p);
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= strcmp(t[i].name, p) == 0;
        if (n == TOPICS_MAX || dup || len == 0 || strlen(cfg->restore_topic_prefix) + len > 249 ||
            !kc_str_only(p, "._-") || strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            fprintf(stderr, "kchatctl: --restore-topics: '%s' %s\n", p,
                    n == TOPICS_MAX ? "is one too many (at most 64)"
                    : dup           ? "is named twice"
                                    : "is not a topic name (letters, digits and ._-; with "
                                      "--restore-topic-prefix at most 249 characters)");
            return -1;
        }
        t[n++].name = p;
    }
    if (n == 0)
        fprintf(stderr, "kchatctl: --restore-topics names no topic\n");
    return n ? n : -1;
}

int ctl_restore(const ctl_cfg_t *cfg)
{
    restore_t r = {.s3 = {cfg->s3_endpoint, cfg->s3_bucket, cfg->s3_region, cfg->s3_access_key,
                          cfg->s3_secret_key},
                   .prefix = cfg->archive_prefix};
    char err[512];
    if (kc_s3_cfg_check(&r.s3, err, sizeof(err)) != 0) {
        fprintf(stderr, "kchatctl: the object store: %s\n", err);
        return 2;
    }
    if (!kc_str_only(cfg->archive_prefix, "._/-")) {
        fprintf(stderr, "kchatctl: --archive-prefix may hold only letters, digits and ._/-\n");
        return 2;
    }
    if (!kc_str_only(cfg->restore_topic_prefix, "._-")) {
        fprintf(stderr, "kchatctl: --restore-topic-prefix may hold only letters, digits and "
                        "._-\n");
        return 2;
    }
    rd_kafka_conf_t *probe = rd_kafka_conf_new();
    int conn = kc_kafka_conf_connect(probe, &cfg->kafka, err, sizeof(err));
    rd_kafka_conf_destroy(probe);
    if (conn != 0) {
        fprintf(stderr, "kchatctl: %s\n", err);
        return 2;
    }
    char *list = kc_xstrdup(cfg->restore_topics);
    topic_t topics[TOPICS_MAX] = {0};
    int nt = parse_topics(cfg, list, topics);
    if (nt < 0) {
        free(list);
        return 2;
    }

    /* The producer: idempotent with acks=all (kc_kafka_producer_new's own), so that retries
     * keep each partition's order; a bounded queue; never a topic made by asking for it. */
    kc_kafka_opts_t ko = {.conn = &cfg->kafka, .client_id = "kchatctl-restore",
                          .dr_msg_cb = on_delivery, .opaque = &r};
    const char *const over[] = {"enable.idempotence", "true",
                                "acks", "all",
                                "linger.ms", "20",
                                "queue.buffering.max.kbytes", "65536",
                                "allow.auto.create.topics", "false",
                                NULL};
    int rc = 0;
    r.rk = kc_kafka_producer_new(&ko, over, err, sizeof(err));
    if (!r.rk) {
        fprintf(stderr, "kchatctl: %s\n", err);
        rc = -1;
    }

    /* Everything is checked before the first record is written. */
    size_t total = 0;
    for (int i = 0; rc == 0 && i < nt; i++) {
        topic_t *t = &topics[i];
        kc_buf_t d = {0};
        kc_buf_printf(&d, "%s%s", cfg->restore_topic_prefix, t->name);
        t->dest = kc_buf_steal(&d);
        rc = list_topic(&r, t);
        if (rc == 0 && t->nobjs == 0)
            fprintf(stderr, "kchatctl: warning: nothing archived under %s/%s%s/\n",
                    r.s3.bucket, r.prefix, t->name);
        if (rc == 0)
            rc = check_dest(&r, t);
        total += t->nobjs;
    }
    PGconn *pg = NULL;
    if (rc == 0 && cfg->restore_skips) {
        pg = PQconnectdb(cfg->pg.dsn);
        if (PQstatus(pg) != CONNECTION_OK) {
            fprintf(stderr, "kchatctl: Postgres: %s", PQerrorMessage(pg));
            rc = -1;
        } else {
            rc = skips_read(pg, topics, nt);
        }
    }
    if (rc == 0 && total == 0) {
        fprintf(stderr, "kchatctl: the archive under %s/%s holds nothing of %s\n", r.s3.bucket,
                r.prefix, cfg->restore_topics);
        rc = -1;
    }

    for (int i = 0; rc == 0 && i < nt; i++) {
        topic_t *t = &topics[i];
        printf("%s -> %s: %zu objects in %zu partitions\n", t->name, t->dest, t->nobjs,
               t->nparts);
        fflush(stdout);
        for (size_t j = 0; rc == 0 && j < t->nparts; j++) {
            part_t *pt = &t->parts[j];
            int64_t last = -1;
            for (size_t k = 0; rc == 0 && k < pt->n; k++)
                rc = restore_object(&r, t, pt, &t->objs[pt->from + k], &last);
        }
    }
    if (rc == 0) {
        rd_kafka_resp_err_t e = rd_kafka_flush(r.rk, FLUSH_TIMEOUT_MS);
        if (e && !r.failed) {
            fprintf(stderr, "kchatctl: %lld records not delivered within %d s: %s\n",
                    r.produced - r.delivered, FLUSH_TIMEOUT_MS / 1000, rd_kafka_err2str(e));
            rc = -1;
        }
    }
    if (r.failed) {
        fprintf(stderr, "kchatctl: %lld records could not be written; the first: %s\n", r.failed,
                r.error);
        rc = -1;
    } else if (rc == 0 && r.delivered != r.produced) {
        fprintf(stderr, "kchatctl: %lld records written, %lld delivered\n", r.produced,
                r.delivered);
        rc = -1;
    }
    if (rc == 0 && pg) {
        long long moved = skips_write(pg, topics, nt);
        if (moved < 0)
            rc = -1;
        else
            printf("event_skips: %lld records passed over, at their new offsets\n", moved);
    }
    if (rc == 0) {
        printf("%-32s %9s %7s %10s %8s %20s %20s\n", "topic", "partition", "objects", "restored",
               "skipped", "first offset", "last offset");
        for (int i = 0; i < nt; i++)
            for (size_t j = 0; j < topics[i].nparts; j++) {
                const part_t *pt = &topics[i].parts[j];
                char first[24] = "-", last[24] = "-";
                if (pt->first >= 0) {
                    snprintf(first, sizeof(first), "%" PRId64, pt->first);
                    snprintf(last, sizeof(last), "%" PRId64, pt->last);
                }
                printf("%-32s %9" PRId32 " %7zu %10lld %8lld %20s %20s\n", topics[i].dest,
                       pt->partition, pt->n, pt->restored, pt->skipped, first, last);
            }
        printf("restored %lld records; consumers of the restored topics start from the "
               "beginning\n", r.delivered);
    } else if (r.produced > 0) {
        fprintf(stderr, "kchatctl: the restore failed after %lld records were given to the "
                        "producer (%lld of them delivered): delete the destination topics and "
                        "make them again before the next attempt\n",
                r.produced, r.delivered);
    }

    if (r.rk && rc != 0) {
        /* What is still queued is dropped, its reports served. */
        (void)rd_kafka_purge(r.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        (void)rd_kafka_flush(r.rk, 5000);
    }
    for (int i = 0; i < nt; i++) {
        if (topics[i].rkt)
            rd_kafka_topic_destroy(topics[i].rkt);
        for (size_t k = 0; k < topics[i].nobjs; k++)
            free(topics[i].objs[k].key);
        free(topics[i].objs);
        free(topics[i].parts);
        free(topics[i].dest);
        for (size_t k = 0; k < topics[i].nskips; k++)
            free(topics[i].skips[k].reason);
        free(topics[i].skips);
    }
    kc_kafka_destroy(r.rk);
    if (pg)
        PQfinish(pg);
    free(list);
    return rc == 0 ? 0 : 1;
}
