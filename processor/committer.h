/* committer.h - commits a transaction on a thread of its own, so the loop goes on reading
 * and applying commands (the next batch) while the broker commits the previous one.
 *
 * librdkafka's transactional calls block until the broker answers (AddOffsetsToTxn,
 * TxnOffsetCommit, EndTxn: three round trips). The loop hands over a transaction whose
 * records are all written (every delivery report is in: commit_transaction's flush then
 * has nothing to wait for, and it never serves the producer's queue, which the loop serves:
 * the producer reports deliveries as events). The committer sends the consumed offsets with
 * the consumer group's metadata, commits (retrying what is retriable) and, when the commit
 * fails in a way that needs it, aborts; then wakes the loop, which reads the outcome with
 * proc_committer_take. One job at a time.
 */
#ifndef KCHAT_PROC_COMMITTER_H
#define KCHAT_PROC_COMMITTER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

typedef struct proc_committer proc_committer_t;

typedef enum {
    COMMIT_OK,
    COMMIT_ABORTED, /* failed and aborted: the state must be restored */
    COMMIT_FATAL,   /* fenced, or the abort failed too: the instance must stop */
} proc_commit_outcome_t;

typedef struct {
    proc_commit_outcome_t outcome;
    char error[256];
    double seconds; /* offsets and commit */
} proc_commit_result_t;

/* done(arg) runs on the loop when a job has finished. Returns NULL when the thread cannot
 * start. */
proc_committer_t *proc_committer_new(uv_loop_t *loop, void (*done)(void *arg), void *arg);
/* Starts a job: commits rk's open transaction with the offsets (taken over) and the group
 * metadata (taken over; NULL when there are no offsets). The committer must be idle. */
void proc_committer_start(proc_committer_t *c, rd_kafka_t *rk,
                          rd_kafka_topic_partition_list_t *offsets,
                          rd_kafka_consumer_group_metadata_t *group);
int proc_committer_busy(const proc_committer_t *c);
/* The finished job's result (1), or 0 when none is waiting. Clears busy. */
int proc_committer_take(proc_committer_t *c, proc_commit_result_t *out);
/* Blocks until the job in flight (if any) has finished (for a rebalance or a stop, which
 * cannot wait for the loop). */
void proc_committer_wait(proc_committer_t *c);
/* Commits synchronously on the calling thread (the same steps as a job). */
void proc_commit_now(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets,
                     rd_kafka_consumer_group_metadata_t *group, proc_commit_result_t *out);
/* Stops the thread (after the job in flight) and closes the async handle; the struct is
 * freed once libuv has closed it. NULL is a no-op. */
void proc_committer_close(proc_committer_t *c);

#endif
