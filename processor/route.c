/* route.c - looking up recipients' gateway slots and grouping deliveries by slot. */
#include "route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/util.h"

#define ROUTE_PREFIX "kchat:route:"

typedef struct {
    char *convo_id;
    size_t convo_len;
    kc_buf_t event;
    char **recipients;
    size_t n;
    char *sender;
    int32_t origin_slot;
    kc_buf_t ack; /* the sender's ack delivery, empty when none */
    int32_t ack_slot;
} intent_t;

/* A user's live slots, as a bit set over the slots. */
typedef struct {
    proc_router_t *r;
    unsigned char *slots;
    int answered;
} route_t;

struct proc_router {
    kc_redis_t *redis;
    int32_t nslots;
    size_t max_lookups;
    intent_t *intents;
    size_t nintents, cap;
    size_t nfanout; /* intents with recipients to look up */
    kc_map_t *routes; /* user id -> route_t */
    size_t waiting;
    int64_t now_ms;
    void (*done)(void *arg);
    void *done_arg;
    proc_router_stats_t stats;
};

proc_router_t *proc_router_new(kc_redis_t *redis, int32_t nslots, size_t max_lookups)
{
    proc_router_t *r = kc_xcalloc(1, sizeof(*r));
    r->redis = redis;
    r->nslots = nslots;
    r->max_lookups = max_lookups;
    r->routes = kc_map_new();
    return r;
}

static void route_free(void *v)
{
    route_t *rt = v;
    free(rt->slots);
    free(rt);
}

void proc_router_reset(proc_router_t *r)
{
    for (size_t i = 0; i < r->nintents; i++) {
        intent_t *in = &r->intents[i];
        for (size_t k = 0; k < in->n; k++)
            free(in->recipients[k]);
        free(in->recipients);
        free(in->convo_id);
        free(in->sender);
        kc_buf_free(&in->event);
        kc_buf_free(&in->ack);
    }
    r->nintents = 0;
    r->nfanout = 0;
    /* Answers still on their way point into the routes: keep them until the last one. */
    if (r->waiting == 0) {
        kc_map_destroy(r->routes, route_free);
        r->routes = kc_map_new();
    }
}

void proc_router_cancel(proc_router_t *r)
{
    r->done = NULL;
}

void proc_router_destroy(proc_router_t *r)
{
    if (!r)
        return;
    proc_router_reset(r);
    kc_map_destroy(r->routes, route_free);
    free(r->intents);
    free(r);
}

void proc_router_add(proc_router_t *r, const char *convo_id, size_t convo_len,
                     const kc_buf_t *event, char *const *recipients, size_t n,
                     const char *sender, size_t sender_len, int32_t origin_slot,
                     const kc_buf_t *ack, int32_t ack_slot)
{
    if (!r->redis || !event || event->len == 0)
        n = 0;
    int has_ack = ack && ack->len > 0 && ack_slot >= 0;
    if (n == 0 && !has_ack)
        return;
    if (r->nintents == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->intents = kc_xrealloc(r->intents, r->cap * sizeof(intent_t));
    }
    intent_t *in = &r->intents[r->nintents++];
    memset(in, 0, sizeof(*in));
    in->convo_id = kc_xstrndup(convo_id, convo_len);
    in->convo_len = convo_len;
    if (n) {
        kc_buf_append(&in->event, event->data, event->len);
        in->recipients = kc_xcalloc(n, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            in->recipients[i] = kc_xstrdup(recipients[i]);
        in->n = n;
        r->nfanout++;
    }
    in->sender = kc_xstrndup(sender, sender_len);
    in->origin_slot = origin_slot;
    in->ack_slot = -1;
    if (has_ack) {
        kc_buf_append(&in->ack, ack->data, ack->len);
        in->ack_slot = ack_slot;
    }
}

size_t proc_router_pending(const proc_router_t *r)
{
    return r->nfanout;
}

static void finish_one(proc_router_t *r)
{
    if (--r->waiting == 0 && r->nintents == 0) {
        kc_map_destroy(r->routes, route_free); /* cancelled and reset meanwhile */
        r->routes = kc_map_new();
    }
    if (r->waiting == 0 && r->done) {
        void (*done)(void *) = r->done;
        r->done = NULL;
        done(r->done_arg);
    }
}

/* HGETALL reply: field = slot, value = registered-until ms. */
static void on_reply(void *arg, const redisReply *reply, const char *err)
{
    route_t *rt = arg;
    proc_router_t *r = rt->r;
    rt->answered = 1;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY) {
        r->stats.failures++;
    } else {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *f = reply->element[i], *v = reply->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            char *end = NULL;
            long slot = strtol(f->str, &end, 10);
            long long until = strtoll(v->str, NULL, 10);
            if (end != f->str && *end == '\0' && slot >= 0 && slot < r->nslots &&
                until > r->now_ms)
                rt->slots[slot] = 1;
        }
    }
    finish_one(r);
}

int proc_router_resolve(proc_router_t *r, int64_t now_ms, void (*done)(void *arg), void *arg)
{
    if (!r->redis || r->nfanout == 0)
        return -ENOENT;
    if (!kc_redis_connected(r->redis)) {
        r->stats.skipped += r->nfanout;
        return -ENOTCONN;
    }
    r->now_ms = now_ms;
    r->waiting = 1; /* held until every command is sent, so done fires once, at the end */
    r->done = done;
    r->done_arg = arg;
    size_t lookups = 0;
    for (size_t i = 0; i < r->nintents; i++) {
        intent_t *in = &r->intents[i];
        for (size_t k = 0; k < in->n; k++) {
            const char *user = in->recipients[k];
            size_t len = strlen(user);
            if (kc_map_get(r->routes, user, len))
                continue;
            route_t *rt = kc_xcalloc(1, sizeof(*rt));
            rt->r = r;
            rt->slots = kc_xcalloc((size_t)r->nslots, 1);
            (void)kc_map_put(r->routes, user, len, rt);
            if (lookups >= r->max_lookups) {
                r->stats.skipped++;
                continue;
            }
            lookups++;
            char key[512];
            if (kc_strlcpyf(key, sizeof(key), ROUTE_PREFIX "%s", user) != 0)
                continue;
            const char *argv[] = {"HGETALL", key};
            r->waiting++;
            if (kc_redis_command(r->redis, on_reply, rt, 2, argv, NULL) != 0) {
                r->waiting--;
                r->stats.failures++;
            } else {
                r->stats.lookups++;
            }
        }
    }
    finish_one(r);
    return 0;
}

void proc_router_each(proc_router_t *r, proc_route_fn fn, proc_ack_fn ack_fn, void *arg)
{
    /* One pass over the recipients, each looked up once, into per-slot buckets. */
    char ***buckets = kc_xcalloc((size_t)r->nslots, sizeof(char **));
    size_t *counts = kc_xcalloc((size_t)r->nslots, sizeof(size_t));
    size_t cap = 0;
    for (size_t i = 0; i < r->nintents; i++) {
        intent_t *in = &r->intents[i];
        if (in->ack.len)
            ack_fn(arg, in->ack_slot, in->convo_id, in->convo_len, &in->ack);
        if (!fn)
            continue;
        if (cap < in->n) {
            cap = in->n;
            for (int32_t s = 0; s < r->nslots; s++)
                buckets[s] = kc_xrealloc(buckets[s], cap * sizeof(char *));
        }
        memset(counts, 0, (size_t)r->nslots * sizeof(size_t));
        for (size_t k = 0; k < in->n; k++) {
            const route_t *rt = kc_map_get(r->routes, in->recipients[k],
                                           strlen(in->recipients[k]));
            if (!rt)
                continue;
            int is_sender = strcmp(in->recipients[k], in->sender) == 0;
            for (int32_t slot = 0; slot < r->nslots; slot++)
                if (rt->slots[slot] && !(is_sender && slot == in->origin_slot))
                    buckets[slot][counts[slot]++] = in->recipients[k]; /* the sender's slot had the ack */
        }
        for (int32_t slot = 0; slot < r->nslots; slot++)
            if (counts[slot])
                fn(arg, slot, in->convo_id, in->convo_len, buckets[slot], counts[slot],
                   &in->event);
    }
    for (int32_t s = 0; s < r->nslots; s++)
        free(buckets[s]);
    free(buckets);
    free(counts);
}

proc_router_stats_t proc_router_stats(const proc_router_t *r)
{
    return r->stats;
}
