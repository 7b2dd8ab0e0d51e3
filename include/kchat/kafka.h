/* kafka.h - librdkafka clients with kchat's defaults, and their adapter to the libuv loop.
 *
 * Producers: enable.idempotence=true, acks=all, partitioner=murmur2_random (keys land on
 * the same partitions as with the Java client's default partitioner, which analytics teams
 * use), socket.nagle.disable=true. Consumers: isolation.level=read_committed,
 * enable.auto.commit=false, enable.auto.offset.store=false (the caller decides what is
 * done). Both route librdkafka's logs into kc_log (log.queue, served on the loop) and read
 * the client's statistics to keep a health check: healthy while at least one broker
 * connection is up.
 *
 * Overrides are a NULL-terminated list of key, value strings applied after the defaults,
 * so a caller can add transactional.id or change linger.ms. The constructors take no
 * ownership of their arguments.
 *
 * The loop adapter follows librdkafka's io-event mechanism: the queue writes a byte to a
 * non-blocking pipe when it goes from empty to non-empty; a uv_poll_t watches the pipe and
 * calls `ready`, which serves the queue (kc_kafka_serve, or consumer polls). `ready`
 * returns 1 if it stopped early with work left; the watcher also asks the queue itself
 * (a poll may return nothing with ops still queued), and while work is left it calls
 * `ready` again on the next loop iteration instead of waiting for a byte.
 */
#ifndef KCHAT_KAFKA_H
#define KCHAT_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "kchat/health.h"
#include "kchat/metrics.h"

/* How a client reaches the brokers: the connection options every daemon and kchatctl share
 * (KC_CFG_KAFKA in kchat/app.h). Empty strings and NULL mean "not set". */
typedef struct {
    char *brokers;
    char *debug;             /* librdkafka's debug contexts ("cgrp,fetch") */
    char *security_protocol; /* plaintext, ssl, sasl_plaintext or sasl_ssl */
    char *sasl_mechanism;    /* PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 */
    char *sasl_username;
    char *sasl_password;
    char *ssl_ca_location;          /* PEM file of the CAs that sign the brokers' certificates */
    char *ssl_certificate_location; /* the client's own certificate (PEM), for mutual TLS */
    char *ssl_key_location;         /* and its key (PEM) */
} kc_kafka_cfg_t;

/* Sets bootstrap.servers, debug and the security settings of c on conf. Refuses settings
 * that contradict each other (SASL credentials without a SASL protocol, a SASL protocol
 * without a user name, a certificate without its key) with a message that names the
 * options; never writes the password into errstr. Returns 0 or -EINVAL. */
int kc_kafka_conf_connect(rd_kafka_conf_t *conf, const kc_kafka_cfg_t *c, char *errstr,
                          size_t errstr_size);

typedef struct {
    const kc_kafka_cfg_t *conn; /* brokers and security; kc_kafka_conf_connect */
    const char *client_id;
    kc_health_t *health;   /* optional: a check named check_name is added and kept */
    const char *check_name;
    kc_metrics_t *metrics; /* optional: kchat_kafka_* series labelled with client_id */
    /* optional, producers: delivery reports, served on the loop like every other callback;
     * the message's _private is the msg_opaque given when it was produced. */
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
    /* optional, consumers: replaces kchat's logging rebalance callback; it must (incrementally)
     * assign or unassign as librdkafka requires. */
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
    /* optional, consumers: the outcome of each offset commit (err for the whole request,
     * and each partition's own err), served on the loop like the other callbacks. */
    void (*offset_commit_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque);
    void *opaque; /* passed to dr_msg_cb, rebalance_cb and offset_commit_cb (kchat keeps its
                   * own client opaque) */
    /* optional, producers: delivery reports as RD_KAFKA_EVENT_DR events on the main queue
     * (served with rd_kafka_queue_poll) instead of callbacks, so rd_kafka_flush() and
     * rd_kafka_commit_transaction() never serve the queue themselves and may run on another
     * thread than the one serving it. */
    int dr_events;
} kc_kafka_opts_t;

/* The opaque given in kc_kafka_opts_t (rd_kafka_opaque() holds kchat's own state). */
void *kc_kafka_user_opaque(rd_kafka_t *rk);

rd_kafka_t *kc_kafka_producer_new(const kc_kafka_opts_t *o, const char *const *overrides,
                                  char *errstr, size_t errstr_size);
rd_kafka_t *kc_kafka_consumer_new(const kc_kafka_opts_t *o, const char *group_id,
                                  const char *const *overrides, char *errstr,
                                  size_t errstr_size);
/* Frees the opaque state kchat attached to rk (call after rd_kafka_destroy). */
void kc_kafka_opaque_free(void *opaque);
/* rd_kafka_destroy plus the opaque; NULL is a no-op. */
void kc_kafka_destroy(rd_kafka_t *rk);

/* Serves up to max events of rk's main queue (callbacks: delivery reports, logs, stats,
 * errors). Returns 1 if max was reached with events possibly left, else 0. */
int kc_kafka_serve(rd_kafka_t *rk, int max);

typedef struct kc_kafka_watch kc_kafka_watch_t;
typedef int (*kc_kafka_ready_fn)(void *arg);

/* Watches q (the caller keeps its reference and destroys it after closing the watch). */
kc_kafka_watch_t *kc_kafka_watch_new(uv_loop_t *loop, rd_kafka_queue_t *q, kc_kafka_ready_fn ready,
                                     void *arg, char *errstr, size_t errstr_size);
/* Stops serving the queue until kc_kafka_watch_resume (the queue keeps filling), e.g. while
 * the consumer of a batch waits for an answer from elsewhere. */
void kc_kafka_watch_pause(kc_kafka_watch_t *w);
void kc_kafka_watch_resume(kc_kafka_watch_t *w);
/* Disables the io event, stops watching and frees itself once libuv has closed the handles.
 * NULL is a no-op. */
void kc_kafka_watch_close(kc_kafka_watch_t *w);

/* A handle of topic on producer rk, held for as long as the producer writes to it, with the
 * topic's metadata read now (blocking, at start-up). librdkafka forgets a topic that no
 * handle holds once its records are delivered; the next record to it then waits for the
 * next metadata scan (about a second) before it is sent: a producer that writes now and then
 * must hold its topics. Release with rd_kafka_topic_destroy before the client. NULL with
 * errstr on failure. */
rd_kafka_topic_t *kc_kafka_topic_hold(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                      char *errstr, size_t errstr_size);

/* Serves one event of a queue polled with rd_kafka_queue_poll (a producer with
 * dr_events): logs, statistics and errors go where the callbacks would send them; other
 * types (delivery reports) are the caller's. */
void kc_kafka_event_serve(rd_kafka_t *rk, rd_kafka_event_t *ev);

/* Applies a rebalance as librdkafka requires: incremental (un)assign under the cooperative
 * protocol, assign / unassign under the eager one. For rebalance_cb replacements that do
 * their own work first. Returns 0 or -EIO (logged). */
int kc_kafka_rebalance_apply(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts);

/* The partition count of a topic from the cluster's metadata (blocking, at start-up), or -1
 * with errstr. */
int32_t kc_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                                 size_t errstr_size);

/* A client bound to the loop: its serving queue (the consumer queue for consumers, the main
 * queue for producers) and the watch on it. */
typedef struct {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    kc_kafka_watch_t *w;
} kc_kafka_bound_t;

/* Takes ownership of rk (destroyed by kc_kafka_bound_destroy even when this fails). */
int kc_kafka_bind(kc_kafka_bound_t *b, uv_loop_t *loop, rd_kafka_t *rk, kc_kafka_ready_fn ready,
                  void *arg, char *errstr, size_t errstr_size);
/* Stops watching (the client keeps working, e.g. for a blocking close or flush). */
void kc_kafka_unbind(kc_kafka_bound_t *b);
/* Unbinds if needed, then destroys the queue and the client. */
void kc_kafka_bound_destroy(kc_kafka_bound_t *b);

/* Java's murmur2 (as used by its default partitioner), for tests and for routing code that
 * must agree with the partitioner: partition = (murmur2(key) & 0x7fffffff) % partitions. */
/* A consumer's lag from librdkafka's statistics JSON: over the partitions it fetches, the
 * messages between its position (the next offset handed to the application, else the next
 * to fetch) and the end (the last stable offset, which read_committed reads up to, else the
 * high watermark). Not from librdkafka's consumer_lag, which counts from the committed offset:
 * wrong for offsets committed in transactions, and nothing for consumers that never commit. */
struct cJSON;
long long kc_kafka_stats_lag(const struct cJSON *stats);

int32_t kc_kafka_murmur2(const void *key, size_t len);
int32_t kc_kafka_partition_for(const void *key, size_t len, int32_t partitions);

#endif
