/* redis.c - hiredis async on the libuv loop, with the timeouts hiredis 0.14 lacks. */
#include "kchat/redis.h"

#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define PING_INTERVAL_MS 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum { S_DISCONNECTED, S_CONNECTING, S_READY, S_CLOSED };

typedef struct pending {
    kc_redis_t *r;
    uint64_t deadline_ns;
    kc_redis_cb cb;
    void *arg;
    kc_list_node_t link; /* in kc_redis_t.pending */
} pending_t;

struct kc_redis {
    uv_loop_t *loop;
    char *host;
    int port;
    int timeout_ms;
    redisAsyncContext *ac;
    int state;
    uint64_t connect_deadline_ns;
    uint64_t retry_at_ns;
    uint64_t next_ping_ns;
    int backoff_ms;
    uv_timer_t timer;
    kc_list_t pending; /* sent, not yet answered: the oldest first */
    const char *drop_reason;
    kc_health_t *health;
    int check;
};

static void start_connect(kc_redis_t *r);

static void set_down(kc_redis_t *r, const char *why)
{
    if (r->state == S_CLOSED)
        return;
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("retry_ms", r->backoff_ms)),
              "redis connection lost: %s", why);
    kc_health_set(r->health, r->check, 0, why);
    r->state = S_DISCONNECTED;
    r->retry_at_ns = kc_mono_ns() + (uint64_t)r->backoff_ms * 1000000u;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Drops the connection from outside hiredis' callbacks: pending callbacks get NULL. */
static void drop(kc_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    set_down(r, why);
    if (ac) {
        r->drop_reason = why;
        redisAsyncFree(ac);
        r->drop_reason = NULL;
    }
}

static void on_connect(const redisAsyncContext *c, int status)
{
    kc_redis_t *r = c->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (r->ac == c)
            r->ac = NULL;
        set_down(r, c->errstr[0] ? c->errstr : "connect failed");
        return;
    }
    r->state = S_READY;
    r->backoff_ms = BACKOFF_MIN_MS;
    kc_health_set(r->health, r->check, 1, "connected");
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("host", r->host), KC_INT("port", r->port)),
              "redis connected");
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
    kc_redis_t *r = c->data;
    if (r->ac == c)
        r->ac = NULL;
    if (r->state == S_READY || r->state == S_CONNECTING)
        set_down(r, status == REDIS_OK ? "disconnected" : (c->errstr[0] ? c->errstr : "error"));
}

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
        err = r->drop_reason ? r->drop_reason : "connection lost";
    else if (rep->type == REDIS_REPLY_ERROR)
        err = rep->str;
    p->cb(p->arg, rep, err);
    free(p);
}

/* An async connection attached to the loop with its callbacks, or NULL with why set. Both
 * the command connection and the subscriber open theirs through here. */
static redisAsyncContext *async_open(uv_loop_t *loop, const char *host, int port, void *data,
                                     redisConnectCallback *on_conn,
                                     redisDisconnectCallback *on_disc, char *why, size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac) {
        kc_strlcpyf(why, whylen, "out of memory");
        return NULL;
    }
    if (ac->err) {
        kc_strlcpyf(why, whylen, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    if (redisLibuvAttach(ac, loop) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_conn) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disc) != REDIS_OK) {
        redisAsyncFree(ac);
        kc_strlcpyf(why, whylen, "cannot attach to the loop");
        return NULL;
    }
    return ac;
}

static void start_connect(kc_redis_t *r)
{
    char why[128];
    redisAsyncContext *ac =
        async_open(r->loop, r->host, r->port, r, on_connect, on_disconnect, why, sizeof(why));
    if (!ac) {
        set_down(r, why);
        return;
    }
    r->ac = ac;
    r->state = S_CONNECTING;
    r->connect_deadline_ns = kc_mono_ns() + (uint64_t)r->timeout_ms * 1000000u;
}

static void on_ping(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    kc_redis_t *r = arg;
    if (!err)
        kc_health_set(r->health, r->check, 1, "connected");
}

static void on_tick(uv_timer_t *t)
{
    kc_redis_t *r = t->data;
    uint64_t now = kc_mono_ns();
    switch (r->state) {
    case S_CONNECTING:
        if (now >= r->connect_deadline_ns)
            drop(r, "connect timed out");
        break;
    case S_READY: {
        const pending_t *oldest = KC_LIST_ENTRY(r->pending.first, pending_t, link);
        if (oldest && now >= oldest->deadline_ns) {
            drop(r, "command timed out");
        } else if (!oldest && now >= r->next_ping_ns) {
            r->next_ping_ns = now + (uint64_t)PING_INTERVAL_MS * 1000000u;
            const char *argv[] = {"PING"};
            (void)kc_redis_command(r, on_ping, r, 1, argv, NULL);
        }
        break;
    }
    case S_DISCONNECTED:
        if (now >= r->retry_at_ns)
            start_connect(r);
        break;
    default: break;
    }
}

kc_redis_t *kc_redis_new(uv_loop_t *loop, const char *host, int port, int timeout_ms,
                         kc_health_t *health, const char *check_name)
{
    kc_redis_t *r = kc_xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->host = kc_xstrdup(host);
    r->port = port;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->health = health;
    r->check = health ? kc_health_add(health, check_name ? check_name : "redis") : -1;
    if (uv_timer_init(loop, &r->timer) != 0)
        abort();
    r->timer.data = r;
    uint64_t tick = (uint64_t)(r->timeout_ms / 4 > 0 ? r->timeout_ms / 4 : 1);
    if (tick > 100)
        tick = 100;
    if (uv_timer_start(&r->timer, on_tick, tick, tick) != 0)
        abort();
    start_connect(r);
    return r;
}

int kc_redis_connected(const kc_redis_t *r)
{
    return r->state == S_READY;
}

size_t kc_redis_pending(const kc_redis_t *r)
{
    return r->pending.len;
}

/* Sends one command, given as argv (argc >= 0) or preformatted (argc < 0: cmd, len). */
static int send_command(kc_redis_t *r, kc_redis_cb cb, void *arg, int argc, const char **argv,
                        const size_t *argvlen, const char *cmd, size_t len)
{
    if (r->state == S_CLOSED)
        return -ESHUTDOWN;
    if (r->state != S_READY || !r->ac)
        return -ENOTCONN;
    if (r->pending.len >= KC_REDIS_MAX_PENDING)
        return -EAGAIN;
    pending_t *p = kc_xcalloc(1, sizeof(*p));
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ns = kc_mono_ns() + (uint64_t)r->timeout_ms * 1000000u;
    int rc = argc >= 0 ? redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, argvlen)
                       : redisAsyncFormattedCommand(r->ac, on_reply, p, cmd, len);
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

static void on_timer_closed(uv_handle_t *h)
{
    kc_redis_t *r = h->data;
    free(r->host);
    free(r);
}

void kc_redis_close(kc_redis_t *r)
{
    if (!r || r->state == S_CLOSED)
        return;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = S_CLOSED;
    kc_health_set(r->health, r->check, 0, "closed");
    if (ac) {
        r->drop_reason = "connection closed";
        redisAsyncFree(ac);
        r->drop_reason = NULL;
    }
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

/* ---- the subscriber ---- */

#include "kchat/map.h"

struct kc_redis_sub {
    uv_loop_t *loop;
    char *host;
    int port;
    int timeout_ms;
    redisAsyncContext *ac;
    int state;
    uint64_t connect_deadline_ns;
    uint64_t retry_at_ns;
    int backoff_ms;
    uv_timer_t timer;
    kc_map_t *channels; /* the wanted set: name -> (void *)1 */
    kc_health_t *health;
    int check;
    kc_redis_msg_cb on_msg;
    void *arg;
};

static void sub_set_down(kc_redis_sub_t *s, const char *why)
{
    if (s->state == S_CLOSED)
        return;
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("retry_ms", s->backoff_ms)),
              "redis subscriber connection lost: %s", why);
    kc_health_set(s->health, s->check, 0, why);
    s->state = S_DISCONNECTED;
    s->retry_at_ns = kc_mono_ns() + (uint64_t)s->backoff_ms * 1000000u;
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

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
    return redisAsyncCommandArgv(s->ac, sub_on_reply, s, 2, argv, lens) == REDIS_OK ? 0 : -EIO;
}

static void sub_resubscribe_one(const void *key, size_t klen, void *val, void *arg)
{
    (void)val;
    (void)klen;
    kc_redis_sub_t *s = arg;
    if (s->ac && sub_send(s, "SUBSCRIBE", key) != 0)
        kc_log_warn("redis subscriber: cannot subscribe to %s", (const char *)key);
}

static void sub_on_connect(const redisAsyncContext *c, int status)
{
    kc_redis_sub_t *s = c->data;
    if (status != REDIS_OK) {
        if (s->ac == c)
            s->ac = NULL;
        sub_set_down(s, c->errstr[0] ? c->errstr : "connect failed");
        return;
    }
    s->state = S_READY;
    s->backoff_ms = BACKOFF_MIN_MS;
    kc_health_set(s->health, s->check, 1, "connected");
    kc_log_kv(KC_LOG_INFO,
              KC_FIELDS(KC_STR("host", s->host), KC_INT("port", s->port),
                        KC_INT("channels", kc_map_size(s->channels))),
              "redis subscriber connected");
    kc_map_each(s->channels, sub_resubscribe_one, s);
}

static void sub_on_disconnect(const redisAsyncContext *c, int status)
{
    kc_redis_sub_t *s = c->data;
    if (s->ac == c)
        s->ac = NULL;
    if (s->state == S_READY || s->state == S_CONNECTING)
        sub_set_down(s, status == REDIS_OK ? "disconnected" : (c->errstr[0] ? c->errstr : "error"));
}

static void sub_start_connect(kc_redis_sub_t *s)
{
    char why[128];
    redisAsyncContext *ac = async_open(s->loop, s->host, s->port, s, sub_on_connect,
                                       sub_on_disconnect, why, sizeof(why));
    if (!ac) {
        sub_set_down(s, why);
        return;
    }
    /* A subscriber only listens, so a dead peer shows only through keepalive. */
    if (redisEnableKeepAlive(&ac->c) != REDIS_OK)
        kc_log_warn("redis subscriber: cannot enable TCP keepalive");
    s->ac = ac;
    s->state = S_CONNECTING;
    s->connect_deadline_ns = kc_mono_ns() + (uint64_t)s->timeout_ms * 1000000u;
}

static void sub_drop(kc_redis_sub_t *s, const char *why)
{
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    sub_set_down(s, why);
    if (ac)
        redisAsyncFree(ac);
}

static void sub_on_tick(uv_timer_t *t)
{
    kc_redis_sub_t *s = t->data;
    uint64_t now = kc_mono_ns();
    if (s->state == S_CONNECTING && now >= s->connect_deadline_ns)
        sub_drop(s, "connect timed out");
    else if (s->state == S_DISCONNECTED && now >= s->retry_at_ns)
        sub_start_connect(s);
}

kc_redis_sub_t *kc_redis_sub_new(uv_loop_t *loop, const char *host, int port, int timeout_ms,
                                 kc_health_t *health, const char *check_name,
                                 kc_redis_msg_cb on_msg, void *arg)
{
    kc_redis_sub_t *s = kc_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->host = kc_xstrdup(host);
    s->port = port;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->health = health;
    s->check = health ? kc_health_add(health, check_name ? check_name : "redis_sub") : -1;
    s->channels = kc_map_new();
    s->on_msg = on_msg;
    s->arg = arg;
    if (uv_timer_init(loop, &s->timer) != 0)
        abort();
    s->timer.data = s;
    if (uv_timer_start(&s->timer, sub_on_tick, 100, 100) != 0)
        abort();
    sub_start_connect(s);
    return s;
}

int kc_redis_sub_add(kc_redis_sub_t *s, const char *channel)
{
    size_t n = strlen(channel);
    if (s->state == S_CLOSED)
        return -ESHUTDOWN;
    if (n == 0 || n > KC_REDIS_CHANNEL_MAX)
        return -ENAMETOOLONG;
    if (kc_map_get(s->channels, channel, n + 1))
        return 0;
    (void)kc_map_put(s->channels, channel, n + 1, (void *)1);
    if (s->state == S_READY && s->ac && sub_send(s, "SUBSCRIBE", channel) != 0)
        kc_log_warn("redis subscriber: cannot subscribe to %s", channel);
    return 0;
}

int kc_redis_sub_remove(kc_redis_sub_t *s, const char *channel)
{
    size_t n = strlen(channel);
    if (s->state == S_CLOSED)
        return -ESHUTDOWN;
    if (n == 0 || n > KC_REDIS_CHANNEL_MAX)
        return -ENAMETOOLONG;
    if (!kc_map_remove(s->channels, channel, n + 1))
        return 0;
    if (s->state == S_READY && s->ac && sub_send(s, "UNSUBSCRIBE", channel) != 0)
        kc_log_warn("redis subscriber: cannot unsubscribe from %s", channel);
    return 0;
}

int kc_redis_sub_connected(const kc_redis_sub_t *s)
{
    return s->state == S_READY;
}

size_t kc_redis_sub_channels(const kc_redis_sub_t *s)
{
    return kc_map_size(s->channels);
}

static void sub_on_timer_closed(uv_handle_t *h)
{
    kc_redis_sub_t *s = h->data;
    kc_map_destroy(s->channels, NULL);
    free(s->host);
    free(s);
}

void kc_redis_sub_close(kc_redis_sub_t *s)
{
    if (!s || s->state == S_CLOSED)
        return;
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    s->state = S_CLOSED;
    kc_health_set(s->health, s->check, 0, "closed");
    if (ac)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&s->timer, sub_on_timer_closed);
}
