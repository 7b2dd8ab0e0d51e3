/* app.c - the start-up and tear-down every daemon shares. */
#include "kchat/app.h"

#include <stdio.h>
#include <stdlib.h>

#include "kchat/log.h"
#include "kchat/util.h"

#define ADMIN_MAX_BODY 4096

int kc_app_config(const char *svc, const kc_cfg_opt_t *table, size_t n, void *cfg,
                  const kc_common_cfg_t *common, int argc, char **argv)
{
    char err[512];
    kc_log_init(svc, KC_LOG_INFO);
    int rc = kc_config_load(table, n, cfg, argc, argv, NULL, stdout, err, sizeof(err));
    if (rc == KC_CFG_EXIT_HELP)
        return 1;
    if (rc < 0) {
        kc_log_error("invalid configuration: %s", err);
        return -1;
    }
    kc_log_level_t lvl;
    if (kc_log_level_parse(common->log_level, &lvl) != 0) {
        kc_log_error("invalid configuration: invalid value for log-level: '%s' is not one of "
                     "debug, info, warn, error",
                     common->log_level);
        return -1;
    }
    kc_log_set_level(lvl);
    return 0;
}

int kc_app_init(kc_app_t *app, const char *svc, const kc_common_cfg_t *c, int serve_admin,
                kc_daemon_stop_fn on_stop, void *arg, char *errstr, size_t errstr_size)
{
    app->svc = svc;
    app->loop = kc_xmalloc(sizeof(uv_loop_t));
    if (uv_loop_init(app->loop) != 0) {
        free(app->loop);
        app->loop = NULL;
        kc_strlcpyf(errstr, errstr_size, "cannot create the event loop");
        return -1;
    }
    app->metrics = kc_metrics_new();
    kc_metrics_add_process(app->metrics);
    const char *lbl[] = {"service", svc, "version", "0.1.0", NULL};
    kc_gauge_set(kc_metrics_gauge(app->metrics, "kchat_build_info",
                                  "Always 1; the labels name the service and its version.", lbl),
                 1);
    app->health = kc_health_new(app->metrics);
    kc_admin_init(&app->admin, app->health, app->metrics);
    if (serve_admin) {
        app->admin_httpd = kc_httpd_new(app->loop, c->admin_addr, (int)c->admin_port,
                                        ADMIN_MAX_BODY, NULL, kc_admin_handler, &app->admin,
                                        errstr, errstr_size);
        if (!app->admin_httpd)
            return -1;
    }
    app->daemon = kc_daemon_new(app->loop, c->shutdown_timeout_ms, on_stop, arg);
    return 0;
}

int kc_app_run(kc_app_t *app)
{
    return uv_run(app->loop, UV_RUN_DEFAULT);
}

void kc_app_close_admin(kc_app_t *app)
{
    kc_httpd_destroy(app->admin_httpd);
    app->admin_httpd = NULL;
}

void kc_app_destroy(kc_app_t *app)
{
    kc_app_close_admin(app);
    kc_daemon_destroy(app->daemon);
    app->daemon = NULL;
    if (app->loop) {
        (void)uv_run(app->loop, UV_RUN_NOWAIT);
        if (uv_loop_close(app->loop) != 0)
            kc_log_warn("event loop closed with handles still open");
        free(app->loop);
        app->loop = NULL;
    }
    kc_health_destroy(app->health);
    kc_metrics_destroy(app->metrics);
    app->health = NULL;
    app->metrics = NULL;
}

int kc_app_main(const kc_app_spec_t *s, int argc, char **argv)
{
    int rc = kc_app_config(s->svc, s->opts, s->nopts, s->cfg, s->common, argc, argv);
    int exit_code = rc > 0 ? 0 : 2;
    if (rc == 0) {
        char err[512] = "";
        exit_code = 1;
        if (kc_app_init(s->app, s->svc, s->common, s->serve_admin, s->on_stop, s->arg, err,
                        sizeof(err)) != 0 ||
            s->start(s->arg, err, sizeof(err)) != 0) {
            kc_log_error("start-up failed: %s", err);
            if (s->start_failed)
                s->start_failed(s->arg);
        } else {
            s->started(s->arg);
            (void)kc_app_run(s->app);
            exit_code = s->exit_code ? s->exit_code(s->arg) : 0;
        }
        if (s->release)
            s->release(s->arg);
        kc_app_destroy(s->app);
        if (s->free)
            s->free(s->arg);
        kc_log_info("stopped");
    }
    kc_config_free(s->opts, s->nopts, s->cfg);
    return exit_code;
}
