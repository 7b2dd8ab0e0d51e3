/* projector.h - the projector's state, shared by main.c (options, start and stop, metrics),
 * pipeline.c (the batch cycle) and rebuild.c (the --rebuild mode, which runs the same
 * pipeline into a shadow schema and generation). main.c calls pipeline.c, which calls
 * rebuild.c; nothing calls back up but through p->drained. */
#ifndef PROJ_PROJECTOR_H
#define PROJ_PROJECTOR_H

#include <stdint.h>

#include "apply_pg.h"
#include "apply_redis.h"
#include "batch.h"
#include "kchat/app.h"
#include "kchat/avro.h"
#include "kchat/kafka.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "store.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
    char *group_id;
    char *events_topic;
    char *schemas_dir;
    kc_sr_cfg_t schema_registry;
    long long batch_max;
    long long recent_messages;
    long long session_timeout_ms;
    int rebuild;
    long long progress_interval_ms;
} proj_cfg_t;

typedef struct proj proj_t;

struct proj {
    proj_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_pg_t *pg;
    kc_redis_t *redis;
    kc_schemas_t *schemas;
    int failed;

    const char *schema; /* "rm", or the rebuild's "rm_next" */
    int64_t pg_gen;     /* generation of the schema written (meta.generation) */
    int64_t redis_gen;  /* the n of kchat:rm:<n>: written */
    char prefix[64];    /* "kchat:rm:<redis_gen>:" */
    int32_t nparts;
    int *assigned;
    int64_t *pg_next, *redis_next; /* next offset to apply, per partition and model */
    /* What was last committed to Kafka per partition, for tools such as kafka-consumer-groups
     * only (never read back), and when the next commit may go. */
    int64_t *kafka_committed;
    uint64_t next_commit_ns;
    int *at_end;                   /* rebuild: partition applied up to its end once */
    /* Partitions stopped at an undecodable record: its offset (-1: running), and why. The
     * records an operator chose to pass over (event_skips), read with the stored offsets. */
    int64_t *halted_at;
    char (*halt_why)[160];
    proj_skip_t *skips;
    size_t nskips;
    uint64_t next_skip_check_ns;
    int health_events; /* the /health check "events": no partition stopped */

    /* The batch being collected or applied. */
    proj_item_t *items;
    size_t nitems, capitems, bytes;
    int busy;        /* applying: the consumer is paused */
    int need_resync; /* stored offsets must be read again and the consumer moved there */
    int stopping;
    int pending; /* callbacks outstanding in the current phase */
    int phase_failed;
    char phase_err[256];
    char script_sha[48];  /* the batch script's sha1, once SCRIPT LOAD has returned it */
    int script_reloaded;  /* times the current batch loaded the script after a NOSCRIPT */
    int32_t *rparts, *pparts; /* partitions the batch writes, per model */
    int64_t *rnext, *pnext;
    size_t nrparts, npparts;
    size_t r_events, p_events;
    uint64_t t0, phase_t0;
    proj_rargs_t rargs; /* the Redis batch script's keys and arguments */

    uv_timer_t timer; /* resync retries and the idle check of Redis */
    uv_timer_t progress_timer;
    int timers_open;
    int backoff_ms;

    /* rebuild */
    int64_t old_redis_gen;
    uint64_t rebuild_t0;
    uint64_t applied_total, applied_at_last_tick, last_tick_ns;

    kc_counter_t *consumed, *applied_pg, *applied_redis, *poison, *resyncs, *notified;
    kc_counter_t *rebuild_redis, *rebuild_swaps, *rebuild_ddl;
    kc_histogram_t *batch_hist, *lat_pg, *lat_redis;
    kc_gauge_t **lag;
    kc_gauge_t *halted;

    /* Called when a stopping projector has no batch in flight any more (main.c closes). */
    void (*drained)(proj_t *p);
};

/* The next offset to apply in a partition: the lower of the two models'. */
static inline int64_t proj_start_offset(const proj_t *p, int32_t part)
{
    return p->pg_next[part] < p->redis_next[part] ? p->pg_next[part] : p->redis_next[part];
}

/* pipeline.c */
/* Before the consumer is created: the resync backoff at its start. */
void proj_pipeline_init(proj_t *p);
/* Starts the idle check (and resync retries) on p->timer, once subscribed. uv's result. */
int proj_pipeline_watch(proj_t *p);
/* The consumer's watch callback: collects records, starts a batch (kc_kafka_bind). */
int proj_on_events(void *arg);
void proj_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t *parts, void *opaque);
void proj_on_timer(uv_timer_t *t);
/* The outcome of a commit of progress to the consumer group (kc_kafka_opts_t.offset_commit_cb). */
void proj_on_offset_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque);
/* Frees the records collected for the next batch. */
void proj_items_clear(proj_t *p);
/* Logs why and stops the process with a failure. */
void proj_fail(proj_t *p, const char *why);

/* rebuild.c */
/* At the live projector's start: when `rm` was made by another DDL, both models are emptied
 * (a new Redis generation, `rm` anew) so that the pipeline rebuilds them from offset 0.
 * Returns 0 (also when nothing was to be done) or -1 with err. */
int proj_rebuild_if_other_ddl(proj_t *p, PGconn *pc, char *err, size_t errlen);
/* Prepares the shadow schema and generation; the consumer is assigned every partition from
 * its start. Returns 0 or -1 with err. */
int proj_rebuild_prepare(proj_t *p, char *err, size_t errlen);
/* Logs progress: events/s, lag, ETA (every progress-interval-ms). */
void proj_rebuild_progress(proj_t *p);
/* Called after every applied batch: once every partition is applied to its end, swaps the
 * shadow in and stops the process. */
void proj_rebuild_maybe_swap(proj_t *p);
/* Sum over the assigned partitions of (high watermark - next offset to apply). */
int64_t proj_lag_total(proj_t *p);

#endif
