/* http.c - one request's life: route, access token, JSON body, answer, metrics.
 *
 * Every REST request becomes an api_req_t and is suspended (kc_http_suspend); whichever
 * module serves it answers with api_reply / api_error, from the loop, exactly once, which
 * resumes the connection, records the metrics and frees the request.
 */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "kchat/log.h"

typedef enum { NO_AUTH = 0, AUTH = 1 } auth_t;

typedef struct {
    const char *method;
    /* template; ":id" matches one path segment (a conversation, user or attachment id),
     * ":user_id" a second id (a member of the conversation), ":att_id" one of an attachment
     * (both in member_id), ":seq" a seq_no */
    const char *route;
    auth_t auth;
    int json_body;
    void (*fn)(api_req_t *r);
} route_t;

static const route_t routes[] = {
    {"POST", "/auth/register", NO_AUTH, 1, api_auth_register},
    {"POST", "/auth/login", NO_AUTH, 1, api_auth_login},
    {"POST", "/auth/refresh", NO_AUTH, 1, api_auth_refresh},
    {"GET", "/conversations", AUTH, 0, api_convo_list},
    {"POST", "/conversations", AUTH, 1, api_convo_create},
    {"GET", "/conversations/:id", AUTH, 0, api_convo_get},
    {"PATCH", "/conversations/:id", AUTH, 1, api_convo_update},
    {"POST", "/conversations/:id/members", AUTH, 1, api_convo_add_members},
    {"DELETE", "/conversations/:id/members/:user_id", AUTH, 0, api_convo_remove_member},
    {"PATCH", "/conversations/:id/members/:user_id", AUTH, 1, api_convo_set_role},
    {"GET", "/conversations/:id/messages", AUTH, 0, api_messages_list},
    {"PATCH", "/conversations/:id/messages/:seq", AUTH, 1, api_message_edit},
    {"DELETE", "/conversations/:id/messages/:seq", AUTH, 0, api_message_delete},
    {"PUT", "/conversations/:id/messages/:seq/reaction", AUTH, 1, api_message_react},
    {"DELETE", "/conversations/:id/messages/:seq/reaction", AUTH, 0, api_message_unreact},
    {"POST", "/conversations/:id/read", AUTH, 1, api_convo_read},
    {"PUT", "/conversations/:id/mute", AUTH, 1, api_convo_mute},
    {"DELETE", "/conversations/:id/mute", AUTH, 0, api_convo_unmute},
    {"PATCH", "/conversations/:id/settings", AUTH, 1, api_convo_settings},
    {"GET", "/users", AUTH, 0, api_users_find},
    {"GET", "/users/me", AUTH, 0, api_users_me},
    {"PATCH", "/users/me", AUTH, 1, api_users_update_me},
    {"POST", "/users/me/deactivate", AUTH, 1, api_auth_deactivate},
    {"GET", "/users/:id", AUTH, 0, api_users_get},
    {"GET", "/search", AUTH, 0, api_search},
    {"GET", "/admin/audit", AUTH, 0, api_audit_query},
    {"POST", "/attachments/presign", AUTH, 1, api_presign},
    {"POST", "/attachments/:id/complete", AUTH, 0, api_attachment_complete},
    {"GET", "/conversations/:id/attachments/:att_id", AUTH, 0, api_attachment_get},
    {"GET", "/push/vapid-public-key", NO_AUTH, 0, api_push_vapid_key},
    {"GET", "/push/subscriptions", AUTH, 0, api_push_list},
    {"POST", "/push/subscriptions", AUTH, 1, api_push_subscribe},
    {"DELETE", "/push/subscriptions/:id", AUTH, 0, api_push_unsubscribe},
};

static void req_free(api_req_t *r)
{
    if (r->on_free)
        r->on_free(r);
    if (r->state_free && r->state)
        r->state_free(r->state);
    cJSON_Delete(r->body);
    free(r);
}

static void count(api_t *a, const char *route, int status, double seconds)
{
    char st[8];
    (void)kc_strlcpyf(st, sizeof(st), "%d", status);
    const char *lbl[] = {"route", route, "status", st, NULL};
    kc_counter_inc(kc_metrics_counter(a->app.metrics, "kchat_api_http_requests_total",
                                      "REST requests answered, by route template and status.",
                                      lbl));
    const char *hl[] = {"route", route, NULL};
    kc_histogram_observe(kc_metrics_histogram(a->app.metrics,
                                              "kchat_api_http_request_duration_seconds",
                                              "Time from a request's arrival to its answer.", hl,
                                              NULL, 0),
                         seconds);
}

static void stop_if_drained(api_t *a);

static void answer(api_req_t *r, kc_http_resp_t *resp)
{
    api_t *a = r->a;
    double secs = (double)(kc_mono_ns() - r->t0_ns) / 1e9;
    count(a, r->route, resp->status, secs);
    if (resp->status >= 500 && resp->retry_after_s == 0)
        kc_log_kv(KC_LOG_WARN,
                  KC_FIELDS(KC_STR("route", r->route), KC_INT("status", resp->status),
                            KC_STR("user_id", r->user_id)),
                  "request failed: %s", resp->body.data ? resp->body.data : "");
    kc_http_resume(r->pending, resp);
    kc_buf_free(&resp->body);
    req_free(r);
    a->inflight--;
    stop_if_drained(a);
}

void api_count_and_log(kc_counter_t *counter, kc_ratelog_t *rl, const char *what,
                       const char *k1, const char *v1, const char *k2, const char *v2)
{
    kc_counter_inc(counter);
    long long suppressed;
    if (kc_ratelog_ok(rl, kc_mono_ns(), &suppressed))
        kc_log_kv(KC_LOG_WARN,
                  KC_FIELDS(KC_STR(k1, v1), KC_STR(k2, v2), KC_INT("suppressed", suppressed)),
                  "%s", what);
}

void api_reply_row(api_req_t *r, const PGresult *res, const char *err, int status,
                   const char *what, const char *missing)
{
    if (err || !res || PQnfields(res) != 1) {
        char msg[96];
        (void)kc_strlcpyf(msg, sizeof(msg), "the %s could not be read", what);
        api_error(r, 503, "unavailable", msg);
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", missing);
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    api_reply(r, status, &b);
}

void api_reply(api_req_t *r, int status, kc_buf_t *body)
{
    kc_http_resp_t resp = {.status = status, .content_type = "application/json"};
    resp.body = *body;
    memset(body, 0, sizeof(*body));
    answer(r, &resp);
}

void api_error(api_req_t *r, int status, const char *code, const char *message)
{
    api_refuse(r, status, code, message, 0);
}

void api_refuse(api_req_t *r, int status, const char *code, const char *message,
                int retry_after_s)
{
    kc_http_resp_t resp = {.retry_after_s = retry_after_s};
    kc_http_error(&resp, status, code, message);
    answer(r, &resp);
}

kc_pg_t *api_pg_conn(api_t *a)
{
    /* round robin over the connections that are up */
    for (int i = 0; i < a->npool; i++) {
        kc_pg_t *c = a->pool[a->next_pg++ % (unsigned)a->npool];
        if (kc_pg_connected(c))
            return c;
    }
    return NULL;
}

int api_pg(api_req_t *r, const char *sql, int nparams, const char *const *params, kc_pg_cb cb)
{
    kc_pg_t *pg = api_pg_conn(r->a);
    if (!pg) {
        api_error(r, 503, "unavailable", "the database is not reachable");
        return -1;
    }
    int rc = kc_pg_query(pg, sql, nparams, params, cb, r);
    if (rc != 0) {
        api_error(r, 503, "unavailable", "the database is overloaded");
        return -1;
    }
    return 0;
}

const char *api_json_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int api_query_int(api_req_t *r, const char *name, long long min, long long max, long long *out,
                  int *present)
{
    const char *v = kc_http_query(r->http, name);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    if (api_int_parse(v, min, max, out) != 0) {
        char msg[160];
        (void)kc_strlcpyf(msg, sizeof(msg),
                          "query parameter %s must be an integer from %lld to %lld", name, min,
                          max);
        api_error(r, 400, "invalid_query", msg);
        return -1;
    }
    return 0;
}

int api_member_list(api_req_t *r, const cJSON *arr, size_t max, const char ***out, size_t *n)
{
    char msg[160];
    switch (api_member_ids(arr, max, API_ID_MAX, out, n)) {
    case API_MEMBERS_OK: return 0;
    case API_MEMBERS_TOO_MANY:
        (void)kc_strlcpyf(msg, sizeof(msg), "at most %zu members may be listed", max);
        api_error(r, 400, "too_many_members", msg);
        return -1;
    case API_MEMBERS_NOT_IDS: break;
    }
    api_error(r, 400, "invalid_request",
              cJSON_IsArray(arr) ? "members must be user ids"
                                 : "members must be an array of user ids");
    return -1;
}

/* Checks the bearer token; fills r->user_id. 0, or -1 after answering 401. */
static int authenticate(api_req_t *r)
{
    const char *h = kc_http_header(r->http, "Authorization");
    if (!h) {
        api_error(r, 401, "unauthenticated",
                  "an Authorization: Bearer <access token> header is required");
        return -1;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        api_error(r, 401, "unauthenticated",
                  "the Authorization header must be Bearer <access token>");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    kc_jwt_claims_t c;
    char err[160];
    kc_jwt_status_t st =
        kc_jwt_verify(r->a->verifier, tok, kc_now_ms() / 1000, 30, &c, err, sizeof(err));
    if (st != KC_JWT_OK) {
        api_error(r, 401, kc_jwt_status_code(st), err);
        return -1;
    }
    if (!kc_revoked_loaded(r->a->revoked)) { /* a deactivated account's token would pass */
        api_refuse(r, 503, "unavailable", "the server cannot check tokens yet: retry", 1);
        return -1;
    }
    if (kc_revoked_is(r->a->revoked, c.sub)) {
        api_error(r, 401, "token_revoked", "the account was deactivated");
        return -1;
    }
    (void)kc_strlcpyf(r->user_id, sizeof(r->user_id), "%s", c.sub);
    (void)kc_strlcpyf(r->username, sizeof(r->username), "%s", c.name);
    r->authed = 1;
    return 0;
}

void api_keep_user_agent(api_req_t *r)
{
    const char *ua = kc_http_header(r->http, "User-Agent");
    if (!ua)
        return;
    size_t full = strlen(ua);
    size_t n = full < API_USER_AGENT_MAX ? full : API_USER_AGENT_MAX;
    memcpy(r->user_agent, ua, n);
    r->user_agent[n] = '\0';
    for (int back = 0; back < 3 && n < full && n > 0 && !kc_utf8_valid(r->user_agent, n); back++)
        r->user_agent[--n] = '\0';
    if (!kc_utf8_valid(r->user_agent, n))
        (void)kc_strlcpyf(r->user_agent, sizeof(r->user_agent), "(not UTF-8)");
}

static int parse_body(api_req_t *r)
{
    const char *code = NULL, *message = NULL;
    if (api_body_parse(r->http->body, r->http->body_len, &r->body, &code, &message) != 0) {
        api_error(r, 400, code, message);
        return -1;
    }
    return 0;
}

/* The query string must be valid UTF-8 too (MHD has decoded it). */
static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    int *bad = cls;
    if (!api_query_arg_ok(key, value)) {
        *bad = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

void api_handle(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    api_t *a = arg;
    if (kc_admin_handle(&a->app.admin, req, resp)) {
        count(a, req->path, resp->status, 0);
        return;
    }
    kc_counter_inc(a->requests);
    const route_t *found = NULL;
    int path_known = 0, bad_id = 0;
    char id[API_ID_MAX + 1] = "", member[API_ID_MAX + 1] = "";
    long long seq = 0;
    for (size_t i = 0; i < KC_ARRAY_LEN(routes); i++) {
        int m = api_path_match_ids(routes[i].route, req->path, id, sizeof(id), member,
                                   sizeof(member), &seq);
        if (m == 0)
            continue;
        path_known = 1;
        if (m < 0) {
            bad_id = 1;
            continue;
        }
        if (strcmp(routes[i].method, req->method) == 0) {
            found = &routes[i];
            break;
        }
    }
    api_req_t *r = kc_xcalloc(1, sizeof(*r));
    r->a = a;
    r->http = req;
    r->t0_ns = kc_mono_ns();
    r->route = found ? found->route : "unmatched";
    r->client_is_proxy = api_client_addr(req->peer, kc_http_header(req, "X-Forwarded-For"),
                                         &a->trusted_proxies, r->client);
    r->pending = kc_http_suspend(req);
    a->inflight++;
    if (a->stopping) {
        api_error(r, 503, "stopping", "the server is stopping");
        return;
    }
    if (!found) {
        if (bad_id)
            api_error(r, 404, "not_found",
                      strncmp(req->path, "/users/", 7) == 0  ? "no such user"
                      : strncmp(req->path, "/push/", 6) == 0 ? "no such subscription"
                      : strstr(req->path, "/messages/")      ? "no such message"
                      : strstr(req->path, "/members/")       ? "no such conversation or member"
                                                             : "no such conversation");
        else if (path_known)
            api_error(r, 405, "method_not_allowed", "this path does not take that method");
        else
            api_error(r, 404, "not_found", "no such path");
        return;
    }
    int bad_arg = 0;
    if (MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, check_arg, &bad_arg) < 0 ||
        bad_arg) {
        api_error(r, 400, "invalid_query", "query parameters must be UTF-8 of at most 1024 bytes");
        return;
    }
    if (found->auth == AUTH && authenticate(r) != 0)
        return;
    if (found->json_body && parse_body(r) != 0)
        return;
    memcpy(r->convo_id, id, sizeof(r->convo_id));
    memcpy(r->member_id, member, sizeof(r->member_id));
    r->seq = seq;
    found->fn(r);
}

/* ---- drain ---- */

/* Every request is answered; the last answers may still be on their way out. */
static void on_drain_tick(uv_timer_t *t)
{
    api_t *a = t->data;
    if (kc_httpd_active(a->http) > 0 || a->audit_pending > 0)
        return;
    uv_close((uv_handle_t *)t, NULL);
    a->finish_stop(a);
}

static void stop_if_drained(api_t *a)
{
    if (!a->stopping || !a->stop_daemon || a->inflight > 0 || a->draining)
        return;
    a->draining = 1;
    if (uv_timer_init(a->app.loop, &a->drain_timer) != 0 ||
        (a->drain_timer.data = a, 0) ||
        uv_timer_start(&a->drain_timer, on_drain_tick, 0, 10) != 0) {
        kc_log_error("cannot wait for the last answers; stopping now");
        a->finish_stop(a);
    }
}

void api_stop_when_drained(api_t *a, kc_daemon_t *d, void (*finish)(api_t *a))
{
    a->stopping = 1;
    a->finish_stop = finish;
    a->stop_daemon = d;
    stop_if_drained(a);
}
