/* deliveries.c - this gateway's slot of chat.deliveries in, frames out.
 *
 * A Delivery names a conversation, the recipients on this slot and the event's bytes as
 * written to chat.events; when it answers a message.send of one of our users it also holds
 * the ack. The ack goes to the connection that sent the message; the event, decoded once
 * into one shared frame, goes to every connection of every recipient, except the sending
 * connection for an acked message (its ack carries seq_no and server_msg_id; the sender's
 * other devices get the message.create). Recipients without a connection here (they left,
 * or a stale route) are skipped: they backfill with sync.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define POLL_BATCH 500
/* Frames queued in one loop turn before the loop is given back to the sockets: a burst of
 * big messages (a processor transaction holds up to batch-max) must drain to the readers
 * as it arrives, not pile up in every queue at once and close them all as slow. */
#define TURN_BYTES (256 * 1024)

typedef struct {
    const char *type; /* the frame's type, NULL when the event makes no frame */
    kc_buf_t json;
    int64_t seq_no; /* message.create: its seq_no, else 0 */
    int64_t occurred_at;
    const char *actor; /* valid while the event's value lives */
    size_t actor_len;
    int rejected_other; /* CommandRejected of anything but SendMessage: an error frame */
} ev_frame_t;

static void put_long(kc_buf_t *b, const char *key, int64_t v)
{
    kc_buf_printf(b, ",\"%s\":%lld", key, (long long)v);
}

static int put_str(gw_t *g, kc_buf_t *b, avro_value_t *rec, const char *field, const char *key)
{
    const char *s;
    size_t n;
    if (kc_avro_get_str(g->schemas, rec, field, &s, &n) != 0)
        return -1;
    gw_json_kv(b, 1, key, s, n);
    return 0;
}

static int put_members(kc_buf_t *b, avro_value_t *body)
{
    avro_value_t arr;
    size_t n;
    if (kc_avro_get_array(body, "members", &arr, &n) != 0)
        return -1;
    kc_buf_puts(b, ",\"members\":[");
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (kc_avro_array_str(&arr, i, &s, &len) != 0)
            return -1;
        if (i)
            kc_buf_putc(b, ',');
        kc_buf_putc(b, '"');
        kc_buf_json_str(b, s, len);
        kc_buf_putc(b, '"');
    }
    kc_buf_putc(b, ']');
    return 0;
}

/* Builds the frame of an event. 0, or -1 when the event cannot be read. */
static int event_frame(gw_t *g, avro_value_t *ev, ev_frame_t *out)
{
    const char *convo, *name;
    size_t clen;
    int64_t at, seq;
    avro_value_t body;
    if (kc_avro_get_str(g->schemas, ev, "convo_id", &convo, &clen) != 0 ||
        kc_avro_get_str(g->schemas, ev, "actor_id", &out->actor, &out->actor_len) != 0 ||
        kc_avro_get_long(g->schemas, ev, "occurred_at", &at) != 0 ||
        kc_avro_get_branch(ev, "body", &name, &body) != 0)
        return -1;
    out->occurred_at = at;
    kc_buf_t *b = &out->json;
    if (strcmp(name, "MessageCreated") == 0) {
        out->type = "message.create";
        if (kc_avro_get_long(g->schemas, &body, "seq_no", &seq) != 0)
            return -1;
        out->seq_no = seq;
        kc_buf_puts(b, "{\"type\":\"message.create\"");
        gw_json_kv(b, 1, "convo_id", convo, clen);
        put_long(b, "seq_no", seq);
        gw_json_kv(b, 1, "sender_id", out->actor, out->actor_len);
        if (put_str(g, b, &body, "server_msg_id", "server_msg_id") ||
            put_str(g, b, &body, "client_msg_id", "client_msg_id") ||
            put_str(g, b, &body, "content", "content") ||
            put_str(g, b, &body, "content_type", "content_type"))
            return -1;
        put_long(b, "created_at", at);
    } else if (strcmp(name, "MessageEdited") == 0) {
        out->type = "message.update";
        if (kc_avro_get_long(g->schemas, &body, "seq_no", &seq) != 0)
            return -1;
        kc_buf_puts(b, "{\"type\":\"message.update\"");
        gw_json_kv(b, 1, "convo_id", convo, clen);
        put_long(b, "seq_no", seq);
        if (put_str(g, b, &body, "content", "content"))
            return -1;
        gw_json_kv(b, 1, "editor_id", out->actor, out->actor_len);
        put_long(b, "edited_at", at);
    } else if (strcmp(name, "MessageDeleted") == 0) {
        out->type = "message.delete";
        if (kc_avro_get_long(g->schemas, &body, "seq_no", &seq) != 0)
            return -1;
        kc_buf_puts(b, "{\"type\":\"message.delete\"");
        gw_json_kv(b, 1, "convo_id", convo, clen);
        put_long(b, "seq_no", seq);
        gw_json_kv(b, 1, "deleted_by", out->actor, out->actor_len);
        put_long(b, "deleted_at", at);
    } else if (strcmp(name, "ReadMarkerSet") == 0) {
        out->type = "message.read";
        if (kc_avro_get_long(g->schemas, &body, "seq_no", &seq) != 0)
            return -1;
        kc_buf_puts(b, "{\"type\":\"message.read\"");
        gw_json_kv(b, 1, "convo_id", convo, clen);
        gw_json_kv(b, 1, "user_id", out->actor, out->actor_len);
        put_long(b, "seq_no", seq);
        put_long(b, "read_at", at);
    } else if (strcmp(name, "ConversationCreated") == 0 || strcmp(name, "MembersAdded") == 0 ||
               strcmp(name, "MembersRemoved") == 0) {
        out->type = "conversation.update";
        const char *change = name[0] == 'C'   ? "created"
                             : name[7] == 'A' ? "members_added"
                                              : "members_removed";
        kc_buf_puts(b, "{\"type\":\"conversation.update\"");
        gw_json_kv(b, 1, "convo_id", convo, clen);
        gw_json_kv(b, 1, "change", change, strlen(change));
        if (name[0] == 'C' && put_str(g, b, &body, "title", "title"))
            return -1;
        if (put_members(b, &body) != 0)
            return -1;
        gw_json_kv(b, 1, "actor_id", out->actor, out->actor_len);
        put_long(b, "at", at);
    } else if (strcmp(name, "CommandRejected") == 0) {
        const char *ct;
        size_t ctlen;
        if (kc_avro_get_str(g->schemas, &body, "command_type", &ct, &ctlen) != 0)
            return -1;
        if (ctlen == 11 && memcmp(ct, "SendMessage", 11) == 0)
            return 0; /* the ack says it */
        out->type = "error";
        out->rejected_other = 1;
        const char *what =
            ctlen == 13 && memcmp(ct, "SetReadMarker", 13) == 0 ? "message.read" : "command";
        const char *reason, *msg;
        size_t rlen, mlen;
        if (kc_avro_get_str(g->schemas, &body, "reason", &reason, &rlen) != 0 ||
            kc_avro_get_str(g->schemas, &body, "message", &msg, &mlen) != 0)
            return -1;
        kc_buf_puts(b, "{\"type\":\"error\",\"error\":{");
        gw_json_kv(b, 0, "code", reason, rlen);
        gw_json_kv(b, 1, "message", msg, mlen);
        kc_buf_putc(b, '}');
        gw_json_kv(b, 1, "in_reply_to", what, strlen(what));
        gw_json_kv(b, 1, "convo_id", convo, clen);
        kc_buf_putc(b, '}');
        return 0;
    } else {
        return 0; /* a newer event kind: nothing to show yet */
    }
    kc_buf_putc(b, '}');
    return 0;
}

static void send_ack(gw_t *g, avro_value_t *ack, const char *convo, uint64_t *acked_conn)
{
    const char *sender, *cmid, *status, *smid = NULL, *code = NULL, *msg = NULL;
    size_t slen, mlen, stlen, smlen = 0, codelen = 0, msglen = 0;
    int64_t seq = 0;
    int have_seq = 0;
    if (kc_avro_get_str(g->schemas, ack, "sender_id", &sender, &slen) != 0 ||
        kc_avro_get_str(g->schemas, ack, "client_msg_id", &cmid, &mlen) != 0 ||
        kc_avro_get_str(g->schemas, ack, "status", &status, &stlen) != 0 ||
        kc_avro_get_opt_str(g->schemas, ack, "server_msg_id", &smid, &smlen) != 0 ||
        kc_avro_get_opt_long(g->schemas, ack, "seq_no", &seq, &have_seq) != 0 ||
        kc_avro_get_opt_str(g->schemas, ack, "error_code", &code, &codelen) != 0 ||
        kc_avro_get_opt_str(g->schemas, ack, "error_message", &msg, &msglen) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        return;
    }
    char sbuf[GW_ID_MAX + 1], mbuf[GW_ID_MAX + 1];
    if (slen > GW_ID_MAX || mlen > GW_ID_MAX)
        return;
    memcpy(sbuf, sender, slen);
    sbuf[slen] = '\0';
    memcpy(mbuf, cmid, mlen);
    mbuf[mlen] = '\0';
    double lat = 0;
    uint64_t id = gw_pending_take(g, sbuf, mbuf, &lat);
    gw_conn_t *c = id ? gw_conn_find(g, id) : NULL;
    if (!c)
        return; /* the sender left, or the wait timed out: its retry will be answered */
    *acked_conn = id;
    kc_histogram_observe(g->m.ack_latency, lat);
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"ack\"");
    gw_json_kv(&b, 1, "client_msg_id", cmid, mlen);
    gw_json_kv(&b, 1, "status", status, stlen);
    gw_json_kv(&b, 1, "convo_id", convo, strlen(convo));
    if (smid)
        gw_json_kv(&b, 1, "server_msg_id", smid, smlen);
    if (have_seq)
        put_long(&b, "seq_no", seq);
    if (code) {
        kc_buf_puts(&b, ",\"error\":{");
        gw_json_kv(&b, 0, "code", code, codelen);
        gw_json_kv(&b, 1, "message", msg ? msg : "", msg ? msglen : 0);
        kc_buf_putc(&b, '}');
    }
    kc_buf_putc(&b, '}');
    char st[16];
    kc_strlcpyf(st, sizeof(st), "%.*s", (int)(stlen < 15 ? stlen : 15), status);
    const char *lbl[] = {"status", st, NULL};
    kc_counter_inc(kc_metrics_counter(g->app.metrics, "kchat_gateway_acks_total",
                                      "Acks sent to clients, by status.", lbl));
    (void)gw_send_buf(g, c, &b, "ack");
    kc_buf_free(&b);
}

static void handle(gw_t *g, const void *data, size_t len)
{
    kc_avro_msg_t d, e;
    char err[256];
    int have_e = 0;
    ev_frame_t f = {0};
    if (kc_avro_decode(g->schemas, data, len, &d, err, sizeof(err)) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)), "undecodable delivery");
        return;
    }
    const char *convo_p, *ackname;
    size_t clen, nrec;
    avro_value_t recs, ack;
    const void *evbytes = NULL;
    size_t evlen = 0;
    char convo[GW_ID_MAX + 1];
    if (strcmp(d.subject, "chat.deliveries-value") != 0 ||
        kc_avro_get_str(g->schemas, &d.value, "convo_id", &convo_p, &clen) != 0 ||
        clen > GW_ID_MAX || kc_avro_get_array(&d.value, "recipients", &recs, &nrec) != 0 ||
        kc_avro_get_opt_bytes(g->schemas, &d.value, "event", &evbytes, &evlen) != 0 ||
        kc_avro_get_branch(&d.value, "ack", &ackname, &ack) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_warn("delivery without the fields of a Delivery");
        goto out;
    }
    memcpy(convo, convo_p, clen);
    convo[clen] = '\0';
    uint64_t acked_conn = 0;
    if (strcmp(ackname, "Ack") == 0)
        send_ack(g, &ack, convo, &acked_conn);
    if (!evbytes)
        goto out;
    if (kc_avro_decode(g->schemas, evbytes, evlen, &e, err, sizeof(err)) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)), "undecodable event in a delivery");
        goto out;
    }
    have_e = 1;
    if (event_frame(g, &e.value, &f) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("convo_id", convo)), "unreadable event");
        goto out;
    }
    if (!f.type)
        goto out;
    char actor[GW_ID_MAX + 1];
    kc_strlcpyf(actor, sizeof(actor), "%.*s",
                (int)(f.actor_len > GW_ID_MAX ? GW_ID_MAX : f.actor_len), f.actor);
    gw_frame_t *frame = gw_frame_from_buf(&f.json);
    double lat = (double)(kc_now_ms() - f.occurred_at) / 1000.0;
    for (size_t i = 0; i < nrec; i++) {
        const char *r;
        size_t rlen;
        if (kc_avro_array_str(&recs, i, &r, &rlen) != 0)
            continue;
        gw_user_t *u = gw_user_find(g, r, rlen);
        if (!u)
            continue;
        int is_actor = strcmp(u->id, actor) == 0;
        if (f.rejected_other && !is_actor)
            continue;
        int reached = 0;
        for (gw_conn_t *c = u->conns; c; c = c->next_of_user) {
            if (c->id == acked_conn)
                continue;
            if (gw_send(g, c, frame, f.type) == 0) {
                reached = 1;
                if (f.seq_no)
                    gw_sync_note_live(c, convo, f.seq_no);
            }
        }
        if (reached && f.seq_no) {
            kc_histogram_observe(g->m.delivery_latency, lat < 0 ? 0 : lat);
            if (!is_actor)
                gw_receipt_delivered(g, actor, convo, f.seq_no, u->id);
        }
    }
    gw_frame_unref(frame);
out:
    kc_buf_free(&f.json);
    if (have_e)
        kc_avro_msg_free(&e);
    kc_avro_msg_free(&d);
}

int gw_on_deliveries(void *arg)
{
    gw_t *g = arg;
    g->turn_bytes = 0;
    for (int i = 0; i < POLL_BATCH && g->turn_bytes < TURN_BYTES; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g->consumer.rk, 0);
        if (!m)
            return 0;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        } else if (!m->err) {
            kc_counter_inc(g->m.deliveries_consumed);
            if (m->payload && m->len)
                handle(g, m->payload, m->len);
        }
        rd_kafka_message_destroy(m);
    }
    return 1;
}
