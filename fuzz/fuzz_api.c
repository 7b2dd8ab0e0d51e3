/* fuzz_api.c - a REST request's target and body as kchat-api reads them (api/request.c,
 * api/username.c and api/reaction.c, the pure half of api/http.c and its handlers).
 *
 * The input is "<path>[?<query>]\n<body>". The path is matched against every route of
 * api/http.c; the query is split and percent-decoded as libmicrohttpd does it
 * (MHD_http_unescape) and each parameter checked, then the values the handlers read: the
 * integers of limit, since_seq and before_seq, the username of GET /users. The body is
 * parsed, then the fields the handlers read: username and password, title, members, seq_no,
 * emoji, muted_until (api_time_parse). A q or cursor is read as GET /search reads them
 * (api_search_parse: only quoted lexemes reach to_tsquery). The body is also read as a message of the Redis read model (api_tail_message, and
 * api_preview_message for a last_message): a JSON object stays one, without "reacted".
 * The checks: a matched path is its template with valid ids in place of ":id" and
 * ":user_id"; an accepted
 * integer is spelled as one (an optional '-' and digits) and within its bounds; an accepted
 * body was UTF-8 JSON text and is an object; members are ids; a username's key is its own
 * key again and its display form gives the same key.
 */
#include <microhttpd.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "kchat/buf.h"
#include "kchat/util.h"
#include "kchat/chat.h"
#include "reaction.h"
#include "request.h"
#include "username.h"

#define ID_MAX 128 /* API_ID_MAX */

static const char *const templates[] = {
    "/auth/register",      "/auth/login",         "/auth/refresh",
    "/conversations",      "/conversations/:id",  "/conversations/:id/members",
    "/conversations/:id/messages",                "/conversations/:id/read",
    "/conversations/:id/messages/:seq",            "/conversations/:id/members/:user_id",
    "/conversations/:id/messages/:seq/reaction",
    "/users",              "/users/me",           "/users/:id",          "/search",
    "/attachments/presign",                       "/conversations/:id/settings",
    "/push/vapid-public-key",                     "/push/subscriptions",
    "/push/subscriptions/:id",
};

static void check_path(const char *path)
{
    for (size_t i = 0; i < KC_ARRAY_LEN(templates); i++) {
        char id[ID_MAX + 1] = "", user[ID_MAX + 1] = "";
        long long seq = 0;
        int m = api_path_match_ids(templates[i], path, id, sizeof(id), user, sizeof(user), &seq);
        CHECK(m == 0 || m == 1 || m == -1);
        if (m != 1)
            continue;
        /* the template with the ids in place of ":id" and ":user_id" and the seq_no in place
         * of ":seq" is the path */
        kc_buf_t b = {0};
        for (const char *t = templates[i]; *t;) {
            if (strncmp(t, ":user_id", 8) == 0) {
                CHECK(kc_id_valid(user, strlen(user), ID_MAX));
                kc_buf_puts(&b, user);
                t += 8;
            } else if (strncmp(t, ":id", 3) == 0) {
                CHECK(kc_id_valid(id, strlen(id), ID_MAX));
                kc_buf_puts(&b, id);
                t += 3;
            } else if (strncmp(t, ":seq", 4) == 0) {
                CHECK(seq >= 1 && seq < 1000000000000000LL);
                kc_buf_printf(&b, "%lld", seq);
                t += 4;
            } else {
                kc_buf_putc(&b, *t++);
            }
        }
        CHECK(strcmp(b.data, path) == 0);
        kc_buf_free(&b);
    }
}

/* An optional '-', then digits: the only spelling of an integer the API takes. */
static int decimal(const char *v)
{
    const char *p = v + (v[0] == '-');
    if (!*p)
        return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static void check_int(const char *v, long long min, long long max)
{
    long long n = 0;
    if (api_int_parse(v, min, max, &n) != 0)
        return;
    CHECK(decimal(v));
    CHECK(n >= min && n <= max);
}

static void check_username(const char *u)
{
    char display[API_USERNAME_MAX + 1], key[API_USERNAME_KEY_MAX + 1];
    const char *why = NULL;
    if (api_username_prepare(u, display, key, &why) != 0) {
        CHECK(why != NULL && why[0] != '\0');
        return;
    }
    CHECK(strlen(display) >= 1 && strlen(display) <= API_USERNAME_MAX);
    CHECK(kc_utf8_valid(display, strlen(display)) && kc_utf8_valid(key, strlen(key)));
    /* what is stored prepares to itself: the display form gives the same key, and the key is
     * a username whose key is itself */
    char d2[API_USERNAME_MAX + 1], k2[API_USERNAME_KEY_MAX + 1];
    CHECK(api_username_prepare(display, d2, k2, &why) == 0);
    CHECK(strcmp(d2, display) == 0 && strcmp(k2, key) == 0);
    if (strlen(key) <= API_USERNAME_MAX) {
        CHECK(api_username_prepare(key, d2, k2, &why) == 0);
        CHECK(strcmp(k2, key) == 0);
    }
}

/* q of GET /search: what goes to to_tsquery is only quoted lexemes with :*, joined by " & ";
 * phrases are pieces of q; a cursor taken has its four parts. */
static void check_search(const char *q)
{
    api_search_q_t sq;
    const char *why = NULL;
    if (api_search_parse(q, &sq, &why) != 0) {
        CHECK(why != NULL);
        api_search_q_free(&sq);
        return;
    }
    CHECK(sq.nwords + sq.nphrases > 0);
    CHECK(sq.nwords <= API_SEARCH_MAX_WORDS && sq.nphrases <= API_SEARCH_MAX_PHRASES);
    /* walk the tsquery text: 'lexeme':* (& 'lexeme':*)*, quotes doubled inside */
    const char *w = sq.nwords ? sq.words.data : "";
    size_t words = 0;
    while (*w) {
        CHECK(*w == '\'');
        w++;
        for (;;) {
            CHECK(*w != '\0');
            if (*w == '\\') {
                CHECK(w[1] == '\\' || w[1] == '\'');
                w += 2;
            } else if (*w == '\'') {
                if (w[1] == '\'') {
                    w += 2;
                    continue;
                }
                break;
            } else {
                w++;
            }
        }
        CHECK(strncmp(w, "':*", 3) == 0);
        w += 3;
        words++;
        if (*w) {
            CHECK(strncmp(w, " & ", 3) == 0);
            w += 3;
        }
    }
    CHECK(words == sq.nwords);
    for (size_t i = 0; i < sq.nphrases; i++)
        CHECK(strchr(sq.phrases[i], '"') == NULL && strstr(q, sq.phrases[i]) != NULL);
    api_search_q_free(&sq);
    api_search_cursor_t c;
    if (api_search_cursor_parse(q, &c) == 0)
        CHECK(c.seq >= 1 && c.ms >= 0 && kc_id_valid(c.convo, strlen(c.convo), 128) &&
              strchr(c.rank, '_') == NULL);
}

static void check_query(char *query)
{
    char *save = NULL;
    for (char *kv = strtok_r(query, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        char *value = NULL;
        if (eq) {
            *eq = '\0';
            value = eq + 1;
            (void)MHD_http_unescape(value);
        }
        (void)MHD_http_unescape(kv);
        if (!api_query_arg_ok(kv, value)) {
            CHECK(!kc_utf8_valid(kv, strlen(kv)) || value);
            continue;
        }
        CHECK(kc_utf8_valid(kv, strlen(kv)));
        if (!value)
            continue;
        CHECK(strlen(value) <= API_QUERY_VALUE_MAX && kc_utf8_valid(value, strlen(value)));
        if (strcmp(kv, "limit") == 0) {
            check_int(value, 1, 500);
            check_int(value, 1, 100);
        } else if (strcmp(kv, "since_seq") == 0) {
            check_int(value, 0, 9223372036854775806LL);
        } else if (strcmp(kv, "before_seq") == 0) {
            check_int(value, 1, 9223372036854775807LL);
        } else if (strcmp(kv, "username") == 0) {
            check_username(value);
        } else if (strcmp(kv, "q") == 0 || strcmp(kv, "cursor") == 0) {
            check_search(value);
        } else if (strcmp(kv, "around_seq") == 0) {
            check_int(value, 1, 9223372036854775806LL);
        }
    }
}

/* muted_until of PATCH .../settings: a time taken has the shape of RFC 3339 (nothing
 * Postgres would read as a word), and, within the years kc_iso_ms writes, its ISO form in UTC
 * reads back as the same instant. */
static void check_time(const char *t)
{
    long long ms = 0;
    if (api_time_parse(t, &ms) != 0)
        return;
    size_t n = strlen(t);
    CHECK(n >= 20 && t[4] == '-' && t[7] == '-' && (t[10] == 'T' || t[10] == 't') &&
          t[13] == ':' && t[16] == ':');
    CHECK(t[n - 1] == 'Z' || t[n - 1] == 'z' || (n >= 25 && t[n - 3] == ':'));
    if (ms >= 0 && ms < 253402300800000LL) {
        char iso[32];
        long long again = -1;
        kc_iso_ms(ms, iso);
        CHECK(api_time_parse(iso, &again) == 0 && again == ms);
    }
}

static void check_body(const char *body, size_t len)
{
    cJSON *j = NULL;
    const char *code = NULL, *message = NULL;
    if (api_body_parse(body, len, &j, &code, &message) != 0) {
        CHECK(j == NULL && code && message);
        return;
    }
    CHECK(cJSON_IsObject(j) && kc_utf8_valid(body, len));
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)body[i] >= 0x20 || body[i] == '\t' || body[i] == '\n' ||
              body[i] == '\r');
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "username");
    if (cJSON_IsString(u))
        check_username(u->valuestring);
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(j, "members");
    const char **ids = NULL;
    size_t n = 0;
    if (api_member_ids(members, 1000, ID_MAX, &ids, &n) == API_MEMBERS_OK) {
        CHECK(n <= 1000 && n == (size_t)cJSON_GetArraySize(members));
        for (size_t i = 0; i < n; i++)
            CHECK(kc_id_valid(ids[i], strlen(ids[i]), ID_MAX));
        free(ids);
    }
    const cJSON *until = cJSON_GetObjectItemCaseSensitive(j, "muted_until");
    if (cJSON_IsString(until))
        check_time(until->valuestring);
    const char *emoji = NULL, *why = NULL;
    if (api_reaction_emoji(j, &emoji, &why) == 0)
        CHECK(emoji && kc_chat_reaction_valid(emoji, strlen(emoji)) &&
              strlen(emoji) <= KC_CHAT_MAX_REACTION_BYTES);
    else
        CHECK(!emoji && why && *why);
    cJSON_Delete(j);
}

/* The body as a message of the Redis read model (written by the projector; any bytes here):
 * a JSON object in gives a JSON object out, whose reactions are an array (the input's, when
 * it has one), without "reacted", and whose my_reaction is the reacted entry of the user
 * "u_a" (or null); a preview holds none of the three. Nothing is appended for anything else
 * (what is shaped like an object at its top level may still be copied). */
static void check_stored_message(const char *json, size_t len)
{
    cJSON *in = NULL;
    if (kc_json_parse_whole(json, len, &in) != KC_JSON_OK || !cJSON_IsObject(in)) {
        cJSON_Delete(in);
        in = NULL;
    }
    kc_buf_t out = {0};
    int rc = api_tail_message(&out, json, len, "u_a");
    CHECK(rc == 0 || (rc == -1 && out.len == 0 && !in));
    if (in) {
        cJSON *o = NULL;
        CHECK(kc_json_parse_whole(out.data, out.len, &o) == KC_JSON_OK && cJSON_IsObject(o));
        CHECK(!cJSON_GetObjectItemCaseSensitive(o, "reacted"));
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(o, "reactions");
        CHECK(cJSON_IsArray(counts));
        const cJSON *was = cJSON_GetObjectItemCaseSensitive(in, "reactions");
        if (cJSON_IsArray(was))
            CHECK(cJSON_Compare(was, counts, 1));
        const cJSON *mine = cJSON_GetObjectItemCaseSensitive(o, "my_reaction");
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(in, "reacted");
        const cJSON *want =
            cJSON_IsObject(map) ? cJSON_GetObjectItemCaseSensitive(map, "u_a") : NULL;
        if (cJSON_IsString(want))
            CHECK(cJSON_IsString(mine) && strcmp(mine->valuestring, want->valuestring) == 0);
        else
            CHECK(cJSON_IsNull(mine));
        cJSON_Delete(o);
    }
    kc_buf_free(&out);
    rc = api_preview_message(&out, json, len);
    CHECK(rc == 0 || (rc == -1 && out.len == 0 && !in));
    if (in) {
        cJSON *o = NULL;
        CHECK(kc_json_parse_whole(out.data, out.len, &o) == KC_JSON_OK && cJSON_IsObject(o));
        CHECK(!cJSON_GetObjectItemCaseSensitive(o, "reacted") &&
              !cJSON_GetObjectItemCaseSensitive(o, "reactions") &&
              !cJSON_GetObjectItemCaseSensitive(o, "my_reaction"));
        cJSON_Delete(o);
    }
    kc_buf_free(&out);
    cJSON_Delete(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t tlen = nl ? (size_t)(nl - data) : size;
    /* The target as the server hands it on: a C string, so up to its first NUL. */
    char *target = kc_xstrndup((const char *)data, tlen);
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    check_path(target);
    if (q)
        check_query(q);
    free(target);
    if (nl) {
        /* A body is not NUL-terminated: an exact copy, so ASan sees a read past its end. */
        size_t blen = size - tlen - 1;
        char *body = kc_xmalloc(blen ? blen : 1);
        memcpy(body, nl + 1, blen);
        check_body(body, blen);
        check_stored_message(body, blen);
        free(body);
    }
    return 0;
}
