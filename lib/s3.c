/* s3.c - SigV4 presigned URLs, and S3 requests through libcurl's multi interface on the
 * daemon's libuv loop (kchat/s3.h).
 *
 * A request is a presigned URL handed to the loop's HTTP client (kchat/httpc.h), with the
 * client's callback passed through unchanged.
 */
#include "kchat/s3.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kchat/util.h"

/* ---- signing ---- */

static void hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen,
                 unsigned char out[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    (void)crypto_auth_hmacsha256_init(&st, key, klen);
    (void)crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, mlen);
    (void)crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, '/' stays when
 * keep_slash, every other byte becomes %XX (upper case). */
void kc_s3_uri_encode(kc_buf_t *b, const char *s, int keep_slash)
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

/* A header value in its canonical form: no white space at either end, runs of spaces as one. */
static void canonical_value(kc_buf_t *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space)
            kc_buf_putc(b, ' ');
        space = 0;
        kc_buf_putc(b, *v);
    }
}

/* The endpoint's host[:port] after "http://" or "https://" (*https says which), or NULL. */
static const char *endpoint_host(const char *ep, int *https)
{
    const char *host;
    if (strncmp(ep, "http://", 7) == 0) {
        host = ep + 7;
        *https = 0;
    } else if (strncmp(ep, "https://", 8) == 0) {
        host = ep + 8;
        *https = 1;
    } else {
        return NULL;
    }
    if (!*host)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)host; *p; p++)
        if (*p <= ' ' || *p == 0x7f || strchr("/?#@\\", *p))
            return NULL;
    return host;
}

int kc_s3_endpoint_ok(const char *endpoint)
{
    int https;
    return endpoint && endpoint_host(endpoint, &https) != NULL;
}

int kc_s3_cfg_check(const kc_s3_cfg_t *cfg, char *err, size_t errlen)
{
    if (!kc_s3_endpoint_ok(cfg->endpoint)) {
        (void)kc_strlcpyf(err, errlen, "endpoint must be http(s)://host[:port] without a path");
        return -1;
    }
    if (!cfg->bucket || !*cfg->bucket || !cfg->region || !*cfg->region || !cfg->access_key ||
        !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key) {
        (void)kc_strlcpyf(err, errlen,
                          "endpoint needs a bucket, a region, an access key and a secret key");
        return -1;
    }
    return 0;
}

static void sign_query(const char *method, const char *host, const char *path, const char *region,
                       const char *access_key, const char *secret_key, const char *content_type,
                       const char *params, long long now_s, long long ttl_s, kc_buf_t *query);

void kc_s3_sign_query(const char *method, const char *host, const char *path, const char *region,
                      const char *access_key, const char *secret_key, const char *content_type,
                      long long now_s, long long ttl_s, kc_buf_t *query)
{
    sign_query(method, host, path, region, access_key, secret_key, content_type, NULL, now_s,
               ttl_s, query);
}

static void sign_query(const char *method, const char *host, const char *path, const char *region,
                       const char *access_key, const char *secret_key, const char *content_type,
                       const char *params, long long now_s, long long ttl_s, kc_buf_t *query)
{
    time_t t = (time_t)now_s;
    struct tm tm;
    char amz_date[17] = "19700101T000000Z", day[9] = "19700101";
    if (gmtime_r(&t, &tm)) {
        (void)strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
        (void)strftime(day, sizeof(day), "%Y%m%d", &tm);
    }
    kc_buf_t scope = {0}, q = {0}, cred = {0}, creq = {0}, sts = {0}, secret = {0};
    kc_buf_printf(&scope, "%s/%s/s3/aws4_request", day, region);
    kc_buf_printf(&cred, "%s/%s", access_key, scope.data);
    const char *signed_headers = content_type ? "content-type;host" : "host";
    /* the query parameters in byte order of their names, as the canonical form wants */
    kc_buf_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    kc_s3_uri_encode(&q, cred.data, 0);
    kc_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%lld&X-Amz-SignedHeaders=", amz_date, ttl_s);
    kc_s3_uri_encode(&q, signed_headers, 0);
    if (params && *params) /* their names sort after "X-Amz-" (lower case) */
        kc_buf_printf(&q, "&%s", params);

    kc_buf_printf(&creq, "%s\n%s\n%s\n", method, path, q.data);
    if (content_type) {
        kc_buf_puts(&creq, "content-type:");
        canonical_value(&creq, content_type);
        kc_buf_putc(&creq, '\n');
    }
    kc_buf_printf(&creq, "host:%s\n\n%s\nUNSIGNED-PAYLOAD", host, signed_headers);
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    (void)crypto_hash_sha256(h, (const unsigned char *)creq.data, creq.len);
    (void)sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    kc_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope.data, hex);

    unsigned char k[crypto_auth_hmacsha256_BYTES];
    kc_buf_printf(&secret, "AWS4%s", secret_key);
    hmac((const unsigned char *)secret.data, secret.len, day, strlen(day), k);
    hmac(k, sizeof(k), region, strlen(region), k);
    hmac(k, sizeof(k), "s3", 2, k);
    hmac(k, sizeof(k), "aws4_request", 12, k);
    unsigned char sig[crypto_auth_hmacsha256_BYTES];
    hmac(k, sizeof(k), sts.data, sts.len, sig);
    char sighex[sizeof(sig) * 2 + 1];
    (void)sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
    sodium_memzero(k, sizeof(k));
    sodium_memzero(secret.data, secret.len);

    kc_buf_printf(query, "%s&X-Amz-Signature=%s", q.data, sighex);
    kc_buf_free(&scope);
    kc_buf_free(&q);
    kc_buf_free(&cred);
    kc_buf_free(&creq);
    kc_buf_free(&sts);
    kc_buf_free(&secret);
}

void kc_s3_presign(const kc_s3_cfg_t *cfg, const char *method, const char *key,
                   const char *content_type, long long now_s, long long ttl_s, kc_buf_t *url)
{
    kc_s3_presign_params(cfg, method, key, NULL, content_type, now_s, ttl_s, url);
}

void kc_s3_presign_params(const kc_s3_cfg_t *cfg, const char *method, const char *key,
                          const char *params, const char *content_type, long long now_s,
                          long long ttl_s, kc_buf_t *url)
{
    int https = 0;
    const char *h = endpoint_host(cfg->endpoint, &https);
    kc_buf_t host = {0}, path = {0};
    kc_buf_puts(&host, h ? h : "");
    /* An HTTP client leaves the scheme's default port out of the Host header it sends. */
    const char *dflt = https ? ":443" : ":80";
    size_t dl = strlen(dflt);
    if (host.len > dl && strcmp(host.data + host.len - dl, dflt) == 0) {
        host.len -= dl;
        host.data[host.len] = '\0';
    }
    kc_buf_putc(&path, '/');
    kc_s3_uri_encode(&path, cfg->bucket, 0);
    kc_buf_putc(&path, '/');
    kc_s3_uri_encode(&path, key, 1);
    kc_buf_printf(url, "%s%s?", cfg->endpoint, path.data);
    sign_query(method, host.data, path.data, cfg->region, cfg->access_key, cfg->secret_key,
               content_type, params, now_s, ttl_s, url);
    kc_buf_free(&host);
    kc_buf_free(&path);
}

/* ---- requests ---- */

struct kc_s3 {
    kc_s3_cfg_t cfg;
    kc_httpc_t *http;
    int closing;
};

kc_s3_t *kc_s3_new(uv_loop_t *loop, const kc_s3_cfg_t *cfg, long timeout_ms, char *err,
                   size_t errlen)
{
    if (kc_s3_cfg_check(cfg, err, errlen) != 0)
        return NULL;
    kc_httpc_t *http = kc_httpc_new(loop, timeout_ms, KC_S3_MAX_INFLIGHT, err, errlen);
    if (!http)
        return NULL;
    kc_s3_t *s = kc_xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    s->http = http;
    kc_httpc_on_free(http, free, s); /* s lives as long as the callbacks its close runs */
    return s;
}

int kc_s3_request(kc_s3_t *s, const char *method, const char *key, const void *body, size_t len,
                  const char *content_type, size_t max_body, kc_s3_cb cb, void *arg)
{
    int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0,
        put = strcmp(method, "PUT") == 0, del = strcmp(method, "DELETE") == 0;
    if (!put)
        content_type = NULL;
    if (s->closing || !(get || head || put || del) || !key || !*key ||
        (content_type && !kc_httpc_header_value_ok(content_type)))
        return -1;
    kc_buf_t url = {0}, ct = {0};
    kc_s3_presign(&s->cfg, method, key, content_type, kc_now_ms() / 1000, KC_S3_REQUEST_TTL_S,
                  &url);
    if (content_type)
        kc_buf_printf(&ct, "Content-Type: %s", content_type);
    const char *headers[] = {ct.data};
    kc_httpc_req_t r = {
        .method = method,
        .url = url.data,
        .headers = headers,
        .n_headers = content_type ? 1 : 0,
        .body = body,
        .body_len = put ? len : 0,
        .keep_body = get,
        .max_body = max_body,
        .path_as_is = 1, /* the path is sent as signed: no "/../" folding */
    };
    int rc = kc_httpc_request(s->http, &r, cb, arg);
    kc_buf_free(&url);
    kc_buf_free(&ct);
    return rc;
}

size_t kc_s3_inflight(const kc_s3_t *s)
{
    return kc_httpc_inflight(s->http);
}

void kc_s3_close(kc_s3_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    kc_httpc_close(s->http);
}
