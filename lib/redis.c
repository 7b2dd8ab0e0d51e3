/* redis.c - hiredis async on the libuv loop, with the timeouts hiredis 0.14 lacks. */
#include "kchat/redis.h"

#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/reconnect.h"
#include "kchat/util.h"

#define PING_INTERVAL_MS 2000

/* ---- what the command connection and the subscriber share: a connection that makes itself
 * again (kchat/reconnect.h), ticked by one timer ---- */

typedef struct link link_t;
struct link {
    uv_loop_t *loop;
    char *host;
    int port;
    char *username; /* NULL: the default user */
    char *password; /* NULL: no AUTH */
    char auth_error[160]; /* Redis' refusal of AUTH, the reason of the disconnect it causes */
    redisAsyncContext *ac;
    kc_reconn_t rc;
    uv_timer_t timer;
    const char *drop_reason; /* while the context is freed: the error its callbacks get */
    int keepalive;           /* TCP keepalive on every connection (the subscriber's) */
    void *owner;
    void (*up)(link_t *l);                 /* connected */
    void (*tick)(link_t *l, uint64_t now); /* every tick while connected */
    void (*closed)(link_t *l);             /* closed and its timer too: free the owner */
};

static void link_lost(link_t *l, const char *why)
{
    (void)kc_reconn_lost(&l->rc, kc_mono_ns(), why);
}

/* Frees the context from outside hiredis' callbacks: pending callbacks get NULL, with why. */
static void free_context(link_t *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    if (ac) {
        l->drop_reason = why;
        redisAsyncFree(ac);
        l->drop_reason = NULL;
    }
}

static void link_drop(link_t *l, const char *why)
{
    link_lost(l, why);
    free_context(l, why);
}

/* AUTH's answer: OK makes the link ready; a refusal closes the connection with Redis' words
 * (WRONGPASS, NOAUTH...) as the reason, and the reconnect core tries again with backoff. */
static void on_auth(redisAsyncContext *c, void *reply, void *privdata)
{
    link_t *l = privdata;
    const redisReply *r = reply;
    if (!r)
        return; /* the context is being freed; the disconnect says why */
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0) {
        kc_reconn_ready(&l->rc);
        l->up(l);
        return;
    }
    kc_strlcpyf(l->auth_error, sizeof(l->auth_error), "AUTH refused: %.120s",
                r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ? r->str
                                                                              : "unexpected reply");
    redisAsyncDisconnect(c);
}

static void on_connect(const redisAsyncContext *c, int status)
{
    link_t *l = c->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (l->ac == c)
            l->ac = NULL;
        link_lost(l, c->errstr[0] ? c->errstr : "connect failed");
        return;
    }
    if (!l->password) {
        kc_reconn_ready(&l->rc);
        l->up(l);
        return;
    }
    /* Nothing else is sent before Redis has accepted the login: the link is ready only then. */
    const char *argv[3] = {"AUTH"};
    int argc = 1;
    if (l->username)
        argv[argc++] = l->username;
    argv[argc++] = l->password;
    if (redisAsyncCommandArgv(l->ac, on_auth, l, argc, argv, NULL) != REDIS_OK) {
        kc_strlcpyf(l->auth_error, sizeof(l->auth_error), "cannot send AUTH");
        redisAsyncDisconnect(l->ac);
    }
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
    link_t *l = c->data;
    if (l->ac == c)
        l->ac = NULL;
    if (l->rc.state == KC_RECONN_READY || l->rc.state == KC_RECONN_CONNECTING)
        link_lost(l, l->auth_error[0]       ? l->auth_error
                     : status == REDIS_OK ? "disconnected"
                     : c->errstr[0]       ? c->errstr
                                          : "error");
    l->auth_error[0] = '\0';
}

static void link_connect(link_t *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
    const char *why = NULL;
    if (!ac) {
        why = "out of memory";
    } else if (ac->err) {
        why = ac->errstr;
    } else {
        ac->data = l;
        if (redisLibuvAttach(ac, l->loop) != REDIS_OK ||
            redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
            redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK)
            why = "cannot attach to the loop";
    }
    if (why) {
        link_lost(l, why); /* before the free: why may be ac's */
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    /* A subscriber only listens, so a dead peer shows only through keepalive. */
    if (l->keepalive && redisEnableKeepAlive(&ac->c) != REDIS_OK)
        kc_log_warn("redis subscriber: cannot enable TCP keepalive");
    l->ac = ac;
    kc_reconn_connecting(&l->rc, kc_mono_ns());
}

static void on_link_tick(uv_timer_t *t)
{
    link_t *l = t->data;
    uint64_t now = kc_mono_ns();
    switch (kc_reconn_due(&l->rc, now)) {
    case KC_RECONN_TIMED_OUT: link_drop(l, "connect timed out"); break;
    case KC_RECONN_CONNECT: link_connect(l); break;
    case KC_RECONN_WAIT:
        if (l->tick && kc_reconn_is_ready(&l->rc))
            l->tick(l, now);
        break;
    }
}

/* Starts connecting at once, and ticks every tick_ms. */
static char *dup_set(const char *s)
{
    return s && *s ? kc_xstrdup(s) : NULL;
}

static void link_init(link_t *l, uv_loop_t *loop, const kc_redis_cfg_t *cfg, int timeout_ms,
                      kc_health_t *health, const char *check_name, const char *lost_msg,
                      uint64_t tick_ms, void *owner)
{
    l->loop = loop;
    l->host = kc_xstrdup(cfg->host);
    l->port = (int)cfg->port;
    l->username = dup_set(cfg->username);
    l->password = dup_set(cfg->password);
    l->owner = owner;
    kc_reconn_opts_t o = {.lost_msg = lost_msg, .connect_timeout_ms = timeout_ms};
    kc_reconn_init(&l->rc, &o, health, check_name);
    if (uv_timer_init(loop, &l->timer) != 0)
        abort();
    l->timer.data = l;
    if (uv_timer_start(&l->timer, on_link_tick, tick_ms, tick_ms) != 0)
        abort();
    link_connect(l);
}

static void on_link_timer_closed(uv_handle_t *h)
{
    link_t *l = h->data;
    free(l->host);
    free(l->username);
    free(l->password);
    l->closed(l);
}

static void link_close(link_t *l)
{
    if (l->rc.state == KC_RECONN_CLOSED)
        return;
    kc_reconn_close(&l->rc);
    free_context(l, "connection closed");
    uv_close((uv_handle_t *)&l->timer, on_link_timer_closed);
}

/* ---- the command connection ---- */

typedef struct pending {
    kc_redis_t *r;
    uint64_t deadline_ns;
    kc_redis_cb cb;
    void *arg;
    kc_list_node_t link; /* in kc_redis_t.pending */
} pending_t;

struct kc_redis {
    link_t link;
    int timeout_ms;
    uint64_t next_ping_ns;
    kc_list_t pending; /* sent, not yet answered: the oldest first */
};

static void on_reply(redisAsyncContext *c, void *reply, void *privdata)
{
    (void)c;
    pending_t *p = privdata;
    kc_redis_t *r = p->r;
    /* Replies arrive in order, so p is the first. */
    kc_list_remove(&r->pending, &p->link);
    const redisReply *rep = reply;
    const char *err = NULL;
    if (!rep)
        err = r->link.drop_reason ? r->link.drop_reason : "connection lost";
    else if (rep->type == REDIS_REPLY_ERROR)
        err = rep->str;
    p->cb(p->arg, rep, err);
    free(p);
}

static void on_ping(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    kc_redis_t *r = arg;
    if (!err)
        kc_reconn_alive(&r->link.rc);
}

static void on_up(link_t *l)
{
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("host", l->host), KC_INT("port", l->port)),
              "redis connected");
}

/* While connected: the oldest command's deadline, and a PING when idle. */
static void on_tick(link_t *l, uint64_t now)
{
    kc_redis_t *r = l->owner;
    const pending_t *oldest = KC_LIST_ENTRY(r->pending.first, pending_t, link);
    if (oldest && now >= oldest->deadline_ns) {
        link_drop(l, "command timed out");
    } else if (!oldest && now >= r->next_ping_ns) {
        r->next_ping_ns = now + (uint64_t)PING_INTERVAL_MS * 1000000u;
        const char *argv[] = {"PING"};
        (void)kc_redis_command(r, on_ping, r, 1, argv, NULL);
    }
}

static void on_closed(link_t *l)
{
    free(l->owner);
}

kc_redis_t *kc_redis_new(uv_loop_t *loop, const kc_redis_cfg_t *cfg, kc_health_t *health,
                         const char *check_name)
{
    kc_redis_t *r = kc_xcalloc(1, sizeof(*r));
    r->timeout_ms = cfg->timeout_ms > 0 ? (int)cfg->timeout_ms : 1000;
    r->link.up = on_up;
    r->link.tick = on_tick;
    r->link.closed = on_closed;
    uint64_t tick = (uint64_t)(r->timeout_ms / 4 > 0 ? r->timeout_ms / 4 : 1);
    if (tick > 100)
        tick = 100;
    link_init(&r->link, loop, cfg, r->timeout_ms, health, check_name ? check_name : "redis",
              "redis connection lost", tick, r);
    return r;
}

int kc_redis_connected(const kc_redis_t *r)
{
    return kc_reconn_is_ready(&r->link.rc);
}

size_t kc_redis_pending(const kc_redis_t *r)
{
    return r->pending.len;
}

/* Sends one command, given as argv (argc >= 0) or preformatted (argc < 0: cmd, len). */
static int send_command(kc_redis_t *r, kc_redis_cb cb, void *arg, int argc, const char **argv,
                        const size_t *argvlen, const char *cmd, size_t len)
{
    if (r->link.rc.state == KC_RECONN_CLOSED)
        return -ESHUTDOWN;
    if (!kc_reconn_is_ready(&r->link.rc) || !r->link.ac)
        return -ENOTCONN;
    if (r->pending.len >= KC_REDIS_MAX_PENDING)
        return -EAGAIN;
    pending_t *p = kc_xcalloc(1, sizeof(*p));
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ns = kc_mono_ns() + (uint64_t)r->timeout_ms * 1000000u;
    int rc = argc >= 0 ? redisAsyncCommandArgv(r->link.ac, on_reply, p, argc, argv, argvlen)
                       : redisAsyncFormattedCommand(r->link.ac, on_reply, p, cmd, len);
    if (rc != REDIS_OK) {
        free(p);
        return -EIO;
    }
    kc_list_push_back(&r->pending, &p->link);
    return 0;
}

int kc_redis_command(kc_redis_t *r, kc_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    return send_command(r, cb, arg, argc < 0 ? 0 : argc, argv, argvlen, NULL, 0);
}

int kc_redis_command_formatted(kc_redis_t *r, kc_redis_cb cb, void *arg, const char *cmd,
                               size_t len)
{
    return send_command(r, cb, arg, -1, NULL, NULL, cmd, len);
}

void kc_redis_close(kc_redis_t *r)
{
    if (r)
        link_close(&r->link);
}

/* ---- the subscriber ---- */

#include "kchat/map.h"

struct kc_redis_sub {
    link_t link;
    kc_map_t *channels; /* the wanted set: name -> (void *)1 */
    kc_redis_msg_cb on_msg;
    void *arg;
};

/* Every reply of a subscribed connection comes here: ["message", channel, payload], or the
 * confirmations ["subscribe"|"unsubscribe", channel, count], or NULL when it is freed. */
static void sub_on_reply(redisAsyncContext *c, void *reply, void *privdata)
{
    kc_redis_sub_t *s = privdata;
    const redisReply *r = reply;
    (void)c;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return;
    const redisReply *kind = r->element[0], *ch = r->element[1], *msg = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0 ||
        ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING)
        return;
    s->on_msg(s->arg, ch->str, ch->len, msg->str, msg->len);
}

static int sub_send(kc_redis_sub_t *s, const char *verb, const char *channel)
{
    const char *argv[] = {verb, channel};
    size_t lens[] = {strlen(verb), strlen(channel)};
    return redisAsyncCommandArgv(s->link.ac, sub_on_reply, s, 2, argv, lens) == REDIS_OK ? 0
                                                                                       : -EIO;
}

static void sub_resubscribe_one(const void *key, size_t klen, void *val, void *arg)
{
    (void)val;
    (void)klen;
    kc_redis_sub_t *s = arg;
    if (s->link.ac && sub_send(s, "SUBSCRIBE", key) != 0)
        kc_log_warn("redis subscriber: cannot subscribe to %s", (const char *)key);
}

static void sub_on_up(link_t *l)
{
    kc_redis_sub_t *s = l->owner;
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_STR("host", l->host), KC_INT("port", l->port),
                        KC_INT("channels", kc_map_size(s->channels))),
              "redis subscriber connected");
    kc_map_each(s->channels, sub_resubscribe_one, s);
}

static void sub_on_closed(link_t *l)
{
    kc_redis_sub_t *s = l->owner;
    kc_map_destroy(s->channels, NULL);
    free(s);
}

kc_redis_sub_t *kc_redis_sub_new(uv_loop_t *loop, const kc_redis_cfg_t *cfg, kc_health_t *health,
                                 const char *check_name, kc_redis_msg_cb on_msg, void *arg)
{
    kc_redis_sub_t *s = kc_xcalloc(1, sizeof(*s));
    s->channels = kc_map_new();
    s->on_msg = on_msg;
    s->arg = arg;
    s->link.keepalive = 1;
    s->link.up = sub_on_up;
    s->link.closed = sub_on_closed;
    link_init(&s->link, loop, cfg, cfg->timeout_ms > 0 ? (int)cfg->timeout_ms : 1000, health,
              check_name ? check_name : "redis_sub", "redis subscriber connection lost", 100, s);
    return s;
}

int kc_redis_sub_add(kc_redis_sub_t *s, const char *channel)
{
    size_t n = strlen(channel);
    if (s->link.rc.state == KC_RECONN_CLOSED)
        return -ESHUTDOWN;
    if (n == 0 || n > KC_REDIS_CHANNEL_MAX)
        return -ENAMETOOLONG;
    if (kc_map_get(s->channels, channel, n + 1))
        return 0;
    (void)kc_map_put(s->channels, channel, n + 1, (void *)1);
    if (kc_reconn_is_ready(&s->link.rc) && s->link.ac && sub_send(s, "SUBSCRIBE", channel) != 0)
        kc_log_warn("redis subscriber: cannot subscribe to %s", channel);
    return 0;
}

int kc_redis_sub_remove(kc_redis_sub_t *s, const char *channel)
{
    size_t n = strlen(channel);
    if (s->link.rc.state == KC_RECONN_CLOSED)
        return -ESHUTDOWN;
    if (n == 0 || n > KC_REDIS_CHANNEL_MAX)
        return -ENAMETOOLONG;
    if (!kc_map_remove(s->channels, channel, n + 1))
        return 0;
    if (kc_reconn_is_ready(&s->link.rc) && s->link.ac && sub_send(s, "UNSUBSCRIBE", channel) != 0)
        kc_log_warn("redis subscriber: cannot unsubscribe from %s", channel);
    return 0;
}

int kc_redis_sub_connected(const kc_redis_sub_t *s)
{
    return kc_reconn_is_ready(&s->link.rc);
}

size_t kc_redis_sub_channels(const kc_redis_sub_t *s)
{
    return kc_map_size(s->channels);
}

void kc_redis_sub_close(kc_redis_sub_t *s)
{
    if (s)
        link_close(&s->link);
}
