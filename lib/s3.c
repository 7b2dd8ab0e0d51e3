/* s3.c - SigV4 presigned URLs, and S3 requests through libcurl's multi interface on the
 * daemon's libuv loop (kchat/s3.h).
 *
 * The loop integration is curl's socket API: curl says through on_curl_socket which sockets
 * to watch for what (a uv_poll_t each, made on first sight and closed on CURL_POLL_REMOVE)
 * and through on_curl_timer when to call it back (one uv_timer_t); on_poll and on_timer hand
 * the event to curl_multi_socket_action, then drain() reads the transfers that ended and
 * calls their callbacks. Callbacks run only from drain() or kc_s3_close, never inside a
 * curl call, so a callback may start a request or close the client. The client's memory
 * stays until its last handle is closed, which the loop does after the callback that closed
 * it has returned.
 */
#include "kchat/s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kchat/list.h"
#include "kchat/log.h"
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

void kc_s3_sign_query(const char *method, const char *host, const char *path, const char *region,
                      const char *access_key, const char *secret_key, const char *content_type,
                      long long now_s, long long ttl_s, kc_buf_t *query)
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
    uri_encode(&q, cred.data, 0);
    kc_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%lld&X-Amz-SignedHeaders=", amz_date, ttl_s);
    uri_encode(&q, signed_headers, 0);

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
    uri_encode(&path, cfg->bucket, 0);
    kc_buf_putc(&path, '/');
    uri_encode(&path, key, 1);
    kc_buf_printf(url, "%s%s?", cfg->endpoint, path.data);
    kc_s3_sign_query(method, host.data, path.data, cfg->region, cfg->access_key, cfg->secret_key,
                     content_type, now_s, ttl_s, url);
    kc_buf_free(&host);
    kc_buf_free(&path);
}

/* ---- requests ---- */

typedef struct kc_s3_req req_t;

/* A socket curl asked us to watch. */
typedef struct {
    kc_s3_t *s;
    uv_poll_t poll;
    curl_socket_t fd;
    int closing;
    kc_list_node_t link; /* in kc_s3_t.socks while open */
} sock_t;

struct kc_s3_req {
    kc_s3_t *s;
    CURL *easy;
    struct curl_slist *headers;
    int get;        /* the body is kept (GET) or dropped */
    int too_large;  /* the write callback refused more than max_body */
    int has_length; /* the last response's head had a Content-Length */
    size_t max_body;
    kc_buf_t in; /* GET's body */
    char *out;   /* PUT's body */
    size_t out_len, out_pos;
    kc_s3_cb cb;
    void *arg;
    kc_list_node_t link; /* in kc_s3_t.reqs while in flight */
};

struct kc_s3 {
    uv_loop_t *loop;
    kc_s3_cfg_t cfg;
    long timeout_ms;
    CURLM *multi;
    uv_timer_t timer;
    kc_list_t reqs;  /* in flight */
    kc_list_t socks; /* watched */
    int open_handles;
    int closing;
};

_Static_assert(sizeof(curl_off_t) == sizeof(int64_t), "curl_off_t is 64 bits");

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

/* libcurl's global set-up (and OpenSSL's through it), once per process; never undone, since
 * another client may still be made. */
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void handle_closed(kc_s3_t *s)
{
    if (--s->open_handles == 0)
        free(s);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock_t *k = h->data;
    kc_s3_t *s = k->s;
    free(k);
    handle_closed(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void sock_close(sock_t *k)
{
    if (k->closing)
        return;
    k->closing = 1;
    kc_list_remove(&k->s->socks, &k->link);
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void req_free(req_t *q)
{
    curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->headers);
    kc_buf_free(&q->in);
    free(q->out);
    free(q);
}

/* Why a transfer failed, in the few words of kc_s3_result_t.error. */
static const char *failure(const req_t *q, CURLcode rc)
{
    if (q->too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return "too large";
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return "timeout";
    if (rc == CURLE_COULDNT_CONNECT) {
        long os_errno = 0;
        if (curl_easy_getinfo(q->easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK &&
            os_errno == ECONNREFUSED)
            return "connection refused";
        return "cannot connect";
    }
    return curl_easy_strerror(rc);
}

/* A transfer ended (rc): it leaves the multi handle, its callback runs, it is freed. */
static void finish(req_t *q, CURLcode rc)
{
    kc_s3_t *s = q->s;
    kc_list_remove(&s->reqs, &q->link);
    CURLMcode mrc = curl_multi_remove_handle(s->multi, q->easy);
    if (mrc != CURLM_OK)
        kc_log_warn("s3: curl_multi_remove_handle: %s", curl_multi_strerror(mrc));

    kc_s3_result_t res = {.content_length = -1};
    curl_off_t cl = -1;
    if (q->has_length &&
        curl_easy_getinfo(q->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl >= 0)
        res.content_length = (long long)cl;
    char *ct = NULL;
    if (curl_easy_getinfo(q->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        (void)kc_strlcpyf(res.content_type, sizeof(res.content_type), "%s", ct);
    long status = 0;
    if (rc == CURLE_OK && curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status > 0) {
        res.status = status;
        if (q->get) {
            res.body = q->in.data ? q->in.data : "";
            res.body_len = q->in.len;
        }
    } else {
        res.error = rc == CURLE_OK ? "no response" : failure(q, rc);
    }
    q->cb(q->arg, &res);
    req_free(q);
}

/* Calls back the transfers curl has finished. Stops when a callback closed the client: the
 * multi handle is gone then. */
static void drain(kc_s3_t *s)
{
    CURLMsg *m;
    int left;
    while (!s->closing && (m = curl_multi_info_read(s->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) {
            kc_log_error("s3: a finished transfer is not ours");
            continue;
        }
        finish((req_t *)(void *)priv, rc);
    }
}

static void socket_action(kc_s3_t *s, curl_socket_t fd, int flags)
{
    int running;
    CURLMcode rc = curl_multi_socket_action(s->multi, fd, flags, &running);
    if (rc != CURLM_OK)
        kc_log_warn("s3: curl_multi_socket_action: %s", curl_multi_strerror(rc));
    drain(s);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *k = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(k->s, k->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
    socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants (socketp: our sock_t, once assigned). */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    kc_s3_t *s = userp;
    sock_t *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            sock_close(k);
            if (!s->closing)
                (void)curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (s->closing)
        return 0;
    if (!k) {
        k = kc_xcalloc(1, sizeof(*k));
        if (uv_poll_init_socket(s->loop, &k->poll, fd) != 0) {
            kc_log_error("s3: cannot watch socket %d", (int)fd);
            free(k);
            return -1;
        }
        k->s = s;
        k->fd = fd;
        k->poll.data = k;
        s->open_handles++;
        kc_list_push_back(&s->socks, &k->link);
        if (curl_multi_assign(s->multi, fd, k) != CURLM_OK) {
            sock_close(k);
            return -1;
        }
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&k->poll, events, on_poll) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: call curl back in timeout_ms (-1: no timer). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    kc_s3_t *s = userp;
    if (s->closing)
        return 0;
    if (timeout_ms < 0)
        return uv_timer_stop(&s->timer) == 0 ? 0 : -1;
    return uv_timer_start(&s->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* CURLOPT_WRITEFUNCTION: GET keeps up to max_body bytes; more ends the transfer. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t len = size * n;
    if (!q->get)
        return len;
    if (len > q->max_body - q->in.len) {
        q->too_large = 1;
        return 0; /* != len: curl fails the transfer with CURLE_WRITE_ERROR */
    }
    kc_buf_append(&q->in, p, len);
    return len;
}

/* CURLOPT_HEADERFUNCTION: whether the response had a Content-Length (curl reads its value,
 * but says 0 for a 204 that has none). A status line starts the head of another response. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0)
        q->has_length = 0;
    else if (len >= 15 && strncasecmp(p, "content-length:", 15) == 0)
        q->has_length = 1;
    return len;
}

/* CURLOPT_READFUNCTION: PUT's body. */
static size_t on_upload(char *dst, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t room = size * n, left = q->out_len - q->out_pos;
    size_t len = left < room ? left : room;
    memcpy(dst, q->out + q->out_pos, len);
    q->out_pos += len;
    return len;
}

/* CURLOPT_SEEKFUNCTION: curl rewinds the body to send it again (a reused connection that the
 * server had closed). */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    req_t *q = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > q->out_len)
        return CURL_SEEKFUNC_CANTSEEK;
    q->out_pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

kc_s3_t *kc_s3_new(uv_loop_t *loop, const kc_s3_cfg_t *cfg, long timeout_ms, char *err,
                   size_t errlen)
{
    if (kc_s3_cfg_check(cfg, err, errlen) != 0)
        return NULL;
    if (timeout_ms <= 0) {
        (void)kc_strlcpyf(err, errlen, "the timeout must be positive");
        return NULL;
    }
    if (pthread_once(&curl_once, curl_init) != 0 || curl_init_rc != CURLE_OK) {
        (void)kc_strlcpyf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    kc_s3_t *s = kc_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = *cfg;
    s->timeout_ms = timeout_ms;
    s->multi = curl_multi_init();
    if (!s->multi) {
        (void)kc_strlcpyf(err, errlen, "libcurl: cannot make a multi handle");
        free(s);
        return NULL;
    }
    if (curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s) != CURLM_OK ||
        curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s) != CURLM_OK ||
        uv_timer_init(loop, &s->timer) != 0) {
        (void)kc_strlcpyf(err, errlen, "libcurl: cannot set up the multi handle");
        (void)curl_multi_cleanup(s->multi);
        free(s);
        return NULL;
    }
    s->timer.data = s;
    s->open_handles = 1;
    return s;
}

/* A header value that cannot end the header early. */
static int header_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < ' ' && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

int kc_s3_request(kc_s3_t *s, const char *method, const char *key, const void *body, size_t len,
                  const char *content_type, size_t max_body, kc_s3_cb cb, void *arg)
{
    int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0,
        put = strcmp(method, "PUT") == 0, del = strcmp(method, "DELETE") == 0;
    if (!put)
        content_type = NULL;
    if (s->closing || !(get || head || put || del) || !key || !*key || !cb ||
        s->reqs.len >= KC_S3_MAX_INFLIGHT || (put && len && !body) ||
        (content_type && !header_value_ok(content_type)))
        return -1;

    req_t *q = kc_xcalloc(1, sizeof(*q));
    q->s = s;
    q->get = get;
    q->max_body = max_body;
    q->cb = cb;
    q->arg = arg;
    q->easy = curl_easy_init();
    if (!q->easy) {
        free(q);
        return -1;
    }
    if (put && len) {
        q->out = kc_xmalloc(len);
        memcpy(q->out, body, len);
        q->out_len = len;
    }
    /* No "Expect: 100-continue" round trip before a PUT's body. */
    q->headers = curl_slist_append(NULL, "Expect:");
    int headers_ok = q->headers != NULL;
    if (headers_ok && content_type) {
        kc_buf_t ct = {0};
        kc_buf_printf(&ct, "Content-Type: %s", content_type);
        headers_ok = curl_slist_append(q->headers, ct.data) != NULL;
        kc_buf_free(&ct);
    }
    kc_buf_t url = {0};
    kc_s3_presign(&s->cfg, method, key, content_type, kc_now_ms() / 1000,
                  KC_S3_REQUEST_TTL_S, &url);

    CURL *e = q->easy;
    CURLcode rc = headers_ok ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                           \
    do {                                                                                        \
        if (rc == CURLE_OK)                                                                     \
            rc = curl_easy_setopt(e, opt, val);                                                 \
    } while (0)
    SET(CURLOPT_URL, url.data);
    SET(CURLOPT_PRIVATE, (void *)q);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_PATH_AS_IS, 1L); /* the path is sent as signed: no "/../" folding */
    SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
    SET(CURLOPT_HTTPHEADER, q->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)q);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)q);
    if (get && max_body > 0 && max_body < (size_t)INT64_MAX)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_body); /* a Content-Length over it */
    if (head)
        SET(CURLOPT_NOBODY, 1L);
    if (del)
        SET(CURLOPT_CUSTOMREQUEST, "DELETE");
    if (put) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, (void *)q);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, (void *)q);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    }
#undef SET
    kc_buf_free(&url);
    if (rc != CURLE_OK) {
        kc_log_error("s3: cannot set up a request: %s", curl_easy_strerror(rc));
        req_free(q);
        return -1;
    }
    kc_list_push_back(&s->reqs, &q->link);
    CURLMcode mrc = curl_multi_add_handle(s->multi, e);
    if (mrc != CURLM_OK) {
        kc_log_error("s3: curl_multi_add_handle: %s", curl_multi_strerror(mrc));
        kc_list_remove(&s->reqs, &q->link);
        req_free(q);
        return -1;
    }
    return 0;
}

size_t kc_s3_inflight(const kc_s3_t *s)
{
    return s->reqs.len;
}

void kc_s3_close(kc_s3_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    kc_list_t cancelled = s->reqs;
    s->reqs = (kc_list_t){0};
    KC_LIST_FOREACH(n, &cancelled) {
        req_t *q = KC_LIST_ENTRY(n, req_t, link);
        CURLMcode rc = curl_multi_remove_handle(s->multi, q->easy);
        if (rc != CURLM_OK)
            kc_log_warn("s3: curl_multi_remove_handle: %s", curl_multi_strerror(rc));
    }
    /* Our watches end before curl closes the sockets of its connection cache. */
    while (!kc_list_empty(&s->socks))
        sock_close(KC_LIST_ENTRY(s->socks.first, sock_t, link));
    CURLMcode rc = curl_multi_cleanup(s->multi);
    if (rc != CURLM_OK)
        kc_log_warn("s3: curl_multi_cleanup: %s", curl_multi_strerror(rc));
    s->multi = NULL;
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    kc_list_node_t *n;
    while ((n = kc_list_pop_front(&cancelled))) {
        req_t *q = KC_LIST_ENTRY(n, req_t, link);
        kc_s3_result_t res = {.content_length = -1, .error = "cancelled"};
        q->cb(q->arg, &res);
        req_free(q);
    }
}
