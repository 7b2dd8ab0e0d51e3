/* presign.c - POST /attachments/presign {convo_id, filename, content_type, size}: the first
 * step of an attachment. A member of the conversation gets an S3 presigned PUT URL
 * (Signature Version 4, query string authentication, lib/s3.c) to upload the file straight
 * to the object store, and an attachment id; a row of uploads (db/migrations/0007) records
 * who may send it, in which conversation, with which media type, and until when.
 *
 * The key is attachments/<convo_id>/<attachment id>/f/<filename>: a random name under the
 * conversation, never one the caller can aim at someone else's object (the thumbnail goes
 * beside it, .../t.webp). The URL is valid --presign-ttl-s seconds and signs the host and
 * the Content-Type header, so the upload must declare the media type asked for, and that
 * type must be one of --attachment-types. The declared size is checked against
 * --attachment-max-bytes here; a presigned PUT cannot bind it, so POST
 * /attachments/{id}/complete (attachments.c) checks the stored object again. A caller has at
 * most --attachment-pending-max uploads presigned and not yet completed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"

#define FILENAME_MAX_BYTES 255
#define CTYPE_MAX_BYTES 127

/* A file name: 1..255 bytes of UTF-8, no '/', '\\' or control characters, not "." or "..". */
static int filename_ok(const char *f)
{
    size_t n = strlen(f);
    if (n == 0 || n > FILENAME_MAX_BYTES || !kc_utf8_valid(f, n) || strcmp(f, ".") == 0 ||
        strcmp(f, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)f[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return 0;
    }
    return 1;
}

/* type/subtype of RFC 7230 token characters, no parameters. */
static int ctype_ok(const char *t)
{
    size_t n = strlen(t), slash = 0, at = 0;
    if (n < 3 || n > CTYPE_MAX_BYTES)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '/') {
            slash++;
            at = i;
            continue;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("!#$&^_.+-", c)))
            return 0;
    }
    return slash == 1 && at > 0 && at < n - 1;
}

int api_type_allowed(const char *list, const char *ctype)
{
    size_t n = strlen(ctype);
    const char *slash = strchr(ctype, '/');
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        size_t len = (size_t)(e - p);
        if (len == n && strncasecmp(p, ctype, n) == 0)
            return 1;
        /* a type, a slash and a star (image/...): any subtype of that type */
        if (slash && len >= 2 && p[len - 1] == '*' && p[len - 2] == '/' &&
            (size_t)(slash - ctype) == len - 2 && strncasecmp(p, ctype, len - 2) == 0)
            return 1;
        p = e;
    }
    return 0;
}

int api_presign_check(api_t *a, char *err, size_t errlen)
{
    const api_cfg_t *c = &a->cfg;
    a->s3cfg = (kc_s3_cfg_t){c->s3_endpoint, c->s3_bucket, c->s3_region, c->s3_access_key,
                             c->s3_secret_key};
    if (!*c->s3_endpoint)
        return 0;
    char why[160];
    if (kc_s3_cfg_check(&a->s3cfg, why, sizeof(why)) != 0) {
        kc_strlcpyf(err, errlen, "s3-%s", why); /* "s3-endpoint must be ...", "... needs ..." */
        return -1;
    }
    return 0;
}

typedef struct {
    char id[KC_ID_MAX];
    char ctype[CTYPE_MAX_BYTES + 1];
    kc_buf_t key;
} presign_t;

static void presign_free(void *arg)
{
    presign_t *p = arg;
    kc_buf_free(&p->key);
    free(p);
}

static void on_recorded(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    const api_cfg_t *c = &r->a->cfg;
    presign_t *p = r->state;
    if (err || !res || PQntuples(res) != 1) {
        api_error(r, 503, "unavailable", "the upload could not be recorded");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        api_error(r, 404, "not_found", "no such conversation");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "1") != 0) {
        char msg[128];
        (void)kc_strlcpyf(msg, sizeof(msg),
                          "%lld uploads wait to be completed: complete or let them expire",
                          c->attachment_pending_max);
        api_refuse(r, 429, "too_many_uploads", msg, 60);
        return;
    }
    kc_buf_t url = {0}, b = {0};
    long long now = kc_now_ms() / 1000;
    kc_s3_presign(&r->a->s3cfg, "PUT", p->key.data, p->ctype, now, c->presign_ttl_s, &url);
    char exp[32];
    kc_iso_ms((now + c->presign_ttl_s) * 1000, exp);
    kc_buf_puts(&b, "{\"id\":\"");
    kc_buf_json_str(&b, p->id, strlen(p->id));
    kc_buf_puts(&b, "\",\"method\":\"PUT\",\"url\":\"");
    kc_buf_json_str(&b, url.data, url.len);
    kc_buf_puts(&b, "\",\"headers\":{\"Content-Type\":\"");
    kc_buf_json_str(&b, p->ctype, strlen(p->ctype));
    kc_buf_puts(&b, "\"},\"bucket\":\"");
    kc_buf_json_str(&b, c->s3_bucket, strlen(c->s3_bucket));
    kc_buf_puts(&b, "\",\"key\":\"");
    kc_buf_json_str(&b, p->key.data, p->key.len);
    kc_buf_printf(&b, "\",\"expires_in\":%lld,\"expires_at\":\"%s\",\"max_bytes\":%lld}",
                  c->presign_ttl_s, exp, c->attachment_max_bytes);
    kc_buf_free(&url);
    api_reply(r, 200, &b);
}

void api_presign(api_req_t *r)
{
    const api_cfg_t *c = &r->a->cfg;
    if (!*c->s3_endpoint) {
        api_error(r, 404, "attachments_unavailable",
                  "this server has no object store for attachments");
        return;
    }
    const char *convo = api_json_str(r->body, "convo_id");
    const char *filename = api_json_str(r->body, "filename");
    const char *ctype = api_json_str(r->body, "content_type");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(r->body, "size");
    if (!convo || !kc_id_valid(convo, strlen(convo), API_ID_MAX)) {
        api_error(r, 400, "invalid_request", "convo_id must be the conversation's id");
        return;
    }
    if (!filename || !filename_ok(filename)) {
        api_error(r, 400, "invalid_request",
                  "filename must be 1 to 255 bytes of UTF-8 without '/', '\\' or control "
                  "characters");
        return;
    }
    if (!ctype || !ctype_ok(ctype)) {
        api_error(r, 400, "invalid_request", "content_type must be a media type such as image/png");
        return;
    }
    if (!api_type_allowed(c->attachment_types, ctype)) {
        api_error(r, 415, "attachment_type_refused",
                  "this media type is not accepted for attachments");
        return;
    }
    if (!cJSON_IsNumber(size) || size->valuedouble < 1 ||
        size->valuedouble != (double)(long long)size->valuedouble) {
        api_error(r, 400, "invalid_request", "size must be a positive integer (bytes)");
        return;
    }
    if (size->valuedouble > (double)c->attachment_max_bytes) {
        char msg[96];
        (void)kc_strlcpyf(msg, sizeof(msg), "attachments are at most %lld bytes",
                          c->attachment_max_bytes);
        api_error(r, 413, "attachment_too_large", msg);
        return;
    }
    presign_t *p = kc_xcalloc(1, sizeof(*p));
    r->state = p;
    r->state_free = presign_free;
    if (kc_id_new(p->id, sizeof(p->id), "a_") != 0) {
        api_error(r, 500, "internal", "cannot make an attachment id");
        return;
    }
    (void)kc_strlcpyf(p->ctype, sizeof(p->ctype), "%s", ctype);
    kc_buf_printf(&p->key, "attachments/%s/%s/f/%s", convo, p->id, filename);
    char window[24], pending[24];
    (void)kc_strlcpyf(window, sizeof(window), "%lld", c->attachment_send_window_s);
    (void)kc_strlcpyf(pending, sizeof(pending), "%lld", c->attachment_pending_max);
    const char *params[] = {convo, r->user_id, p->id, p->key.data, filename, ctype, window,
                            pending};
    /* Whether the caller is a member, and whether the row went in (not when the caller
     * already has attachment-pending-max uploads waiting). */
    (void)api_pg(r,
                 "WITH m AS (SELECT EXISTS (SELECT 1 FROM rm.members "
                 "                          WHERE convo_id = $1 AND user_id = $2) AS member), "
                 "w AS (SELECT count(*) AS n FROM uploads WHERE user_id = $2 "
                 "      AND checked_at IS NULL AND removed_at IS NULL AND send_by > now()), "
                 "ins AS (INSERT INTO uploads (id, key, convo_id, user_id, name, content_type, "
                 "                             send_by) "
                 "        SELECT $3, $4, $1, $2, $5, $6, now() + make_interval(secs => $7::int) "
                 "        FROM m, w WHERE m.member AND w.n < $8::int RETURNING 1) "
                 "SELECT m.member, (SELECT count(*) FROM ins) FROM m",
                 8, params, on_recorded);
}
