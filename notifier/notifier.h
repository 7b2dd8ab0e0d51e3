/* notifier.h - the notifier's state, shared by its stages:
 *
 *   intake.c   chat.events -> who is to hear of each new message -> notify_pending (Postgres),
 *              with the offsets, in one statement per partition
 *   close.c    notify_pending rows that are due -> notify_outbox rows, one per target
 *   send.c     notify_outbox rows -> Web Push requests and signed webhooks, retried
 *   decide.c   the pure parts: mentions, what a notification says, its ids (unit-tested)
 *   main.c     options, start and stop, metrics
 *
 * Each stage reads what the one before it wrote to Postgres, so a notifier that is killed
 * goes on where it stood, and several notifiers share the work: partitions through the
 * consumer group, due rows and sends through short claims (SKIP LOCKED).
 */
#ifndef NOTIFIER_H
#define NOTIFIER_H

#include <stdint.h>

#include "decide.h"
#include "kchat/app.h"
#include "kchat/avro.h"
#include "kchat/httpc.h"
#include "kchat/kafka.h"
#include "kchat/list.h"
#include "kchat/map.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/webpush.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
    char *group_id;
    char *events_topic;
    char *schemas_dir;
    kc_sr_cfg_t schema_registry;
    long long session_timeout_ms;
    long long batch_max;
    long long coalesce_ms;
    char *content; /* preview, sender or none */
    char *vapid_private_key;
    char *vapid_subject;
    long long push_ttl_s;
    char *webhook_urls;
    char *webhook_secret;
    long long send_deadline_s;
    long long retry_min_ms;
    long long retry_max_ms;
    long long origin_concurrency;
    long long sends_max;
    long long http_timeout_ms;
    long long projector_wait_ms;
} nt_cfg_t;

#define NT_MAX_WEBHOOKS 8
#define NT_MAX_PARTS 1024

/* One new message of the batch being taken in. */
typedef struct {
    int32_t partition;
    char *convo_id, *sender_id, *content;
    int64_t seq_no, at_ms;
    size_t nfiles;
} nt_msg_t;

/* A send waiting for its origin's turn, or in flight. */
typedef struct nt_send nt_send_t;

typedef struct {
    char origin[256];
    int inflight;
    kc_list_t waiting; /* nt_send_t, in claim order */
} nt_origin_t;

typedef struct nt nt_t;

struct nt {
    nt_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_pg_t *pg;
    kc_redis_t *redis;
    kc_schemas_t *schemas;
    kc_httpc_t *http;
    kc_vapid_t *vapid; /* NULL: no Web Push */
    nt_content_t content;
    char *webhooks[NT_MAX_WEBHOOKS];
    size_t nwebhooks;
    int failed;
    int stopping;
    int drained; /* the consumer, Postgres and Redis are closed */

    /* intake */
    int32_t nparts;
    int *assigned;
    int64_t *stored;     /* next offset stored in notify_offsets; -1: no row */
    int64_t *next;       /* next offset the batch reaches, per partition; -1: none */
    uint64_t *offsets_written_ns; /* when a partition's offset alone was last stored */
    int64_t *first_seen; /* first offset taken since assignment (where to go back to when
                          * nothing is stored); -1: none */
    nt_msg_t *msgs;
    size_t nmsgs, capmsgs;
    int busy;          /* a batch is being decided and written: the consumer waits */
    int need_resync;   /* the consumer must go back to the stored offsets */
    int reading_offsets;
    uint64_t batch_t0;
    int intake_pending; /* statements of the batch outstanding */
    int intake_failed;
    int intake_mention; /* the batch made a notification due at once */
    kc_map_t *members;  /* the batch's conversations: convo_id -> nt_convo_t */
    uv_timer_t intake_timer; /* waits for the projector, and resync backoff */
    int backoff_ms;

    /* close */
    int closing_busy;
    uv_timer_t close_timer;

    /* send */
    kc_map_t *origins; /* origin -> nt_origin_t */
    size_t queued;    /* claimed sends waiting or in flight */
    int claiming;
    uv_timer_t send_timer;

    int timers_open;

    /* metrics */
    kc_counter_t *consumed, *messages, *coalesced, *pending_made;
    kc_counter_t *skip_connected, *skip_muted, *skip_no_target, *skip_online_at_close;
    kc_counter_t *sent_push, *sent_webhook;
    kc_counter_t *fail_gone, *fail_refused, *fail_deadline, *fail_encrypt;
    kc_counter_t *retry_429, *retry_5xx, *retry_network;
    kc_counter_t *resyncs;
    kc_counter_t *responses[2][NT_STATUS_CLASSES]; /* [push, webhook][nt_status_class] */
    kc_histogram_t *latency_push, *latency_webhook;
    kc_gauge_t *inflight_g;
};

/* intake.c */
int nt_on_events(void *arg);
void nt_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *parts, void *opaque);
void nt_intake_init(nt_t *n);
void nt_intake_free(nt_t *n);
/* At a stop: a batch waiting for the projector or a retry is given up (read again later). */
void nt_intake_stop(nt_t *n);
/* Asks the route registry which of users[0..nusers) a gateway holds right now: cb gets an
 * array of integers, 1 (connected) or 0, in the same order. 0, or what kc_redis_command
 * returned (cb not called). */
int nt_ask_online(nt_t *n, const char *const *users, size_t nusers, kc_redis_cb cb, void *arg);

/* close.c */
void nt_close_init(nt_t *n);
/* Turns due notifications into sends now (after a batch made one due at once). */
void nt_close_kick(nt_t *n);

/* send.c */
void nt_send_init(nt_t *n);
void nt_send_kick(nt_t *n);
/* At a stop: claims no more, releases the waiting sends and cancels those in flight (their
 * claims released too); the drain waits until n->queued is 0. */
void nt_send_stop(nt_t *n);
void nt_send_free(nt_t *n);

/* main.c: something that cannot go on failed; the daemon stops with exit code 1. */
void nt_fail(nt_t *n, const char *why);
/* main.c: the batch in flight at a stop has ended; the drain goes on. */
void nt_drained(nt_t *n);

#endif
