/* request.c - a REST request's path, query and body, read and checked (see request.h). */
#include "request.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

int api_path_match(const char *tmpl, const char *path, char *id, size_t idsize, long long *seq)
{
    const char *t = tmpl, *p = path;
    int bad = 0;
    while (*t && *p) {
        int is_id = strncmp(t, ":id", 3) == 0, is_seq = strncmp(t, ":seq", 4) == 0;
        if (is_id || is_seq) {
            const char *end = strchr(p, '/');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (is_id) {
                int ok = kc_id_valid(p, n, idsize - 1); /* 1..idsize-1 bytes */
                bad |= !ok;
                if (ok) {
                    memcpy(id, p, n);
                    id[n] = '\0';
                }
            } else {
                /* a seq_no: 1 to 15 digits, no leading zero (below 2^53) */
                long long v = 0;
                int ok = n >= 1 && n <= 15 && p[0] != '0';
                for (size_t i = 0; ok && i < n; i++) {
                    ok = p[i] >= '0' && p[i] <= '9';
                    v = v * 10 + (p[i] - '0');
                }
                bad |= !ok;
                if (ok && seq)
                    *seq = v;
            }
            t += is_id ? 3 : 4;
            p += n;
            if (*t != *p) /* the rest must match exactly */
                return 0;
            continue;
        }
        if (*t != *p)
            return 0;
        t++;
        p++;
    }
    if (*t != '\0' || *p != '\0')
        return 0;
    return bad ? -1 : 1;
}

int api_query_arg_ok(const char *key, const char *value)
{
    if (!kc_utf8_valid(key, strlen(key)))
        return 0;
    return !value || (strlen(value) <= API_QUERY_VALUE_MAX && kc_utf8_valid(value, strlen(value)));
}

int api_int_parse(const char *v, long long min, long long max, long long *out)
{
    /* strtoll skips leading white space of every kind and takes a '+': the value must start
     * with the number itself. */
    if (!(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')))
        return -1;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

int api_body_parse(const char *body, size_t len, cJSON **out, const char **code,
                   const char **message)
{
    *out = NULL;
    *code = "invalid_json";
    if (len == 0) {
        *message = "a JSON object body is required";
        return -1;
    }
    if (!kc_utf8_valid(body, len)) {
        *code = "invalid_utf8";
        *message = "the body is not valid UTF-8";
        return -1;
    }
    switch (kc_json_parse_whole(body, len, out)) {
    case KC_JSON_OK: break;
    case KC_JSON_NUL: *message = "strings may not contain U+0000"; return -1;
    case KC_JSON_TRAILING: *message = "the body has bytes after its JSON value"; return -1;
    default: *message = "the body is not valid JSON"; return -1;
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        *message = "the body must be a JSON object";
        return -1;
    }
    return 0;
}

api_members_status_t api_member_ids(const cJSON *arr, size_t max, size_t idmax,
                                    const char ***out, size_t *n)
{
    if (!cJSON_IsArray(arr))
        return API_MEMBERS_NOT_IDS;
    size_t len = (size_t)cJSON_GetArraySize(arr);
    if (len > max)
        return API_MEMBERS_TOO_MANY;
    const char **ids = kc_xcalloc(len ? len : 1, sizeof(char *));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || !kc_id_valid(it->valuestring, strlen(it->valuestring), idmax)) {
            free(ids);
            return API_MEMBERS_NOT_IDS;
        }
        ids[i++] = it->valuestring;
    }
    *out = ids;
    *n = i;
    return API_MEMBERS_OK;
}
