/* admin.h - the operations endpoints every daemon serves: GET /health (the daemon and its
 * dependencies: readiness), GET /live (the daemon's loop answers: liveness) and GET /metrics.
 *
 * kc_admin_handle() answers those paths and returns 1, or returns 0 for any other path
 * so that a daemon with its own HTTP surface (kchat-api) can route the rest itself.
 */
#ifndef KCHAT_ADMIN_H
#define KCHAT_ADMIN_H

#include "kchat/health.h"
#include "kchat/httpd.h"
#include "kchat/metrics.h"

typedef struct {
    kc_health_t *health;
    kc_metrics_t *metrics;
    kc_counter_t *req_health, *req_metrics, *req_live; /* set by kc_admin_init */
} kc_admin_t;

void kc_admin_init(kc_admin_t *a, kc_health_t *health, kc_metrics_t *metrics);
int kc_admin_handle(kc_admin_t *a, const kc_http_req_t *req, kc_http_resp_t *resp);
/* An httpd handler that serves only the admin paths (404 JSON for the rest). arg: kc_admin_t. */
void kc_admin_handler(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp);

#endif
