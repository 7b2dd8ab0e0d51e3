/* presence.c - presence, typing indicators and delivery receipts: ephemeral state that
 * never goes on the event log. All of it lives in Redis, so every gateway sees the same:
 *
 *   kchat:route:<user_id>      hash slot -> registered-until (ms): the route registry, which
 *                              is also what "online" means (some field in the future)
 *   kchat:lastseen:<user_id>   string: ms of the user's last heartbeat or disconnect
 *   kchat:presence:<user_id>   pub/sub channel: {"user_id","status","last_seen"} when the
 *                              user comes online on the first gateway or leaves the last
 *   kchat:gw:<slot>            pub/sub channel of one gateway slot: typing and receipts
 *                              for users connected there ({"k":"typing"|"delivery",...},
 *                              and {"k":"deliveries","r":[...]}: the receipts one gateway
 *                              gathered for the slot in one turn of its deliveries)
 *
 * Each step that reads and writes several keys is one Lua script, so it is atomic and one
 * round trip. A gateway that crashes publishes nothing: its users' route fields lapse after
 * route-ttl-ms, and the gateways whose clients watch them notice in their periodic sweep
 * and send the offline update themselves.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define MAX_TYPING 32

static const char ONLINE_LUA[] =
    "local was = 0\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #h, 2 do\n"
    "  if h[i] ~= ARGV[1] and tonumber(h[i+1]) > tonumber(ARGV[3]) then was = 1 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('SET', KEYS[2], ARGV[3])\n"
    "if was == 0 then\n"
    "  redis.call('PUBLISH', '" KC_REDIS_PRESENCE "' .. ARGV[5], cjson.encode({user_id = ARGV[5],\n"
    "    status = 'online', last_seen = tonumber(ARGV[3])}))\n"
    "end\n"
    "return was\n";

static const char OFFLINE_LUA[] =
    "redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #h, 2 do\n"
    "  if tonumber(h[i+1]) > tonumber(ARGV[2]) then return 0 end\n"
    "end\n"
    "redis.call('PUBLISH', '" KC_REDIS_PRESENCE "' .. ARGV[3], cjson.encode({user_id = ARGV[3],\n"
    "  status = 'offline', last_seen = tonumber(ARGV[2])}))\n"
    "return 1\n";

static const char STATE_LUA[] = "local online = 0\n"
                                "local h = redis.call('HGETALL', KEYS[1])\n"
                                "for i = 1, #h, 2 do\n"
                                "  if tonumber(h[i+1]) > tonumber(ARGV[1]) then online = 1 end\n"
                                "end\n"
                                "local seen = redis.call('GET', KEYS[2])\n"
                                "return {online, seen and tonumber(seen) or -1}\n";

/* KEYS[1] kchat:rm:gen; ARGV convo, user, now, state, expires_in_ms. Returns the slots
 * published to, -1 when the user is not a member, -2 when there is no read model. */
static const char TYPING_LUA[] =
    "local gen = redis.call('GET', KEYS[1])\n"
    "if not gen then return -2 end\n"
    "local mk = '" KC_REDIS_RM "' .. gen .. ':" KC_RM_MEMBERS ":' .. ARGV[1]\n"
    "if redis.call('SISMEMBER', mk, ARGV[2]) == 0 then return -1 end\n"
    "local now = tonumber(ARGV[3])\n"
    "local slots = {}\n"
    "for _, m in ipairs(redis.call('SMEMBERS', mk)) do\n"
    "  if m ~= ARGV[2] then\n"
    "    local h = redis.call('HGETALL', '" KC_REDIS_ROUTE "' .. m)\n"
    "    for i = 1, #h, 2 do\n"
    "      if tonumber(h[i+1]) > now then\n"
    "        slots[h[i]] = slots[h[i]] or {}\n"
    "        table.insert(slots[h[i]], m)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local n = 0\n"
    "for s, to in pairs(slots) do\n"
    "  redis.call('PUBLISH', '" KC_REDIS_GW "' .. s, cjson.encode({k = 'typing', convo_id = ARGV[1],\n"
    "    user_id = ARGV[2], state = ARGV[4], expires_in_ms = tonumber(ARGV[5]), to = to}))\n"
    "  n = n + 1\n"
    "end\n"
    "return n\n";

/* KEYS[1] kchat:route:<sender>; ARGV now, payload. */
static const char RECEIPT_LUA[] = "local h = redis.call('HGETALL', KEYS[1])\n"
                                  "local n = 0\n"
                                  "for i = 1, #h, 2 do\n"
                                  "  if tonumber(h[i+1]) > tonumber(ARGV[1]) then\n"
                                  "    redis.call('PUBLISH', '" KC_REDIS_GW "' .. h[i], ARGV[2])\n"
                                  "    n = n + 1\n"
                                  "  end\n"
                                  "end\n"
                                  "return n\n";

/* KEYS[1] kchat:rm:gen; ARGV[1] the watcher, ARGV[2..] user ids. For each id, 1 when the
 * watcher may see that user's presence (themself, or someone they share a conversation
 * with in the read model), else 0; nothing is visible without a read model. */
static const char VISIBLE_LUA[] =
    "local gen = redis.call('GET', KEYS[1])\n"
    "local out = {}\n"
    "local pre = '" KC_REDIS_RM "' .. (gen or '') .. ':" KC_RM_CONVOS ":'\n"
    "for i = 2, #ARGV do\n"
    "  local ok = 0\n"
    "  if ARGV[i] == ARGV[1] then ok = 1\n"
    "  elseif gen and redis.call('ZINTERCARD', 2, pre .. ARGV[1], pre .. ARGV[i],\n"
    "                           'LIMIT', 1) > 0 then ok = 1 end\n"
    "  out[#out + 1] = ok\n"
    "end\n"
    "return out\n";

struct gw_watch {
    char *user_id;
    uint64_t *conns;
    size_t n, cap;
    int status; /* -1 unknown, 0 offline, 1 online */
    long long last_seen;
};

static void free_watch(void *v)
{
    gw_watch_t *w = v;
    free(w->user_id);
    free(w->conns);
    free(w);
}

void gw_presence_init(gw_t *g)
{
    g->watches = kc_map_new();
}

void gw_presence_destroy(gw_t *g)
{
    kc_map_destroy(g->watches, free_watch);
    g->watches = NULL;
    for (int i = 0; i < KC_CHAT_MAX_SLOTS; i++)
        kc_buf_free(&g->receipts[i]);
}

static void on_script(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    if (err)
        gw_redis_error(arg, "presence script failed", err);
}

static int eval(gw_t *g, kc_redis_cb cb, void *arg, const char *script, int nkeys,
                const char **keys, int nargs, const char **args)
{
    const char *few[16];
    const char **argv = 3 + nkeys + nargs <= 16
                            ? few
                            : kc_xmalloc((size_t)(3 + nkeys + nargs) * sizeof(char *));
    char nk[8];
    int argc = 0;
    kc_strlcpyf(nk, sizeof(nk), "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    int rc = kc_redis_command(g->redis, cb, arg, argc, argv, NULL);
    if (rc != 0)
        kc_counter_inc(g->m.pubsub_errors);
    if (argv != few)
        free(argv);
    return rc;
}

/* ---- online / offline ---- */

void gw_presence_online(gw_t *g, gw_user_t *u)
{
    char route[GW_ID_MAX + 32], seen[GW_ID_MAX + 32], slot[16], until[32], now[32], ttl[32];
    int64_t t = kc_now_ms();
    kc_strlcpyf(route, sizeof(route), KC_REDIS_ROUTE "%s", u->id);
    kc_strlcpyf(seen, sizeof(seen), KC_REDIS_LASTSEEN "%s", u->id);
    kc_strlcpyf(slot, sizeof(slot), "%lld", g->cfg.slot);
    kc_strlcpyf(until, sizeof(until), "%lld", (long long)(t + g->cfg.route_ttl_ms));
    kc_strlcpyf(now, sizeof(now), "%lld", (long long)t);
    kc_strlcpyf(ttl, sizeof(ttl), "%lld", g->cfg.route_ttl_ms * 2);
    const char *keys[] = {route, seen};
    const char *args[] = {slot, until, now, ttl, u->id};
    if (eval(g, on_script, g, ONLINE_LUA, 2, keys, 5, args) != 0)
        gw_redis_error(g, "cannot register a route (Redis down?): the next refresh will",
                       "not connected");
}

void gw_presence_offline(gw_t *g, gw_user_t *u)
{
    char route[GW_ID_MAX + 32], seen[GW_ID_MAX + 32], slot[16], now[32];
    kc_strlcpyf(route, sizeof(route), KC_REDIS_ROUTE "%s", u->id);
    kc_strlcpyf(seen, sizeof(seen), KC_REDIS_LASTSEEN "%s", u->id);
    kc_strlcpyf(slot, sizeof(slot), "%lld", g->cfg.slot);
    kc_strlcpyf(now, sizeof(now), "%lld", (long long)kc_now_ms());
    const char *keys[] = {route, seen};
    const char *args[] = {slot, now, u->id};
    (void)eval(g, on_script, g, OFFLINE_LUA, 2, keys, 3, args);
}

/* ---- presence.subscribe ---- */

static void send_update(gw_t *g, gw_watch_t *w, uint64_t only_conn)
{
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"presence.update\"");
    gw_json_kv(&b, 1, "user_id", w->user_id, strlen(w->user_id));
    kc_buf_printf(&b, ",\"status\":\"%s\"", w->status == 1 ? "online" : "offline");
    if (w->last_seen >= 0)
        kc_buf_printf(&b, ",\"last_seen\":%lld}", w->last_seen);
    else
        kc_buf_puts(&b, ",\"last_seen\":null}");
    gw_frame_t *f = gw_frame_from_buf(&b);
    kc_buf_free(&b);
    for (size_t i = 0; i < w->n; i++) {
        if (only_conn && w->conns[i] != only_conn)
            continue;
        gw_conn_t *c = gw_conn_find(g, w->conns[i]);
        if (c)
            (void)gw_send(g, c, f, "presence.update");
    }
    gw_frame_unref(f);
}

typedef struct {
    gw_t *g;
    uint64_t conn; /* 0: a sweep (tell every watcher of a change) */
    char user_id[];
} state_q_t;

static void on_state(void *arg, const redisReply *reply, const char *err)
{
    state_q_t *q = arg;
    gw_t *g = q->g;
    gw_watch_t *w = g->watches ? kc_map_get(g->watches, q->user_id, strlen(q->user_id)) : NULL;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        if (err)
            kc_counter_inc(g->m.pubsub_errors);
        free(q);
        return;
    }
    if (w) {
        int status = (int)reply->element[0]->integer;
        long long seen = reply->element[1]->integer;
        int changed = w->status != status;
        w->status = status;
        w->last_seen = status == 1 ? kc_now_ms() : seen;
        if (q->conn)
            send_update(g, w, q->conn);
        else if (changed)
            send_update(g, w, 0);
    }
    free(q);
}

static void query_state(gw_t *g, const char *user_id, uint64_t conn)
{
    char route[GW_ID_MAX + 32], seen[GW_ID_MAX + 32], now[32];
    kc_strlcpyf(route, sizeof(route), KC_REDIS_ROUTE "%s", user_id);
    kc_strlcpyf(seen, sizeof(seen), KC_REDIS_LASTSEEN "%s", user_id);
    kc_strlcpyf(now, sizeof(now), "%lld", (long long)kc_now_ms());
    size_t n = strlen(user_id);
    state_q_t *q = kc_xmalloc(sizeof(*q) + n + 1);
    q->g = g;
    q->conn = conn;
    memcpy(q->user_id, user_id, n + 1);
    const char *keys[] = {route, seen};
    const char *args[] = {now};
    if (eval(g, on_state, q, STATE_LUA, 2, keys, 1, args) != 0)
        free(q);
}

static void watch(gw_t *g, gw_conn_t *c, char **user_ids, size_t n)
{
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = user_ids[i];
        size_t len = strlen(id);
        int dup = 0;
        for (size_t k = 0; k < c->nwatching && !dup; k++)
            dup = strcmp(c->watching[k], id) == 0;
        if (dup) {
            query_state(g, id, c->id); /* asked again: answer again */
            continue;
        }
        if (c->nwatching >= GW_MAX_SUBSCRIBE) {
            gw_send_error(g, c, "too_large", "a connection watches at most 1000 users",
                          "\"in_reply_to\":\"presence.subscribe\"");
            break;
        }
        gw_watch_t *w = kc_map_get(g->watches, id, len);
        if (!w) {
            w = kc_xcalloc(1, sizeof(*w));
            w->user_id = kc_xstrdup(id);
            w->status = -1;
            w->last_seen = -1;
            (void)kc_map_put(g->watches, w->user_id, len, w);
            char ch[GW_ID_MAX + 32];
            kc_strlcpyf(ch, sizeof(ch), KC_REDIS_PRESENCE "%s", id);
            if (kc_redis_sub_add(g->sub, ch) != 0)
                kc_counter_inc(g->m.pubsub_errors);
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4;
            w->conns = kc_xrealloc(w->conns, w->cap * sizeof(uint64_t));
        }
        w->conns[w->n++] = c->id;
        c->watching = kc_xrealloc(c->watching, (c->nwatching + 1) * sizeof(char *));
        c->watching[c->nwatching++] = kc_xstrdup(id);
        added++;
        query_state(g, id, c->id);
    }
    (void)added;
}

/* A presence.subscribe waiting for the visibility check: the ids copied into one block. */
typedef struct {
    gw_t *g;
    uint64_t conn;
    size_t n;
    char *ids[];
} visible_q_t;

static void on_visible(void *arg, const redisReply *reply, const char *err)
{
    visible_q_t *q = arg;
    gw_t *g = q->g;
    gw_conn_t *c = g->conns ? gw_conn_find(g, q->conn) : NULL;
    const char *extra = "\"in_reply_to\":\"presence.subscribe\"";
    if (!c)
        goto out;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != q->n) {
        if (err)
            gw_redis_error(g, "presence visibility check failed", err);
        gw_send_error(g, c, "unavailable", "presence is unavailable: subscribe again", extra);
        goto out;
    }
    size_t k = 0;
    kc_buf_t b = {0};
    for (size_t i = 0; i < q->n; i++) {
        const redisReply *e = reply->element[i];
        if (e->type == REDIS_REPLY_INTEGER && e->integer == 1) {
            q->ids[k++] = q->ids[i];
            continue;
        }
        kc_counter_inc(g->m.presence_refused);
        kc_buf_puts(&b, b.len ? ",\"" : ",\"user_ids\":[\"");
        kc_buf_json_str(&b, q->ids[i], strlen(q->ids[i]));
        kc_buf_putc(&b, '"');
    }
    if (b.len) {
        /* Who exists is not told: a stranger and a user that does not exist look the same. */
        kc_buf_putc(&b, ']');
        kc_buf_t e = {0};
        kc_buf_puts(&e, extra);
        kc_buf_append(&e, b.data, b.len);
        kc_buf_putc(&e, '\0');
        gw_send_error(g, c, "not_visible",
                      "presence is visible only to people who share a conversation", e.data);
        kc_buf_free(&e);
    }
    kc_buf_free(&b);
    watch(g, c, q->ids, k);
out:
    free(q);
}

void gw_presence_subscribe(gw_t *g, gw_conn_t *c, char **user_ids, size_t n)
{
    if (n == 0)
        return;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(user_ids[i]) + 1;
    visible_q_t *q = kc_xmalloc(sizeof(*q) + n * sizeof(char *) + bytes);
    q->g = g;
    q->conn = c->id;
    q->n = n;
    char *p = (char *)&q->ids[n];
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(user_ids[i]) + 1;
        memcpy(p, user_ids[i], len);
        q->ids[i] = p;
        p += len;
    }
    /* ARGV: the watcher, then the ids */
    const char **args = kc_xmalloc((n + 1) * sizeof(char *));
    args[0] = c->sub;
    memcpy(args + 1, q->ids, n * sizeof(char *));
    const char *keys[] = {KC_REDIS_RM_GEN};
    if (eval(g, on_visible, q, VISIBLE_LUA, 1, keys, (int)n + 1, args) != 0) {
        gw_send_error(g, c, "unavailable", "presence is unavailable: subscribe again",
                      "\"in_reply_to\":\"presence.subscribe\"");
        free(q);
    }
    free(args);
}

void gw_presence_unwatch_all(gw_t *g, gw_conn_t *c)
{
    for (size_t i = 0; i < c->nwatching; i++) {
        const char *id = c->watching[i];
        size_t len = strlen(id);
        gw_watch_t *w = kc_map_get(g->watches, id, len);
        if (w) {
            for (size_t k = 0; k < w->n; k++)
                if (w->conns[k] == c->id) {
                    w->conns[k] = w->conns[--w->n];
                    break;
                }
            if (w->n == 0) {
                char ch[GW_ID_MAX + 32];
                kc_strlcpyf(ch, sizeof(ch), KC_REDIS_PRESENCE "%s", id);
                if (g->sub)
                    (void)kc_redis_sub_remove(g->sub, ch);
                (void)kc_map_remove(g->watches, id, len);
                free_watch(w);
            }
        }
        free(c->watching[i]);
    }
    free(c->watching);
    c->watching = NULL;
    c->nwatching = 0;
}

static void sweep_one(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    gw_watch_t *w = val;
    query_state(arg, w->user_id, 0);
}

void gw_presence_sweep(gw_t *g)
{
    if (kc_redis_connected(g->redis))
        kc_map_each(g->watches, sweep_one, g);
}

/* ---- typing ---- */

static gw_typing_t *typing_find(gw_conn_t *c, const char *convo_id)
{
    KC_LIST_FOREACH(n, &c->typing)
    {
        gw_typing_t *t = KC_LIST_ENTRY(n, gw_typing_t, link);
        if (strcmp(t->convo_id, convo_id) == 0)
            return t;
    }
    return NULL;
}

static void on_typing_reply(void *arg, const redisReply *reply, const char *err)
{
    state_q_t *q = arg; /* user_id holds the convo id here */
    gw_t *g = q->g;
    gw_conn_t *c = gw_conn_find(g, q->conn);
    if (err) {
        kc_counter_inc(g->m.pubsub_errors);
    } else if (c && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer < 0) {
        char extra[GW_ID_MAX + 64];
        kc_strlcpyf(extra, sizeof(extra), "\"in_reply_to\":\"typing\",\"convo_id\":\"%s\"",
                    q->user_id);
        if (reply->integer == -1)
            gw_send_error(g, c, "not_member", "you are not a member of this conversation", extra);
        else
            gw_send_error(g, c, "unavailable", "conversation membership is not known yet", extra);
        /* forget the indicator: it reached nobody */
        gw_typing_t *t = typing_find(c, q->user_id);
        if (t) {
            kc_list_remove(&c->typing, &t->link);
            free(t);
        }
    }
    free(q);
}

static void publish_typing(gw_t *g, gw_conn_t *c, const char *convo_id, int start, int want_reply)
{
    char now[32], ttl[32];
    kc_strlcpyf(now, sizeof(now), "%lld", (long long)kc_now_ms());
    kc_strlcpyf(ttl, sizeof(ttl), "%lld", g->cfg.typing_ttl_ms);
    const char *keys[] = {KC_REDIS_RM_GEN};
    const char *args[] = {convo_id, c->sub, now, start ? "start" : "stop", ttl};
    if (!want_reply) {
        (void)eval(g, on_script, g, TYPING_LUA, 1, keys, 5, args);
        return;
    }
    size_t n = strlen(convo_id);
    state_q_t *q = kc_xmalloc(sizeof(*q) + n + 1);
    q->g = g;
    q->conn = c->id;
    memcpy(q->user_id, convo_id, n + 1);
    if (eval(g, on_typing_reply, q, TYPING_LUA, 1, keys, 5, args) != 0) {
        free(q);
        gw_send_error(g, c, "unavailable", "typing indicators are unavailable (Redis)",
                      "\"in_reply_to\":\"typing\"");
    }
}

void gw_typing(gw_t *g, gw_conn_t *c, const char *convo_id, int start)
{
    double rate = (double)g->cfg.typing_rate;
    if (gw_bucket_take(&c->typing_rate, rate, rate * 2) != 0) {
        gw_send_error(g, c, "rate_limited", "too many typing frames: slow down",
                      start ? "\"in_reply_to\":\"typing.start\""
                            : "\"in_reply_to\":\"typing.stop\"");
        return;
    }
    uint64_t now = kc_mono_ns(), ttl = (uint64_t)g->cfg.typing_ttl_ms * 1000000u;
    gw_typing_t *t = typing_find(c, convo_id);
    if (!start) {
        if (!t)
            return; /* not typing there: nothing to stop */
        kc_list_remove(&c->typing, &t->link);
        free(t);
        publish_typing(g, c, convo_id, 0, 0);
        return;
    }
    if (t) {
        t->expires_ns = now + ttl;
        /* Receivers expire an indicator after expires_in_ms: refresh it at half-life. */
        if (now - t->published_ns < ttl / 2)
            return;
        t->published_ns = now;
        publish_typing(g, c, convo_id, 1, 0);
        return;
    }
    if (c->typing.len >= MAX_TYPING) {
        gw_send_error(g, c, "too_large", "typing in too many conversations at once",
                      "\"in_reply_to\":\"typing.start\"");
        return;
    }
    size_t len = strlen(convo_id);
    t = kc_xmalloc(sizeof(*t) + len + 1);
    memcpy(t->convo_id, convo_id, len + 1);
    t->expires_ns = now + ttl;
    t->published_ns = now;
    kc_list_push_front(&c->typing, &t->link);
    publish_typing(g, c, convo_id, 1, 1);
}

void gw_typing_stop_all(gw_t *g, gw_conn_t *c)
{
    for (kc_list_node_t *n; (n = kc_list_pop_front(&c->typing));) {
        gw_typing_t *t = KC_LIST_ENTRY(n, gw_typing_t, link);
        publish_typing(g, c, t->convo_id, 0, 0);
        free(t);
    }
}

void gw_typing_expire(gw_t *g, gw_conn_t *c, uint64_t now_ns)
{
    kc_list_node_t *next;
    KC_LIST_FOREACH_SAFE(n, next, &c->typing)
    {
        gw_typing_t *t = KC_LIST_ENTRY(n, gw_typing_t, link);
        if (now_ns >= t->expires_ns) {
            kc_list_remove(&c->typing, n);
            publish_typing(g, c, t->convo_id, 0, 0);
            free(t);
        }
    }
}

/* ---- delivery receipts ---- */

/* A message.delivery frame to every connection of `to` here. */
static void receipt_frame(gw_t *g, const char *to, size_t tolen, const char *convo,
                          size_t convolen, long long seq, const char *user, size_t userlen,
                          long long at)
{
    gw_user_t *u = gw_user_find(g, to, tolen);
    if (!u)
        return;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"message.delivery\"");
    gw_json_kv(&b, 1, "convo_id", convo, convolen);
    kc_buf_printf(&b, ",\"seq_no\":%lld", seq);
    gw_json_kv(&b, 1, "user_id", user, userlen);
    kc_buf_printf(&b, ",\"delivered_at\":%lld}", at);
    gw_frame_t *f = gw_frame_from_buf(&b);
    kc_buf_free(&b);
    for (gw_conn_t *c = u->conns; c; c = c->next_of_user)
        (void)gw_send(g, c, f, "message.delivery");
    gw_frame_unref(f);
}

void gw_receipt_delivered(gw_t *g, const char *sender, const char *convo_id, int64_t seq_no,
                          const char *recipient, const int32_t *sender_slots, size_t nslots)
{
    int64_t t = kc_now_ms();
    if (!nslots) {
        /* The delivery did not say where the sender is: ask the route registry. */
        kc_buf_t b = {0};
        char route[GW_ID_MAX + 32], now[32];
        kc_buf_puts(&b, "{\"k\":\"delivery\"");
        gw_json_kv(&b, 1, "to", sender, strlen(sender));
        gw_json_kv(&b, 1, "convo_id", convo_id, strlen(convo_id));
        kc_buf_printf(&b, ",\"seq_no\":%lld", (long long)seq_no);
        gw_json_kv(&b, 1, "user_id", recipient, strlen(recipient));
        kc_buf_printf(&b, ",\"at\":%lld}", (long long)t);
        kc_strlcpyf(route, sizeof(route), KC_REDIS_ROUTE "%s", sender);
        kc_strlcpyf(now, sizeof(now), "%lld", (long long)t);
        const char *keys[] = {route};
        const char *args[] = {now, b.data};
        (void)eval(g, on_script, g, RECEIPT_LUA, 1, keys, 2, args);
        kc_buf_free(&b);
        return;
    }
    for (size_t i = 0; i < nslots; i++) {
        int32_t slot = sender_slots[i];
        if (slot == (int32_t)g->cfg.slot) {
            receipt_frame(g, sender, strlen(sender), convo_id, strlen(convo_id),
                          (long long)seq_no, recipient, strlen(recipient), (long long)t);
            continue;
        }
        if (slot < 0 || slot >= KC_CHAT_MAX_SLOTS)
            continue;
        /* gathered per slot, published by gw_receipts_flush at the end of the turn */
        kc_buf_t *b = &g->receipts[slot];
        kc_buf_puts(b, b->len ? ",{" : "{\"k\":\"deliveries\",\"r\":[{");
        gw_json_kv(b, 0, "to", sender, strlen(sender));
        gw_json_kv(b, 1, "convo_id", convo_id, strlen(convo_id));
        kc_buf_printf(b, ",\"seq_no\":%lld", (long long)seq_no);
        gw_json_kv(b, 1, "user_id", recipient, strlen(recipient));
        kc_buf_printf(b, ",\"at\":%lld}", (long long)t);
    }
}

static void on_published(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    if (err)
        gw_redis_error(arg, "cannot publish delivery receipts", err);
}

void gw_receipts_flush(gw_t *g)
{
    for (int32_t s = 0; s < KC_CHAT_MAX_SLOTS; s++) {
        kc_buf_t *b = &g->receipts[s];
        if (!b->len)
            continue;
        kc_buf_puts(b, "]}");
        char ch[32];
        kc_strlcpyf(ch, sizeof(ch), KC_REDIS_GW "%d", (int)s);
        const char *argv[] = {"PUBLISH", ch, b->data};
        size_t lens[] = {7, strlen(ch), b->len};
        if (kc_redis_command(g->redis, on_published, g, 3, argv, lens) != 0)
            kc_counter_inc(g->m.pubsub_errors);
        kc_buf_reset(b);
    }
}

/* ---- pub/sub in ---- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void to_user(gw_t *g, const char *user, gw_frame_t *f, const char *type)
{
    gw_user_t *u = gw_user_find(g, user, strlen(user));
    for (gw_conn_t *c = u ? u->conns : NULL; c; c = c->next_of_user)
        (void)gw_send(g, c, f, type);
}

/* {"k":"deliveries","r":[{to, convo_id, seq_no, user_id, at}, ...]}: a turn's receipts of
 * one gateway for the senders on this slot. */
static void on_receipts(gw_t *g, const cJSON *o)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "r"), *it;
    cJSON_ArrayForEach(it, r)
    {
        const char *dest = jstr(it, "to"), *convo = jstr(it, "convo_id"),
                   *user = jstr(it, "user_id");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(it, "seq_no");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(it, "at");
        if (!dest || !convo || !user || !cJSON_IsNumber(seq) || !cJSON_IsNumber(at))
            continue;
        receipt_frame(g, dest, strlen(dest), convo, strlen(convo), (long long)seq->valuedouble,
                      user, strlen(user), (long long)at->valuedouble);
    }
}

static void on_slot_msg(gw_t *g, const cJSON *o)
{
    const char *k = jstr(o, "k"), *convo = jstr(o, "convo_id"), *user = jstr(o, "user_id");
    if (k && strcmp(k, "deliveries") == 0) {
        on_receipts(g, o);
        return;
    }
    if (!k || !convo || !user)
        return;
    kc_buf_t b = {0};
    if (strcmp(k, "typing") == 0) {
        const char *state = jstr(o, "state");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(o, "expires_in_ms");
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(o, "to");
        if (!state || !cJSON_IsNumber(exp) || !cJSON_IsArray(to))
            return;
        kc_buf_puts(&b, "{\"type\":\"typing\"");
        gw_json_kv(&b, 1, "convo_id", convo, strlen(convo));
        gw_json_kv(&b, 1, "user_id", user, strlen(user));
        gw_json_kv(&b, 1, "state", state, strlen(state));
        kc_buf_printf(&b, ",\"expires_in_ms\":%lld}", (long long)exp->valuedouble);
        gw_frame_t *f = gw_frame_from_buf(&b);
        kc_buf_free(&b);
        const cJSON *it;
        cJSON_ArrayForEach(it, to)
        {
            if (cJSON_IsString(it))
                to_user(g, it->valuestring, f, "typing");
        }
        gw_frame_unref(f);
    } else if (strcmp(k, "delivery") == 0) {
        const char *dest = jstr(o, "to");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq_no");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
        if (!dest || !cJSON_IsNumber(seq) || !cJSON_IsNumber(at))
            return;
        receipt_frame(g, dest, strlen(dest), convo, strlen(convo), (long long)seq->valuedouble,
                      user, strlen(user), (long long)at->valuedouble);
    }
    kc_buf_free(&b);
}

static void on_presence_msg(gw_t *g, const cJSON *o)
{
    const char *user = jstr(o, "user_id"), *status = jstr(o, "status");
    const cJSON *seen = cJSON_GetObjectItemCaseSensitive(o, "last_seen");
    if (!user || !status)
        return;
    gw_watch_t *w = kc_map_get(g->watches, user, strlen(user));
    if (!w)
        return;
    w->status = strcmp(status, "online") == 0;
    w->last_seen = cJSON_IsNumber(seen) ? (long long)seen->valuedouble : -1;
    send_update(g, w, 0);
}

void gw_on_pubsub(void *arg, const char *channel, size_t chlen, const char *msg, size_t len)
{
    gw_t *g = arg;
    kc_counter_inc(g->m.pubsub_in);
    cJSON *o = cJSON_ParseWithLength(msg, len);
    if (!o || !cJSON_IsObject(o)) {
        kc_counter_inc(g->m.pubsub_errors);
        cJSON_Delete(o);
        return;
    }
    if (chlen == strlen(g->slot_channel) && memcmp(channel, g->slot_channel, chlen) == 0)
        on_slot_msg(g, o);
    else if (chlen > sizeof(KC_REDIS_PRESENCE) - 1 &&
             memcmp(channel, KC_REDIS_PRESENCE, sizeof(KC_REDIS_PRESENCE) - 1) == 0)
        on_presence_msg(g, o);
    cJSON_Delete(o);
}
