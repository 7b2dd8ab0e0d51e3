/* health.h - named dependency checks behind GET /health.
 *
 * Each component (a Kafka client, the Postgres connection, the Redis connection) owns one
 * check and sets it as its state changes; /health reads them without doing I/O, so it
 * answers at once even when a dependency hangs. Safe from any thread.
 *
 * The same states are exported as gauges, set as they change: kchat_health_check_up{check}
 * (1 passing, 0 failing) for each check, and kchat_ready (1 when /health answers 200: every
 * check passes and the service is not draining).
 */
#ifndef KCHAT_HEALTH_H
#define KCHAT_HEALTH_H

#include "kchat/buf.h"
#include "kchat/metrics.h"

typedef struct kc_health kc_health_t;

/* metrics receives the gauges (NULL: none); it must outlive h. */
kc_health_t *kc_health_new(kc_metrics_t *metrics);
void kc_health_destroy(kc_health_t *h);
/* Registers a check (initially failing with "starting") and returns its index. */
int kc_health_add(kc_health_t *h, const char *name);
/* detail is copied; NULL clears it. */
void kc_health_set(kc_health_t *h, int check, int ok, const char *detail);
/* Marks the whole service as draining: /health then reports 503 "stopping". */
void kc_health_set_stopping(kc_health_t *h);
/* Renders {"status":"ok"|"fail"|"stopping","checks":{name:{"ok":bool,"detail":...}}}
 * and returns 1 when healthy. */
int kc_health_render(kc_health_t *h, kc_buf_t *out);

#endif
