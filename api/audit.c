/* audit.c - the audit log: a row of audit_log (db/migrations/0012_audit.sql) for each
 * security-relevant action the API sees, the key it signs with recorded the first time it is
 * used, the pruning of old rows, and the admins' query, GET /admin/audit.
 *
 * A row is written by its own statement on the pool, after the action (a login's tokens are
 * signed already): when Postgres cannot take it, the action stands, and the loss is logged
 * and counted (kchat_api_audit_write_errors_total). A stopping API waits for the rows it has
 * sent (the drain, http.c). Rows of changes that are one statement anyway are written with
 * them: a deactivation's by the trigger on users, a read's by the read's own statement.
 * relay.c sends the rows to chat.audit. Who may read: an admin (users.is_admin, set by an
 * operator) whose account is not deactivated; the check is part of the query's statement, and
 * a refused read is recorded too (audit_read_denied).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

#define PRUNE_MS (3600 * 1000) /* once an hour, and soon after start */
#define FIRST_PRUNE_MS 5000

static void on_written(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    api_t *a = arg;
    if (a->audit_pending > 0)
        a->audit_pending--;
    if (err)
        api_count_and_log(a->audit_errors, &a->audit_rl, "an audit event could not be written",
                          "error", err, "effect", "the action stands, unrecorded");
}

void api_audit(api_t *a, const char *action, const char *actor_id, const char *target,
               const char *source, const char *detail)
{
    const char *params[] = {action, actor_id, target, source, detail ? detail : "{}"};
    kc_pg_t *pg = api_pg_conn(a);
    a->audit_pending++;
    if (!pg || kc_pg_query(pg,
                           "INSERT INTO audit_log (action, actor_id, target, source, detail) "
                           "VALUES ($1, $2, $3, left($4, 256), $5::jsonb)",
                           5, params, on_written, a) != 0)
        on_written(a, NULL, pg ? "the query queue is full" : "no Postgres connection is up");
}

void api_audit_detail(kc_buf_t *b, const char *key, const char *value)
{
    kc_buf_puts(b, b->len ? "," : "{");
    kc_buf_putc(b, '"');
    kc_buf_puts(b, key);
    kc_buf_puts(b, "\":\"");
    kc_buf_json_str(b, value, strlen(value));
    kc_buf_putc(b, '"');
}

const char *api_audit_detail_end(kc_buf_t *b)
{
    if (!b->len)
        kc_buf_putc(b, '{');
    kc_buf_putc(b, '}');
    return b->data;
}

/* ---- the signing key and pruning ---- */

static void on_key_recorded(void *arg, const PGresult *res, const char *err)
{
    api_t *a = arg;
    if (err) {
        kc_log_warn("cannot record the signing key's fingerprint: %s", err);
        a->key_recorded = 0; /* tried again in a second */
        return;
    }
    a->key_recorded = 2;
    if (a->audit_timers)
        (void)uv_timer_stop(&a->audit_first);
    if (PQntuples(res) == 1)
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("fingerprint", a->key_fingerprint)),
                  "a signing key used for the first time: recorded in the audit log");
}

/* The first use of a signing key, once across every instance (the insert decides).
 * key_recorded: 0 not yet, 1 asked, 2 done. */
static void record_key(api_t *a)
{
    kc_pg_t *pg = api_pg_conn(a);
    if (a->key_recorded || !a->key_fingerprint[0] || !pg)
        return;
    const char *params[] = {a->key_fingerprint, a->origin};
    if (kc_pg_query(pg,
                    "WITH k AS (INSERT INTO signing_keys (fingerprint) VALUES ($1) "
                    "  ON CONFLICT DO NOTHING RETURNING fingerprint) "
                    "INSERT INTO audit_log (action, target, source, detail) "
                    "SELECT 'signing_key_added', fingerprint, $2, jsonb_build_object("
                    "  'keys_before', (SELECT count(*) FROM signing_keys)) FROM k "
                    "RETURNING audit_no",
                    2, params, on_key_recorded, a) == 0)
        a->key_recorded = 1;
}

static void on_pruned(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    if (err)
        kc_log_warn("cannot prune the audit log: %s", err);
    else if (strcmp(PQcmdTuples((PGresult *)res), "0") != 0)
        kc_log_info("audit log: %s rows past their retention deleted",
                    PQcmdTuples((PGresult *)res));
}

static void on_prune_timer(uv_timer_t *t)
{
    api_t *a = t->data;
    kc_pg_t *pg = api_pg_conn(a);
    char days[24];
    (void)kc_strlcpyf(days, sizeof(days), "%lld", a->cfg.audit_retention_days);
    const char *params[] = {days};
    if (pg)
        (void)kc_pg_query(pg,
                          "DELETE FROM audit_log WHERE relayed "
                          "AND occurred_at < now() - make_interval(days => $1::int)",
                          1, params, on_pruned, a);
}

static void on_first_timer(uv_timer_t *t)
{
    api_t *a = t->data;
    if (a->key_recorded == 2)
        (void)uv_timer_stop(t);
    else
        record_key(a);
}

int api_audit_start(api_t *a, char *err, size_t errlen)
{
    a->audit_errors = kc_metrics_counter(a->app.metrics, "kchat_api_audit_write_errors_total",
                                         "Audit events that could not be written to audit_log "
                                         "(the action itself went ahead).",
                                         NULL);
    if (kc_jwt_key_fingerprint(a->signer, a->key_fingerprint) != 0) {
        kc_strlcpyf(err, errlen, "cannot read the signing key's public half");
        return -1;
    }
    if (uv_timer_init(a->app.loop, &a->audit_timer) != 0)
        goto no_timer;
    if (uv_timer_init(a->app.loop, &a->audit_first) != 0) {
        uv_close((uv_handle_t *)&a->audit_timer, NULL);
        goto no_timer;
    }
    a->audit_timer.data = a->audit_first.data = a;
    a->audit_timers = 1;
    /* the key as soon as the pool is up, tried each second until it is recorded */
    if (uv_timer_start(&a->audit_first, on_first_timer, 200, 1000) != 0 ||
        uv_timer_start(&a->audit_timer, on_prune_timer, FIRST_PRUNE_MS, PRUNE_MS) != 0) {
        kc_strlcpyf(err, errlen, "cannot start the audit log's timers");
        return -1;
    }
    return 0;
no_timer:
    kc_strlcpyf(err, errlen, "cannot make the audit log's timers");
    return -1;
}

void api_audit_close(api_t *a)
{
    if (!a->audit_timers)
        return;
    a->audit_timers = 0;
    uv_close((uv_handle_t *)&a->audit_timer, NULL);
    uv_close((uv_handle_t *)&a->audit_first, NULL);
}

/* ---- GET /admin/audit ---- */

typedef struct {
    char limit[8], before[24];
    kc_buf_t detail;
} query_t;

static void query_free(void *p)
{
    query_t *q = p;
    kc_buf_free(&q->detail);
    free(q);
}

static void on_audit(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    query_t *q = r->state;
    const char *st = err && res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* since or until is no time: invalid_datetime_format, datetime_field_overflow,
     * invalid_time_zone_displacement_value */
    if (st && (strcmp(st, "22007") == 0 || strcmp(st, "22008") == 0 ||
               strcmp(st, "22009") == 0)) {
        api_error(r, 400, "invalid_query", "since and until are ISO 8601 times");
        return;
    }
    if (err || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the audit log could not be read");
        return;
    }
    if (PQgetisnull(res, 0, 0)) {
        api_audit(r->a, "audit_read_denied", r->user_id, NULL, r->client, q->detail.data);
        api_error(r, 403, "not_admin", "only kchat's admins read the audit log");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    api_reply(r, 200, &b);
}

/* An optional filter: absent, or a string of 1..max bytes (else 400). */
static int filter(api_req_t *r, const char *name, size_t max, const char **out)
{
    const char *v = kc_http_query(r->http, name);
    *out = NULL;
    if (!v)
        return 0;
    if (!*v || strlen(v) > max) {
        char why[96];
        (void)kc_strlcpyf(why, sizeof(why), "%s is 1 to %zu bytes", name, max);
        api_error(r, 400, "invalid_query", why);
        return -1;
    }
    if ((strcmp(name, "since") == 0 || strcmp(name, "until") == 0) &&
        (strspn(v, "0123456789") != 4 || v[4] != '-')) { /* not Postgres' 'yesterday' */
        api_error(r, 400, "invalid_query", "since and until are ISO 8601 times");
        return -1;
    }
    query_t *q = r->state;
    api_audit_detail(&q->detail, name, v);
    *out = v;
    return 0;
}

void api_audit_query(api_req_t *r)
{
    query_t *q = kc_xcalloc(1, sizeof(*q));
    r->state = q;
    r->state_free = query_free;
    long long limit = 50, before = 0;
    int have_before = 0;
    const char *actor, *target, *action, *since, *until;
    if (api_query_int(r, "limit", 1, 500, &limit, NULL) != 0 ||
        api_query_int(r, "before", 1, INT64_MAX, &before, &have_before) != 0 ||
        filter(r, "actor_id", 128, &actor) != 0 || filter(r, "target", 256, &target) != 0 ||
        filter(r, "action", 64, &action) != 0 || filter(r, "since", 64, &since) != 0 ||
        filter(r, "until", 64, &until) != 0)
        return;
    (void)kc_strlcpyf(q->limit, sizeof(q->limit), "%lld", limit);
    (void)kc_strlcpyf(q->before, sizeof(q->before), "%lld", before);
    (void)api_audit_detail_end(&q->detail);
    const char *params[] = {r->user_id, actor,    target, action, since, until, q->limit,
                            have_before ? q->before : NULL, r->client, q->detail.data};
    /* Newest first; the page's last audit_no is the cursor of the next (before=). One row:
     * NULL when the caller is not an admin. The read is recorded by the same statement; since
     * and until are cast once, so a bad one fails the statement (400) whatever the rows. */
    (void)api_pg(r,
                 "WITH me AS (SELECT $5::timestamptz AS since, $6::timestamptz AS until "
                 "  FROM users WHERE user_id = $1 AND is_admin AND deactivated_at IS NULL), "
                 "rec AS (INSERT INTO audit_log (action, actor_id, source, detail) "
                 "  SELECT 'audit_read', $1, left($9, 256), $10::jsonb FROM me), "
                 "e AS (SELECT l.* FROM audit_log l, me "
                 "  WHERE ($2::text IS NULL OR l.actor_id = $2) "
                 "  AND ($3::text IS NULL OR l.target = $3) "
                 "  AND ($4::text IS NULL OR l.action = $4) "
                 "  AND (me.since IS NULL OR l.occurred_at >= me.since) "
                 "  AND (me.until IS NULL OR l.occurred_at < me.until) "
                 "  AND ($8::bigint IS NULL OR l.audit_no < $8::bigint) "
                 "  ORDER BY l.audit_no DESC LIMIT $7::int) "
                 "SELECT CASE WHEN EXISTS (SELECT 1 FROM me) THEN (SELECT json_build_object("
                 "  'events', coalesce(json_agg(json_build_object("
                 "    'audit_no', e.audit_no, 'event_id', e.event_id, "
                 "    'occurred_at', " API_ISO("e.occurred_at") ", 'action', e.action, "
                 "    'actor_id', e.actor_id, 'target', e.target, 'source', e.source, "
                 "    'detail', e.detail) ORDER BY e.audit_no DESC), '[]'::json), "
                 "  'next_before', CASE WHEN count(*) = $7::int THEN min(e.audit_no) END)::text "
                 "  FROM e) END",
                 10, params, on_audit);
}
