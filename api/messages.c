/* messages.c - history pages and search, from the Postgres read model.
 *
 * GET /conversations/:id/messages pages through rm.messages in ascending seq_no. Without
 * since_seq it reads backwards from before_seq (or the newest message): the page is the
 * `limit` messages just below it, and next_cursor {"before_seq": first seq_no of the page}
 * points at older ones. With since_seq it reads forwards: the `limit` messages just above
 * it (and below before_seq, when given), and next_cursor {"since_seq": last seq_no of the
 * page} points at newer ones. next_cursor is null when nothing is left that way.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

typedef struct {
    int forward;
} page_t;

static void on_page(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    page_t *p = r->state;
    if (err || PQntuples(res) != 1) {
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
    kc_buf_puts(&b, "}");
    api_reply(r, 200, &b);
}

#define PAGE_SQL(order)                                                                           \
    "WITH mem AS (SELECT EXISTS (SELECT 1 FROM rm.members WHERE convo_id = $1 AND user_id = $2) " \
    "             AS ok), "                                                                      \
    "page AS (SELECT x.* FROM rm.messages x, mem WHERE mem.ok AND x.convo_id = $1 "              \
    "         AND x.seq_no > $3::bigint AND x.seq_no < $4::bigint "                              \
    "         ORDER BY x.seq_no " order " LIMIT $5::int) "                                       \
    "SELECT (SELECT ok FROM mem), "                                                              \
    "  (SELECT coalesce(json_agg(" API_MSG_JSON("page") " ORDER BY page.seq_no), '[]'::json) "  \
    "   FROM page)::text, "                                                                      \
    "  (SELECT min(seq_no) FROM page), (SELECT max(seq_no) FROM page), "                         \
    "  EXISTS (SELECT 1 FROM rm.messages y WHERE y.convo_id = $1 "                               \
    "          AND y.seq_no > (SELECT max(seq_no) FROM page) AND y.seq_no < $4::bigint), "       \
    "  EXISTS (SELECT 1 FROM rm.messages y WHERE y.convo_id = $1 "                               \
    "          AND y.seq_no < (SELECT min(seq_no) FROM page) AND y.seq_no > $3::bigint)"

void api_messages_list(api_req_t *r)
{
    long long limit = 50, since = 0, before = 9223372036854775807LL;
    int has_since = 0;
    if (api_query_int(r, "limit", 1, 200, &limit, NULL) != 0 ||
        api_query_int(r, "since_seq", 0, 9223372036854775806LL, &since, &has_since) != 0 ||
        api_query_int(r, "before_seq", 1, 9223372036854775807LL, &before, NULL) != 0)
        return;
    page_t *p = kc_xcalloc(1, sizeof(*p));
    p->forward = has_since;
    r->state = p;
    r->state_free = free;
    char s_since[24], s_before[24], s_limit[24];
    (void)kc_strlcpyf(s_since, sizeof(s_since), "%lld", since);
    (void)kc_strlcpyf(s_before, sizeof(s_before), "%lld", before);
    (void)kc_strlcpyf(s_limit, sizeof(s_limit), "%lld", limit);
    const char *params[] = {r->convo_id, r->user_id, s_since, s_before, s_limit};
    (void)api_pg(r, p->forward ? PAGE_SQL("ASC") : PAGE_SQL("DESC"), 5, params, on_page);
}

/* ---- GET /search?q= ---- */

static void on_search(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the search failed");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"messages\":");
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    kc_buf_puts(&b, "}");
    api_reply(r, 200, &b);
}

void api_search(api_req_t *r)
{
    const char *q = kc_http_query(r->http, "q");
    long long limit = 20;
    if (!q || !*q || strlen(q) > API_QUERY_MAX) {
        api_error(r, 400, "invalid_query", "q must be 1 to 256 bytes of text");
        return;
    }
    if (api_query_int(r, "limit", 1, 100, &limit, NULL) != 0)
        return;
    char s_limit[24];
    (void)kc_strlcpyf(s_limit, sizeof(s_limit), "%lld", limit);
    const char *params[] = {r->user_id, q, s_limit};
    /* Only the caller's own conversations: the join with rm.members comes first. */
    (void)api_pg(r,
                 "SELECT coalesce(json_agg(j ORDER BY s DESC, c, n), '[]'::json)::text FROM ("
                 "  SELECT " API_MSG_JSON("x") " j, x.created_at s, x.convo_id c, x.seq_no n "
                 "  FROM rm.members me JOIN rm.messages x ON x.convo_id = me.convo_id "
                 "  WHERE me.user_id = $1 AND x.deleted_at IS NULL "
                 "  AND x.search @@ plainto_tsquery('simple', $2) "
                 "  ORDER BY x.created_at DESC, x.convo_id, x.seq_no LIMIT $3::int) t",
                 3, params, on_search);
}
