/* apply_redis.c - batches of events as Redis commands (and three small Lua scripts). */
#include "apply_redis.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/map.h"
#include "kchat/util.h"

/* HSET field to value unless the field already holds a larger number. */
static const char HMAX[] = "local c = redis.call('HGET', KEYS[1], ARGV[1])\n"
                           "if not c or tonumber(c) < tonumber(ARGV[2]) then\n"
                           "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                           "end\n"
                           "return 0\n";

/* A conversation's latest activity, and its place in each member's list. */
static const char TOUCH[] = "local ms = ARGV[1]\n"
                            "local cur = redis.call('HGET', KEYS[1], 'last_activity')\n"
                            "if cur and tonumber(cur) >= tonumber(ms) then ms = cur\n"
                            "else redis.call('HSET', KEYS[1], 'last_activity', ms) end\n"
                            "for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
                            "  redis.call('ZADD', ARGV[3] .. 'convos:' .. m, 'GT', ms, ARGV[2])\n"
                            "end\n"
                            "return 0\n";

/* An edit or delete of message ARGV[1]: in recent:<convo> and in last_message. */
static const char EDIT[] =
    "local function upd(j)\n"
    "  local o = cjson.decode(j)\n"
    "  o.content = ARGV[2]\n"
    "  if ARGV[4] == '1' then o.deleted_at = ARGV[3] else o.edited_at = ARGV[3] end\n"
    "  return cjson.encode(o)\n"
    "end\n"
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])\n"
    "if #m > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])\n"
    "  redis.call('ZADD', KEYS[1], ARGV[1], upd(m[1]))\n"
    "end\n"
    "local lm = redis.call('HGET', KEYS[2], 'last_message')\n"
    "if lm and tostring(cjson.decode(lm).seq_no) == ARGV[1] then\n"
    "  redis.call('HSET', KEYS[2], 'last_message', upd(lm))\n"
    "end\n"
    "return 0\n";

void proj_rcmd_start(proj_rcmds_t *c)
{
    if (c->ncmds == c->capcmds) {
        c->capcmds = c->capcmds ? c->capcmds * 2 : 256;
        c->first = kc_xrealloc(c->first, c->capcmds * sizeof(size_t));
    }
    c->first[c->ncmds++] = c->nargs;
}

void proj_rcmd_arg(proj_rcmds_t *c, const char *s, size_t len)
{
    if (c->nargs == c->capargs) {
        c->capargs = c->capargs ? c->capargs * 2 : 1024;
        c->off = kc_xrealloc(c->off, c->capargs * sizeof(size_t));
        c->len = kc_xrealloc(c->len, c->capargs * sizeof(size_t));
    }
    c->off[c->nargs] = c->arena.len;
    c->len[c->nargs] = len;
    c->nargs++;
    kc_buf_append(&c->arena, s, len);
}

void proj_rcmd_str(proj_rcmds_t *c, const char *s) { proj_rcmd_arg(c, s, strlen(s)); }

void proj_rcmd_argf(proj_rcmds_t *c, const char *fmt, ...)
{
    size_t start = c->arena.len;
    va_list ap;
    va_start(ap, fmt);
    kc_buf_vprintf(&c->arena, fmt, ap);
    va_end(ap);
    size_t len = c->arena.len - start;
    /* Re-register the bytes just written as one argument. */
    if (c->nargs == c->capargs) {
        c->capargs = c->capargs ? c->capargs * 2 : 1024;
        c->off = kc_xrealloc(c->off, c->capargs * sizeof(size_t));
        c->len = kc_xrealloc(c->len, c->capargs * sizeof(size_t));
    }
    c->off[c->nargs] = start;
    c->len[c->nargs] = len;
    c->nargs++;
}

int proj_rcmd_argc(const proj_rcmds_t *c, size_t i)
{
    size_t end = i + 1 < c->ncmds ? c->first[i + 1] : c->nargs;
    return (int)(end - c->first[i]);
}

int proj_rcmd_argv(const proj_rcmds_t *c, size_t i, const char **argv, size_t *lens, int max)
{
    int argc = proj_rcmd_argc(c, i);
    if (argc > max)
        argc = max;
    for (int k = 0; k < argc; k++) {
        size_t a = c->first[i] + (size_t)k;
        argv[k] = c->arena.data + c->off[a];
        lens[k] = c->len[a];
    }
    return argc;
}

void proj_rcmds_free(proj_rcmds_t *c)
{
    kc_buf_free(&c->arena);
    free(c->off);
    free(c->len);
    free(c->first);
    memset(c, 0, sizeof(*c));
}

char *proj_message_json(const proj_event_t *e)
{
    char at[32];
    kc_iso_ms(e->at, at);
    kc_buf_t b = {0};
#define FIELD(name, val)                                                                           \
    do {                                                                                           \
        kc_buf_puts(&b, ",\"" name "\":\"");                                                       \
        kc_buf_json_str(&b, (val), strlen(val));                                                   \
        kc_buf_putc(&b, '"');                                                                      \
    } while (0)
    kc_buf_puts(&b, "{\"convo_id\":\"");
    kc_buf_json_str(&b, e->convo_id, strlen(e->convo_id));
    kc_buf_printf(&b, "\",\"seq_no\":%" PRId64, e->seq_no);
    FIELD("server_msg_id", e->server_msg_id);
    FIELD("sender_id", e->actor_id);
    FIELD("client_msg_id", e->client_msg_id);
    FIELD("content", e->content);
    FIELD("content_type", e->content_type);
    FIELD("created_at", at);
#undef FIELD
    kc_buf_puts(&b, ",\"edited_at\":null,\"deleted_at\":null}");
    return kc_buf_steal(&b);
}

typedef struct {
    int64_t at;
    int messages;
} touch_t;

typedef struct {
    const char *prefix;
    long long recent;
    proj_rcmds_t *out;
} flush_ctx_t;

static void flush_touch(const void *key, size_t klen, void *val, void *arg)
{
    flush_ctx_t *f = arg;
    touch_t *t = val;
    proj_rcmds_t *c = f->out;
    proj_rcmd_start(c);
    proj_rcmd_str(c, "EVAL");
    proj_rcmd_str(c, TOUCH);
    proj_rcmd_str(c, "2");
    proj_rcmd_argf(c, "%sconvo:%.*s", f->prefix, (int)klen, (const char *)key);
    proj_rcmd_argf(c, "%smembers:%.*s", f->prefix, (int)klen, (const char *)key);
    proj_rcmd_argf(c, "%" PRId64, t->at);
    proj_rcmd_arg(c, key, klen);
    proj_rcmd_str(c, f->prefix);
    if (t->messages) {
        proj_rcmd_start(c);
        proj_rcmd_str(c, "ZREMRANGEBYRANK");
        proj_rcmd_argf(c, "%srecent:%.*s", f->prefix, (int)klen, (const char *)key);
        proj_rcmd_str(c, "0");
        proj_rcmd_argf(c, "%lld", -(f->recent + 1));
    }
}

static void flush_seen(const void *key, size_t klen, void *val, void *arg)
{
    flush_ctx_t *f = arg;
    proj_rcmds_t *c = f->out;
    proj_rcmd_start(c);
    proj_rcmd_str(c, "EVAL");
    proj_rcmd_str(c, HMAX);
    proj_rcmd_str(c, "1");
    proj_rcmd_argf(c, "%slastseen", f->prefix);
    proj_rcmd_arg(c, key, klen);
    proj_rcmd_argf(c, "%" PRId64, *(int64_t *)val);
}

/* key:<convo> with one member argument per user, e.g. SADD members:<c> u1 u2. */
static void members_cmd(proj_rcmds_t *c, const char *verb, const char *prefix, const char *key,
                        const proj_event_t *e, const char *value)
{
    proj_rcmd_start(c);
    proj_rcmd_str(c, verb);
    proj_rcmd_argf(c, "%s%s:%s", prefix, key, e->convo_id);
    for (size_t m = 0; m < e->nmembers; m++) {
        proj_rcmd_str(c, e->members[m]);
        if (value)
            proj_rcmd_str(c, value);
    }
}

size_t proj_redis_build(const char *prefix, proj_item_t *items, size_t n, long long recent,
                        proj_rcmds_t *out)
{
    kc_map_t *touched = kc_map_new(), *seen = kc_map_new();
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].to_redis || items[i].kind != ITEM_EVENT)
            continue;
        const proj_event_t *e = &items[i].ev;
        if (e->kind == EV_REJECTED)
            continue;
        proj_rcmds_t *c = out;
        switch (e->kind) {
        case EV_CREATED:
            proj_rcmd_start(c);
            proj_rcmd_str(c, "HSET");
            proj_rcmd_argf(c, "%sconvo:%s", prefix, e->convo_id);
            proj_rcmd_str(c, "title");
            proj_rcmd_str(c, e->title);
            proj_rcmd_str(c, "created_by");
            proj_rcmd_str(c, e->actor_id);
            proj_rcmd_str(c, "created_at");
            proj_rcmd_argf(c, "%" PRId64, e->at);
            proj_rcmd_start(c);
            proj_rcmd_str(c, "HSETNX");
            proj_rcmd_argf(c, "%sconvo:%s", prefix, e->convo_id);
            proj_rcmd_str(c, "last_seq");
            proj_rcmd_str(c, "0");
            __attribute__((fallthrough));
        case EV_ADDED:
            if (e->nmembers) {
                members_cmd(c, "SADD", prefix, "members", e, NULL);
                members_cmd(c, "HSET", prefix, "read", e, "0");
            }
            break;
        case EV_REMOVED:
            if (e->nmembers) {
                members_cmd(c, "SREM", prefix, "members", e, NULL);
                members_cmd(c, "HDEL", prefix, "read", e, NULL);
            }
            for (size_t m = 0; m < e->nmembers; m++) {
                proj_rcmd_start(c);
                proj_rcmd_str(c, "ZREM");
                proj_rcmd_argf(c, "%sconvos:%s", prefix, e->members[m]);
                proj_rcmd_str(c, e->convo_id);
            }
            break;
        case EV_MESSAGE: {
            char *json = proj_message_json(e);
            proj_rcmd_start(c);
            proj_rcmd_str(c, "ZREMRANGEBYSCORE");
            proj_rcmd_argf(c, "%srecent:%s", prefix, e->convo_id);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            proj_rcmd_start(c);
            proj_rcmd_str(c, "ZADD");
            proj_rcmd_argf(c, "%srecent:%s", prefix, e->convo_id);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            proj_rcmd_str(c, json);
            proj_rcmd_start(c);
            proj_rcmd_str(c, "HSET");
            proj_rcmd_argf(c, "%sconvo:%s", prefix, e->convo_id);
            proj_rcmd_str(c, "last_seq");
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            proj_rcmd_str(c, "last_message");
            proj_rcmd_str(c, json);
            /* The sender has read up to their own message, which is the newest one. */
            proj_rcmd_start(c);
            proj_rcmd_str(c, "HSET");
            proj_rcmd_argf(c, "%sread:%s", prefix, e->convo_id);
            proj_rcmd_str(c, e->actor_id);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            free(json);
            break;
        }
        case EV_EDITED:
        case EV_DELETED: {
            char at[32];
            kc_iso_ms(e->at, at);
            proj_rcmd_start(c);
            proj_rcmd_str(c, "EVAL");
            proj_rcmd_str(c, EDIT);
            proj_rcmd_str(c, "2");
            proj_rcmd_argf(c, "%srecent:%s", prefix, e->convo_id);
            proj_rcmd_argf(c, "%sconvo:%s", prefix, e->convo_id);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            proj_rcmd_str(c, e->kind == EV_EDITED ? e->content : "");
            proj_rcmd_str(c, at);
            proj_rcmd_str(c, e->kind == EV_DELETED ? "1" : "0");
            break;
        }
        case EV_READ:
            proj_rcmd_start(c);
            proj_rcmd_str(c, "EVAL");
            proj_rcmd_str(c, HMAX);
            proj_rcmd_str(c, "1");
            proj_rcmd_argf(c, "%sread:%s", prefix, e->convo_id);
            proj_rcmd_str(c, e->actor_id);
            proj_rcmd_argf(c, "%" PRId64, e->seq_no);
            break;
        case EV_REJECTED:
            break;
        }
        size_t cl = strlen(e->convo_id);
        touch_t *t = kc_map_get(touched, e->convo_id, cl);
        if (!t) {
            t = kc_xcalloc(1, sizeof(*t));
            t->at = e->at;
            (void)kc_map_put(touched, e->convo_id, cl, t);
        }
        if (e->at > t->at)
            t->at = e->at;
        t->messages |= e->kind == EV_MESSAGE;
        size_t al = strlen(e->actor_id);
        int64_t *s = kc_map_get(seen, e->actor_id, al);
        if (!s) {
            s = kc_xmalloc(sizeof(*s));
            *s = e->at;
            (void)kc_map_put(seen, e->actor_id, al, s);
        }
        if (e->at > *s)
            *s = e->at;
        applied++;
    }
    flush_ctx_t f = {.prefix = prefix, .recent = recent, .out = out};
    kc_map_each(touched, flush_touch, &f);
    kc_map_each(seen, flush_seen, &f);
    kc_map_destroy(touched, free);
    kc_map_destroy(seen, free);
    return applied;
}
