/* tick.c - the gateway's clock, twice a second: acks that waited too long fail, every
 * socket is swept (lapsed typing indicators, expired tokens, keepalive pings and dead
 * peers), a slice of the users' routes is refreshed so that each is within route-ttl-ms / 3,
 * and the presence of the users this gateway watches is swept every route-ttl-ms / 2.
 */
#include <stdlib.h>

#include "gw.h"
#include "kchat/util.h"

#define TICK_MS 500

typedef struct {
    gw_t *g;
    uint64_t now_ns;
    long long now_s;
} sweep_t;

/* Per socket, every tick: typing indicators that lapsed, and a token that expired (a socket
 * does not outlive the token it was opened with: the client reconnects with a fresh one). */
static void sweep_conn(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    sweep_t *s = arg;
    gw_conn_t *c = val;
    if (!kc_list_empty(&c->typing))
        gw_typing_expire(s->g, c, s->now_ns);
    if (c->token_exp + GW_JWT_LEEWAY_S < s->now_s && !c->close_code)
        gw_close(s->g, c, GW_CLOSE_TOKEN_EXPIRED, "token expired: reconnect with a fresh one");
    gw_ws_keepalive(s->g, c, s->now_ns);
}

static void on_tick(uv_timer_t *t)
{
    gw_t *g = t->data;
    uint64_t now = kc_mono_ns();
    gw_pending_expire(g);
    sweep_t sw = {g, now, kc_now_ms() / 1000};
    kc_map_each(g->conns, sweep_conn, &sw);
    /* This tick's share of the users, so that each is refreshed every route-ttl-ms / 3. */
    uint64_t ticks = (uint64_t)g->cfg.route_ttl_ms / 3 / TICK_MS;
    size_t nusers = kc_map_size(g->users);
    size_t share = ticks > 1 ? (size_t)((nusers + ticks - 1) / ticks) : nusers;
    if (!g->stopping)
        gw_routes_refresh(g, share);
    gw_delivered_flush(g);
    if (now >= g->next_presence_sweep_ns) {
        g->next_presence_sweep_ns = now + (uint64_t)g->cfg.route_ttl_ms * 1000000u / 2;
        gw_presence_sweep(g);
    }
}

void gw_tick_start(gw_t *g)
{
    if (uv_timer_init(g->app.loop, &g->tick) != 0)
        abort();
    g->tick.data = g;
    g->tick_open = 1;
    uint64_t now = kc_mono_ns();
    g->next_presence_sweep_ns = now + (uint64_t)g->cfg.route_ttl_ms * 1000000u / 2;
    if (uv_timer_start(&g->tick, on_tick, TICK_MS, TICK_MS) != 0)
        abort();
}
