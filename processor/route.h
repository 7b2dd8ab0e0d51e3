/* route.h - fan-out of events to the gateway slots of their recipients, batched per slot.
 *
 * Gateways keep a presence registry in Redis: for each connected user a hash
 * kchat:route:<user_id> whose fields are slot numbers and whose values are the time (ms since
 * the epoch) until which the registration holds; a gateway refreshes its entries while the
 * user stays connected, so a crashed gateway's entries lapse by themselves.
 *
 * During a transaction the processor notes each event to fan out and each ack
 * (proc_router_add), in command order. Before the commit it looks up every recipient once
 * (pipelined HGETALLs), then proc_router_slots() hands out, per slot, the ordered list of
 * items for that slot: one record per slot per transaction (or a few, when large) instead of
 * one per event and recipient slot. The ack of a message rides in the same item as the event
 * for the sender's slot, and every slot's items keep the order of the commands, so a slot
 * never sees seq n+1 (an ack) before seq n (a fan-out).
 * Routing is an optimisation of delivery, never a condition of correctness: a recipient the
 * lookup misses (not yet registered, Redis down, too many lookups) notices the seq_no gap
 * and backfills from history.
 */
#ifndef KCHAT_PROC_ROUTE_H
#define KCHAT_PROC_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/buf.h"
#include "kchat/redis.h"

typedef struct proc_router proc_router_t;

/* The answer to a message.send, for the sender's connection. Strings are copied by
 * proc_router_add; server_msg_id, error_code and error_message may be NULL. */
typedef struct {
    const char *client_msg_id;
    const char *status; /* ok, duplicate, error */
    const char *server_msg_id;
    int64_t seq_no;
    int has_seq;
    const char *error_code, *error_message;
} proc_ack_t;

/* One delivery for one slot: the event (NULL for an ack alone) for the recipients on that
 * slot, the ack when the sender's command came through it, and the slots of the event's
 * actor (for delivery receipts). Valid until proc_router_reset. */
typedef struct {
    const char *convo_id;
    const kc_buf_t *event;
    char *const *recipients;
    size_t nrecipients;
    const char *sender;    /* the actor */
    const proc_ack_t *ack; /* NULL when none */
    const int32_t *actor_slots;
    size_t nactor_slots;
} proc_item_t;

/* redis may be NULL (no fan-out). max_lookups bounds the users looked up per transaction. */
proc_router_t *proc_router_new(kc_redis_t *redis, int32_t nslots, size_t max_lookups);
void proc_router_destroy(proc_router_t *r);

/* Remembers, in order, an event (may be NULL: an ack alone) for `recipients`, and, when the
 * command came through a gateway (origin_slot >= 0), an item for the sender on that slot
 * with the ack (NULL: none, e.g. a refused read marker, whose event tells the sender why).
 * Everything is copied. */
void proc_router_add(proc_router_t *r, const char *convo_id, size_t convo_len,
                     const kc_buf_t *event, char *const *recipients, size_t n,
                     const char *sender, size_t sender_len, int32_t origin_slot,
                     const proc_ack_t *ack);
/* Events noted that have recipients to look up. */
size_t proc_router_pending(const proc_router_t *r);
/* Items noted (events with recipients, acks). */
size_t proc_router_count(const proc_router_t *r);

/* Looks up the routes of every recipient noted, then calls done(arg) once. Returns 0, or
 * -ENOTCONN / -ENOENT (nothing to look up) without calling done. */
int proc_router_resolve(proc_router_t *r, int64_t now_ms, void (*done)(void *arg), void *arg);

/* For each slot with something to deliver, in slot order: fn(arg, slot, items, n), the
 * items in the order noted. Without a resolve (routed = 0), only the acks go out, each with
 * its event for the sender's other connections on that slot. Returns the number of items
 * handed out. */
typedef void (*proc_slot_fn)(void *arg, int32_t slot, const proc_item_t *items, size_t n);
size_t proc_router_slots(proc_router_t *r, int routed, proc_slot_fn fn, void *arg);
/* Stops a resolve in flight from calling done (the answers still arriving are counted and
 * dropped). */
void proc_router_cancel(proc_router_t *r);
/* Forgets the events and routes (after the commit, or when routing is skipped). */
void proc_router_reset(proc_router_t *r);

/* Counters since creation. */
typedef struct {
    unsigned long long lookups, failures, skipped;
} proc_router_stats_t;
proc_router_stats_t proc_router_stats(const proc_router_t *r);

#endif
