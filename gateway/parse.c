/* parse.c - a client's frame read into a gw_in_t, field by field, or refused with the code
 * and message of the error frame it gets. Pure: no connection, no I/O, so it is unit
 * tested on its own (tests/unit/test_gw_core.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/util.h"

int gw_text_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > GW_ID_MAX || !kc_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return 1;
}

static const char *const TYPES[] = {
    [GW_IN_SEND] = "message.send",        [GW_IN_READ] = "message.read",
    [GW_IN_TYPING_START] = "typing.start", [GW_IN_TYPING_STOP] = "typing.stop",
    [GW_IN_SUBSCRIBE] = "presence.subscribe", [GW_IN_SYNC] = "sync",
    [GW_IN_EDIT] = "message.edit",         [GW_IN_DELETE] = "message.delete",
    [GW_IN_CONVO_UPDATE] = "conversation.update", [GW_IN_MEMBER_REMOVE] = "member.remove",
    [GW_IN_MEMBER_ROLE] = "member.role",  [GW_IN_MEMBER_ADD] = "member.add",
    [GW_IN_REACT] = "message.react",
};

static int refuse(gw_in_t *in, const char *code, const char *message)
{
    in->error_code = code;
    kc_strlcpyf(in->error_message, sizeof(in->error_message), "%s", message);
    return -1;
}

/* A required string field; NULL (and in refused) when missing or not a string. */
static const char *str_field(gw_in_t *in, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in->json, name);
    if (!cJSON_IsString(v) || !v->valuestring) {
        in->error_code = "invalid";
        kc_strlcpyf(in->error_message, sizeof(in->error_message),
                    "field '%s' is missing or not a string", name);
        return NULL;
    }
    return v->valuestring;
}

/* A required integer field in [min, 2^53). */
static int int_field(gw_in_t *in, const char *name, int64_t min, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in->json, name);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (isnan(d) || d != floor(d) || d < (double)min || d >= 9007199254740992.0) {
        in->error_code = "invalid";
        kc_strlcpyf(in->error_message, sizeof(in->error_message),
                    "field '%s' is missing or not an integer >= %lld", name, (long long)min);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static int convo_field(gw_in_t *in)
{
    in->convo_id = str_field(in, "convo_id");
    if (!in->convo_id)
        return -1;
    if (!kc_id_valid(in->convo_id, strlen(in->convo_id), GW_ID_MAX))
        return refuse(in, "invalid", "convo_id is not a conversation id");
    return 0;
}

/* attachments: absent, or an array of at most KC_CHAT_MAX_ATTACHMENTS distinct attachment ids
 * (from POST /attachments/presign, checked by POST /attachments/{id}/complete). */
static int parse_attachments(gw_in_t *in)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(in->json, "attachments");
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return refuse(in, "invalid", "attachments must be an array of attachment ids");
    int n = cJSON_GetArraySize(arr);
    if (n > KC_CHAT_MAX_ATTACHMENTS)
        return refuse(in, "invalid", "a message carries at most 10 attachments");
    in->att_ids = kc_xcalloc((size_t)n + 1, sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
        if (!s || strncmp(s, "a_", 2) != 0 || !kc_id_valid(s, strlen(s), KC_CHAT_ATT_ID_MAX))
            return refuse(in, "invalid", "attachments must hold attachment ids (a_...)");
        for (size_t k = 0; k < in->natt; k++)
            if (strcmp(in->att_ids[k], s) == 0)
                return refuse(in, "invalid", "an attachment is named twice");
        in->att_ids[in->natt++] = (char *)s;
    }
    return 0;
}

static int parse_send(gw_in_t *in)
{
    /* client_msg_id first: once it is read, a refusal is the message's own error ack. */
    if (!(in->client_msg_id = str_field(in, "client_msg_id")))
        return -1;
    if (!gw_text_id_valid(in->client_msg_id, strlen(in->client_msg_id))) {
        in->client_msg_id = NULL;
        return refuse(in, "invalid",
                      "client_msg_id must be 1 to 128 bytes without control characters");
    }
    if (convo_field(in) != 0 || !(in->content = str_field(in, "content")))
        return -1;
    if (parse_attachments(in) != 0)
        return -1;
    /* The frame was UTF-8, and cJSON refuses escapes of lone surrogates: checked again all
     * the same, since what is stored must be UTF-8 whatever the parser lets through. A
     * message with files may have no text. */
    in->content_len = strlen(in->content);
    if ((in->content_len == 0 && !in->natt) || !kc_utf8_valid(in->content, in->content_len))
        return refuse(in, "invalid",
                      "content must be UTF-8 text, non-empty unless the message has attachments");
    /* A reply names the earlier message it answers (absent or null: not a reply). */
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(in->json, "reply_to");
    if (rt && !cJSON_IsNull(rt) && int_field(in, "reply_to", 1, &in->reply_to) != 0)
        return -1;
    return 0;
}

static int parse_edit(gw_in_t *in)
{
    if (convo_field(in) != 0 || int_field(in, "seq_no", 1, &in->seq_no) != 0 ||
        !(in->content = str_field(in, "content")))
        return -1;
    in->content_len = strlen(in->content);
    if (in->content_len == 0 || !kc_utf8_valid(in->content, in->content_len))
        return refuse(in, "invalid", "content must be non-empty UTF-8 text");
    return 0;
}

/* message.react: emoji is required, a reaction or null (remove the sender's). */
static int parse_react(gw_in_t *in)
{
    if (convo_field(in) != 0 || int_field(in, "seq_no", 1, &in->seq_no) != 0)
        return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(in->json, "emoji");
    if (cJSON_IsNull(e))
        return 0;
    if (!cJSON_IsString(e) || !e->valuestring ||
        !kc_chat_reaction_valid(e->valuestring, strlen(e->valuestring)))
        return refuse(in, "invalid",
                      "emoji must be null or 1 to 64 bytes of UTF-8, at most 16 characters, "
                      "without spaces");
    in->emoji = e->valuestring;
    return 0;
}

/* An optional string field of at most max bytes (min 1 when nonempty is set): NULL when
 * absent; -1 when it is there but not such a string. */
static int opt_text(gw_in_t *in, const char *name, size_t max, int nonempty, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in->json, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    size_t n = cJSON_IsString(v) && v->valuestring ? strlen(v->valuestring) : 0;
    if (!cJSON_IsString(v) || !v->valuestring || n > max || (nonempty && n == 0) ||
        !kc_utf8_valid(v->valuestring, n)) {
        in->error_code = "invalid";
        kc_strlcpyf(in->error_message, sizeof(in->error_message),
                    "field '%s' must be %s text of at most %zu bytes", name,
                    nonempty ? "non-empty" : "UTF-8", max);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static int parse_convo_update(gw_in_t *in)
{
    if (convo_field(in) != 0 || opt_text(in, "title", GW_TITLE_MAX, 1, &in->title) != 0 ||
        opt_text(in, "topic", GW_TOPIC_MAX, 0, &in->topic) != 0)
        return -1;
    if (!in->title && !in->topic)
        return refuse(in, "invalid", "give a title, a topic or both");
    return 0;
}

static int parse_member(gw_in_t *in)
{
    if (convo_field(in) != 0 || !(in->user_id = str_field(in, "user_id")))
        return -1;
    if (!kc_id_valid(in->user_id, strlen(in->user_id), GW_ID_MAX))
        return refuse(in, "invalid", "user_id is not a user id");
    if (in->kind == GW_IN_MEMBER_ROLE) {
        const char *role = str_field(in, "role");
        if (!role)
            return -1;
        int r = kc_role_parse(role, strlen(role));
        if (r < 0)
            return refuse(in, "invalid", "role must be owner, admin or member");
        in->role = (kc_role_t)r;
    }
    return 0;
}

/* user_ids: an array of at most GW_MAX_SUBSCRIBE user ids (presence.subscribe, member.add). */
static int parse_user_ids(gw_in_t *in)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(in->json, "user_ids");
    if (!cJSON_IsArray(ids))
        return refuse(in, "invalid", "field 'user_ids' is missing or not an array");
    int n = cJSON_GetArraySize(ids);
    if (n > GW_MAX_SUBSCRIBE)
        return refuse(in, "too_large", "at most 1000 user ids in one frame");
    in->user_ids = kc_xcalloc((size_t)n + 1, sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, ids)
    {
        if (!cJSON_IsString(it) ||
            !kc_id_valid(it->valuestring, strlen(it->valuestring), GW_ID_MAX))
            return refuse(in, "invalid", "user_ids must hold user ids (strings)");
        in->user_ids[in->nuser_ids++] = it->valuestring;
    }
    return 0;
}

int gw_in_parse(const char *data, size_t len, gw_in_t *in)
{
    memset(in, 0, sizeof(*in));
    in->count_as = "invalid";
    kc_json_status_t js = kc_json_parse_whole(data, len, &in->json);
    if (js == KC_JSON_NUL)
        return refuse(in, "invalid", "strings must not contain U+0000");
    if (js != KC_JSON_OK || !cJSON_IsObject(in->json))
        return refuse(in, "bad_json", "a frame must be one JSON object with a \"type\"");
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(in->json, "type");
    if (!cJSON_IsString(tv) || !tv->valuestring)
        return refuse(in, "invalid", "field 'type' is missing or not a string");
    size_t k = 0;
    while (k < KC_ARRAY_LEN(TYPES) && strcmp(tv->valuestring, TYPES[k]) != 0)
        k++;
    if (k == KC_ARRAY_LEN(TYPES)) {
        in->count_as = "unknown";
        return refuse(in, "unknown_type", "unknown frame type");
    }
    in->kind = (gw_in_kind_t)k;
    in->type = in->count_as = TYPES[k];
    switch (in->kind) {
    case GW_IN_SEND: return parse_send(in);
    case GW_IN_READ: return convo_field(in) != 0 ? -1 : int_field(in, "seq_no", 1, &in->seq_no);
    case GW_IN_TYPING_START:
    case GW_IN_TYPING_STOP: return convo_field(in);
    case GW_IN_SUBSCRIBE: return parse_user_ids(in);
    case GW_IN_SYNC: return convo_field(in) != 0 ? -1 : int_field(in, "since_seq", 0, &in->seq_no);
    case GW_IN_EDIT: return parse_edit(in);
    case GW_IN_DELETE:
        return convo_field(in) != 0 ? -1 : int_field(in, "seq_no", 1, &in->seq_no);
    case GW_IN_CONVO_UPDATE: return parse_convo_update(in);
    case GW_IN_MEMBER_REMOVE:
    case GW_IN_MEMBER_ROLE: return parse_member(in);
    case GW_IN_MEMBER_ADD:
        if (convo_field(in) != 0 || parse_user_ids(in) != 0)
            return -1;
        return in->nuser_ids ? 0 : refuse(in, "invalid", "user_ids is empty");
    case GW_IN_REACT: return parse_react(in);
    }
    return refuse(in, "unknown_type", "unknown frame type");
}

void gw_in_free(gw_in_t *in)
{
    free(in->user_ids);
    free(in->att_ids);
    cJSON_Delete(in->json);
    memset(in, 0, sizeof(*in));
}
