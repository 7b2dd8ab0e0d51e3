/* request.c - a REST request's path, query and body, read and checked (see request.h). */
#include "request.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

/* One ":id" or ":user_id" segment of n bytes at p: 1 when it is an id of at most size - 1
 * bytes (copied into out, when out is not NULL), else 0. */
static int id_segment(const char *p, size_t n, char *out, size_t size)
{
    if (size < 2 || !kc_id_valid(p, n, size - 1))
        return 0;
    if (out) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return 1;
}

/* One ":seq" segment: a seq_no of 1 to 15 digits, no leading zero (below 2^53). */
static int seq_segment(const char *p, size_t n, long long *seq)
{
    long long v = 0;
    int ok = n >= 1 && n <= 15 && p[0] != '0';
    for (size_t i = 0; ok && i < n; i++) {
        ok = p[i] >= '0' && p[i] <= '9';
        v = v * 10 + (p[i] - '0');
    }
    if (ok && seq)
        *seq = v;
    return ok;
}

int api_path_match_ids(const char *tmpl, const char *path, char *id, size_t idsize,
                       char *user_id, size_t user_idsize, long long *seq)
{
    static const struct {
        const char *name;
        size_t len;
    } params[] = {{":user_id", 8}, {":id", 3}, {":seq", 4}, {":att_id", 7}};
    const char *t = tmpl, *p = path;
    int bad = 0;
    while (*t && *p) {
        size_t k = 0;
        while (k < sizeof(params) / sizeof(params[0]) &&
               strncmp(t, params[k].name, params[k].len) != 0)
            k++;
        if (k < sizeof(params) / sizeof(params[0])) {
            const char *end = strchr(p, '/');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            int ok;
            if (k == 0 || k == 3) /* without a buffer, checked as an id of the :id's size */
                ok = user_id ? id_segment(p, n, user_id, user_idsize)
                             : id_segment(p, n, NULL, idsize);
            else if (k == 1)
                ok = id_segment(p, n, id, idsize);
            else
                ok = seq_segment(p, n, seq);
            bad |= !ok;
            t += params[k].len;
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

int api_path_match(const char *tmpl, const char *path, char *id, size_t idsize, long long *seq)
{
    return api_path_match_ids(tmpl, path, id, idsize, NULL, 0, seq);
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

/* ---- search ---- */

/* Has a letter or digit: ASCII alphanumerics, or any non-ASCII character (the parser's
 * words include them). */
static int has_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            return 1;
    }
    return 0;
}

static int space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int api_search_parse(const char *q, api_search_q_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->copy = kc_xstrdup(q);
    char *p = out->copy;
    while (*p) {
        if (space(*p)) {
            p++;
            continue;
        }
        if (*p == '"') {
            char *start = ++p, *end = strchr(start, '"');
            if (!end)
                end = start + strlen(start); /* an unclosed quote runs to the end */
            char *next = *end ? end + 1 : end;
            *end = '\0';
            if (has_word(start, (size_t)(end - start))) {
                if (out->nphrases == API_SEARCH_MAX_PHRASES) {
                    *why = "at most 4 quoted phrases";
                    return -1;
                }
                out->phrases[out->nphrases++] = start;
            }
            p = next;
            continue;
        }
        char *start = p;
        while (*p && !space(*p) && *p != '"')
            p++;
        size_t n = (size_t)(p - start);
        if (!has_word(start, n))
            continue;
        if (out->nwords == API_SEARCH_MAX_WORDS) {
            *why = "at most 16 words";
            return -1;
        }
        /* 'word':* with ' doubled and \ escaped: a quoted lexeme of tsquery's syntax */
        kc_buf_puts(&out->words, out->nwords++ ? " & '" : "'");
        for (size_t i = 0; i < n; i++) {
            if (start[i] == '\'' || start[i] == '\\')
                kc_buf_putc(&out->words, start[i] == '\'' ? '\'' : '\\');
            kc_buf_putc(&out->words, start[i]);
        }
        kc_buf_puts(&out->words, "':*");
    }
    if (!out->nwords && !out->nphrases) {
        *why = "q has no word to search for";
        return -1;
    }
    return 0;
}

void api_search_q_free(api_search_q_t *sq)
{
    kc_buf_free(&sq->words);
    free(sq->copy);
    memset(sq, 0, sizeof(*sq));
}

/* A real as Postgres prints it: digits, '.', 'e', '-', '+' (no inf or nan: ranks are finite). */
static int real_text(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return 0;
    char tmp[40];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno || !end || *end || v != v || v < 0 || v > 1e30)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789.e-+", s[i]))
            return 0;
    return 1;
}

int api_search_cursor_parse(const char *s, api_search_cursor_t *c)
{
    memset(c, 0, sizeof(*c));
    size_t n = strlen(s);
    if (n >= sizeof(c->buf))
        return -1;
    memcpy(c->buf, s, n + 1);
    char *parts[4] = {c->buf, NULL, NULL, NULL};
    for (int i = 1; i < 4; i++) {
        char *u = strchr(parts[i - 1], '_');
        if (!u)
            return -1;
        *u = '\0';
        parts[i] = u + 1;
    }
    if (!real_text(parts[0], strlen(parts[0])) ||
        api_int_parse(parts[1], 0, 9223372036854775807LL, &c->ms) != 0 ||
        api_int_parse(parts[2], 1, 9223372036854775807LL, &c->seq) != 0 ||
        !kc_id_valid(parts[3], strlen(parts[3]), 128))
        return -1;
    c->rank = parts[0];
    c->convo = parts[3];
    return 0;
}


/* n digits at p as a number, or -1 when one is not a digit. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil): no time zone, no timegm, no range limit of time_t. */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int api_time_parse(const char *s, long long *ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t n = strnlen(s, 64);
    if (n < 20 || n >= 64 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = digits(s + 11, 2),
        mi = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        sec < 0 || sec > 60)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    const char *p = s + 19;
    int frac_ms = 0;
    if (*p == '.') {
        int nd = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, nd++) {
            if (nd < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        }
        if (nd < 1 || nd > 9)
            return -1;
        for (; nd < 3; nd++)
            frac_ms *= 10;
    }
    int off_min = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        off_min = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
    } else {
        return -1;
    }
    long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec -
                     off_min * 60LL;
    *ms = secs * 1000 + frac_ms;
    return 0;
}
