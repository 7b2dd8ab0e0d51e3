/* conversations.c - create, list, get, rename and topic, add and remove members (and
 * leave), roles, read marker.
 *
 * Reads come from the Postgres read model (schema rm, owned by the projector), built into
 * JSON by Postgres itself. Only members see a conversation: for anyone else it does not
 * exist (404), so ids cannot be probed (a former member too: their history stays readable
 * up to when they left, see messages.c, but not the conversation). Changes are Commands
 * (commands.c), decided by the processor (who may rename, add, remove, change roles); the
 * answer is the conversation read back after the projector reports the event applied, or
 * 204 for a removal (the caller may be the one removed).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

/* The members' read and delivery marks of conversation `id` (an SQL expression) as
 * {user_id: {read_seq, delivered_seq}}: those who got anything, at most the 50 furthest along
 * (a large group's receipts stay bounded; the ticks need only the furthest members). A
 * delivery mark is the gateways' (table delivered), at least the read marker (reading is
 * having got it). */
#define RECEIPTS_JSON(id)                                                                         \
    "(SELECT coalesce(json_object_agg(r.user_id, json_build_object('read_seq', r.read_seq, "     \
    "                 'delivered_seq', r.delivered_seq) ORDER BY r.user_id), '{}'::json) "        \
    " FROM (SELECT m.user_id, m.read_seq, "                                                       \
    "              greatest(m.read_seq, coalesce(d.delivered_seq, 0)) AS delivered_seq "          \
    "       FROM rm.members m LEFT JOIN delivered d "                                             \
    "            ON d.convo_id = m.convo_id AND d.user_id = m.user_id "                           \
    "       WHERE m.convo_id = " id " AND (m.read_seq > 0 OR d.delivered_seq > 0) "               \
    "       ORDER BY 3 DESC, m.read_seq DESC, m.user_id LIMIT 50) r)"

/* How many members have read, and have got, the last message of conversation `id` (whose
 * last seq_no is `last`), its sender included: the counts beside RECEIPTS_JSON's 50 names,
 * for a large group's "seen by". Both 0 before the first message. */
#define RECEIPT_COUNTS_JSON(id, last)                                                             \
    "(SELECT json_build_object('read', count(*) FILTER (WHERE m.read_seq >= " last "), "          \
    "                          'delivered', count(*) FILTER (WHERE greatest(m.read_seq, "         \
    "                                       coalesce(d.delivered_seq, 0)) >= " last ")) "         \
    " FROM rm.members m LEFT JOIN delivered d "                                                   \
    "      ON d.convo_id = m.convo_id AND d.user_id = m.user_id "                                 \
    " WHERE m.convo_id = " id " AND " last " > 0)"

/* The members' roles of conversation `id` as {user_id: "owner"|"admin"|"member"}: every
 * member (the Redis list says the same: its roles hash holds owners and admins, absent is a
 * plain member). */
#define ROLES_JSON(id)                                                                            \
    "(SELECT coalesce(json_object_agg(m.user_id, m.role ORDER BY m.user_id), '{}'::json) "       \
    " FROM rm.members m WHERE m.convo_id = " id ")"

/* A conversation as the REST object; c is rm.conversations, me the caller's rm.members row. */
#define CONVO_JSON                                                                                \
    "json_build_object('id', c.convo_id, 'title', c.title, 'topic', c.topic, "                   \
    "'created_by', c.created_by, "                                                                \
    "'kind', CASE WHEN left(c.convo_id, 2) = '" KC_ID_DIRECT_PREFIX "' THEN 'direct' "            \
    "        ELSE 'group' END, "                                                                  \
    "'created_at', " API_ISO("c.created_at") ", 'last_seq', c.last_seq, "                     \
    "'last_activity', " API_ISO("c.last_activity") ", "                                         \
    "'read_seq', me.read_seq, 'unread', greatest(c.last_seq - me.read_seq, 0), "                  \
    "'members', (SELECT coalesce(json_agg(m.user_id ORDER BY m.user_id), '[]'::json) "           \
    "            FROM rm.members m WHERE m.convo_id = c.convo_id), "                              \
    "'member_names', (SELECT coalesce(json_object_agg(m.user_id, u.username ORDER BY m.user_id), " \
    "                 '{}'::json) FROM rm.members m JOIN users u ON u.user_id = m.user_id "         \
    "                 WHERE m.convo_id = c.convo_id), "                                           \
    "'receipts', " RECEIPTS_JSON("c.convo_id") ", "                                               \
    "'receipt_counts', " RECEIPT_COUNTS_JSON("c.convo_id", "c.last_seq") ", "                     \
    API_MUTE_FIELDS("c.convo_id", "me.user_id") ", "                                              \
    "'roles', " ROLES_JSON("c.convo_id") ", "                                                     \
    "'last_message', (SELECT " API_MSG_JSON("x") " FROM rm.messages x "                          \
    "                 WHERE x.convo_id = c.convo_id AND x.seq_no = c.last_seq))"

typedef struct {
    const char *title;
    const char **members;
    size_t nmembers;
    long long seq_no;
    int status;  /* of the final answer */
    int direct;  /* POST /conversations of kind direct: the pair's one conversation */
    int no_body; /* DELETE .../members/:user_id: 204 once applied, nothing read back */
} change_t;

static void change_free(void *p)
{
    change_t *c = p;
    free(c->members);
    free(c);
}

static change_t *change_of(api_req_t *r)
{
    change_t *c = kc_xcalloc(1, sizeof(*c));
    r->state = c;
    r->state_free = change_free;
    return c;
}

/* ---- GET /conversations/:id (also the answer of every change) ---- */

static void on_convo(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    change_t *c = r->state;
    api_reply_row(r, res, err, c && c->status ? c->status : 200, "conversation",
                  "no such conversation");
}

static void read_convo_then(api_req_t *r, kc_pg_cb cb)
{
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r,
                 "SELECT " CONVO_JSON "::text FROM rm.conversations c "
                 "JOIN rm.members me ON me.convo_id = c.convo_id AND me.user_id = $2 "
                 "WHERE c.convo_id = $1",
                 2, params, cb);
}

static void read_convo(api_req_t *r)
{
    read_convo_then(r, on_convo);
}

void api_convo_get(api_req_t *r)
{
    read_convo(r);
}

/* ---- GET /conversations: the Redis read model, else Postgres ---- */

/* ARGV: user, limit. Returns {1, n, then per conversation: id, title, created_by,
 * created_at, last_seq, last_activity, last_message ('' when none), topic ('' when none),
 * read_seq, the number of members, then each member (sorted) and its role ("member" when
 * the roles hash does not name it)}, or {-1} without a generation, {-3} for a conversation
 * only partly there (a projector mid-batch): the caller then asks Postgres. */
static const char LIST_LUA[] =
    "local gen = redis.call('GET', '" KC_REDIS_RM_GEN "')\n"
    "if not gen then return {-1} end\n"
    "local p = '" KC_REDIS_RM "' .. gen .. ':'\n"
    "local u = ARGV[1]\n"
    "local ids = redis.call('ZREVRANGE', p .. '" KC_RM_CONVOS ":' .. u, 0, tonumber(ARGV[2]) - 1)\n"
    "local out = {1, #ids}\n"
    "for _, id in ipairs(ids) do\n"
    "  local h = redis.call('HMGET', p .. '" KC_RM_CONVO ":' .. id, 'title', 'created_by', 'created_at',\n"
    "                       'last_seq', 'last_activity', 'last_message', 'topic')\n"
    "  if not h[1] or not h[3] or not h[5] then return {-3} end\n"
    "  local ms = redis.call('SMEMBERS', p .. '" KC_RM_MEMBERS ":' .. id)\n"
    "  table.sort(ms)\n"
    "  local rs = redis.call('HGETALL', p .. '" KC_RM_ROLES ":' .. id)\n"
    "  local role = {}\n"
    "  for i = 1, #rs - 1, 2 do role[rs[i]] = rs[i + 1] end\n"
    "  out[#out + 1] = id\n"
    "  for i = 1, 7 do out[#out + 1] = h[i] or '' end\n"
    "  out[#out + 1] = redis.call('HGET', p .. '" KC_RM_READ ":' .. id, u) or '0'\n"
    "  out[#out + 1] = #ms\n"
    "  for _, m in ipairs(ms) do\n"
    "    out[#out + 1] = m\n"
    "    out[#out + 1] = role[m] or 'member'\n"
    "  end\n"
    "end\n"
    "return out\n";

static void count_list(api_t *a, const char *source)
{
    const char *lbl[] = {"source", source, NULL};
    kc_counter_inc(kc_metrics_counter(a->app.metrics, "kchat_api_conversation_lists_total",
                                      "Conversation lists served, by the read model they came "
                                      "from.",
                                      lbl));
}

static void list_from_pg(api_req_t *r);

static const char *str_of(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_STRING ? e->str : NULL;
}

static int put_time(kc_buf_t *b, const char *ms)
{
    char *end = NULL;
    long long v = ms ? strtoll(ms, &end, 10) : 0;
    if (!ms || !*ms || *end)
        return -1;
    char iso[32];
    kc_iso_ms(v, iso);
    kc_buf_printf(b, "\"%s\"", iso);
    return 0;
}

/* The usernames of the members and their read and delivery marks, which Redis does not hold
 * (in this form): one query adds member_names, receipts and receipt_counts to every
 * conversation of the list built from Redis (a JSON array, taken). */
static void on_names(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the members' names could not be read");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    api_reply(r, 200, &b);
}

static void add_names(api_req_t *r, kc_buf_t *list)
{
    const char *params[] = {list->data, r->user_id};
    (void)api_pg(r,
                 "SELECT json_build_object('conversations', coalesce(json_agg(c::jsonb || "
                 "jsonb_build_object('member_names', (SELECT coalesce(jsonb_object_agg("
                 "u.user_id, u.username), '{}'::jsonb) FROM users u WHERE u.user_id IN "
                 "(SELECT jsonb_array_elements_text(c->'members'))), "
                 "'receipts', " RECEIPTS_JSON("c->>'id'") ", "
                 "'receipt_counts', " RECEIPT_COUNTS_JSON("c->>'id'", "(c->>'last_seq')::bigint")
                 ", " API_MUTE_FIELDS("c->>'id'", "$2") ") ORDER BY n), "
                 "'[]'::json))::text FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY "
                 "t(c, n)",
                 2, params, on_names);
    kc_buf_free(list);
}

/* Elements of LIST_LUA's answer per conversation before its members: id, the 7 fields of
 * the hash, read_seq, the number of members. */
#define LIST_HEAD 10

static void on_list_redis(void *arg, const redisReply *rep, const char *err)
{
    api_req_t *r = arg;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[0]->integer != 1 ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        list_from_pg(r);
        return;
    }
    long long n = rep->element[1]->integer;
    size_t i = 2;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "[");
    for (long long k = 0; k < n; k++) {
        if (i + LIST_HEAD > rep->elements)
            goto bad;
        const char *id = str_of(rep->element[i]), *title = str_of(rep->element[i + 1]),
                   *by = str_of(rep->element[i + 2]), *created = str_of(rep->element[i + 3]),
                   *last_seq = str_of(rep->element[i + 4]),
                   *activity = str_of(rep->element[i + 5]), *last = str_of(rep->element[i + 6]),
                   *topic = str_of(rep->element[i + 7]), *read = str_of(rep->element[i + 8]);
        const redisReply *nm = rep->element[i + 9];
        if (!id || !title || !by || !last_seq || !last || !topic || !read ||
            nm->type != REDIS_REPLY_INTEGER || nm->integer < 0 ||
            (size_t)nm->integer > (rep->elements - i - LIST_HEAD) / 2)
            goto bad;
        size_t nmem = (size_t)nm->integer;
        long long ls = *last_seq ? strtoll(last_seq, NULL, 10) : 0;
        long long rs = strtoll(read, NULL, 10);
        kc_buf_puts(&b, k ? ",{\"id\":\"" : "{\"id\":\"");
        kc_buf_json_str(&b, id, strlen(id));
        kc_buf_puts(&b, "\",\"title\":\"");
        kc_buf_json_str(&b, title, strlen(title));
        kc_buf_puts(&b, "\",\"topic\":\"");
        kc_buf_json_str(&b, topic, strlen(topic));
        kc_buf_puts(&b, kc_id_is_direct(id, strlen(id)) ? "\",\"kind\":\"direct"
                                                        : "\",\"kind\":\"group");
        kc_buf_puts(&b, "\",\"created_by\":\"");
        kc_buf_json_str(&b, by, strlen(by));
        kc_buf_puts(&b, "\",\"created_at\":");
        if (put_time(&b, created) != 0)
            goto bad;
        kc_buf_printf(&b, ",\"last_seq\":%lld,\"last_activity\":", ls);
        if (put_time(&b, activity) != 0)
            goto bad;
        kc_buf_printf(&b, ",\"read_seq\":%lld,\"unread\":%lld,\"members\":[", rs,
                      ls > rs ? ls - rs : 0);
        redisReply *const *pairs = rep->element + i + LIST_HEAD; /* member, role, ... */
        for (size_t m = 0; m < nmem; m++) {
            const char *mid = str_of(pairs[2 * m]);
            if (!mid)
                goto bad;
            kc_buf_puts(&b, m ? ",\"" : "\"");
            kc_buf_json_str(&b, mid, strlen(mid));
            kc_buf_putc(&b, '"');
        }
        kc_buf_puts(&b, "],\"roles\":{");
        for (size_t m = 0; m < nmem; m++) {
            const char *mid = str_of(pairs[2 * m]), *role = str_of(pairs[2 * m + 1]);
            int known = role ? kc_role_parse(role, strlen(role)) : -1;
            if (known < 0)
                goto bad;
            kc_buf_puts(&b, m ? ",\"" : "\"");
            kc_buf_json_str(&b, mid, strlen(mid));
            kc_buf_puts(&b, "\":\"");
            kc_buf_puts(&b, kc_role_name((kc_role_t)known));
            kc_buf_putc(&b, '"');
        }
        kc_buf_puts(&b, "},\"last_message\":");
        /* JSON written by the projector; a preview without its reactions, as from Postgres */
        if (!*last)
            kc_buf_puts(&b, "null");
        else if (api_preview_message(&b, last, strlen(last)) != 0)
            goto bad;
        kc_buf_putc(&b, '}');
        i += LIST_HEAD + 2 * nmem;
    }
    kc_buf_puts(&b, "]");
    count_list(r->a, "redis");
    add_names(r, &b);
    return;
bad:
    kc_buf_free(&b);
    kc_log_warn("the Redis read model holds a conversation list it cannot read; asking "
                "Postgres");
    list_from_pg(r);
}

static void on_list(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the conversations could not be read");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"conversations\":");
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    kc_buf_puts(&b, "}");
    count_list(r->a, "postgres");
    api_reply(r, 200, &b);
}

typedef struct {
    long long limit;
} list_t;

void api_convo_list(api_req_t *r)
{
    long long limit = 100;
    if (api_query_int(r, "limit", 1, 500, &limit, NULL) != 0)
        return;
    list_t *l = kc_xcalloc(1, sizeof(*l));
    l->limit = limit;
    r->state = l;
    r->state_free = free;
    if (kc_redis_connected(r->a->redis)) {
        char lim[24];
        (void)kc_strlcpyf(lim, sizeof(lim), "%lld", limit);
        const char *argv[] = {"EVAL", LIST_LUA, "0", r->user_id, lim};
        size_t lens[KC_ARRAY_LEN(argv)];
        for (size_t i = 0; i < KC_ARRAY_LEN(argv); i++)
            lens[i] = strlen(argv[i]);
        if (kc_redis_command(r->a->redis, on_list_redis, r, (int)KC_ARRAY_LEN(argv), argv,
                             lens) == 0)
            return;
    }
    list_from_pg(r);
}

static void list_from_pg(api_req_t *r)
{
    list_t *l = r->state;
    char lim[24];
    (void)kc_strlcpyf(lim, sizeof(lim), "%lld", l->limit);
    const char *params[] = {r->user_id, lim};
    (void)api_pg(r,
                 "SELECT coalesce(json_agg(o ORDER BY la DESC, id), '[]'::json)::text FROM ("
                 "  SELECT " CONVO_JSON " o, c.last_activity la, c.convo_id id "
                 "  FROM rm.members me JOIN rm.conversations c ON c.convo_id = me.convo_id "
                 "  WHERE me.user_id = $1 ORDER BY c.last_activity DESC, c.convo_id "
                 "  LIMIT $2::int) t",
                 2, params, on_list);
}

/* ---- outcomes ---- */

static void on_outcome(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err, const char *expected)
{
    if (!type) {
        api_error(r, status, status == 504 ? "timeout" : "unavailable", err);
        return;
    }
    if (strcmp(type, "CommandRejected") == 0) {
        change_t *c = r->state;
        if (c && c->direct && reason && strcmp(reason, "conversation_exists") == 0) {
            /* the pair's conversation was made first by another request (this caller's other
             * device, the other user, another replica): that one is the answer */
            c->status = 200;
            read_convo(r);
            return;
        }
        int st = api_reject_status(reason);
        /* not a member and no such conversation look the same from outside; the target of a
         * role change that is not a member is the caller's to know (they see the members) */
        if (st == 404 && strcmp(reason, "no_such_member") == 0)
            api_error(r, 404, "no_such_member", "no such member of the conversation");
        else if (st == 404)
            api_error(r, 404, "not_found", "no such conversation");
        else
            api_error(r, st, reason, message && *message ? message : reason);
        return;
    }
    if (strcmp(type, expected) != 0) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("type", type), KC_STR("expected", expected)),
                  "unexpected outcome of a command");
        api_error(r, 500, "internal", "unexpected outcome");
        return;
    }
    change_t *c = r->state;
    if (c && c->no_body) {
        kc_buf_t none = {0};
        api_reply(r, 204, &none);
        return;
    }
    read_convo(r);
}

static void on_created(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "ConversationCreated");
}

static void on_added(api_req_t *r, const char *type, const char *reason, const char *message,
                     int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "MembersAdded");
}

static void on_updated(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "ConversationUpdated");
}

static void on_removed(api_req_t *r, const char *type, const char *reason, const char *message,
                       int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "MembersRemoved");
}

static void on_role(api_req_t *r, const char *type, const char *reason, const char *message,
                    int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "RoleChanged");
}

static void on_marked(api_req_t *r, const char *type, const char *reason, const char *message,
                      int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "ReadMarkerSet");
}

/* ---- members must be users ---- */

static void on_users_checked(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    change_t *c = r->state;
    if (err || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the members could not be checked");
        return;
    }
    if (!PQgetisnull(res, 0, 0)) {
        char msg[256];
        (void)kc_strlcpyf(msg, sizeof(msg), "no such user: %s", PQgetvalue(res, 0, 0));
        api_error(r, 400, "unknown_user", msg);
        return;
    }
    kc_chat_command_t cmd = {.members_out = (const char *const *)c->members,
                             .nmembers_out = c->nmembers};
    if (c->title) {
        cmd.kind = KC_CMD_CREATE_CONVERSATION;
        cmd.title = kc_str(c->title);
        (void)api_command(r, &cmd, on_created);
    } else {
        cmd.kind = KC_CMD_ADD_MEMBERS;
        (void)api_command(r, &cmd, on_added);
    }
}

static void check_users(api_req_t *r)
{
    change_t *c = r->state;
    kc_buf_t arr = {0};
    kc_pg_text_array(&arr, c->members, c->nmembers);
    const char *params[] = {arr.data};
    (void)api_pg(r,
                 "SELECT min(x) FROM unnest($1::text[]) x "
                 "WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = x)",
                 1, params, on_users_checked);
    kc_buf_free(&arr);
}

/* ---- POST /conversations ---- */

/* The pair's conversation when it is already there (the caller is then a member: the id is
 * theirs); else it is made. */
static void on_direct_read(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (!err && res && PQntuples(res) == 0)
        check_users(r);
    else
        api_reply_row(r, res, err, 200, "conversation", "no such conversation");
}

static void create_direct(api_req_t *r, change_t *c)
{
    if (c->nmembers != 1 || strcmp(c->members[0], r->user_id) == 0) {
        api_error(r, 400, "invalid_request",
                  "a direct conversation is with exactly one other user: members lists one "
                  "user id, not your own");
        return;
    }
    if (kc_id_direct(r->convo_id, sizeof(r->convo_id), r->user_id, strlen(r->user_id),
                     c->members[0], strlen(c->members[0])) != 0) {
        api_error(r, 400, "invalid_request", "members must be user ids");
        return;
    }
    c->direct = 1;
    c->status = 201;
    read_convo_then(r, on_direct_read);
}

void api_convo_create(api_req_t *r)
{
    change_t *c = change_of(r);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(r->body, "kind");
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(r->body, "title");
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(r->body, "members");
    int direct = 0;
    if (kind) {
        if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "group") != 0 &&
                                      !(direct = strcmp(kind->valuestring, "direct") == 0))) {
            api_error(r, 400, "invalid_request", "kind must be \"group\" or \"direct\"");
            return;
        }
    }
    /* a direct conversation's title is optional (the client shows the other's name) */
    if ((!cJSON_IsString(title) && !(direct && !title)) ||
        (title && strlen(title->valuestring) > API_TITLE_MAX)) {
        api_error(r, 400, "invalid_request", "title must be a string of at most 256 bytes");
        return;
    }
    c->title = title ? title->valuestring : "";
    if (direct) {
        if (api_member_list(r, members, 1, &c->members, &c->nmembers) == 0)
            create_direct(r, c);
        return;
    }
    if (!members) {
        c->members = kc_xcalloc(1, sizeof(char *));
    } else if (api_member_list(r, members, (size_t)r->a->cfg.max_members, &c->members,
                               &c->nmembers) != 0) {
        return;
    }
    if (kc_id_new(r->convo_id, sizeof(r->convo_id), "c_") != 0) {
        api_error(r, 500, "internal", "cannot make a conversation id");
        return;
    }
    c->status = 201;
    check_users(r);
}

/* ---- POST /conversations/:id/members ---- */

void api_convo_add_members(api_req_t *r)
{
    change_t *c = change_of(r);
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(r->body, "members");
    if (api_member_list(r, members, (size_t)r->a->cfg.max_members, &c->members, &c->nmembers) !=
        0)
        return;
    if (c->nmembers == 0) {
        api_error(r, 400, "invalid_request", "members must list at least one user id");
        return;
    }
    check_users(r);
}

/* ---- PATCH /conversations/:id ---- */

/* A body field that may be absent or null (keep), or text of [min, max] bytes of UTF-8:
 * 0 with *out (NULL: keep), or -1 after answering 400. */
static int optional_text(api_req_t *r, const char *name, size_t min, size_t max,
                         const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->body, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    if (!cJSON_IsString(v) || n < min || n > max || !kc_utf8_valid(v->valuestring, n)) {
        char msg[160];
        (void)kc_strlcpyf(msg, sizeof(msg), "%s must be a string of %zu to %zu bytes of UTF-8",
                          name, min, max);
        api_error(r, 400, "invalid_request", msg);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

void api_convo_update(api_req_t *r)
{
    (void)change_of(r);
    const char *title = NULL, *topic = NULL;
    if (optional_text(r, "title", 1, API_TITLE_MAX, &title) != 0 ||
        optional_text(r, "topic", 0, API_TOPIC_MAX, &topic) != 0)
        return;
    if (!title && !topic) {
        api_error(r, 400, "invalid_request", "give a title, a topic, or both");
        return;
    }
    kc_chat_command_t cmd = {.kind = KC_CMD_UPDATE_CONVERSATION};
    if (title)
        cmd.title = kc_str(title);
    if (topic)
        cmd.topic = kc_str(topic);
    (void)api_command(r, &cmd, on_updated);
}

/* ---- DELETE /conversations/:id/members/:user_id (one's own id: leave) ---- */

void api_convo_remove_member(api_req_t *r)
{
    change_t *c = change_of(r);
    c->no_body = 1;
    const char *const one[] = {r->member_id}; /* encoded by api_command, not kept */
    kc_chat_command_t cmd = {.kind = KC_CMD_REMOVE_MEMBERS, .members_out = one, .nmembers_out = 1};
    (void)api_command(r, &cmd, on_removed);
}

/* ---- PATCH /conversations/:id/members/:user_id {role} ---- */

void api_convo_set_role(api_req_t *r)
{
    (void)change_of(r);
    const char *role = api_json_str(r->body, "role");
    int known = role ? kc_role_parse(role, strlen(role)) : -1;
    if (known < 0) {
        api_error(r, 400, "invalid_request", "role must be \"owner\", \"admin\" or \"member\"");
        return;
    }
    kc_chat_command_t cmd = {.kind = KC_CMD_SET_ROLE,
                             .user_id = kc_str(r->member_id),
                             .role = (kc_role_t)known};
    (void)api_command(r, &cmd, on_role);
}

/* ---- POST /conversations/:id/read ---- */

void api_convo_read(api_req_t *r)
{
    change_t *c = change_of(r);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(r->body, "seq_no");
    /* an integer that a double holds exactly */
    if (!cJSON_IsNumber(seq) || seq->valuedouble < 1 || seq->valuedouble > 9007199254740991.0 ||
        seq->valuedouble != (double)(long long)seq->valuedouble) {
        api_error(r, 400, "invalid_request", "seq_no must be a positive integer");
        return;
    }
    c->seq_no = (long long)seq->valuedouble;
    kc_chat_command_t cmd = {.kind = KC_CMD_SET_READ_MARKER, .seq_no = c->seq_no};
    (void)api_command(r, &cmd, on_marked);
}
