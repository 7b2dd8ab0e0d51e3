/* kchat-projector - chat.events in, the Postgres and Redis read models out.
 *
 * The consumer reads chat.events (read_committed) in batches. A batch is applied to Redis
 * first (one EVALSHA of the batch script, which checks the generation and the offsets hash and
 * writes the batch and the new offsets atomically), then to Postgres (one transaction holding
 * the rows, the offsets in rm.offsets and the NOTIFYs, under the shared advisory lock of `rm`).
 * Each model keeps its own offsets, so each applies every event exactly once and either can
 * lag or be rebuilt alone. Kafka's committed offsets are never used: on assignment, and after
 * any failure, the stored offsets are read again and the consumer is moved to the lower of
 * the two. With --rebuild the same pipeline fills a shadow schema and generation from the
 * start of the topic and swaps them in (rebuild.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "projector.h"
#include "store.h"

static const kc_cfg_opt_t proj_opts[] = {
    KC_CFG_COMMON(proj_cfg_t, common),
    KC_CFG_ADMIN(proj_cfg_t, common, "17096"),
    KC_CFG_KAFKA(proj_cfg_t, kafka),
    KC_CFG_PG(proj_cfg_t, pg),
    KC_CFG_REDIS(proj_cfg_t, redis),
    {"group-id", KC_CFG_STR, offsetof(proj_cfg_t, group_id), "kchat-projector", 1, 255,
     "consumer group of the projectors"},
    {"events-topic", KC_CFG_STR, offsetof(proj_cfg_t, events_topic), "chat.events", 1, 249,
     "topic the events are read from"},
    {"schemas-dir", KC_CFG_STR, offsetof(proj_cfg_t, schemas_dir), "schemas", 1, 4096,
     "directory holding registry.json and the Avro schemas"},
    {"batch-max", KC_CFG_INT, offsetof(proj_cfg_t, batch_max), "2000", 1, 10000,
     "most events applied in one Postgres transaction and one call of the Redis batch script"},
    {"recent-messages", KC_CFG_INT, offsetof(proj_cfg_t, recent_messages), "100", 1, 10000,
     "messages kept per conversation in the Redis model (recent:<convo>)"},
    {"session-timeout-ms", KC_CFG_INT, offsetof(proj_cfg_t, session_timeout_ms), "10000", 6000,
     300000, "consumer group session timeout: how long a killed projector keeps its partitions"},
    {"rebuild", KC_CFG_BOOL, offsetof(proj_cfg_t, rebuild), "false", 0, 0,
     "build fresh read models from the start of the topic beside the live ones, swap them in, "
     "and exit"},
    {"progress-interval-ms", KC_CFG_INT, offsetof(proj_cfg_t, progress_interval_ms), "5000", 100,
     600000, "with --rebuild, how often progress (events/s, lag, ETA) is logged"},
};

#define BATCH_MAX_BYTES (8 * 1024 * 1024)
#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 5000
#define IDLE_CHECK_MS 1000

static void start_batch(proj_t *p);
static void redis_phase(proj_t *p);
static void pg_phase(proj_t *p);
static void schedule_resync(proj_t *p, const char *why);
static void close_all(proj_t *p);

static void fail(proj_t *p, const char *why)
{
    kc_log_error("giving up: %s", why);
    p->failed = 1;
    kc_daemon_stop(p->app.daemon, why);
}

/* ---- stored offsets ---- */

static void set_prefix(proj_t *p)
{
    kc_strlcpyf(p->prefix, sizeof(p->prefix), KC_REDIS_RM "%" PRId64 ":", p->redis_gen);
}

/* Reads what both models have applied. The live projector also follows the generations
 * here: a new `rm` (a rebuild swapped it in), a new or missing kchat:rm:gen (swapped in, or
 * Redis was flushed: the Redis model is then built again from offset 0). */
static int load_state(proj_t *p, char *err, size_t errlen)
{
    int rc = -1, flushed = 0;
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, errlen);
    redisContext *rc_ = pc ? proj_redis_connect(p->cfg.redis.host, (int)p->cfg.redis.port,
                                                (int)p->cfg.redis.timeout_ms, err, errlen)
                           : NULL;
    if (!rc_)
        goto out;
    if (!p->cfg.rebuild) {
        int64_t gen;
        if (proj_pg_ensure_schema(pc, p->schema, 1, 0, err, errlen) != 0 ||
            proj_redis_gen(rc_, &gen, err, errlen) != 0)
            goto out;
        if (gen == 0) {
            int set = 0;
            gen = p->redis_gen > 0 ? p->redis_gen : 1;
            if (proj_redis_gen_init(rc_, gen, &set, err, errlen) != 0 ||
                proj_redis_gen(rc_, &gen, err, errlen) != 0)
                goto out;
            if (set && p->redis_gen > 0) {
                flushed = 1;
                kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("generation", gen)),
                          "the Redis read model is gone (kchat:rm:gen missing): rebuilding it "
                          "from the start of the events topic");
                kc_counter_inc(p->rebuild_redis);
            }
        }
        if (gen != p->redis_gen && p->redis_gen > 0)
            kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("from", p->redis_gen), KC_INT("to", gen)),
                      "Redis read model generation changed");
        p->redis_gen = gen;
        set_prefix(p);
    }
    int64_t *roffs = kc_xcalloc((size_t)p->nparts, sizeof(int64_t));
    int exists = 0;
    int64_t pgen;
    if (proj_pg_state(pc, p->schema, p->cfg.events_topic, p->nparts, p->pg_next, &pgen, err,
                      errlen) != 0 ||
        proj_redis_offsets(rc_, p->prefix, p->nparts, roffs, &exists, err, errlen) != 0) {
        free(roffs);
        goto out;
    }
    if (!p->cfg.rebuild && pgen != p->pg_gen && p->pg_gen > 0)
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("from", p->pg_gen), KC_INT("to", pgen)),
                  "Postgres read model generation changed (a rebuild was swapped in)");
    p->pg_gen = pgen;
    int vanished = 0;
    for (int32_t i = 0; i < p->nparts; i++) {
        if (p->assigned[i] && roffs[i] < p->redis_next[i] && !exists)
            vanished = 1;
        p->redis_next[i] = roffs[i];
    }
    free(roffs);
    if (vanished && !flushed && !p->cfg.rebuild) {
        kc_log_warn("the Redis read model's offsets are gone: rebuilding it from the start of "
                    "the events topic");
        kc_counter_inc(p->rebuild_redis);
    }
    rc = 0;
out:
    PQfinish(pc);
    if (rc_)
        redisFree(rc_);
    return rc;
}

static int64_t start_offset(proj_t *p, int32_t part)
{
    return p->pg_next[part] < p->redis_next[part] ? p->pg_next[part] : p->redis_next[part];
}

static void clear_items(proj_t *p)
{
    for (size_t i = 0; i < p->nitems; i++)
        if (p->items[i].kind == ITEM_EVENT)
            proj_event_free(&p->items[i].ev);
    p->nitems = 0;
    p->bytes = 0;
}

/* Reads the stored offsets again and moves the consumer there. */
static int resync(proj_t *p)
{
    char err[512];
    if (load_state(p, err, sizeof(err)) != 0) {
        kc_log_warn("cannot read the stored offsets: %s", err);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->nparts);
    for (int32_t i = 0; i < p->nparts; i++)
        if (p->assigned[i])
            rd_kafka_topic_partition_list_add(l, p->cfg.events_topic, i)->offset =
                start_offset(p, i);
    rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(p->consumer.rk, l, 30000) : NULL;
    int rc = 0;
    for (int i = 0; !e && i < l->cnt; i++)
        if (l->elems[i].err) {
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("partition", l->elems[i].partition)),
                      "seek failed: %s", rd_kafka_err2str(l->elems[i].err));
            rc = -1;
        }
    if (e) {
        kc_log_warn("seek failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static void on_timer(uv_timer_t *t)
{
    proj_t *p = t->data;
    if (p->stopping)
        return;
    if (p->busy) {
        if (uv_timer_start(&p->timer, on_timer, IDLE_CHECK_MS, 0) != 0)
            fail(p, "cannot start a timer");
        return;
    }
    if (p->need_resync) {
        if (resync(p) != 0) {
            p->backoff_ms = p->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->backoff_ms * 2;
            if (uv_timer_start(&p->timer, on_timer, (uint64_t)p->backoff_ms, 0) != 0)
                fail(p, "cannot start a timer");
            return;
        }
        kc_counter_inc(p->resyncs);
        p->need_resync = 0;
        p->backoff_ms = RETRY_MIN_MS;
        kc_kafka_watch_resume(p->consumer.w);
    } else if (!p->cfg.rebuild && p->redis_gen > 0) {
        /* Idle: an empty batch still checks that the Redis model and its generation are
         * there, so a flush is noticed without waiting for the next event. */
        start_batch(p);
    }
    if (!p->stopping && uv_timer_start(&p->timer, on_timer, IDLE_CHECK_MS, 0) != 0)
        fail(p, "cannot start a timer");
}

static void schedule_resync(proj_t *p, const char *why)
{
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("retry_ms", p->backoff_ms)),
              "batch not applied, reading the stored offsets again: %s", why);
    p->need_resync = 1;
    if (!p->stopping && uv_timer_start(&p->timer, on_timer, (uint64_t)p->backoff_ms, 0) != 0)
        fail(p, "cannot start a timer");
}

/* ---- the batch ---- */

static void end_batch(proj_t *p, const char *failure)
{
    clear_items(p);
    proj_rargs_free(&p->rargs);
    p->busy = 0;
    if (failure)
        schedule_resync(p, failure);
    if (p->stopping) {
        close_all(p);
        return;
    }
    if (!failure) {
        if (p->cfg.rebuild)
            proj_rebuild_maybe_swap(p);
        if (!p->stopping)
            kc_kafka_watch_resume(p->consumer.w);
    }
}

/* Notes the partitions an item moves forward in each model. */
static void note_part(int32_t **parts, int64_t **next, size_t *n, int32_t part, int64_t v)
{
    for (size_t i = 0; i < *n; i++)
        if ((*parts)[i] == part) {
            if (v > (*next)[i])
                (*next)[i] = v;
            return;
        }
    (*parts)[*n] = part;
    (*next)[*n] = v;
    (*n)++;
}

static void start_batch(proj_t *p)
{
    p->busy = 1;
    kc_kafka_watch_pause(p->consumer.w);
    p->t0 = kc_mono_ns();
    p->nrparts = p->npparts = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        proj_item_t *it = &p->items[i];
        if (it->to_redis)
            note_part(&p->rparts, &p->rnext, &p->nrparts, it->partition, it->next);
        if (it->to_pg)
            note_part(&p->pparts, &p->pnext, &p->npparts, it->partition, it->next);
    }
    if (p->nitems)
        kc_histogram_observe(p->batch_hist, (double)p->nitems);
    redis_phase(p);
}

/* -- Redis: one call of the batch script -- */

static void phase_error(proj_t *p, const char *err)
{
    if (!p->phase_failed) {
        p->phase_failed = 1;
        kc_strlcpyf(p->phase_err, sizeof(p->phase_err), "%s", err ? err : "failed");
    }
}

static void redis_send(proj_t *p);

static void redis_done(proj_t *p, const char *failure)
{
    if (failure) {
        end_batch(p, failure);
        return;
    }
    if (p->nitems == 0) {
        end_batch(p, NULL); /* the idle check passed */
        return;
    }
    for (size_t i = 0; i < p->nrparts; i++)
        p->redis_next[p->rparts[i]] = p->rnext[i];
    kc_counter_add(p->applied_redis, (double)p->r_events);
    kc_histogram_observe(p->lat_redis, (double)(kc_mono_ns() - p->phase_t0) / 1e9);
    pg_phase(p);
}

static void on_batch_reply(void *arg, const redisReply *rep, const char *err)
{
    proj_t *p = arg;
    if (err && strncmp(err, "NOSCRIPT", 8) == 0 && !p->script_reloaded) {
        /* Redis restarted or its scripts were flushed: the script did not run at all. */
        kc_log_info("the Redis batch script is not loaded: loading it again");
        p->script_reloaded = 1;
        p->script_sha[0] = '\0';
        redis_send(p);
        return;
    }
    if (err) {
        redis_done(p, err);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        redis_done(p, "unexpected reply to the batch script");
        return;
    }
    if (rep->element[0]->integer != 1) {
        /* The generation or an offset moved: nothing was written. */
        redis_done(p, rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
                          ? rep->element[1]->str
                          : "the Redis read model moved under this writer");
        return;
    }
    for (size_t i = 1; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING) {
            /* An operation failed (the others ran, and the offsets moved): a bug, since every
             * operation is well-formed, as a failed command inside MULTI/EXEC would be. */
            kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_INT("errors", (long long)rep->elements - 1)),
                      "redis batch operation failed: %s", rep->element[i]->str);
        }
    redis_done(p, NULL);
}

static void on_script_loaded(void *arg, const redisReply *rep, const char *err)
{
    proj_t *p = arg;
    if (err || rep->type != REDIS_REPLY_STRING || rep->len >= sizeof(p->script_sha)) {
        redis_done(p, err ? err : "unexpected reply to SCRIPT LOAD");
        return;
    }
    memcpy(p->script_sha, rep->str, rep->len);
    p->script_sha[rep->len] = '\0';
    redis_send(p);
}

/* Sends the batch built in p->rargs: EVALSHA, after a SCRIPT LOAD when the sha is not known
 * (the first batch, or after a NOSCRIPT). */
static void redis_send(proj_t *p)
{
    int rc;
    if (!p->script_sha[0]) {
        const char *argv[] = {"SCRIPT", "LOAD", PROJ_REDIS_SCRIPT};
        rc = kc_redis_command(p->redis, on_script_loaded, p, 3, argv, NULL);
    } else {
        size_t len;
        const char *cmd = proj_rargs_evalsha(&p->rargs, p->script_sha, 2, &len);
        rc = kc_redis_command_formatted(p->redis, on_batch_reply, p, cmd, len);
    }
    if (rc != 0)
        redis_done(p, rc == -ENOTCONN ? "redis is not connected" : "redis command refused");
}

static void redis_phase(proj_t *p)
{
    p->phase_failed = 0;
    p->r_events = 0;
    p->script_reloaded = 0;
    if (p->nitems && p->nrparts == 0) {
        pg_phase(p);
        return;
    }
    p->phase_t0 = kc_mono_ns();
    proj_rargs_t *a = &p->rargs;
    proj_rargs_free(a);
    proj_rargs_str(a, KC_REDIS_RM_GEN);
    size_t plen = strlen(p->prefix);
    char offkey[96];
    kc_strlcpyf(offkey, sizeof(offkey), "%s" KC_RM_OFFSETS, p->prefix);
    proj_rargs_str(a, offkey);
    /* The generation is checked by the live projector (a rebuild writes one of its own). */
    if (!p->cfg.rebuild && p->redis_gen > 0)
        proj_rargs_int(a, p->redis_gen);
    else
        proj_rargs_add(a, "", 0);
    proj_rargs_add(a, p->prefix, plen);
    proj_rargs_int(a, (int64_t)p->nrparts);
    for (size_t i = 0; i < p->nrparts; i++) {
        proj_rargs_int(a, p->rparts[i]);
        proj_rargs_int(a, p->redis_next[p->rparts[i]]);
        proj_rargs_int(a, p->rnext[i]);
    }
    if (p->nitems)
        p->r_events =
            proj_redis_build(p->prefix, p->items, p->nitems, p->cfg.recent_messages, a);
    redis_send(p);
}

/* -- Postgres: one transaction -- */

static void pg_done(proj_t *p)
{
    if (p->phase_failed) {
        end_batch(p, p->phase_err);
        return;
    }
    for (size_t i = 0; i < p->npparts; i++)
        p->pg_next[p->pparts[i]] = p->pnext[i];
    kc_counter_add(p->applied_pg, (double)p->p_events);
    kc_histogram_observe(p->lat_pg, (double)(kc_mono_ns() - p->phase_t0) / 1e9);
    if (p->cfg.rebuild) {
        for (size_t i = 0; i < p->nitems; i++) {
            proj_item_t *it = &p->items[i];
            if (it->kind == ITEM_EOF)
                p->at_end[it->partition] = 1;
            else
                p->applied_total++;
        }
    }
    end_batch(p, NULL);
}

static void on_pg(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    proj_t *p = arg;
    if (err)
        phase_error(p, err);
    if (--p->pending == 0)
        pg_done(p);
}

static void pg_phase(proj_t *p)
{
    p->phase_failed = 0;
    if (p->npparts == 0) {
        pg_done(p);
        return;
    }
    p->phase_t0 = kc_mono_ns();
    proj_stmts_t parts = {0}, st = {0};
    int64_t *expect = kc_xcalloc(p->npparts, sizeof(int64_t));
    for (size_t i = 0; i < p->npparts; i++)
        expect[i] = p->pg_next[p->pparts[i]];
    proj_pg_check(p->schema, p->cfg.events_topic, p->pparts, expect, p->npparts,
                  p->cfg.rebuild ? -1 : p->pg_gen, &parts);
    free(expect);
    p->p_events = proj_pg_build(p->schema, p->items, p->nitems, &parts);
    proj_pg_offsets(p->schema, p->cfg.events_topic, p->pparts, p->pnext, p->npparts, &parts);
    size_t notes = p->cfg.rebuild ? 0 : proj_pg_notify(p->items, p->nitems, &parts);
    /* The lock is a statement of its own, before them: a statement resolves `rm` when it is
     * parsed, so one that took the lock itself could resolve it before a swap it waited for. */
    proj_pg_combine(&parts, &st);
    p->pending = 1;
    int ok = kc_pg_query(p->pg, "BEGIN", 0, NULL, on_pg, p) == 0;
    if (ok)
        p->pending++;
    /* The live schema is written under the shared lock, which a swap takes exclusively. */
    if (ok && !p->cfg.rebuild) {
        ok = kc_pg_query(p->pg, "SELECT pg_advisory_xact_lock_shared(" PROJ_RM_LOCK ")", 0, NULL,
                         on_pg, p) == 0;
        p->pending += ok;
    }
    for (size_t i = 0; ok && i < st.n; i++) {
        ok = kc_pg_query(p->pg, st.v[i].sql, st.v[i].nparams, (const char *const *)st.v[i].params,
                         on_pg, p) == 0;
        p->pending += ok;
    }
    if (ok) {
        ok = kc_pg_query(p->pg, "COMMIT", 0, NULL, on_pg, p) == 0;
        p->pending += ok;
        if (ok)
            kc_counter_add(p->notified, (double)notes);
    }
    if (!ok) {
        phase_error(p, "postgres query refused");
        if (kc_pg_query(p->pg, "ROLLBACK", 0, NULL, on_pg, p) == 0)
            p->pending++;
    }
    proj_stmts_free(&st);
    if (--p->pending == 0)
        pg_done(p);
}

/* ---- consuming ---- */

static void add_item(proj_t *p, proj_item_t *it)
{
    if (p->nitems == p->capitems) {
        p->capitems = p->capitems ? p->capitems * 2 : 256;
        p->items = kc_xrealloc(p->items, p->capitems * sizeof(*p->items));
    }
    p->items[p->nitems++] = *it;
}

static void take(proj_t *p, rd_kafka_message_t *m)
{
    int32_t part = m->partition;
    if (part < 0 || part >= p->nparts || !p->assigned[part])
        return;
    proj_item_t it = {.partition = part, .offset = m->offset};
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        it.kind = ITEM_EOF;
        it.next = m->offset;
    } else {
        kc_counter_inc(p->consumed);
        it.kind = ITEM_EVENT;
        it.next = m->offset + 1;
    }
    it.to_pg = it.next > p->pg_next[part] && m->offset >= p->pg_next[part];
    it.to_redis = it.next > p->redis_next[part] && m->offset >= p->redis_next[part];
    if (it.kind == ITEM_EOF) {
        /* Moves the offsets past the transaction markers at the end (so lag reads 0). */
        it.to_pg = it.next > p->pg_next[part];
        it.to_redis = it.next > p->redis_next[part];
        if (p->cfg.rebuild)
            it.to_pg = it.to_redis = 1; /* also marks the partition as applied to its end */
    }
    if (!it.to_pg && !it.to_redis)
        return;
    if (it.kind == ITEM_EVENT) {
        char err[256];
        if (!m->payload ||
            proj_event_decode(p->schemas, m->payload, m->len, &it.ev, err, sizeof(err)) != 0) {
            if (!m->payload)
                kc_strlcpyf(err, sizeof(err), "empty record");
            kc_log_kv(KC_LOG_WARN,
                      KC_FIELDS(KC_INT("partition", part), KC_INT("offset", m->offset)),
                      "undecodable event skipped: %s", err);
            kc_counter_inc(p->poison);
            it.kind = ITEM_POISON;
        }
        p->bytes += m->len;
    }
    add_item(p, &it);
}

static int on_events(void *arg)
{
    proj_t *p = arg;
    if (p->busy || p->need_resync || p->stopping)
        return 0;
    int polled = 0;
    while (polled < 500 && p->nitems < (size_t)p->cfg.batch_max && p->bytes < BATCH_MAX_BYTES &&
           !p->need_resync) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer.rk, 0);
        if (!m)
            break;
        polled++;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        else
            take(p, m);
        rd_kafka_message_destroy(m);
    }
    if (p->need_resync) {
        clear_items(p);
        return 0;
    }
    if (polled == 500 && p->nitems < (size_t)p->cfg.batch_max && p->bytes < BATCH_MAX_BYTES)
        return 1; /* more may be queued: collect it on the next iteration */
    if (p->nitems)
        start_batch(p);
    return 0;
}

/* A revoked partition's records collected for the next batch are not applied here. */
static void drop_items_of(proj_t *p, int32_t part)
{
    size_t k = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        if (p->items[i].partition == part) {
            if (p->items[i].kind == ITEM_EVENT)
                proj_event_free(&p->items[i].ev);
        } else {
            p->items[k++] = p->items[i];
        }
    }
    p->nitems = k;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    proj_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        char e[512];
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition < p->nparts)
                p->assigned[parts->elems[i].partition] = 1;
        /* Start where the models are, not at Kafka's committed offsets (there are none). */
        if (load_state(p, e, sizeof(e)) != 0) {
            kc_log_warn("cannot read the stored offsets at assignment: %s", e);
            p->need_resync = 1;
            clear_items(p);
            if (uv_timer_start(&p->timer, on_timer, (uint64_t)p->backoff_ms, 0) != 0)
                fail(p, "cannot start a timer");
        }
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->nparts && !p->need_resync)
                parts->elems[i].offset = start_offset(p, part);
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("partition", part),
                                KC_INT("offset", part < p->nparts ? start_offset(p, part) : -1),
                                KC_INT("pg_next", part < p->nparts ? p->pg_next[part] : -1),
                                KC_INT("redis_next", part < p->nparts ? p->redis_next[part] : -1)),
                      "partition assigned");
        }
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->nparts) {
                p->assigned[part] = 0;
                drop_items_of(p, part);
            }
        }
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
    }
    (void)kc_kafka_rebalance_apply(rk, err, parts);
}

/* ---- metrics ---- */

int64_t proj_lag_total(proj_t *p)
{
    int64_t total = 0;
    for (int32_t i = 0; i < p->nparts; i++) {
        int64_t lo = 0, hi = 0;
        if (!p->assigned[i] || !p->consumer.rk ||
            rd_kafka_get_watermark_offsets(p->consumer.rk, p->cfg.events_topic, i, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        int64_t lag = hi - start_offset(p, i);
        total += lag > 0 ? lag : 0;
    }
    return total;
}

static void on_collect(void *arg)
{
    proj_t *p = arg;
    for (int32_t i = 0; i < p->nparts; i++) {
        int64_t lo = 0, hi = 0;
        double lag = 0;
        if (p->assigned[i] && p->consumer.rk &&
            rd_kafka_get_watermark_offsets(p->consumer.rk, p->cfg.events_topic, i, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0 && hi > start_offset(p, i))
            lag = (double)(hi - start_offset(p, i));
        kc_gauge_set(p->lag[i], lag);
    }
}

static void make_metrics(proj_t *p)
{
    kc_metrics_t *m = p->app.metrics;
    const char *pg_l[] = {"model", "postgres", NULL}, *r_l[] = {"model", "redis", NULL};
    p->consumed = kc_metrics_counter(m, "kchat_projector_events_consumed_total",
                                     "Records read from the events topic.", NULL);
    p->applied_pg =
        kc_metrics_counter(m, "kchat_projector_events_applied_total",
                           "Events applied to a read model (rejections excluded).", pg_l);
    p->applied_redis =
        kc_metrics_counter(m, "kchat_projector_events_applied_total",
                           "Events applied to a read model (rejections excluded).", r_l);
    static const double sizes[] = {1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
    p->batch_hist =
        kc_metrics_histogram(m, "kchat_projector_batch_events", "Records in each applied batch.",
                             NULL, sizes, KC_ARRAY_LEN(sizes));
    p->lat_pg = kc_metrics_histogram(m, "kchat_projector_apply_seconds",
                                     "Time to apply a batch to a read model.", pg_l, NULL, 0);
    p->lat_redis = kc_metrics_histogram(m, "kchat_projector_apply_seconds",
                                        "Time to apply a batch to a read model.", r_l, NULL, 0);
    p->poison = kc_metrics_counter(m, "kchat_projector_poison_events_total",
                                   "Undecodable records skipped.", NULL);
    p->resyncs = kc_metrics_counter(m, "kchat_projector_resyncs_total",
                                    "Batches given up (rolled back) after which the stored "
                                    "offsets were read again.",
                                    NULL);
    p->notified = kc_metrics_counter(m, "kchat_projector_notifications_total",
                                     "NOTIFY kchat_applied sent for events of api: origin.", NULL);
    const char *rr[] = {"kind", "redis_flush", NULL}, *rs[] = {"kind", "swap", NULL};
    p->rebuild_redis = kc_metrics_counter(m, "kchat_projector_rebuilds_total",
                                          "Rebuilds: the Redis model rebuilt after it vanished, "
                                          "or a --rebuild swapped in.",
                                          rr);
    p->rebuild_swaps = kc_metrics_counter(m, "kchat_projector_rebuilds_total",
                                          "Rebuilds: the Redis model rebuilt after it vanished, "
                                          "or a --rebuild swapped in.",
                                          rs);
    p->lag = kc_xcalloc((size_t)p->nparts, sizeof(kc_gauge_t *));
    for (int32_t i = 0; i < p->nparts; i++) {
        char num[16];
        kc_strlcpyf(num, sizeof(num), "%d", (int)i);
        const char *l[] = {"partition", num, NULL};
        p->lag[i] = kc_metrics_gauge(m, "kchat_projector_lag_events",
                                     "Offsets of the events topic not yet applied to both "
                                     "models, per partition.",
                                     l);
    }
    kc_metrics_on_collect(m, on_collect, p);
}

/* ---- start and stop ---- */

static void on_timer_closed(uv_handle_t *h)
{
    proj_t *p = h->data;
    p->timers_open--;
}

static void close_all(proj_t *p)
{
    if (p->consumer.rk) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer.rk);
        if (err)
            kc_log_warn("consumer close: %s", rd_kafka_err2str(err));
        kc_kafka_unbind(&p->consumer);
    }
    kc_pg_close(p->pg);
    kc_redis_close(p->redis);
    p->pg = NULL;
    p->redis = NULL;
    if (p->timers_open) {
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->progress_timer, on_timer_closed);
    }
    kc_app_close_admin(&p->app);
    kc_daemon_finish(p->app.daemon);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    (void)d;
    proj_t *p = arg;
    kc_health_set_stopping(p->app.health);
    p->stopping = 1;
    /* A batch in flight finishes (or fails) first; end_batch then closes. */
    if (!p->busy)
        close_all(p);
}

static void on_progress(uv_timer_t *t) { proj_rebuild_progress(t->data); }

static int start(proj_t *p, char *err, size_t errlen)
{
    p->schemas = kc_schemas_load(p->cfg.schemas_dir, err, errlen);
    if (!p->schemas)
        return -1;
    p->schema = p->cfg.rebuild ? "rm_next" : "rm";
    p->backoff_ms = RETRY_MIN_MS;
    kc_kafka_opts_t ko = {.brokers = p->cfg.kafka.brokers,
                          .debug = p->cfg.kafka.debug,
                          .health = p->app.health,
                          .metrics = p->app.metrics,
                          .client_id = p->cfg.rebuild ? "projector-rebuild" : "projector-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = on_rebalance,
                          .opaque = p};
    char session[32], group[300];
    kc_strlcpyf(session, sizeof(session), "%lld", p->cfg.session_timeout_ms);
    kc_strlcpyf(group, sizeof(group), "%s%s", p->cfg.group_id, p->cfg.rebuild ? "-rebuild" : "");
    const char *over[] = {"partition.assignment.strategy",
                          "cooperative-sticky",
                          "session.timeout.ms",
                          session,
                          "enable.partition.eof",
                          "true",
                          "fetch.wait.max.ms",
                          "50",
                          NULL};
    rd_kafka_t *rk = kc_kafka_consumer_new(&ko, group, over, err, errlen);
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, on_events, p, err, errlen) != 0)
        return -1;
    p->nparts = kc_kafka_partition_count(p->consumer.rk, p->cfg.events_topic, 15000, err, errlen);
    if (p->nparts < 0)
        return -1;
    size_t np = (size_t)p->nparts;
    p->assigned = kc_xcalloc(np, sizeof(int));
    p->at_end = kc_xcalloc(np, sizeof(int));
    p->pg_next = kc_xcalloc(np, sizeof(int64_t));
    p->redis_next = kc_xcalloc(np, sizeof(int64_t));
    p->rparts = kc_xcalloc(np, sizeof(int32_t));
    p->pparts = kc_xcalloc(np, sizeof(int32_t));
    p->rnext = kc_xcalloc(np, sizeof(int64_t));
    p->pnext = kc_xcalloc(np, sizeof(int64_t));
    make_metrics(p);
    if (uv_timer_init(p->app.loop, &p->timer) != 0 ||
        uv_timer_init(p->app.loop, &p->progress_timer) != 0)
        abort();
    p->timer.data = p->progress_timer.data = p;
    p->timers_open = 2;

    p->pg = kc_pg_new(p->app.loop, p->cfg.pg.dsn, p->app.health, "postgres");
    p->redis = kc_redis_new(p->app.loop, p->cfg.redis.host, (int)p->cfg.redis.port,
                            (int)p->cfg.redis.timeout_ms, p->app.health, "redis");
    if (p->cfg.rebuild) {
        if (proj_rebuild_prepare(p, err, errlen) != 0)
            return -1;
        if (uv_timer_start(&p->progress_timer, on_progress, (uint64_t)p->cfg.progress_interval_ms,
                           (uint64_t)p->cfg.progress_interval_ms) != 0)
            abort();
        return 0;
    }
    /* The schema `rm` exists before anything is consumed (readers may query it at once). */
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, errlen);
    if (!pc)
        return -1;
    int rc = proj_pg_ensure_schema(pc, p->schema, 1, 0, err, errlen);
    PQfinish(pc);
    if (rc != 0)
        return -1;
    if (uv_timer_start(&p->timer, on_timer, IDLE_CHECK_MS, 0) != 0)
        abort();
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, p->cfg.events_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(p->consumer.rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot subscribe to %s: %s", p->cfg.events_topic,
                    rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}

static void free_all(proj_t *p)
{
    clear_items(p);
    free(p->items);
    proj_rargs_free(&p->rargs);
    free(p->assigned);
    free(p->at_end);
    free(p->pg_next);
    free(p->redis_next);
    free(p->rparts);
    free(p->pparts);
    free(p->rnext);
    free(p->pnext);
    free(p->lag);
    kc_schemas_destroy(p->schemas);
}

int main(int argc, char **argv)
{
    proj_t p = {0};
    char err[512];
    int rc = kc_app_config("projector", proj_opts, KC_ARRAY_LEN(proj_opts), &p.cfg, &p.cfg.common,
                           argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&p.app, "projector", &p.cfg.common, 1, on_stop, &p, err, sizeof(err)) ||
            start(&p, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
            kc_pg_close(p.pg);
            kc_redis_close(p.redis);
            if (p.timers_open) {
                uv_close((uv_handle_t *)&p.timer, on_timer_closed);
                uv_close((uv_handle_t *)&p.progress_timer, on_timer_closed);
            }
        } else {
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p.app.admin_httpd)),
                                KC_STR("topic", p.cfg.events_topic), KC_STR("schema", p.schema),
                                KC_INT("partitions", p.nparts)),
                      p.cfg.rebuild ? "projector rebuild started" : "projector started");
            kc_app_run(&p.app);
            exit_code = p.failed ? 1 : 0;
        }
        kc_kafka_bound_destroy(&p.consumer);
        kc_app_destroy(&p.app);
        free_all(&p);
        kc_log_info("stopped");
    }
    kc_config_free(proj_opts, KC_ARRAY_LEN(proj_opts), &p.cfg);
    return exit_code;
}
