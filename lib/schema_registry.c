/* schema_registry.c - a blocking client of a Confluent-compatible schema registry. */
#include "kchat/schema_registry.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/buf.h"
#include "kchat/httpc.h"
#include "kchat/util.h"

/* Bound of each request of a start-up check. */
#define SR_TIMEOUT_MS 5000

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    kc_buf_t *b = arg;
    size_t len = size * n;
    if (b->len + len > KC_SR_MAX_ANSWER)
        return 0; /* curl fails the transfer: too large */
    kc_buf_append(b, p, len);
    return len;
}

void kc_sr_answer_free(kc_sr_answer_t *a)
{
    cJSON_Delete(a->json);
    a->json = NULL;
}

struct kc_sr {
    CURL *c;
    struct curl_slist *hdrs;
    char *base;  /* without trailing slashes */
    long timeout_ms;
};

kc_sr_t *kc_sr_open(const char *base_url, long timeout_ms, char *err, size_t errlen)
{
    if (kc_httpc_global_init() != 0) {
        kc_strlcpyf(err, errlen, "schema registry: libcurl cannot start");
        return NULL;
    }
    kc_sr_t *sr = kc_xcalloc(1, sizeof(*sr));
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;
    sr->base = kc_xstrndup(base_url, blen);
    sr->timeout_ms = timeout_ms;
    sr->c = curl_easy_init();
    struct curl_slist *h1 =
        curl_slist_append(NULL, "Content-Type: application/vnd.schemaregistry.v1+json");
    struct curl_slist *h2 =
        h1 ? curl_slist_append(h1, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/json")
           : NULL;
    sr->hdrs = h2 ? h2 : h1;
    if (!sr->c || !h2) {
        kc_strlcpyf(err, errlen, "schema registry: libcurl cannot start (out of memory)");
        kc_sr_close(sr);
        return NULL;
    }
    return sr;
}

void kc_sr_close(kc_sr_t *sr)
{
    if (!sr)
        return;
    if (sr->c)
        curl_easy_cleanup(sr->c);
    curl_slist_free_all(sr->hdrs);
    free(sr->base);
    free(sr);
}

int kc_sr_call(kc_sr_t *sr, const char *method, const char *path, const char *body,
               kc_sr_answer_t *out)
{
    *out = (kc_sr_answer_t){0};
    kc_buf_t url = {0}, answer = {0};
    kc_buf_printf(&url, "%s%s", sr->base, path);
    CURL *c = sr->c;
    /* the options of the last request go; the connection stays */
    curl_easy_reset(c);
    int rc = -1;
    int ok = curl_easy_setopt(c, CURLOPT_URL, url.data) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_HTTPHEADER, sr->hdrs) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, sr->timeout_ms) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer) == CURLE_OK;
    if (ok && body)
        ok = curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body)) == CURLE_OK;
    if (!ok) {
        kc_strlcpyf(out->error, sizeof(out->error), "cannot set up the request");
        goto done;
    }
    CURLcode res = curl_easy_perform(c);
    if (res != CURLE_OK) {
        kc_strlcpyf(out->error, sizeof(out->error), "%s %s: %s", method, url.data,
                    res == CURLE_WRITE_ERROR ? "answer too large" : curl_easy_strerror(res));
        goto done;
    }
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status) != CURLE_OK)
        out->status = 0;
    out->json = cJSON_ParseWithLength(answer.data ? answer.data : "", answer.len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(out->json, "error_code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(out->json, "message");
    if (cJSON_IsNumber(code))
        out->error_code = code->valueint;
    if (out->status >= 300)
        kc_strlcpyf(out->error, sizeof(out->error), "%s %s: HTTP %ld%s%.200s", method, url.data,
                    out->status, cJSON_IsString(msg) ? ": " : "",
                    cJSON_IsString(msg) ? msg->valuestring : "");
    rc = 0;
done:
    kc_buf_free(&url);
    kc_buf_free(&answer);
    return rc;
}

int kc_sr_subject_path(char *out, size_t outlen, const char *prefix, const char *subject,
                       const char *suffix)
{
    char *esc = curl_easy_escape(NULL, subject, 0);
    if (!esc)
        return -1;
    int rc = kc_strlcpyf(out, outlen, "%s%s%s", prefix, esc, suffix);
    curl_free(esc);
    return rc == 0 ? 0 : -1;
}

char *kc_sr_schema_body(const kc_schema_info_t *e, int with_id)
{
    cJSON *b = cJSON_CreateObject();
    if (!b || !cJSON_AddStringToObject(b, "schema", e->text) ||
        (with_id && (!cJSON_AddNumberToObject(b, "id", e->id) ||
                     !cJSON_AddNumberToObject(b, "version", e->version)))) {
        cJSON_Delete(b);
        return NULL;
    }
    char *out = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return out;
}

/* One lookup of e: 0 when the registry holds it under its id, 1 when it should be asked
 * again (no answer, or not there yet), -1 otherwise; err says why in the last two cases. */
static int lookup(const kc_schema_info_t *e, kc_sr_t *sr, const char *url, char *err,
                  size_t errlen)
{
    char path[600];
    char *body = kc_sr_schema_body(e, 0);
    if (!body || kc_sr_subject_path(path, sizeof(path), "/subjects/", e->subject, "") != 0) {
        free(body);
        kc_strlcpyf(err, errlen, "schema registry: cannot form the lookup of %s", e->subject);
        return -1;
    }
    kc_sr_answer_t a;
    int rc = kc_sr_call(sr, "POST", path, body, &a);
    free(body);
    if (rc != 0) {
        kc_strlcpyf(err, errlen, "schema registry: %s", a.error);
        return 1;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a.json, "id");
    rc = -1;
    if (a.status == 404) {
        kc_strlcpyf(err, errlen,
                    "schema registry %s does not hold %s version %d (id %ld in "
                    "schemas/registry.json): register kchat's schemas first (kchatctl "
                    "register-schemas)",
                    url, e->subject, e->version, (long)e->id);
        rc = 1;
    } else if (a.status != 200 || !cJSON_IsNumber(id)) {
        kc_strlcpyf(err, errlen, "schema registry: looking up %s version %d: %s", e->subject,
                    e->version, a.status != 200 ? a.error : "the answer has no id");
    } else if ((long)id->valuedouble != (long)e->id) {
        kc_strlcpyf(err, errlen,
                    "schema registry %s holds %s version %d under id %ld, but kchat's "
                    "records carry id %ld (schemas/registry.json): readers would misread "
                    "them; register the schemas with their ids (kchatctl register-schemas, "
                    "into an empty registry)",
                    url, e->subject, e->version, (long)id->valuedouble, (long)e->id);
    } else {
        rc = 0;
    }
    kc_sr_answer_free(&a);
    return rc;
}

int kc_sr_check(const kc_schemas_t *s, const kc_sr_cfg_t *cfg, char *err, size_t errlen)
{
    if (!cfg->url || !cfg->url[0])
        return 0;
    kc_sr_t *sr = kc_sr_open(cfg->url, SR_TIMEOUT_MS, err, errlen);
    if (!sr)
        return -1;
    int64_t deadline = kc_now_ms() + cfg->wait_ms;
    kc_schema_info_t e;
    int rc = 0;
    for (size_t i = 0; rc == 0 && kc_schemas_entry(s, i, &e) == 0; i++) {
        while ((rc = lookup(&e, sr, cfg->url, err, errlen)) == 1 && kc_now_ms() < deadline) {
            struct timespec ts = {0, 500 * 1000 * 1000};
            (void)nanosleep(&ts, NULL);
        }
    }
    kc_sr_close(sr);
    return rc == 0 ? 0 : -1;
}
