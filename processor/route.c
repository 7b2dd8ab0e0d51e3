/* route.c - looking up recipients' gateway slots and grouping deliveries by slot. */
#include "route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/util.h"

#define ROUTE_PREFIX KC_REDIS_ROUTE

typedef struct {
    char *convo_id;
    kc_buf_t event;
    int has_event;
    char **recipients;
    size_t n;
    char *sender;
    int32_t ack_slot; /* the sender's slot (its command came through it), or -1 */
    int has_ack;
    proc_ack_t ack; /* strings owned */
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

static char *dup_or_null(const char *s)
{
    return s ? kc_xstrdup(s) : NULL;
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
        free((char *)in->ack.client_msg_id);
        free((char *)in->ack.status);
        free((char *)in->ack.server_msg_id);
        free((char *)in->ack.error_code);
        free((char *)in->ack.error_message);
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
                     const proc_ack_t *ack)
{
    int has_event = event && event->len > 0;
    if (!r->redis || !has_event)
        n = 0;
    int to_origin = origin_slot >= 0 && origin_slot < r->nslots && (ack || has_event);
    if (n == 0 && !to_origin)
        return;
    if (r->nintents == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->intents = kc_xrealloc(r->intents, r->cap * sizeof(intent_t));
    }
    intent_t *in = &r->intents[r->nintents++];
    memset(in, 0, sizeof(*in));
    in->convo_id = kc_xstrndup(convo_id, convo_len);
    if (has_event) {
        kc_buf_append(&in->event, event->data, event->len);
        in->has_event = 1;
    }
    if (n) {
        in->recipients = kc_xcalloc(n, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            in->recipients[i] = kc_xstrdup(recipients[i]);
        in->n = n;
        r->nfanout++;
    }
    in->sender = kc_xstrndup(sender, sender_len);
    in->ack_slot = to_origin ? origin_slot : -1;
    if (to_origin && ack) {
        in->has_ack = 1;
        in->ack.client_msg_id = kc_xstrdup(ack->client_msg_id ? ack->client_msg_id : "");
        in->ack.status = kc_xstrdup(ack->status);
        in->ack.server_msg_id = dup_or_null(ack->server_msg_id);
        in->ack.seq_no = ack->seq_no;
        in->ack.has_seq = ack->has_seq;
        in->ack.error_code = dup_or_null(ack->error_code);
        in->ack.error_message = dup_or_null(ack->error_message);
    }
}

size_t proc_router_pending(const proc_router_t *r)
{
    return r->nfanout;
}

size_t proc_router_count(const proc_router_t *r)
{
    return r->nintents;
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

/* Looks user up once per transaction; returns its route (answered later). */
static void lookup(proc_router_t *r, const char *user, size_t *lookups)
{
    size_t len = strlen(user);
    if (kc_map_get(r->routes, user, len))
        return;
    route_t *rt = kc_xcalloc(1, sizeof(*rt));
    rt->r = r;
    rt->slots = kc_xcalloc((size_t)r->nslots, 1);
    (void)kc_map_put(r->routes, user, len, rt);
    if (*lookups >= r->max_lookups) {
        r->stats.skipped++;
        return;
    }
    (*lookups)++;
    char key[512];
    if (kc_strlcpyf(key, sizeof(key), ROUTE_PREFIX "%s", user) != 0)
        return;
    const char *argv[] = {"HGETALL", key};
    r->waiting++;
    if (kc_redis_command(r->redis, on_reply, rt, 2, argv, NULL) != 0) {
        r->waiting--;
        r->stats.failures++;
    } else {
        r->stats.lookups++;
    }
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
        for (size_t k = 0; k < in->n; k++)
            lookup(r, in->recipients[k], &lookups);
    }
    finish_one(r);
    return 0;
}

typedef struct {
    proc_item_t *items;
    size_t n, cap;
    /* recipients of the items, one array per slot, grown as needed (the items point in) */
    char **users;
    size_t nusers, ucap;
} bucket_t;

static proc_item_t *bucket_item(bucket_t *b)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->items = kc_xrealloc(b->items, b->cap * sizeof(proc_item_t));
    }
    proc_item_t *it = &b->items[b->n++];
    memset(it, 0, sizeof(*it));
    return it;
}

size_t proc_router_slots(proc_router_t *r, int routed, proc_slot_fn fn, void *arg)
{
    bucket_t *bk = kc_xcalloc((size_t)r->nslots, sizeof(bucket_t));
    /* Recipient lists are built in two passes so the arrays the items point into never
     * move: first count, then fill. */
    size_t *need = kc_xcalloc((size_t)r->nslots, sizeof(size_t));
    int32_t *aslots = kc_xcalloc((size_t)r->nslots * (r->nintents ? r->nintents : 1),
                                 sizeof(int32_t));
    size_t *naslots = kc_xcalloc(r->nintents ? r->nintents : 1, sizeof(size_t));
    for (size_t i = 0; i < r->nintents; i++) {
        intent_t *in = &r->intents[i];
        if (in->ack_slot >= 0)
            need[in->ack_slot]++;
        for (size_t k = 0; routed && k < in->n; k++) {
            const route_t *rt = kc_map_get(r->routes, in->recipients[k], strlen(in->recipients[k]));
            for (int32_t s = 0; rt && s < r->nslots; s++)
                need[s] += rt->slots[s];
        }
    }
    for (int32_t s = 0; s < r->nslots; s++)
        if (need[s])
            bk[s].users = kc_xcalloc(need[s], sizeof(char *));
    size_t total = 0;
    unsigned char *hit = kc_xcalloc((size_t)r->nslots, 1);
    size_t *first = kc_xcalloc((size_t)r->nslots, sizeof(size_t));
    for (size_t i = 0; i < r->nintents; i++) {
        intent_t *in = &r->intents[i];
        int32_t *as = aslots + i * (size_t)r->nslots;
        const route_t *srt = routed ? kc_map_get(r->routes, in->sender, strlen(in->sender)) : NULL;
        for (int32_t s = 0; srt && s < r->nslots; s++)
            if (srt->slots[s])
                as[naslots[i]++] = s;
        memset(hit, 0, (size_t)r->nslots);
        /* The ack's slot first: its item carries the sender (other connections there get
         * the event) and the ack. */
        if (in->ack_slot >= 0) {
            bucket_t *b = &bk[in->ack_slot];
            first[in->ack_slot] = b->nusers;
            b->users[b->nusers++] = in->sender;
            hit[in->ack_slot] = 1;
        }
        for (size_t k = 0; routed && k < in->n; k++) {
            const route_t *rt = kc_map_get(r->routes, in->recipients[k], strlen(in->recipients[k]));
            int is_sender = strcmp(in->recipients[k], in->sender) == 0;
            for (int32_t s = 0; rt && s < r->nslots; s++) {
                if (!rt->slots[s] || (is_sender && s == in->ack_slot))
                    continue; /* the ack's item already names the sender */
                bucket_t *b = &bk[s];
                if (!hit[s]) {
                    first[s] = b->nusers;
                    hit[s] = 1;
                }
                b->users[b->nusers++] = in->recipients[k];
            }
        }
        for (int32_t s = 0; s < r->nslots; s++) {
            if (!hit[s])
                continue;
            proc_item_t *it = bucket_item(&bk[s]);
            it->convo_id = in->convo_id;
            it->event = in->has_event ? &in->event : NULL;
            it->recipients = bk[s].users + first[s];
            it->nrecipients = bk[s].nusers - first[s];
            it->sender = in->sender;
            it->ack = s == in->ack_slot && in->has_ack ? &in->ack : NULL;
            it->actor_slots = as;
            it->nactor_slots = naslots[i];
            total++;
        }
    }
    for (int32_t s = 0; s < r->nslots; s++) {
        if (bk[s].n && fn)
            fn(arg, s, bk[s].items, bk[s].n);
        free(bk[s].items);
        free(bk[s].users);
    }
    free(bk);
    free(need);
    free(hit);
    free(first);
    free(aslots);
    free(naslots);
    return total;
}

proc_router_stats_t proc_router_stats(const proc_router_t *r)
{
    return r->stats;
}
