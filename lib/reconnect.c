/* reconnect.c - state, backoff, connect deadline and health of a reconnecting connection. */
#include "kchat/reconnect.h"

#include <sodium.h>

#include "kchat/log.h"

#define NS_PER_MS 1000000u

void kc_reconn_init(kc_reconn_t *rc, const kc_reconn_opts_t *opts, kc_health_t *health,
                    const char *check_name)
{
    *rc = (kc_reconn_t){.opts = *opts, .state = KC_RECONN_DISCONNECTED, .health = health};
    if (rc->opts.backoff_min_ms == 0)
        rc->opts.backoff_min_ms = KC_RECONN_BACKOFF_MIN_MS;
    if (rc->opts.backoff_max_ms == 0)
        rc->opts.backoff_max_ms = KC_RECONN_BACKOFF_MAX_MS;
    if (rc->opts.backoff_min_ms < 1)
        rc->opts.backoff_min_ms = 1;
    if (rc->opts.backoff_max_ms < rc->opts.backoff_min_ms)
        rc->opts.backoff_max_ms = rc->opts.backoff_min_ms;
    if (rc->opts.jitter_pct < 0)
        rc->opts.jitter_pct = 0;
    if (rc->opts.jitter_pct > 100)
        rc->opts.jitter_pct = 100;
    if (rc->opts.connect_timeout_ms < 1)
        rc->opts.connect_timeout_ms = 1;
    rc->backoff_ms = rc->opts.backoff_min_ms;
    rc->check = health ? kc_health_add(health, check_name) : -1;
}

void kc_reconn_connecting(kc_reconn_t *rc, uint64_t now_ns)
{
    if (rc->state == KC_RECONN_CLOSED)
        return;
    rc->state = KC_RECONN_CONNECTING;
    rc->deadline_ns = now_ns + (uint64_t)rc->opts.connect_timeout_ms * NS_PER_MS;
}

void kc_reconn_ready(kc_reconn_t *rc)
{
    if (rc->state == KC_RECONN_CLOSED)
        return;
    rc->state = KC_RECONN_READY;
    rc->backoff_ms = rc->opts.backoff_min_ms;
    rc->attempts = 0;
    kc_health_set(rc->health, rc->check, 1, "connected");
}

void kc_reconn_alive(kc_reconn_t *rc)
{
    if (rc->state == KC_RECONN_READY)
        kc_health_set(rc->health, rc->check, 1, "connected");
}

/* The delay of this loss: the backoff, less up to jitter_pct of it. */
static int jittered(const kc_reconn_t *rc)
{
    int d = rc->backoff_ms;
    uint32_t spread = (uint32_t)((long long)d * rc->opts.jitter_pct / 100);
    return spread ? d - (int)randombytes_uniform(spread + 1) : d;
}

int kc_reconn_lost(kc_reconn_t *rc, uint64_t now_ns, const char *why)
{
    if (rc->state == KC_RECONN_CLOSED)
        return -1;
    int delay = jittered(rc);
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("retry_ms", delay)), "%s: %s", rc->opts.lost_msg,
              why);
    kc_health_set(rc->health, rc->check, 0, why);
    rc->state = KC_RECONN_DISCONNECTED;
    rc->retry_at_ns = now_ns + (uint64_t)delay * NS_PER_MS;
    rc->attempts++;
    rc->backoff_ms =
        rc->backoff_ms > rc->opts.backoff_max_ms / 2 ? rc->opts.backoff_max_ms : rc->backoff_ms * 2;
    return delay;
}

void kc_reconn_close(kc_reconn_t *rc)
{
    if (rc->state == KC_RECONN_CLOSED)
        return;
    rc->state = KC_RECONN_CLOSED;
    kc_health_set(rc->health, rc->check, 0, "closed");
}

kc_reconn_due_t kc_reconn_due(const kc_reconn_t *rc, uint64_t now_ns)
{
    if (rc->state == KC_RECONN_DISCONNECTED && now_ns >= rc->retry_at_ns)
        return KC_RECONN_CONNECT;
    if (rc->state == KC_RECONN_CONNECTING && now_ns >= rc->deadline_ns)
        return KC_RECONN_TIMED_OUT;
    return KC_RECONN_WAIT;
}
