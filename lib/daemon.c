/* daemon.c - signals, the two-phase stop, and the deadline watchdog. */
#include "kchat/daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kchat/log.h"
#include "kchat/util.h"

struct kc_daemon {
    uv_loop_t *loop;
    uv_signal_t sigterm, sigint;
    int signals_open;
    long long deadline_ms;
    kc_daemon_stop_fn on_stop;
    void *arg;
    int stopping;
    int finished;
    /* watchdog */
    pthread_t watchdog;
    int watchdog_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int disarmed;
};

static void *watchdog_main(void *p)
{
    kc_daemon_t *d = p;
    struct timespec until;
    if (clock_gettime(CLOCK_MONOTONIC, &until) != 0)
        return NULL;
    until.tv_sec += d->deadline_ms / 1000;
    until.tv_nsec += (d->deadline_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->mu);
    int rc = 0;
    while (!d->disarmed && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&d->cv, &d->mu, &until);
    int fire = !d->disarmed;
    pthread_mutex_unlock(&d->mu);
    if (fire) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_INT("deadline_ms", d->deadline_ms)),
                  "drain did not finish within the deadline; exiting");
        _exit(1);
    }
    return NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
    kc_daemon_t *d = s->data;
    if (d->stopping) {
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("signal", signum)),
                  "second signal while draining; exiting now");
        _exit(1);
    }
    kc_daemon_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

kc_daemon_t *kc_daemon_new(uv_loop_t *loop, long long deadline_ms, kc_daemon_stop_fn on_stop,
                           void *arg)
{
    kc_daemon_t *d = kc_xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->deadline_ms = deadline_ms;
    d->on_stop = on_stop;
    d->arg = arg;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&d->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&d->cv, &ca) != 0)
        abort();
    pthread_condattr_destroy(&ca);
    if (uv_signal_init(loop, &d->sigterm) != 0 || uv_signal_init(loop, &d->sigint) != 0)
        abort();
    d->sigterm.data = d->sigint.data = d;
    d->signals_open = 2;
    if (uv_signal_start(&d->sigterm, on_signal, SIGTERM) != 0 ||
        uv_signal_start(&d->sigint, on_signal, SIGINT) != 0)
        abort();
    /* A peer closing a socket must not kill the process. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        abort();
    return d;
}

void kc_daemon_stop(kc_daemon_t *d, const char *reason)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("reason", reason), KC_INT("deadline_ms", d->deadline_ms)),
              "stopping: no new work, draining");
    if (pthread_create(&d->watchdog, NULL, watchdog_main, d) == 0)
        d->watchdog_started = 1;
    else
        kc_log_error("cannot start the shutdown watchdog");
    d->on_stop(d, d->arg);
}

int kc_daemon_stopping(const kc_daemon_t *d)
{
    return d->stopping;
}

static void on_signal_closed(uv_handle_t *h)
{
    kc_daemon_t *d = h->data;
    d->signals_open--;
}

void kc_daemon_finish(kc_daemon_t *d)
{
    if (d->finished)
        return;
    d->finished = 1;
    pthread_mutex_lock(&d->mu);
    d->disarmed = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    uv_close((uv_handle_t *)&d->sigterm, on_signal_closed);
    uv_close((uv_handle_t *)&d->sigint, on_signal_closed);
    kc_log_info("drained");
}

void kc_daemon_destroy(kc_daemon_t *d)
{
    if (!d)
        return;
    if (!d->finished)
        kc_daemon_finish(d);
    if (d->signals_open)
        (void)uv_run(d->loop, UV_RUN_NOWAIT);
    if (d->watchdog_started)
        pthread_join(d->watchdog, NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
