/* conversations.c - create, list, get, add members, read marker.
 *
 * Reads come from the Postgres read model (schema rm, owned by the projector), built into
 * JSON by Postgres itself. Only members see a conversation: for anyone else it does not
 * exist (404), so ids cannot be probed. Changes are Commands (commands.c); the answer is
 * the conversation read back after the projector reports the event applied.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

/* A conversation as the REST object; c is rm.conversations, me the caller's rm.members row. */
#define CONVO_JSON                                                                                \
    "json_build_object('id', c.convo_id, 'title', c.title, 'created_by', c.created_by, "         \
    "'created_at', " API_ISO("c.created_at") ", 'last_seq', c.last_seq, "                     \
    "'last_activity', " API_ISO("c.last_activity") ", "                                         \
    "'read_seq', me.read_seq, 'unread', greatest(c.last_seq - me.read_seq, 0), "                  \
    "'members', (SELECT coalesce(json_agg(m.user_id ORDER BY m.user_id), '[]'::json) "           \
    "            FROM rm.members m WHERE m.convo_id = c.convo_id), "                              \
    "'last_message', (SELECT " API_MSG_JSON("x") " FROM rm.messages x "                          \
    "                 WHERE x.convo_id = c.convo_id AND x.seq_no = c.last_seq))"

typedef struct {
    const char *title;
    const char **members;
    size_t nmembers;
    long long seq_no;
    int status; /* of the final answer */
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
    if (err) {
        api_error(r, 503, "unavailable", "the conversation could not be read");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", "no such conversation");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, PQgetvalue(res, 0, 0));
    api_reply(r, c && c->status ? c->status : 200, &b);
}

static void read_convo(api_req_t *r)
{
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r,
                 "SELECT " CONVO_JSON "::text FROM rm.conversations c "
                 "JOIN rm.members me ON me.convo_id = c.convo_id AND me.user_id = $2 "
                 "WHERE c.convo_id = $1",
                 2, params, on_convo);
}

void api_convo_get(api_req_t *r)
{
    read_convo(r);
}

/* ---- GET /conversations ---- */

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
    api_reply(r, 200, &b);
}

void api_convo_list(api_req_t *r)
{
    long long limit = 100;
    if (api_query_int(r, "limit", 1, 500, &limit, NULL) != 0)
        return;
    char lim[24];
    (void)kc_strlcpyf(lim, sizeof(lim), "%lld", limit);
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
        int st = api_reject_status(reason);
        /* not a member and no such conversation look the same from outside */
        if (st == 404)
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

static void on_marked(api_req_t *r, const char *type, const char *reason, const char *message,
                      int status, const char *err)
{
    on_outcome(r, type, reason, message, status, err, "ReadMarkerSet");
}

/* ---- fillers of the command bodies ---- */

static int fill_create(api_req_t *r, avro_value_t *b)
{
    change_t *c = r->state;
    if (kc_avro_set_str(b, "title", c->title))
        return -1;
    for (size_t i = 0; i < c->nmembers; i++)
        if (kc_avro_append_str(b, "members", c->members[i]))
            return -1;
    return 0;
}

static int fill_add(api_req_t *r, avro_value_t *b)
{
    change_t *c = r->state;
    for (size_t i = 0; i < c->nmembers; i++)
        if (kc_avro_append_str(b, "members", c->members[i]))
            return -1;
    return 0;
}

static int fill_read(api_req_t *r, avro_value_t *b)
{
    change_t *c = r->state;
    return kc_avro_set_long(b, "seq_no", c->seq_no) ? -1 : 0;
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
    if (c->title)
        (void)api_command(r, "CreateConversation", fill_create, on_created);
    else
        (void)api_command(r, "AddMembers", fill_add, on_added);
}

static void check_users(api_req_t *r)
{
    change_t *c = r->state;
    kc_buf_t arr = {0};
    api_pg_array(&arr, c->members, c->nmembers);
    const char *params[] = {arr.data};
    (void)api_pg(r,
                 "SELECT min(x) FROM unnest($1::text[]) x "
                 "WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = x)",
                 1, params, on_users_checked);
    kc_buf_free(&arr);
}

/* ---- POST /conversations ---- */

void api_convo_create(api_req_t *r)
{
    change_t *c = change_of(r);
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(r->body, "title");
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(r->body, "members");
    if (!cJSON_IsString(title) || strlen(title->valuestring) > API_TITLE_MAX) {
        api_error(r, 400, "invalid_request", "title must be a string of at most 256 bytes");
        return;
    }
    c->title = title->valuestring;
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
    (void)api_command(r, "SetReadMarker", fill_read, on_marked);
}
