/* kchat-api - the REST surface: auth, conversations, history, search, attachments.
 *
 * At this stage the API listens on its port (libmicrohttpd on the loop), answers GET /health
 * and GET /metrics there, connects its producer (idempotent, acks=all), Postgres and Redis,
 * answers every other path with a JSON 404, and drains on SIGTERM: the listener closes,
 * what the producer holds is flushed, then the connections close. (Handlers answer at once,
 * so no request outlives a loop turn; a body still uploading is cut.)
 */
#include <stddef.h>

#include "kchat/app.h"
#include "kchat/httpd.h"
#include "kchat/kafka.h"
#include "kchat/log.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/util.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
    char *listen_addr;
    long long port;
    long long max_body_bytes;
} api_cfg_t;

/* The API serves /health and /metrics on its own port, so it has no admin-* options. */
static const kc_cfg_opt_t api_opts[] = {
    KC_CFG_COMMON(api_cfg_t, common),
    KC_CFG_KAFKA(api_cfg_t, kafka),
    KC_CFG_PG(api_cfg_t, pg),
    KC_CFG_REDIS(api_cfg_t, redis),
    {"listen-addr", KC_CFG_STR, offsetof(api_cfg_t, listen_addr), "127.0.0.1", 7, 15,
     "IPv4 address the REST API listens on"},
    {"listen-port", KC_CFG_INT, offsetof(api_cfg_t, port), "17080", 0, 65535,
     "port of the REST API (which also serves /health and /metrics)"},
    {"max-body-bytes", KC_CFG_INT, offsetof(api_cfg_t, max_body_bytes), "65536", 1024, 16777216,
     "largest request body accepted; larger ones get 413"},
};

typedef struct {
    api_cfg_t cfg;
    kc_app_t app;
    kc_httpd_t *http;
    kc_kafka_bound_t producer;
    kc_pg_t *pg;
    kc_redis_t *redis;
    kc_counter_t *requests;
} api_t;

static void on_request(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    api_t *a = arg;
    kc_counter_inc(a->requests);
    if (kc_admin_handle(&a->app.admin, req, resp))
        return;
    kc_http_error(resp, 404, "not_found", "no such path");
}

static int on_producer_events(void *arg)
{
    api_t *a = arg;
    return kc_kafka_serve(a->producer.rk, 500);
}

static void on_stop(kc_daemon_t *d, void *arg)
{
    api_t *a = arg;
    kc_health_set_stopping(a->app.health);
    kc_httpd_stop_accepting(a->http);
    rd_kafka_resp_err_t err = rd_kafka_flush(a->producer.rk,
                                             (int)(a->cfg.common.shutdown_timeout_ms / 2));
    if (err)
        kc_log_warn("producer flush: %s", rd_kafka_err2str(err));
    kc_kafka_unbind(&a->producer);
    kc_pg_close(a->pg);
    kc_redis_close(a->redis);
    kc_httpd_destroy(a->http);
    a->pg = NULL;
    a->redis = NULL;
    a->http = NULL;
    kc_daemon_finish(d);
}

static int start(api_t *a, char *err, size_t errlen)
{
    a->requests = kc_metrics_counter(a->app.metrics, "kchat_api_requests_total",
                                     "HTTP requests received by the API.", NULL);
    a->pg = kc_pg_new(a->app.loop, a->cfg.pg.dsn, a->app.health, "postgres");
    a->redis = kc_redis_new(a->app.loop, a->cfg.redis.host, (int)a->cfg.redis.port,
                            (int)a->cfg.redis.timeout_ms, a->app.health, "redis");
    kc_kafka_opts_t ko = {.brokers = a->cfg.kafka.brokers,
                          .debug = a->cfg.kafka.debug,
                          .health = a->app.health,
                          .metrics = a->app.metrics,
                          .client_id = "api-producer",
                          .check_name = "kafka_producer"};
    rd_kafka_t *rk = kc_kafka_producer_new(&ko, NULL, err, errlen);
    if (!rk || kc_kafka_bind(&a->producer, a->app.loop, rk, on_producer_events, a, err, errlen))
        return -1;
    a->http = kc_httpd_new(a->app.loop, a->cfg.listen_addr, (int)a->cfg.port,
                           (size_t)a->cfg.max_body_bytes, on_request, a, err, errlen);
    return a->http ? 0 : -1;
}

int main(int argc, char **argv)
{
    api_t a = {0};
    char err[512];
    int rc = kc_app_config("api", api_opts, KC_ARRAY_LEN(api_opts), &a.cfg, &a.cfg.common, argc,
                           argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        exit_code = 1;
        if (kc_app_init(&a.app, "api", &a.cfg.common, 0, on_stop, &a, err, sizeof(err)) ||
            start(&a, err, sizeof(err))) {
            kc_log_error("start-up failed: %s", err);
            kc_pg_close(a.pg);
            kc_redis_close(a.redis);
        } else {
            kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("port", kc_httpd_port(a.http))),
                      "api started");
            kc_app_run(&a.app);
            exit_code = 0;
        }
        kc_kafka_bound_destroy(&a.producer);
        kc_app_destroy(&a.app);
        kc_log_info("stopped");
    }
    kc_config_free(api_opts, KC_ARRAY_LEN(api_opts), &a.cfg);
    return exit_code;
}
