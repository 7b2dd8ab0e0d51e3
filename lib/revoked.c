/* revoked.c - the set of deactivated accounts (revoked.h): a map user id -> the second of the
 * deactivation, replaced whole by each reload and added to by each notification. */
#include "kchat/revoked.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/util.h"

#define ID_MAX 128

struct kc_revoked {
    kc_pg_t *pg;
    uv_timer_t timer;
    kc_map_t *set; /* user id -> long long * (seconds) */
    kc_revoked_cb cb;
    void *arg;
    int loading;
    int stopped;
    int failed_logged;
};

static void free_val(void *v)
{
    free(v);
}

/* Records user_id as deactivated at `at` in m; returns whether it was not in `before`. */
static int put(kc_map_t *m, const kc_map_t *before, const char *user_id, long long at)
{
    int fresh = !kc_map_get(before, user_id, strlen(user_id));
    long long *v = kc_xmalloc(sizeof(*v));
    *v = at;
    free(kc_map_put(m, user_id, strlen(user_id), v));
    return fresh;
}

static int parse_at(const char *s, long long *at)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *at = v;
    return 0;
}

static void on_loaded(void *arg, const PGresult *res, const char *err)
{
    kc_revoked_t *r = arg;
    r->loading = 0;
    if (r->stopped)
        return;
    if (err) {
        if (!r->failed_logged)
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)),
                      "cannot read the deactivated accounts: the set read last is kept");
        r->failed_logged = 1;
        return;
    }
    r->failed_logged = 0;
    kc_map_t *m = kc_map_new();
    kc_map_t *old = r->set;
    r->set = m; /* a callback may look the account up */
    for (int i = 0; i < PQntuples(res); i++) {
        long long at;
        const char *id = PQgetvalue(res, i, 0);
        if (strlen(id) > ID_MAX || parse_at(PQgetvalue(res, i, 1), &at) != 0)
            continue;
        if (put(m, old, id, at) && r->cb)
            r->cb(r->arg, id);
    }
    kc_map_destroy(old, free_val);
}

static void load(kc_revoked_t *r)
{
    if (r->loading || r->stopped || !kc_pg_connected(r->pg))
        return;
    char window[24];
    (void)kc_strlcpyf(window, sizeof(window), "%d", KC_REVOKED_WINDOW_S);
    const char *params[] = {window};
    if (kc_pg_query(r->pg,
                    "SELECT user_id, floor(extract(epoch FROM deactivated_at))::bigint "
                    "FROM users WHERE deactivated_at > now() - make_interval(secs => $1::int)",
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
    const char *sp = strchr(payload, ' ');
    char id[ID_MAX + 1];
    long long at;
    if (!sp || sp == payload || (size_t)(sp - payload) > ID_MAX || parse_at(sp + 1, &at) != 0) {
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("payload", payload)),
                  "ignoring a malformed " KC_REVOKED_CHANNEL " notification");
        return;
    }
    memcpy(id, payload, (size_t)(sp - payload));
    id[sp - payload] = '\0';
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", id)), "account deactivated");
    /* a notification comes once per deactivation: the callback hears of it even when a
     * reload found the account first */
    (void)put(r->set, r->set, id, at);
    if (r->cb)
        r->cb(r->arg, id);
}

kc_revoked_t *kc_revoked_new(uv_loop_t *loop, kc_pg_t *pg, kc_revoked_cb cb, void *arg,
                             char *err, size_t errlen)
{
    kc_revoked_t *r = kc_xcalloc(1, sizeof(*r));
    r->pg = pg;
    r->cb = cb;
    r->arg = arg;
    r->set = kc_map_new();
    if (uv_timer_init(loop, &r->timer) != 0) {
        kc_map_destroy(r->set, free_val);
        free(r);
        kc_strlcpyf(err, errlen, "cannot make the revocation timer");
        return NULL;
    }
    r->timer.data = r;
    if (kc_pg_listen(pg, KC_REVOKED_CHANNEL, on_notify, r) != 0) {
        kc_strlcpyf(err, errlen, "cannot LISTEN on " KC_REVOKED_CHANNEL);
        kc_revoked_close(r);
        return NULL;
    }
    /* soon after start (once connected), then every KC_REVOKED_RELOAD_MS */
    if (uv_timer_start(&r->timer, on_timer, 200, KC_REVOKED_RELOAD_MS) != 0) {
        kc_strlcpyf(err, errlen, "cannot start the revocation timer");
        kc_revoked_close(r);
        return NULL;
    }
    return r;
}

int kc_revoked_is(const kc_revoked_t *r, const char *user_id, long long iat)
{
    const long long *at = r ? kc_map_get(r->set, user_id, strlen(user_id)) : NULL;
    return at && iat <= *at;
}

size_t kc_revoked_size(const kc_revoked_t *r)
{
    return r ? kc_map_size(r->set) : 0;
}

static void on_closed(uv_handle_t *h)
{
    kc_revoked_t *r = h->data;
    kc_map_destroy(r->set, free_val);
    free(r);
}

void kc_revoked_close(kc_revoked_t *r)
{
    if (!r || r->stopped)
        return;
    r->stopped = 1;
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
