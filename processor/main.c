/* kchat-processor - chat.commands in; chat.events, chat.deliveries and its state out, in one
 * Kafka transaction per batch together with the consumed offsets.
 *
 * Pipeline: command.c decodes a record; state.c applies the rules (seq_no, dedupe,
 * membership); output.c builds the event, the deliveries and the state records; this file
 * drives the transactions, the rebalances (restore on assign, commit on revoke) and
 * recovery (an aborted transaction throws the in-memory state away, restores it from the
 * changelog and rewinds the input to the committed offsets, so seq_no neither skips nor
 * repeats).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "changelog.h"
#include "command.h"
#include "kchat/app.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "kchat/redis.h"
#include "output.h"
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
    char *commands_topic, *events_topic, *deliveries_topic, *state_topic, *dlq_topic;
    long long commit_interval_ms;
    long long producers;
    long long batch_max;
    long long transaction_timeout_ms;
    long long restore_timeout_ms;
    long long session_timeout_ms;
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
    {"schemas-dir", KC_CFG_STR, offsetof(proc_cfg_t, schemas_dir), "schemas", 1, 4096,
     "folder of the Avro schemas and registry.json"},
    {"commands-topic", KC_CFG_STR, offsetof(proc_cfg_t, commands_topic), "chat.commands", 1, 249,
     "topic the commands are read from"},
    {"events-topic", KC_CFG_STR, offsetof(proc_cfg_t, events_topic), "chat.events", 1, 249,
     "topic the events are written to"},
    {"deliveries-topic", KC_CFG_STR, offsetof(proc_cfg_t, deliveries_topic), "chat.deliveries", 1,
     249, "topic the deliveries are written to"},
    {"state-topic", KC_CFG_STR, offsetof(proc_cfg_t, state_topic), "chat.processor.state", 1, 249,
     "compacted topic of the processor's state"},
    {"dlq-topic", KC_CFG_STR, offsetof(proc_cfg_t, dlq_topic), "chat.commands.dlq", 1, 249,
     "topic of the commands that cannot be read"},
    {"commit-interval-ms", KC_CFG_INT, offsetof(proc_cfg_t, commit_interval_ms), "20", 1, 10000,
     "longest a transaction stays open: the latency added to every message at most"},
    {"producers", KC_CFG_INT, offsetof(proc_cfg_t, producers), "2", 1, PROC_MAX_PRODUCERS,
     "transactional producers taking turns (kchat-processor-<instance-id>, then -1, -2...)"},
    {"batch-max", KC_CFG_INT, offsetof(proc_cfg_t, batch_max), "2000", 1, 100000,
     "most commands in one transaction"},
    {"transaction-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, transaction_timeout_ms), "30000",
     1000, 900000, "the broker aborts a transaction open this long (a dead instance's)"},
    {"restore-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, restore_timeout_ms), "300000", 1000,
     3600000, "longest the restore of one partition's state may take"},
    {"session-timeout-ms", KC_CFG_INT, offsetof(proc_cfg_t, session_timeout_ms), "10000", 6000,
     300000, "how long the group waits for a silent instance before moving its partitions"},
    {"max-content-bytes", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_content_bytes), "16384", 1,
     900000, "largest message text accepted"},
    {"max-members", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_members), "1000", 2, 100000,
     "most members of a conversation"},
    {"max-id-bytes", KC_CFG_INT, offsetof(proc_cfg_t, lim.max_id_bytes), "128", 8, 1024,
     "longest conversation, user or client message id"},
    {"dedupe-window-ms", KC_CFG_INT, offsetof(proc_cfg_t, lim.dedupe_window_ms), "86400000", 1000,
     2592000000LL, "how long a retry is recognised (default 24 h)"},
};

#define POLL_BATCH 500

typedef struct {
    proc_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    /* Transactions take turns over these producers (one open at a time, committed in
     * order): a producer's next transaction starts a full turn after its last commit, when
     * the broker has finished writing that commit's markers, so adding partitions is not
     * refused with CONCURRENT_TRANSACTIONS and retried 20 ms later. */
    kc_kafka_bound_t producers[PROC_MAX_PRODUCERS];
    int nproducers, cur;
    rd_kafka_t *restorer;
    kc_redis_t *redis;
    proc_router_t *router;
    int routing; /* a transaction waits for its routes before it commits */
    proc_router_stats_t routes_before;
    kc_schemas_t *schemas;
    int32_t npartitions, nslots;
    proc_part_t **parts;   /* by command partition; NULL when not assigned */
    int64_t *next_offset;  /* by partition: the offset to commit, -1 when untouched */
    int in_txn;
    int txn_broken; /* something of this transaction was not written: it must abort */
    uint64_t txn_started_ns;
    long long txn_commands;
    uv_timer_t commit_timer, expire_timer;
    int timers_open;
    int failed;
    kc_buf_t key, val, event, delivery;
    kc_counter_t *consumed, *events, *duplicates, *commits, *aborts, *restored, *dead_letters;
    kc_counter_t *acks, *fanouts, *route_lookups, *route_failures, *route_skipped;
    kc_histogram_t *commit_seconds, *restore_seconds;
    kc_gauge_t *conversations, *dedupe_entries;
} proc_t;

static void commit(proc_t *p);
static void commit_sync(proc_t *p);

/* The producer of the current (or next) transaction. */
static rd_kafka_t *txn_rk(const proc_t *p)
{
    return p->producers[p->cur].rk;
}
static void fail(proc_t *p, const char *why);

/* ---- producing ---- */

static int produce(proc_t *p, const char *topic, int32_t partition, const void *key, size_t klen,
                   const void *val, size_t vlen, rd_kafka_headers_t *hdrs)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            txn_rk(p), RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (err) {
                kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("topic", topic)), "produce failed: %s",
                          rd_kafka_err2str(err));
                p->txn_broken = 1;
            }
            return err ? -EIO : 0;
        }
        rd_kafka_poll(txn_rk(p), 10);
    }
}

static int begin(proc_t *p)
{
    if (p->in_txn)
        return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(txn_rk(p));
    if (e) {
        kc_log_error("cannot begin a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail(p, "cannot begin a transaction");
        return -EIO;
    }
    p->in_txn = 1;
    p->txn_broken = 0;
    p->txn_started_ns = kc_mono_ns();
    p->txn_commands = 0;
    return 0;
}

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
    /* producev takes the headers on success only. */
    if (produce(p, p->cfg.dlq_topic, RD_KAFKA_PARTITION_UA, m->key, m->key_len, m->payload,
                m->len, h) != 0 &&
        h)
        rd_kafka_headers_destroy(h);
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

/* A new or changed dedupe entry (a message accepted, or deleted) goes to the changelog. */
static void write_dedupe(proc_t *p, proc_part_t *part, const proc_outcome_t *o)
{
    proc_key_dedupe(&p->key, o->dedupe_key);
    kc_buf_reset(&p->val);
    if (proc_encode_dedupe_entry(p->schemas, o->dedupe, &p->val) != 0)
        p->txn_broken = 1;
    else
        (void)produce(p, p->cfg.state_topic, part->partition, p->key.data, p->key.len,
                      p->val.data, p->val.len, NULL);
}

static void handle(proc_t *p, const rd_kafka_message_t *m)
{
    kc_avro_msg_t msg;
    proc_cmd_t cmd;
    char err[256];
    proc_part_t *part = m->partition < p->npartitions ? p->parts[m->partition] : NULL;
    if (!part) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_INT("partition", m->partition)),
                  "command from a partition without state");
        p->txn_broken = 1;
        return;
    }
    if (!m->payload || proc_command_decode(p->schemas, m->payload, m->len, &msg, &cmd, err,
                                           sizeof(err)) != 0) {
        dead_letter(p, m, m->payload ? err : "empty record");
        return;
    }
    int64_t now = kc_now_ms();
    proc_outcome_t o;
    (void)proc_apply(part, &cmd, now, &p->cfg.lim, &o);
    kc_buf_reset(&p->event);
    if (o.kind != OUT_DUPLICATE) {
        if (proc_encode_event(p->schemas, &cmd, &o, now, &p->event) != 0)
            p->txn_broken = 1;
        else if (produce(p, p->cfg.events_topic, part->partition, cmd.convo_id,
                         cmd.convo_id_len, p->event.data, p->event.len, NULL) == 0)
            kc_counter_inc(p->events);
        if (o.kind == OUT_REJECTED) {
            const char *lbl[] = {"reason", o.reason, NULL};
            kc_counter_inc(kc_metrics_counter(p->app.metrics, "kchat_processor_rejections_total",
                                              "Commands refused, by reason.", lbl));
        }
    } else {
        kc_counter_inc(p->duplicates);
    }
    if (o.kind == OUT_ACCEPTED && o.dedupe)
        write_dedupe(p, part, &o);
    /* The sender's gateway hears the outcome; fan-out to the other members' gateways
     * follows the presence registry. */
    int32_t slot = origin_slot(p, cmd.origin);
    kc_buf_reset(&p->delivery);
    if (slot >= 0) {
        const char *status = NULL;
        if (cmd.kind == CMD_SEND_MESSAGE)
            status = o.kind == OUT_ACCEPTED ? "ok" : o.kind == OUT_DUPLICATE ? "duplicate" : "error";
        char *sender = kc_xstrndup(cmd.sender_id, cmd.sender_id_len);
        if (proc_encode_delivery(p->schemas, slot, &cmd, &sender, 1,
                                 o.kind == OUT_DUPLICATE ? NULL : &p->event, status, &o,
                                 &p->delivery) != 0) {
            p->txn_broken = 1;
            kc_buf_reset(&p->delivery);
        }
        free(sender);
    }
    /* Every member's gateways hear of what was accepted (those removed too). The ack waits
     * with the fan-out, so that each slot gets this batch's events in order. */
    if (o.kind == OUT_ACCEPTED) {
        proc_router_add(p->router, cmd.convo_id, cmd.convo_id_len, &p->event, o.recipients,
                        o.nrecipients, cmd.sender_id, cmd.sender_id_len, slot, &p->delivery,
                        slot);
        if (cmd.kind == CMD_REMOVE_MEMBERS)
            proc_router_add(p->router, cmd.convo_id, cmd.convo_id_len, &p->event, o.members,
                            o.nmembers, cmd.sender_id, cmd.sender_id_len, slot, NULL, -1);
    } else {
        proc_router_add(p->router, cmd.convo_id, cmd.convo_id_len, NULL, NULL, 0, cmd.sender_id,
                        cmd.sender_id_len, slot, &p->delivery, slot);
    }
    proc_outcome_free(&o);
    proc_command_free(&msg, &cmd);
}

/* ---- transactions ---- */

static void write_dirty_state(proc_t *p)
{
    for (int32_t i = 0; i < p->npartitions; i++) {
        if (!p->parts[i])
            continue;
        size_t n;
        proc_convo_t **dirty = proc_part_take_dirty(p->parts[i], &n);
        for (size_t k = 0; k < n; k++) {
            proc_key_convo(&p->key, dirty[k]->id);
            kc_buf_reset(&p->val);
            if (proc_encode_convo_state(p->schemas, dirty[k], &p->val) != 0)
                p->txn_broken = 1;
            else
                (void)produce(p, p->cfg.state_topic, i, p->key.data, p->key.len, p->val.data,
                              p->val.len, NULL);
        }
    }
}

/* Restores the given partitions' state into p->parts. */
static int restore(proc_t *p, const int32_t *partitions, int n)
{
    proc_restore_stats_t st;
    char err[256];
    proc_part_t **out = kc_xcalloc(n ? (size_t)n : 1, sizeof(proc_part_t *));
    int rc = proc_restore(p->restorer, p->schemas, p->cfg.state_topic, partitions, n, out,
                          (int)p->cfg.restore_timeout_ms, &st, err, sizeof(err));
    if (rc == 0) {
        size_t convos = 0;
        for (int i = 0; i < n; i++) {
            proc_part_destroy(p->parts[partitions[i]]);
            p->parts[partitions[i]] = out[i];
            convos += kc_map_size(out[i]->convos);
        }
        kc_histogram_observe(p->restore_seconds, st.seconds);
        kc_counter_add(p->restored, (double)st.records);
        kc_log_kv(KC_LOG_INFO,
                  KC_FIELDS(KC_INT("partitions", n), KC_INT("records", st.records),
                            KC_INT("conversations", convos),
                            KC_INT("restore_ms", (long long)(st.seconds * 1000))),
                  "state restored");
    } else {
        kc_log_error("restore failed: %s", err);
    }
    free(out);
    return rc;
}

static void fail(proc_t *p, const char *why)
{
    kc_log_error("giving up: %s", why);
    p->failed = 1;
    kc_daemon_stop(p->app.daemon, why);
}

/* After an abort: state back to what is committed, input back to the committed offsets. */
static void recover(proc_t *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->npartitions);
    int32_t *ids = kc_xcalloc((size_t)p->npartitions, sizeof(int32_t));
    int n = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        if (!p->parts[i])
            continue;
        ids[n++] = i;
        rd_kafka_topic_partition_list_add(l, p->cfg.commands_topic, i);
    }
    int rc = restore(p, ids, n);
    free(ids);
    if (rc != 0) {
        rd_kafka_topic_partition_list_destroy(l);
        fail(p, "cannot restore state after an aborted transaction");
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(p->consumer.rk, l, 30000);
    for (int i = 0; !err && i < l->cnt; i++)
        if (l->elems[i].offset < 0)
            l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = err ? NULL : rd_kafka_seek_partitions(p->consumer.rk, l, 30000);
    if (err || e) {
        kc_log_error("cannot rewind the input: %s",
                     err ? rd_kafka_err2str(err) : rd_kafka_error_string(e));
        if (e)
            rd_kafka_error_destroy(e);
        fail(p, "cannot rewind the input after an aborted transaction");
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void commit_now(proc_t *p)
{
    if (!p->in_txn)
        return;
    if (uv_timer_stop(&p->commit_timer) != 0)
        kc_log_warn("cannot stop the commit timer");
    write_dirty_state(p);
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < p->npartitions; i++)
        if (p->next_offset[i] >= 0)
            rd_kafka_topic_partition_list_add(offs, p->cfg.commands_topic, i)->offset =
                p->next_offset[i];
    uint64_t t0 = kc_mono_ns();
    rd_kafka_error_t *e = NULL;
    if (p->txn_broken) {
        e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "a record of the transaction was not "
                                                          "written");
        rd_kafka_topic_partition_list_destroy(offs);
        p->in_txn = 0;
        for (int32_t i = 0; i < p->npartitions; i++)
            p->next_offset[i] = -1;
        kc_log_warn("%s: aborting", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        goto do_abort;
    }
    if (offs->cnt) {
        rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata(p->consumer.rk);
        e = rd_kafka_send_offsets_to_transaction(txn_rk(p), offs, g, -1);
        rd_kafka_consumer_group_metadata_destroy(g);
    }
    while (!e) {
        e = rd_kafka_commit_transaction(txn_rk(p), -1);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    rd_kafka_topic_partition_list_destroy(offs);
    p->in_txn = 0;
    for (int32_t i = 0; i < p->npartitions; i++)
        p->next_offset[i] = -1;
    if (!e) {
        kc_counter_inc(p->commits);
        kc_histogram_observe(p->commit_seconds, (double)(kc_mono_ns() - t0) / 1e9);
        /* Every record of this transaction is written: the next one's cannot overtake them. */
        p->cur = (p->cur + 1) % p->nproducers;
        return;
    }
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", rd_kafka_error_name(e))),
              "transaction failed: %s", rd_kafka_error_string(e));
    int abortable = rd_kafka_error_txn_requires_abort(e);
    int fatal = rd_kafka_error_is_fatal(e);
    rd_kafka_error_destroy(e);
    if (fatal || !abortable) {
        fail(p, "fatal transaction error (fenced by a newer instance?)");
        return;
    }
do_abort:
    e = rd_kafka_abort_transaction(txn_rk(p), -1);
    kc_counter_inc(p->aborts);
    if (e) {
        kc_log_error("abort failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail(p, "cannot abort the transaction");
        return;
    }
    recover(p);
}

static void produce_fanout(void *arg, int32_t slot, const char *convo_id, size_t convo_len,
                           char *const *recipients, size_t n, const kc_buf_t *event)
{
    proc_t *p = arg;
    proc_cmd_t cmd = {.convo_id = convo_id, .convo_id_len = convo_len};
    proc_outcome_t none = {.kind = OUT_ACCEPTED};
    kc_buf_reset(&p->delivery);
    if (proc_encode_delivery(p->schemas, slot, &cmd, recipients, n, event, NULL, &none,
                             &p->delivery) != 0)
        p->txn_broken = 1;
    else if (produce(p, p->cfg.deliveries_topic, slot, convo_id, convo_len, p->delivery.data,
                     p->delivery.len, NULL) == 0)
        kc_counter_inc(p->fanouts);
}

static void produce_ack(void *arg, int32_t slot, const char *convo_id, size_t convo_len,
                        const kc_buf_t *delivery)
{
    proc_t *p = arg;
    if (produce(p, p->cfg.deliveries_topic, slot, convo_id, convo_len, delivery->data,
                delivery->len, NULL) == 0)
        kc_counter_inc(p->acks);
}

static void count_routes(proc_t *p, proc_router_stats_t before)
{
    proc_router_stats_t now = proc_router_stats(p->router);
    kc_counter_add(p->route_lookups, (double)(now.lookups - before.lookups));
    kc_counter_add(p->route_failures, (double)(now.failures - before.failures));
    kc_counter_add(p->route_skipped, (double)(now.skipped - before.skipped));
}

static void on_routes(void *arg)
{
    proc_t *p = arg;
    p->routing = 0;
    count_routes(p, p->routes_before);
    proc_router_each(p->router, produce_fanout, produce_ack, p);
    proc_router_reset(p->router);
    commit_now(p);
    if (!p->failed && p->consumer.w)
        kc_kafka_watch_resume(p->consumer.w);
}

/* Commits the open transaction; first, when events await fan-out, looks their recipients up
 * (consumption pauses meanwhile, and on_routes finishes the commit). */
static void commit(proc_t *p)
{
    if (!p->in_txn || p->routing)
        return;
    if (uv_timer_stop(&p->commit_timer) != 0)
        kc_log_warn("cannot stop the commit timer");
    p->routes_before = proc_router_stats(p->router);
    if (proc_router_pending(p->router) &&
        proc_router_resolve(p->router, kc_now_ms(), on_routes, p) == 0) {
        p->routing = 1;
        kc_kafka_watch_pause(p->consumer.w);
        return;
    }
    count_routes(p, p->routes_before);
    proc_router_each(p->router, NULL, produce_ack, p);
    proc_router_reset(p->router);
    commit_now(p);
}

/* Commits now, without waiting for routes (a rebalance or a stop cannot wait): the events
 * still go out with their acks; their other recipients backfill. */
static void commit_sync(proc_t *p)
{
    if (p->routing) {
        proc_router_cancel(p->router);
        p->routing = 0;
        if (p->consumer.w)
            kc_kafka_watch_resume(p->consumer.w);
    }
    kc_counter_add(p->route_skipped, (double)proc_router_pending(p->router));
    proc_router_each(p->router, NULL, produce_ack, p);
    proc_router_reset(p->router);
    commit_now(p);
}

static void on_commit_timer(uv_timer_t *t)
{
    commit(t->data);
}

typedef struct {
    proc_t *p;
    int32_t partition;
} expiry_t;

/* An expired dedupe entry leaves the changelog too (compaction then drops it). */
static void tombstone(const unsigned char *key, void *arg)
{
    expiry_t *x = arg;
    proc_key_dedupe(&x->p->key, key);
    (void)produce(x->p, x->p->cfg.state_topic, x->partition, x->p->key.data, x->p->key.len, NULL,
                  0, NULL);
}

static void on_expire_timer(uv_timer_t *t)
{
    proc_t *p = t->data;
    if (p->routing)
        return; /* the next tick does it */
    int64_t now = kc_now_ms();
    size_t live = 0, convos = 0;
    for (int32_t i = 0; i < p->npartitions; i++) {
        proc_part_t *part = p->parts[i];
        if (!part)
            continue;
        if (part->oldest && part->oldest->created_at < now - p->cfg.lim.dedupe_window_ms &&
            begin(p) == 0) {
            expiry_t x = {p, i};
            (void)proc_part_expire(part, now, p->cfg.lim.dedupe_window_ms, tombstone, &x);
        }
        live += kc_map_size(part->dedupe);
        convos += kc_map_size(part->convos);
    }
    kc_gauge_set(p->dedupe_entries, (double)live);
    kc_gauge_set(p->conversations, (double)convos);
    commit(p);
}

/* ---- consuming ---- */

static int on_commands(void *arg)
{
    proc_t *p = arg;
    int polled = 0;
    while (!p->failed && !p->routing && polled < POLL_BATCH &&
           !kc_daemon_stopping(p->app.daemon)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer.rk, 0);
        if (!m)
            break;
        polled++;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        } else if (begin(p) == 0) {
            kc_counter_inc(p->consumed);
            handle(p, m);
            p->next_offset[m->partition] = m->offset + 1;
            p->txn_commands++;
        }
        rd_kafka_message_destroy(m);
        if (p->in_txn && p->txn_commands >= p->cfg.batch_max)
            commit(p);
    }
    if (p->in_txn && !p->routing) {
        uint64_t open_ms = (kc_mono_ns() - p->txn_started_ns) / 1000000;
        if (open_ms >= (uint64_t)p->cfg.commit_interval_ms)
            commit(p);
        else if (!uv_is_active((uv_handle_t *)&p->commit_timer) &&
                 uv_timer_start(&p->commit_timer, on_commit_timer,
                                (uint64_t)p->cfg.commit_interval_ms - open_ms, 0) != 0)
            kc_log_error("cannot start the commit timer");
    }
    return polled == POLL_BATCH && !p->routing;
}

static int on_producer_events(void *arg)
{
    return kc_kafka_serve(arg, POLL_BATCH);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    proc_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        int32_t *ids = kc_xcalloc(parts->cnt ? (size_t)parts->cnt : 1, sizeof(int32_t));
        int n = 0;
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition < p->npartitions && !p->parts[parts->elems[i].partition])
                ids[n++] = parts->elems[i].partition;
        if (restore(p, ids, n) != 0)
            fail(p, "cannot restore state");
        free(ids);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions assigned");
    } else {
        /* What was done for these partitions commits with their offsets before they go. */
        if (rd_kafka_assignment_lost(rk)) {
            proc_router_cancel(p->router);
            p->routing = 0;
            proc_router_reset(p->router);
            if (p->in_txn) {
                rd_kafka_error_t *e = rd_kafka_abort_transaction(txn_rk(p), -1);
                kc_counter_inc(p->aborts);
                p->in_txn = 0;
                if (e) {
                    kc_log_error("abort failed: %s", rd_kafka_error_string(e));
                    rd_kafka_error_destroy(e);
                    fail(p, "cannot abort the transaction of a lost assignment");
                }
            }
        } else {
            commit_sync(p);
        }
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->npartitions) {
                proc_part_destroy(p->parts[part]);
                p->parts[part] = NULL;
                p->next_offset[part] = -1;
            }
        }
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
    }
    (void)kc_kafka_rebalance_apply(rk, err, parts);
}

/* ---- start and stop ---- */

static void on_timer_closed(uv_handle_t *h)
{
    proc_t *p = h->data;
    p->timers_open--;
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    proc_t *p = arg;
    kc_health_set_stopping(p->app.health);
    if (!p->failed)
        commit_sync(p);
    /* Leaving the group revokes the partitions (committing nothing more: no transaction is
     * open), then what the producer holds is flushed. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer.rk);
    if (err)
        kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
    for (int i = 0; i < p->nproducers; i++) {
        err = rd_kafka_flush(p->producers[i].rk,
                             (int)(p->cfg.common.shutdown_timeout_ms / 2 / p->nproducers));
        if (err)
            kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    }
    kc_kafka_unbind(&p->consumer);
    for (int i = 0; i < p->nproducers; i++)
        kc_kafka_unbind(&p->producers[i]);
    kc_redis_close(p->redis);
    p->redis = NULL;
    if (p->timers_open) {
        uv_close((uv_handle_t *)&p->commit_timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->expire_timer, on_timer_closed);
    }
    kc_app_close_admin(&p->app);
    kc_daemon_finish(d);
}

static int start(proc_t *p, char *err, size_t errlen)
{
    kc_metrics_t *m = p->app.metrics;
    p->consumed = kc_metrics_counter(m, "kchat_processor_commands_consumed_total",
                                     "Commands read from the commands topic.", NULL);
    p->events = kc_metrics_counter(m, "kchat_processor_events_produced_total",
                                   "Events written to the events topic.", NULL);
    p->duplicates = kc_metrics_counter(m, "kchat_processor_duplicates_total",
                                       "Messages recognised as retries of accepted ones.", NULL);
    const char *ok[] = {"outcome", "committed", NULL}, *ab[] = {"outcome", "aborted", NULL};
    p->commits = kc_metrics_counter(m, "kchat_processor_transactions_total",
                                    "Kafka transactions, by outcome.", ok);
    p->aborts = kc_metrics_counter(m, "kchat_processor_transactions_total", NULL, ab);
    p->dead_letters = kc_metrics_counter(m, "kchat_processor_dead_letters_total",
                                         "Commands sent to the dead-letter topic.", NULL);
    p->restored = kc_metrics_counter(m, "kchat_processor_restored_records_total",
                                     "State records read while restoring partitions.", NULL);
    p->commit_seconds = kc_metrics_histogram(m, "kchat_processor_transaction_commit_seconds",
                                             "Time to commit a transaction (offsets and commit).",
                                             NULL, NULL, 0);
    static const double restore_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    p->restore_seconds = kc_metrics_histogram(m, "kchat_processor_restore_seconds",
                                              "Time to restore one partition's state.", NULL,
                                              restore_bounds, KC_ARRAY_LEN(restore_bounds));
    const char *ack[] = {"kind", "ack", NULL}, *fan[] = {"kind", "fanout", NULL};
    p->acks = kc_metrics_counter(m, "kchat_processor_deliveries_total",
                                 "Delivery records written: acks to the sender's gateway, fan-out "
                                 "to the recipients' gateways.",
                                 ack);
    p->fanouts = kc_metrics_counter(m, "kchat_processor_deliveries_total", NULL, fan);
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

    p->schemas = kc_schemas_load(p->cfg.schemas_dir, err, errlen);
    if (!p->schemas)
        return -1;
    char txn_timeout[32];
    kc_strlcpyf(txn_timeout, sizeof(txn_timeout), "%lld", p->cfg.transaction_timeout_ms);
    kc_kafka_opts_t ko = {.brokers = p->cfg.kafka.brokers,
                          .debug = p->cfg.kafka.debug,
                          .health = p->app.health,
                          .metrics = m,
                          .client_id = "processor-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = on_rebalance,
                          .opaque = p};
    /* No static membership (group.instance.id): a stopped instance leaves the group and its
     * partitions move at once; a killed one's move after session-timeout-ms. */
    char session[32];
    kc_strlcpyf(session, sizeof(session), "%lld", p->cfg.session_timeout_ms);
    const char *cons_over[] = {"partition.assignment.strategy", "cooperative-sticky",
                               "session.timeout.ms", session, NULL};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, p->cfg.group_id, cons_over, err, errlen);
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, on_commands, p, err, errlen) != 0)
        return -1;
    ko.rebalance_cb = NULL;
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
        /* retry.backoff.ms: a produce or offset request refused while the broker finishes an
         * earlier transaction is retried after 5 ms instead of 100. */
        const char *prod_over[] = {"transactional.id", txn_id, "transaction.timeout.ms",
                                   txn_timeout, "linger.ms", "2", "retry.backoff.ms", "5", NULL};
        rk = kc_kafka_producer_new(&ko, prod_over, err, errlen);
        if (!rk || kc_kafka_bind(&p->producers[i], p->app.loop, rk, on_producer_events, rk, err,
                                 errlen) != 0)
            return -1;
    }
    kc_kafka_opts_t ro = {.brokers = p->cfg.kafka.brokers,
                          .debug = p->cfg.kafka.debug,
                          .client_id = "processor-restore"};
    const char *rest_over[] = {"enable.partition.eof", "true", "fetch.wait.max.ms", "10", NULL};
    char rgroup[300];
    kc_strlcpyf(rgroup, sizeof(rgroup), "%s-restore", p->cfg.group_id);
    p->restorer = kc_kafka_consumer_new(&ro, rgroup, rest_over, err, errlen);
    if (!p->restorer)
        return -1;

    p->npartitions = kc_kafka_partition_count(p->consumer.rk, p->cfg.commands_topic, 15000, err, errlen);
    int32_t nstate = p->npartitions > 0
                         ? kc_kafka_partition_count(p->consumer.rk, p->cfg.state_topic, 15000,
                                                    err, errlen)
                         : -1;
    p->nslots = nstate > 0 ? kc_kafka_partition_count(p->consumer.rk, p->cfg.deliveries_topic,
                                                      15000, err, errlen)
                           : -1;
    if (p->npartitions < 0 || nstate < 0 || p->nslots < 0)
        return -1;
    if (nstate != p->npartitions) {
        kc_strlcpyf(err, errlen, "%s has %d partitions and %s %d: they must be co-partitioned",
                    p->cfg.state_topic, nstate, p->cfg.commands_topic, p->npartitions);
        return -1;
    }
    /* Routing is best effort: Redis is no health check of the processor's. */
    if (p->cfg.route_max_lookups > 0)
        p->redis = kc_redis_new(p->app.loop, p->cfg.redis.host, (int)p->cfg.redis.port,
                                (int)p->cfg.redis.timeout_ms, NULL, NULL);
    p->router = proc_router_new(p->redis, p->nslots, (size_t)p->cfg.route_max_lookups);
    p->parts = kc_xcalloc((size_t)p->npartitions, sizeof(proc_part_t *));
    p->next_offset = kc_xmalloc((size_t)p->npartitions * sizeof(int64_t));
    for (int32_t i = 0; i < p->npartitions; i++)
        p->next_offset[i] = -1;

    /* Fences an earlier incarnation of this instance and aborts what it left open. */
    for (int i = 0; i < p->nproducers; i++) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(p->producers[i].rk, 60000);
        if (e) {
            kc_strlcpyf(err, errlen, "init_transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return -1;
        }
    }
    if (uv_timer_init(p->app.loop, &p->commit_timer) != 0 ||
        uv_timer_init(p->app.loop, &p->expire_timer) != 0)
        abort();
    p->commit_timer.data = p->expire_timer.data = p;
    p->timers_open = 2;
    uint64_t every = (uint64_t)(p->cfg.lim.dedupe_window_ms / 10 < 60000
                                    ? (p->cfg.lim.dedupe_window_ms / 10 > 100
                                           ? p->cfg.lim.dedupe_window_ms / 10
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

int main(int argc, char **argv)
{
    proc_t p = {0};
    char err[512];
    int rc = kc_app_config("processor", proc_opts, KC_ARRAY_LEN(proc_opts), &p.cfg,
                           &p.cfg.common, argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&p.app, "processor", &p.cfg.common, 1, on_stop, &p, err, sizeof(err)) ||
            start(&p, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
            kc_redis_close(p.redis);
            if (p.timers_open) {
                uv_close((uv_handle_t *)&p.commit_timer, on_timer_closed);
                uv_close((uv_handle_t *)&p.expire_timer, on_timer_closed);
            }
        } else {
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p.app.admin_httpd)),
                                KC_STR("topic", p.cfg.commands_topic),
                                KC_STR("instance", p.cfg.instance_id)),
                      "processor started");
            kc_app_run(&p.app);
            exit_code = p.failed ? 1 : 0;
        }
        kc_kafka_bound_destroy(&p.consumer);
        for (int i = 0; i < PROC_MAX_PRODUCERS; i++)
            kc_kafka_bound_destroy(&p.producers[i]);
        kc_kafka_destroy(p.restorer);
        proc_router_destroy(p.router);
        for (int32_t i = 0; p.parts && i < p.npartitions; i++)
            proc_part_destroy(p.parts[i]);
        free(p.parts);
        free(p.next_offset);
        kc_schemas_destroy(p.schemas);
        kc_buf_free(&p.key);
        kc_buf_free(&p.val);
        kc_buf_free(&p.event);
        kc_buf_free(&p.delivery);
        kc_app_destroy(&p.app);
        kc_log_info("stopped");
    }
    kc_config_free(proc_opts, KC_ARRAY_LEN(proc_opts), &p.cfg);
    return exit_code;
}
