/* users.c - people: finding other users (by exact username, by id, or by the start of a
 * username or display name for the people picker; deactivated accounts are not suggested)
 * and the caller's own username and display name.
 *
 * Other users are known to a client only by their opaque ids (u_...); these reads let it
 * start a conversation with someone it knows by name, and show names instead of ids. Each
 * needs a valid access token and reads the users table with a parameterized query; a user is
 * {user_id, username, display_name}, or 404 not_found.
 *
 * A prefix lookup answers at most `limit` users (10, at most 20) and each user may make at
 * most --user-lookups-per-minute of them (a window counted in Redis, shared by every replica;
 * when Redis cannot answer the lookup goes on, as the login throttle does): a picker gets its
 * suggestions, and walking the whole user base takes one request per handful of users.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* A user as the REST object; u is the users table. */
#define USER_JSON                                                                                \
    "json_build_object('user_id', u.user_id, 'username', u.username, 'display_name', "          \
    "u.display_name, 'deactivated', u.deactivated_at IS NOT NULL)"

static void on_user(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "users", "no such user");
}

/* ---- GET /users?prefix= ---- */

typedef struct {
    char key[API_DISPLAY_KEY_MAX + 1];
    char like[2 * API_DISPLAY_KEY_MAX + 2]; /* the key, LIKE's characters escaped, then '%' */
    char limit[8];
} lookup_t;

/* Usernames whose key starts with the prefix's, then display names: exact usernames first,
 * then in the order of the username's key. */
static void find_people(api_req_t *r)
{
    lookup_t *l = r->state;
    const char *params[] = {l->like, l->limit, l->key};
    (void)api_pg(r,
                 "SELECT json_build_object('users', "
                 "       coalesce(json_agg(o ORDER BY exact DESC, k), '[]'::json))::text FROM ("
                 "  SELECT " USER_JSON " o, u.username_key = $3 exact, u.username_key k"
                 "  FROM users u WHERE (u.username_key LIKE $1 "
                 "     OR (u.display_key <> '' AND u.display_key LIKE $1)) "
                 "    AND u.deactivated_at IS NULL "
                 "  ORDER BY u.username_key = $3 DESC, u.username_key LIMIT $2::int) t",
                 3, params, on_user);
}

static kc_counter_t *lookups_skipped(api_t *a)
{
    return kc_metrics_counter(a->app.metrics, "kchat_api_user_lookup_throttle_skipped_total",
                              "People lookups let through unthrottled because Redis did not "
                              "answer.",
                              NULL);
}

void api_users_init(api_t *a)
{
    (void)lookups_skipped(a); /* the series is there, at 0, before the first skip */
}

static void on_lookup_counted(void *arg, const redisReply *reply, const char *err)
{
    api_req_t *r = arg;
    if (err || !reply || reply->type != REDIS_REPLY_INTEGER) {
        api_count_and_log(lookups_skipped(r->a), &r->a->redis_log,
                          "the people lookup throttle cannot reach Redis: letting it through",
                          "error", err ? err : reply && reply->str ? reply->str : "bad reply",
                          "effect", "fail open");
        find_people(r);
        return;
    }
    if (reply->integer > 0) {
        long long secs = (reply->integer + 999) / 1000;
        api_refuse(r, 429, "throttled", "too many people lookups; retry later",
                   secs < 1 ? 1 : secs > 60 ? 60 : (int)secs);
        return;
    }
    find_people(r);
}

static void lookup(api_req_t *r, const char *prefix)
{
    long long limit = 10;
    if (api_query_int(r, "limit", 1, 20, &limit, NULL) != 0)
        return;
    lookup_t *l = kc_xcalloc(1, sizeof(*l));
    r->state = l;
    r->state_free = free;
    const char *why = NULL;
    if (api_lookup_key(prefix, l->key, &why) != 0) {
        api_error(r, 400, "invalid_query", why);
        return;
    }
    size_t o = 0;
    for (const char *p = l->key; *p; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            l->like[o++] = '\\';
        l->like[o++] = *p;
    }
    l->like[o++] = '%';
    l->like[o] = '\0';
    (void)kc_strlcpyf(l->limit, sizeof(l->limit), "%lld", limit);
    char tkey[sizeof(API_THROTTLE_LOOKUP) + API_ID_MAX];
    (void)kc_strlcpyf(tkey, sizeof(tkey), API_THROTTLE_LOOKUP "%s", r->user_id);
    if (api_throttle_window(r->a, tkey, r->a->cfg.user_lookups_per_minute, 60000,
                            on_lookup_counted, r) != 0)
        on_lookup_counted(r, NULL, "not connected");
}

/* ---- GET /users?username= ---- */

void api_users_find(api_req_t *r)
{
    const char *prefix = kc_http_query(r->http, "prefix");
    if (prefix) {
        lookup(r, prefix);
        return;
    }
    const char *u = kc_http_query(r->http, "username");
    if (!u) {
        api_error(r, 400, "invalid_query", "the query parameter username or prefix is required");
        return;
    }
    char display[API_USERNAME_MAX + 1], key[API_USERNAME_KEY_MAX + 1];
    const char *why = NULL;
    if (api_username_prepare(u, display, key, &why) != 0) {
        api_error(r, 400, "invalid_username", why);
        return;
    }
    /* CaseX, casex and ＣＡＳＥＸ are one username: found by its key */
    const char *params[] = {key};
    (void)api_pg(r, "SELECT " USER_JSON "::text FROM users u WHERE username_key = $1", 1, params,
                 on_user);
}

/* ---- GET /users/:id (the id checked by the router) ---- */

void api_users_get(api_req_t *r)
{
    const char *params[] = {r->convo_id};
    (void)api_pg(r, "SELECT " USER_JSON "::text FROM users u WHERE user_id = $1", 1, params,
                 on_user);
}

/* ---- GET /users/me, PATCH /users/me {username?, display_name?} ---- */

void api_users_me(api_req_t *r)
{
    const char *params[] = {r->user_id};
    (void)api_pg(r, "SELECT " USER_JSON "::text FROM users u WHERE user_id = $1", 1, params,
                 on_user);
}

typedef struct {
    char username[API_USERNAME_MAX + 1], username_key[API_USERNAME_KEY_MAX + 1];
    char display[API_DISPLAY_NAME_MAX + 1], display_key[API_DISPLAY_KEY_MAX + 1];
} rename_t;

static void on_updated(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    const char *st = err && res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st && strcmp(st, "23505") == 0) {
        api_error(r, 409, "username_taken", "that username is taken");
        return;
    }
    on_user(arg, res, err);
}

/* A new username (the rule of registration: unique by its key, so CaseX may become casex),
 * a new display name, or both, in one statement: the trigger on users writes UsernameChanged
 * and DisplayNameChanged for what did change. Access tokens carry the username they were
 * issued with until their next refresh. */
void api_users_update_me(api_req_t *r)
{
    const cJSON *un = cJSON_GetObjectItemCaseSensitive(r->body, "username");
    const cJSON *dn = cJSON_GetObjectItemCaseSensitive(r->body, "display_name");
    if ((un && !cJSON_IsString(un)) || (dn && !cJSON_IsString(dn)) || (!un && !dn)) {
        api_error(r, 400, "invalid_request",
                  "username or display_name (strings; display_name \"\" clears it) is required");
        return;
    }
    rename_t *n = kc_xcalloc(1, sizeof(*n));
    r->state = n;
    r->state_free = free;
    const char *why = NULL;
    if (un && api_username_prepare(un->valuestring, n->username, n->username_key, &why) != 0) {
        api_error(r, 400, "invalid_username", why);
        return;
    }
    if (dn && api_display_name_prepare(dn->valuestring, n->display, n->display_key, &why) != 0) {
        api_error(r, 400, "invalid_display_name", why);
        return;
    }
    const char *params[] = {r->user_id, un ? n->username : NULL, un ? n->username_key : NULL,
                            dn ? n->display : NULL, dn ? n->display_key : NULL};
    (void)api_pg(r,
                 "UPDATE users u SET username = coalesce($2, username), "
                 "username_key = coalesce($3, username_key), "
                 "display_name = coalesce($4, display_name), "
                 "display_key = coalesce($5, display_key) WHERE user_id = $1 "
                 "RETURNING " USER_JSON "::text",
                 5, params, on_updated);
}
