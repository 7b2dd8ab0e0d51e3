/* kchat-registry - the Confluent Schema Registry REST API, read-only, over schemas/.
 *
 * kchat's schemas and their ids are kept in git (schemas/registry.json and the .avsc files),
 * and every record on kchat's topics already carries one of those ids. This daemon serves
 * them as a Confluent registry does, so that standard clients (confluent-kafka's
 * SchemaRegistryClient and AvroDeserializer, Kafka Connect, ksqlDB, libserdes) read kchat's
 * topics without a copy of schemas/. It is read-only: the ids cannot drift from the files,
 * and nothing a client sends can change what the daemons write. A registration of a schema
 * that a subject already holds answers its id, as any registry does; any other write is
 * refused with the registry's read-only error (422, 42205). See registry.c for the routes.
 *
 * It holds no state besides the files, so any number of replicas serve alike. It listens on
 * an internal port: analytics clients and kchatctl reach it, the public ingress does not.
 */
#include <stddef.h>
#include <stdlib.h>

#include "kchat/app.h"
#include "kchat/avro.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "registry.h"

typedef struct {
    kc_common_cfg_t common;
    char *schemas_dir;
    char *listen_addr;
    long long port;
    long long max_body_bytes;
    long long max_connections;
    long long idle_timeout_s;
    long long request_timeout_s;
} reg_cfg_t;

typedef struct {
    reg_cfg_t cfg;
    kc_app_t app;
    reg_t reg;
    kc_httpd_t *http;
    uv_timer_t drain_timer;
    kc_daemon_t *stopping;
} regd_t;

static const kc_cfg_opt_t reg_opts[] = {
    KC_CFG_COMMON(reg_cfg_t, common),
    KC_CFG_SCHEMAS_DIR(reg_cfg_t, schemas_dir),
    {"listen-addr", KC_CFG_STR, offsetof(reg_cfg_t, listen_addr), "127.0.0.1", 7, 15,
     "IPv4 address the registry listens on (an internal one: never the public ingress)"},
    {"listen-port", KC_CFG_INT, offsetof(reg_cfg_t, port), "17098", 0, 65535,
     "port of the registry's REST API (which also serves /health and /metrics)"},
    {"max-body-bytes", KC_CFG_INT, offsetof(reg_cfg_t, max_body_bytes), "262144", 1024, 16777216,
     "largest request body (a schema to look up) accepted; larger ones get 413"},
    {"max-connections", KC_CFG_INT, offsetof(reg_cfg_t, max_connections), "256", 1, 100000,
     "connections held at once; more wait in the kernel's backlog"},
    {"idle-timeout-s", KC_CFG_INT, offsetof(reg_cfg_t, idle_timeout_s), "30", 1, 3600,
     "a connection silent this long is closed"},
    {"request-timeout-s", KC_CFG_INT, offsetof(reg_cfg_t, request_timeout_s), "10", 1, 3600,
     "a request's header and body must arrive within this many seconds"},
};

static void handle(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    regd_t *r = arg;
    if (kc_admin_handle(&r->app.admin, req, resp))
        return;
    reg_handle(&r->reg, req, resp);
}

static void drain_tick(uv_timer_t *t)
{
    regd_t *r = t->data;
    if (kc_httpd_active(r->http) > 0)
        return;
    uv_close((uv_handle_t *)&r->drain_timer, NULL);
    kc_httpd_destroy(r->http);
    r->http = NULL;
    kc_daemon_finish(r->stopping);
}

/* Answers the requests begun, then stops. */
static void on_stop(kc_daemon_t *d, void *arg)
{
    regd_t *r = arg;
    kc_health_set_stopping(r->app.health);
    kc_httpd_stop_accepting(r->http);
    r->stopping = d;
    r->drain_timer.data = r;
    if (uv_timer_start(&r->drain_timer, drain_tick, 0, 20) != 0) {
        kc_httpd_destroy(r->http);
        r->http = NULL;
        uv_close((uv_handle_t *)&r->drain_timer, NULL);
        kc_daemon_finish(d);
    }
}

static int start(void *arg, char *err, size_t errlen)
{
    regd_t *r = arg;
    if (uv_timer_init(r->app.loop, &r->drain_timer) != 0) {
        kc_strlcpyf(err, errlen, "cannot make a timer");
        return -1;
    }
    if (reg_init(&r->reg, r->cfg.schemas_dir, r->app.metrics, err, errlen) != 0)
        return -1;
    kc_httpd_limits_t lim = {.max_connections = (unsigned)r->cfg.max_connections,
                             .idle_timeout_s = (unsigned)r->cfg.idle_timeout_s,
                             .request_timeout_s = (unsigned)r->cfg.request_timeout_s};
    r->http = kc_httpd_new(r->app.loop, r->cfg.listen_addr, (int)r->cfg.port,
                           (size_t)r->cfg.max_body_bytes, &lim, handle, r, err, errlen);
    return r->http ? 0 : -1;
}

static void start_failed(void *arg)
{
    regd_t *r = arg;
    if (r->drain_timer.loop && !uv_is_closing((uv_handle_t *)&r->drain_timer))
        uv_close((uv_handle_t *)&r->drain_timer, NULL);
}

static void started(void *arg)
{
    regd_t *r = arg;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_INT("port", kc_httpd_port(r->http)),
                        KC_INT("schemas", (long long)kc_schemas_count(r->reg.schemas))),
              "registry started");
}

static void free_rest(void *arg)
{
    regd_t *r = arg;
    reg_destroy(&r->reg);
}

int main(int argc, char **argv)
{
    regd_t *r = kc_xcalloc(1, sizeof(*r));
    kc_app_spec_t spec = {KC_APP_SPEC("registry", reg_opts, r),
                          .on_stop = on_stop,
                          .start = start,
                          .start_failed = start_failed,
                          .started = started,
                          .free = free_rest};
    int rc = kc_app_main(&spec, argc, argv);
    free(r);
    return rc;
}
