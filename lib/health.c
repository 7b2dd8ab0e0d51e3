/* health.c - named checks, set by their owners, read by GET /health and exported as gauges. */
#include "kchat/health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define MAX_CHECKS 16

typedef struct {
    char *name;
    int ok;
    char *detail;
    kc_gauge_t *up; /* kchat_health_check_up{check=name}; NULL without metrics */
} check_t;

struct kc_health {
    pthread_mutex_t mu;
    check_t checks[MAX_CHECKS];
    int n;
    int stopping;
    kc_metrics_t *metrics; /* not owned; may be NULL */
    kc_gauge_t *ready;     /* kchat_ready; NULL without metrics */
};

/* What /health answers: 1 (200) when not draining and every check passes. The caller holds
 * h->mu. */
static int ready_locked(const kc_health_t *h)
{
    int ok = !h->stopping;
    for (int i = 0; ok && i < h->n; i++)
        ok = h->checks[i].ok;
    return ok;
}

kc_health_t *kc_health_new(kc_metrics_t *metrics)
{
    kc_health_t *h = kc_xcalloc(1, sizeof(*h));
    if (pthread_mutex_init(&h->mu, NULL) != 0)
        abort();
    h->metrics = metrics;
    if (metrics) {
        h->ready = kc_metrics_gauge(metrics, "kchat_ready",
                                    "1 when /health answers 200 (every health check passes and "
                                    "the daemon is not draining), 0 when it answers 503.",
                                    NULL);
        kc_gauge_set(h->ready, 1); /* no check yet, not draining */
    }
    return h;
}

void kc_health_destroy(kc_health_t *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++) {
        free(h->checks[i].name);
        free(h->checks[i].detail);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int kc_health_add(kc_health_t *h, const char *name)
{
    kc_gauge_t *up = NULL;
    if (h->metrics) {
        const char *lbl[] = {"check", name, NULL};
        up = kc_metrics_gauge(h->metrics, "kchat_health_check_up",
                              "1 when the health check passes, 0 when it fails (see /health).",
                              lbl);
    }
    pthread_mutex_lock(&h->mu);
    if (h->n >= MAX_CHECKS)
        abort();
    int i = h->n++;
    h->checks[i].name = kc_xstrdup(name);
    h->checks[i].ok = 0;
    h->checks[i].detail = kc_xstrdup("starting");
    h->checks[i].up = up;
    kc_gauge_set(up, 0);
    kc_gauge_set(h->ready, 0);
    pthread_mutex_unlock(&h->mu);
    return i;
}

void kc_health_set(kc_health_t *h, int check, int ok, const char *detail)
{
    if (!h || check < 0)
        return;
    pthread_mutex_lock(&h->mu);
    if (check < h->n) {
        check_t *c = &h->checks[check];
        c->ok = ok != 0;
        if (!(detail && c->detail && strcmp(detail, c->detail) == 0)) {
            free(c->detail);
            c->detail = detail ? kc_xstrdup(detail) : NULL;
        }
        /* Set under the lock, so that the gauges end as the last change left the checks. */
        kc_gauge_set(c->up, c->ok);
        kc_gauge_set(h->ready, ready_locked(h));
    }
    pthread_mutex_unlock(&h->mu);
}

void kc_health_set_stopping(kc_health_t *h)
{
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    kc_gauge_set(h->ready, 0);
    pthread_mutex_unlock(&h->mu);
}

int kc_health_render(kc_health_t *h, kc_buf_t *out)
{
    pthread_mutex_lock(&h->mu);
    int ok = ready_locked(h);
    kc_buf_printf(out, "{\"status\":\"%s\",\"checks\":{",
                  h->stopping ? "stopping" : (ok ? "ok" : "fail"));
    for (int i = 0; i < h->n; i++) {
        const check_t *c = &h->checks[i];
        kc_buf_puts(out, i ? ",\"" : "\"");
        kc_buf_json_str(out, c->name, strlen(c->name));
        kc_buf_printf(out, "\":{\"ok\":%s", c->ok ? "true" : "false");
        if (c->detail) {
            kc_buf_puts(out, ",\"detail\":\"");
            kc_buf_json_str(out, c->detail, strlen(c->detail));
            kc_buf_putc(out, '"');
        }
        kc_buf_putc(out, '}');
    }
    kc_buf_puts(out, "}}");
    pthread_mutex_unlock(&h->mu);
    return ok;
}
