/* users.c - finding other users: by exact username, or by id.
 *
 * Other users are known to a client only by their opaque ids (u_...); these two reads let it
 * start a conversation with someone it knows by name, and show names instead of ids. Both
 * need a valid access token and read the users table with a parameterized query; the answer
 * is {user_id, username} or 404 not_found.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

static void on_user(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || !res || PQnfields(res) != 2) {
        api_error(r, 503, "unavailable", "the users could not be read");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", "no such user");
        return;
    }
    const char *id = PQgetvalue(res, 0, 0), *name = PQgetvalue(res, 0, 1);
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"user_id\":\"");
    kc_buf_json_str(&b, id, strlen(id));
    kc_buf_puts(&b, "\",\"username\":\"");
    kc_buf_json_str(&b, name, strlen(name));
    kc_buf_puts(&b, "\"}");
    api_reply(r, 200, &b);
}

/* ---- GET /users?username= ---- */

void api_users_find(api_req_t *r)
{
    const char *u = kc_http_query(r->http, "username");
    if (!u) {
        api_error(r, 400, "invalid_query", "the query parameter username is required");
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
    (void)api_pg(r, "SELECT user_id, username FROM users WHERE username_key = $1", 1, params,
                 on_user);
}

/* ---- GET /users/:id (the id checked by the router) ---- */

void api_users_get(api_req_t *r)
{
    const char *params[] = {r->convo_id};
    (void)api_pg(r, "SELECT user_id, username FROM users WHERE user_id = $1", 1, params,
                 on_user);
}
