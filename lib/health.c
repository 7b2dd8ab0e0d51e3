/* health.c - named checks, set by their owners, read by GET /health. */
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
} check_t;

struct kc_health {
    pthread_mutex_t mu;
    check_t checks[MAX_CHECKS];
    int n;
    int stopping;
};

kc_health_t *kc_health_new(void)
{
    kc_health_t *h = kc_xcalloc(1, sizeof(*h));
    if (pthread_mutex_init(&h->mu, NULL) != 0)
        abort();
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
    pthread_mutex_lock(&h->mu);
    if (h->n >= MAX_CHECKS)
        abort();
    int i = h->n++;
    h->checks[i].name = kc_xstrdup(name);
    h->checks[i].ok = 0;
    h->checks[i].detail = kc_xstrdup("starting");
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
        c->ok = ok;
        if (!(detail && c->detail && strcmp(detail, c->detail) == 0)) {
            free(c->detail);
            c->detail = detail ? kc_xstrdup(detail) : NULL;
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void kc_health_set_stopping(kc_health_t *h)
{
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_mutex_unlock(&h->mu);
}

int kc_health_render(kc_health_t *h, kc_buf_t *out)
{
    pthread_mutex_lock(&h->mu);
    int ok = !h->stopping;
    for (int i = 0; i < h->n; i++)
        ok = ok && h->checks[i].ok;
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
