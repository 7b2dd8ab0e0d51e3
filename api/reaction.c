/* reaction.c - a reaction's emoji, and messages of the Redis read model as the REST API
 * hands them out (see reaction.h). */
#include "reaction.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"

/* cJSON returns NULL when malloc fails: as kc_xmalloc, nothing to recover. */
static void no_memory(void)
{
    kc_log_error("out of memory");
    abort();
}

int api_reaction_emoji(const cJSON *body, const char **emoji, const char **message)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "emoji");
    *emoji = NULL;
    if (!e) {
        *message = "emoji is required: {\"emoji\": \"...\"}";
        return -1;
    }
    if (!cJSON_IsString(e)) {
        *message = "emoji must be a string (DELETE the reaction to remove it)";
        return -1;
    }
    if (!kc_chat_reaction_valid(e->valuestring, strlen(e->valuestring))) {
        *message = "emoji must be 1 to 64 bytes of UTF-8 and at most 16 characters, without "
                   "spaces or control characters";
        return -1;
    }
    *emoji = e->valuestring;
    return 0;
}

/* What the top level of a message object holds, as far as reactions go. */
enum {
    HAS_REACTIONS = 1,       /* a "reactions" key */
    REACTIONS_NOT_ARRAY = 2, /* ... whose value (one of them) is not an array */
    HAS_REACTED = 4,         /* a "reacted" key */
    HAS_MINE = 8,            /* a "my_reaction" key */
    ESCAPED_KEY = 16,        /* a key with an escape: it is not read here */
};

static int ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int key_is(const char *k, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(k, name, n) == 0;
}

/* Reads the keys of the top level of the JSON object [s, s+n) without decoding it: the flags
 * above, and *close, the offset of its closing brace. -1 when it is not shaped like one object
 * (a brace first, its closing brace last but for white space); the values themselves are not
 * checked, the projector wrote them. */
static int scan(const char *s, size_t n, size_t *close)
{
    size_t i = 0;
    while (i < n && ws(s[i]))
        i++;
    if (i == n || s[i] != '{')
        return -1;
    i++;
    int depth = 1, want_key = 1, flags = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            size_t start = ++i;
            int escaped = 0;
            while (i < n && s[i] != '"') {
                if (s[i] == '\\') {
                    escaped = 1;
                    i++;
                }
                i++;
            }
            if (i >= n)
                return -1;
            size_t len = i - start;
            i++;
            if (depth != 1 || !want_key)
                continue;
            want_key = 0;
            size_t j = i;
            while (j < n && ws(s[j]))
                j++;
            if (j == n || s[j] != ':')
                return -1;
            j++;
            while (j < n && ws(s[j]))
                j++;
            const char *k = s + start;
            if (escaped) {
                flags |= ESCAPED_KEY;
            } else if (key_is(k, len, "reactions")) {
                flags |= HAS_REACTIONS;
                if (j == n || s[j] != '[')
                    flags |= REACTIONS_NOT_ARRAY;
            } else if (key_is(k, len, "reacted")) {
                flags |= HAS_REACTED;
            } else if (key_is(k, len, "my_reaction")) {
                flags |= HAS_MINE;
            }
            i = j;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                *close = i;
                for (i++; i < n; i++)
                    if (!ws(s[i]))
                        return -1;
                return flags;
            }
        } else if (c == ',' && depth == 1) {
            want_key = 1;
        }
        i++;
    }
    return -1;
}

/* Deletes every top-level item named name (cJSON finds only the first). */
static void delete_all(cJSON *o, const char *name)
{
    while (cJSON_GetObjectItemCaseSensitive(o, name))
        cJSON_DeleteItemFromObjectCaseSensitive(o, name);
}

static cJSON *decode(const char *json, size_t n)
{
    cJSON *o = NULL;
    if (kc_json_parse_whole(json, n, &o) != KC_JSON_OK)
        return NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void encode(kc_buf_t *out, cJSON *o)
{
    char *text = cJSON_PrintUnformatted(o);
    if (!text)
        no_memory();
    kc_buf_puts(out, text);
    cJSON_free(text);
    cJSON_Delete(o);
}

int api_tail_message(kc_buf_t *out, const char *json, size_t n, const char *user_id)
{
    size_t close = 0;
    int f = scan(json, n, &close);
    if (f >= 0 && (f & HAS_REACTIONS) &&
        !(f & (REACTIONS_NOT_ARRAY | HAS_REACTED | HAS_MINE | ESCAPED_KEY))) {
        /* the common case: nobody reacted; "reactions" is [] (or is the counts without who) */
        kc_buf_append(out, json, close);
        kc_buf_puts(out, ",\"my_reaction\":null}");
        return 0;
    }
    cJSON *o = decode(json, n);
    if (!o)
        return -1;
    const cJSON *reacted = cJSON_GetObjectItemCaseSensitive(o, "reacted");
    const cJSON *mine = cJSON_IsObject(reacted) && user_id
                            ? cJSON_GetObjectItemCaseSensitive(reacted, user_id)
                            : NULL;
    char *my = cJSON_IsString(mine) ? kc_xstrdup(mine->valuestring) : NULL;
    delete_all(o, "reacted");
    delete_all(o, "my_reaction");
    /* Lua's cjson writes an empty table as {}: anything but an array is no reactions */
    cJSON *counts = cJSON_DetachItemFromObjectCaseSensitive(o, "reactions");
    delete_all(o, "reactions");
    if (!cJSON_IsArray(counts)) {
        cJSON_Delete(counts);
        counts = cJSON_CreateArray();
    }
    if (!counts || !cJSON_AddItemToObject(o, "reactions", counts) ||
        !(my ? cJSON_AddStringToObject(o, "my_reaction", my)
             : cJSON_AddNullToObject(o, "my_reaction")))
        no_memory();
    free(my);
    encode(out, o);
    return 0;
}

int api_preview_message(kc_buf_t *out, const char *json, size_t n)
{
    size_t close = 0;
    int f = scan(json, n, &close);
    if (f >= 0 && !(f & (HAS_REACTIONS | HAS_REACTED | HAS_MINE | ESCAPED_KEY))) {
        kc_buf_append(out, json, n);
        return 0;
    }
    cJSON *o = decode(json, n);
    if (!o)
        return -1;
    delete_all(o, "reactions");
    delete_all(o, "reacted");
    delete_all(o, "my_reaction");
    encode(out, o);
    return 0;
}
