/* messages.c - history pages (the Redis recent tail, else Postgres), search (Postgres), and
 * edits and deletes of one message.
 *
 * GET /conversations/:id/messages pages through rm.messages in ascending seq_no. Without
 * since_seq it reads backwards from before_seq (or the newest message): the page is the
 * `limit` messages just below it, and next_cursor {"before_seq": first seq_no of the page}
 * points at older ones. With since_seq it reads forwards: the `limit` messages just above
 * it (and below before_seq, when given), and next_cursor {"since_seq": last seq_no of the
 * page} points at newer ones. next_cursor is null when nothing is left that way.
 *
 * seq_no is gap-free from 1 to last_seq (a deleted message keeps its number), so the page's
 * range follows from last_seq by arithmetic. One Lua script reads, in one atomic step, the
 * generation, the caller's membership, last_seq and the tail recent:<convo> (the newest
 * messages, scored by seq_no); when the tail holds the whole range the page comes from it.
 * Anything else (not a member there, a range older than the tail, no generation, Redis
 * down) goes to Postgres, which also decides the 404.
 *
 * With around_seq the page is the forward one about that seq_no (half the limit up to and
 * including it, the rest after), and says prev_cursor {"before_seq"} too: where a search
 * result opens.
 *
 * GET /search?q= reads q (api_search_parse: words as prefixes, "quoted phrases" in order,
 * nothing the user typed taken as tsquery syntax), ranks what matches (ts_rank, then newest
 * first) and pages with an opaque cursor after the last result shown (its rank, time,
 * conversation and seq_no: api_search_cursor_parse); each result has a headline with the
 * matched words between U+E000 and U+E001.
 *
 * A former member (removed, or left) reads the history up to left_seq (the last seq_no when
 * they left, rm.departures), and the page says left_seq. Redis does not hold departures: such
 * a reader is not in the members set there, so their pages always come from Postgres. (The
 * projector applies a conversation's events in order, so a tail that already holds a
 * message after their departure no longer lists them as a member.) Search likewise reads a
 * former member's conversation only up to left_seq.
 *
 * PATCH /conversations/:id/messages/:seq {content} and DELETE of the same path are
 * EditMessage and DeleteMessage commands (commands.c), decided by the processor (the author
 * edits and deletes their own messages, while they are in its window); the answer is the
 * message read back once the projector applied it, with edited_at or deleted_at set (a
 * deleted message keeps its seq_no, its content is gone).
 *
 * Reactions: every message of history, search and those answers carries "reactions" (the
 * counts, [{emoji, count}], most chosen first; [] when none) and "my_reaction" (the caller's,
 * or null). Postgres counts rm.reactions; the Redis tail holds the counts and, once anyone
 * reacted, an internal "reacted" map of every member's reaction, which api_tail_message
 * turns into the caller's my_reaction (a message nobody reacted to passes as it is).
 * PUT /conversations/:id/messages/:seq/reaction {emoji} and DELETE of it are a SetReaction
 * command (emoji null: removed); the answer, once applied, is {seq_no, emoji (the caller's
 * now), reactions} read back from Postgres.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

typedef struct {
    int forward;
    int around; /* around_seq: a forward page about it, with prev_cursor too */
    long long since, before, limit;
} page_t;

/* An around_seq page says where older messages are (it reads forward from below the seq_no
 * asked for): prev_cursor {"before_seq": its first seq_no}, null at the start. */
static void prev_cursor(kc_buf_t *b, const page_t *p, long long lo)
{
    if (!p->around)
        return;
    if (lo > 1)
        kc_buf_printf(b, ",\"prev_cursor\":{\"before_seq\":%lld}", lo);
    else
        kc_buf_puts(b, ",\"prev_cursor\":null");
}

static void page_from_pg(api_req_t *r);
static void count_source(api_t *a, const char *source);

static void on_page(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    page_t *p = r->state;
    if (err || PQntuples(res) != 1 || PQnfields(res) != 7) {
        api_error(r, 503, "unavailable", "the messages could not be read");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        api_error(r, 404, "not_found", "no such conversation");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"messages\":");
    kc_buf_puts(&b, PQgetvalue(res, 0, 1));
    kc_buf_puts(&b, ",\"next_cursor\":");
    int more = strcmp(PQgetvalue(res, 0, p->forward ? 4 : 5), "t") == 0;
    if (!more)
        kc_buf_puts(&b, "null");
    else if (p->forward)
        kc_buf_printf(&b, "{\"since_seq\":%s}", PQgetvalue(res, 0, 3));
    else
        kc_buf_printf(&b, "{\"before_seq\":%s}", PQgetvalue(res, 0, 2));
    prev_cursor(&b, p, PQgetisnull(res, 0, 2) ? 0 : strtoll(PQgetvalue(res, 0, 2), NULL, 10));
    if (!PQgetisnull(res, 0, 6)) /* a former member: the history ends where they left */
        kc_buf_printf(&b, ",\"left_seq\":%s", PQgetvalue(res, 0, 6));
    kc_buf_puts(&b, "}");
    count_source(r->a, "postgres");
    api_reply(r, 200, &b);
}

/* $1 convo, $2 user, $3 since, $4 before, $5 limit. Columns: may read, the page, its first
 * and last seq_no, more above, more below, left_seq (NULL for a member). A member reads
 * everything; a former member (rm.departures, not in rm.members) reads up to left_seq, as if
 * before_seq were at most left_seq + 1; anyone else nothing. */
#define PAGE_SQL(order)                                                                           \
    "WITH mem AS (SELECT EXISTS (SELECT 1 FROM rm.members WHERE convo_id = $1 AND user_id = $2) " \
    "               AS cur, "                                                                    \
    "             (SELECT left_seq FROM rm.departures WHERE convo_id = $1 AND user_id = $2) "    \
    "               AS gone), "                                                                  \
    "acc AS (SELECT cur OR gone IS NOT NULL AS ok, CASE WHEN cur THEN NULL ELSE gone END AS ls, " \
    "        CASE WHEN cur OR gone IS NULL THEN $4::bigint "                                     \
    "             ELSE least($4::bigint, gone + 1) END AS top FROM mem), "                       \
    "page AS (SELECT x.* FROM rm.messages x, acc WHERE acc.ok AND x.convo_id = $1 "              \
    "         AND x.seq_no > $3::bigint AND x.seq_no < acc.top "                                 \
    "         ORDER BY x.seq_no " order " LIMIT $5::int) "                                       \
    "SELECT (SELECT ok FROM acc), "                                                              \
    "  (SELECT coalesce(json_agg(" API_MSG_JSON_FOR("page", "$2") " ORDER BY page.seq_no), "     \
    "                   '[]'::json) "                                                              \
    "   FROM page)::text, "                                                                      \
    "  (SELECT min(seq_no) FROM page), (SELECT max(seq_no) FROM page), "                         \
    "  EXISTS (SELECT 1 FROM rm.messages y WHERE y.convo_id = $1 "                               \
    "          AND y.seq_no > (SELECT max(seq_no) FROM page) "                                   \
    "          AND y.seq_no < (SELECT top FROM acc)), "                                          \
    "  EXISTS (SELECT 1 FROM rm.messages y WHERE y.convo_id = $1 "                               \
    "          AND y.seq_no < (SELECT min(seq_no) FROM page) AND y.seq_no > $3::bigint), "       \
    "  (SELECT ls FROM acc)"

/* ARGV: convo, user, 'f' or 'b', since, before, limit. Returns {status, lo, hi, more, msg...}:
 * status 1 (page in the tail), 0 (empty page), or -1 (no generation), -2 (not a member
 * here), -3 (the tail does not hold the range): the caller then asks Postgres. */
static const char PAGE_LUA[] =
    "local gen = redis.call('GET', '" KC_REDIS_RM_GEN "')\n"
    "if not gen then return {-1} end\n"
    "local p = '" KC_REDIS_RM "' .. gen .. ':'\n"
    "local c = ARGV[1]\n"
    "if redis.call('SISMEMBER', p .. '" KC_RM_MEMBERS ":' .. c, ARGV[2]) == 0 then return {-2} end\n"
    "local last = tonumber(redis.call('HGET', p .. '" KC_RM_CONVO ":' .. c, 'last_seq') or '0')\n"
    "local since, before, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local top = math.min(before - 1, last)\n"
    "local lo, hi, more\n"
    "if ARGV[3] == 'f' then\n"
    "  lo = since + 1; hi = math.min(top, since + limit); more = hi < top\n"
    "else\n"
    "  hi = top; lo = math.max(since + 1, hi - limit + 1, 1); more = lo > math.max(since + 1, 1)\n"
    "end\n"
    "if hi < lo then return {0, lo, hi, 0} end\n"
    "local key = p .. '" KC_RM_RECENT ":' .. c\n"
    "local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')\n"
    "if #first == 0 or tonumber(first[2]) > lo then return {-3} end\n"
    "local msgs = redis.call('ZRANGEBYSCORE', key, lo, hi)\n"
    "if #msgs ~= hi - lo + 1 then return {-3} end\n"
    "local out = {1, lo, hi, more and 1 or 0}\n"
    "for i = 1, #msgs do out[#out + 1] = msgs[i] end\n"
    "return out\n";

static void count_source(api_t *a, const char *source)
{
    const char *lbl[] = {"source", source, NULL};
    kc_counter_inc(kc_metrics_counter(a->app.metrics, "kchat_api_history_pages_total",
                                      "History pages served, by the read model they came from.",
                                      lbl));
}

static void on_tail(void *arg, const redisReply *rep, const char *err)
{
    api_req_t *r = arg;
    page_t *p = r->state;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[0]->integer < 0) {
        page_from_pg(r);
        return;
    }
    long long status = rep->element[0]->integer;
    if (rep->elements < 4) {
        page_from_pg(r);
        return;
    }
    for (size_t i = 1; i < 4; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
            page_from_pg(r);
            return;
        }
    long long lo = rep->element[1]->integer, hi = rep->element[2]->integer;
    int more = rep->element[3]->integer != 0;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"messages\":[");
    if (status == 1) {
        for (size_t i = 4; i < rep->elements; i++) {
            const redisReply *m = rep->element[i];
            if (m->type != REDIS_REPLY_STRING) {
                kc_buf_free(&b);
                page_from_pg(r);
                return;
            }
            if (i > 4)
                kc_buf_putc(&b, ',');
            if (api_tail_message(&b, m->str, m->len, r->user_id) != 0) {
                kc_log_warn("the Redis tail holds a message that is not a JSON object; asking "
                            "Postgres");
                kc_buf_free(&b);
                page_from_pg(r);
                return;
            }
        }
    }
    kc_buf_puts(&b, "],\"next_cursor\":");
    if (!more)
        kc_buf_puts(&b, "null");
    else if (p->forward)
        kc_buf_printf(&b, "{\"since_seq\":%lld}", hi);
    else
        kc_buf_printf(&b, "{\"before_seq\":%lld}", lo);
    prev_cursor(&b, p, status == 1 ? lo : 0);
    kc_buf_puts(&b, "}");
    count_source(r->a, "redis");
    api_reply(r, 200, &b);
}

void api_messages_list(api_req_t *r)
{
    long long limit = 50, since = 0, before = 9223372036854775807LL, around = 0;
    int has_since = 0, has_before = 0, has_around = 0;
    if (api_query_int(r, "limit", 1, 200, &limit, NULL) != 0 ||
        api_query_int(r, "since_seq", 0, 9223372036854775806LL, &since, &has_since) != 0 ||
        api_query_int(r, "before_seq", 1, 9223372036854775807LL, &before, &has_before) != 0 ||
        api_query_int(r, "around_seq", 1, 9223372036854775806LL, &around, &has_around) != 0)
        return;
    if (has_around && (has_since || has_before)) {
        api_error(r, 400, "invalid_query", "around_seq goes without since_seq and before_seq");
        return;
    }
    if (has_around) /* the page about it: half the limit older (it included), the rest newer */
        since = around > (limit + 1) / 2 ? around - (limit + 1) / 2 : 0;
    page_t *p = kc_xcalloc(1, sizeof(*p));
    p->forward = has_since || has_around;
    p->around = has_around;
    p->since = since;
    p->before = before;
    p->limit = limit;
    r->state = p;
    r->state_free = free;
    /* Lua numbers are doubles: a since_seq beyond 2^53 is Postgres's job; a before_seq beyond
     * it means "no bound" (no conversation has 2^53 messages) */
    if (kc_redis_connected(r->a->redis) && since < (1LL << 53)) {
        char s_since[24], s_before[24], s_limit[24];
        (void)kc_strlcpyf(s_since, sizeof(s_since), "%lld", since);
        (void)kc_strlcpyf(s_before, sizeof(s_before), "%lld",
                          before > (1LL << 53) ? (1LL << 53) : before);
        (void)kc_strlcpyf(s_limit, sizeof(s_limit), "%lld", limit);
        const char *argv[] = {"EVAL", PAGE_LUA,     "0",     r->convo_id, r->user_id,
                              p->forward ? "f" : "b", s_since, s_before,    s_limit};
        size_t lens[KC_ARRAY_LEN(argv)];
        for (size_t i = 0; i < KC_ARRAY_LEN(argv); i++)
            lens[i] = strlen(argv[i]);
        if (kc_redis_command(r->a->redis, on_tail, r, (int)KC_ARRAY_LEN(argv), argv, lens) == 0)
            return;
    }
    page_from_pg(r);
}

static void page_from_pg(api_req_t *r)
{
    page_t *p = r->state;
    char s_since[24], s_before[24], s_limit[24];
    (void)kc_strlcpyf(s_since, sizeof(s_since), "%lld", p->since);
    (void)kc_strlcpyf(s_before, sizeof(s_before), "%lld", p->before);
    (void)kc_strlcpyf(s_limit, sizeof(s_limit), "%lld", p->limit);
    const char *params[] = {r->convo_id, r->user_id, s_since, s_before, s_limit};
    (void)api_pg(r, p->forward ? PAGE_SQL("ASC") : PAGE_SQL("DESC"), 5, params, on_page);
}

/* ---- GET /search?q= ---- */

typedef struct {
    long long limit;
} search_t;

/* Columns: the message (JSON text), its rank, created_at (ms), convo_id, seq_no; at most
 * limit + 1 rows: one more says there is a next page. */
static void on_search(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    search_t *st = r->state;
    if (err || PQnfields(res) != 5) {
        api_error(r, 503, "unavailable", "the search failed");
        return;
    }
    int rows = PQntuples(res);
    int shown = rows > st->limit ? (int)st->limit : rows;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"messages\":[");
    for (int i = 0; i < shown; i++) {
        if (i)
            kc_buf_putc(&b, ',');
        kc_buf_puts(&b, PQgetvalue(res, i, 0));
    }
    kc_buf_puts(&b, "],\"next_cursor\":");
    if (rows > shown && shown > 0) {
        int l = shown - 1; /* the next page starts after the last one shown */
        kc_buf_printf(&b, "\"%s_%s_%s_%s\"", PQgetvalue(res, l, 1), PQgetvalue(res, l, 2),
                      PQgetvalue(res, l, 4), PQgetvalue(res, l, 3));
    } else {
        kc_buf_puts(&b, "null");
    }
    kc_buf_putc(&b, '}');
    api_reply(r, 200, &b);
}

/* The rank of message x and when it was made, in ms: the order of results (with convo_id,
 * seq_no), all descending, and what a cursor names. */
#define SEARCH_RANK "ts_rank(x.search, q.q)"
#define SEARCH_MS "(extract(epoch FROM x.created_at) * 1000)::bigint"

void api_search(api_req_t *r)
{
    const char *q = kc_http_query(r->http, "q"), *cur = kc_http_query(r->http, "cursor");
    const char *why = NULL;
    long long limit = 20;
    if (!q || !*q || strlen(q) > API_QUERY_MAX) {
        api_error(r, 400, "invalid_query", "q must be 1 to 256 bytes of text");
        return;
    }
    if (api_query_int(r, "limit", 1, 100, &limit, NULL) != 0)
        return;
    api_search_cursor_t c;
    if (cur && api_search_cursor_parse(cur, &c) != 0) {
        api_error(r, 400, "invalid_query", "cursor is not one this search gave");
        return;
    }
    api_search_q_t sq;
    if (api_search_parse(q, &sq, &why) != 0) {
        api_error(r, 400, "invalid_query", why);
        api_search_q_free(&sq);
        return;
    }
    search_t *st = kc_xcalloc(1, sizeof(*st));
    st->limit = limit;
    r->state = st;
    r->state_free = free;
    /* $1 the caller, $2 limit + 1, then the words' tsquery, the phrases, the cursor */
    char s_limit[24], s_ms[24], s_seq[24];
    (void)kc_strlcpyf(s_limit, sizeof(s_limit), "%lld", limit + 1);
    const char *params[3 + API_SEARCH_MAX_PHRASES + 4] = {r->user_id, s_limit};
    int np = 2;
    kc_buf_t sql = {0}, query = {0};
    if (sq.nwords) {
        params[np++] = sq.words.data;
        kc_buf_printf(&query, "to_tsquery('simple', $%d)", np);
    }
    for (size_t i = 0; i < sq.nphrases; i++) {
        params[np++] = sq.phrases[i];
        kc_buf_printf(&query, "%sphraseto_tsquery('simple', $%d)", query.len ? " && " : "", np);
    }
    kc_buf_printf(&sql,
                  "WITH q AS (SELECT %s AS q) "
                  "SELECT json_build_object(" API_MSG_FIELDS("x") ", "
                  "  'reactions', " API_REACTIONS_JSON("x") ", "
                  "  'my_reaction', " API_MY_REACTION("x", "$1") ", "
                  /* the matched words between U+E000 and U+E001, which the text loses */
                  "  'headline', ts_headline('simple', "
                  "    replace(replace(x.content, chr(57344), ''), chr(57345), ''), q.q, "
                  "    'StartSel=' || chr(57344) || ', StopSel=' || chr(57345) || "
                  "    ', MaxFragments=2, MaxWords=24, MinWords=8, FragmentDelimiter=\" … \"'))"
                  "::text, " SEARCH_RANK "::text, " SEARCH_MS ", x.convo_id, x.seq_no "
                  /* Only the caller's own conversations (the join with them comes first):
                   * those they are a member of, from when they (last) joined, and those
                   * they left, up to left_seq. */
                  "FROM q, (SELECT convo_id, NULL::bigint AS upto, joined_at AS since "
                  "         FROM rm.members WHERE user_id = $1 "
                  "         UNION ALL "
                  "         SELECT d.convo_id, d.left_seq, NULL FROM rm.departures d "
                  "         WHERE d.user_id = $1 AND NOT EXISTS (SELECT 1 FROM rm.members m "
                  "           WHERE m.convo_id = d.convo_id AND m.user_id = $1)) me "
                  "JOIN rm.messages x ON x.convo_id = me.convo_id "
                  "WHERE (me.upto IS NULL OR x.seq_no <= me.upto) AND x.deleted_at IS NULL "
                  "AND (me.since IS NULL OR x.created_at >= me.since) "
                  "AND x.search @@ q.q ",
                  query.data);
    if (cur) {
        (void)kc_strlcpyf(s_ms, sizeof(s_ms), "%lld", c.ms);
        (void)kc_strlcpyf(s_seq, sizeof(s_seq), "%lld", c.seq);
        params[np++] = c.rank;
        params[np++] = s_ms;
        params[np++] = c.convo;
        params[np++] = s_seq;
        kc_buf_printf(&sql,
                      "AND (" SEARCH_RANK ", " SEARCH_MS ", x.convo_id, x.seq_no) < "
                      "($%d::real, $%d::bigint, $%d::text, $%d::bigint) ",
                      np - 3, np - 2, np - 1, np);
    }
    kc_buf_puts(&sql, "ORDER BY " SEARCH_RANK " DESC, " SEARCH_MS " DESC, x.convo_id DESC, "
                      "x.seq_no DESC LIMIT $2::int");
    (void)api_pg(r, sql.data, np, params, on_search);
    kc_buf_free(&sql);
    kc_buf_free(&query);
    api_search_q_free(&sq);
}

/* ---- PATCH and DELETE /conversations/:id/messages/:seq ---- */

static void on_message(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "message", "no such message");
}

/* Answers a change of one message that did not happen: the wait failed (type NULL), or the
 * processor refused it. 1 when answered, 0 when it was applied. */
static int not_applied(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    if (!type) {
        api_error(r, status, status == 504 ? "timeout" : "unavailable", err);
        return 1;
    }
    if (strcmp(type, "CommandRejected") != 0)
        return 0;
    if (strcmp(reason, "no_such_message") == 0)
        api_error(r, 404, "not_found", "no such message");
    else if (api_reject_status(reason) == 404) /* not a member: no such conversation */
        api_error(r, 404, "not_found", "no such conversation");
    else
        api_error(r, api_reject_status(reason), reason, *message ? message : reason);
    return 1;
}

/* The changed message read back for the caller, once applied: `what` is the answer's JSON of
 * message m ($3: the caller, who must still be a member). */
static void read_back(api_req_t *r, const char *what, kc_pg_cb cb)
{
    char seq[24], sql[2048];
    (void)kc_strlcpyf(seq, sizeof(seq), "%lld", r->seq);
    if (kc_strlcpyf(sql, sizeof(sql),
                    "SELECT %s::text FROM rm.messages m "
                    "JOIN rm.members me ON me.convo_id = m.convo_id AND me.user_id = $3 "
                    "WHERE m.convo_id = $1 AND m.seq_no = $2::bigint",
                    what) != 0) {
        api_error(r, 500, "internal", "the answer could not be read back");
        return;
    }
    const char *params[] = {r->convo_id, seq, r->user_id};
    (void)api_pg(r, sql, 3, params, cb);
}

static void on_changed(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    if (!not_applied(r, type, reason, message, status, err))
        read_back(r, API_MSG_JSON_FOR("m", "$3"), on_message);
}

void api_message_edit(api_req_t *r)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(r->body, "content");
    if (!cJSON_IsString(content) || !*content->valuestring) {
        /* its size is the processor's to judge (too_large), like a sent message's */
        api_error(r, 400, "invalid_request", "content must be non-empty text");
        return;
    }
    kc_chat_command_t cmd = {.kind = KC_CMD_EDIT_MESSAGE,
                             .seq_no = r->seq,
                             .content = kc_str(content->valuestring)};
    (void)api_command(r, &cmd, on_changed);
}

void api_message_delete(api_req_t *r)
{
    kc_chat_command_t cmd = {.kind = KC_CMD_DELETE_MESSAGE, .seq_no = r->seq};
    (void)api_command(r, &cmd, on_changed);
}

/* ---- PUT and DELETE /conversations/:id/messages/:seq/reaction ---- */

static void on_reactions(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "reactions", "no such message");
}

/* Applied (ReactionChanged, also when nothing changed): the message's reactions as the read
 * model holds them now, and the caller's own. */
static void on_reacted(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    if (!not_applied(r, type, reason, message, status, err))
        read_back(r,
                  "json_build_object('seq_no', m.seq_no, "
                  "'emoji', " API_MY_REACTION("m", "$3") ", "
                  "'reactions', " API_REACTIONS_JSON("m") ")",
                  on_reactions);
}

void api_message_react(api_req_t *r)
{
    const char *emoji = NULL, *why = NULL;
    if (api_reaction_emoji(r->body, &emoji, &why) != 0) {
        api_error(r, 400, "invalid", why);
        return;
    }
    kc_chat_command_t cmd = {
        .kind = KC_CMD_SET_REACTION, .seq_no = r->seq, .emoji = kc_str(emoji)};
    (void)api_command(r, &cmd, on_reacted);
}

void api_message_unreact(api_req_t *r)
{
    kc_chat_command_t cmd = {
        .kind = KC_CMD_SET_REACTION, .seq_no = r->seq, .emoji = kc_str(NULL)};
    (void)api_command(r, &cmd, on_reacted);
}
