/* httpc.h - an HTTP client on the daemon's libuv loop: libcurl's multi interface, driven by
 * the loop, for the requests kchat sends itself (the object store's, the notifier's pushes
 * and webhooks).
 *
 * curl tells which sockets to watch (one uv_poll_t each) and when to wake it (one
 * uv_timer_t), and is called back with curl_multi_socket_action. Nothing blocks the loop:
 * curl resolves a host name on a short-lived thread of its own (Debian's libcurl has the
 * threaded resolver) and polls for the answer on its timer, and CURLOPT_NOSIGNAL keeps it
 * from signals. Each request is bounded by a timeout; at most max_inflight run at once and
 * more are refused, so a caller sheds load or queues it itself instead of queueing it here
 * without bound. Redirects are not followed, no proxy is taken from the environment, and only
 * http and https are spoken. Connections are kept and reused between requests to one origin.
 */
#ifndef KCHAT_HTTPC_H
#define KCHAT_HTTPC_H

#include <stddef.h>
#include <uv.h>

typedef struct kc_httpc kc_httpc_t;

/* libcurl's global set-up, once per process (what the first client does), for code that uses
 * curl's easy interface itself: 0, or -1 when libcurl cannot start. */
int kc_httpc_global_init(void);

typedef struct {
    long status;              /* HTTP status; 0 when the request did not complete (error says why) */
    const char *error;        /* NULL, or a short reason (connection refused, cannot connect,
                               * timeout, too large, cancelled, or curl's words for anything
                               * else); a static string */
    long long content_length; /* the Content-Length header, -1 when absent */
    char content_type[128];   /* the Content-Type header ("" when absent; cut to fit) */
    long long retry_after_s;  /* Retry-After in seconds from now (a delay, or an HTTP date in
                               * the future), -1 when absent or unreadable */
    const char *body;         /* the body when the request asked to keep it, any status (valid
                               * during the callback only); NULL and 0 otherwise */
    size_t body_len;
} kc_httpc_result_t;

/* After an error, content_length and content_type are those of the headers that had come by
 * then (-1 and "" when none had). */
typedef void (*kc_httpc_cb)(void *arg, const kc_httpc_result_t *res);

typedef struct {
    const char *method;          /* "GET", "HEAD", "PUT", "POST" or "DELETE" */
    const char *url;             /* http(s)://... */
    const char *const *headers;  /* n_headers "Name: value" lines (checked: no CR, LF or
                                  * other control character) */
    size_t n_headers;
    const void *body;            /* PUT's and POST's body (copied); ignored for the others */
    size_t body_len;
    int keep_body;               /* keep the response's body, up to max_body bytes: a larger one
                                  * (or a Content-Length announcing one) ends the request with
                                  * error "too large". 0: the body is read and dropped */
    size_t max_body;
    long timeout_ms;             /* 0: the client's */
    int path_as_is;              /* send the path as given (no "/../" folding): signed URLs */
} kc_httpc_req_t;

/* A client on loop. timeout_ms (> 0) bounds each request, from its start to its last byte,
 * unless the request says otherwise; at most max_inflight (> 0) run at once. The first call
 * initialises libcurl for the whole process (curl_global_init, once, under a pthread_once):
 * make the first client before starting threads that use libcurl themselves. NULL with err
 * when libcurl cannot start. */
kc_httpc_t *kc_httpc_new(uv_loop_t *loop, long timeout_ms, size_t max_inflight, char *err,
                         size_t errlen);

/* Starts r (its strings and body are copied or used before this returns). cb runs exactly
 * once, on the loop, later (never inside this call). 0, or -1 when it cannot start (cb not
 * called): an unknown method, no URL, a header with a control character, max_inflight
 * requests already in flight, or from a callback run by kc_httpc_close. */
int kc_httpc_request(kc_httpc_t *h, const kc_httpc_req_t *r, kc_httpc_cb cb, void *arg);

/* Requests in flight (started and not yet called back). */
size_t kc_httpc_inflight(const kc_httpc_t *h);

/* Cancels what is in flight: each callback runs once, with status 0 and error "cancelled",
 * before this returns (a callback may start nothing new: kc_httpc_request then fails). Frees
 * the client once its loop handles are closed, on the loop; h must not be used after this
 * call. May be called from a request's callback. NULL is a no-op. */
void kc_httpc_close(kc_httpc_t *h);

/* fn(arg) runs once the client's memory is freed, on the loop, after kc_httpc_close: for a
 * wrapper that must outlive the callbacks its close runs (it may be called from them). */
void kc_httpc_on_free(kc_httpc_t *h, void (*fn)(void *arg), void *arg);

/* A header value that cannot end the header early: no control character but tab. */
int kc_httpc_header_value_ok(const char *v);

#endif
