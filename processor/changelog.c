/* changelog.c - restoring a partition's state from its checkpoints and the events since. */
#include "changelog.h"

#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define BATCH 1000

void proc_key_convo(kc_buf_t *key, const char *convo_id)
{
    kc_buf_reset(key);
    kc_buf_putc(key, 'c');
    kc_buf_puts(key, convo_id);
}

void proc_key_dedupe(kc_buf_t *key, const unsigned char hash[PROC_DEDUPE_KEY_BYTES])
{
    kc_buf_reset(key);
    kc_buf_putc(key, 'd');
    kc_buf_append(key, hash, PROC_DEDUPE_KEY_BYTES);
}

void proc_key_block(kc_buf_t *key, uint64_t id)
{
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(id >> (56 - 8 * i));
    kc_buf_reset(key);
    kc_buf_putc(key, 'b');
    kc_buf_append(key, be, sizeof(be));
}

void proc_key_checkpoint(kc_buf_t *key)
{
    kc_buf_reset(key);
    kc_buf_putc(key, 'o');
}

/* What phase 1 learnt of a partition. */
typedef struct {
    int32_t partition;
    long long records;
    int has_checkpoint;
    int64_t checkpoint_offset;
} part_info_t;

static uint64_t block_id(const char *key)
{
    uint64_t id = 0;
    for (int i = 1; i <= 8; i++)
        id = (id << 8) | (unsigned char)key[i];
    return id;
}

static void bad(const rd_kafka_message_t *m, const char *why)
{
    kc_log_kv(KC_LOG_ERROR,
              KC_FIELDS(KC_INT("partition", m->partition), KC_INT("offset", m->offset)),
              "state record skipped: %s", why);
}

/* Version 4's owners and admins, after the members. */
static void rd_roles(proc_part_t *p, kc_avro_rd_t *r, const char *id, size_t idlen)
{
    for (kc_role_t role = KC_ROLE_OWNER; role <= KC_ROLE_ADMIN && !r->err; role++) {
        for (int64_t blk; !r->err && (blk = kc_avro_rd_block(r)) > 0;) {
            for (int64_t i = 0; i < blk && !r->err; i++) {
                kc_str_t u = kc_avro_rd_str(r);
                if (!r->err && proc_part_restore_role(p, id, idlen, u.p, u.n, role) != 0)
                    r->err = 1; /* a role for someone who is not a member */
            }
        }
    }
}

static void rd_convo(proc_part_t *p, kc_avro_rd_t *r, const char *id, size_t idlen, int version)
{
    int64_t seq = kc_avro_rd_long(r);
    const char *ids[64];
    size_t lens[64], n = 0;
    const char **many = NULL;
    size_t *many_lens = NULL, cap = 0;
    for (int64_t blk; !r->err && (blk = kc_avro_rd_block(r)) > 0;) {
        for (int64_t i = 0; i < blk && !r->err; i++) {
            kc_str_t s = kc_avro_rd_str(r);
            if (n < 64 && !many) {
                ids[n] = s.p;
                lens[n++] = s.n;
                continue;
            }
            if (!many) {
                cap = 256;
                many = kc_xcalloc(cap, sizeof(char *));
                many_lens = kc_xcalloc(cap, sizeof(size_t));
                memcpy(many, ids, n * sizeof(char *));
                memcpy(many_lens, lens, n * sizeof(size_t));
            }
            if (n == cap) {
                cap *= 2;
                many = kc_xrealloc(many, cap * sizeof(char *));
                many_lens = kc_xrealloc(many_lens, cap * sizeof(size_t));
            }
            many[n] = s.p;
            many_lens[n++] = s.n;
        }
    }
    if (!r->err) {
        /* Members as stored may not be NUL-terminated: restore_convo copies them by length. */
        proc_part_restore_convo(p, id, idlen, seq, many ? many : ids, many ? many_lens : lens,
                                n);
        if (version >= 4)
            rd_roles(p, r, id, idlen);
        else if (n) /* before roles: the creator was the first member, kept as the owner */
            (void)proc_part_restore_role(p, id, idlen, many ? many[0] : ids[0],
                                         many ? many_lens[0] : lens[0], KC_ROLE_OWNER);
    }
    free(many);
    free(many_lens);
}

static int64_t newest_of(const proc_part_t *p, int64_t floor)
{
    (void)p;
    return floor;
}

/* Reads a DedupeEntry (version 1: seq_no and created_at only) or the entries of a block. */
static void rd_entry(proc_part_t *p, kc_avro_rd_t *r, const unsigned char *hash, int version,
                     int in_block, int64_t *newest)
{
    int64_t seq = kc_avro_rd_long(r), created = kc_avro_rd_long(r);
    kc_str_t convo = {"", 0}, author = {"", 0};
    int deleted = 0;
    if (in_block || version >= 2) {
        convo = kc_avro_rd_str(r);
        author = kc_avro_rd_str(r);
        deleted = kc_avro_rd_bool(r);
    }
    /* Version 5: the message's reactions, read after the entry is added. */
    kc_avro_rd_t reactions = *r;
    if (in_block && version >= 5)
        for (int64_t blk; !r->err && (blk = kc_avro_rd_block(r)) > 0;)
            for (int64_t i = 0; i < blk && !r->err; i++) {
                (void)kc_avro_rd_str(r);
                (void)kc_avro_rd_str(r);
            }
    if (r->err)
        return;
    char c[1100], a[1100];
    kc_strlcpyf(c, sizeof(c), "%.*s", (int)convo.n, convo.p);
    kc_strlcpyf(a, sizeof(a), "%.*s", (int)author.n, author.p);
    proc_part_add_dedupe(p, hash, seq, created, c, a, deleted);
    proc_dd_t *d = proc_part_newest(p);
    d->legacy = !in_block;
    if (in_block && version >= 5)
        for (int64_t blk; (blk = kc_avro_rd_block(&reactions)) > 0;)
            for (int64_t i = 0; i < blk; i++) {
                kc_str_t u = kc_avro_rd_str(&reactions), e = kc_avro_rd_str(&reactions);
                if (d->nreactions < PROC_MAX_REACTIONS && kc_chat_reaction_valid(e.p, e.n))
                    proc_dd_set_reaction(d, u.p, u.n, e.p, e.n);
            }
    if (created > *newest)
        *newest = created;
}

static void apply_state(proc_part_t *p, part_info_t *info, const kc_schemas_t *s,
                        const rd_kafka_message_t *m)
{
    const char *key = m->key;
    info->records++;
    if (m->key_len < 1 || (key[0] != 'c' && key[0] != 'd' && key[0] != 'b' && key[0] != 'o') ||
        (key[0] == 'c' && m->key_len < 2) ||
        (key[0] == 'd' && m->key_len != 1 + PROC_DEDUPE_KEY_BYTES) ||
        (key[0] == 'b' && m->key_len != 9) || (key[0] == 'o' && m->key_len != 1)) {
        bad(m, "bad key");
        return;
    }
    if (!m->payload) {
        if (key[0] == 'c' || key[0] == 'd')
            proc_part_forget(p, key + 1, m->key_len - 1, key[0] == 'c');
        else if (key[0] == 'b')
            (void)0; /* its entries expire by their age */
        return;
    }
    kc_avro_rd_t r;
    int version;
    char err[256];
    if (kc_avro_open(s, m->payload, m->len, "chat.processor.state-value", &r, &version, err,
                     sizeof(err)) != 0) {
        bad(m, err);
        return;
    }
    int branch = kc_avro_rd_branch(&r, version >= 3 ? 4 : 2);
    int want = key[0] == 'c' ? 0 : key[0] == 'd' ? 1 : key[0] == 'b' ? 2 : 3;
    if (r.err || branch != want) {
        bad(m, "the record does not match its key");
        return;
    }
    int64_t newest = 0;
    switch (branch) {
    case 0: rd_convo(p, &r, key + 1, m->key_len - 1, version); break;
    case 1: rd_entry(p, &r, (const unsigned char *)key + 1, version, 0, &newest); break;
    case 2:
        for (int64_t blk; !r.err && (blk = kc_avro_rd_block(&r)) > 0;) {
            for (int64_t i = 0; i < blk && !r.err; i++) {
                if (r.end - r.p < PROC_DEDUPE_KEY_BYTES) {
                    r.err = 1;
                    break;
                }
                const unsigned char *hash = r.p;
                r.p += PROC_DEDUPE_KEY_BYTES;
                rd_entry(p, &r, hash, version, 1, &newest);
            }
        }
        if (!r.err)
            proc_part_note_block(p, block_id(key), newest_of(p, newest));
        break;
    case 3:
        info->checkpoint_offset = kc_avro_rd_long(&r);
        (void)kc_avro_rd_long(&r);
        info->has_checkpoint = !r.err;
        break;
    }
    if (r.err || r.p != r.end)
        bad(m, "malformed record");
}

static int find(const int32_t *partitions, int n, int32_t part)
{
    for (int i = 0; i < n; i++)
        if (partitions[i] == part)
            return i;
    return -1;
}

typedef void (*apply_fn)(void *ctx, int i, const rd_kafka_message_t *m);

/* Reads the assigned partitions until each reached its end. */
static int read_to_end(rd_kafka_t *rk, const int32_t *partitions, int n, int64_t *ends,
                       apply_fn apply, void *ctx, uint64_t t0, int timeout_ms,
                       const volatile int *cancel, const char *topic, char *errstr,
                       size_t errstr_size)
{
    int left = n;
    unsigned char *done = kc_xcalloc((size_t)(n ? n : 1), 1);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *msgs[BATCH];
    int rc = 0;
    while (left > 0) {
        if ((kc_mono_ns() - t0) / 1000000 > (uint64_t)timeout_ms) {
            kc_strlcpyf(errstr, errstr_size, "restoring took longer than %d ms (reading %s)",
                        timeout_ms, topic);
            rc = -1;
            break;
        }
        if (cancel && *cancel) {
            kc_strlcpyf(errstr, errstr_size, "restore cancelled");
            rc = -1;
            break;
        }
        ssize_t got = q ? rd_kafka_consume_batch_queue(q, 200, msgs, BATCH) : -1;
        if (got < 0) {
            kc_strlcpyf(errstr, errstr_size, "cannot read %s", topic);
            rc = -1;
            break;
        }
        for (ssize_t k = 0; k < got; k++) {
            rd_kafka_message_t *m = msgs[k];
            int i = find(partitions, n, m->partition);
            if (i < 0 || done[i]) {
                /* not ours, or after its end */
            } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                done[i] = 1;
                if (ends)
                    ends[i] = m->offset;
                left--;
            } else if (m->err) {
                kc_log_warn("restore: %s", rd_kafka_message_errstr(m));
            } else {
                apply(ctx, i, m);
            }
            rd_kafka_message_destroy(m);
        }
    }
    if (q)
        rd_kafka_queue_destroy(q);
    free(done);
    return rc;
}

typedef struct {
    const kc_schemas_t *s;
    proc_part_t **out;
    part_info_t *info;
    long long events;
} restore_ctx_t;

static void apply_state_cb(void *arg, int i, const rd_kafka_message_t *m)
{
    restore_ctx_t *x = arg;
    apply_state(x->out[i], &x->info[i], x->s, m);
}

static void apply_event_cb(void *arg, int i, const rd_kafka_message_t *m)
{
    restore_ctx_t *x = arg;
    kc_chat_event_t ev;
    char err[256];
    if (!m->payload || kc_chat_event_decode(x->s, m->payload, m->len, &ev, err, sizeof(err))) {
        kc_log_kv(KC_LOG_ERROR,
                  KC_FIELDS(KC_INT("partition", m->partition), KC_INT("offset", m->offset)),
                  "event skipped while restoring: %s", m->payload ? err : "empty");
        return;
    }
    proc_part_replay(x->out[i], &ev);
    x->out[i]->events_since++;
    x->events++;
}

int proc_restore(rd_kafka_t *rk, const kc_schemas_t *s, const char *state_topic,
                 const char *events_topic, const int32_t *partitions, int n, proc_part_t **out,
                 int timeout_ms, const volatile int *cancel, proc_restore_stats_t *stats,
                 char *errstr, size_t errstr_size)
{
    uint64_t t0 = kc_mono_ns();
    part_info_t *info = kc_xcalloc((size_t)(n ? n : 1), sizeof(part_info_t));
    int64_t *ends = kc_xcalloc((size_t)(n ? n : 1), sizeof(int64_t));
    restore_ctx_t x = {.s = s, .out = out, .info = info};
    int rc = 0;
    for (int i = 0; i < n; i++) {
        out[i] = proc_part_new(partitions[i]);
        info[i].partition = partitions[i];
    }
    /* Phase 1: the checkpoints. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n ? n : 1);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, state_topic, partitions[i])->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = n ? rd_kafka_assign(rk, l) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        kc_strlcpyf(errstr, errstr_size, "cannot read %s: %s", state_topic, rd_kafka_err2str(err));
        rc = -1;
    }
    if (rc == 0 && n)
        rc = read_to_end(rk, partitions, n, NULL, apply_state_cb, &x, t0, timeout_ms, cancel,
                         state_topic, errstr, errstr_size);
    long long records = 0;
    for (int i = 0; i < n; i++)
        records += info[i].records;
    /* Phase 2: the events since each checkpoint. */
    if (rc == 0 && n) {
        l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++) {
            proc_part_mark_saved(out[i]);
            int64_t from = info[i].has_checkpoint ? info[i].checkpoint_offset
                           : info[i].records       ? RD_KAFKA_OFFSET_END
                                                   : RD_KAFKA_OFFSET_BEGINNING;
            rd_kafka_topic_partition_list_add(l, events_topic, partitions[i])->offset = from;
        }
        err = rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
            kc_strlcpyf(errstr, errstr_size, "cannot read %s: %s", events_topic,
                        rd_kafka_err2str(err));
            rc = -1;
        } else {
            rc = read_to_end(rk, partitions, n, ends, apply_event_cb, &x, t0, timeout_ms,
                             cancel, events_topic, errstr, errstr_size);
        }
    }
    if (n && rd_kafka_assign(rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR)
        kc_log_warn("restore: unassign failed");
    if (rc != 0) {
        for (int i = 0; i < n; i++) {
            proc_part_destroy(out[i]);
            out[i] = NULL;
        }
    } else {
        uint64_t now = kc_mono_ns();
        for (int i = 0; i < n; i++) {
            out[i]->events_end = ends[i];
            out[i]->checkpoint_ns = now;
        }
        stats->records = records;
        stats->events = x.events;
        stats->seconds = (double)(kc_mono_ns() - t0) / 1e9;
    }
    free(info);
    free(ends);
    return rc;
}
