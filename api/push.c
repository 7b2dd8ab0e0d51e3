/* push.c - Web Push subscriptions (RFC 8030): the browser's side of kchat-notifier's pushes.
 *
 *   GET    /push/vapid-public-key  the VAPID public key (RFC 8292) a browser subscribes with
 *                                  (its applicationServerKey); open, see api_push_vapid_key
 *   POST   /push/subscriptions     {endpoint, keys: {p256dh, auth}}: 201 {id} for a new
 *                                  endpoint, 200 {id} for one the caller already has
 *   GET    /push/subscriptions     the caller's, {subscriptions: [{id, endpoint, created_at}]}
 *   DELETE /push/subscriptions/:id the caller's one: 204, anyone else's or unknown: 404
 *
 * A subscription is a row of push_subscriptions (db/migrations/0008_push.sql), a setting of
 * the user, not an event: kchat-api writes it, kchat-notifier reads it to encrypt (RFC 8291,
 * lib/webpush.c) and send the pushes, and deletes one its push service answers 404 or 410
 * for. An endpoint is one browser's, so it belongs to one user: a browser that subscribes
 * again for another user (someone else logged in there) moves the row to that user, under a
 * new id, and the first user no longer gets pushes in that browser.
 *
 * What a browser sends is checked before anything is stored, by lib/webpush.c, so that the
 * notifier never has to trust a row: the endpoint is https:// (http:// only on a loopback host
 * with --push-allow-http, for the local stack's fake push service), the keys are a point of
 * P-256 and a 16-byte secret. A user holds at most --push-subscriptions-max of them (a
 * browser per device); two requests of one user racing at the limit may both pass, so the
 * bound is a guard against a table that grows without end, not an exact quota.
 *
 * The API holds only the VAPID public key (--vapid-public-key, a PEM file); without it these
 * endpoints answer 503 push_unavailable (but for the list and the delete, which still let a
 * user clear what they had).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

int api_push_init(api_t *a, char *err, size_t errlen)
{
    if (!*a->cfg.vapid_public_key)
        return 0;
    char why[256];
    a->vapid = kc_vapid_load(a->cfg.vapid_public_key, 0, why, sizeof(why));
    if (!a->vapid) {
        (void)kc_strlcpyf(err, errlen, "vapid-public-key: %s", why);
        return -1;
    }
    return 0;
}

void api_push_close(api_t *a)
{
    kc_vapid_free(a->vapid);
    a->vapid = NULL;
}

static void unavailable(api_req_t *r)
{
    api_error(r, 503, "push_unavailable",
              "this server sends no push notifications (it has no VAPID key)");
}

/* Open to anyone: the key is public (every push's Authorization header carries it), and a
 * service worker subscribing again on pushsubscriptionchange has no access token to show. */
void api_push_vapid_key(api_req_t *r)
{
    if (!r->a->vapid) {
        unavailable(r);
        return;
    }
    kc_buf_t b = {0};
    kc_buf_printf(&b, "{\"public_key\":\"%s\"}", kc_vapid_public_b64(r->a->vapid));
    api_reply(r, 200, &b);
}

typedef struct {
    char id[KC_ID_MAX];
} subscribe_t;

static void on_subscribed(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    const subscribe_t *s = r->state;
    if (err || !res || PQnfields(res) != 2) {
        api_error(r, 503, "unavailable", "the subscription could not be stored");
        return;
    }
    if (PQntuples(res) != 1) {
        char msg[160];
        (void)kc_strlcpyf(msg, sizeof(msg),
                          "you have %lld push subscriptions, the most allowed: remove one "
                          "(DELETE /push/subscriptions/{id}) first",
                          r->a->cfg.push_subscriptions_max);
        api_error(r, 409, "too_many_subscriptions", msg);
        return;
    }
    /* our new id came back: a new row, or one moved from another user; else the caller's
     * own row, kept under its id */
    int created = strcmp(PQgetvalue(res, 0, 1), s->id) == 0;
    kc_buf_t b = {0};
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    api_reply(r, created ? 201 : 200, &b);
}

void api_push_subscribe(api_req_t *r)
{
    const api_cfg_t *c = &r->a->cfg;
    if (!r->a->vapid) {
        unavailable(r);
        return;
    }
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(r->body, "endpoint");
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(r->body, "keys");
    char why[160];
    if (!cJSON_IsString(ep)) {
        api_error(r, 400, "invalid_request", "endpoint must be a string (the push service's URL)");
        return;
    }
    if (kc_webpush_endpoint_ok(ep->valuestring, c->push_allow_http, why, sizeof(why)) != 0) {
        api_error(r, 400, "invalid_request", why);
        return;
    }
    if (!cJSON_IsObject(keys)) {
        api_error(r, 400, "invalid_request",
                  "keys must be an object {p256dh, auth} (PushSubscription.toJSON().keys)");
        return;
    }
    const cJSON *p256dh = cJSON_GetObjectItemCaseSensitive(keys, "p256dh");
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(keys, "auth");
    if (!cJSON_IsString(p256dh) || !cJSON_IsString(auth)) {
        api_error(r, 400, "invalid_request", "keys.p256dh and keys.auth must be strings");
        return;
    }
    if (kc_webpush_keys_ok(p256dh->valuestring, auth->valuestring, why, sizeof(why)) != 0) {
        char msg[200];
        (void)kc_strlcpyf(msg, sizeof(msg), "keys.%s", why);
        api_error(r, 400, "invalid_request", msg);
        return;
    }
    subscribe_t *s = kc_xcalloc(1, sizeof(*s));
    r->state = s;
    r->state_free = free;
    if (kc_id_new(s->id, sizeof(s->id), "ps_") != 0) {
        api_error(r, 500, "internal", "cannot make a subscription id");
        return;
    }
    char max[24];
    (void)kc_strlcpyf(max, sizeof(max), "%lld", c->push_subscriptions_max);
    const char *params[] = {s->id, r->user_id, ep->valuestring, p256dh->valuestring,
                            auth->valuestring, max};
    /* One statement, so that two browsers racing with one endpoint meet in ON CONFLICT:
     *   - the caller's own endpoint: its keys are refreshed, its id and created_at kept;
     *   - another user's: the row moves to the caller under the new id $1 (counted against
     *     the caller's limit);
     *   - a new one: inserted, when the caller has fewer than $6 others.
     * No row back: the caller is at the limit. */
    (void)api_pg(r,
                 "WITH mine AS (SELECT EXISTS (SELECT 1 FROM push_subscriptions "
                 "                             WHERE endpoint = $3 AND user_id = $2) AS has), "
                 "others AS (SELECT count(*) AS n FROM push_subscriptions "
                 "           WHERE user_id = $2 AND endpoint <> $3), "
                 "up AS (INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) "
                 "       SELECT $1, $2, $3, $4, $5 FROM mine, others "
                 "       WHERE mine.has OR others.n < $6::int "
                 "       ON CONFLICT (endpoint) DO UPDATE SET "
                 "         id = CASE WHEN push_subscriptions.user_id = excluded.user_id "
                 "                   THEN push_subscriptions.id ELSE excluded.id END, "
                 "         created_at = CASE WHEN push_subscriptions.user_id = excluded.user_id "
                 "                   THEN push_subscriptions.created_at ELSE now() END, "
                 "         user_id = excluded.user_id, p256dh = excluded.p256dh, "
                 "         auth = excluded.auth "
                 "       RETURNING id) "
                 "SELECT json_build_object('id', id)::text, id FROM up",
                 6, params, on_subscribed);
}

static void on_listed(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "subscriptions", "no subscriptions");
}

void api_push_list(api_req_t *r)
{
    const char *params[] = {r->user_id};
    (void)api_pg(r,
                 "SELECT json_build_object('subscriptions', coalesce(json_agg("
                 "  json_build_object('id', id, 'endpoint', endpoint, "
                 "                    'created_at', " API_ISO("created_at") ") "
                 "  ORDER BY created_at, id), '[]'::json))::text "
                 "FROM push_subscriptions WHERE user_id = $1",
                 1, params, on_listed);
}

static void on_unsubscribed(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || !res) {
        api_error(r, 503, "unavailable", "the subscription could not be removed");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", "no such subscription");
        return;
    }
    kc_buf_t none = {0};
    api_reply(r, 204, &none);
}

/* The :id of the path is in r->convo_id (http.c's one checked id of a path). */
void api_push_unsubscribe(api_req_t *r)
{
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r, "DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2 RETURNING 1",
                 2, params, on_unsubscribed);
}
