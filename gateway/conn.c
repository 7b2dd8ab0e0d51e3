/* conn.c - who is connected: connections by id, users with their connections, rate
 * limits, and the route registry kchat:route:<user_id> (hash: slot -> registered-until, ms)
 * that the processor reads to fan events out to this gateway's slot.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

void gw_conns_init(gw_t *g)
{
    g->conns = kc_map_new();
    g->users = kc_map_new();
    g->next_conn_id = 1;
}

static void ring_add(gw_t *g, gw_user_t *u)
{
    if (!g->route_ring) {
        u->ring_prev = u->ring_next = u;
        g->route_ring = u;
    } else {
        u->ring_next = g->route_ring;
        u->ring_prev = g->route_ring->ring_prev;
        u->ring_prev->ring_next = u;
        g->route_ring->ring_prev = u;
    }
}

static void ring_remove(gw_t *g, gw_user_t *u)
{
    if (u->ring_next == u) {
        g->route_ring = g->route_cursor = NULL;
    } else {
        if (g->route_ring == u)
            g->route_ring = u->ring_next;
        if (g->route_cursor == u)
            g->route_cursor = u->ring_next;
        u->ring_prev->ring_next = u->ring_next;
        u->ring_next->ring_prev = u->ring_prev;
    }
    u->ring_prev = u->ring_next = NULL;
}

static void free_user(void *v)
{
    gw_user_t *u = v;
    free(u->id);
    free(u);
}

void gw_conns_destroy(gw_t *g)
{
    kc_map_destroy(g->conns, NULL); /* connections live in lws' session storage */
    kc_map_destroy(g->users, free_user);
    g->conns = g->users = NULL;
}

gw_conn_t *gw_conn_find(gw_t *g, uint64_t id)
{
    return kc_map_get(g->conns, &id, sizeof(id));
}

gw_user_t *gw_user_find(gw_t *g, const char *user_id, size_t len)
{
    return kc_map_get(g->users, user_id, len);
}

void gw_revoke(void *arg, const char *user_id)
{
    gw_t *g = arg;
    gw_user_t *u = gw_user_find(g, user_id, strlen(user_id));
    if (!u)
        return;
    for (gw_conn_t *c = u->conns; c; c = c->next_of_user)
        gw_close(g, c, GW_CLOSE_REVOKED, "account deactivated");
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", user_id), KC_INT("sockets", u->nconns)),
              "closing the sockets of a deactivated account");
}

gw_user_t *gw_conn_add(gw_t *g, gw_conn_t *c)
{
    c->id = g->next_conn_id++;
    (void)kc_map_put(g->conns, &c->id, sizeof(c->id), c);
    g->nconns++;
    kc_gauge_set(g->m.connections, (double)g->nconns);
    size_t len = strlen(c->sub);
    gw_user_t *u = kc_map_get(g->users, c->sub, len);
    if (!u) {
        u = kc_xcalloc(1, sizeof(*u));
        u->id = kc_xstrdup(c->sub);
        (void)kc_map_put(g->users, u->id, len, u);
        ring_add(g, u);
    }
    c->user = u;
    c->next_of_user = u->conns;
    u->conns = c;
    u->nconns++;
    kc_log_kv(KC_LOG_DEBUG, KC_FIELDS(KC_STR("user_id", c->sub), KC_INT("conn", c->id)),
              "connected");
    return u;
}

gw_user_t *gw_conn_remove(gw_t *g, gw_conn_t *c)
{
    (void)kc_map_remove(g->conns, &c->id, sizeof(c->id));
    g->nconns--;
    kc_gauge_set(g->m.connections, (double)g->nconns);
    gw_user_t *u = c->user;
    c->user = NULL;
    if (!u)
        return NULL;
    for (gw_conn_t **pp = &u->conns; *pp; pp = &(*pp)->next_of_user) {
        if (*pp == c) {
            *pp = c->next_of_user;
            break;
        }
    }
    c->next_of_user = NULL;
    u->nconns--;
    return u;
}

void gw_user_drop(gw_t *g, gw_user_t *u)
{
    ring_remove(g, u);
    (void)kc_map_remove(g->users, u->id, strlen(u->id));
    free_user(u);
}

int gw_bucket_take(gw_bucket_t *b, double rate, double burst)
{
    uint64_t now = kc_mono_ns();
    if (b->at_ns == 0) {
        b->tokens = burst;
    } else {
        b->tokens += (double)(now - b->at_ns) / 1e9 * rate;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->at_ns = now;
    if (b->tokens < 1.0)
        return -1;
    b->tokens -= 1.0;
    return 0;
}

int gw_rate_take(gw_t *g, gw_conn_t *c)
{
    double rc = (double)g->cfg.rate_conn, ru = (double)g->cfg.rate_user;
    /* Peek at the user's bucket first, so a refused message costs the connection nothing. */
    if (gw_bucket_take(&c->user->rate, ru, ru * 2) != 0)
        return -1;
    if (gw_bucket_take(&c->rate, rc, rc * 2) != 0) {
        c->user->rate.tokens += 1.0;
        return -1;
    }
    return 0;
}

/* ---- routes ---- */

void gw_redis_error(gw_t *g, const char *what, const char *err)
{
    kc_counter_inc(g->m.pubsub_errors);
    long long suppressed;
    if (kc_ratelog_ok(&g->redis_log, kc_mono_ns(), &suppressed))
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err), KC_INT("suppressed", suppressed)),
                  "%s", what);
}

static void on_route_reply(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    if (err)
        gw_redis_error(arg, "route refresh failed", err);
}

void gw_route_register(gw_t *g, gw_user_t *u)
{
    char key[GW_ID_MAX + 32], slot[16], until[32], ttl[32], now[32];
    int64_t t = kc_now_ms();
    kc_strlcpyf(key, sizeof(key), KC_REDIS_ROUTE "%s", u->id);
    kc_strlcpyf(slot, sizeof(slot), "%lld", g->cfg.slot);
    kc_strlcpyf(until, sizeof(until), "%lld", (long long)(t + g->cfg.route_ttl_ms));
    /* The key outlives its freshest field a little, then goes by itself. */
    kc_strlcpyf(ttl, sizeof(ttl), "%lld", g->cfg.route_ttl_ms * 2);
    kc_strlcpyf(now, sizeof(now), "%lld", (long long)t);
    const char *hset[] = {"HSET", key, slot, until};
    const char *pexp[] = {"PEXPIRE", key, ttl};
    char lkey[GW_ID_MAX + 32];
    kc_strlcpyf(lkey, sizeof(lkey), KC_REDIS_LASTSEEN "%s", u->id);
    const char *seen[] = {"SET", lkey, now};
    if (kc_redis_command(g->redis, on_route_reply, g, 4, hset, NULL) != 0 ||
        kc_redis_command(g->redis, on_route_reply, g, 3, pexp, NULL) != 0 ||
        kc_redis_command(g->redis, on_route_reply, g, 3, seen, NULL) != 0)
        kc_counter_inc(g->m.pubsub_errors);
}

void gw_routes_refresh(gw_t *g, size_t n)
{
    for (size_t i = 0; i < n && g->route_ring; i++) {
        if (!g->route_cursor)
            g->route_cursor = g->route_ring;
        gw_route_register(g, g->route_cursor);
        g->route_cursor = g->route_cursor->ring_next;
    }
}
