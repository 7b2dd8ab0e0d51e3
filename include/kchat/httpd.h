/* httpd.h - an HTTP server (libmicrohttpd) driven by the daemon's libuv loop.
 *
 * MHD runs without threads of its own (MHD_USE_EPOLL): its epoll fd is watched with a
 * uv_poll_t and MHD_run() is called when it is readable, plus a uv_timer_t for MHD's own
 * timeouts. Request bodies are read up to max_body bytes; a larger one is answered 413
 * before the handler sees it. The handler fills a response synchronously.
 */
#ifndef KCHAT_HTTPD_H
#define KCHAT_HTTPD_H

#include <stddef.h>
#include <uv.h>

#include "kchat/buf.h"

typedef struct kc_httpd kc_httpd_t;

typedef struct {
    const char *method;
    const char *path;
    const char *body;
    size_t body_len;
    void *conn; /* struct MHD_Connection *, for kc_http_header / kc_http_query */
} kc_http_req_t;

typedef struct {
    int status;
    const char *content_type; /* static string; "application/json" when NULL */
    kc_buf_t body;
} kc_http_resp_t;

typedef void (*kc_httpd_handler_fn)(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp);

const char *kc_http_header(const kc_http_req_t *req, const char *name);
const char *kc_http_query(const kc_http_req_t *req, const char *name);
/* Fills resp with {"error":{"code":code,"message":message}} and the status. */
void kc_http_error(kc_http_resp_t *resp, int status, const char *code, const char *message);

/* Listens on bind_addr:port (port 0 picks a free one, see kc_httpd_port). */
kc_httpd_t *kc_httpd_new(uv_loop_t *loop, const char *bind_addr, int port, size_t max_body,
                         kc_httpd_handler_fn handler, void *arg, char *errstr, size_t errstr_size);
int kc_httpd_port(const kc_httpd_t *h);
/* Closes the listening socket; requests already accepted are still served. */
void kc_httpd_stop_accepting(kc_httpd_t *h);
/* Stops MHD and closes the loop handles; frees itself once they are closed. NULL is a no-op. */
void kc_httpd_destroy(kc_httpd_t *h);

#endif
