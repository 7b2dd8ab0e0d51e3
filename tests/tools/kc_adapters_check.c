/* kc-adapters-check - drives lib/'s Postgres and Redis loop adapters against the real
 * servers, one step after another on one libuv loop, and prints what each step saw as one
 * JSON object. The system tests assert on that object.
 *
 *   kc-adapters-check --pg-dsn=... --redis-host=... --redis-port=... --redis-timeout-ms=300
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/app.h"
#include "kchat/log.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/util.h"

typedef struct {
    char *log_level;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
} opts_t;

static const kc_cfg_opt_t table[] = {
    {"log-level", KC_CFG_STR, offsetof(opts_t, log_level), "warn", 4, 5, "log threshold"},
    KC_CFG_PG(opts_t, pg),
    KC_CFG_REDIS(opts_t, redis),
};

typedef struct state state_t;
typedef void (*step_fn)(state_t *s);

struct state {
    uv_loop_t loop;
    uv_timer_t timer;  /* waits between steps */
    uv_timer_t guard;  /* stops everything after 60 s */
    kc_pg_t *pg;
    kc_redis_t *redis;
    cJSON *out;
    int step;
    int waits;
    int done;
    char notified[2][16]; /* the payloads the two LISTEN channels got */
};

static void next(state_t *s);

static void on_wait(uv_timer_t *t)
{
    next(t->data);
}

/* Runs the next step on a later loop iteration (or after ms). */
static void later(state_t *s, uint64_t ms)
{
    s->step++;
    if (uv_timer_start(&s->timer, on_wait, ms, 0) != 0)
        abort();
}

static void retry(state_t *s, uint64_t ms)
{
    if (uv_timer_start(&s->timer, on_wait, ms, 0) != 0)
        abort();
}

static void record(state_t *s, const char *name, cJSON *v)
{
    cJSON_AddItemToObject(s->out, name, v);
}

static cJSON *result_obj(const PGresult *res, const char *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err ? err : "");
    if (res && PQresultErrorField(res, PG_DIAG_SQLSTATE))
        cJSON_AddStringToObject(o, "sqlstate", PQresultErrorField(res, PG_DIAG_SQLSTATE));
    if (res && !err && PQntuples(res) > 0) {
        cJSON *row = cJSON_AddArrayToObject(o, "row");
        for (int c = 0; c < PQnfields(res); c++)
            cJSON_AddItemToArray(row, cJSON_CreateString(PQgetvalue(res, 0, c)));
    }
    return o;
}

static void on_pg_params(void *arg, const PGresult *res, const char *err)
{
    state_t *s = arg;
    record(s, "pg_params", result_obj(res, err));
    later(s, 0);
}

static void on_pg_missing(void *arg, const PGresult *res, const char *err)
{
    state_t *s = arg;
    record(s, "pg_missing_table", result_obj(res, err));
    later(s, 0);
}

static void on_pg_multi(void *arg, const PGresult *res, const char *err)
{
    state_t *s = arg;
    record(s, "pg_two_statements", result_obj(res, err));
    later(s, 0);
}

static void on_redis(void *arg, const redisReply *r, const char *err, const char *name)
{
    state_t *s = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err ? err : "");
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
        cJSON_AddNumberToObject(o, "len", (double)r->len);
        /* Binary-safe comparison happens here; JSON gets a printable form. */
        cJSON_AddBoolToObject(o, "binary_equal",
                              r->len == 6 && memcmp(r->str, "a\0b\r\nc", 6) == 0);
        char printable[64];
        size_t n = r->len < sizeof(printable) - 1 ? r->len : sizeof(printable) - 1;
        for (size_t i = 0; i < n; i++)
            printable[i] = (r->str[i] >= 32 && r->str[i] < 127) ? r->str[i] : '.';
        printable[n] = '\0';
        cJSON_AddStringToObject(o, "str", printable);
    }
    record(s, name, o);
    later(s, 0);
}

static void on_set(void *a, const redisReply *r, const char *e)
{
    on_redis(a, r, e, "redis_set");
}
static void on_get(void *a, const redisReply *r, const char *e)
{
    on_redis(a, r, e, "redis_get");
}
static void on_sleep(void *a, const redisReply *r, const char *e)
{
    on_redis(a, r, e, "redis_slow_command");
}
static void on_ping(void *a, const redisReply *r, const char *e)
{
    on_redis(a, r, e, "redis_after_reconnect");
}

/* Two channels on one connection, each with its own callback. */
static void on_notify_a(void *arg, const char *channel, const char *payload)
{
    state_t *s = arg;
    if (strcmp(channel, "kc_check_a") == 0)
        (void)kc_strlcpyf(s->notified[0], sizeof(s->notified[0]), "%s", payload);
}

static void on_notify_b(void *arg, const char *channel, const char *payload)
{
    state_t *s = arg;
    if (strcmp(channel, "kc_check_b") == 0)
        (void)kc_strlcpyf(s->notified[1], sizeof(s->notified[1]), "%s", payload);
}

static void on_notified(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    state_t *s = arg;
    if (err)
        record(s, "pg_notify_error", cJSON_CreateString(err));
    later(s, 0);
}

static void finish(state_t *s)
{
    s->done = 1;
    kc_pg_close(s->pg);
    kc_redis_close(s->redis);
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_close((uv_handle_t *)&s->guard, NULL);
}

/* Waits (bounded) until cond holds, then moves on. */
static int wait_for(state_t *s, int cond, const char *what)
{
    if (cond) {
        s->waits = 0;
        return 1;
    }
    if (++s->waits > 200) {
        record(s, what, cJSON_CreateString("timed out waiting"));
        finish(s);
        return 0;
    }
    retry(s, 50);
    return 0;
}

static void next(state_t *s)
{
    if (s->done)
        return;
    int rc = 0;
    switch (s->step) {
    case 0:
        if (wait_for(s, kc_pg_connected(s->pg) && kc_redis_connected(s->redis), "connect"))
            later(s, 0);
        return;
    case 1: {
        const char *p[] = {"41", "h\xc3\xa9llo'; DROP TABLE users; --"};
        rc = kc_pg_query(s->pg, "SELECT $1::int + 1, $2::text", 2, p, on_pg_params, s);
        break;
    }
    case 2:
        rc = kc_pg_query(s->pg, "SELECT * FROM no_such_table", 0, NULL, on_pg_missing, s);
        break;
    case 3:
        rc = kc_pg_query(s->pg, "SELECT 1; SELECT 2", 0, NULL, on_pg_multi, s);
        break;
    case 4: {
        const char *argv[] = {"SET", "kc-adapters-check", "a\0b\r\nc"};
        size_t len[] = {3, 17, 6};
        rc = kc_redis_command(s->redis, on_set, s, 3, argv, len);
        break;
    }
    case 5: {
        const char *argv[] = {"GET", "kc-adapters-check"};
        rc = kc_redis_command(s->redis, on_get, s, 2, argv, NULL);
        break;
    }
    case 6: {
        /* Longer than the command timeout: the adapter must fail it and reconnect. */
        const char *argv[] = {"BLPOP", "kc-adapters-check-empty", "1.5"};
        rc = kc_redis_command(s->redis, on_sleep, s, 3, argv, NULL);
        break;
    }
    case 7:
        if (wait_for(s, kc_redis_connected(s->redis), "redis_reconnect"))
            later(s, 0);
        return;
    case 8: {
        const char *argv[] = {"PING"};
        rc = kc_redis_command(s->redis, on_ping, s, 1, argv, NULL);
        break;
    }
    case 9:
        rc = kc_pg_listen(s->pg, "kc_check_a", on_notify_a, s);
        if (rc == 0)
            rc = kc_pg_listen(s->pg, "kc_check_b", on_notify_b, s);
        if (rc == 0)
            record(s, "pg_listen_twice", cJSON_CreateNumber(
                                             kc_pg_listen(s->pg, "kc_check_a", on_notify_b, s)));
        if (rc == 0)
            later(s, 0);
        break;
    case 10:
        if (wait_for(s, kc_pg_listening(s->pg), "pg_listening"))
            later(s, 0);
        return;
    case 11:
        rc = kc_pg_query(s->pg, "SELECT pg_notify('kc_check_a', 'to a'), pg_notify('kc_check_b', "
                                "'to b'), pg_notify('kc_check_c', 'to nobody')",
                         0, NULL, on_notified, s);
        break;
    case 12:
        if (wait_for(s, s->notified[0][0] && s->notified[1][0], "pg_notify"))
            later(s, 0);
        return;
    case 13: {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "kc_check_a", s->notified[0]);
        cJSON_AddStringToObject(n, "kc_check_b", s->notified[1]);
        record(s, "pg_notified", n);
        later(s, 0);
        return;
    }
    default:
        finish(s);
        return;
    }
    if (rc != 0) {
        char step[32];
        snprintf(step, sizeof(step), "step_%d_error", s->step);
        record(s, step, cJSON_CreateNumber(rc));
        finish(s);
    }
}

static void on_guard(uv_timer_t *t)
{
    state_t *s = t->data;
    record(s, "guard", cJSON_CreateString("stopped after 60 s"));
    finish(s);
}

int main(int argc, char **argv)
{
    opts_t o = {0};
    char err[512];
    kc_log_init("kc-adapters-check", KC_LOG_WARN);
    int rc = kc_config_load(table, KC_ARRAY_LEN(table), &o, argc, argv, NULL, stdout, err,
                            sizeof(err));
    if (rc != KC_CFG_OK) {
        if (rc < 0)
            fprintf(stderr, "kc-adapters-check: %s\n", err);
        kc_config_free(table, KC_ARRAY_LEN(table), &o);
        return rc < 0 ? 2 : 0;
    }
    state_t s = {0};
    s.out = cJSON_CreateObject();
    if (uv_loop_init(&s.loop) != 0 || uv_timer_init(&s.loop, &s.timer) != 0 ||
        uv_timer_init(&s.loop, &s.guard) != 0)
        abort();
    s.timer.data = s.guard.data = &s;
    s.pg = kc_pg_new(&s.loop, o.pg.dsn, NULL, NULL);
    s.redis = kc_redis_new(&s.loop, &o.redis, NULL,
                           NULL);
    if (uv_timer_start(&s.guard, on_guard, 60000, 0) != 0)
        abort();
    retry(&s, 0);
    (void)uv_run(&s.loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(&s.loop) == 0;
    cJSON_AddBoolToObject(s.out, "loop_closed_cleanly", closed);
    char *text = cJSON_PrintUnformatted(s.out);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(s.out);
    kc_config_free(table, KC_ARRAY_LEN(table), &o);
    return 0;
}
