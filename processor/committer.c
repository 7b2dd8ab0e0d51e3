/* committer.c - the transaction commit, on a thread of its own. */
#include "committer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/util.h"

struct proc_committer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, quit;
    int has_job, finished, busy;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *group;
    proc_commit_result_t result;
    uv_async_t async;
    void (*done)(void *arg);
    void *arg;
};

void proc_commit_now(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets,
                     rd_kafka_consumer_group_metadata_t *group, proc_commit_result_t *out)
{
    uint64_t t0 = kc_mono_ns();
    rd_kafka_error_t *e = NULL;
    memset(out, 0, sizeof(*out));
    if (offsets && offsets->cnt && group)
        e = rd_kafka_send_offsets_to_transaction(rk, offsets, group, -1);
    while (!e) {
        e = rd_kafka_commit_transaction(rk, -1);
        if (!e || !rd_kafka_error_is_retriable(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    out->seconds = (double)(kc_mono_ns() - t0) / 1e9;
    if (!e) {
        out->outcome = COMMIT_OK;
        return;
    }
    kc_strlcpyf(out->error, sizeof(out->error), "%s: %s", rd_kafka_error_name(e),
                rd_kafka_error_string(e));
    int abortable = rd_kafka_error_txn_requires_abort(e);
    int fatal = rd_kafka_error_is_fatal(e);
    rd_kafka_error_destroy(e);
    if (fatal || !abortable) {
        out->outcome = COMMIT_FATAL;
        return;
    }
    e = rd_kafka_abort_transaction(rk, -1);
    if (e) {
        kc_strlcpyf(out->error, sizeof(out->error), "abort failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        out->outcome = COMMIT_FATAL;
        return;
    }
    out->outcome = COMMIT_ABORTED;
}

static void *run(void *arg)
{
    proc_committer_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->has_job && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->has_job)
            break;
        rd_kafka_t *rk = c->rk;
        rd_kafka_topic_partition_list_t *offsets = c->offsets;
        rd_kafka_consumer_group_metadata_t *group = c->group;
        pthread_mutex_unlock(&c->mu);
        proc_commit_result_t r;
        proc_commit_now(rk, offsets, group, &r);
        if (offsets)
            rd_kafka_topic_partition_list_destroy(offsets);
        if (group)
            rd_kafka_consumer_group_metadata_destroy(group);
        pthread_mutex_lock(&c->mu);
        c->result = r;
        c->has_job = 0;
        c->finished = 1;
        c->offsets = NULL;
        c->group = NULL;
        pthread_cond_broadcast(&c->cv);
        (void)uv_async_send(&c->async);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void on_closed_early(uv_handle_t *h)
{
    proc_committer_t *c = h->data;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void on_async(uv_async_t *a)
{
    proc_committer_t *c = a->data;
    if (c->done)
        c->done(c->arg);
}

proc_committer_t *proc_committer_new(uv_loop_t *loop, void (*done)(void *arg), void *arg)
{
    proc_committer_t *c = kc_xcalloc(1, sizeof(*c));
    c->done = done;
    c->arg = arg;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    if (pthread_cond_init(&c->cv, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return NULL;
    }
    if (uv_async_init(loop, &c->async, on_async) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return NULL;
    }
    c->async.data = c;
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        /* freed by on_closed when the loop next runs (closing its handles) */
        uv_close((uv_handle_t *)&c->async, on_closed_early);
        return NULL;
    }
    c->started = 1;
    return c;
}

int proc_committer_busy(const proc_committer_t *c)
{
    return c->busy;
}

void proc_committer_start(proc_committer_t *c, rd_kafka_t *rk,
                          rd_kafka_topic_partition_list_t *offsets,
                          rd_kafka_consumer_group_metadata_t *group)
{
    pthread_mutex_lock(&c->mu);
    c->rk = rk;
    c->offsets = offsets;
    c->group = group;
    c->has_job = 1;
    c->finished = 0;
    c->busy = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int proc_committer_take(proc_committer_t *c, proc_commit_result_t *out)
{
    pthread_mutex_lock(&c->mu);
    int got = c->finished;
    if (got) {
        *out = c->result;
        c->finished = 0;
        c->busy = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return got;
}

void proc_committer_wait(proc_committer_t *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->has_job)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void on_closed(uv_handle_t *h)
{
    proc_committer_t *c = h->data;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void proc_committer_close(proc_committer_t *c)
{
    if (!c)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->quit = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        if (pthread_join(c->thread, NULL) != 0)
            kc_log_warn("committer: join failed");
    }
    c->done = NULL;
    uv_close((uv_handle_t *)&c->async, on_closed);
}
