/* registry.c - the routes of the Confluent Schema Registry API that clients use to read:
 *
 *   GET  /                                      {}
 *   GET  /schemas/types                         ["AVRO"]
 *   GET  /schemas                               every schema, with subject, version and id
 *   GET  /schemas/ids/{id}                      {"schema": ...}   (deserializers ask this)
 *   GET  /schemas/ids/{id}/schema               the schema itself
 *   GET  /schemas/ids/{id}/subjects | versions  where the id is used
 *   GET  /subjects                              the subject names
 *   GET  /subjects/{s}/versions                 [1, 2, ...]
 *   GET  /subjects/{s}/versions/{v|latest}      {"subject", "version", "id", "schema"}
 *   GET  /subjects/{s}/versions/{v}/schema      the schema itself
 *   GET  /subjects/{s}/versions/{v}/referencedby  []
 *   POST /subjects/{s}                          look a schema up: its version and id
 *   POST /subjects/{s}/versions                 register: the id when the subject holds the
 *                                               schema already, else read-only (42205)
 *   GET  /config, /config/{s}                   {"compatibilityLevel": "BACKWARD"}
 *   PUT  /config, /config/{s}                   BACKWARD is accepted (it is what is kept);
 *                                               any other level is read-only (42205)
 *   GET  /mode, /mode/{s}                       {"mode": "READONLY"}
 *   PUT  /mode...; DELETE ...                   read-only (42205), READONLY itself accepted
 *
 * Errors are the registry's: {"error_code": N, "message": ...} with the HTTP status N's first
 * three digits (40401 subject not found, 40402 version not found, 40403 schema not found,
 * 42201 invalid schema, 42202 invalid version, 42205 read-only).
 *
 * Schemas compare as JSON values (key order and white space do not matter), the way a client
 * that parsed and printed a schema again still finds it.
 */
#include "registry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define MAX_SEGMENTS 6
#define SEGMENT_MAX 256

enum { ANS_FOUND, ANS_NOT_FOUND, ANS_REFUSED, ANS_BAD };

typedef struct {
    char seg[MAX_SEGMENTS][SEGMENT_MAX];
    size_t n;
} path_t;

int reg_init(reg_t *r, const char *schemas_dir, kc_metrics_t *metrics, char *err, size_t errlen)
{
    *r = (reg_t){0};
    r->schemas = kc_schemas_load(schemas_dir, err, errlen);
    if (!r->schemas)
        return -1;
    size_t n = kc_schemas_count(r->schemas);
    r->parsed = kc_xcalloc(n ? n : 1, sizeof(*r->parsed));
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
        r->parsed[i] = cJSON_Parse(e.text);
        if (!r->parsed[i]) {
            kc_strlcpyf(err, errlen, "%s version %d: cannot parse its schema again",
                        e.subject, e.version);
            reg_destroy(r);
            return -1;
        }
    }
    if (metrics) {
        static const char *const outcome[][2] = {
            {"outcome", "found"}, {"outcome", "not_found"}, {"outcome", "refused"},
            {"outcome", "bad_request"}};
        for (size_t i = 0; i < KC_ARRAY_LEN(r->answered); i++) {
            const char *labels[] = {outcome[i][0], outcome[i][1], NULL};
            r->answered[i] = kc_metrics_counter(
                metrics, "kchat_registry_requests_total",
                "Registry API requests by outcome: found, not_found (subject, version or id), "
                "refused (a write to the read-only registry) or bad_request.",
                labels);
        }
    }
    return 0;
}

void reg_destroy(reg_t *r)
{
    for (size_t i = 0; r->parsed && r->schemas && i < kc_schemas_count(r->schemas); i++)
        cJSON_Delete(r->parsed[i]);
    free(r->parsed);
    r->parsed = NULL;
    kc_schemas_destroy(r->schemas);
    r->schemas = NULL;
}

static void answer(reg_t *r, kc_http_resp_t *resp, int status)
{
    resp->status = status;
    resp->content_type = REG_CONTENT_TYPE;
    int kind = status < 300 ? ANS_FOUND
               : status == 404 ? ANS_NOT_FOUND
               : status == 422 || status == 405 ? ANS_REFUSED
                                                : ANS_BAD;
    if (r->answered[kind])
        kc_counter_inc(r->answered[kind]);
}

/* The registry's error body: status is code's first three digits (or code itself). */
static void fail(reg_t *r, kc_http_resp_t *resp, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(reg_t *r, kc_http_resp_t *resp, int code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kc_buf_reset(&resp->body);
    kc_buf_printf(&resp->body, "{\"error_code\":%d,\"message\":", code);
    kc_buf_json_qstr(&resp->body, msg, strlen(msg));
    kc_buf_putc(&resp->body, '}');
    answer(r, resp, code >= 1000 ? code / 100 : code);
}

/* Splits "/a/b/c" into segments; 0, or -1 for a path too deep or with a segment too long. An
 * empty path or "/" has none; a trailing slash is ignored. */
static int split(const char *p, path_t *out)
{
    out->n = 0;
    if (*p != '/')
        return -1;
    while (*p == '/') {
        p++;
        if (*p == '\0')
            break;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (out->n == MAX_SEGMENTS || len >= SEGMENT_MAX || len == 0)
            return -1;
        memcpy(out->seg[out->n], p, len);
        out->seg[out->n][len] = '\0';
        out->n++;
        p += len;
    }
    return 0;
}

/* A positive 32-bit integer written plainly, or -1. */
static long long positive(const char *s)
{
    if (*s < '1' || *s > '9' || strlen(s) > 10)
        return -1;
    long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v <= INT32_MAX ? v : -1;
}

static int subject_known(const reg_t *r, const char *subject)
{
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++)
        if (strcmp(e.subject, subject) == 0)
            return 1;
    return 0;
}

/* The entry of subject's version v (0: the newest); -1 when none. */
static int find_version(const reg_t *r, const char *subject, int v, kc_schema_info_t *out)
{
    int found = 0;
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
        if (strcmp(e.subject, subject) != 0)
            continue;
        if ((v == 0 && (!found || e.version > out->version)) || e.version == v) {
            *out = e;
            found = 1;
        }
    }
    return found ? 0 : -1;
}

static int find_id(const reg_t *r, long long id, kc_schema_info_t *out)
{
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++)
        if (e.id == id) {
            *out = e;
            return 0;
        }
    return -1;
}

static void put_entry(kc_buf_t *b, const kc_schema_info_t *e)
{
    kc_buf_puts(b, "{\"subject\":");
    kc_buf_json_qstr(b, e->subject, strlen(e->subject));
    kc_buf_printf(b, ",\"version\":%d,\"id\":%ld,\"schema\":", e->version, (long)e->id);
    kc_buf_json_qstr(b, e->text, strlen(e->text));
    kc_buf_putc(b, '}');
}

static void not_found_subject(reg_t *r, kc_http_resp_t *resp, const char *subject)
{
    fail(r, resp, 40401, "Subject '%s' not found.", subject);
}

static void read_only(reg_t *r, kc_http_resp_t *resp, const char *what)
{
    fail(r, resp, 42205,
         "%s is in read-only mode: kchat's schemas are added as files under schemas/ with a new "
         "id, never through this API",
         what);
}

/* The version segment: 0 for "latest" or -1, the number, or -1 after answering 42202. */
static int version_of(reg_t *r, kc_http_resp_t *resp, const char *seg)
{
    if (strcmp(seg, "latest") == 0 || strcmp(seg, "-1") == 0)
        return 0;
    long long v = positive(seg);
    if (v > 0)
        return (int)v;
    fail(r, resp, 42202,
         "The specified version '%.64s' is not a valid version id. Allowed values are between "
         "[1, 2^31-1] and the string \"latest\"",
         seg);
    return -1;
}

static void get_schemas(reg_t *r, const path_t *p, kc_http_resp_t *resp)
{
    kc_buf_t *b = &resp->body;
    kc_schema_info_t e;
    if (p->n == 1) {
        kc_buf_putc(b, '[');
        for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
            if (i)
                kc_buf_putc(b, ',');
            put_entry(b, &e);
        }
        kc_buf_putc(b, ']');
        answer(r, resp, 200);
        return;
    }
    if (p->n == 2 && strcmp(p->seg[1], "types") == 0) {
        kc_buf_puts(b, "[\"AVRO\"]");
        answer(r, resp, 200);
        return;
    }
    if (p->n < 3 || p->n > 4 || strcmp(p->seg[1], "ids") != 0) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    long long id = positive(p->seg[2]);
    if (id < 0 || find_id(r, id, &e) != 0) {
        fail(r, resp, 40403, "Schema %.32s not found", p->seg[2]);
        return;
    }
    const char *what = p->n == 4 ? p->seg[3] : "";
    if (p->n == 3) {
        kc_buf_puts(b, "{\"schema\":");
        kc_buf_json_qstr(b, e.text, strlen(e.text));
        kc_buf_putc(b, '}');
    } else if (strcmp(what, "schema") == 0) {
        kc_buf_puts(b, e.text);
    } else if (strcmp(what, "subjects") == 0) {
        kc_buf_putc(b, '[');
        kc_buf_json_qstr(b, e.subject, strlen(e.subject));
        kc_buf_putc(b, ']');
    } else if (strcmp(what, "versions") == 0) {
        kc_buf_puts(b, "[{\"subject\":");
        kc_buf_json_qstr(b, e.subject, strlen(e.subject));
        kc_buf_printf(b, ",\"version\":%d}]", e.version);
    } else {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    answer(r, resp, 200);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void list_subjects(reg_t *r, kc_http_resp_t *resp)
{
    size_t n = kc_schemas_count(r->schemas), k = 0;
    const char **names = kc_xcalloc(n ? n : 1, sizeof(*names));
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
        size_t j = 0;
        while (j < k && strcmp(names[j], e.subject) != 0)
            j++;
        if (j == k)
            names[k++] = e.subject;
    }
    qsort(names, k, sizeof(*names), cmp_str);
    kc_buf_putc(&resp->body, '[');
    for (size_t i = 0; i < k; i++) {
        if (i)
            kc_buf_putc(&resp->body, ',');
        kc_buf_json_qstr(&resp->body, names[i], strlen(names[i]));
    }
    kc_buf_putc(&resp->body, ']');
    free(names);
    answer(r, resp, 200);
}

static void get_subject(reg_t *r, const path_t *p, kc_http_resp_t *resp)
{
    const char *subject = p->seg[1];
    if (p->n < 3 || strcmp(p->seg[2], "versions") != 0 || p->n > 5) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    if (!subject_known(r, subject)) {
        not_found_subject(r, resp, subject);
        return;
    }
    kc_buf_t *b = &resp->body;
    kc_schema_info_t e;
    if (p->n == 3) {
        kc_buf_putc(b, '[');
        int first = 1;
        for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
            if (strcmp(e.subject, subject) != 0)
                continue;
            kc_buf_printf(b, "%s%d", first ? "" : ",", e.version);
            first = 0;
        }
        kc_buf_putc(b, ']');
        answer(r, resp, 200);
        return;
    }
    int v = version_of(r, resp, p->seg[3]);
    if (v < 0)
        return;
    if (find_version(r, subject, v, &e) != 0) {
        fail(r, resp, 40402, "Version %d not found.", v);
        return;
    }
    if (p->n == 4)
        put_entry(b, &e);
    else if (strcmp(p->seg[4], "schema") == 0)
        kc_buf_puts(b, e.text);
    else if (strcmp(p->seg[4], "referencedby") == 0)
        kc_buf_puts(b, "[]");
    else {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    answer(r, resp, 200);
}

/* The request body's schema, parsed: NULL after answering 42201 (or 400 for a body that is
 * not a JSON object). */
static cJSON *body_schema(reg_t *r, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    cJSON *body = NULL;
    if (kc_json_parse_whole(req->body ? req->body : "", req->body_len, &body) != KC_JSON_OK ||
        !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        fail(r, resp, 400, "the body must be a JSON object with \"schema\"");
        return NULL;
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(body, "schema");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(body, "schemaType");
    const cJSON *refs = cJSON_GetObjectItemCaseSensitive(body, "references");
    cJSON *parsed = NULL;
    if (!cJSON_IsString(schema))
        fail(r, resp, 42201, "Invalid schema: \"schema\" must be a string");
    else if (type && !cJSON_IsNull(type) &&
             !(cJSON_IsString(type) && strcmp(type->valuestring, "AVRO") == 0))
        fail(r, resp, 42201, "Invalid schema: only schemaType AVRO is kept here");
    else if (refs && !cJSON_IsNull(refs) && !(cJSON_IsArray(refs) && cJSON_GetArraySize(refs) == 0))
        fail(r, resp, 42201, "Invalid schema: kchat's schemas have no references");
    else if (kc_json_parse_whole(schema->valuestring, strlen(schema->valuestring), &parsed) !=
             KC_JSON_OK)
        fail(r, resp, 42201, "Invalid schema: the schema is not JSON");
    cJSON_Delete(body);
    return parsed;
}

/* The subject's version whose schema equals want: 0, or -1. */
static int match(const reg_t *r, const char *subject, const cJSON *want, kc_schema_info_t *out)
{
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(r->schemas, i, &e) == 0; i++) {
        if (strcmp(e.subject, subject) != 0)
            continue;
        if (cJSON_Compare(r->parsed[i], want, 1)) {
            *out = e;
            return 0;
        }
    }
    return -1;
}

static void post_subject(reg_t *r, const path_t *p, const kc_http_req_t *req,
                         kc_http_resp_t *resp)
{
    const char *subject = p->seg[1];
    int registering = p->n == 3 && strcmp(p->seg[2], "versions") == 0;
    if (p->n != 2 && !registering) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    if (!subject_known(r, subject)) {
        if (registering)
            read_only(r, resp, "This registry");
        else
            not_found_subject(r, resp, subject);
        return;
    }
    cJSON *want = body_schema(r, req, resp);
    if (!want)
        return;
    kc_schema_info_t e;
    int found = match(r, subject, want, &e) == 0;
    cJSON_Delete(want);
    if (!found) {
        if (registering)
            fail(r, resp, 42205,
                 "Subject %s is in read-only mode and holds no such schema: kchat's schemas are "
                 "added as files under schemas/ with a new id, never through this API",
                 subject);
        else
            fail(r, resp, 40403, "Schema not found");
        return;
    }
    if (registering)
        kc_buf_printf(&resp->body, "{\"id\":%ld}", (long)e.id);
    else
        put_entry(&resp->body, &e);
    answer(r, resp, 200);
}

/* GET or PUT /config[/s] and /mode[/s]: the one value kept, which a PUT may only restate. */
static void config_or_mode(reg_t *r, const path_t *p, const kc_http_req_t *req,
                           kc_http_resp_t *resp, int is_mode)
{
    if (p->n > 2) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    if (p->n == 2 && !subject_known(r, p->seg[1])) {
        not_found_subject(r, resp, p->seg[1]);
        return;
    }
    const char *key = is_mode ? "mode" : "compatibility";
    const char *value = is_mode ? "READONLY" : REG_COMPATIBILITY;
    if (strcmp(req->method, "GET") == 0) {
        kc_buf_printf(&resp->body, "{\"%s\":\"%s\"}", is_mode ? "mode" : "compatibilityLevel",
                      value);
        answer(r, resp, 200);
        return;
    }
    if (strcmp(req->method, "PUT") != 0) {
        read_only(r, resp, "This registry");
        return;
    }
    cJSON *body = NULL;
    if (kc_json_parse_whole(req->body ? req->body : "", req->body_len, &body) != KC_JSON_OK ||
        !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        fail(r, resp, 400, "the body must be a JSON object with \"%s\"", key);
        return;
    }
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(body, key);
    int same = cJSON_IsString(want) && strcmp(want->valuestring, value) == 0;
    cJSON_Delete(body);
    if (!same) {
        if (is_mode)
            read_only(r, resp, "This registry");
        else
            fail(r, resp, 42205,
                 "This registry is in read-only mode: every kchat subject keeps compatibility "
                 "%s",
                 value);
        return;
    }
    kc_buf_printf(&resp->body, "{\"%s\":\"%s\"}", key, value);
    answer(r, resp, 200);
}

void reg_handle(reg_t *r, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    path_t p;
    kc_buf_reset(&resp->body);
    if (split(req->path, &p) != 0) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    const char *m = req->method;
    int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    const char *top = p.n ? p.seg[0] : "";
    if (strcmp(top, "config") == 0 || strcmp(top, "mode") == 0) {
        config_or_mode(r, &p, req, resp, top[0] == 'm');
        return;
    }
    int known = p.n == 0 || strcmp(top, "schemas") == 0 || strcmp(top, "subjects") == 0;
    if (!known) {
        fail(r, resp, 404, "HTTP 404 Not Found");
        return;
    }
    if (strcmp(m, "DELETE") == 0 || strcmp(m, "PUT") == 0) {
        read_only(r, resp, "This registry");
        return;
    }
    if (p.n == 0 && get) {
        kc_buf_puts(&resp->body, "{}");
        answer(r, resp, 200);
    } else if (strcmp(top, "schemas") == 0 && get) {
        get_schemas(r, &p, resp);
    } else if (strcmp(top, "subjects") == 0 && p.n == 1 && get) {
        list_subjects(r, resp);
    } else if (strcmp(top, "subjects") == 0 && p.n >= 2 && get) {
        get_subject(r, &p, resp);
    } else if (strcmp(top, "subjects") == 0 && p.n >= 2 && post) {
        post_subject(r, &p, req, resp);
    } else {
        fail(r, resp, 405, "HTTP 405 Method Not Allowed");
    }
}
