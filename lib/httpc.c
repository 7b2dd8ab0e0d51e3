/* httpc.c - HTTP requests through libcurl's multi interface on the daemon's libuv loop
 * (kchat/httpc.h).
 *
 * The loop integration is curl's socket API: curl says through on_curl_socket which sockets
 * to watch for what (a uv_poll_t each, made on first sight and closed on CURL_POLL_REMOVE)
 * and through on_curl_timer when to call it back (one uv_timer_t); on_poll and on_timer hand
 * the event to curl_multi_socket_action, then drain() reads the transfers that ended and
 * calls their callbacks. Callbacks run only from drain() or kc_httpc_close, never inside a
 * curl call, so a callback may start a request or close the client. The client's memory
 * stays until its last handle is closed, which the loop does after the callback that closed
 * it has returned.
 */
#include "kchat/httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kchat/buf.h"
#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/util.h"

typedef struct kc_httpc_req req_t;

/* A socket curl asked us to watch. */
typedef struct {
    kc_httpc_t *h;
    uv_poll_t poll;
    curl_socket_t fd;
    int closing;
    kc_list_node_t link; /* in kc_httpc_t.socks while open */
} sock_t;

struct kc_httpc_req {
    kc_httpc_t *h;
    CURL *easy;
    struct curl_slist *headers;
    int keep;       /* the body is kept or dropped */
    int too_large;  /* the write callback refused more than max_body */
    int has_length; /* the last response's head had a Content-Length */
    long long retry_after_s;
    size_t max_body;
    kc_buf_t in; /* the kept body */
    char *out;   /* PUT's or POST's body */
    size_t out_len, out_pos;
    kc_httpc_cb cb;
    void *arg;
    kc_list_node_t link; /* in kc_httpc_t.reqs while in flight */
};

struct kc_httpc {
    uv_loop_t *loop;
    long timeout_ms;
    size_t max_inflight;
    CURLM *multi;
    uv_timer_t timer;
    kc_list_t reqs;  /* in flight */
    kc_list_t socks; /* watched */
    int open_handles;
    int closing;
    void (*on_free)(void *arg);
    void *on_free_arg;
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

int kc_httpc_global_init(void)
{
    return pthread_once(&curl_once, curl_init) == 0 && curl_init_rc == CURLE_OK ? 0 : -1;
}

static void handle_closed(kc_httpc_t *h)
{
    if (--h->open_handles == 0) {
        void (*fn)(void *) = h->on_free;
        void *arg = h->on_free_arg;
        free(h);
        if (fn)
            fn(arg);
    }
}

static void on_sock_closed(uv_handle_t *hd)
{
    sock_t *k = hd->data;
    kc_httpc_t *h = k->h;
    free(k);
    handle_closed(h);
}

static void on_timer_closed(uv_handle_t *hd)
{
    handle_closed(hd->data);
}

static void sock_close(sock_t *k)
{
    if (k->closing)
        return;
    k->closing = 1;
    kc_list_remove(&k->h->socks, &k->link);
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

/* Why a transfer failed, in the few words of kc_httpc_result_t.error. */
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
    kc_httpc_t *h = q->h;
    kc_list_remove(&h->reqs, &q->link);
    CURLMcode mrc = curl_multi_remove_handle(h->multi, q->easy);
    if (mrc != CURLM_OK)
        kc_log_warn("httpc: curl_multi_remove_handle: %s", curl_multi_strerror(mrc));

    kc_httpc_result_t res = {.content_length = -1, .retry_after_s = q->retry_after_s};
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
        if (q->keep) {
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
static void drain(kc_httpc_t *h)
{
    CURLMsg *m;
    int left;
    while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) {
            kc_log_error("httpc: a finished transfer is not ours");
            continue;
        }
        finish((req_t *)(void *)priv, rc);
    }
}

static void socket_action(kc_httpc_t *h, curl_socket_t fd, int flags)
{
    int running;
    CURLMcode rc = curl_multi_socket_action(h->multi, fd, flags, &running);
    if (rc != CURLM_OK)
        kc_log_warn("httpc: curl_multi_socket_action: %s", curl_multi_strerror(rc));
    drain(h);
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
    socket_action(k->h, k->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
    socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants (socketp: our sock_t, once assigned). */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    kc_httpc_t *h = userp;
    sock_t *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            sock_close(k);
            if (!h->closing)
                (void)curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (!k) {
        k = kc_xcalloc(1, sizeof(*k));
        if (uv_poll_init_socket(h->loop, &k->poll, fd) != 0) {
            kc_log_error("httpc: cannot watch socket %d", (int)fd);
            free(k);
            return -1;
        }
        k->h = h;
        k->fd = fd;
        k->poll.data = k;
        h->open_handles++;
        kc_list_push_back(&h->socks, &k->link);
        if (curl_multi_assign(h->multi, fd, k) != CURLM_OK) {
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
    (void)multi;
    kc_httpc_t *h = userp;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        return uv_timer_stop(&h->timer) == 0 ? 0 : -1;
    return uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* CURLOPT_WRITEFUNCTION: a kept body takes up to max_body bytes; more ends the transfer. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t len = size * n;
    if (!q->keep)
        return len;
    if (len > q->max_body - q->in.len) {
        q->too_large = 1;
        return 0; /* != len: curl fails the transfer with CURLE_WRITE_ERROR */
    }
    kc_buf_append(&q->in, p, len);
    return len;
}

/* A Retry-After value (RFC 9110 section 10.2.3): seconds, or an HTTP date; in seconds from
 * now, -1 when it is neither. A date in the past is 0. */
static long long retry_after(const char *v, size_t len)
{
    char s[64];
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len == 0 || len >= sizeof(s))
        return -1;
    memcpy(s, v, len);
    s[len] = '\0';
    if (s[0] >= '0' && s[0] <= '9') {
        long long n = 0;
        for (const char *c = s; *c; c++) {
            if (*c < '0' || *c > '9')
                return -1;
            if (n > 100000000) /* years: a delay this long is as good as none */
                return -1;
            n = n * 10 + (*c - '0');
        }
        return n;
    }
    time_t t = curl_getdate(s, NULL);
    if (t == (time_t)-1)
        return -1;
    long long d = (long long)t - (long long)time(NULL);
    return d > 0 ? d : 0;
}

/* CURLOPT_HEADERFUNCTION: whether the response had a Content-Length (curl reads its value,
 * but says 0 for a 204 that has none), and its Retry-After. A status line starts the head of
 * another response. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        q->has_length = 0;
        q->retry_after_s = -1;
    } else if (len >= 15 && strncasecmp(p, "content-length:", 15) == 0) {
        q->has_length = 1;
    } else if (len >= 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        q->retry_after_s = retry_after(p + 12, len - 12);
    }
    return len;
}

/* CURLOPT_READFUNCTION: the request's body. */
static size_t on_upload(char *dst, size_t size, size_t n, void *arg)
{
    req_t *q = arg;
    size_t room = size * n, left = q->out_len - q->out_pos;
    size_t len = left < room ? left : room;
    if (len)
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

kc_httpc_t *kc_httpc_new(uv_loop_t *loop, long timeout_ms, size_t max_inflight, char *err,
                         size_t errlen)
{
    if (timeout_ms <= 0 || max_inflight == 0) {
        (void)kc_strlcpyf(err, errlen, "the timeout and the bound on requests must be positive");
        return NULL;
    }
    if (pthread_once(&curl_once, curl_init) != 0 || curl_init_rc != CURLE_OK) {
        (void)kc_strlcpyf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    kc_httpc_t *h = kc_xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->timeout_ms = timeout_ms;
    h->max_inflight = max_inflight;
    h->multi = curl_multi_init();
    if (!h->multi) {
        (void)kc_strlcpyf(err, errlen, "libcurl: cannot make a multi handle");
        free(h);
        return NULL;
    }
    if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK ||
        uv_timer_init(loop, &h->timer) != 0) {
        (void)kc_strlcpyf(err, errlen, "libcurl: cannot set up the multi handle");
        (void)curl_multi_cleanup(h->multi);
        free(h);
        return NULL;
    }
    h->timer.data = h;
    h->open_handles = 1;
    return h;
}

int kc_httpc_header_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < ' ' && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

int kc_httpc_request(kc_httpc_t *h, const kc_httpc_req_t *r, kc_httpc_cb cb, void *arg)
{
    const char *m = r->method ? r->method : "";
    int get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0, put = strcmp(m, "PUT") == 0,
        post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
    int sends = put || post;
    if (h->closing || !(get || head || sends || del) || !r->url || !*r->url || !cb ||
        h->reqs.len >= h->max_inflight || (sends && r->body_len && !r->body))
        return -1;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!r->headers[i] || !kc_httpc_header_value_ok(r->headers[i]))
            return -1;

    req_t *q = kc_xcalloc(1, sizeof(*q));
    q->h = h;
    q->keep = r->keep_body;
    q->max_body = r->max_body;
    q->retry_after_s = -1;
    q->cb = cb;
    q->arg = arg;
    q->easy = curl_easy_init();
    if (!q->easy) {
        free(q);
        return -1;
    }
    if (sends && r->body_len) {
        q->out = kc_xmalloc(r->body_len);
        memcpy(q->out, r->body, r->body_len);
        q->out_len = r->body_len;
    }
    /* No "Expect: 100-continue" round trip before a body. */
    q->headers = curl_slist_append(NULL, "Expect:");
    int headers_ok = q->headers != NULL;
    for (size_t i = 0; headers_ok && i < r->n_headers; i++)
        headers_ok = curl_slist_append(q->headers, r->headers[i]) != NULL;

    CURL *e = q->easy;
    CURLcode rc = headers_ok ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                           \
    do {                                                                                        \
        if (rc == CURLE_OK)                                                                     \
            rc = curl_easy_setopt(e, opt, val);                                                 \
    } while (0)
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_PRIVATE, (void *)q);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    if (r->path_as_is)
        SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms > 0 ? r->timeout_ms : h->timeout_ms);
    SET(CURLOPT_HTTPHEADER, q->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)q);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)q);
    if (q->keep && r->max_body < (size_t)INT64_MAX)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body); /* a Content-Length over it */
    if (head)
        SET(CURLOPT_NOBODY, 1L);
    if (del)
        SET(CURLOPT_CUSTOMREQUEST, "DELETE");
    if (sends) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, (void *)q);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, (void *)q);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->out_len);
        if (post)
            SET(CURLOPT_CUSTOMREQUEST, "POST"); /* an upload is a PUT unless told */
    }
#undef SET
    if (rc != CURLE_OK) {
        kc_log_error("httpc: cannot set up a request: %s", curl_easy_strerror(rc));
        req_free(q);
        return -1;
    }
    kc_list_push_back(&h->reqs, &q->link);
    CURLMcode mrc = curl_multi_add_handle(h->multi, e);
    if (mrc != CURLM_OK) {
        kc_log_error("httpc: curl_multi_add_handle: %s", curl_multi_strerror(mrc));
        kc_list_remove(&h->reqs, &q->link);
        req_free(q);
        return -1;
    }
    return 0;
}

void kc_httpc_on_free(kc_httpc_t *h, void (*fn)(void *arg), void *arg)
{
    h->on_free = fn;
    h->on_free_arg = arg;
}

size_t kc_httpc_inflight(const kc_httpc_t *h)
{
    return h->reqs.len;
}

void kc_httpc_close(kc_httpc_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = 1;
    kc_list_t cancelled = h->reqs;
    h->reqs = (kc_list_t){0};
    KC_LIST_FOREACH(n, &cancelled) {
        req_t *q = KC_LIST_ENTRY(n, req_t, link);
        CURLMcode rc = curl_multi_remove_handle(h->multi, q->easy);
        if (rc != CURLM_OK)
            kc_log_warn("httpc: curl_multi_remove_handle: %s", curl_multi_strerror(rc));
    }
    /* Our watches end before curl closes the sockets of its connection cache. */
    while (!kc_list_empty(&h->socks))
        sock_close(KC_LIST_ENTRY(h->socks.first, sock_t, link));
    CURLMcode rc = curl_multi_cleanup(h->multi);
    if (rc != CURLM_OK)
        kc_log_warn("httpc: curl_multi_cleanup: %s", curl_multi_strerror(rc));
    h->multi = NULL;
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
    kc_list_node_t *n;
    while ((n = kc_list_pop_front(&cancelled))) {
        req_t *q = KC_LIST_ENTRY(n, req_t, link);
        kc_httpc_result_t res = {.content_length = -1, .retry_after_s = -1, .error = "cancelled"};
        q->cb(q->arg, &res);
        req_free(q);
    }
}
