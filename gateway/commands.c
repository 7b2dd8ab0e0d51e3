/* commands.c - client frames that change state become Commands on chat.commands (Avro,
 * Confluent framing, keyed by convo_id, idempotent producer with acks=all), with origin
 * "gateway:<slot>" so the processor answers on this gateway's slot of chat.deliveries.
 *
 * A message.send is acked only when the processor's answer comes back (deliveries.c): the
 * ack rides in the same Kafka transaction as the event, so an ack means durable. Until then
 * the send waits in `pending`, keyed by (sender, client_msg_id), first in first out (a
 * client may retry while the first attempt is in flight: each attempt gets its own ack, the
 * later ones "duplicate"). A pending send is settled by its ack, by a failed produce (ack
 * error "unavailable"), or after ack-timeout-ms (ack error "timeout": the outcome is
 * unknown, and a retry with the same client_msg_id is safe because the processor
 * deduplicates). An entry is freed once settled.
 *
 * The producer reports only failed deliveries (delivery.report.only.error): a success needs no
 * word, since the ack comes from the processor, and a report per request woke the loop once
 * per message. A report names what it is about by a number, never a pointer, so an entry
 * settled before its report is simply not found: a send by its entry's seq, found on
 * pending_all; a read marker, edit or delete by its connection's id.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

struct gw_pending {
    gw_pending_t *next_same; /* FIFO of the same key */
    kc_list_node_t all;      /* on g->pending_all */
    uint64_t conn_id;
    uint64_t t0_ns;
    uint64_t seq; /* names it in a delivery report */
    char *client_msg_id; /* points into key */
    size_t klen;
    char key[]; /* sender \0 client_msg_id \0 */
};

void gw_commands_init(gw_t *g)
{
    g->pending = kc_map_new();
}

void gw_commands_destroy(gw_t *g)
{
    for (kc_list_node_t *n; (n = kc_list_pop_front(&g->pending_all));)
        free(KC_LIST_ENTRY(n, gw_pending_t, all));
    kc_map_destroy(g->pending, NULL);
    g->pending = NULL;
}

static void count_ack(gw_t *g, const char *status)
{
    kc_counter_inc(gw_counter(g, g->m.acks, "kchat_gateway_acks_total",
                              "Acks sent to clients, by status.", "status", status));
}

void gw_ack_error(gw_t *g, gw_conn_t *c, const char *client_msg_id, const char *code,
                  const char *message)
{
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"ack\",");
    gw_json_kv(&b, 0, "client_msg_id", client_msg_id, strlen(client_msg_id));
    kc_buf_puts(&b, ",\"status\":\"error\",\"error\":{");
    gw_json_kv(&b, 0, "code", code, strlen(code));
    gw_json_kv(&b, 1, "message", message, strlen(message));
    kc_buf_puts(&b, "}}");
    (void)gw_send_buf(g, c, &b, "ack");
    kc_buf_free(&b);
    count_ack(g, "error");
}

/* Unlinks p from its key's FIFO and from the creation-order list and frees it. */
static void settle(gw_t *g, gw_pending_t *p)
{
    gw_pending_t *head = kc_map_get(g->pending, p->key, p->klen);
    if (head == p) {
        if (p->next_same)
            (void)kc_map_put(g->pending, p->key, p->klen, p->next_same);
        else
            (void)kc_map_remove(g->pending, p->key, p->klen);
    } else {
        for (gw_pending_t *q = head; q; q = q->next_same)
            if (q->next_same == p) {
                q->next_same = p->next_same;
                break;
            }
    }
    kc_list_remove(&g->pending_all, &p->all);
    p->next_same = NULL;
    gw_conn_t *c = gw_conn_find(g, p->conn_id);
    if (c && c->inflight)
        c->inflight--;
    free(p);
}

static int produce(gw_t *g, const char *convo_id, kc_buf_t *val, void *opaque)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        g->producer.rk, RD_KAFKA_V_RKT(g->commands_rkt),
        RD_KAFKA_V_KEY(convo_id, strlen(convo_id)), RD_KAFKA_V_VALUE(val->data, val->len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err) {
        kc_counter_inc(g->m.produce_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("convo_id", convo_id)), "produce failed: %s",
                  rd_kafka_err2str(err));
        return -1;
    }
    kc_counter_inc(g->m.commands_produced);
    return 0;
}

/* A command of this connection's user through this gateway, its body filled by the caller,
 * framed into out (kchat/chat.h's writer). */
static void command_encode(gw_t *g, gw_conn_t *c, const char *convo_id, kc_chat_command_t *cmd,
                           kc_buf_t *out)
{
    char id[37];
    kc_uuid4(id);
    cmd->command_id = (kc_str_t){id, 36};
    cmd->convo_id = (kc_str_t){convo_id, strlen(convo_id)};
    cmd->sender_id = (kc_str_t){c->sub, strlen(c->sub)};
    cmd->issued_at = kc_now_ms();
    cmd->origin = (kc_str_t){g->origin, strlen(g->origin)};
    kc_chat_command_encode(out, g->command_schema_id, cmd);
}

/* Publishes a SendMessage whose limits were checked (atts: its attachments' Avro bytes). */
static void send_message(gw_t *g, gw_conn_t *c, const char *convo_id, const char *client_msg_id,
                         const char *content, size_t content_len, int64_t reply_to,
                         kc_chat_atts_t atts)
{
    kc_buf_t out = {0};
    kc_chat_command_t cmd = {.kind = KC_CMD_SEND_MESSAGE,
                             .client_msg_id = {client_msg_id, strlen(client_msg_id)},
                             .content = {content, content_len},
                             .content_type = {"text/plain", 10},
                             .reply_to = reply_to,
                             .has_reply_to = reply_to > 0,
                             .attachments = atts};
    command_encode(g, c, convo_id, &cmd, &out);
    size_t slen = strlen(c->sub), mlen = strlen(client_msg_id);
    gw_pending_t *p = kc_xcalloc(1, sizeof(*p) + slen + mlen + 2);
    memcpy(p->key, c->sub, slen);
    memcpy(p->key + slen + 1, client_msg_id, mlen);
    p->klen = slen + 1 + mlen;
    p->client_msg_id = p->key + slen + 1;
    p->conn_id = c->id;
    p->t0_ns = kc_mono_ns();
    p->seq = ++g->next_pending_seq;
    if (produce(g, convo_id, &out, (void *)(uintptr_t)(p->seq << 1)) != 0) {
        free(p);
        kc_buf_free(&out);
        gw_ack_error(g, c, client_msg_id, "unavailable",
                     "the message could not be queued: retry with the same client_msg_id");
        return;
    }
    kc_buf_free(&out);
    gw_pending_t *head = kc_map_get(g->pending, p->key, p->klen);
    if (head) {
        while (head->next_same)
            head = head->next_same;
        head->next_same = p;
    } else {
        (void)kc_map_put(g->pending, p->key, p->klen, p);
    }
    kc_list_push_back(&g->pending_all, &p->all);
    c->inflight++;
}

/* A message.send with attachments, while Postgres finds them: the frame's fields, copied. */
typedef struct {
    gw_t *g;
    uint64_t conn;
    int64_t reply_to;
    size_t natt, content_len;
    char convo[GW_ID_MAX + 1];
    char client_msg_id[GW_ID_MAX * 2 + 1];
    char content[]; /* content_len bytes and a NUL */
} send_q_t;

static void on_attachments(void *arg, const PGresult *res, const char *err)
{
    send_q_t *q = arg;
    gw_t *g = q->g;
    gw_conn_t *c = gw_conn_find(g, q->conn);
    if (!c) {
        free(q); /* closed meanwhile */
        return;
    }
    if (c->inflight)
        c->inflight--; /* the lookup's place; the message takes its own below */
    int rows = err ? 0 : PQntuples(res);
    if (err || PQnfields(res) != 8) {
        gw_ack_error(g, c, q->client_msg_id, "unavailable",
                     "the attachments could not be checked: retry with the same client_msg_id");
        free(q);
        return;
    }
    /* The rows come in the order the client gave (the ids are distinct); every id must have
     * its row. */
    kc_chat_attachment_t atts[KC_CHAT_MAX_ATTACHMENTS];
    size_t n = 0;
    for (int at = 0; at < rows && n < KC_CHAT_MAX_ATTACHMENTS; at++) {
        kc_chat_attachment_t *a = &atts[n++];
        memset(a, 0, sizeof(*a));
        a->id = (kc_str_t){PQgetvalue(res, at, 0), (size_t)PQgetlength(res, at, 0)};
        a->key = (kc_str_t){PQgetvalue(res, at, 1), (size_t)PQgetlength(res, at, 1)};
        a->name = (kc_str_t){PQgetvalue(res, at, 2), (size_t)PQgetlength(res, at, 2)};
        a->size = strtoll(PQgetvalue(res, at, 3), NULL, 10);
        a->content_type = (kc_str_t){PQgetvalue(res, at, 4), (size_t)PQgetlength(res, at, 4)};
        if (!PQgetisnull(res, at, 5) && !PQgetisnull(res, at, 6)) {
            a->width = (int32_t)strtol(PQgetvalue(res, at, 5), NULL, 10);
            a->height = (int32_t)strtol(PQgetvalue(res, at, 6), NULL, 10);
        }
        if (!PQgetisnull(res, at, 7))
            a->thumb_key = (kc_str_t){PQgetvalue(res, at, 7), (size_t)PQgetlength(res, at, 7)};
    }
    if (n < q->natt) {
        gw_ack_error(g, c, q->client_msg_id, "invalid_attachment",
                     "an attachment is unknown, not yours, of another conversation, not "
                     "completed, or too old to send");
    } else if (c->inflight >= (unsigned)g->cfg.max_inflight) {
        gw_ack_error(g, c, q->client_msg_id, "too_many_in_flight",
                     "too many messages wait for their ack: retry after the acks");
    } else {
        kc_buf_t raw = {0};
        kc_chat_atts_put(&raw, atts, n);
        send_message(g, c, q->convo, q->client_msg_id, q->content, q->content_len, q->reply_to,
                     (kc_chat_atts_t){raw.data, raw.len, n});
        kc_buf_free(&raw);
    }
    free(q);
}

void gw_cmd_send_message(gw_t *g, gw_conn_t *c, const gw_in_t *in)
{
    if (gw_rate_take(g, c) != 0) {
        gw_ack_error(g, c, in->client_msg_id, "rate_limited",
                     "too many messages: slow down and retry with the same client_msg_id");
        return;
    }
    if (c->inflight >= (unsigned)g->cfg.max_inflight) {
        gw_ack_error(g, c, in->client_msg_id, "too_many_in_flight",
                     "too many messages wait for their ack: retry after the acks");
        return;
    }
    if (!in->natt) {
        send_message(g, c, in->convo_id, in->client_msg_id, in->content, in->content_len,
                     in->reply_to, (kc_chat_atts_t){0});
        return;
    }
    send_q_t *q = kc_xcalloc(1, sizeof(*q) + in->content_len + 1);
    q->g = g;
    q->conn = c->id;
    q->reply_to = in->reply_to;
    q->content_len = in->content_len;
    memcpy(q->content, in->content, in->content_len);
    (void)kc_strlcpyf(q->convo, sizeof(q->convo), "%s", in->convo_id);
    (void)kc_strlcpyf(q->client_msg_id, sizeof(q->client_msg_id), "%s", in->client_msg_id);
    q->natt = in->natt;
    kc_buf_t arr = {0};
    kc_pg_text_array(&arr, (const char *const *)in->att_ids, in->natt);
    /* Uploads of this sender for this conversation, checked by the API against the stored
     * object, and still within their time to be sent (send_by). */
    const char *params[] = {arr.data, in->convo_id, c->sub};
    if (kc_pg_query(g->pg,
                    "SELECT id, key, name, size, content_type, width, height, thumb_key "
                    "FROM uploads WHERE id = ANY($1::text[]) AND convo_id = $2 AND "
                    "user_id = $3 AND checked_at IS NOT NULL AND removed_at IS NULL AND "
                    "send_by > now() ORDER BY array_position($1::text[], id)",
                    3, params, on_attachments, q) != 0) {
        free(q);
        gw_ack_error(g, c, in->client_msg_id, "unavailable",
                     "the attachments could not be checked: retry with the same client_msg_id");
    } else {
        c->inflight++; /* the lookup holds a place among the messages in flight */
    }
    kc_buf_free(&arr);
}

/* Commands whose outcome the connection learns from the events (no ack), with the frame
 * each comes from: the in_reply_to of an error about it, whether the gateway refuses it, the
 * producer fails it or the processor rejects it (deliveries.c, by the command's name). A
 * delivery report's failure tells the connection: its id shifted left, tagged by the low bit
 * (a send's number is shifted left and never has it), the row of this table above it. */
#define TAG_ROW_BITS 3
static const struct {
    kc_chat_command_kind_t kind;
    const char *frame;
} UNACKED[] = {
    {KC_CMD_SET_READ_MARKER, "message.read"},
    {KC_CMD_EDIT_MESSAGE, "message.edit"},
    {KC_CMD_DELETE_MESSAGE, "message.delete"},
    {KC_CMD_UPDATE_CONVERSATION, "conversation.update"},
    {KC_CMD_REMOVE_MEMBERS, "member.remove"},
    {KC_CMD_SET_ROLE, "member.role"},
    {KC_CMD_ADD_MEMBERS, "member.add"},
    {KC_CMD_SET_REACTION, "message.react"},
};
_Static_assert(KC_ARRAY_LEN(UNACKED) <= 1u << TAG_ROW_BITS, "a row fits its tag bits");

const char *gw_unacked_frame(const char *command_type, size_t n)
{
    for (size_t i = 0; i < KC_ARRAY_LEN(UNACKED); i++) {
        const char *name = kc_chat_command_kind_name(UNACKED[i].kind);
        if (strlen(name) == n && memcmp(name, command_type, n) == 0)
            return UNACKED[i].frame;
    }
    return NULL;
}

static void unacked_error(gw_t *g, gw_conn_t *c, size_t row, const char *code, const char *msg)
{
    char in_reply_to[48];
    kc_strlcpyf(in_reply_to, sizeof(in_reply_to), "\"in_reply_to\":\"%s\"", UNACKED[row].frame);
    gw_send_error(g, c, code, msg, in_reply_to);
}

static size_t unacked_row(kc_chat_command_kind_t kind)
{
    size_t row = 0;
    while (UNACKED[row].kind != kind)
        row++;
    return row;
}

/* Produces a command without an ack, tagged with its connection and row so that a failed
 * delivery report reaches the client as an error in reply to its frame. */
static void produce_unacked(gw_t *g, gw_conn_t *c, const char *convo_id, kc_chat_command_t *cmd)
{
    size_t row = unacked_row(cmd->kind);
    kc_buf_t out = {0};
    command_encode(g, c, convo_id, cmd, &out);
    uintptr_t tag = ((uintptr_t)c->id << (TAG_ROW_BITS + 1)) | ((uintptr_t)row << 1) | 1;
    if (produce(g, convo_id, &out, (void *)tag) != 0)
        unacked_error(g, c, row, "unavailable", "the change could not be queued");
    kc_buf_free(&out);
}

static void command_unacked(gw_t *g, gw_conn_t *c, const char *convo_id,
                            kc_chat_command_t *cmd)
{
    if (gw_rate_take(g, c) != 0) {
        unacked_error(g, c, unacked_row(cmd->kind), "rate_limited",
                      "too many frames: slow down");
        return;
    }
    produce_unacked(g, c, convo_id, cmd);
}

void gw_cmd_read_marker(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t seq_no)
{
    kc_chat_command_t cmd = {.kind = KC_CMD_SET_READ_MARKER, .seq_no = seq_no};
    command_unacked(g, c, convo_id, &cmd);
}

void gw_cmd_change_message(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t seq_no,
                           const char *content, size_t content_len)
{
    kc_chat_command_t cmd = {.kind = content ? KC_CMD_EDIT_MESSAGE : KC_CMD_DELETE_MESSAGE,
                             .seq_no = seq_no};
    if (content)
        cmd.content = (kc_str_t){content, content_len};
    command_unacked(g, c, convo_id, &cmd);
}

void gw_cmd_manage(gw_t *g, gw_conn_t *c, const gw_in_t *in)
{
    kc_chat_command_t cmd = {0};
    const char *one[1] = {in->user_id};
    switch (in->kind) {
    case GW_IN_CONVO_UPDATE:
        cmd.kind = KC_CMD_UPDATE_CONVERSATION;
        cmd.title = kc_str(in->title);
        cmd.topic = kc_str(in->topic);
        break;
    case GW_IN_MEMBER_REMOVE:
        cmd.kind = KC_CMD_REMOVE_MEMBERS;
        cmd.members_out = one;
        cmd.nmembers_out = 1;
        break;
    case GW_IN_MEMBER_ROLE:
        cmd.kind = KC_CMD_SET_ROLE;
        cmd.user_id = kc_str(in->user_id);
        cmd.role = in->role;
        break;
    case GW_IN_REACT:
        cmd.kind = KC_CMD_SET_REACTION;
        cmd.seq_no = in->seq_no;
        cmd.emoji = kc_str(in->emoji);
        break;
    default: return;
    }
    command_unacked(g, c, in->convo_id, &cmd);
}

/* member.add waits for Postgres to say the users exist. */
typedef struct {
    gw_t *g;
    uint64_t conn;
    size_t n;
    char convo[GW_ID_MAX + 1];
    char *ids[]; /* n copies */
} add_q_t;

static void add_q_free(add_q_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->ids[i]);
    free(q);
}

static void on_users(void *arg, const PGresult *res, const char *err)
{
    add_q_t *q = arg;
    gw_t *g = q->g;
    gw_conn_t *c = gw_conn_find(g, q->conn);
    size_t row = unacked_row(KC_CMD_ADD_MEMBERS);
    if (!c) {
        add_q_free(q); /* closed meanwhile */
        return;
    }
    if (err || PQntuples(res) != 1) {
        unacked_error(g, c, row, "unavailable", "the users could not be checked: retry");
    } else if (strtoll(PQgetvalue(res, 0, 0), NULL, 10) != (long long)q->n) {
        unacked_error(g, c, row, "unknown_user", "user_ids must be registered users");
    } else {
        kc_chat_command_t cmd = {.kind = KC_CMD_ADD_MEMBERS,
                                 .members_out = (const char *const *)q->ids,
                                 .nmembers_out = q->n};
        produce_unacked(g, c, q->convo, &cmd);
    }
    add_q_free(q);
}

void gw_cmd_add_members(gw_t *g, gw_conn_t *c, const gw_in_t *in)
{
    size_t row = unacked_row(KC_CMD_ADD_MEMBERS);
    if (gw_rate_take(g, c) != 0) {
        unacked_error(g, c, row, "rate_limited", "too many frames: slow down");
        return;
    }
    /* The distinct ids, as a Postgres array literal of quoted elements (ids have no quote
     * or backslash: kc_id_valid). */
    add_q_t *q = kc_xcalloc(1, sizeof(*q) + in->nuser_ids * sizeof(char *));
    q->g = g;
    q->conn = c->id;
    kc_strlcpyf(q->convo, sizeof(q->convo), "%s", in->convo_id);
    for (size_t i = 0; i < in->nuser_ids; i++) {
        int dup = 0;
        for (size_t k = 0; k < q->n && !dup; k++)
            dup = strcmp(q->ids[k], in->user_ids[i]) == 0;
        if (!dup)
            q->ids[q->n++] = kc_xstrdup(in->user_ids[i]);
    }
    kc_buf_t arr = {0};
    kc_pg_text_array(&arr, (const char *const *)q->ids, q->n);
    const char *params[] = {arr.data};
    if (kc_pg_query(g->pg, "SELECT count(*) FROM users WHERE user_id = ANY($1::text[])", 1,
                    params, on_users, q) != 0) {
        add_q_free(q);
        unacked_error(g, c, row, "unavailable", "the users could not be checked: retry");
    }
    kc_buf_free(&arr);
}

uint64_t gw_pending_take(gw_t *g, const char *sender, const char *client_msg_id, double *latency_s)
{
    size_t slen = strlen(sender), mlen = strlen(client_msg_id);
    if (slen + mlen + 1 > 2 * GW_ID_MAX + 1)
        return 0;
    char key[2 * GW_ID_MAX + 2];
    memcpy(key, sender, slen);
    key[slen] = '\0';
    memcpy(key + slen + 1, client_msg_id, mlen);
    gw_pending_t *p = kc_map_get(g->pending, key, slen + 1 + mlen);
    if (!p)
        return 0;
    uint64_t id = p->conn_id;
    *latency_s = (double)(kc_mono_ns() - p->t0_ns) / 1e9;
    settle(g, p);
    return id;
}

void gw_pending_expire(gw_t *g)
{
    uint64_t limit = (uint64_t)g->cfg.ack_timeout_ms * 1000000u, now = kc_mono_ns();
    gw_pending_t *p;
    while ((p = KC_LIST_ENTRY(g->pending_all.first, gw_pending_t, all)) &&
           now - p->t0_ns >= limit) {
        gw_conn_t *c = gw_conn_find(g, p->conn_id);
        if (c)
            gw_ack_error(g, c, p->client_msg_id, "timeout",
                         "no answer in time: the outcome is unknown; retry with the same "
                         "client_msg_id");
        settle(g, p);
    }
}

void gw_producer_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    gw_t *g = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    if (!m->err)
        return;
    kc_counter_inc(g->m.produce_errors);
    if (tag & 1) {
        gw_conn_t *c = gw_conn_find(g, (uint64_t)(tag >> (TAG_ROW_BITS + 1)));
        size_t row = (size_t)(tag >> 1) & ((1u << TAG_ROW_BITS) - 1);
        if (c && row < KC_ARRAY_LEN(UNACKED))
            unacked_error(g, c, row, "unavailable", "the change could not be written");
        return;
    }
    /* a send: its entry, unless its ack or its timeout settled it already. pending_all is in
     * creation order, so in increasing seq: the walk stops at the first later one, and the
     * failures of an outage, reported in the order the records were produced, are each
     * found near the front. */
    uint64_t seq = (uint64_t)(tag >> 1);
    gw_pending_t *p = NULL;
    KC_LIST_FOREACH(n, &g->pending_all)
    {
        gw_pending_t *q = KC_LIST_ENTRY(n, gw_pending_t, all);
        if (q->seq >= seq) {
            p = q->seq == seq ? q : NULL;
            break;
        }
    }
    if (p) {
        gw_conn_t *c = gw_conn_find(g, p->conn_id);
        if (c)
            gw_ack_error(g, c, p->client_msg_id, "unavailable",
                         "the message could not be written: retry with the same client_msg_id");
        settle(g, p);
    }
}
