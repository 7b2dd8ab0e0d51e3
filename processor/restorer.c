/* restorer.c - the state restore, on a thread of its own. */
#include "restorer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/util.h"

struct proc_restorer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit, has_job, finished;
    volatile int cancel;
    proc_restore_job_t job;
    rd_kafka_t *rk;
    const kc_schemas_t *s;
    char *state_topic, *events_topic;
    int timeout_ms;
    uv_async_t async;
    void (*done)(void *arg);
    void *arg;
};

static void *run(void *arg)
{
    proc_restorer_t *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->has_job && !r->quit)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->has_job)
            break;
        proc_restore_job_t *j = &r->job;
        pthread_mutex_unlock(&r->mu);
        j->rc = proc_restore(r->rk, r->s, r->state_topic, r->events_topic, j->partitions, j->n,
                             j->parts, r->timeout_ms, &r->cancel, &j->stats, j->error,
                             sizeof(j->error));
        pthread_mutex_lock(&r->mu);
        r->has_job = 0;
        r->finished = 1;
        (void)uv_async_send(&r->async);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void on_async(uv_async_t *a)
{
    proc_restorer_t *r = a->data;
    if (r->done)
        r->done(r->arg);
}

static void on_closed(uv_handle_t *h)
{
    proc_restorer_t *r = h->data;
    proc_restore_job_free(&r->job);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->state_topic);
    free(r->events_topic);
    free(r);
}

proc_restorer_t *proc_restorer_new(uv_loop_t *loop, rd_kafka_t *rk, const kc_schemas_t *s,
                                   const char *state_topic, const char *events_topic,
                                   int timeout_ms, void (*done)(void *arg), void *arg)
{
    proc_restorer_t *r = kc_xcalloc(1, sizeof(*r));
    r->rk = rk;
    r->s = s;
    r->state_topic = kc_xstrdup(state_topic);
    r->events_topic = kc_xstrdup(events_topic);
    r->timeout_ms = timeout_ms;
    r->done = done;
    r->arg = arg;
    if (pthread_mutex_init(&r->mu, NULL) != 0 || pthread_cond_init(&r->cv, NULL) != 0)
        abort();
    if (uv_async_init(loop, &r->async, on_async) != 0)
        abort();
    r->async.data = r;
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        r->done = NULL;
        uv_close((uv_handle_t *)&r->async, on_closed);
        return NULL;
    }
    return r;
}

int proc_restorer_busy(proc_restorer_t *r)
{
    pthread_mutex_lock(&r->mu);
    int busy = r->has_job || r->finished;
    pthread_mutex_unlock(&r->mu);
    return busy;
}

void proc_restorer_start(proc_restorer_t *r, const int32_t *partitions, const uint64_t *gens,
                         int n)
{
    pthread_mutex_lock(&r->mu);
    proc_restore_job_free(&r->job);
    size_t m = (size_t)(n ? n : 1);
    r->job.partitions = kc_xcalloc(m, sizeof(int32_t));
    r->job.gens = kc_xcalloc(m, sizeof(uint64_t));
    r->job.parts = kc_xcalloc(m, sizeof(proc_part_t *));
    memcpy(r->job.partitions, partitions, (size_t)n * sizeof(int32_t));
    memcpy(r->job.gens, gens, (size_t)n * sizeof(uint64_t));
    r->job.n = n;
    r->cancel = 0;
    r->has_job = 1;
    r->finished = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int proc_restorer_take(proc_restorer_t *r, proc_restore_job_t *out)
{
    pthread_mutex_lock(&r->mu);
    int got = r->finished;
    if (got) {
        *out = r->job;
        memset(&r->job, 0, sizeof(r->job));
        r->finished = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

void proc_restore_job_free(proc_restore_job_t *j)
{
    for (int i = 0; j->parts && i < j->n; i++)
        proc_part_destroy(j->parts[i]);
    free(j->parts);
    free(j->partitions);
    free(j->gens);
    memset(j, 0, sizeof(*j));
}

void proc_restorer_close(proc_restorer_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    r->cancel = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (pthread_join(r->thread, NULL) != 0)
        kc_log_warn("restorer: join failed");
    r->done = NULL;
    uv_close((uv_handle_t *)&r->async, on_closed);
}
