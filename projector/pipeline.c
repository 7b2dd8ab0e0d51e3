/* pipeline.c - the projector's batch cycle: records of chat.events collected into a batch,
 * applied to Redis (one call of the batch script), then to Postgres (one transaction), the
 * consumer paused meanwhile; the stored offsets read at assignment and again after any
 * failure (with a growing backoff), the consumer moved there; partitions assigned and
 * revoked. main.c starts and stops it; it calls back only through p->drained.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "projector.h"
#include "store.h"

#define BATCH_MAX_BYTES (8 * 1024 * 1024)
#define SCRIPT_RELOADS_MAX 3
#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 5000
#define IDLE_CHECK_MS 1000

static void start_batch(proj_t *p);
static void redis_phase(proj_t *p);
static void pg_phase(proj_t *p);
static void schedule_resync(proj_t *p, const char *why);

void proj_fail(proj_t *p, const char *why)
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
    redisContext *rc_ = pc ? proj_redis_connect(&p->cfg.redis, err, errlen)
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
    proj_skip_t *skips;
    size_t nskips;
    if (proj_pg_skips(pc, p->cfg.events_topic, &skips, &nskips, err, errlen) != 0) {
        free(roffs);
        goto out;
    }
    free(p->skips);
    p->skips = skips;
    p->nskips = nskips;
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

void proj_items_clear(proj_t *p)
{
    for (size_t i = 0; i < p->nitems; i++)
        if (p->items[i].kind == ITEM_EVENT)
            proj_event_free(&p->items[i].ev);
    p->nitems = 0;
    p->bytes = 0;
}

/* ---- partitions stopped at an undecodable record ---- */

#define SKIP_CHECK_NS (5 * 1000000000ull)

static void halted_health(proj_t *p)
{
    int n = 0, first = -1;
    for (int32_t i = 0; i < p->nparts; i++)
        if (p->halted_at[i] >= 0) {
            if (first < 0)
                first = i;
            n++;
        }
    kc_gauge_set(p->halted, n);
    if (!n) {
        kc_health_set(p->app.health, p->health_events, 1, NULL);
        return;
    }
    char d[320];
    kc_strlcpyf(d, sizeof(d), "partition %d stopped at offset %lld: %s%s", (int)first,
                (long long)p->halted_at[first], p->halt_why[first],
                n > 1 ? " (and other partitions)" : "");
    kc_health_set(p->app.health, p->health_events, 0, d);
}

static void pause_partition(proj_t *p, int32_t part, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->cfg.events_topic, part);
    rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(p->consumer.rk, l)
                                  : rd_kafka_resume_partitions(p->consumer.rk, l);
    if (!e)
        e = l->elems[0].err;
    if (e)
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("partition", part)), "cannot %s a partition: %s",
                  pause ? "pause" : "resume", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Stops a partition at a record no model can take: nothing at or after it is applied (the
 * stored offsets stay before it) until it is named in event_skips or the projector can read
 * it. A rebuild cannot finish without it, so it stops. */
static void halt(proj_t *p, int32_t part, int64_t offset, const char *why)
{
    p->halted_at[part] = offset;
    kc_strlcpyf(p->halt_why[part], sizeof(p->halt_why[part]), "%s", why);
    kc_log_kv(KC_LOG_ERROR,
              KC_FIELDS(KC_INT("partition", part), KC_INT("offset", offset), KC_STR("error", why)),
              "undecodable event: the partition is stopped there (upgrade the projector, or "
              "pass over the record with kchatctl skip-event)");
    if (p->cfg.rebuild) {
        proj_fail(p, "the rebuild met an undecodable event");
        return;
    }
    pause_partition(p, part, 1);
    halted_health(p);
}

static void unhalt(proj_t *p, int32_t part)
{
    if (p->halted_at[part] < 0)
        return;
    p->halted_at[part] = -1;
    pause_partition(p, part, 0);
}

/* While a partition is stopped, every SKIP_CHECK_NS: whether its record has been named in
 * event_skips since (kchatctl skip-event), which a resync then takes up. */
static int halted_record_skipped(proj_t *p)
{
    int any = 0;
    for (int32_t i = 0; i < p->nparts && !any; i++)
        any = p->halted_at[i] >= 0;
    uint64_t now = kc_mono_ns();
    if (!any || now < p->next_skip_check_ns)
        return 0;
    p->next_skip_check_ns = now + SKIP_CHECK_NS;
    char err[512];
    proj_skip_t *skips = NULL;
    size_t n = 0;
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, sizeof(err));
    int rc = pc ? proj_pg_skips(pc, p->cfg.events_topic, &skips, &n, err, sizeof(err)) : -1;
    if (pc)
        PQfinish(pc);
    if (rc != 0) {
        kc_log_warn("cannot read the skipped events: %s", err);
        return 0;
    }
    int found = 0;
    for (int32_t i = 0; i < p->nparts && !found; i++)
        found = p->halted_at[i] >= 0 && proj_skipped(skips, n, i, p->halted_at[i]);
    free(skips);
    return found;
}

/* Reads the stored offsets again and moves the consumer there (every stopped partition runs
 * again from its stored offset, and stops again at a record it still cannot take). */
static int resync(proj_t *p)
{
    char err[512];
    proj_items_clear(p); /* records collected for the next batch are read again after the seek */
    if (load_state(p, err, sizeof(err)) != 0) {
        kc_log_warn("cannot read the stored offsets: %s", err);
        return -1;
    }
    for (int32_t i = 0; i < p->nparts; i++)
        unhalt(p, i);
    halted_health(p);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->nparts);
    for (int32_t i = 0; i < p->nparts; i++)
        if (p->assigned[i])
            rd_kafka_topic_partition_list_add(l, p->cfg.events_topic, i)->offset =
                proj_start_offset(p, i);
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

void proj_on_timer(uv_timer_t *t)
{
    proj_t *p = t->data;
    if (p->stopping)
        return;
    if (p->busy) {
        if (uv_timer_start(&p->timer, proj_on_timer, IDLE_CHECK_MS, 0) != 0)
            proj_fail(p, "cannot start a timer");
        return;
    }
    if (!p->need_resync && halted_record_skipped(p)) {
        kc_log_info("a stopped partition's record was named in event_skips: reading the stored "
                    "offsets again");
        p->need_resync = 1;
    }
    if (p->need_resync) {
        if (resync(p) != 0) {
            p->backoff_ms = p->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->backoff_ms * 2;
            if (uv_timer_start(&p->timer, proj_on_timer, (uint64_t)p->backoff_ms, 0) != 0)
                proj_fail(p, "cannot start a timer");
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
    if (!p->stopping && uv_timer_start(&p->timer, proj_on_timer, IDLE_CHECK_MS, 0) != 0)
        proj_fail(p, "cannot start a timer");
}

static void schedule_resync(proj_t *p, const char *why)
{
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("retry_ms", p->backoff_ms)),
              "batch not applied, reading the stored offsets again: %s", why);
    p->need_resync = 1;
    if (!p->stopping && uv_timer_start(&p->timer, proj_on_timer, (uint64_t)p->backoff_ms, 0) != 0)
        proj_fail(p, "cannot start a timer");
}

/* ---- the batch ---- */

/* Commits where both models stand to Kafka, at most once a second and only what moved, so
 * that kafka-consumer-groups and other tools show the projectors' progress and lag. Never read
 * back (the models' own offsets are the truth); async, so it never holds the loop. A commit
 * the group refuses (one sent during a rebalance) is made again on the next round:
 * proj_on_offset_commit forgets what it had noted as committed. */
static void commit_progress(proj_t *p)
{
    uint64_t now = kc_mono_ns();
    if (now < p->next_commit_ns || !p->consumer.rk)
        return;
    p->next_commit_ns = now + 1000000000u;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t i = 0; i < p->nparts; i++) {
        int64_t off = proj_start_offset(p, i);
        if (!p->assigned[i] || off <= 0 || off == p->kafka_committed[i])
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new(p->nparts);
        rd_kafka_topic_partition_list_add(l, p->cfg.events_topic, i)->offset = off;
    }
    if (!l)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit(p->consumer.rk, l, 1);
    if (err)
        kc_log_warn("cannot commit the projector's progress to Kafka: %s", rd_kafka_err2str(err));
    else
        for (int i = 0; i < l->cnt; i++)
            p->kafka_committed[l->elems[i].partition] = l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
}

void proj_on_offset_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    proj_t *p = opaque;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        int32_t part = offsets->elems[i].partition;
        if ((err || offsets->elems[i].err) && part >= 0 && part < p->nparts &&
            p->kafka_committed[part] == offsets->elems[i].offset)
            p->kafka_committed[part] = -1;
    }
}

static void end_batch(proj_t *p, const char *failure)
{
    proj_items_clear(p);
    proj_rargs_free(&p->rargs);
    p->busy = 0;
    if (failure)
        schedule_resync(p, failure);
    if (p->stopping) {
        p->drained(p);
        return;
    }
    if (!failure) {
        if (p->cfg.rebuild)
            proj_rebuild_maybe_swap(p);
        else
            commit_progress(p);
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
    if (err && strncmp(err, "NOSCRIPT", 8) == 0 && p->script_reloaded < SCRIPT_RELOADS_MAX) {
        /* Redis restarted or its scripts were flushed: the script did not run at all. A flush
         * may land again between the load and the call (an operator's loop, a Redis
         * restarting twice): a few loads per batch before it is given up. */
        kc_log_info("the Redis batch script is not loaded: loading it again");
        p->script_reloaded++;
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
    /* The audit log is written once, live: a rebuild replays events whose rows were written
     * (and perhaps pruned) long ago. */
    if (!p->cfg.rebuild)
        proj_pg_audit(p->schema, p->items, p->nitems, &parts);
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
    if (p->halted_at[part] >= 0 && m->offset >= p->halted_at[part])
        return; /* fetched before the partition was paused */
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
            if (!proj_skipped(p->skips, p->nskips, part, m->offset)) {
                halt(p, part, m->offset, err);
                return;
            }
            kc_log_kv(KC_LOG_WARN,
                      KC_FIELDS(KC_INT("partition", part), KC_INT("offset", m->offset)),
                      "undecodable event skipped, as event_skips says: %s", err);
            kc_counter_inc(p->poison);
            it.kind = ITEM_POISON;
        }
        p->bytes += m->len;
    }
    add_item(p, &it);
}

int proj_on_events(void *arg)
{
    proj_t *p = arg;
    if (p->busy || p->need_resync || p->stopping)
        return 0;
    int polled = 0;
    while (polled < 500 && p->nitems < (size_t)p->cfg.batch_max && p->bytes < BATCH_MAX_BYTES &&
           !p->need_resync && !p->stopping) {
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
    if (p->need_resync || p->stopping) { /* stopping: a rebuild gave up in take() */
        proj_items_clear(p);
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

void proj_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    proj_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        char e[512];
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition < p->nparts) {
                p->assigned[parts->elems[i].partition] = 1;
                unhalt(p, parts->elems[i].partition);
            }
        halted_health(p);
        /* Start where the models are, not at Kafka's committed offsets (for tools only). */
        if (load_state(p, e, sizeof(e)) != 0) {
            kc_log_warn("cannot read the stored offsets at assignment: %s", e);
            p->need_resync = 1;
            proj_items_clear(p);
            if (uv_timer_start(&p->timer, proj_on_timer, (uint64_t)p->backoff_ms, 0) != 0)
                proj_fail(p, "cannot start a timer");
        }
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->nparts && !p->need_resync)
                parts->elems[i].offset = proj_start_offset(p, part);
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("partition", part),
                                KC_INT("offset", part < p->nparts ? proj_start_offset(p, part) : -1),
                                KC_INT("pg_next", part < p->nparts ? p->pg_next[part] : -1),
                                KC_INT("redis_next", part < p->nparts ? p->redis_next[part] : -1)),
                      "partition assigned");
        }
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part < p->nparts) {
                p->assigned[part] = 0;
                unhalt(p, part);
                drop_items_of(p, part);
            }
        }
        halted_health(p);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
    }
    (void)kc_kafka_rebalance_apply(rk, err, parts);
}


void proj_pipeline_init(proj_t *p)
{
    p->backoff_ms = RETRY_MIN_MS;
}

int proj_pipeline_watch(proj_t *p)
{
    return uv_timer_start(&p->timer, proj_on_timer, IDLE_CHECK_MS, 0);
}
