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
 * gateway already got the ack with the event, so the sender is left out on that slot.
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

/* Remembers an event for recipients (copied). */
void proc_router_add(proc_router_t *r, const char *convo_id, size_t convo_len,
                     const kc_buf_t *event, char *const *recipients, size_t n,
                     const char *sender, size_t sender_len, int32_t origin_slot);
size_t proc_router_pending(const proc_router_t *r);

/* Looks up the routes of every recipient noted, then calls done(arg) once. Returns 0, or
 * -ENOTCONN / -ENOENT (nothing to look up) without calling done. */
int proc_router_resolve(proc_router_t *r, int64_t now_ms, void (*done)(void *arg), void *arg);

typedef void (*proc_route_fn)(void *arg, int32_t slot, const char *convo_id, size_t convo_len,
                              char *const *recipients, size_t n, const kc_buf_t *event);
/* After resolve: one call per (event, slot holding some of its recipients). */
void proc_router_each(proc_router_t *r, proc_route_fn fn, void *arg);
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
