/* metrics.h - counters, gauges and histograms with Prometheus text exposition (format 0.0.4).
 *
 * A registry owns its series. A series is a (name, labels) pair; series of one name form a
 * family that shares HELP and TYPE. Registering the same (name, labels) twice returns the
 * same series, so modules may look their series up instead of passing pointers around.
 * Updates are lock-free (C11 atomics) and safe from any thread; registration and rendering
 * take the registry's lock. Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and a family must keep
 * one type: breaking either is a programming error and aborts.
 *
 * Labels are given as a NULL-terminated list of key, value strings:
 *     const char *lbl[] = {"reason", "not_member", NULL};
 */
#ifndef KCHAT_METRICS_H
#define KCHAT_METRICS_H

#include <stddef.h>

#include "kchat/buf.h"

typedef struct kc_metrics kc_metrics_t;
typedef struct kc_series kc_counter_t;
typedef struct kc_series kc_gauge_t;
typedef struct kc_series kc_histogram_t;

/* Called at the start of every render, e.g. to refresh gauges that are cheap to read on demand. */
typedef void (*kc_metrics_collect_fn)(void *arg);

kc_metrics_t *kc_metrics_new(void);
void kc_metrics_destroy(kc_metrics_t *m);

/* Adds the standard process_* series (CPU, resident memory, open fds, start time). */
void kc_metrics_add_process(kc_metrics_t *m);
void kc_metrics_on_collect(kc_metrics_t *m, kc_metrics_collect_fn fn, void *arg);

kc_counter_t *kc_metrics_counter(kc_metrics_t *m, const char *name, const char *help,
                                 const char *const *labels);
kc_gauge_t *kc_metrics_gauge(kc_metrics_t *m, const char *name, const char *help,
                             const char *const *labels);
/* bounds: strictly increasing upper bounds, without +Inf (added for you). NULL and 0 give
 * latency buckets from 0.5 ms to 10 s. */
kc_histogram_t *kc_metrics_histogram(kc_metrics_t *m, const char *name, const char *help,
                                     const char *const *labels, const double *bounds,
                                     size_t nbounds);

void kc_counter_add(kc_counter_t *c, double v); /* v >= 0 */
void kc_counter_inc(kc_counter_t *c);
void kc_gauge_set(kc_gauge_t *g, double v);
void kc_gauge_add(kc_gauge_t *g, double v);
void kc_histogram_observe(kc_histogram_t *h, double v);
double kc_series_value(const struct kc_series *s); /* counter or gauge value; histogram count */

/* Appends the exposition text of every family, in registration order. */
void kc_metrics_render(kc_metrics_t *m, kc_buf_t *out);

#endif
