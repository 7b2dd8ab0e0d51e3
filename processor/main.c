/* kchat-processor - chat.commands in; chat.events and chat.deliveries out, in one Kafka
 * transaction per batch together with the consumed offsets, and now and then a checkpoint of
 * its state.
 *
 * Pipeline: command.c decodes a record; state.c applies the rules (seq_no, dedupe,
 * membership); output.c builds the event, the delivery batches and the checkpoint records;
 * route.c looks the recipients up; this file drives the batches and transactions (group
 * commit: a batch closes as soon as the previous transaction has committed, committer.c
 * commits it on a thread of its own while the next batch fills), the rebalances (restore on
 * assign, on restorer.c's thread, commit on revoke) and recovery (an aborted transaction
 * throws the in-memory state away, restores it and rewinds the input to the committed
 * offsets, so seq_no neither skips nor repeats).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "changelog.h"
#include "command.h"
#include "committer.h"
#include "kchat/app.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/schema_registry.h"
#include "kchat/redis.h"
#include "kchat/util.h"
#include "output.h"
#include "restorer.h"
#include "route.h"
#include "state.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_redis_cfg_t redis;
    long long route_max_lookups;
    char *group_id;
    char *instance_id;
    char *schemas_dir;
    kc_sr_cfg_t schema_registry;
    char *commands_topic, *events_topic, *deliveries_topic, *state_topic, *dlq_topic;
    long long linger_ms;
    long long producers;
    long long batch_max;
    long long checkpoint_interval_ms;
    long long checkpoint_events;
    long long transaction_timeout_ms;
    long long restore_timeout_ms;
    long long session_timeout_ms;
    long long fetch_wait_ms, fetch_min_bytes;
    proc_limits_t lim;
} proc_cfg_t;

#define PROC_MAX_PRODUCERS 4

static const kc_cfg_opt_t proc_opts[] = {
    KC_CFG_COMMON(proc_cfg_t, common),
    KC_CFG_ADMIN(proc_cfg_t, common, "17095"),
    KC_CFG_KAFKA(proc_cfg_t, kafka),
    KC_CFG_REDIS(proc_cfg_t, redis),
    {"route-max-lookups", KC_CFG_INT, offsetof(proc_cfg_t, route_max_lookups), "20000", 0,
     1000000, "most recipients looked up in the presence registry per transaction (0: no "
              "fan-out; the others backfill)"},
    {"group-id", KC_CFG_STR, offsetof(proc_cfg_t, group_id), "kchat-processor", 1, 255,
     "consumer group of the processors"},
    {"instance-id", KC_CFG_STR, offsetof(proc_cfg_t, instance_id), "0", 1, 64,
     "stable name of this instance: its transactional.id is kchat-processor-<instance-id>, so a "
     "restarted instance fences its zombie"},
    KC_CFG_SCHEMAS_DIR(proc_cfg_t, schemas_dir),
    KC_CFG_SCHEMA_REGISTRY(proc_cfg_t, schema_registry),
    KC_CFG_COMMANDS_TOPIC(proc_cfg_t, commands_topic, "read from"),
    KC_CFG_EVENTS_TOPIC(proc_cfg_t, events_topic, "written to"),
    KC_CFG_DELIVERIES_TOPIC(proc_cfg_t, deliveries_topic, "written to"),
    {"state-topic", KC_CFG_STR, offsetof(proc_cfg_t, state_topic), "chat.processor.state", 1, 249,
     "compacted topic of the processor's state checkpoints"},
    {"dlq-topic", KC_CFG_STR, offsetof(proc_cfg_t, dlq_topic), "chat.commands.dlq", 1, 249,
     "topic of the commands that cannot be read"},
    {"linger-ms", KC_CFG_INT, offsetof(proc_cfg_t, linger_ms), "1", 0, 1000,
     "a batch waits at least this long after its first command before its transaction starts "
     "(it starts once the previous one has committed); the fetch's wait gathers the batch, this "
     "only lets a fetch's commands all arrive"},
    {"producers", KC_CFG_INT, offsetof(proc_cfg_t, producers), "2", 1, PROC_MAX_PRODUCERS,
     "transactional producers taking turns (kchat-processor-<instance-id>, then -1, -2...)"},
    {"batch-max", KC_CFG_INT, offsetof(proc_cfg_t, batch_max), "2000", 1, 100000,
     "most commands in one transaction"},
    {"checkpoint-interval-ms", KC_CFG_INT, offsetof(proc_cfg_t, checkpoint_interval_ms), "30000",
     100, 3600000,
     "how often a partition's changed state is checkpointed to the state topic (a restore "
     "replays the events since)"},
    {"checkpoint-events", KC_CFG_INT, offsetof(proc_cfg_t, checkpoint_events), "20000", 1,
     10000000, "a partition is checkpointed sooner once it has written this many events since"},
    {"transaction-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, transaction_timeout_ms), "30000",
     1000, 900000, "the broker aborts a transaction open this long (a dead instance's)"},
    {"restore-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, restore_timeout_ms), "300000", 1000,
     3600000, "longest the restore of the partitions assigned at once may take"},
    {"session-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, session_timeout_ms), "10000", 6000,
     300000, "how long the group waits for a silent instance before moving its partitions"},
    {"fetch-wait-ms", KC_CFG_INT, offsetof(proc_cfg_t, fetch_wait_ms), "18", 0, 500,
     "the broker holds a fetch of commands up to this long for fetch-min-bytes to arrive: what "
     "one fetch brings is a batch, so this sets the transactions' size for a little latency"},
    {"fetch-min-bytes", KC_CFG_INT, offsetof(proc_cfg_t, fetch_min_bytes), "65536", 1, 10485760,
     "bytes of commands a fetch waits for (at most fetch-wait-ms)"},
    {"max-content-bytes", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_content_bytes),
     KC_CHAT_MAX_CONTENT_BYTES, 1, KC_CHAT_MAX_CONTENT_BYTES_TOP, "largest message text accepted"},
    {"max-members", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_members), KC_CHAT_MAX_MEMBERS, 2,
     KC_CHAT_MAX_MEMBERS_TOP,
     "most members of a conversation"},
    {"max-id-bytes", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_id_bytes), "128", 8, 1024,
     "longest conversation, user or client message id"},
    {"dedupe-window-ms", KC_CFG_INT, offsetof(proc_cfg_t, lim.dedupe_window_ms), "86400000", 1000,
     2592000000LL, "how long a retry is recognised (default 24 h)"},
    {"edit-window-ms", KC_CFG_INT, offsetof(proc_cfg_t, lim.edit_window_ms), "86400000", 1000,
     2592000000LL, "how old a message may be to be edited, deleted or reacted to (default 24 h)"},
};

#define POLL_BATCH 500
/* A Delivery record carries at most about this much: larger batches take several. */
#define DELIVERY_RECORD_BYTES (256 * 1024)
/* Dedupe entries per DedupeBlock record. */
#define BLOCK_ENTRIES 2000

enum { TOPIC_EVENTS, TOPIC_DELIVERIES, TOPIC_STATE, TOPIC_DLQ, NTOPICS };

/* A record of the batch, kept until the batch's transaction begins. */
typedef struct {
    int topic;
    int32_t partition;
    size_t key_off, key_len, val_off, val_len;
    int tombstone;
    rd_kafka_headers_t *hdrs; /* owned until produced */
} rec_t;

typedef enum { CLOSE_NONE, CLOSE_ROUTING, CLOSE_FLUSHING } close_state_t;

/* A batch: the commands applied since it opened, their records buffered until its
 * transaction begins, the offsets it commits and the deliveries it routes. Two take turns:
 * one fills while the other closes (routes, writes, then hands its transaction to the
 * committer). */
typedef struct {
    rec_t *recs;
    size_t nrecs, cap;
    kc_buf_t arena;
    int64_t *next_offset; /* by partition, -1 when untouched */
    long long commands;
    uint64_t started_ns;
    proc_router_t *router;
} batch_t;

typedef struct {
    proc_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    /* Transactions take turns over these producers (one at a time, committed in order): a
     * producer's next transaction starts a full turn after its last commit, when the broker
     * has finished writing that commit's markers, so adding partitions is not refused with
     * CONCURRENT_TRANSACTIONS and retried 20 ms later. */
    kc_kafka_bound_t producers[PROC_MAX_PRODUCERS];
    /* Each producer's handles of the topics it writes, held for its whole life: librdkafka
     * drops a topic no handle holds once unused, and meets it again as unknown, holding its
     * records about a second for the metadata (a state checkpoint every 30 s would pay it). */
    rd_kafka_topic_t *rkts[PROC_MAX_PRODUCERS][NTOPICS];
    int nproducers, cur;
    rd_kafka_t *restore_rk;
    proc_restorer_t *restorer;
    proc_committer_t *committer;
    kc_redis_t *redis;
    kc_schemas_t *schemas;
    proc_ids_t ids;
    const char *topics[NTOPICS];
    int32_t npartitions, nslots;
    /* by command partition */
    proc_part_t **parts;  /* NULL when not assigned or being restored */
    int *assigned;        /* the consumer holds it */
    int *restoring;       /* waiting for (or in) a restore */
    uint64_t *gen;        /* bumped each time a partition's restore is (re)queued */
    uint64_t *deferred;   /* the generation for which the partition was sought back */
    batch_t batches[2];
    batch_t *open; /* the batch being filled */
    batch_t *shut; /* the batch being closed (routed, produced, written), or NULL */
    close_state_t closing;
    size_t outstanding; /* records produced whose delivery report is not in */
    int txn_broken;     /* a record of it was not written: it must abort */
    rd_kafka_topic_partition_list_t *txn_offsets;
    proc_router_stats_t routes_before;
    uv_timer_t linger_timer, expire_timer, checkpoint_timer;
    int timers_open;
    int failed;
    kc_buf_t key, val;
    proc_cmd_mem_t cmd_mem;
    kc_counter_t *consumed, *events, *duplicates, *commits, *aborts, *restored, *replayed;
    kc_counter_t *dead_letters, *delivery_records, *delivery_items, *checkpoints;
    kc_counter_t *route_lookups, *route_failures, *route_skipped;
    kc_histogram_t *commit_seconds, *restore_seconds, *batch_size;
    kc_histogram_t *input_delay, *route_seconds, *write_seconds;
    uint64_t route_started_ns, write_started_ns;
    double last_route_s, last_write_s; /* the stages of the transaction now committing */
    long long last_records;
    kc_gauge_t *conversations, *dedupe_entries, *restoring_gauge;
} proc_t;

static void fail(proc_t *p, const char *why);
static void serve_reports_for(proc_t *p, int timeout_ms);
static void serve_reports(proc_t *p);
static void flushed(proc_t *p);
static void maybe_close(proc_t *p);
static void commit_sync(proc_t *p);
static void recover(proc_t *p);

/* ---- the batches ---- */

static size_t arena_put(batch_t *b, const void *data, size_t len)
{
    size_t off = b->arena.len;
    if (len)
        kc_buf_append(&b->arena, data, len);
    return off;
}

static void batch_add(batch_t *b, int topic, int32_t partition, const void *key, size_t klen,
                      const void *val, size_t vlen, int tombstone, rd_kafka_headers_t *hdrs)
{
    if (b->nrecs == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->recs = kc_xrealloc(b->recs, b->cap * sizeof(rec_t));
    }
    rec_t *r = &b->recs[b->nrecs++];
    r->topic = topic;
    r->partition = partition;
    r->key_off = arena_put(b, key, klen);
    r->key_len = klen;
    r->val_off = arena_put(b, val, vlen);
    r->val_len = vlen;
    r->tombstone = tombstone;
    r->hdrs = hdrs;
}

static int batch_open(const batch_t *b)
{
    return b->nrecs > 0 || b->commands > 0;
}

static void batch_clear(proc_t *p, batch_t *b)
{
    for (size_t i = 0; i < b->nrecs; i++)
        if (b->recs[i].hdrs)
            rd_kafka_headers_destroy(b->recs[i].hdrs);
    b->nrecs = 0;
    kc_buf_reset(&b->arena);
    b->commands = 0;
    for (int32_t i = 0; b->next_offset && i < p->npartitions; i++)
        b->next_offset[i] = -1;
    if (b->router) {
        proc_router_cancel(b->router);
        proc_router_reset(b->router);
    }
}

static void batch_free(proc_t *p, batch_t *b)
{
    batch_clear(p, b);
    free(b->recs);
    kc_buf_free(&b->arena);
    free(b->next_offset);
    proc_router_destroy(b->router);
    memset(b, 0, sizeof(*b));
}

static void note_batch_start(batch_t *b)
{
    if (!batch_open(b))
        b->started_ns = kc_mono_ns();
}

/* ---- input ---- */

static void dead_letter(proc_t *p, const rd_kafka_message_t *m, const char *why)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    char src[512];
    kc_strlcpyf(src, sizeof(src), "%s/%d/%lld", rd_kafka_topic_name(m->rkt), (int)m->partition,
                (long long)m->offset);
    if (rd_kafka_header_add(h, "kchat-error", -1, why, -1) ||
        rd_kafka_header_add(h, "kchat-source", -1, src, -1)) {
        rd_kafka_headers_destroy(h);
        h = NULL;
    }
    batch_add(p->open, TOPIC_DLQ, RD_KAFKA_PARTITION_UA, m->key, m->key_len, m->payload, m->len,
              0, h);
    kc_counter_inc(p->dead_letters);
    kc_log_kv(KC_LOG_WARN,
              KC_FIELDS(KC_INT("partition", m->partition), KC_INT("offset", m->offset),
                        KC_STR("reason", why)),
              "command dead-lettered");
}

/* "gateway:<slot>" -> slot, or -1 for any other origin. */
static int32_t origin_slot(const proc_t *p, const char *origin)
{
    if (strncmp(origin, "gateway:", 8) != 0)
        return -1;
    char *end = NULL;
    long v = strtol(origin + 8, &end, 10);
    return end != origin + 8 && *end == '\0' && v >= 0 && v < p->nslots ? (int32_t)v : -1;
}

/* kchat_processor_rejections_total{reason}: one of proc_reject_reasons. */
static kc_counter_t *rejections(proc_t *p, const char *reason)
{
    const char *lbl[] = {"reason", reason, NULL};
    return kc_metrics_counter(p->app.metrics, "kchat_processor_rejections_total",
                              "Commands refused, by reason.", lbl);
}

static void handle(proc_t *p, proc_part_t *part, const rd_kafka_message_t *m)
{
    proc_cmd_t cmd;
    char err[256];
    if (!m->payload || proc_command_decode(p->schemas, m->payload, m->len, &p->cmd_mem, &cmd, err,
                                           sizeof(err)) != 0) {
        dead_letter(p, m, m->payload ? err : "empty record");
        return;
    }
    int64_t now = kc_now_ms();
    proc_outcome_t o;
    (void)proc_apply(part, &cmd, now, &p->cfg.lim, &o);
    kc_buf_reset(&p->val);
    if (o.kind != OUT_DUPLICATE) {
        proc_encode_event(&p->ids, &cmd, &o, now, &p->val);
        batch_add(p->open, TOPIC_EVENTS, part->partition, cmd.convo_id, cmd.convo_id_len,
                  p->val.data, p->val.len, 0, NULL);
        part->events_since++;
        kc_counter_inc(p->events);
        if (o.kind == OUT_REJECTED)
            kc_counter_inc(rejections(p, o.reason));
    } else {
        kc_counter_inc(p->duplicates);
    }
    /* The sender's gateway hears the outcome (with the event, for the sender's other
     * connections there); every member's gateways hear of what was accepted (those removed
     * too), in the same ordered list, so each slot gets this batch's events in order. */
    int32_t slot = origin_slot(p, cmd.origin);
    proc_ack_t ack;
    char smid[512];
    if (slot >= 0 && cmd.kind == CMD_SEND_MESSAGE)
        proc_ack_for(&cmd, &o, smid, &ack);
    const proc_ack_t *ackp = slot >= 0 && cmd.kind == CMD_SEND_MESSAGE ? &ack : NULL;
    const kc_buf_t *ev = o.kind == OUT_DUPLICATE ? NULL : &p->val;
    char sender[1100];
    kc_strlcpyf(sender, sizeof(sender), "%.*s", (int)cmd.sender_id_len, cmd.sender_id);
    char **all = NULL;
    char *const *to = NULL;
    size_t nto = 0;
    if (o.kind == OUT_ACCEPTED) {
        to = o.recipients;
        nto = o.nrecipients;
        if (cmd.kind == CMD_REMOVE_MEMBERS && o.nmembers) { /* those removed hear of it too */
            all = kc_xcalloc(nto + o.nmembers, sizeof(char *));
            memcpy(all, o.recipients, nto * sizeof(char *));
            memcpy(all + nto, o.members, o.nmembers * sizeof(char *));
            to = all;
            nto += o.nmembers;
        }
    }
    proc_router_add(p->open->router, cmd.convo_id, cmd.convo_id_len, ev, to, nto, sender,
                    cmd.sender_id_len, slot, ackp);
    free(all);
    proc_outcome_free(&o);
}

/* ---- checkpoints ---- */

typedef struct {
    proc_t *p;
    batch_t *b;
    proc_part_t *part;
    const proc_dd_t **entries;
    size_t n, bytes;
    int64_t newest;
} block_ctx_t;

/* A block stays well under the state topic's max.message.bytes (1 MiB), reactions and all. */
#define BLOCK_BYTES (512 * 1024)

static void flush_block(block_ctx_t *x)
{
    if (!x->n)
        return;
    proc_t *p = x->p;
    uint64_t id = x->part->next_block++;
    proc_key_block(&p->key, id);
    kc_buf_reset(&p->val);
    proc_encode_dedupe_block(&p->ids, x->entries, x->n, &p->val);
    batch_add(x->b, TOPIC_STATE, x->part->partition, p->key.data, p->key.len, p->val.data,
              p->val.len, 0, NULL);
    proc_part_note_block(x->part, id, x->newest);
    x->n = 0;
    x->bytes = 0;
    x->newest = 0;
}

static void add_entry(const proc_dd_t *d, void *arg)
{
    block_ctx_t *x = arg;
    size_t bytes = 64 + (d->msg_key ? d->msg_key_len : 0) + (d->author ? strlen(d->author) : 0);
    for (size_t i = 0; i < d->nreactions; i++)
        bytes += 4 + strlen(d->reactions[i].user) + strlen(d->reactions[i].emoji);
    if (x->n && x->bytes + bytes > BLOCK_BYTES)
        flush_block(x);
    x->bytes += bytes;
    x->entries[x->n++] = d;
    if (d->created_at > x->newest)
        x->newest = d->created_at;
    if (x->n == BLOCK_ENTRIES)
        flush_block(x);
}

/* Writes what changed in the partition since its last checkpoint, and the checkpoint. */
static void checkpoint(proc_t *p, batch_t *b, proc_part_t *part)
{
    size_t n;
    proc_convo_t **dirty = proc_part_take_dirty(part, &n);
    for (size_t k = 0; k < n; k++) {
        proc_key_convo(&p->key, dirty[k]->id);
        kc_buf_reset(&p->val);
        proc_encode_convo_state(&p->ids, dirty[k], &p->val);
        batch_add(b, TOPIC_STATE, part->partition, p->key.data, p->key.len, p->val.data,
                  p->val.len, 0, NULL);
    }
    const proc_dd_t *entries[BLOCK_ENTRIES];
    block_ctx_t x = {.p = p, .b = b, .part = part, .entries = entries};
    (void)proc_part_take_unsaved(part, add_entry, &x);
    flush_block(&x);
    proc_key_checkpoint(&p->key);
    kc_buf_reset(&p->val);
    proc_encode_checkpoint(&p->ids, part->events_end, kc_now_ms(), &p->val);
    batch_add(b, TOPIC_STATE, part->partition, p->key.data, p->key.len, p->val.data, p->val.len,
              0, NULL);
    part->events_since = 0;
    part->checkpoint_ns = kc_mono_ns();
    kc_counter_inc(p->checkpoints);
}

/* One partition per transaction at most: the one most overdue, if any is. Returns 1 when it
 * wrote one. */
static int checkpoint_due(proc_t *p, batch_t *b)
{
    uint64_t now = kc_mono_ns(), every = (uint64_t)p->cfg.checkpoint_interval_ms * 1000000u;
    proc_part_t *best = NULL;
    uint64_t best_age = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        proc_part_t *part = p->parts[i];
        if (!part)
            continue;
        int changed = part->events_since > 0 || part->ndirty > 0 || part->unsaved ||
                      part->nresave > 0;
        uint64_t age = now - part->checkpoint_ns;
        int due = (long long)part->events_since >= p->cfg.checkpoint_events ||
                  (changed && age >= every);
        if (due && (!best || age > best_age)) {
            best = part;
            best_age = age;
        }
    }
    if (best)
        checkpoint(p, b, best);
    return best != NULL;
}

/* A partition whose checkpoint is due while nothing else is written gets a transaction of
 * its own. */
static void on_checkpoint_timer(uv_timer_t *t)
{
    proc_t *p = t->data;
    if (p->failed || batch_open(p->open))
        return; /* the next transaction takes it */
    note_batch_start(p->open);
    if (checkpoint_due(p, p->open))
        maybe_close(p);
}

/* ---- closing a batch: routes, deliveries, its transaction ---- */

static void add_slot_records(void *arg, int32_t slot, const proc_item_t *items, size_t n)
{
    proc_t *p = arg;
    char key[16];
    int klen = snprintf(key, sizeof(key), "%d", (int)slot);
    size_t from = 0, size = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && (size == 0 || size + proc_item_size(&items[i]) <= DELIVERY_RECORD_BYTES)) {
            size += proc_item_size(&items[i]);
            continue;
        }
        kc_buf_reset(&p->val);
        proc_encode_deliveries(&p->ids, slot, items + from, i - from, &p->val);
        batch_add(p->shut, TOPIC_DELIVERIES, slot, key, (size_t)klen, p->val.data, p->val.len,
                  0, NULL);
        kc_counter_inc(p->delivery_records);
        kc_counter_add(p->delivery_items, (double)(i - from));
        if (i < n) {
            from = i;
            size = proc_item_size(&items[i]);
        }
    }
}

static void count_routes(proc_t *p, const proc_router_t *r, proc_router_stats_t before)
{
    proc_router_stats_t now = proc_router_stats(r);
    kc_counter_add(p->route_lookups, (double)(now.lookups - before.lookups));
    kc_counter_add(p->route_failures, (double)(now.failures - before.failures));
    kc_counter_add(p->route_skipped, (double)(now.skipped - before.skipped));
}

static rd_kafka_t *txn_rk(const proc_t *p)
{
    return p->producers[p->cur].rk;
}

/* Begins the transaction on the producer whose turn it is and produces the shut batch into
 * it. 0, or -1 when the transaction must abort (some record was refused). */
static int produce_batch(proc_t *p)
{
    batch_t *b = p->shut;
    rd_kafka_t *rk = txn_rk(p);
    rd_kafka_error_t *e = rd_kafka_begin_transaction(rk);
    if (e) {
        kc_log_error("cannot begin a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail(p, "cannot begin a transaction");
        return -1;
    }
    p->txn_broken = 0;
    p->outstanding = 0;
    for (size_t i = 0; i < b->nrecs; i++) {
        rec_t *r = &b->recs[i];
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_RKT(p->rkts[p->cur][r->topic]), RD_KAFKA_V_PARTITION(r->partition),
                RD_KAFKA_V_KEY(b->arena.data + r->key_off, r->key_len),
                RD_KAFKA_V_VALUE((r->tombstone ? NULL : b->arena.data + r->val_off),
                                 r->tombstone ? 0 : r->val_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(r->hdrs),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(r->topic + 1)), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                serve_reports_for(p, 10); /* reports are served on this thread */
                continue;
            }
            if (err) {
                kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("topic", p->topics[r->topic])),
                          "produce failed: %s", rd_kafka_err2str(err));
                p->txn_broken = 1;
            } else {
                r->hdrs = NULL; /* producev took them */
                p->outstanding++;
            }
            break;
        }
    }
    /* The offsets the transaction commits. */
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < p->npartitions; i++)
        if (b->next_offset[i] >= 0)
            rd_kafka_topic_partition_list_add(offs, p->cfg.commands_topic, i)->offset =
                b->next_offset[i];
    if (p->txn_offsets)
        rd_kafka_topic_partition_list_destroy(p->txn_offsets);
    p->txn_offsets = offs;
    kc_histogram_observe(p->batch_size, (double)b->commands);
    batch_clear(p, b);
    return p->txn_broken ? -1 : 0;
}

/* Aborts the transaction being written, at once: what is still queued is purged, what is in
 * flight is waited for (abort_transaction waits for every report, and reports are served on
 * this thread), then the broker is told. */
static void abort_now(proc_t *p, const char *why)
{
    kc_log_warn("%s: aborting the transaction", why);
    rd_kafka_resp_err_t perr = rd_kafka_purge(txn_rk(p), RD_KAFKA_PURGE_F_QUEUE);
    if (perr)
        kc_log_warn("cannot purge the transaction's records: %s", rd_kafka_err2str(perr));
    serve_reports(p);
    rd_kafka_error_t *e = rd_kafka_abort_transaction(txn_rk(p), 60000);
    kc_counter_inc(p->aborts);
    p->closing = CLOSE_NONE;
    p->shut = NULL;
    p->outstanding = 0;
    if (e) {
        kc_log_error("abort failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail(p, "cannot abort the transaction");
        return;
    }
    recover(p);
}

/* Every record of the shut batch's transaction is written: hand it to the committer; the
 * batch filling meanwhile may close once the commit is done (its records come after these
 * in every partition). */
static void flushed(proc_t *p)
{
    p->closing = CLOSE_NONE;
    p->shut = NULL;
    p->last_write_s = (double)(kc_mono_ns() - p->write_started_ns) / 1e9;
    kc_histogram_observe(p->write_seconds, p->last_write_s);
    rd_kafka_topic_partition_list_t *offs = p->txn_offsets;
    p->txn_offsets = NULL;
    rd_kafka_consumer_group_metadata_t *g =
        offs->cnt ? rd_kafka_consumer_group_metadata(p->consumer.rk) : NULL;
    proc_committer_start(p->committer, txn_rk(p), offs, g);
    p->cur = (p->cur + 1) % p->nproducers;
}

static void finish_close(proc_t *p, int routed)
{
    if (p->failed)
        return;
    (void)proc_router_slots(p->shut->router, routed, add_slot_records, p);
    proc_router_reset(p->shut->router);
    p->write_started_ns = kc_mono_ns();
    p->last_route_s = (double)(p->write_started_ns - p->route_started_ns) / 1e9;
    p->last_records = (long long)p->shut->nrecs;
    if (p->closing == CLOSE_ROUTING)
        kc_histogram_observe(p->route_seconds, p->last_route_s);
    p->closing = CLOSE_FLUSHING;
    if (produce_batch(p) != 0) {
        if (!p->failed)
            abort_now(p, "a record of the transaction was refused");
        return;
    }
    if (p->outstanding == 0)
        flushed(p);
}

static void on_routes(void *arg)
{
    proc_t *p = arg;
    count_routes(p, p->shut->router, p->routes_before);
    finish_close(p, 1);
}

/* Closes the open batch: the other one starts filling; this one's transaction begins once
 * its recipients are looked up. */
static void close_batch(proc_t *p)
{
    if (uv_timer_stop(&p->linger_timer) != 0)
        kc_log_warn("cannot stop the linger timer");
    (void)checkpoint_due(p, p->open);
    p->shut = p->open;
    p->open = p->open == &p->batches[0] ? &p->batches[1] : &p->batches[0];
    if (p->consumer.w)
        kc_kafka_watch_resume(p->consumer.w); /* it may have paused on a full batch */
    p->closing = CLOSE_ROUTING;
    p->route_started_ns = kc_mono_ns();
    p->routes_before = proc_router_stats(p->shut->router);
    if (proc_router_pending(p->shut->router) &&
        proc_router_resolve(p->shut->router, kc_now_ms(), on_routes, p) == 0)
        return;
    count_routes(p, p->shut->router, p->routes_before);
    finish_close(p, 0);
}

static void on_linger(uv_timer_t *t)
{
    maybe_close(t->data);
}

/* Group commit: the open batch closes once the previous transaction has committed (and the
 * one before it is written), when it is at least linger-ms old or full. */
static void maybe_close(proc_t *p)
{
    if (p->failed || !batch_open(p->open) || p->closing != CLOSE_NONE ||
        proc_committer_busy(p->committer))
        return;
    uint64_t open_ms = (kc_mono_ns() - p->open->started_ns) / 1000000;
    if (open_ms >= (uint64_t)p->cfg.linger_ms || p->open->commands >= p->cfg.batch_max) {
        close_batch(p);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&p->linger_timer) &&
        uv_timer_start(&p->linger_timer, on_linger, (uint64_t)p->cfg.linger_ms - open_ms, 0) != 0)
        kc_log_error("cannot start the linger timer");
}

static void on_committed(void *arg)
{
    proc_t *p = arg;
    proc_commit_result_t r;
    if (!proc_committer_take(p->committer, &r))
        return;
    if (r.outcome == COMMIT_OK) {
        kc_counter_inc(p->commits);
        kc_histogram_observe(p->commit_seconds, r.seconds);
        if (p->last_route_s + p->last_write_s + r.seconds > 0.5) /* what held the acks */
            kc_log_kv(KC_LOG_WARN,
                      KC_FIELDS(KC_INT("route_ms", (long long)(p->last_route_s * 1000)),
                                KC_INT("write_ms", (long long)(p->last_write_s * 1000)),
                                KC_INT("commit_ms", (long long)(r.seconds * 1000)),
                                KC_INT("records", p->last_records)),
                      "slow transaction");
        maybe_close(p);
        return;
    }
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", r.error)), "transaction failed");
    if (r.outcome == COMMIT_FATAL) {
        fail(p, "fatal transaction error (fenced by a newer instance?)");
        return;
    }
    kc_counter_inc(p->aborts);
    recover(p);
}

/* Takes one event of a producer's main queue: delivery reports count down what is
 * outstanding, and an event's report tells up to where its partition is written. */
static void on_report(proc_t *p, rd_kafka_t *rk, rd_kafka_event_t *ev)
{
    if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_DR) {
        kc_kafka_event_serve(rk, ev);
        return;
    }
    const rd_kafka_message_t *m;
    while ((m = rd_kafka_event_message_next(ev))) {
        if (p->outstanding)
            p->outstanding--;
        if (m->err) {
            if (!p->txn_broken) /* the first of the transaction; the abort says the rest */
                kc_log_kv(KC_LOG_ERROR,
                          KC_FIELDS(KC_STR("topic", rd_kafka_topic_name(m->rkt)),
                                    KC_INT("partition", m->partition)),
                          "record not written: %s", rd_kafka_err2str(m->err));
            p->txn_broken = 1;
        } else if ((uintptr_t)m->_private == TOPIC_EVENTS + 1 && m->partition >= 0 &&
                   m->partition < p->npartitions && p->parts[m->partition] &&
                   m->offset + 1 > p->parts[m->partition]->events_end) {
            p->parts[m->partition]->events_end = m->offset + 1;
        }
    }
}

/* Serves one producer's queue: delivery reports as events, the rest (logs, statistics,
 * errors) as callbacks. */
static int on_producer_events(void *arg)
{
    kc_kafka_bound_t *b = arg;
    proc_t *p = kc_kafka_user_opaque(b->rk);
    for (int i = 0; i < POLL_BATCH; i++) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(b->q, 0);
        if (!ev)
            return 0;
        on_report(p, b->rk, ev);
        rd_kafka_event_destroy(ev);
        if (p->closing == CLOSE_FLUSHING && p->txn_broken)
            abort_now(p, "a record of the transaction was not written");
        else if (p->closing == CLOSE_FLUSHING && p->outstanding == 0)
            flushed(p);
    }
    return 1;
}

/* Serves the current producer's reports on this thread for up to timeout_ms. */
static void serve_reports_for(proc_t *p, int timeout_ms)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(p->producers[p->cur].q, timeout_ms);
    if (ev) {
        on_report(p, p->producers[p->cur].rk, ev);
        rd_kafka_event_destroy(ev);
    }
}

/* Waits, on this thread, for the reports of every record produced (a commit that cannot wait
 * for the loop). */
static void serve_reports(proc_t *p)
{
    uint64_t t0 = kc_mono_ns();
    while (p->outstanding > 0 && (kc_mono_ns() - t0) / 1000000 < 60000)
        serve_reports_for(p, 100);
    if (p->outstanding)
        p->txn_broken = 1;
}

/* Waits for the committer's job and takes its outcome: 0 (committed, or nothing was
 * committing), -1 after an abort (recovered) or a fatal error. */
static int settle_commit(proc_t *p)
{
    proc_committer_wait(p->committer);
    proc_commit_result_t r;
    if (!proc_committer_take(p->committer, &r))
        return 0;
    if (r.outcome == COMMIT_OK) {
        kc_counter_inc(p->commits);
        kc_histogram_observe(p->commit_seconds, r.seconds);
        return 0;
    }
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", r.error)), "transaction failed");
    if (r.outcome == COMMIT_FATAL) {
        fail(p, "fatal transaction error (fenced by a newer instance?)");
        return -1;
    }
    kc_counter_inc(p->aborts);
    recover(p);
    return -1;
}

/* Writes and commits the shut batch on this thread, its routes skipped. 0 or -1. */
static int close_now(proc_t *p)
{
    if (p->closing == CLOSE_ROUTING) {
        proc_router_cancel(p->shut->router);
        kc_counter_add(p->route_skipped, (double)proc_router_pending(p->shut->router));
        finish_close(p, 0);
    }
    if (p->failed)
        return -1;
    if (p->closing == CLOSE_FLUSHING) {
        serve_reports(p);
        if (p->txn_broken) {
            abort_now(p, "a record of the transaction was not written");
            return -1;
        }
        flushed(p);
    }
    return settle_commit(p);
}

/* Commits everything now, on this thread, without waiting for routes (a rebalance or a stop
 * cannot wait): the events still go out with their acks; their other recipients backfill. */
static void commit_sync(proc_t *p)
{
    if (p->failed || settle_commit(p) != 0 || close_now(p) != 0 || !batch_open(p->open))
        return;
    if (uv_timer_stop(&p->linger_timer) != 0)
        kc_log_warn("cannot stop the linger timer");
    (void)checkpoint_due(p, p->open);
    p->shut = p->open;
    p->open = p->open == &p->batches[0] ? &p->batches[1] : &p->batches[0];
    p->closing = CLOSE_ROUTING;
    p->routes_before = proc_router_stats(p->shut->router);
    (void)close_now(p);
}

/* ---- state: restore and recovery ---- */

static void start_restore(proc_t *p)
{
    if (p->failed || proc_restorer_busy(p->restorer))
        return;
    int32_t *ids = kc_xcalloc((size_t)p->npartitions, sizeof(int32_t));
    uint64_t *gens = kc_xcalloc((size_t)p->npartitions, sizeof(uint64_t));
    int n = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        if (p->assigned[i] && p->restoring[i]) {
            ids[n] = i;
            gens[n++] = p->gen[i];
        }
    }
    if (n)
        proc_restorer_start(p->restorer, ids, gens, n);
    kc_gauge_set(p->restoring_gauge, n);
    free(ids);
    free(gens);
}

static void set_paused(proc_t *p, const int32_t *ids, int n, int pause)
{
    if (!n)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, p->cfg.commands_topic, ids[i]);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(p->consumer.rk, l)
                                    : rd_kafka_resume_partitions(p->consumer.rk, l);
    if (err)
        kc_log_warn("cannot %s partitions: %s", pause ? "pause" : "resume", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Queues partitions for a restore: their commands wait (paused) until it is done. */
static void queue_restore(proc_t *p, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        proc_part_destroy(p->parts[ids[i]]);
        p->parts[ids[i]] = NULL;
        p->restoring[ids[i]] = 1;
        p->gen[ids[i]]++;
    }
    set_paused(p, ids, n, 1);
    start_restore(p);
}

static void on_restored(void *arg)
{
    proc_t *p = arg;
    proc_restore_job_t j;
    if (!proc_restorer_take(p->restorer, &j))
        return;
    if (j.rc != 0) {
        kc_log_error("restore failed: %s", j.error);
        proc_restore_job_free(&j);
        fail(p, "cannot restore state");
        return;
    }
    int32_t *ready = kc_xcalloc((size_t)(j.n ? j.n : 1), sizeof(int32_t));
    int nready = 0;
    size_t convos = 0;
    for (int i = 0; i < j.n; i++) {
        int32_t part = j.partitions[i];
        if (!p->assigned[part] || !p->restoring[part] || p->gen[part] != j.gens[i])
            continue; /* revoked, or queued again meanwhile */
        p->parts[part] = j.parts[i];
        j.parts[i] = NULL;
        p->restoring[part] = 0;
        convos += kc_map_size(p->parts[part]->convos);
        ready[nready++] = part;
    }
    kc_histogram_observe(p->restore_seconds, j.stats.seconds);
    kc_counter_add(p->restored, (double)j.stats.records);
    kc_counter_add(p->replayed, (double)j.stats.events);
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("partitions", nready), KC_INT("records", j.stats.records),
                        KC_INT("events_replayed", j.stats.events),
                        KC_INT("conversations", convos),
                        KC_INT("restore_ms", (long long)(j.stats.seconds * 1000))),
              "state restored");
    set_paused(p, ready, nready, 0);
    free(ready);
    proc_restore_job_free(&j);
    start_restore(p); /* partitions that came meanwhile */
    if (!proc_restorer_busy(p->restorer))
        kc_gauge_set(p->restoring_gauge, 0);
}

static void fail(proc_t *p, const char *why)
{
    if (p->failed)
        return;
    kc_log_error("giving up: %s", why);
    p->failed = 1;
    kc_daemon_stop(p->app.daemon, why);
}

/* After an abort: state back to what is committed, input back to the committed offsets. */
static void recover(proc_t *p)
{
    /* Both batches go: what the shut one held failed, what the open one applied was applied
     * on top of it. */
    batch_clear(p, &p->batches[0]);
    batch_clear(p, &p->batches[1]);
    p->shut = NULL;
    p->closing = CLOSE_NONE;
    p->outstanding = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->npartitions);
    int32_t *ids = kc_xcalloc((size_t)p->npartitions, sizeof(int32_t));
    int n = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        if (!p->assigned[i])
            continue;
        ids[n++] = i;
        rd_kafka_topic_partition_list_add(l, p->cfg.commands_topic, i);
    }
    queue_restore(p, ids, n);
    free(ids);
    rd_kafka_resp_err_t err = n ? rd_kafka_committed(p->consumer.rk, l, 30000)
                                : RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; !err && i < l->cnt; i++)
        if (l->elems[i].offset < 0)
            l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = err || !n ? NULL : rd_kafka_seek_partitions(p->consumer.rk, l, 30000);
    if (err || e) {
        kc_log_error("cannot rewind the input: %s",
                     err ? rd_kafka_err2str(err) : rd_kafka_error_string(e));
        if (e)
            rd_kafka_error_destroy(e);
        fail(p, "cannot rewind the input after an aborted transaction");
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (!p->failed && p->consumer.w)
        kc_kafka_watch_resume(p->consumer.w); /* it may have paused on a full batch */
}

/* ---- dedupe expiry ---- */

typedef struct {
    proc_t *p;
    int32_t partition;
} expiry_t;

/* An expired one-entry record, or a block whose entries all expired, leaves the changelog
 * too (compaction then drops it). */
static void tombstone_entry(const unsigned char *key, void *arg)
{
    expiry_t *x = arg;
    proc_key_dedupe(&x->p->key, key);
    batch_add(x->p->open, TOPIC_STATE, x->partition, x->p->key.data, x->p->key.len, NULL, 0, 1,
              NULL);
}

static void tombstone_block(uint64_t id, void *arg)
{
    expiry_t *x = arg;
    proc_key_block(&x->p->key, id);
    batch_add(x->p->open, TOPIC_STATE, x->partition, x->p->key.data, x->p->key.len, NULL, 0, 1,
              NULL);
}

static void on_expire_timer(uv_timer_t *t)
{
    proc_t *p = t->data;
    if (p->failed)
        return;
    int64_t now = kc_now_ms();
    size_t live = 0, convos = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        proc_part_t *part = p->parts[i];
        if (!part)
            continue;
        expiry_t x = {p, i};
        note_batch_start(p->open);
        (void)proc_part_expire(part, now, proc_keep_ms(&p->cfg.lim), tombstone_entry, &x);
        (void)proc_part_expire_blocks(part, now, proc_keep_ms(&p->cfg.lim), tombstone_block,
                                      &x);
        live += kc_map_size(part->dedupe);
        convos += kc_map_size(part->convos);
    }
    kc_gauge_set(p->dedupe_entries, (double)live);
    kc_gauge_set(p->conversations, (double)convos);
    maybe_close(p);
}

/* ---- consuming ---- */

/* A command of a partition whose state is not there yet (being restored): back to it later. */
static void defer(proc_t *p, const rd_kafka_message_t *m)
{
    /* Only the first (lowest) offset delivered since the restore was queued counts. */
    if (p->deferred[m->partition] == p->gen[m->partition])
        return;
    p->deferred[m->partition] = p->gen[m->partition];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->cfg.commands_topic, m->partition)->offset = m->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer.rk, l, 0);
    if (e) {
        kc_log_error("cannot seek back: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail(p, "cannot seek back a partition being restored");
    }
    (void)rd_kafka_pause_partitions(p->consumer.rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static int on_commands(void *arg)
{
    proc_t *p = arg;
    int polled = 0;
    while (!p->failed && polled < POLL_BATCH && p->open->commands < p->cfg.batch_max &&
           !kc_daemon_stopping(p->app.daemon)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer.rk, 0);
        if (!m)
            break;
        polled++;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        } else if (m->partition < 0 || m->partition >= p->npartitions ||
                   !p->assigned[m->partition]) {
            /* not (or no longer) ours */
        } else if (!p->parts[m->partition]) {
            defer(p, m);
        } else {
            note_batch_start(p->open);
            kc_counter_inc(p->consumed);
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            if (ts > 0 && tt == RD_KAFKA_TIMESTAMP_CREATE_TIME) {
                int64_t d = kc_now_ms() - ts;
                kc_histogram_observe(p->input_delay, d > 0 ? (double)d / 1000.0 : 0);
            }
            handle(p, p->parts[m->partition], m);
            p->open->next_offset[m->partition] = m->offset + 1;
            p->open->commands++;
        }
        rd_kafka_message_destroy(m);
    }
    maybe_close(p);
    if (p->open->commands >= p->cfg.batch_max && p->consumer.w)
        kc_kafka_watch_pause(p->consumer.w); /* full: resumed when it closes */
    return polled == POLL_BATCH && p->open->commands < p->cfg.batch_max;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    proc_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        (void)kc_kafka_rebalance_apply(rk, err, parts);
        int32_t *ids = kc_xcalloc(parts->cnt ? (size_t)parts->cnt : 1, sizeof(int32_t));
        int n = 0;
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->npartitions && !p->assigned[part]) {
                p->assigned[part] = 1;
                ids[n++] = part;
            }
        }
        queue_restore(p, ids, n);
        free(ids);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions assigned");
        return;
    }
    /* What was done for these partitions commits with their offsets before they go. */
    if (rd_kafka_assignment_lost(rk)) {
        /* The offsets would be refused: whatever is in flight aborts, and the partitions
         * kept are restored to what committed. */
        proc_committer_wait(p->committer);
        proc_commit_result_t r;
        if (proc_committer_take(p->committer, &r) && r.outcome == COMMIT_OK)
            kc_counter_inc(p->commits);
        if (p->closing == CLOSE_FLUSHING) {
            serve_reports(p);
            rd_kafka_error_t *e = rd_kafka_abort_transaction(txn_rk(p), -1);
            kc_counter_inc(p->aborts);
            if (e) {
                kc_log_error("abort failed: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                fail(p, "cannot abort the transaction of a lost assignment");
            }
        }
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->npartitions)
                p->assigned[part] = 0;
        }
        (void)kc_kafka_rebalance_apply(rk, err, parts);
        recover(p);
    } else {
        commit_sync(p);
        (void)kc_kafka_rebalance_apply(rk, err, parts);
    }
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        if (part < p->npartitions) {
            proc_part_destroy(p->parts[part]);
            p->parts[part] = NULL;
            p->assigned[part] = 0;
            p->restoring[part] = 0;
            p->batches[0].next_offset[part] = p->batches[1].next_offset[part] = -1;
        }
    }
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
}

/* ---- start and stop ---- */

static void on_timer_closed(uv_handle_t *h)
{
    proc_t *p = h->data;
    p->timers_open--;
}

static void close_timers(proc_t *p)
{
    if (p->timers_open) {
        uv_close((uv_handle_t *)&p->linger_timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->expire_timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->checkpoint_timer, on_timer_closed);
    }
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    proc_t *p = arg;
    kc_health_set_stopping(p->app.health);
    if (!p->failed)
        commit_sync(p);
    /* Leaving the group revokes the partitions (committing nothing more: no transaction is
     * open), then what the producers hold is flushed. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    proc_committer_wait(p->committer);
    proc_committer_close(p->committer);
    p->committer = NULL;
    proc_restorer_close(p->restorer);
    p->restorer = NULL;
    kc_kafka_unbind(&p->consumer);
    for (int i = 0; i < p->nproducers; i++)
        kc_kafka_unbind(&p->producers[i]);
    kc_redis_close(p->redis);
    p->redis = NULL;
    close_timers(p);
    kc_app_close_admin(&p->app);
    kc_daemon_finish(d);
}

static void register_metrics(proc_t *p)
{
    kc_metrics_t *m = p->app.metrics;
    p->consumed = kc_metrics_counter(m, "kchat_processor_commands_consumed_total",
                                     "Commands read from the commands topic.", NULL);
    p->events = kc_metrics_counter(m, "kchat_processor_events_produced_total",
                                   "Events written to the events topic.", NULL);
    p->duplicates = kc_metrics_counter(m, "kchat_processor_duplicates_total",
                                       "Messages recognised as retries of accepted ones.", NULL);
    for (size_t i = 0; i < KC_ARRAY_LEN(proc_reject_reasons); i++)
        (void)rejections(p, proc_reject_reasons[i]);
    const char *ok[] = {"outcome", "committed", NULL}, *ab[] = {"outcome", "aborted", NULL};
    p->commits = kc_metrics_counter(m, "kchat_processor_transactions_total",
                                    "Kafka transactions, by outcome.", ok);
    p->aborts = kc_metrics_counter(m, "kchat_processor_transactions_total", NULL, ab);
    p->dead_letters = kc_metrics_counter(m, "kchat_processor_dead_letters_total",
                                         "Commands sent to the dead-letter topic.", NULL);
    p->restored = kc_metrics_counter(m, "kchat_processor_restored_records_total",
                                     "State records read while restoring partitions.", NULL);
    p->replayed = kc_metrics_counter(m, "kchat_processor_replayed_events_total",
                                     "Events applied while restoring partitions (those written "
                                     "after their last checkpoint).",
                                     NULL);
    p->checkpoints = kc_metrics_counter(m, "kchat_processor_checkpoints_total",
                                        "Partition state checkpoints written.", NULL);
    p->commit_seconds = kc_metrics_histogram(m, "kchat_processor_transaction_commit_seconds",
                                             "Time to commit a transaction (offsets and commit).",
                                             NULL, NULL, 0);
    static const double restore_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    p->restore_seconds = kc_metrics_histogram(m, "kchat_processor_restore_seconds",
                                              "Time to restore the partitions assigned at once.",
                                              NULL, restore_bounds, KC_ARRAY_LEN(restore_bounds));
    static const double batch_bounds[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
    p->batch_size = kc_metrics_histogram(m, "kchat_processor_transaction_commands",
                                         "Commands per transaction.", NULL, batch_bounds,
                                         KC_ARRAY_LEN(batch_bounds));
    const char *st_route[] = {"stage", "route", NULL}, *st_write[] = {"stage", "write", NULL};
    p->route_seconds = kc_metrics_histogram(m, "kchat_processor_transaction_stage_seconds",
                                            "Time a closing transaction spends looking up its "
                                            "recipients (route) and writing its records (write: "
                                            "until every delivery report is in).",
                                            st_route, NULL, 0);
    p->write_seconds =
        kc_metrics_histogram(m, "kchat_processor_transaction_stage_seconds", NULL, st_write, NULL, 0);
    p->input_delay = kc_metrics_histogram(m, "kchat_processor_input_delay_seconds",
                                          "From a command's record timestamp (when its writer "
                                          "produced it) to the processor applying it.",
                                          NULL, NULL, 0);
    p->delivery_records = kc_metrics_counter(m, "kchat_processor_delivery_records_total",
                                             "Delivery records written (one per gateway slot per "
                                             "transaction, or a few when large).",
                                             NULL);
    p->delivery_items = kc_metrics_counter(m, "kchat_processor_delivery_items_total",
                                           "Deliveries written: events and acks, per slot.", NULL);
    p->route_lookups = kc_metrics_counter(m, "kchat_processor_route_lookups_total",
                                          "Recipients looked up in the presence registry.", NULL);
    p->route_failures = kc_metrics_counter(m, "kchat_processor_route_failures_total",
                                           "Presence lookups that failed (the recipients "
                                           "backfill).",
                                           NULL);
    p->route_skipped = kc_metrics_counter(m, "kchat_processor_route_skipped_total",
                                          "Recipients or events not routed: Redis down, the "
                                          "lookup limit, or a commit that could not wait.",
                                          NULL);
    p->conversations = kc_metrics_gauge(m, "kchat_processor_conversations",
                                        "Conversations held in memory.", NULL);
    p->dedupe_entries = kc_metrics_gauge(m, "kchat_processor_dedupe_entries",
                                         "Accepted messages held for the dedupe window.", NULL);
    p->restoring_gauge = kc_metrics_gauge(m, "kchat_processor_partitions_restoring",
                                          "Partitions whose state is being restored.", NULL);
}

static int start(void *arg, char *err, size_t errlen)
{
    proc_t *p = arg;
    register_metrics(p);
    kc_metrics_t *m = p->app.metrics;
    p->schemas = kc_schemas_load(p->cfg.schemas_dir, err, errlen);
    if (!p->schemas)
        return -1;
    if (kc_sr_check(p->schemas, &p->cfg.schema_registry, err, errlen) != 0)
        return -1;
    if (proc_ids_load(p->schemas, &p->ids) != 0) {
        kc_strlcpyf(err, errlen, "registry.json lacks a subject the processor writes");
        return -1;
    }
    p->topics[TOPIC_EVENTS] = p->cfg.events_topic;
    p->topics[TOPIC_DELIVERIES] = p->cfg.deliveries_topic;
    p->topics[TOPIC_STATE] = p->cfg.state_topic;
    p->topics[TOPIC_DLQ] = p->cfg.dlq_topic;
    char txn_timeout[32];
    kc_strlcpyf(txn_timeout, sizeof(txn_timeout), "%lld", p->cfg.transaction_timeout_ms);
    kc_kafka_opts_t ko = {.conn = &p->cfg.kafka,
                          .health = p->app.health,
                          .metrics = m,
                          .client_id = "processor-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = on_rebalance,
                          .opaque = p};
    /* No static membership (group.instance.id): a stopped instance leaves the group and its
     * partitions move at once; a killed one's move after session-timeout-ms. */
    char session[32], fwait[32], fmin[32];
    kc_strlcpyf(session, sizeof(session), "%lld", p->cfg.session_timeout_ms);
    kc_strlcpyf(fwait, sizeof(fwait), "%lld", p->cfg.fetch_wait_ms);
    kc_strlcpyf(fmin, sizeof(fmin), "%lld", p->cfg.fetch_min_bytes);
    const char *cons_over[] = {"partition.assignment.strategy", "cooperative-sticky",
                               "session.timeout.ms", session, "fetch.wait.max.ms", fwait,
                               "fetch.min.bytes", fmin, NULL};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, p->cfg.group_id, cons_over, err, errlen);
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, on_commands, p, err, errlen) != 0)
        return -1;
    ko.rebalance_cb = NULL;
    ko.dr_events = 1;
    p->nproducers = (int)p->cfg.producers;
    for (int i = 0; i < p->nproducers; i++) {
        /* kchat-processor-<instance>, then kchat-processor-<instance>-1, -2, ... */
        char txn_id[128], client_id[64], check[64];
        kc_strlcpyf(txn_id, sizeof(txn_id), i ? "kchat-processor-%s-%d" : "kchat-processor-%s",
                    p->cfg.instance_id, i);
        kc_strlcpyf(client_id, sizeof(client_id), i ? "processor-producer-%d" : "processor-producer",
                    i);
        kc_strlcpyf(check, sizeof(check), i ? "kafka_producer_%d" : "kafka_producer", i);
        ko.client_id = client_id;
        ko.check_name = check;
        /* A transaction's records are produced at once when it begins: linger.ms 1 sends them
         * in one request. retry.backoff.ms: a produce or offset request refused while the
         * broker finishes an earlier transaction is retried after 5 ms instead of 100. */
        const char *prod_over[] = {"transactional.id", txn_id, "transaction.timeout.ms",
                                   txn_timeout, "linger.ms", "0", "retry.backoff.ms", "5",
                                   "queue.buffering.max.messages", "1000000", NULL};
        rk = kc_kafka_producer_new(&ko, prod_over, err, errlen);
        if (!rk || kc_kafka_bind(&p->producers[i], p->app.loop, rk, on_producer_events,
                                 &p->producers[i], err, errlen) != 0)
            return -1;
        for (int t = 0; t < NTOPICS; t++)
            if (!(p->rkts[i][t] = kc_kafka_topic_hold(rk, p->topics[t], 15000, err, errlen)))
                return -1;
    }
    kc_kafka_opts_t ro = {.conn = &p->cfg.kafka,
                          .client_id = "processor-restore"};
    const char *rest_over[] = {"enable.partition.eof", "true", "fetch.wait.max.ms", "10", NULL};
    char rgroup[300];
    kc_strlcpyf(rgroup, sizeof(rgroup), "%s-restore", p->cfg.group_id);
    p->restore_rk = kc_kafka_consumer_new(&ro, rgroup, rest_over, err, errlen);
    if (!p->restore_rk)
        return -1;

    p->npartitions = kc_kafka_partition_count(p->consumer.rk, p->cfg.commands_topic, 15000, err, errlen);
    int32_t nstate = p->npartitions > 0
                         ? kc_kafka_partition_count(p->consumer.rk, p->cfg.state_topic, 15000,
                                                    err, errlen)
                         : -1;
    int32_t nevents = nstate > 0 ? kc_kafka_partition_count(p->consumer.rk, p->cfg.events_topic,
                                                            15000, err, errlen)
                                 : -1;
    p->nslots = nevents > 0 ? kc_kafka_partition_count(p->consumer.rk, p->cfg.deliveries_topic,
                                                       15000, err, errlen)
                            : -1;
    if (p->npartitions < 0 || nstate < 0 || nevents < 0 || p->nslots < 0)
        return -1;
    if (nstate != p->npartitions || nevents != p->npartitions) {
        kc_strlcpyf(err, errlen, "%s has %d partitions, %s %d and %s %d: they must be "
                                 "co-partitioned",
                    p->cfg.commands_topic, p->npartitions, p->cfg.events_topic, nevents,
                    p->cfg.state_topic, nstate);
        return -1;
    }
    if (p->nslots > KC_CHAT_MAX_SLOTS) {
        kc_strlcpyf(err, errlen, "%s has %d partitions: at most %d gateway slots",
                    p->cfg.deliveries_topic, p->nslots, KC_CHAT_MAX_SLOTS);
        return -1;
    }
    /* Routing is best effort: Redis is no health check of the processor's. */
    if (p->cfg.route_max_lookups > 0)
        p->redis = kc_redis_new(p->app.loop, &p->cfg.redis, NULL, NULL);
    size_t np = (size_t)p->npartitions;
    for (int i = 0; i < 2; i++) {
        batch_t *b = &p->batches[i];
        b->router = proc_router_new(p->redis, p->nslots, (size_t)p->cfg.route_max_lookups);
        b->next_offset = kc_xmalloc(np * sizeof(int64_t));
        for (size_t k = 0; k < np; k++)
            b->next_offset[k] = -1;
    }
    p->open = &p->batches[0];
    p->parts = kc_xcalloc(np, sizeof(proc_part_t *));
    p->assigned = kc_xcalloc(np, sizeof(int));
    p->restoring = kc_xcalloc(np, sizeof(int));
    p->gen = kc_xcalloc(np, sizeof(uint64_t));
    p->deferred = kc_xcalloc(np, sizeof(uint64_t));
    p->committer = proc_committer_new(p->app.loop, on_committed, p);
    p->restorer = proc_restorer_new(p->app.loop, p->restore_rk, p->schemas, p->cfg.state_topic,
                                    p->cfg.events_topic, (int)p->cfg.restore_timeout_ms,
                                    on_restored, p);
    if (!p->committer || !p->restorer) {
        kc_strlcpyf(err, errlen, "cannot start the committer or restorer thread");
        return -1;
    }

    /* Fences an earlier incarnation of this instance and aborts what it left open. */
    for (int i = 0; i < p->nproducers; i++) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(p->producers[i].rk, 60000);
        if (e) {
            kc_strlcpyf(err, errlen, "init_transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return -1;
        }
    }
    if (uv_timer_init(p->app.loop, &p->linger_timer) != 0 ||
        uv_timer_init(p->app.loop, &p->expire_timer) != 0 ||
        uv_timer_init(p->app.loop, &p->checkpoint_timer) != 0)
        abort();
    p->linger_timer.data = p->expire_timer.data = p->checkpoint_timer.data = p;
    p->timers_open = 3;
    uint64_t tick = (uint64_t)(p->cfg.checkpoint_interval_ms / 4 > 100
                                   ? (p->cfg.checkpoint_interval_ms / 4 < 1000
                                          ? p->cfg.checkpoint_interval_ms / 4
                                          : 1000)
                                   : 100);
    if (uv_timer_start(&p->checkpoint_timer, on_checkpoint_timer, tick, tick) != 0)
        abort();
    uint64_t every = (uint64_t)(proc_keep_ms(&p->cfg.lim) / 10 < 60000
                                    ? (proc_keep_ms(&p->cfg.lim) / 10 > 100
                                           ? proc_keep_ms(&p->cfg.lim) / 10
                                           : 100)
                                    : 60000);
    if (uv_timer_start(&p->expire_timer, on_expire_timer, every, every) != 0)
        abort();

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, p->cfg.commands_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(p->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot subscribe to %s: %s", p->cfg.commands_topic,
                    rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

static void start_failed(void *arg)
{
    proc_t *p = arg;
    kc_redis_close(p->redis);
    p->redis = NULL;
    proc_committer_close(p->committer);
    p->committer = NULL;
    proc_restorer_close(p->restorer);
    p->restorer = NULL;
    close_timers(p);
}

static void started(void *arg)
{
    proc_t *p = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p->app.admin_httpd)),
                        KC_STR("topic", p->cfg.commands_topic),
                        KC_STR("instance", p->cfg.instance_id)),
              "processor started");
}

static int exit_code(void *arg)
{
    return ((proc_t *)arg)->failed ? 1 : 0;
}

static void release(void *arg)
{
    proc_t *p = arg;
    kc_kafka_bound_destroy(&p->consumer);
    for (int i = 0; i < PROC_MAX_PRODUCERS; i++) {
        for (int t = 0; t < NTOPICS; t++)
            if (p->rkts[i][t])
                rd_kafka_topic_destroy(p->rkts[i][t]);
        kc_kafka_bound_destroy(&p->producers[i]);
    }
    kc_kafka_destroy(p->restore_rk);
    batch_free(p, &p->batches[0]);
    batch_free(p, &p->batches[1]);
    for (int32_t i = 0; p->parts && i < p->npartitions; i++)
        proc_part_destroy(p->parts[i]);
    free(p->parts);
    free(p->assigned);
    free(p->restoring);
    free(p->gen);
    free(p->deferred);
    if (p->txn_offsets)
        rd_kafka_topic_partition_list_destroy(p->txn_offsets);
    kc_schemas_destroy(p->schemas);
    kc_buf_free(&p->key);
    kc_buf_free(&p->val);
    proc_command_mem_free(&p->cmd_mem);
}

int main(int argc, char **argv)
{
    proc_t p = {0};
    kc_app_spec_t spec = {KC_APP_SPEC("processor", proc_opts, &p),
                          .serve_admin = 1,
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .exit_code = exit_code,
                          .release = release};
    return kc_app_main(&spec, argc, argv);
}
