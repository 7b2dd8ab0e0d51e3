/* reconnect.h - the life of a connection that makes itself again: its state, the backoff
 * between attempts, the connect deadline and its health check.
 *
 * The Redis command connection, the Redis subscriber and the Postgres connection each own a
 * kc_reconn_t and tell it what happens to their socket; it decides when the next attempt is
 * due and keeps the health check and the log in step:
 *
 *   DISCONNECTED --kc_reconn_connecting--> CONNECTING --kc_reconn_ready--> READY
 *        ^                                     |                             |
 *        +-------------- kc_reconn_lost <------+-----------------------------+
 *   any state --kc_reconn_close--> CLOSED (for good: kc_reconn_lost does nothing then)
 *
 * The delay after a loss starts at backoff_min_ms and doubles with every loss up to
 * backoff_max_ms; a connection that becomes ready starts again from backoff_min_ms. With
 * jitter_pct > 0 a delay d is drawn from [d - d * jitter_pct / 100, d], so clients that lost
 * the same server together spread their attempts without ever waiting longer. A connect
 * attempt that is not ready within connect_timeout_ms is due to be dropped.
 *
 * Pure logic: the caller passes the monotonic time (kc_mono_ns) and runs the timers, either
 * a periodic tick that asks kc_reconn_due, or one-shot timers of the delays returned.
 * Health: the check (registered by kc_reconn_init) fails with the reason while the
 * connection is down, is ok "connected" once ready (and again with every kc_reconn_alive,
 * for an answered ping), and fails with "closed" after close.
 */
#ifndef KCHAT_RECONNECT_H
#define KCHAT_RECONNECT_H

#include <stdint.h>

#include "kchat/health.h"

typedef enum {
    KC_RECONN_DISCONNECTED,
    KC_RECONN_CONNECTING,
    KC_RECONN_READY,
    KC_RECONN_CLOSED,
} kc_reconn_state_t;

/* The backoff of every kchat connection: 0 in the options below stands for these. */
#define KC_RECONN_BACKOFF_MIN_MS 100
#define KC_RECONN_BACKOFF_MAX_MS 5000

typedef struct {
    const char *lost_msg;   /* the warning logged on a loss, "<lost_msg>: <why>" (a literal) */
    int backoff_min_ms;     /* 0: KC_RECONN_BACKOFF_MIN_MS */
    int backoff_max_ms;     /* 0: KC_RECONN_BACKOFF_MAX_MS; at least backoff_min_ms */
    int jitter_pct;         /* 0..100; 0 (none) for the connections in lib/ */
    int connect_timeout_ms; /* > 0 */
} kc_reconn_opts_t;

typedef struct {
    kc_reconn_opts_t opts;
    kc_reconn_state_t state;
    int backoff_ms;        /* the delay after the next loss, before jitter */
    unsigned attempts;     /* losses since the connection was last ready */
    uint64_t retry_at_ns;  /* DISCONNECTED: when the next attempt is due */
    uint64_t deadline_ns;  /* CONNECTING: when the attempt is given up */
    kc_health_t *health;   /* may be NULL */
    int check;
} kc_reconn_t;

/* What kc_reconn_due says is to be done now. */
typedef enum { KC_RECONN_WAIT, KC_RECONN_CONNECT, KC_RECONN_TIMED_OUT } kc_reconn_due_t;

/* Starts DISCONNECTED with the first attempt due at once; registers the health check
 * check_name with health (which may be NULL). */
void kc_reconn_init(kc_reconn_t *rc, const kc_reconn_opts_t *opts, kc_health_t *health,
                    const char *check_name);
/* An attempt has started: CONNECTING, with its deadline connect_timeout_ms from now. */
void kc_reconn_connecting(kc_reconn_t *rc, uint64_t now_ns);
/* The attempt succeeded: READY, the backoff starts again, the check is ok "connected". */
void kc_reconn_ready(kc_reconn_t *rc);
/* A ping was answered: the check is ok "connected" again. */
void kc_reconn_alive(kc_reconn_t *rc);
/* The connection (or the attempt) is gone because of why: logs a warning with the delay
 * ("retry_ms"), fails the check with why, goes DISCONNECTED with the next attempt due after
 * the delay, and doubles the backoff. Returns the delay in ms, or -1 when closed (nothing
 * done then). */
int kc_reconn_lost(kc_reconn_t *rc, uint64_t now_ns, const char *why);
/* For good: CLOSED, the check fails with "closed". */
void kc_reconn_close(kc_reconn_t *rc);
/* CONNECT when DISCONNECTED and the next attempt is due, TIMED_OUT when CONNECTING past the
 * deadline, WAIT otherwise. */
kc_reconn_due_t kc_reconn_due(const kc_reconn_t *rc, uint64_t now_ns);

static inline int kc_reconn_is_ready(const kc_reconn_t *rc)
{
    return rc->state == KC_RECONN_READY;
}

#endif
