/* httpd.h - an HTTP server (libmicrohttpd) driven by the daemon's libuv loop.
 *
 * MHD runs without threads of its own (MHD_USE_EPOLL): its epoll fd is watched with a
 * uv_poll_t and MHD_run() is called when it is readable, plus a uv_timer_t for MHD's own
 * timeouts. Request bodies are read up to max_body bytes; a larger one is answered 413
 * before the handler sees it.
 *
 * A handler either fills resp before it returns (synchronous), or calls kc_http_suspend()
 * and leaves resp alone: the connection is then suspended (MHD_suspend_connection) and the
 * request stays valid (method, path, body, headers) until kc_http_resume() answers it, which
 * must happen exactly once, on the loop thread, later or even before the handler returns.
 * Suspended connections are not subject to MHD's idle timeout, so whoever suspends owns a
 * deadline. kc_httpd_destroy() closes the connections still suspended; a later
 * kc_http_resume() on them only frees the handle.
 */
#ifndef KCHAT_HTTPD_H
#define KCHAT_HTTPD_H

#include <netinet/in.h>
#include <stddef.h>
#include <uv.h>

#include "kchat/buf.h"

typedef struct kc_httpd kc_httpd_t;

/* Room for a peer's address as text (INET6_ADDRSTRLEN). */
#define KC_HTTP_PEER_MAX INET6_ADDRSTRLEN

typedef struct {
    const char *method;
    const char *path;
    const char *body;
    size_t body_len;
    const char *peer; /* the connected peer's address as text (IPv4 dotted or IPv6), "" when
                       * unknown: the client, or the proxy in front of it */
    void *conn;       /* struct MHD_Connection *, for kc_http_header / kc_http_query */
    void *priv; /* the server's per-request state (for kc_http_suspend) */
} kc_http_req_t;

typedef struct {
    int status;
    const char *content_type; /* static string; "application/json" when NULL */
    kc_buf_t body;
    int retry_after_s; /* > 0: a Retry-After header with this many seconds (429, 503) */
} kc_http_resp_t;

typedef void (*kc_httpd_handler_fn)(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp);

const char *kc_http_header(const kc_http_req_t *req, const char *name);
const char *kc_http_query(const kc_http_req_t *req, const char *name);
/* Fills resp with {"error":{"code":code,"message":message}} and the status (retry_after_s
 * is left as it is). */
void kc_http_error(kc_http_resp_t *resp, int status, const char *code, const char *message);

/* A request whose answer comes later. */
typedef struct kc_http_pending kc_http_pending_t;

/* Called from the handler: the request will be answered with kc_http_resume. */
kc_http_pending_t *kc_http_suspend(const kc_http_req_t *req);
/* Answers a suspended request: takes resp's body (resp is left empty) and frees p. */
void kc_http_resume(kc_http_pending_t *p, kc_http_resp_t *resp);

/* What one server takes, so that slow or many connections cannot make it answer nobody. */
typedef struct {
    unsigned max_connections; /* in all (0: 1024) */
    unsigned per_address;     /* open at once from one client address (0: no limit): more are
                                 closed at accept */
    unsigned idle_timeout_s;  /* a connection silent this long is closed (0: 30) */
    unsigned request_timeout_s; /* a request's header and body must be in within this many
                                   seconds of its connection opening or of the previous
                                   answer on it, however slowly they trickle (0: no bound) */
    const char *const *trusted; /* NULL-terminated addresses spared the per-address limit and
                                   the request bound (the ingress, whose own bounds apply) */
} kc_httpd_limits_t;

/* Listens on bind_addr:port (port 0 picks a free one, see kc_httpd_port); limits may be NULL
 * for the defaults. */
kc_httpd_t *kc_httpd_new(uv_loop_t *loop, const char *bind_addr, int port, size_t max_body,
                         const kc_httpd_limits_t *limits, kc_httpd_handler_fn handler, void *arg,
                         char *errstr, size_t errstr_size);
/* Connections closed at accept for their address's limit, and requests cut for taking longer
 * than the request bound, since the start. */
unsigned long kc_httpd_refused(const kc_httpd_t *h);
unsigned long kc_httpd_cut(const kc_httpd_t *h);
int kc_httpd_port(const kc_httpd_t *h);
/* Closes the listening socket; requests already accepted are still served. */
void kc_httpd_stop_accepting(kc_httpd_t *h);
/* Requests suspended and not yet answered. */
size_t kc_httpd_suspended(const kc_httpd_t *h);
/* Requests begun and not yet completed (their answer not fully sent); idle keep-alive
 * connections do not count. A drain waits for 0 before kc_httpd_destroy. */
size_t kc_httpd_active(const kc_httpd_t *h);
/* Stops MHD and closes the loop handles; frees itself once they are closed. NULL is a no-op. */
void kc_httpd_destroy(kc_httpd_t *h);

#endif
