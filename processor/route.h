/* route.h - fan-out of events to the gateway slots of their recipients.
 *
 * Gateways keep a presence registry in Redis: for each connected user a hash
 * kchat:route:<user_id> whose fields are slot numbers and whose values are the time (ms since
 * the epoch) until which the registration holds; a gateway refreshes its entries while the
 * user stays connected, so a crashed gateway's entries lapse by themselves.
 *
 * During a transaction the processor notes each event to fan out (proc_router_add); before
 * the commit it looks up every recipient once (pipelined HGETALLs), then writes one delivery
 * per slot that holds recipients (proc_router_each) in the same transaction. The sender's
 * ack (which carries the event to the sender's connections) waits in the same list, so every
 * slot gets the deliveries of a batch in the order of its events, acks included: a slot never
 * sees seq n+1 (an ack) before seq n (a fan-out). The sender is left out of the fan-out on
 * the slot that gets the ack.
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

/* redis may be NULL (no fan-out). max_lookups bounds the users looked up per transaction. */
proc_router_t *proc_router_new(kc_redis_t *redis, int32_t nslots, size_t max_lookups);
void proc_router_destroy(proc_router_t *r);

/* Remembers, in order, an event for recipients and/or the sender's ack delivery (ack_slot
 * < 0 or an empty ack: none), all copied. */
void proc_router_add(proc_router_t *r, const char *convo_id, size_t convo_len,
                     const kc_buf_t *event, char *const *recipients, size_t n,
                     const char *sender, size_t sender_len, int32_t origin_slot,
                     const kc_buf_t *ack, int32_t ack_slot);
/* Events noted that have recipients to look up. */
size_t proc_router_pending(const proc_router_t *r);

/* Looks up the routes of every recipient noted, then calls done(arg) once. Returns 0, or
 * -ENOTCONN / -ENOENT (nothing to look up) without calling done. */
int proc_router_resolve(proc_router_t *r, int64_t now_ms, void (*done)(void *arg), void *arg);

typedef void (*proc_route_fn)(void *arg, int32_t slot, const char *convo_id, size_t convo_len,
                              char *const *recipients, size_t n, const kc_buf_t *event);
typedef void (*proc_ack_fn)(void *arg, int32_t slot, const char *convo_id, size_t convo_len,
                            const kc_buf_t *delivery);
/* In the order noted: ack_fn for each ack, then (fn non-NULL, after a resolve) fn once per
 * slot holding some of the event's recipients. Without a resolve, only the acks go out. */
void proc_router_each(proc_router_t *r, proc_route_fn fn, proc_ack_fn ack_fn, void *arg);
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
