/* close.c - due notifications in notify_pending become sends in notify_outbox.
 *
 * Every CLOSE_MS (and at once after a batch made a mention due) the notifier claims due rows
 * for a few seconds (SKIP LOCKED, so notifiers share them), asks Redis once more who is
 * connected (a member who came back meanwhile has seen the messages: no send), writes what
 * each notification says, and in one statement deletes the rows it claimed and adds a send
 * per target: each Web Push subscription of the member and each webhook (none for a member
 * whose account was deactivated: its row just goes). A row that a new
 * message changed after the claim (its last_seq moved) is not deleted but released, and goes
 * on the next round with that message counted. The sends' id and Topic are fixed here, once
 * (decide.c).
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "notifier.h"

#define CLOSE_MS 200
#define CLAIM_MAX 200
#define CLAIM_S 10

typedef struct {
    char *user_id, *convo_id, *title, *last_sender, *last_content;
    int64_t first_seq, last_seq, count, last_at;
    char **senders;
    size_t nsenders;
    int mention;
} due_t;

typedef struct {
    nt_t *n;
    due_t *due;
    size_t ndue;
    int full; /* the claim took CLAIM_MAX rows: more may be due */
} round_t;

static void round_free(round_t *r)
{
    for (size_t i = 0; i < r->ndue; i++) {
        due_t *d = &r->due[i];
        free(d->user_id);
        free(d->convo_id);
        free(d->title);
        free(d->last_sender);
        free(d->last_content);
        for (size_t k = 0; k < d->nsenders; k++)
            free(d->senders[k]);
        free(d->senders);
    }
    free(r->due);
    free(r);
}

static void round_end(nt_t *n, int again)
{
    n->closing_busy = 0;
    if (n->stopping) {
        nt_drained(n);
        return;
    }
    if (again)
        nt_close_kick(n);
}

static void on_closed(void *arg, const PGresult *res, const char *err)
{
    round_t *r = arg;
    nt_t *n = r->n;
    if (err || !res || PQntuples(res) != 1) {
        kc_log_warn("cannot turn due notifications into sends: %s", err ? err : "no answer");
    } else {
        long long no_target = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        kc_counter_add(n->skip_no_target, (double)no_target);
        if (strtoll(PQgetvalue(res, 0, 1), NULL, 10) + strtoll(PQgetvalue(res, 0, 2), NULL, 10) > 0)
            nt_send_kick(n);
    }
    int again = r->full;
    round_free(r);
    round_end(n, again);
}

static const char CLOSE_SQL[] =
    "WITH w AS (SELECT * FROM json_to_recordset($1::json) AS x(u text, c text, l bigint,"
    "           m text, t text, ur text, pp text, hp text, s boolean, at bigint)),"
    " d AS (DELETE FROM notify_pending np USING w"
    "       WHERE np.user_id = w.u AND np.convo_id = w.c AND np.last_seq = w.l"
    "       RETURNING np.user_id, np.convo_id),"
    " dw AS (SELECT w.* FROM w JOIN d ON d.user_id = w.u AND d.convo_id = w.c WHERE w.s"
    "        AND NOT EXISTS (SELECT 1 FROM users du"
    "                        WHERE du.user_id = w.u AND du.deactivated_at IS NOT NULL)),"
    " ps AS (INSERT INTO notify_outbox (kind, target, origin, user_id, convo_id, msg_id, topic,"
    "          urgency, payload, event_at, deadline)"
    "        SELECT 'push', s.id, lower(substring(s.endpoint from '^[A-Za-z]+://[^/?#]+')),"
    "          dw.u, dw.c, dw.m, dw.t, dw.ur, dw.pp, to_timestamp(dw.at / 1000.0),"
    "          now() + make_interval(secs => $2::int)"
    "        FROM dw JOIN push_subscriptions s ON s.user_id = dw.u WHERE $3::boolean"
    "        ON CONFLICT (kind, target, msg_id) DO NOTHING RETURNING user_id, convo_id),"
    " wh AS (INSERT INTO notify_outbox (kind, target, origin, user_id, convo_id, msg_id, topic,"
    "          urgency, payload, event_at, deadline)"
    "        SELECT 'webhook', h.url, h.origin, dw.u, dw.c, dw.m, dw.t, dw.ur, dw.hp,"
    "          to_timestamp(dw.at / 1000.0), now() + make_interval(secs => $2::int)"
    "        FROM dw CROSS JOIN json_to_recordset($4::json) AS h(url text, origin text)"
    "        ON CONFLICT (kind, target, msg_id) DO NOTHING RETURNING user_id, convo_id),"
    " r AS (UPDATE notify_pending np SET claimed_until = NULL FROM w"
    "       WHERE np.user_id = w.u AND np.convo_id = w.c AND np.last_seq <> w.l RETURNING 1)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM ps), (SELECT count(*) FROM wh),"
    "  (SELECT count(*) FROM dw WHERE NOT EXISTS (SELECT 1 FROM ps"
    "     WHERE ps.user_id = dw.u AND ps.convo_id = dw.c)"
    "   AND NOT EXISTS (SELECT 1 FROM wh WHERE wh.user_id = dw.u AND wh.convo_id = dw.c)),"
    "  (SELECT count(*) FROM r)";

/* The webhooks as json_to_recordset reads them: [{"url","origin"}]. */
static void webhooks_json(const nt_t *n, kc_buf_t *b)
{
    kc_buf_putc(b, '[');
    for (size_t i = 0; i < n->nwebhooks; i++) {
        char origin[256];
        if (nt_origin(n->webhooks[i], origin, sizeof(origin)) != 0)
            continue; /* checked at start */
        if (b->len > 1)
            kc_buf_putc(b, ',');
        kc_buf_puts(b, "{\"url\":");
        kc_buf_json_qstr(b, n->webhooks[i], strlen(n->webhooks[i]));
        kc_buf_puts(b, ",\"origin\":");
        kc_buf_json_qstr(b, origin, strlen(origin));
        kc_buf_putc(b, '}');
    }
    kc_buf_putc(b, ']');
}

/* Writes the round: what each notification says, and the sends. online: the Redis
 * script's answer per row (NULL: nobody is taken for connected). */
static void write_round(round_t *r, const redisReply *online)
{
    nt_t *n = r->n;
    kc_buf_t w = {0};
    kc_buf_putc(&w, '[');
    int64_t now = kc_now_ms();
    for (size_t i = 0; i < r->ndue; i++) {
        const due_t *d = &r->due[i];
        int send = 1;
        if (online && i < online->elements && online->element[i]->type == REDIS_REPLY_INTEGER &&
            online->element[i]->integer == 1) {
            send = 0;
            kc_counter_inc(n->skip_online_at_close);
        }
        nt_note_t note = {
            .user_id = d->user_id,
            .convo_id = d->convo_id,
            .title = d->title,
            .first_seq = d->first_seq,
            .last_seq = d->last_seq,
            .count = d->count,
            .senders = (const char *const *)d->senders,
            .nsenders = d->nsenders,
            .last_sender = d->last_sender,
            .last_content = d->last_content,
            .mention = d->mention,
        };
        kc_buf_t push = {0}, hook = {0};
        nt_push_payload(&note, n->content, &push);
        nt_webhook_payload(&note, n->content, now, &hook);
        char msg_id[37], topic[33];
        nt_msg_id(d->user_id, d->convo_id, d->first_seq, msg_id);
        nt_topic(d->convo_id, topic);
        if (i)
            kc_buf_putc(&w, ',');
        kc_buf_puts(&w, "{\"u\":");
        kc_buf_json_qstr(&w, d->user_id, strlen(d->user_id));
        kc_buf_puts(&w, ",\"c\":");
        kc_buf_json_qstr(&w, d->convo_id, strlen(d->convo_id));
        kc_buf_printf(&w, ",\"l\":%" PRId64 ",\"m\":\"%s\",\"t\":\"%s\",\"ur\":\"%s\",\"pp\":",
                      d->last_seq, msg_id, topic, d->mention ? "high" : "normal");
        kc_buf_json_qstr(&w, push.data, push.len);
        kc_buf_puts(&w, ",\"hp\":");
        kc_buf_json_qstr(&w, hook.data, hook.len);
        kc_buf_printf(&w, ",\"s\":%s,\"at\":%" PRId64 "}", send ? "true" : "false", d->last_at);
        kc_buf_free(&push);
        kc_buf_free(&hook);
    }
    kc_buf_putc(&w, ']');
    kc_buf_t hooks = {0};
    webhooks_json(n, &hooks);
    char deadline[24];
    (void)kc_strlcpyf(deadline, sizeof(deadline), "%lld", n->cfg.send_deadline_s);
    const char *params[] = {w.data, deadline, n->vapid ? "true" : "false", hooks.data};
    int rc = kc_pg_query(n->pg, CLOSE_SQL, 4, params, on_closed, r);
    kc_buf_free(&w);
    kc_buf_free(&hooks);
    if (rc != 0) {
        round_free(r);
        round_end(n, 0);
    }
}

static void on_presence(void *arg, const redisReply *reply, const char *err)
{
    round_t *r = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != r->ndue) {
        /* the notification still goes: a needless one is better than a missed one */
        kc_log_warn("cannot ask who is connected before sending: %s",
                    err ? err : "unexpected reply");
        write_round(r, NULL);
        return;
    }
    write_round(r, reply);
}

static void ask_presence(round_t *r)
{
    const char **users = kc_xcalloc(r->ndue, sizeof(char *));
    for (size_t i = 0; i < r->ndue; i++)
        users[i] = r->due[i].user_id;
    int rc = nt_ask_online(r->n, users, r->ndue, on_presence, r);
    free(users);
    if (rc != 0) {
        kc_log_warn("cannot ask who is connected before sending: redis is unavailable");
        write_round(r, NULL);
    }
}

static char *dup_col(const PGresult *res, int row, int col)
{
    return kc_xstrdup(PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static void on_claimed(void *arg, const PGresult *res, const char *err)
{
    nt_t *n = arg;
    if (err || !res) {
        kc_log_warn("cannot claim due notifications: %s", err ? err : "no answer");
        round_end(n, 0);
        return;
    }
    int rows = PQntuples(res);
    if (rows == 0) {
        round_end(n, 0);
        return;
    }
    round_t *r = kc_xcalloc(1, sizeof(*r));
    r->n = n;
    r->full = rows >= CLAIM_MAX;
    r->due = kc_xcalloc((size_t)rows, sizeof(due_t));
    for (int i = 0; i < rows; i++) {
        due_t *d = &r->due[r->ndue++];
        d->user_id = dup_col(res, i, 0);
        d->convo_id = dup_col(res, i, 1);
        d->title = dup_col(res, i, 2);
        d->first_seq = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        d->last_seq = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        d->count = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        cJSON *s = cJSON_Parse(PQgetvalue(res, i, 6));
        int ns = cJSON_IsArray(s) ? cJSON_GetArraySize(s) : 0;
        d->senders = kc_xcalloc((size_t)ns + 1, sizeof(char *));
        for (int k = 0; k < ns; k++) {
            const cJSON *e = cJSON_GetArrayItem(s, k);
            if (cJSON_IsString(e))
                d->senders[d->nsenders++] = kc_xstrdup(e->valuestring);
        }
        cJSON_Delete(s);
        d->last_sender = dup_col(res, i, 7);
        d->last_content = dup_col(res, i, 8);
        d->mention = strcmp(PQgetvalue(res, i, 9), "t") == 0;
        d->last_at = strtoll(PQgetvalue(res, i, 10), NULL, 10);
    }
    ask_presence(r);
}

static void claim(nt_t *n)
{
    if (n->closing_busy || n->stopping)
        return;
    n->closing_busy = 1;
    char lim[16], lease[16];
    (void)kc_strlcpyf(lim, sizeof(lim), "%d", CLAIM_MAX);
    (void)kc_strlcpyf(lease, sizeof(lease), "%d", CLAIM_S);
    const char *params[] = {lim, lease};
    if (kc_pg_query(n->pg,
                    "UPDATE notify_pending np"
                    " SET claimed_until = now() + make_interval(secs => $2::int)"
                    " FROM (SELECT user_id, convo_id FROM notify_pending"
                    "       WHERE due_at <= now()"
                    "         AND (claimed_until IS NULL OR claimed_until < now())"
                    "       ORDER BY due_at LIMIT $1::int FOR UPDATE SKIP LOCKED) due"
                    " WHERE np.user_id = due.user_id AND np.convo_id = due.convo_id"
                    " RETURNING np.user_id, np.convo_id,"
                    "  (SELECT title FROM rm.conversations c WHERE c.convo_id = np.convo_id),"
                    "  np.first_seq, np.last_seq, np.count, array_to_json(np.senders)::text,"
                    "  np.last_sender, np.last_content, np.mention,"
                    "  (extract(epoch FROM np.last_at) * 1000)::bigint",
                    2, params, on_claimed, n) != 0)
        n->closing_busy = 0;
}

static void on_close_timer(uv_timer_t *t)
{
    claim(t->data);
}

void nt_close_kick(nt_t *n)
{
    claim(n);
}

void nt_close_init(nt_t *n)
{
    n->close_timer.data = n;
    if (uv_timer_start(&n->close_timer, on_close_timer, CLOSE_MS, CLOSE_MS) != 0)
        nt_fail(n, "cannot start a timer");
}
