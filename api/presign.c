/* presign.c - POST /attachments/presign: an S3 presigned PUT URL (Signature Version 4, query
 * string authentication), so clients upload attachments straight to the object store.
 *
 * The URL is path-style (<endpoint>/<bucket>/<key>), valid --presign-ttl-s seconds, and signs
 * the host and the Content-Type header, so the upload must declare the content type it asked
 * for. The key is attachments/<user_id>/<random>/<filename>: the caller's own prefix, never a
 * name the caller can aim at someone else's object. The size is checked against
 * --attachment-max-bytes here; a presigned PUT cannot bind it (a bucket policy or a POST
 * policy would). HMAC-SHA256 and SHA-256 come from libsodium.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"

#define FILENAME_MAX_BYTES 255
#define CTYPE_MAX_BYTES 127

static void hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen,
                 unsigned char out[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, mlen);
    crypto_auth_hmacsha256_final(&st, out);
}

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, '/' stays when
 * keep_slash, every other byte becomes %XX (upper case). */
static void uri_encode(kc_buf_t *b, const char *s, int keep_slash)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
            kc_buf_putc(b, (char)c);
        else
            kc_buf_printf(b, "%%%02X", c);
    }
}

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

/* Splits the endpoint "http(s)://host[:port]" into the scheme and the host header. */
static int endpoint_host(const char *ep, const char **host)
{
    if (strncmp(ep, "http://", 7) == 0)
        *host = ep + 7;
    else if (strncmp(ep, "https://", 8) == 0)
        *host = ep + 8;
    else
        return -1;
    return **host && !strchr(*host, '/') ? 0 : -1;
}

int api_presign_check(const api_cfg_t *c, char *err, size_t errlen)
{
    const char *host;
    if (!*c->s3_endpoint)
        return 0;
    if (endpoint_host(c->s3_endpoint, &host) != 0) {
        kc_strlcpyf(err, errlen, "s3-endpoint must be http(s)://host[:port] without a path");
        return -1;
    }
    if (!*c->s3_bucket || !*c->s3_access_key || !*c->s3_secret_key) {
        kc_strlcpyf(err, errlen, "s3-endpoint needs s3-bucket, s3-access-key and s3-secret-key");
        return -1;
    }
    return 0;
}

void api_presign_url(const api_cfg_t *c, const char *key, const char *ctype, long long now_s,
                     kc_buf_t *url)
{
    const char *host = NULL;
    (void)endpoint_host(c->s3_endpoint, &host);
    time_t t = (time_t)now_s;
    struct tm tm;
    char amz_date[17] = "19700101T000000Z", day[9] = "19700101";
    if (gmtime_r(&t, &tm)) {
        (void)strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
        (void)strftime(day, sizeof(day), "%Y%m%d", &tm);
    }
    char scope[128];
    (void)kc_strlcpyf(scope, sizeof(scope), "%s/%s/s3/aws4_request", day, c->s3_region);

    kc_buf_t path = {0}, query = {0}, creq = {0}, sts = {0}, cred = {0};
    kc_buf_putc(&path, '/');
    uri_encode(&path, c->s3_bucket, 0);
    kc_buf_putc(&path, '/');
    uri_encode(&path, key, 1);
    kc_buf_printf(&cred, "%s/%s", c->s3_access_key, scope);
    /* the query parameters in byte order of their names, as the canonical form wants */
    kc_buf_puts(&query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    uri_encode(&query, cred.data, 0);
    kc_buf_printf(&query, "&X-Amz-Date=%s&X-Amz-Expires=%lld", amz_date, c->presign_ttl_s);
    kc_buf_puts(&query, "&X-Amz-SignedHeaders=content-type%3Bhost");

    kc_buf_printf(&creq,
                  "PUT\n%s\n%s\ncontent-type:%s\nhost:%s\n\ncontent-type;host\nUNSIGNED-PAYLOAD",
                  path.data, query.data, ctype, host);
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    crypto_hash_sha256(h, (const unsigned char *)creq.data, creq.len);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    kc_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hex);

    unsigned char k[crypto_auth_hmacsha256_BYTES];
    kc_buf_t secret = {0};
    kc_buf_printf(&secret, "AWS4%s", c->s3_secret_key);
    hmac((const unsigned char *)secret.data, secret.len, day, strlen(day), k);
    hmac(k, sizeof(k), c->s3_region, strlen(c->s3_region), k);
    hmac(k, sizeof(k), "s3", 2, k);
    hmac(k, sizeof(k), "aws4_request", 12, k);
    unsigned char sig[crypto_auth_hmacsha256_BYTES];
    hmac(k, sizeof(k), sts.data, sts.len, sig);
    char sighex[sizeof(sig) * 2 + 1];
    sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
    sodium_memzero(k, sizeof(k));
    sodium_memzero(secret.data, secret.len);

    kc_buf_printf(url, "%s%s?%s&X-Amz-Signature=%s", c->s3_endpoint, path.data, query.data,
                  sighex);
    kc_buf_free(&secret);
    kc_buf_free(&path);
    kc_buf_free(&query);
    kc_buf_free(&creq);
    kc_buf_free(&sts);
    kc_buf_free(&cred);
}

void api_presign(api_req_t *r)
{
    const api_cfg_t *c = &r->a->cfg;
    if (!*c->s3_endpoint) {
        api_error(r, 404, "attachments_unavailable",
                  "this server has no object store for attachments");
        return;
    }
    const char *filename = api_json_str(r->body, "filename");
    const char *ctype = api_json_str(r->body, "content_type");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(r->body, "size");
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
    char rnd[KC_ID_MAX];
    if (kc_id_new(rnd, sizeof(rnd), "a_") != 0) {
        api_error(r, 500, "internal", "cannot make an attachment id");
        return;
    }
    kc_buf_t key = {0}, url = {0}, b = {0};
    kc_buf_printf(&key, "attachments/%s/%s/%s", r->user_id, rnd, filename);
    long long now = kc_now_ms() / 1000;
    api_presign_url(c, key.data, ctype, now, &url);
    char exp[32];
    kc_iso_ms((now + c->presign_ttl_s) * 1000, exp);
    kc_buf_puts(&b, "{\"method\":\"PUT\",\"url\":\"");
    kc_buf_json_str(&b, url.data, url.len);
    kc_buf_puts(&b, "\",\"headers\":{\"Content-Type\":\"");
    kc_buf_json_str(&b, ctype, strlen(ctype));
    kc_buf_puts(&b, "\"},\"bucket\":\"");
    kc_buf_json_str(&b, c->s3_bucket, strlen(c->s3_bucket));
    kc_buf_puts(&b, "\",\"key\":\"");
    kc_buf_json_str(&b, key.data, key.len);
    kc_buf_printf(&b, "\",\"expires_in\":%lld,\"expires_at\":\"%s\",\"max_bytes\":%lld}",
                  c->presign_ttl_s, exp, c->attachment_max_bytes);
    kc_buf_free(&key);
    kc_buf_free(&url);
    api_reply(r, 200, &b);
}
