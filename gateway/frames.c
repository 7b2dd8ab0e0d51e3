/* frames.c - client frames in: JSON objects with a "type", checked field by field, each
 * handed to the module that serves it. A frame that cannot be served gets an error frame
 * {"type":"error","error":{"code","message"},"in_reply_to":<type>} and the connection
 * stays open: only the WebSocket layer's own rules (size, UTF-8) close it.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/util.h"

void gw_json_kv(kc_buf_t *b, int comma, const char *key, const char *val, size_t len)
{
    if (comma)
        kc_buf_putc(b, ',');
    kc_buf_putc(b, '"');
    kc_buf_puts(b, key);
    kc_buf_puts(b, "\":\"");
    kc_buf_json_str(b, val, len);
    kc_buf_putc(b, '"');
}

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

static const char *const TYPES[] = {"message.send", "message.read",       "typing.start",
                                    "typing.stop",  "presence.subscribe", "sync"};

static void count_in(gw_t *g, const char *type)
{
    kc_counter_inc(gw_counter(g, g->m.frames_in, "kchat_gateway_frames_in_total",
                              "Frames read from clients, by type (unknown, invalid).", "type",
                              type));
}

static void bad(gw_t *g, gw_conn_t *c, const char *type, const char *code, const char *msg)
{
    char extra[64];
    extra[0] = '\0';
    if (type)
        kc_strlcpyf(extra, sizeof(extra), "\"in_reply_to\":\"%s\"", type);
    gw_send_error(g, c, code, msg, extra);
}

/* A required string field; NULL (and an error frame sent) when missing or not a string. */
static const char *str_field(gw_t *g, gw_conn_t *c, const cJSON *o, const char *type,
                             const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || !v->valuestring) {
        char msg[128];
        kc_strlcpyf(msg, sizeof(msg), "field '%s' is missing or not a string", name);
        bad(g, c, type, "invalid", msg);
        return NULL;
    }
    return v->valuestring;
}

/* A required integer field in [min, 2^53). 0, or -1 with an error frame sent. */
static int int_field(gw_t *g, gw_conn_t *c, const cJSON *o, const char *type, const char *name,
                     int64_t min, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (isnan(d) || d != floor(d) || d < (double)min || d >= 9007199254740992.0) {
        char msg[128];
        kc_strlcpyf(msg, sizeof(msg), "field '%s' is missing or not an integer >= %lld", name,
                    (long long)min);
        bad(g, c, type, "invalid", msg);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static const char *convo_field(gw_t *g, gw_conn_t *c, const cJSON *o, const char *type)
{
    const char *convo = str_field(g, c, o, type, "convo_id");
    if (convo && !kc_id_valid(convo, strlen(convo), GW_ID_MAX)) {
        bad(g, c, type, "invalid", "convo_id is not a conversation id");
        return NULL;
    }
    return convo;
}

static void on_send(gw_t *g, gw_conn_t *c, const cJSON *o)
{
    const char *t = "message.send";
    const char *convo = convo_field(g, c, o, t);
    const char *cmid = convo ? str_field(g, c, o, t, "client_msg_id") : NULL;
    const char *content = cmid ? str_field(g, c, o, t, "content") : NULL;
    if (!content)
        return;
    if (!gw_text_id_valid(cmid, strlen(cmid))) {
        bad(g, c, t, "invalid", "client_msg_id must be 1 to 128 bytes without control characters");
        return;
    }
    /* cJSON decodes \u escapes (a lone surrogate becomes bytes that are not UTF-8), so the
     * content is checked again after parsing. */
    size_t clen = strlen(content);
    if (clen == 0 || !kc_utf8_valid(content, clen)) {
        bad(g, c, t, "invalid", "content must be non-empty UTF-8 text");
        return;
    }
    if (clen > (size_t)g->cfg.max_content_bytes) {
        gw_ack_error(g, c, cmid, "too_large", "content is longer than max-content-bytes");
        return;
    }
    gw_cmd_send_message(g, c, convo, cmid, content, clen);
}

static void on_read(gw_t *g, gw_conn_t *c, const cJSON *o)
{
    const char *t = "message.read";
    const char *convo = convo_field(g, c, o, t);
    int64_t seq;
    if (!convo || int_field(g, c, o, t, "seq_no", 1, &seq) != 0)
        return;
    gw_cmd_read_marker(g, c, convo, seq);
}

static void on_typing(gw_t *g, gw_conn_t *c, const cJSON *o, int start)
{
    const char *convo = convo_field(g, c, o, start ? "typing.start" : "typing.stop");
    if (convo)
        gw_typing(g, c, convo, start);
}

static void on_subscribe(gw_t *g, gw_conn_t *c, const cJSON *o)
{
    const char *t = "presence.subscribe";
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "user_ids");
    if (!cJSON_IsArray(ids)) {
        bad(g, c, t, "invalid", "field 'user_ids' is missing or not an array");
        return;
    }
    int n = cJSON_GetArraySize(ids);
    if (n > GW_MAX_SUBSCRIBE) {
        bad(g, c, t, "too_large", "at most 1000 user ids in one presence.subscribe");
        return;
    }
    char **list = kc_xcalloc((size_t)n + 1, sizeof(char *));
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ids)
    {
        if (!cJSON_IsString(it) ||
            !kc_id_valid(it->valuestring, strlen(it->valuestring), GW_ID_MAX)) {
            bad(g, c, t, "invalid", "user_ids must hold user ids (strings)");
            goto out;
        }
        list[k++] = it->valuestring;
    }
    gw_presence_subscribe(g, c, list, k);
out:
    free(list);
}

static void on_sync(gw_t *g, gw_conn_t *c, const cJSON *o)
{
    const char *t = "sync";
    const char *convo = convo_field(g, c, o, t);
    int64_t since;
    if (!convo || int_field(g, c, o, t, "since_seq", 0, &since) != 0)
        return;
    gw_sync_start(g, c, convo, since);
}

void gw_frame_in(gw_t *g, gw_conn_t *c, const char *data, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(data, len);
    if (!o || !cJSON_IsObject(o)) {
        count_in(g, "invalid");
        bad(g, c, NULL, "bad_json", "a frame must be a JSON object with a \"type\"");
        goto out;
    }
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(tv) || !tv->valuestring) {
        count_in(g, "invalid");
        bad(g, c, NULL, "invalid", "field 'type' is missing or not a string");
        goto out;
    }
    const char *type = NULL;
    for (size_t i = 0; i < KC_ARRAY_LEN(TYPES); i++)
        if (strcmp(tv->valuestring, TYPES[i]) == 0)
            type = TYPES[i];
    if (!type) {
        count_in(g, "unknown");
        bad(g, c, NULL, "unknown_type", "unknown frame type");
        goto out;
    }
    count_in(g, type);
    if (strcmp(type, "message.send") == 0)
        on_send(g, c, o);
    else if (strcmp(type, "message.read") == 0)
        on_read(g, c, o);
    else if (strcmp(type, "typing.start") == 0)
        on_typing(g, c, o, 1);
    else if (strcmp(type, "typing.stop") == 0)
        on_typing(g, c, o, 0);
    else if (strcmp(type, "presence.subscribe") == 0)
        on_subscribe(g, c, o);
    else
        on_sync(g, c, o);
out:
    cJSON_Delete(o);
}
