/* admin.c - GET /health, GET /live and GET /metrics. */
#include "kchat/admin.h"

#include <string.h>

#include "kchat/buf.h"

void kc_admin_init(kc_admin_t *a, kc_health_t *health, kc_metrics_t *metrics)
{
    a->health = health;
    a->metrics = metrics;
    const char *h[] = {"path", "/health", NULL};
    const char *m[] = {"path", "/metrics", NULL};
    const char *l[] = {"path", "/live", NULL};
    a->req_health = kc_metrics_counter(metrics, "kchat_admin_requests_total",
                                       "Requests served on the operations endpoints.", h);
    a->req_metrics = kc_metrics_counter(metrics, "kchat_admin_requests_total", NULL, m);
    a->req_live = kc_metrics_counter(metrics, "kchat_admin_requests_total", NULL, l);
}

int kc_admin_handle(kc_admin_t *a, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    int health = strcmp(req->path, "/health") == 0;
    int metrics = strcmp(req->path, "/metrics") == 0;
    int live = strcmp(req->path, "/live") == 0;
    if (!health && !metrics && !live)
        return 0;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        kc_http_error(resp, 405, "method_not_allowed", "use GET");
        return 1;
    }
    kc_counter_inc(health ? a->req_health : live ? a->req_live : a->req_metrics);
    if (live) {
        /* Served on the daemon's loop like everything else: an answer means the loop turns.
         * Nothing about the dependencies (that is /health), so an outage of Kafka or Postgres
         * never makes an orchestrator restart a daemon that is only waiting for it. */
        resp->content_type = "application/json";
        resp->status = 200;
        kc_buf_puts(&resp->body, "{\"status\":\"live\"}");
    } else if (health) {
        resp->content_type = "application/json";
        resp->status = kc_health_render(a->health, &resp->body) ? 200 : 503;
    } else {
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        resp->status = 200;
        kc_metrics_render(a->metrics, &resp->body);
    }
    return 1;
}

void kc_admin_handler(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    if (!kc_admin_handle(arg, req, resp))
        kc_http_error(resp, 404, "not_found", "no such path");
}
