/* restorer.h - restores partitions' state (changelog.c's proc_restore) on a thread of its
 * own, so the loop keeps answering /health and serving the partitions it already has while
 * newly assigned ones are read back. One job at a time; the loop collects the result when
 * woken. */
#ifndef KCHAT_PROC_RESTORER_H
#define KCHAT_PROC_RESTORER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "changelog.h"

typedef struct proc_restorer proc_restorer_t;

typedef struct {
    int32_t *partitions;
    uint64_t *gens; /* the caller's generation of each partition when the job started */
    proc_part_t **parts;
    int n;
    int rc;
    char error[256];
    proc_restore_stats_t stats;
} proc_restore_job_t;

/* rk: the assign-only consumer proc_restore needs (the restorer uses it, the caller keeps
 * it). Returns NULL when the thread cannot start. */
proc_restorer_t *proc_restorer_new(uv_loop_t *loop, rd_kafka_t *rk, const kc_schemas_t *s,
                                   const char *state_topic, const char *events_topic,
                                   int timeout_ms, void (*done)(void *arg), void *arg);
int proc_restorer_busy(proc_restorer_t *r);
/* Starts restoring partitions (copied). The restorer must be idle. */
void proc_restorer_start(proc_restorer_t *r, const int32_t *partitions, const uint64_t *gens,
                         int n);
/* The finished job (1; the caller owns it: free with proc_restore_job_free), or 0. */
int proc_restorer_take(proc_restorer_t *r, proc_restore_job_t *out);
void proc_restore_job_free(proc_restore_job_t *j);
/* Cancels the job in flight, joins the thread and closes the handle (freed once libuv has
 * closed it). NULL is a no-op. */
void proc_restorer_close(proc_restorer_t *r);

#endif
