/* deliveries.c - this gateway's slot of chat.deliveries in, frames out.
 *
 * A Delivery record holds the deliveries of one processor transaction for this slot, in
 * order (version 2: items; version 1: one delivery). Each names a conversation, the
 * recipients on this slot and the event's bytes as written to chat.events; when it answers a
 * message.send of one of our users it also holds the ack. The ack goes to the connection
 * that sent the message; the event, decoded once into one shared frame, goes to every
 * connection of every recipient, except the sending connection for an acked message (its
 * ack carries seq_no and server_msg_id; the sender's other devices get the message.create).
 * Recipients without a connection here (they left, or a stale route) are skipped: they
 * backfill with sync. Delivery receipts for the senders are gathered per sender slot while a
 * turn lasts and published once per slot at its end (presence.c).
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/chat.h"
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
    int rejected_other; /* CommandRejected of anything but SendMessage: an error frame */
} ev_frame_t;

static void put_long(kc_buf_t *b, const char *key, int64_t v)
{
    kc_buf_printf(b, ",\"%s\":%lld", key, (long long)v);
}

static void put_str(kc_buf_t *b, const char *key, kc_str_t s)
{
    gw_json_kv(b, 1, key, s.p, s.n);
}

/* A string, or null when absent. */
static void put_opt_str(kc_buf_t *b, const char *key, kc_str_t s)
{
    if (s.p)
        put_str(b, key, s);
    else
        kc_buf_printf(b, ",\"%s\":null", key);
}

static int put_members(kc_buf_t *b, const kc_chat_event_t *ev)
{
    kc_chat_strs_t it = ev->members;
    kc_str_t s;
    int rc, first = 1;
    kc_buf_puts(b, ",\"members\":[");
    while ((rc = kc_chat_strs_next(&it, &s)) == 1) {
        if (!first)
            kc_buf_putc(b, ',');
        first = 0;
        kc_buf_putc(b, '"');
        kc_buf_json_str(b, s.p, s.n);
        kc_buf_putc(b, '"');
    }
    kc_buf_putc(b, ']');
    return rc;
}

/* Builds the frame of an event. 0, or -1 when the event cannot be read. */
static int event_frame(const kc_chat_event_t *ev, ev_frame_t *out)
{
    kc_buf_t *b = &out->json;
    kc_str_t convo = ev->convo_id, actor = ev->actor_id;
    switch (ev->kind) {
    case KC_EV_MESSAGE_CREATED:
        out->type = "message.create";
        out->seq_no = ev->seq_no;
        kc_buf_puts(b, "{\"type\":\"message.create\"");
        put_str(b, "convo_id", convo);
        put_long(b, "seq_no", ev->seq_no);
        put_str(b, "sender_id", actor);
        put_str(b, "server_msg_id", ev->server_msg_id);
        put_str(b, "client_msg_id", ev->client_msg_id);
        put_str(b, "content", ev->content);
        put_str(b, "content_type", ev->content_type);
        put_long(b, "created_at", ev->occurred_at);
        if (ev->has_reply_to)
            put_long(b, "reply_to", ev->reply_to);
        if (ev->attachments.count) {
            kc_buf_puts(b, ",\"attachments\":");
            kc_chat_atts_json(b, ev->attachments);
        }
        break;
    case KC_EV_MESSAGE_EDITED:
        out->type = "message.update";
        kc_buf_puts(b, "{\"type\":\"message.update\"");
        put_str(b, "convo_id", convo);
        put_long(b, "seq_no", ev->seq_no);
        put_str(b, "content", ev->content);
        put_str(b, "editor_id", actor);
        put_long(b, "edited_at", ev->occurred_at);
        break;
    case KC_EV_MESSAGE_DELETED:
        out->type = "message.delete";
        kc_buf_puts(b, "{\"type\":\"message.delete\"");
        put_str(b, "convo_id", convo);
        put_long(b, "seq_no", ev->seq_no);
        put_str(b, "deleted_by", actor);
        put_long(b, "deleted_at", ev->occurred_at);
        break;
    case KC_EV_REACTION_CHANGED:
        out->type = "message.reaction";
        kc_buf_puts(b, "{\"type\":\"message.reaction\"");
        put_str(b, "convo_id", convo);
        put_long(b, "seq_no", ev->seq_no);
        put_str(b, "user_id", actor);
        put_opt_str(b, "emoji", ev->emoji);
        put_opt_str(b, "previous", ev->previous);
        kc_buf_puts(b, ",\"reactions\":[");
        for (size_t i = 0; i < ev->ncounts; i++) {
            kc_buf_puts(b, i ? ",{" : "{");
            gw_json_kv(b, 0, "emoji", ev->counts[i].emoji.p, ev->counts[i].emoji.n);
            kc_buf_printf(b, ",\"count\":%d}", (int)ev->counts[i].count);
        }
        kc_buf_putc(b, ']');
        put_long(b, "at", ev->occurred_at);
        break;
    case KC_EV_READ_MARKER_SET:
        out->type = "message.read";
        kc_buf_puts(b, "{\"type\":\"message.read\"");
        put_str(b, "convo_id", convo);
        put_str(b, "user_id", actor);
        put_long(b, "seq_no", ev->seq_no);
        put_long(b, "read_at", ev->occurred_at);
        break;
    case KC_EV_CONVERSATION_CREATED:
    case KC_EV_MEMBERS_ADDED:
    case KC_EV_MEMBERS_REMOVED: {
        out->type = "conversation.update";
        const char *change = ev->kind == KC_EV_CONVERSATION_CREATED ? "created"
                             : ev->kind == KC_EV_MEMBERS_ADDED      ? "members_added"
                                                                    : "members_removed";
        kc_buf_puts(b, "{\"type\":\"conversation.update\"");
        put_str(b, "convo_id", convo);
        gw_json_kv(b, 1, "change", change, strlen(change));
        if (ev->kind == KC_EV_CONVERSATION_CREATED)
            put_str(b, "title", ev->title);
        if (put_members(b, ev) != 0)
            return -1;
        if (ev->kind == KC_EV_MEMBERS_REMOVED) {
            put_long(b, "left_seq", ev->seq_no);
            if (ev->promoted.p)
                put_str(b, "promoted", ev->promoted);
        }
        put_str(b, "actor_id", actor);
        put_long(b, "at", ev->occurred_at);
        break;
    }
    case KC_EV_CONVERSATION_UPDATED:
    case KC_EV_ROLE_CHANGED: {
        out->type = "conversation.update";
        int upd = ev->kind == KC_EV_CONVERSATION_UPDATED;
        const char *change = upd ? "updated" : "role";
        kc_buf_puts(b, "{\"type\":\"conversation.update\"");
        put_str(b, "convo_id", convo);
        gw_json_kv(b, 1, "change", change, strlen(change));
        if (upd && ev->title.p)
            put_str(b, "title", ev->title);
        if (upd && ev->topic.p)
            put_str(b, "topic", ev->topic);
        if (!upd) {
            const char *role = kc_role_name(ev->role);
            put_str(b, "user_id", ev->user_id);
            gw_json_kv(b, 1, "role", role, strlen(role));
        }
        put_str(b, "actor_id", actor);
        put_long(b, "at", ev->occurred_at);
        break;
    }
    case KC_EV_COMMAND_REJECTED: {
        kc_str_t ct = ev->command_type;
        if (ct.n == 11 && memcmp(ct.p, "SendMessage", 11) == 0)
            return 0; /* the ack says it */
        out->type = "error";
        out->rejected_other = 1;
        const char *what = gw_unacked_frame(ct.p, ct.n);
        if (!what)
            what = "command";
        kc_buf_puts(b, "{\"type\":\"error\",\"error\":{");
        gw_json_kv(b, 0, "code", ev->reason.p, ev->reason.n);
        put_str(b, "message", ev->message);
        kc_buf_putc(b, '}');
        gw_json_kv(b, 1, "in_reply_to", what, strlen(what));
        put_str(b, "convo_id", convo);
        kc_buf_putc(b, '}');
        return 0;
    }
    }
    kc_buf_putc(b, '}');
    return 0;
}

static void send_ack(gw_t *g, const kc_chat_ack_t *a, kc_str_t convo, uint64_t *acked_conn)
{
    if (a->sender_id.n > GW_ID_MAX || a->client_msg_id.n > GW_ID_MAX)
        return;
    char sbuf[GW_ID_MAX + 1], mbuf[GW_ID_MAX + 1];
    memcpy(sbuf, a->sender_id.p, a->sender_id.n);
    sbuf[a->sender_id.n] = '\0';
    memcpy(mbuf, a->client_msg_id.p, a->client_msg_id.n);
    mbuf[a->client_msg_id.n] = '\0';
    double lat = 0;
    uint64_t id = gw_pending_take(g, sbuf, mbuf, &lat);
    gw_conn_t *c = id ? gw_conn_find(g, id) : NULL;
    if (!c)
        return; /* the sender left, or the wait timed out: its retry will be answered */
    *acked_conn = id;
    kc_histogram_observe(g->m.ack_latency, lat);
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"ack\"");
    put_str(&b, "client_msg_id", a->client_msg_id);
    put_str(&b, "status", a->status);
    put_str(&b, "convo_id", convo);
    if (a->server_msg_id.p)
        put_str(&b, "server_msg_id", a->server_msg_id);
    if (a->has_seq)
        put_long(&b, "seq_no", a->seq_no);
    if (a->error_code.p) {
        kc_buf_puts(&b, ",\"error\":{");
        gw_json_kv(&b, 0, "code", a->error_code.p, a->error_code.n);
        gw_json_kv(&b, 1, "message", a->error_message.p ? a->error_message.p : "",
                   a->error_message.p ? a->error_message.n : 0);
        kc_buf_putc(&b, '}');
    }
    kc_buf_putc(&b, '}');
    char st[16];
    kc_strlcpyf(st, sizeof(st), "%.*s", (int)(a->status.n < 15 ? a->status.n : 15), a->status.p);
    kc_counter_inc(gw_counter(g, g->m.acks, "kchat_gateway_acks_total",
                              "Acks sent to clients, by status.", "status", st));
    (void)gw_send_buf(g, c, &b, "ack");
    kc_buf_free(&b);
}

/* One delivery: the ack, then the event to the recipients' connections. */
static void deliver(gw_t *g, const kc_chat_item_t *it)
{
    if (it->convo_id.n > GW_ID_MAX) {
        kc_counter_inc(g->m.delivery_errors);
        return;
    }
    char convo[GW_ID_MAX + 1];
    memcpy(convo, it->convo_id.p, it->convo_id.n);
    convo[it->convo_id.n] = '\0';
    uint64_t acked_conn = 0;
    if (it->has_ack)
        send_ack(g, &it->ack, it->convo_id, &acked_conn);
    if (!it->event)
        return;
    kc_chat_event_t ev;
    char err[256];
    if (kc_chat_event_decode(g->schemas, it->event, it->event_len, &ev, err, sizeof(err)) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)), "undecodable event in a delivery");
        return;
    }
    ev_frame_t f = {0};
    if (event_frame(&ev, &f) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("convo_id", convo)), "unreadable event");
        kc_buf_free(&f.json);
        return;
    }
    if (!f.type) {
        kc_buf_free(&f.json);
        return;
    }
    char actor[GW_ID_MAX + 1];
    kc_strlcpyf(actor, sizeof(actor), "%.*s",
                (int)(ev.actor_id.n > GW_ID_MAX ? GW_ID_MAX : ev.actor_id.n), ev.actor_id.p);
    gw_frame_t *frame = gw_frame_from_buf(&f.json);
    double lat = (double)(kc_now_ms() - ev.occurred_at) / 1000.0;
    kc_chat_strs_t recs = it->recipients;
    kc_str_t r;
    while (kc_chat_strs_next(&recs, &r) == 1) {
        gw_user_t *u = gw_user_find(g, r.p, r.n);
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
            if (!is_actor) {
                gw_receipt_delivered(g, actor, convo, f.seq_no, u->id, it->actor_slots,
                                     it->nactor_slots);
                gw_delivered_note(g, convo, strlen(convo), u->id, f.seq_no);
            }
        }
    }
    gw_frame_unref(frame);
    kc_buf_free(&f.json);
}

static void handle(gw_t *g, const void *data, size_t len)
{
    kc_chat_delivery_t d;
    char err[256];
    if (kc_chat_delivery_open(g->schemas, data, len, &d, err, sizeof(err)) != 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)), "undecodable delivery");
        return;
    }
    kc_chat_item_t it;
    int rc;
    while ((rc = kc_chat_delivery_next(&d, &it)) == 1)
        deliver(g, &it);
    if (rc < 0) {
        kc_counter_inc(g->m.delivery_errors);
        kc_log_warn("malformed delivery record: the rest of it is skipped");
    }
}

int gw_on_deliveries(void *arg)
{
    gw_t *g = arg;
    g->turn_bytes = 0;
    int more = 1;
    for (int i = 0; i < POLL_BATCH && g->turn_bytes < TURN_BYTES; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g->consumer.rk, 0);
        if (!m) {
            more = 0;
            break;
        }
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        } else if (!m->err) {
            kc_counter_inc(g->m.deliveries_consumed);
            if (m->payload && m->len)
                handle(g, m->payload, m->len);
        }
        rd_kafka_message_destroy(m);
    }
    gw_receipts_flush(g);
    return more;
}
