/* sync.c - backfill after a reconnect: sync {convo_id, since_seq} answers with the
 * conversation's messages after since_seq from the Postgres read model (rm.messages, in
 * seq_no order, at most sync-max-messages), then sync.complete {convo_id, up_to_seq, more}.
 *
 * Live deliveries keep flowing meanwhile and are never held back. To spare the client
 * doubles, each connection remembers the last LIVE_RING seq_nos it was sent live (by
 * conversation), and the backfill skips those; the client still dedupes by seq_no, which is
 * what makes it exact (a connection that got more than LIVE_RING live messages during one
 * sync may see a message twice, never miss one). Membership is checked in the same read
 * model (rm.members): a user may not backfill a conversation they are not in.
 *
 * A page is also cut by bytes: it stops before the socket's send queue would hold more than
 * half of max-queued-bytes, and says `more`, so a backfill never makes the gateway close the
 * socket as a slow consumer. The client asks for the next page once it has read this one
 * (sync.complete comes after the page's frames), so the queue has drained by then.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define LIVE_RING 128
#define MAX_SYNCS 8 /* syncs in flight per connection */

typedef struct gw_live {
    uint64_t convo[LIVE_RING];
    int64_t seq[LIVE_RING];
    unsigned next, n;
} gw_live_t;

/* Queries in flight carry the connection's id, never its pointer. */
typedef struct {
    gw_t *g;
    uint64_t conn;
    int64_t since;
    int64_t last_seq; /* the conversation's last seq_no in the read model */
    int member; /* set by the membership query, read by the messages query */
    int failed;
    int orphan; /* the messages query could not be queued: on_member frees q */
    char convo[GW_ID_MAX + 1];
} sync_q_t;

static uint64_t fnv64(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void gw_sync_note_live(gw_conn_t *c, const char *convo_id, int64_t seq_no)
{
    if (!c->live)
        c->live = kc_xcalloc(1, sizeof(gw_live_t));
    gw_live_t *l = c->live;
    l->convo[l->next] = fnv64(convo_id);
    l->seq[l->next] = seq_no;
    l->next = (l->next + 1) % LIVE_RING;
    if (l->n < LIVE_RING)
        l->n++;
}

static int live_has(const gw_conn_t *c, uint64_t h, int64_t seq)
{
    const gw_live_t *l = c->live;
    for (unsigned i = 0; l && i < l->n; i++)
        if (l->seq[i] == seq && l->convo[i] == h)
            return 1;
    return 0;
}

static int64_t live_max(const gw_conn_t *c, uint64_t h)
{
    const gw_live_t *l = c->live;
    int64_t m = 0;
    for (unsigned i = 0; l && i < l->n; i++)
        if (l->convo[i] == h && l->seq[i] > m)
            m = l->seq[i];
    return m;
}

void gw_sync_forget(gw_conn_t *c)
{
    free(c->live);
    c->live = NULL;
    c->syncs = 0;
}

static void sync_done(gw_conn_t *c)
{
    if (c && c->syncs)
        c->syncs--;
}

static void on_member(void *arg, const PGresult *res, const char *err)
{
    sync_q_t *q = arg;
    if (q->orphan) {
        free(q);
        return;
    }
    if (err) {
        q->failed = 1;
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("convo_id", q->convo), KC_STR("error", err)),
                  "sync: membership query failed");
        return;
    }
    q->member = PQntuples(res) > 0;
    if (q->member)
        q->last_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
}

static void on_messages(void *arg, const PGresult *res, const char *err)
{
    sync_q_t *q = arg;
    gw_t *g = q->g;
    gw_conn_t *c = g->conns ? gw_conn_find(g, q->conn) : NULL;
    char extra[GW_ID_MAX + 64];
    kc_strlcpyf(extra, sizeof(extra), "\"in_reply_to\":\"sync\",\"convo_id\":\"%s\"", q->convo);
    if (!c)
        goto out;
    sync_done(c);
    if (err || q->failed) {
        gw_send_error(g, c, "unavailable", "history is unavailable: retry the sync", extra);
        goto out;
    }
    if (!q->member) {
        gw_send_error(g, c, "not_member", "you are not a member of this conversation", extra);
        goto out;
    }
    uint64_t h = fnv64(q->convo);
    int rows = PQntuples(res);
    /* A since_seq past the end is answered with where the conversation ends. */
    int64_t upto = q->since < q->last_seq ? q->since : q->last_seq, sent = 0, skipped = 0;
    size_t budget = (size_t)g->cfg.max_queued_bytes / 2;
    int more = rows >= g->cfg.sync_max_messages, cut = 0;
    for (int i = 0; i < rows; i++) {
        int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (live_has(c, h, seq)) {
            if (seq > upto)
                upto = seq;
            skipped++;
            continue;
        }
        kc_buf_t b = {0};
        kc_buf_puts(&b, "{\"type\":\"message.create\"");
        gw_json_kv(&b, 1, "convo_id", q->convo, strlen(q->convo));
        kc_buf_printf(&b, ",\"seq_no\":%lld", (long long)seq);
        const char *cols[] = {"server_msg_id", "sender_id", "client_msg_id", "content",
                              "content_type"};
        for (int k = 0; k < 5; k++)
            gw_json_kv(&b, 1, cols[k], PQgetvalue(res, i, k + 1),
                       (size_t)PQgetlength(res, i, k + 1));
        kc_buf_printf(&b, ",\"created_at\":%s", PQgetvalue(res, i, 6));
        if (PQgetvalue(res, i, 7)[0] == 't')
            kc_buf_puts(&b, ",\"deleted\":true");
        if (!PQgetisnull(res, i, 8))
            kc_buf_printf(&b, ",\"edited_at\":%s", PQgetvalue(res, i, 8));
        if (!PQgetisnull(res, i, 9))
            kc_buf_printf(&b, ",\"reply_to\":%s", PQgetvalue(res, i, 9));
        /* reactions: Postgres's own JSON; the caller's own one, when any */
        kc_buf_puts(&b, ",\"reactions\":");
        kc_buf_puts(&b, PQgetisnull(res, i, 10) ? "[]" : PQgetvalue(res, i, 10));
        if (!PQgetisnull(res, i, 11))
            gw_json_kv(&b, 1, "my_reaction", PQgetvalue(res, i, 11),
                       (size_t)PQgetlength(res, i, 11));
        if (!PQgetisnull(res, i, 12)) /* Postgres's own JSON of the files */
            kc_buf_printf(&b, ",\"attachments\":%s", PQgetvalue(res, i, 12));
        kc_buf_puts(&b, ",\"backfill\":true}");
        if (c->q.bytes > 0 && c->q.bytes + b.len > budget) {
            kc_buf_free(&b); /* the rest is the next page's */
            more = cut = 1;
            break;
        }
        if (seq > upto)
            upto = seq;
        if (gw_send_buf(g, c, &b, "message.create") != 0) {
            kc_buf_free(&b);
            goto out; /* closed as a slow consumer */
        }
        kc_buf_free(&b);
        sent++;
        if (strcmp(PQgetvalue(res, i, 2), c->sub) != 0) /* someone else's: delivered now */
            gw_delivered_note(g, q->convo, strlen(q->convo), c->sub, seq);
    }
    int64_t lm = live_max(c, h);
    if (!more && lm > upto)
        upto = lm;
    if (cut)
        kc_counter_inc(g->m.sync_pages_cut);
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"sync.complete\"");
    gw_json_kv(&b, 1, "convo_id", q->convo, strlen(q->convo));
    kc_buf_printf(&b, ",\"up_to_seq\":%lld,\"sent\":%lld,\"skipped_live\":%lld,\"more\":%s}",
                  (long long)upto, (long long)sent, (long long)skipped, more ? "true" : "false");
    (void)gw_send_buf(g, c, &b, "sync.complete");
    kc_buf_free(&b);
out:
    free(q);
}

void gw_sync_start(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t since_seq)
{
    char extra[GW_ID_MAX + 64];
    kc_strlcpyf(extra, sizeof(extra), "\"in_reply_to\":\"sync\",\"convo_id\":\"%s\"", convo_id);
    if (gw_rate_take(g, c) != 0) {
        gw_send_error(g, c, "rate_limited", "too many frames: slow down", extra);
        return;
    }
    if (c->syncs >= MAX_SYNCS) {
        gw_send_error(g, c, "too_many_in_flight", "too many syncs in flight", extra);
        return;
    }
    sync_q_t *q = kc_xcalloc(1, sizeof(*q));
    q->g = g;
    q->conn = c->id;
    q->since = since_seq;
    kc_strlcpyf(q->convo, sizeof(q->convo), "%s", convo_id);
    char since[32], limit[32];
    kc_strlcpyf(since, sizeof(since), "%lld", (long long)since_seq);
    kc_strlcpyf(limit, sizeof(limit), "%lld", g->cfg.sync_max_messages);
    const char *mp[] = {convo_id, c->sub};
    const char *qp[] = {convo_id, since, limit, c->sub};
    /* Both queries go in order on one connection: the membership answer is in before the
     * messages' callback runs. */
    if (kc_pg_query(g->pg,
                    "SELECT (SELECT last_seq FROM rm.conversations WHERE convo_id = $1) "
                    "FROM rm.members WHERE convo_id = $1 AND user_id = $2",
                    2, mp, on_member, q) != 0) {
        free(q);
        gw_send_error(g, c, "unavailable", "history is unavailable: retry the sync", extra);
        return;
    }
    if (kc_pg_query(g->pg,
                    "SELECT seq_no, server_msg_id, sender_id, client_msg_id, content, "
                    "content_type, (extract(epoch FROM created_at) * 1000)::bigint, "
                    "deleted_at IS NOT NULL, (extract(epoch FROM edited_at) * 1000)::bigint, "
                    "reply_to, "
                    "(SELECT json_agg(json_build_object('emoji', emoji, 'count', n) "
                    "                 ORDER BY n DESC, emoji COLLATE \"C\") "
                    " FROM (SELECT emoji, count(*) AS n FROM rm.reactions r "
                    "       WHERE r.convo_id = m.convo_id AND r.seq_no = m.seq_no "
                    "       GROUP BY emoji) x), "
                    "(SELECT emoji FROM rm.reactions r WHERE r.convo_id = m.convo_id "
                    " AND r.seq_no = m.seq_no AND r.user_id = $4), "
                    "CASE WHEN deleted_at IS NULL THEN attachments END "
                    "FROM rm.messages m WHERE convo_id = $1 AND seq_no > $2 "
                    "ORDER BY seq_no LIMIT $3",
                    4, qp, on_messages, q) != 0) {
        q->orphan = 1; /* the membership query holds q and frees it */
        gw_send_error(g, c, "unavailable", "history is unavailable: retry the sync", extra);
        return;
    }
    c->syncs++;
}
