/* out.c - the gateway's outbound half, a leaf that every other module calls and that calls
 * none of them: frames (reference-counted text shared by every connection they are queued
 * on), a connection's send queue, gw_send with its slow-consumer bound, error frames, the
 * close of a connection, and the JSON and counter helpers the frames are built with.
 *
 * Frames are only queued here: ws.c writes them in the socket's writeable callback, as
 * libwebsockets requires.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define CLOSE_GRACE_S 5 /* a closing connection that never becomes writeable is cut */

/* ---- frames ---- */

gw_frame_t *gw_frame_new(const char *json, size_t len)
{
    gw_frame_t *f = kc_xmalloc(sizeof(*f) + LWS_PRE + len + 1);
    f->refs = 1;
    f->len = len;
    memcpy(f->data + LWS_PRE, json, len);
    f->data[LWS_PRE + len] = '\0';
    return f;
}

gw_frame_t *gw_frame_from_buf(kc_buf_t *b)
{
    gw_frame_t *f = gw_frame_new(b->data ? b->data : "", b->len);
    kc_buf_reset(b);
    return f;
}

void gw_frame_unref(gw_frame_t *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* ---- the send queue ---- */

int gw_queue_push(gw_queue_t *q, gw_frame_t *f, size_t max_bytes)
{
    if (q->bytes + f->len > max_bytes)
        return -1;
    gw_qnode_t *n = kc_xmalloc(sizeof(*n));
    n->frame = f;
    f->refs++;
    kc_slist_push_back(&q->frames, &n->link);
    q->bytes += f->len;
    return 0;
}

gw_frame_t *gw_queue_peek(const gw_queue_t *q)
{
    gw_qnode_t *n = KC_SLIST_ENTRY(q->frames.first, gw_qnode_t, link);
    return n ? n->frame : NULL;
}

void gw_queue_pop(gw_queue_t *q)
{
    gw_qnode_t *n = KC_SLIST_ENTRY(kc_slist_pop_front(&q->frames), gw_qnode_t, link);
    if (!n)
        return;
    q->bytes -= n->frame->len;
    gw_frame_unref(n->frame);
    free(n);
}

void gw_queue_clear(gw_queue_t *q)
{
    while (!kc_slist_empty(&q->frames))
        gw_queue_pop(q);
}

/* ---- sending ---- */

kc_counter_t *gw_counter(gw_t *g, kc_map_t *cache, const char *name, const char *help,
                         const char *label, const char *value)
{
    size_t len = strlen(value);
    kc_counter_t *c = kc_map_get(cache, value, len);
    if (!c) {
        const char *lbl[] = {label, value, NULL};
        c = kc_metrics_counter(g->app.metrics, name, help, lbl);
        if (c)
            (void)kc_map_put(cache, value, len, c);
    }
    return c;
}

void gw_json_kv(kc_buf_t *b, int comma, const char *key, const char *val, size_t len)
{
    if (comma)
        kc_buf_putc(b, ',');
    kc_buf_putc(b, '"');
    kc_buf_puts(b, key);
    kc_buf_puts(b, "\":\"");
    kc_buf_json_str(b, val, len);
    kc_buf_putc(b, '"');
}

int gw_send(gw_t *g, gw_conn_t *c, gw_frame_t *f, const char *type)
{
    if (!c->established || c->close_code)
        return -1;
    if (gw_queue_push(&c->q, f, (size_t)g->cfg.max_queued_bytes) != 0) {
        kc_counter_inc(g->m.queue_drops);
        kc_counter_inc(g->m.slow_closes);
        kc_log_kv(KC_LOG_WARN,
                  KC_FIELDS(KC_STR("user_id", c->sub), KC_INT("conn", c->id),
                            KC_INT("queued_bytes", c->q.bytes)),
                  "slow consumer: send queue full, closing");
        gw_close(g, c, GW_CLOSE_SLOW_CONSUMER, "slow consumer: send queue full");
        return -1;
    }
    g->turn_bytes += f->len;
    kc_counter_inc(gw_counter(g, g->m.frames_out, "kchat_gateway_frames_out_total",
                              "Frames queued to clients, by type.", "type", type));
    lws_callback_on_writable(c->wsi);
    return 0;
}

int gw_send_buf(gw_t *g, gw_conn_t *c, kc_buf_t *b, const char *type)
{
    gw_frame_t *f = gw_frame_from_buf(b);
    int rc = gw_send(g, c, f, type);
    gw_frame_unref(f);
    return rc;
}

void gw_error_frame(kc_buf_t *b, const char *code, const char *message, const char *extra)
{
    kc_buf_puts(b, "{\"type\":\"error\",\"error\":{");
    gw_json_kv(b, 0, "code", code, strlen(code));
    gw_json_kv(b, 1, "message", message, strlen(message));
    kc_buf_putc(b, '}');
    if (extra && *extra) {
        kc_buf_putc(b, ',');
        kc_buf_puts(b, extra);
    }
    kc_buf_putc(b, '}');
}

void gw_send_error(gw_t *g, gw_conn_t *c, const char *code, const char *message, const char *extra)
{
    kc_buf_t b = {0};
    gw_error_frame(&b, code, message, extra);
    (void)gw_send_buf(g, c, &b, "error");
    kc_buf_free(&b);
}

/* ---- closing ---- */

/* Every code the gateway closes a connection with (gw_close, and close_now in ws.c). */
static const int close_codes[] = {
    LWS_CLOSE_STATUS_GOINGAWAY,           /* 1001: the gateway stops */
    LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, /* 1003: a binary frame */
    LWS_CLOSE_STATUS_INVALID_PAYLOAD,     /* 1007: invalid UTF-8 */
    LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,   /* 1009: over max-frame-bytes */
    GW_CLOSE_TOKEN_EXPIRED,               /* 4001 */
    GW_CLOSE_REVOKED,                     /* 4003 */
    GW_CLOSE_SLOW_CONSUMER,               /* 4008 */
};

static kc_counter_t *close_counter(gw_t *g, int code)
{
    char s[16];
    kc_strlcpyf(s, sizeof(s), "%d", code);
    const char *lbl[] = {"code", s, NULL};
    return kc_metrics_counter(g->app.metrics, "kchat_gateway_closes_total",
                              "Connections closed by the gateway, by close code.", lbl);
}

void gw_count_close_init(gw_t *g)
{
    for (size_t i = 0; i < KC_ARRAY_LEN(close_codes); i++)
        (void)close_counter(g, close_codes[i]);
}

void gw_count_close(gw_t *g, int code)
{
    kc_counter_inc(close_counter(g, code));
}

void gw_close(gw_t *g, gw_conn_t *c, int code, const char *reason)
{
    (void)g;
    if (c->close_code)
        return;
    c->close_code = code;
    c->close_reason = reason;
    if (code == GW_CLOSE_SLOW_CONSUMER)
        gw_queue_clear(&c->q); /* what it could not read is dropped; the close goes first */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
    lws_callback_on_writable(c->wsi);
}
