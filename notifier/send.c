/* send.c - notify_outbox rows go out: Web Push requests (RFC 8030, the payload encrypted per
 * RFC 8291, VAPID per RFC 8292) and signed webhooks (Standard Webhooks), on the loop's HTTP
 * client.
 *
 * The sender claims due rows for a lease (SKIP LOCKED) and queues each behind its origin
 * (scheme://host:port): at most --origin-concurrency requests to one origin at a time, and a
 * claim leaves out the origins that are full, so a slow push service holds only its own sends
 * and never the claim budget of the others. What an answer means:
 *   2xx        taken: the row goes
 *   404, 410   the subscription is gone: the row goes, and a push subscription with it
 *   429, 5xx,  tried again after the server's Retry-After, or after a backoff with full
 *   no answer  jitter (--retry-min-ms doubling up to --retry-max-ms), while the row's deadline
 *              (--send-deadline-s from its making) allows; then it goes, counted as failed
 *   other      refused for good (a 400, a 403 of a VAPID key the subscription does not know,
 *              a 413): the row goes, counted and logged
 * A notifier killed with a request in flight sends it again once the lease lapses, with the
 * same Topic and webhook-id (the row's), so the push service replaces it and a webhook
 * receiver can drop the repeat.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/util.h"
#include "notifier.h"

#define SEND_TICK_MS 500
#define CLAIM_MAX 100
#define VAPID_TTL_S (12 * 3600) /* RFC 8292: at most 24 hours */

struct nt_send {
    nt_t *n;
    nt_origin_t *origin;
    char *id, *kind, *target, *msg_id, *topic, *urgency, *payload;
    char *endpoint, *p256dh, *auth; /* push: the subscription (NULL when it is gone) */
    int attempts;
    int64_t deadline_ms, event_at_ms;
    kc_list_node_t link; /* in origin->waiting until started */
};

static void send_free(nt_send_t *s)
{
    free(s->id);
    free(s->kind);
    free(s->target);
    free(s->msg_id);
    free(s->topic);
    free(s->urgency);
    free(s->payload);
    free(s->endpoint);
    free(s->p256dh);
    free(s->auth);
    free(s);
}

static void pump(nt_origin_t *o, nt_t *n);

/* ---- the row's fate ---- */

static void on_settled(void *arg, const PGresult *res, const char *err)
{
    nt_send_t *s = arg;
    nt_t *n = s->n;
    if (err || !res)
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("id", s->id)),
                  "cannot record a send's outcome (its lease will lapse and it goes again): %s",
                  err ? err : "no answer");
    send_free(s);
    n->queued--;
    kc_gauge_set(n->inflight_g, (double)n->queued);
    if (n->stopping) {
        nt_drained(n);
        return;
    }
    nt_send_kick(n);
}

static void settle(nt_send_t *s, const char *sql, int nparams, const char *const *params)
{
    if (kc_pg_query(s->n->pg, sql, nparams, params, on_settled, s) != 0)
        on_settled(s, NULL, "postgres is unavailable");
}

static void drop(nt_send_t *s)
{
    const char *params[] = {s->id};
    settle(s, "DELETE FROM notify_outbox WHERE id = $1::bigint", 1, params);
}

static void gone(nt_send_t *s)
{
    kc_counter_inc(s->n->fail_gone);
    if (strcmp(s->kind, "push") == 0) {
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("subscription", s->target)),
                  "a push subscription is gone: removed");
        const char *params[] = {s->id, s->target};
        settle(s,
               "WITH d AS (DELETE FROM notify_outbox WHERE id = $1::bigint)"
               " DELETE FROM push_subscriptions WHERE id = $2",
               2, params);
        return;
    }
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("origin", s->origin->origin)),
              "a webhook answered that it is gone: this send is dropped");
    drop(s);
}

/* Tries again later, or gives up at the deadline. */
static void later(nt_send_t *s, long long retry_after_s)
{
    nt_t *n = s->n;
    double r = (double)randombytes_uniform(1000000) / 1e6;
    int64_t wait = nt_retry_ms(s->attempts, retry_after_s, n->cfg.retry_min_ms,
                               n->cfg.retry_max_ms, r);
    if (kc_now_ms() + wait > s->deadline_ms) {
        kc_counter_inc(n->fail_deadline);
        kc_log_kv(KC_LOG_WARN,
                  KC_FIELDS(KC_STR("origin", s->origin->origin), KC_INT("attempts", s->attempts)),
                  "a %s was not taken before its deadline: dropped", s->kind);
        drop(s);
        return;
    }
    char ms[24];
    (void)kc_strlcpyf(ms, sizeof(ms), "%" PRId64, wait);
    const char *params[] = {s->id, ms};
    settle(s,
           "UPDATE notify_outbox SET claimed_until = NULL,"
           " next_at = now() + make_interval(secs => $2::bigint / 1000.0)"
           " WHERE id = $1::bigint",
           2, params);
}

/* A send that never went (a stop): its claim is released and its attempt not counted. */
static void release(nt_send_t *s)
{
    const char *params[] = {s->id};
    settle(s,
           "UPDATE notify_outbox SET claimed_until = NULL, attempts = greatest(attempts - 1, 0)"
           " WHERE id = $1::bigint",
           1, params);
}

static void on_answer(void *arg, const kc_httpc_result_t *res)
{
    nt_send_t *s = arg;
    nt_t *n = s->n;
    nt_origin_t *o = s->origin;
    o->inflight--;
    int push = strcmp(s->kind, "push") == 0;
    long st = res->status;
    if (!(res->error && strcmp(res->error, "cancelled") == 0))
        kc_counter_inc(n->responses[push ? 0 : 1][nt_status_class(st)]);
    if (res->error && strcmp(res->error, "cancelled") == 0) {
        release(s);
    } else if (st >= 200 && st < 300) {
        kc_counter_inc(push ? n->sent_push : n->sent_webhook);
        double lat = (double)(kc_now_ms() - s->event_at_ms) / 1000.0;
        kc_histogram_observe(push ? n->latency_push : n->latency_webhook, lat > 0 ? lat : 0);
        drop(s);
    } else if (st == 404 || st == 410) {
        gone(s);
    } else if (st == 0 || st == 429 || st >= 500) {
        kc_counter_inc(st == 0 ? n->retry_network : st == 429 ? n->retry_429 : n->retry_5xx);
        kc_log_kv(KC_LOG_INFO,
                  KC_FIELDS(KC_STR("origin", o->origin), KC_INT("status", st),
                            KC_INT("attempts", s->attempts)),
                  "a %s will be tried again: %s", s->kind, res->error ? res->error : "status");
        later(s, res->retry_after_s);
    } else {
        kc_counter_inc(n->fail_refused);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("origin", o->origin), KC_INT("status", st)),
                  "a %s was refused: dropped", s->kind);
        drop(s);
    }
    if (!n->stopping)
        pump(o, n);
}

/* ---- requests ---- */

/* POSTs body to url with the header lines h[0..nh) (freed here), answered in on_answer. */
static int post(nt_send_t *s, const char *url, kc_buf_t *h, size_t nh, const void *body,
                size_t len)
{
    const char *headers[8];
    for (size_t i = 0; i < nh; i++)
        headers[i] = h[i].data;
    kc_httpc_req_t r = {.method = "POST",
                        .url = url,
                        .headers = headers,
                        .n_headers = nh,
                        .body = body,
                        .body_len = len};
    int rc = kc_httpc_request(s->n->http, &r, on_answer, s);
    for (size_t i = 0; i < nh; i++)
        kc_buf_free(&h[i]);
    return rc;
}

static int start_push(nt_send_t *s)
{
    nt_t *n = s->n;
    if (!s->endpoint) {
        gone(s); /* unsubscribed since the send was made */
        return 1;
    }
    if (!n->vapid) {
        drop(s); /* push was turned off since */
        return 1;
    }
    kc_buf_t body = {0}, auth = {0};
    if (kc_webpush_encrypt(s->p256dh, s->auth, s->payload, strlen(s->payload), &body) != 0 ||
        kc_vapid_header(n->vapid, s->endpoint, n->cfg.vapid_subject,
                        kc_now_ms() / 1000 + VAPID_TTL_S, &auth) != 0) {
        kc_buf_free(&body);
        kc_buf_free(&auth);
        kc_counter_inc(n->fail_encrypt);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("subscription", s->target)),
                  "cannot encrypt a push for a subscription: dropped");
        drop(s);
        return 1;
    }
    kc_buf_t h[6] = {{0}};
    kc_buf_printf(&h[0], "TTL: %lld", n->cfg.push_ttl_s);
    kc_buf_printf(&h[1], "Topic: %s", s->topic);
    kc_buf_printf(&h[2], "Urgency: %s", s->urgency);
    kc_buf_puts(&h[3], "Content-Encoding: aes128gcm");
    kc_buf_puts(&h[4], "Content-Type: application/octet-stream");
    kc_buf_printf(&h[5], "Authorization: %s", auth.data);
    int rc = post(s, s->endpoint, h, 6, body.data, body.len);
    kc_buf_free(&body);
    kc_buf_free(&auth);
    return rc;
}

static int start_webhook(nt_send_t *s)
{
    nt_t *n = s->n;
    long long ts = kc_now_ms() / 1000;
    kc_buf_t sig = {0};
    if (kc_webhook_sign(n->cfg.webhook_secret, s->msg_id, ts, s->payload, strlen(s->payload),
                        &sig) != 0) {
        kc_buf_free(&sig);
        kc_counter_inc(n->fail_encrypt);
        drop(s);
        return 1;
    }
    kc_buf_t h[4] = {{0}};
    kc_buf_puts(&h[0], "Content-Type: application/json");
    kc_buf_printf(&h[1], "webhook-id: %s", s->msg_id);
    kc_buf_printf(&h[2], "webhook-timestamp: %lld", ts);
    kc_buf_printf(&h[3], "webhook-signature: %s", sig.data);
    int rc = post(s, s->target, h, 4, s->payload, strlen(s->payload));
    kc_buf_free(&sig);
    return rc;
}

/* Starts what the origin's bound allows. */
static void pump(nt_origin_t *o, nt_t *n)
{
    while (o->inflight < n->cfg.origin_concurrency && !kc_list_empty(&o->waiting)) {
        nt_send_t *s = KC_LIST_ENTRY(kc_list_pop_front(&o->waiting), nt_send_t, link);
        o->inflight++;
        int rc = strcmp(s->kind, "push") == 0 ? start_push(s) : start_webhook(s);
        if (rc == 1) {
            o->inflight--; /* settled without a request */
        } else if (rc != 0) {
            o->inflight--;
            kc_log_warn("cannot start a request: the send waits for its lease");
            release(s);
        }
    }
}

/* ---- claims ---- */

static nt_origin_t *origin_of(nt_t *n, const char *origin)
{
    nt_origin_t *o = kc_map_get(n->origins, origin, strlen(origin));
    if (!o) {
        o = kc_xcalloc(1, sizeof(*o));
        (void)kc_strlcpyf(o->origin, sizeof(o->origin), "%s", origin);
        (void)kc_map_put(n->origins, origin, strlen(origin), o);
    }
    return o;
}

static void pump_each(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    pump(val, arg);
}

static char *col(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : kc_xstrdup(PQgetvalue(res, row, c));
}

static void on_claimed(void *arg, const PGresult *res, const char *err)
{
    nt_t *n = arg;
    n->claiming = 0;
    if (err || !res) {
        kc_log_warn("cannot claim sends: %s", err ? err : "no answer");
        if (n->stopping)
            nt_drained(n);
        return;
    }
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        nt_send_t *s = kc_xcalloc(1, sizeof(*s));
        s->n = n;
        s->id = col(res, i, 0);
        s->kind = col(res, i, 1);
        s->target = col(res, i, 2);
        s->msg_id = col(res, i, 4);
        s->topic = col(res, i, 5);
        s->urgency = col(res, i, 6);
        s->payload = col(res, i, 7);
        s->attempts = (int)strtol(PQgetvalue(res, i, 8), NULL, 10);
        s->deadline_ms = strtoll(PQgetvalue(res, i, 9), NULL, 10);
        s->event_at_ms = strtoll(PQgetvalue(res, i, 10), NULL, 10);
        s->endpoint = col(res, i, 11);
        s->p256dh = col(res, i, 12);
        s->auth = col(res, i, 13);
        s->origin = origin_of(n, PQgetvalue(res, i, 3));
        n->queued++;
        if (n->stopping) {
            release(s);
            continue;
        }
        kc_list_push_back(&s->origin->waiting, &s->link);
    }
    kc_gauge_set(n->inflight_g, (double)n->queued);
    if (n->stopping) {
        nt_drained(n);
        return;
    }
    kc_map_each(n->origins, pump_each, n);
}

typedef struct {
    nt_t *n;
    kc_buf_t *b;
} full_t;

static void full_each(const void *key, size_t klen, void *val, void *a)
{
    (void)key;
    (void)klen;
    full_t *f = a;
    nt_origin_t *o = val;
    if ((long long)o->inflight + (long long)o->waiting.len >= f->n->cfg.origin_concurrency) {
        if (f->b->len > 1)
            kc_buf_putc(f->b, ',');
        kc_buf_json_qstr(f->b, o->origin, strlen(o->origin));
    }
}

static void claim(nt_t *n)
{
    if (n->claiming || n->stopping)
        return;
    long long budget = n->cfg.sends_max - (long long)n->queued;
    if (budget <= 0)
        return;
    if (budget > CLAIM_MAX)
        budget = CLAIM_MAX;
    kc_buf_t full = {0};
    kc_buf_putc(&full, '[');
    full_t f = {n, &full};
    kc_map_each(n->origins, full_each, &f);
    kc_buf_putc(&full, ']');
    char lim[24], lease[24];
    (void)kc_strlcpyf(lim, sizeof(lim), "%lld", budget);
    (void)kc_strlcpyf(lease, sizeof(lease), "%lld", n->cfg.http_timeout_ms * 2 / 1000 + 5);
    const char *params[] = {lim, lease, full.data};
    n->claiming = 1;
    if (kc_pg_query(n->pg,
                    "UPDATE notify_outbox o"
                    " SET claimed_until = now() + make_interval(secs => $2::int),"
                    "  attempts = o.attempts + 1"
                    " FROM (SELECT id FROM notify_outbox"
                    "       WHERE next_at <= now()"
                    "         AND (claimed_until IS NULL OR claimed_until < now())"
                    "         AND origin <> ALL (ARRAY(SELECT json_array_elements_text($3::json)))"
                    "       ORDER BY next_at LIMIT $1::int FOR UPDATE SKIP LOCKED) c"
                    " WHERE o.id = c.id"
                    " RETURNING o.id, o.kind, o.target, o.origin, o.msg_id, o.topic, o.urgency,"
                    "  o.payload, o.attempts, (extract(epoch FROM o.deadline) * 1000)::bigint,"
                    "  (extract(epoch FROM o.event_at) * 1000)::bigint,"
                    "  (SELECT endpoint FROM push_subscriptions s"
                    "   WHERE s.id = o.target AND o.kind = 'push'),"
                    "  (SELECT p256dh FROM push_subscriptions s"
                    "   WHERE s.id = o.target AND o.kind = 'push'),"
                    "  (SELECT auth FROM push_subscriptions s"
                    "   WHERE s.id = o.target AND o.kind = 'push')",
                    3, params, on_claimed, n) != 0)
        n->claiming = 0;
    kc_buf_free(&full);
}

static void on_send_timer(uv_timer_t *t)
{
    claim(t->data);
}

void nt_send_kick(nt_t *n)
{
    claim(n);
}

void nt_send_init(nt_t *n)
{
    n->origins = kc_map_new();
    n->send_timer.data = n;
    if (uv_timer_start(&n->send_timer, on_send_timer, SEND_TICK_MS, SEND_TICK_MS) != 0)
        nt_fail(n, "cannot start a timer");
}

static void release_waiting(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    (void)arg;
    nt_origin_t *o = val;
    kc_list_node_t *l;
    while ((l = kc_list_pop_front(&o->waiting)))
        release(KC_LIST_ENTRY(l, nt_send_t, link));
}

void nt_send_stop(nt_t *n)
{
    if (uv_is_active((uv_handle_t *)&n->send_timer) && uv_timer_stop(&n->send_timer) != 0)
        kc_log_warn("cannot stop the send timer");
    if (n->origins)
        kc_map_each(n->origins, release_waiting, NULL);
    /* what is in flight is cancelled: on_answer releases each */
    kc_httpc_close(n->http);
    n->http = NULL;
}

static void origin_free(void *v)
{
    free(v);
}

void nt_send_free(nt_t *n)
{
    kc_map_destroy(n->origins, origin_free);
    n->origins = NULL;
}
