/* revoked.c - the set of deactivated accounts (revoked.h): user ids, replaced whole by each
 * reload and added to by each notification. */
#include "kchat/revoked.h"

#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/util.h"

#define ID_MAX 128

static char present; /* the map's value for every member */

struct kc_revoked {
    kc_pg_t *pg;
    uv_timer_t timer;
    kc_map_t *set; /* user id -> &present */
    kc_revoked_cb cb;
    void *arg;
    kc_health_t *health;
    int check;
    int loading;
    int loaded;
    int stopped;
    int failed_logged;
};

/* Adds user_id to m; returns whether it was not in `before`. */
static int put(kc_map_t *m, const kc_map_t *before, const char *user_id)
{
    int fresh = !kc_map_get(before, user_id, strlen(user_id));
    (void)kc_map_put(m, user_id, strlen(user_id), &present);
    return fresh;
}

static void on_timer(uv_timer_t *t);

static void on_loaded(void *arg, const PGresult *res, const char *err)
{
    kc_revoked_t *r = arg;
    r->loading = 0;
    if (r->stopped)
        return;
    if (err) {
        if (!r->failed_logged)
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)),
                      r->loaded ? "cannot read the deactivated accounts: the set read last is kept"
                                : "cannot read the deactivated accounts yet");
        r->failed_logged = 1;
        return;
    }
    r->failed_logged = 0;
    kc_map_t *m = kc_map_new();
    kc_map_t *old = r->set;
    r->set = m; /* a callback may look the account up */
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        if (strlen(id) <= ID_MAX && put(m, old, id) && r->cb)
            r->cb(r->arg, id);
    }
    kc_map_destroy(old, NULL);
    if (!r->loaded) {
        r->loaded = 1;
        if (r->health)
            kc_health_set(r->health, r->check, 1, NULL);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("accounts", kc_map_size(m))),
                  "deactivated accounts read");
        if (uv_timer_start(&r->timer, on_timer, KC_REVOKED_RELOAD_MS, KC_REVOKED_RELOAD_MS) != 0)
            kc_log_error("cannot restart the revocation timer");
    }
}

static void load(kc_revoked_t *r)
{
    if (r->loading || r->stopped || !kc_pg_connected(r->pg))
        return;
    char window[24];
    (void)kc_strlcpyf(window, sizeof(window), "%d", KC_REVOKED_WINDOW_S);
    const char *params[] = {window};
    if (kc_pg_query(r->pg,
                    "SELECT user_id FROM users "
                    "WHERE deactivated_at > now() - make_interval(secs => $1::int)",
                    1, params, on_loaded, r) == 0)
        r->loading = 1;
}

static void on_timer(uv_timer_t *t)
{
    load(t->data);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    kc_revoked_t *r = arg;
    if (r->stopped)
        return;
    size_t n = strlen(payload);
    if (n == 0 || n > ID_MAX) {
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("bytes", n)),
                  "ignoring a malformed " KC_REVOKED_CHANNEL " notification");
        return;
    }
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", payload)), "account deactivated");
    /* a notification comes once per deactivation: the callback hears of it even when a
     * reload found the account first */
    (void)put(r->set, r->set, payload);
    if (r->cb)
        r->cb(r->arg, payload);
}

kc_revoked_t *kc_revoked_new(uv_loop_t *loop, kc_pg_t *pg, kc_health_t *health,
                             kc_revoked_cb cb, void *arg, char *err, size_t errlen)
{
    kc_revoked_t *r = kc_xcalloc(1, sizeof(*r));
    r->pg = pg;
    r->health = health;
    if (health) {
        r->check = kc_health_add(health, "revocations");
        kc_health_set(health, r->check, 0, "the deactivated accounts are not read yet");
    }
    r->cb = cb;
    r->arg = arg;
    r->set = kc_map_new();
    if (uv_timer_init(loop, &r->timer) != 0) {
        kc_map_destroy(r->set, NULL);
        free(r);
        kc_strlcpyf(err, errlen, "cannot make the revocation timer");
        return NULL;
    }
    r->timer.data = r;
    /* every KC_REVOKED_RETRY_MS until the first load, then every KC_REVOKED_RELOAD_MS; the
     * timer first, so that a failure leaves no listener behind */
    if (uv_timer_start(&r->timer, on_timer, 0, KC_REVOKED_RETRY_MS) != 0) {
        kc_strlcpyf(err, errlen, "cannot start the revocation timer");
        kc_revoked_close(r);
        return NULL;
    }
    if (kc_pg_listen(pg, KC_REVOKED_CHANNEL, on_notify, r) != 0) {
        kc_strlcpyf(err, errlen, "cannot LISTEN on " KC_REVOKED_CHANNEL);
        kc_revoked_close(r);
        return NULL;
    }
    return r;
}

int kc_revoked_is(const kc_revoked_t *r, const char *user_id)
{
    return r && kc_map_get(r->set, user_id, strlen(user_id)) != NULL;
}

int kc_revoked_loaded(const kc_revoked_t *r)
{
    return r && r->loaded;
}

size_t kc_revoked_size(const kc_revoked_t *r)
{
    return r ? kc_map_size(r->set) : 0;
}

static void on_closed(uv_handle_t *h)
{
    kc_revoked_t *r = h->data;
    kc_map_destroy(r->set, NULL);
    free(r);
}

void kc_revoked_close(kc_revoked_t *r)
{
    if (!r || r->stopped)
        return;
    r->stopped = 1;
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
