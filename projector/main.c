/* kchat-projector - chat.events in, the Postgres and Redis read models out.
 *
 * The consumer reads chat.events (read_committed) in batches. A batch is applied to Redis
 * first (one EVALSHA of the batch script, which checks the generation and the offsets hash and
 * writes the batch and the new offsets atomically), then to Postgres (one transaction holding
 * the rows, the offsets in rm.offsets and the NOTIFYs, under the shared advisory lock of `rm`).
 * Each model keeps its own offsets, so each applies every event exactly once and either can
 * lag or be rebuilt alone. Kafka's committed offsets are never used: on assignment, and after
 * any failure, the stored offsets are read again and the consumer is moved to the lower of
 * the two. The projector still commits where it stands to Kafka once a second, for
 * kafka-consumer-groups and other tools (pipeline.c, commit_progress). With --rebuild the same pipeline fills a shadow schema and generation from the
 * start of the topic and swaps them in (rebuild.c).
 *
 * This file holds the options, start-up, metrics and the stop; pipeline.c runs the batches.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/schema_registry.h"
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
    KC_CFG_EVENTS_TOPIC(proj_cfg_t, events_topic, "read from"),
    KC_CFG_SCHEMAS_DIR(proj_cfg_t, schemas_dir),
    KC_CFG_SCHEMA_REGISTRY(proj_cfg_t, schema_registry),
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


/* ---- metrics ---- */

static void on_collect(void *arg)
{
    proj_t *p = arg;
    for (int32_t i = 0; i < p->nparts; i++) {
        int64_t lo = 0, hi = 0;
        double lag = 0;
        if (p->assigned[i] && p->consumer.rk &&
            rd_kafka_get_watermark_offsets(p->consumer.rk, p->cfg.events_topic, i, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0 && hi > proj_start_offset(p, i))
            lag = (double)(hi - proj_start_offset(p, i));
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
                                   "Undecodable records passed over because event_skips names "
                                   "them (kchatctl skip-event).",
                                   NULL);
    p->halted = kc_metrics_gauge(m, "kchat_projector_halted_partitions",
                                 "Partitions stopped at a record the projector cannot decode.",
                                 NULL);
    p->resyncs = kc_metrics_counter(m, "kchat_projector_resyncs_total",
                                    "Batches given up (rolled back) after which the stored "
                                    "offsets were read again.",
                                    NULL);
    p->notified = kc_metrics_counter(m, "kchat_projector_notifications_total",
                                     "NOTIFY kchat_applied sent for events of api: origin.", NULL);
    const char *rr[] = {"kind", "redis_flush", NULL}, *rs[] = {"kind", "swap", NULL},
               *rd[] = {"kind", "ddl", NULL};
    static const char rebuilds[] = "Rebuilds: the Redis model rebuilt after it vanished, a "
                                   "--rebuild swapped in, or both models rebuilt at start "
                                   "because `rm` was made by another DDL.";
    p->rebuild_redis = kc_metrics_counter(m, "kchat_projector_rebuilds_total", rebuilds, rr);
    p->rebuild_swaps = kc_metrics_counter(m, "kchat_projector_rebuilds_total", rebuilds, rs);
    p->rebuild_ddl = kc_metrics_counter(m, "kchat_projector_rebuilds_total", rebuilds, rd);
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

static int start(void *arg, char *err, size_t errlen)
{
    proj_t *p = arg;
    p->schemas = kc_schemas_load(p->cfg.schemas_dir, err, errlen);
    if (!p->schemas)
        return -1;
    if (kc_sr_check(p->schemas, &p->cfg.schema_registry, err, errlen) != 0)
        return -1;
    p->schema = p->cfg.rebuild ? "rm_next" : "rm";
    proj_pipeline_init(p);
    p->drained = close_all;
    kc_kafka_opts_t ko = {.conn = &p->cfg.kafka,
                          .health = p->app.health,
                          .metrics = p->app.metrics,
                          .client_id = p->cfg.rebuild ? "projector-rebuild" : "projector-consumer",
                          .check_name = "kafka_consumer",
                          .rebalance_cb = proj_on_rebalance,
                          .offset_commit_cb = proj_on_offset_commit,
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
    if (!rk || kc_kafka_bind(&p->consumer, p->app.loop, rk, proj_on_events, p, err, errlen) != 0)
        return -1;
    p->nparts = kc_kafka_partition_count(p->consumer.rk, p->cfg.events_topic, 15000, err, errlen);
    if (p->nparts < 0)
        return -1;
    size_t np = (size_t)p->nparts;
    p->assigned = kc_xcalloc(np, sizeof(int));
    p->at_end = kc_xcalloc(np, sizeof(int));
    p->pg_next = kc_xcalloc(np, sizeof(int64_t));
    p->redis_next = kc_xcalloc(np, sizeof(int64_t));
    p->kafka_committed = kc_xcalloc(np, sizeof(int64_t));
    p->rparts = kc_xcalloc(np, sizeof(int32_t));
    p->pparts = kc_xcalloc(np, sizeof(int32_t));
    p->rnext = kc_xcalloc(np, sizeof(int64_t));
    p->pnext = kc_xcalloc(np, sizeof(int64_t));
    p->halted_at = kc_xcalloc(np, sizeof(int64_t));
    p->halt_why = kc_xcalloc(np, sizeof(*p->halt_why));
    for (size_t i = 0; i < np; i++)
        p->halted_at[i] = -1;
    make_metrics(p);
    p->health_events = kc_health_add(p->app.health, "events");
    kc_health_set(p->app.health, p->health_events, 1, NULL);
    if (uv_timer_init(p->app.loop, &p->timer) != 0 ||
        uv_timer_init(p->app.loop, &p->progress_timer) != 0)
        abort();
    p->timer.data = p->progress_timer.data = p;
    p->timers_open = 2;

    p->pg = kc_pg_new(p->app.loop, p->cfg.pg.dsn, p->app.health, "postgres");
    p->redis = kc_redis_new(p->app.loop, &p->cfg.redis, p->app.health, "redis");
    if (p->cfg.rebuild) {
        if (proj_rebuild_prepare(p, err, errlen) != 0)
            return -1;
        if (uv_timer_start(&p->progress_timer, on_progress, (uint64_t)p->cfg.progress_interval_ms,
                           (uint64_t)p->cfg.progress_interval_ms) != 0)
            abort();
        return 0;
    }
    /* The schema `rm` exists before anything is consumed (readers may query it at once), made
     * by this projector's DDL: one made by another is made anew and both models rebuilt. */
    PGconn *pc = proj_pg_connect(p->cfg.pg.dsn, err, errlen);
    if (!pc)
        return -1;
    int rc = proj_rebuild_if_other_ddl(p, pc, err, errlen);
    if (rc == 0)
        rc = proj_pg_ensure_schema(pc, p->schema, 1, 0, err, errlen);
    PQfinish(pc);
    if (rc != 0)
        return -1;
    if (proj_pipeline_watch(p) != 0)
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

static void free_all(void *arg)
{
    proj_t *p = arg;
    proj_items_clear(p);
    free(p->items);
    proj_rargs_free(&p->rargs);
    free(p->assigned);
    free(p->at_end);
    free(p->pg_next);
    free(p->redis_next);
    free(p->kafka_committed);
    free(p->rparts);
    free(p->pparts);
    free(p->rnext);
    free(p->pnext);
    free(p->halted_at);
    free(p->halt_why);
    free(p->skips);
    free(p->lag);
    kc_schemas_destroy(p->schemas);
}

static void start_failed(void *arg)
{
    proj_t *p = arg;
    kc_pg_close(p->pg);
    kc_redis_close(p->redis);
    if (p->timers_open) {
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->progress_timer, on_timer_closed);
    }
}

static void started(void *arg)
{
    proj_t *p = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("admin_port", kc_httpd_port(p->app.admin_httpd)),
                        KC_STR("topic", p->cfg.events_topic), KC_STR("schema", p->schema),
                        KC_INT("partitions", p->nparts)),
              p->cfg.rebuild ? "projector rebuild started" : "projector started");
}

static int exit_code(void *arg)
{
    return ((proj_t *)arg)->failed ? 1 : 0;
}

static void release(void *arg)
{
    kc_kafka_bound_destroy(&((proj_t *)arg)->consumer);
}

int main(int argc, char **argv)
{
    proj_t p = {0};
    kc_app_spec_t spec = {KC_APP_SPEC("projector", proj_opts, &p),
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
