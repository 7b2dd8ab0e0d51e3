/* rebuild.c - `kchat-projector --rebuild`: fresh read models from the start of chat.events,
 * built beside the live ones and swapped in without downtime.
 *
 * The rebuild writes the shadow schema `rm_next` (dropped and created anew) and the Redis
 * generation kchat:rm:<gen+1>, through the same pipeline as the live projector but with the
 * consumer assigned every partition from offset 0 and no consumer group of its own. Once
 * every partition has been applied up to its end (and less than a batch has arrived since),
 * it swaps: in one Postgres transaction that
 * holds the advisory lock of `rm` exclusively (the live projector takes it shared in each of
 * its transactions), `rm` becomes `rm_old_<ms>` and `rm_next` becomes `rm`; then kchat:rm:gen
 * is set to gen+1 (only if it still holds gen), and the old schema and keys are removed.
 * The live projector's next transaction fails its generation check, rolls back, reads the
 * new schema's offsets and carries on from there; likewise its next Redis batch sees the
 * new generation. Whatever the live projector applied after the rebuild's last batch is
 * applied again to the new models from their own offsets: nothing twice, nothing lost.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "projector.h"
#include "store.h"

/* The live projector's start, when `rm` was made by another DDL (an older db/readmodel.sql:
 * no topic, roles or departures, say): both models are rebuilt from the start of the events
 * topic by the live pipeline itself, as for a first start. The Redis model first (a new
 * generation: its keys are of the older format too), then `rm` anew with the next generation
 * under the lock, checked again there; a crash between them only rebuilds Redis once more.
 * Readers see the models fill up meanwhile: a --rebuild of this version run before it, which
 * swaps in a stamped schema, avoids that. */
int proj_rebuild_if_other_ddl(proj_t *p, PGconn *pc, char *err, size_t errlen)
{
    proj_schema_state_t state;
    if (proj_pg_schema_state(pc, "rm", &state, err, errlen) != 0)
        return -1;
    if (state != PROJ_SCHEMA_OTHER)
        return 0;
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("schema", "rm"), KC_STR("ddl", proj_readmodel_stamp())),
              "the read model was made by another DDL (db/readmodel.sql changed): rebuilding "
              "both read models from the start of the events topic");
    redisContext *r = proj_redis_connect(&p->cfg.redis, err, errlen);
    if (!r)
        return -1;
    int rc = -1;
    int64_t gen = 0, pg_gen = -1;
    long long n = 0;
    if (proj_redis_gen(r, &gen, err, errlen) != 0)
        goto out;
    if (gen > 0) {
        char next[64], old[64];
        kc_strlcpyf(next, sizeof(next), KC_REDIS_RM "%" PRId64 ":", gen + 1);
        kc_strlcpyf(old, sizeof(old), KC_REDIS_RM "%" PRId64 ":", gen);
        if (proj_redis_unlink_prefix(r, next, &n, err, errlen) != 0 ||
            proj_redis_gen_switch(r, gen, gen + 1, err, errlen) != 0)
            goto out;
        if (proj_redis_unlink_prefix(r, old, &n, err, errlen) != 0)
            kc_log_warn("the old Redis generation could not be removed: %s", err);
        kc_log_kv(KC_LOG_INFO,
                  KC_FIELDS(KC_INT("from", gen), KC_INT("to", gen + 1),
                            KC_INT("old_keys_removed", n)),
                  "Redis read model generation changed: rebuilding it");
    }
    if (proj_pg_replace_other(pc, "rm", &pg_gen, err, errlen) != 0)
        goto out;
    if (pg_gen > 0)
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("schema", "rm"), KC_INT("generation", pg_gen)),
                  "Postgres read model made anew: rebuilding it");
    else
        kc_log_info("another projector made the Postgres read model anew meanwhile");
    kc_counter_inc(p->rebuild_ddl);
    rc = 0;
out:
    redisFree(r);
    return rc;
}

int proj_rebuild_prepare(proj_t *p, char *err, size_t errlen)
{
    int rc = -1;
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, errlen);
    redisContext *r = pc ? proj_redis_connect(&p->cfg.redis, err, errlen)
                         : NULL;
    int64_t *offs = kc_xcalloc((size_t)p->nparts, sizeof(int64_t));
    int64_t live_gen = -1;
    if (!r ||
        proj_pg_state(pc, "rm", p->cfg.events_topic, p->nparts, offs, &live_gen, err, errlen) !=
            0 ||
        proj_redis_gen(r, &p->old_redis_gen, err, errlen) != 0)
        goto out;
    /* The records the live models passed over are passed over again. */
    free(p->skips);
    p->skips = NULL;
    if (proj_pg_skips(pc, p->cfg.events_topic, &p->skips, &p->nskips, err, errlen) != 0)
        goto out;
    p->pg_gen = (live_gen > 0 ? live_gen : 0) + 1;
    p->redis_gen = p->old_redis_gen + 1;
    kc_strlcpyf(p->prefix, sizeof(p->prefix), KC_REDIS_RM "%" PRId64 ":", p->redis_gen);
    long long leftovers = 0;
    if (proj_pg_ensure_schema(pc, p->schema, p->pg_gen, 1, err, errlen) != 0 ||
        proj_redis_unlink_prefix(r, p->prefix, &leftovers, err, errlen) != 0)
        goto out;
    if (leftovers)
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("keys", leftovers)),
                  "removed the keys an earlier rebuild left in the new generation");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->nparts);
    for (int32_t i = 0; i < p->nparts; i++) {
        rd_kafka_topic_partition_list_add(l, p->cfg.events_topic, i)->offset = 0;
        p->assigned[i] = 1;
    }
    rd_kafka_resp_err_t kerr = rd_kafka_assign(p->consumer.rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (kerr) {
        kc_strlcpyf(err, errlen, "cannot assign %s: %s", p->cfg.events_topic,
                    rd_kafka_err2str(kerr));
        goto out;
    }
    p->rebuild_t0 = p->last_tick_ns = kc_mono_ns();
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_STR("schema", p->schema), KC_INT("pg_generation", p->pg_gen),
                        KC_INT("redis_generation", p->redis_gen)),
              "rebuilding the read models from the start of the events topic");
    rc = 0;
out:
    free(offs);
    PQfinish(pc);
    if (r)
        redisFree(r);
    return rc;
}

void proj_rebuild_progress(proj_t *p)
{
    /* The rate over the last interval, and since the start (which the ETA uses: a batch
     * can take longer than an interval, so the recent rate jumps between 0 and peaks). */
    uint64_t now = kc_mono_ns();
    double dt = (double)(now - p->last_tick_ns) / 1e9;
    double total = (double)(now - p->rebuild_t0) / 1e9;
    double rate = dt > 0 ? (double)(p->applied_total - p->applied_at_last_tick) / dt : 0;
    double avg = total > 0 ? (double)p->applied_total / total : 0;
    int64_t lag = proj_lag_total(p);
    double eta = avg > 0 ? (double)lag / avg : -1;
    p->last_tick_ns = now;
    p->applied_at_last_tick = p->applied_total;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("events", (long long)p->applied_total),
                        KC_INT("events_per_s", (long long)avg),
                        KC_INT("events_per_s_recent", (long long)rate), KC_INT("lag", lag),
                        KC_INT("eta_s", (long long)eta)),
              "rebuild progress");
}

void proj_rebuild_maybe_swap(proj_t *p)
{
    /* Every partition has been read to its end once, and what arrived since is less than a
     * batch: the live projector applies that much to the new models after the swap. (Waiting
     * for a moment when every partition is at its end could wait for ever under a steady
     * flow of messages.) */
    for (int32_t i = 0; i < p->nparts; i++)
        if (!p->at_end[i])
            return;
    if (proj_lag_total(p) > p->cfg.batch_max)
        return;
    char err[512];
    double secs = (double)(kc_mono_ns() - p->rebuild_t0) / 1e9;
    kc_log_kv(
        KC_LOG_INFO,
        KC_FIELDS(KC_INT("events", (long long)p->applied_total), KC_INT("seconds", (long long)secs),
                  KC_INT("ms", (long long)(secs * 1000)),
                  KC_INT("events_per_s", secs > 0 ? (long long)(p->applied_total / secs) : 0)),
        "rebuild caught up; swapping it in");
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, sizeof(err));
    redisContext *r = pc ? proj_redis_connect(&p->cfg.redis, err, sizeof(err))
                         : NULL;
    if (!r || proj_pg_swap(pc, "rm", p->schema, err, sizeof(err)) != 0) {
        kc_log_error("swap failed: %s", err);
        p->failed = 1;
        goto out;
    }
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("generation", p->pg_gen)),
              "Postgres read model swapped in");
    if (proj_redis_gen_switch(r, p->old_redis_gen, p->redis_gen, err, sizeof(err)) != 0) {
        kc_log_error("Redis generation switch failed: %s", err);
        p->failed = 1;
        goto out;
    }
    char old[64];
    long long n = 0;
    kc_strlcpyf(old, sizeof(old), KC_REDIS_RM "%" PRId64 ":", p->old_redis_gen);
    if (p->old_redis_gen > 0 && proj_redis_unlink_prefix(r, old, &n, err, sizeof(err)) != 0)
        kc_log_warn("the old Redis generation could not be removed: %s", err);
    kc_counter_inc(p->rebuild_swaps);
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("generation", p->redis_gen), KC_INT("old_keys_removed", n)),
              "Redis read model swapped in; rebuild done");
out:
    PQfinish(pc);
    if (r)
        redisFree(r);
    kc_daemon_stop(p->app.daemon, p->failed ? "rebuild failed" : "rebuild done");
}

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
        int64_t lag = hi - proj_start_offset(p, i);
        total += lag > 0 ? lag : 0;
    }
    return total;
}
