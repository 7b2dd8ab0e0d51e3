/* s3_sync.c - blocking requests to the object store; see kchat/s3_sync.h. */
#include "kchat/s3_sync.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/util.h"

/* A URL made now is valid this long: a large part may take a while to start on a slow link
 * (the store checks the signature when the request begins). */
#define URL_TTL_S 3600
#define LIST_PAGE_MAX (4 << 20)

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    kc_s3_sink_t *s = arg;
    size_t len = size * n;
    if (s->sha)
        crypto_hash_sha256_update(s->sha, (const unsigned char *)p, len);
    if (s->out)
        return fwrite(p, 1, len, s->out);
    if (s->body) {
        if (s->body->len + len > s->max)
            return 0; /* too large: the transfer fails */
        kc_buf_append(s->body, p, len);
    }
    return len;
}

long kc_s3_sync(const kc_s3_cfg_t *cfg, const char *method, const char *key, const char *params,
                FILE *in, long long in_len, kc_s3_sink_t *sink, char *err, size_t errlen)
{
    kc_buf_t url = {0};
    kc_s3_presign_params(cfg, method, key, params, NULL, (long long)time(NULL), URL_TTL_S, &url);
    CURL *c = curl_easy_init();
    if (!c) {
        (void)kc_strlcpyf(err, errlen, "libcurl could not start");
        kc_buf_free(&url);
        return -1;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    kc_s3_sink_t none = {0};
    int ok = curl_easy_setopt(c, CURLOPT_URL, url.data) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
             /* an error's body is not the object */
             curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_WRITEDATA, sink ? sink : &none) == CURLE_OK;
    if (ok && strcmp(method, "PUT") == 0)
        ok = curl_easy_setopt(c, CURLOPT_UPLOAD, 1L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_READDATA, in) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)in_len) == CURLE_OK;
    else if (ok && strcmp(method, "HEAD") == 0)
        ok = curl_easy_setopt(c, CURLOPT_NOBODY, 1L) == CURLE_OK;
    else if (ok && strcmp(method, "DELETE") == 0)
        ok = curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE") == CURLE_OK;
    long status = -1;
    if (!ok) {
        (void)kc_strlcpyf(err, errlen, "libcurl refused an option");
    } else {
        CURLcode rc = curl_easy_perform(c);
        if (rc == CURLE_OK || rc == CURLE_HTTP_RETURNED_ERROR)
            (void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        else
            (void)kc_strlcpyf(err, errlen, "%s %s/%s: %s", method, cfg->bucket, key,
                              cerr[0] ? cerr : curl_easy_strerror(rc));
    }
    curl_easy_cleanup(c);
    kc_buf_free(&url);
    return status;
}

/* The text from `from` to `to`, unescaped (the five XML entities). */
static char *xml_text(const char *from, const char *to)
{
    kc_buf_t b = {0};
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (const char *p = from; p < to;) {
        size_t i = 0;
        if (*p == '&')
            for (; i < KC_ARRAY_LEN(ents); i++)
                if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0)
                    break;
        if (*p == '&' && i < KC_ARRAY_LEN(ents)) {
            kc_buf_putc(&b, ents[i].c);
            p += strlen(ents[i].ent);
        } else {
            kc_buf_putc(&b, *p++);
        }
    }
    if (!b.data)
        kc_buf_puts(&b, "");
    return kc_buf_steal(&b);
}

/* Appends to params "&name=value" (or without '&' first), value URI-encoded. */
static void param(kc_buf_t *params, const char *name, const char *value)
{
    if (params->len)
        kc_buf_putc(params, '&');
    kc_buf_printf(params, "%s=", name);
    kc_s3_uri_encode(params, value, 0);
}

int kc_s3_sync_list(const kc_s3_cfg_t *cfg, const char *prefix, const char *delimiter,
                    const char *start_after, size_t max_items, char ***out, size_t *n, char *err,
                    size_t errlen)
{
    char *token = NULL;
    int rc = 0;
    /* Inside <Contents> the name is <Key>; inside <CommonPrefixes>, <Prefix>. */
    const char *open = delimiter ? "<CommonPrefixes><Prefix>" : "<Key>",
               *close = delimiter ? "</Prefix>" : "</Key>";
    do {
        /* Names in byte order, as the signature wants them. */
        kc_buf_t params = {0}, body = {0};
        if (token)
            param(&params, "continuation-token", token);
        if (delimiter)
            param(&params, "delimiter", delimiter);
        param(&params, "list-type", "2");
        param(&params, "prefix", prefix);
        if (start_after && !token)
            param(&params, "start-after", start_after);
        free(token);
        token = NULL;
        kc_s3_sink_t sink = {.body = &body, .max = LIST_PAGE_MAX};
        long s = kc_s3_sync(cfg, "GET", "", params.data, NULL, 0, &sink, err, errlen);
        kc_buf_free(&params);
        if (s != 200) {
            if (s > 0)
                (void)kc_strlcpyf(err, errlen, "listing %s/%s: HTTP %ld", cfg->bucket, prefix, s);
            kc_buf_free(&body);
            rc = -1;
            break;
        }
        const char *end = body.data ? body.data + body.len : NULL;
        for (const char *p = body.data; p && (p = strstr(p, open));) {
            p += strlen(open);
            const char *e = strstr(p, close);
            if (!e)
                break;
            if (*n >= max_items) {
                (void)kc_strlcpyf(err, errlen, "more than %zu names under %s/%s", max_items,
                                  cfg->bucket, prefix);
                rc = -1;
                break;
            }
            *out = kc_xrealloc(*out, (*n + 1) * sizeof(char *));
            (*out)[(*n)++] = xml_text(p, e);
            p = e;
        }
        const char *t = body.data && strstr(body.data, "<IsTruncated>true</IsTruncated>")
                            ? strstr(body.data, "<NextContinuationToken>")
                            : NULL;
        if (rc == 0 && t) {
            t += strlen("<NextContinuationToken>");
            const char *e = strstr(t, "</NextContinuationToken>");
            if (e && e < end)
                token = xml_text(t, e);
        }
        kc_buf_free(&body);
    } while (rc == 0 && token);
    free(token);
    return rc;
}
