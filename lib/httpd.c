/* httpd.c - libmicrohttpd in external-polling epoll mode, driven by a libuv loop. */
#include "kchat/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/util.h"

#define CONNECTION_LIMIT 1024
#define CONNECTION_TIMEOUT_S 30

/* One open connection (MHD's socket context). */
typedef struct {
    kc_list_node_t link; /* in kc_httpd_t.conns */
    struct MHD_Connection *conn;
    uint64_t since_ns; /* its opening, or the end of its last request */
    int busy;          /* a request's header is in: the bound no longer applies to it */
    int trusted;
    char addr[KC_HTTP_PEER_MAX];
} conn_t;

struct kc_httpd {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_timer_t sweep; /* once a second: requests past the bound */
    int open_handles;
    size_t max_body;
    kc_httpd_handler_fn handler;
    void *arg;
    int port;
    kc_list_t suspended; /* unanswered pending requests */
    size_t active; /* requests with a req_ctx_t, not yet completed */
    kc_httpd_limits_t lim;
    char **trusted;   /* the limits' trusted addresses, copied */
    kc_map_t *per_addr; /* address -> open connections (as a uintptr_t) */
    kc_list_t conns;  /* of conn_t: every open connection */
    unsigned long refused, cut;
    kc_ratelog_t refused_log, cut_log;
};

typedef struct req_ctx req_ctx_t;

struct kc_http_pending {
    kc_httpd_t *h;  /* NULL once the server is gone */
    req_ctx_t *ctx; /* NULL once the connection is gone */
    struct MHD_Connection *conn;
    int is_suspended; /* MHD_suspend_connection was called */
    int answered;
    kc_http_resp_t resp;
    kc_list_node_t link; /* in kc_httpd_t.suspended */
};

struct req_ctx {
    kc_buf_t body;
    int too_large;
    int dispatched; /* the handler has been called */
    kc_http_pending_t *pending;
    char peer[KC_HTTP_PEER_MAX];
};

static void pending_free(kc_http_pending_t *p)
{
    kc_buf_free(&p->resp.body);
    free(p);
}

static void pending_unlink(kc_http_pending_t *p)
{
    kc_httpd_t *h = p->h;
    if (!h)
        return;
    kc_list_remove(&h->suspended, &p->link);
}

static void run_mhd(kc_httpd_t *h);

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void run_mhd(kc_httpd_t *h)
{
    if (!h->mhd)
        return;
    if (MHD_run(h->mhd) != MHD_YES)
        kc_log_warn("MHD_run failed");
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
        if (ms > 60000)
            ms = 60000;
        if (uv_timer_start(&h->timer, on_timer, ms, 0) != 0)
            kc_log_error("httpd: cannot start timer");
    } else if (uv_timer_stop(&h->timer) != 0) {
        kc_log_error("httpd: cannot stop timer");
    }
}

kc_http_pending_t *kc_http_suspend(const kc_http_req_t *req)
{
    req_ctx_t *ctx = req->priv;
    kc_http_pending_t *p = kc_xcalloc(1, sizeof(*p));
    p->ctx = ctx;
    p->conn = req->conn;
    ctx->pending = p;
    return p;
}

void kc_http_resume(kc_http_pending_t *p, kc_http_resp_t *resp)
{
    if (!p)
        return;
    if (!p->ctx) { /* the connection or the server is gone */
        kc_buf_free(&resp->body);
        pending_free(p);
        return;
    }
    p->resp = *resp;
    memset(resp, 0, sizeof(*resp));
    p->answered = 1;
    if (p->is_suspended) {
        kc_httpd_t *h = p->h;
        pending_unlink(p);
        MHD_resume_connection(p->conn);
        /* MHD's wake-up pipe makes its epoll fd readable; run it at once all the same. */
        if (h && uv_timer_start(&h->timer, on_timer, 0, 0) != 0)
            kc_log_error("httpd: cannot start timer");
    }
}

size_t kc_httpd_suspended(const kc_httpd_t *h)
{
    return h ? h->suspended.len : 0;
}

size_t kc_httpd_active(const kc_httpd_t *h)
{
    return h ? h->active : 0;
}

const char *kc_http_header(const kc_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *kc_http_query(const kc_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void kc_http_error(kc_http_resp_t *resp, int status, const char *code, const char *message)
{
    resp->status = status;
    resp->content_type = "application/json";
    kc_buf_reset(&resp->body);
    kc_buf_puts(&resp->body, "{\"error\":{\"code\":\"");
    kc_buf_json_str(&resp->body, code, strlen(code));
    kc_buf_puts(&resp->body, "\",\"message\":\"");
    kc_buf_json_str(&resp->body, message, strlen(message));
    kc_buf_puts(&resp->body, "\"}}");
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, kc_http_resp_t *resp)
{
    size_t len = resp->body.len;
    char *data = kc_buf_steal(&resp->body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_YES;
    if (resp->retry_after_s > 0) {
        char ra[24];
        (void)kc_strlcpyf(ra, sizeof(ra), "%d", resp->retry_after_s);
        if (MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra) != MHD_YES)
            rc = MHD_NO;
    }
    if (rc == MHD_YES &&
        (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                 resp->content_type ? resp->content_type : "application/json") !=
             MHD_YES ||
         MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES))
        rc = MHD_NO;
    if (rc == MHD_YES)
        rc = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

/* The connected peer's address as text, "" when MHD does not know it. */
static void addr_text(const struct sockaddr *sa, char *out, size_t size)
{
    out[0] = '\0';
    if (!sa)
        return;
    const void *bin = NULL;
    if (sa->sa_family == AF_INET)
        bin = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        bin = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (!bin || !inet_ntop(sa->sa_family, bin, out, (socklen_t)size))
        out[0] = '\0';
}

static void peer_text(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_text(ci ? ci->client_addr : NULL, out, size);
}

static void free_limits(kc_httpd_t *h)
{
    for (size_t i = 0; h->trusted && h->trusted[i]; i++)
        free(h->trusted[i]);
    free(h->trusted);
    h->trusted = NULL;
    kc_map_destroy(h->per_addr, NULL);
    h->per_addr = NULL;
}

typedef struct {
    const char *first;
    int differ;
} lengths_t;

static enum MHD_Result each_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    lengths_t *l = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0 || !value)
        return MHD_YES;
    if (!l->first)
        l->first = value;
    else if (strcmp(l->first, value) != 0)
        l->differ = 1;
    return MHD_YES;
}

/* Two Content-Length headers that differ (RFC 9112 6.3: the message cannot be framed). */
static int duplicate_length(struct MHD_Connection *conn)
{
    lengths_t l = {0};
    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, each_length, &l);
    return l.differ;
}

static conn_t *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- limits: per address, and the time a request may take to arrive ---- */

static int is_trusted(const kc_httpd_t *h, const char *addr)
{
    for (size_t i = 0; h->trusted && h->trusted[i]; i++)
        if (strcmp(h->trusted[i], addr) == 0)
            return 1;
    return 0;
}

static void log_limited(kc_ratelog_t *rl, const char *addr, const char *what)
{
    long long suppressed;
    if (kc_ratelog_ok(rl, kc_mono_ns(), &suppressed))
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("client", addr), KC_INT("suppressed", suppressed)),
                  "%s", what);
}

static uintptr_t addr_count(const kc_httpd_t *h, const char *addr)
{
    return (uintptr_t)kc_map_get(h->per_addr, addr, strlen(addr));
}

static void addr_add(kc_httpd_t *h, const char *addr, int delta)
{
    uintptr_t n = addr_count(h, addr) + (uintptr_t)(intptr_t)delta;
    if (n == 0)
        (void)kc_map_remove(h->per_addr, addr, strlen(addr));
    else
        (void)kc_map_put(h->per_addr, addr, strlen(addr), (void *)n);
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    kc_httpd_t *h = cls;
    (void)len;
    char addr[KC_HTTP_PEER_MAX];
    addr_text(sa, addr, sizeof(addr));
    if (!h->lim.per_address || is_trusted(h, addr) || addr_count(h, addr) < h->lim.per_address)
        return MHD_YES;
    h->refused++;
    log_limited(&h->refused_log, addr,
                "connection refused: its address holds the most connections it may");
    return MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    kc_httpd_t *h = cls;
    if (!h->lim.per_address && !h->lim.request_timeout_s)
        return; /* nothing to bound: no bookkeeping */
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_t *c = kc_xcalloc(1, sizeof(*c));
        c->conn = conn;
        c->since_ns = kc_mono_ns();
        peer_text(conn, c->addr, sizeof(c->addr));
        c->trusted = is_trusted(h, c->addr);
        addr_add(h, c->addr, 1);
        kc_list_push_back(&h->conns, &c->link);
        *socket_context = c;
        return;
    }
    conn_t *c = *socket_context;
    if (!c)
        return;
    addr_add(h, c->addr, -1);
    kc_list_remove(&h->conns, &c->link);
    free(c);
    *socket_context = NULL;
}

/* A request whose header and body have not arrived within the bound is cut: its socket is
 * shut down, and MHD closes the connection at its next turn. An idle timeout alone cannot do
 * it: a client that sends a byte now and then is never idle. */
static void on_sweep(uv_timer_t *t)
{
    kc_httpd_t *h = t->data;
    uint64_t now = kc_mono_ns(), bound = (uint64_t)h->lim.request_timeout_s * 1000000000ull;
    int any = 0;
    KC_LIST_FOREACH(n, &h->conns)
    {
        conn_t *c = KC_LIST_ENTRY(n, conn_t, link);
        if (c->trusted || c->busy || now - c->since_ns < bound)
            continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || shutdown(ci->connect_fd, SHUT_RDWR) != 0)
            continue;
        c->busy = 2; /* cut: once */
        h->cut++;
        any = 1;
        log_limited(&h->cut_log, c->addr,
                    "connection cut: its request did not arrive within request-timeout");
    }
    if (any)
        run_mhd(h);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    kc_httpd_t *h = cls;
    req_ctx_t *ctx = *con_cls;
    if (ctx && ctx->pending && ctx->pending->answered) {
        /* called again after kc_http_resume */
        kc_http_pending_t *p = ctx->pending;
        ctx->pending = NULL;
        enum MHD_Result rc = send_resp(conn, &p->resp);
        pending_free(p);
        return rc;
    }
    if (ctx && ctx->pending)
        return MHD_YES; /* still suspended: nothing to do */
    if (ctx && ctx->dispatched) { /* resumed unanswered by kc_httpd_destroy */
        kc_http_resp_t resp = {0};
        kc_http_error(&resp, 503, "stopping", "the server is stopping");
        enum MHD_Result rc = send_resp(conn, &resp);
        kc_buf_free(&resp.body);
        return rc;
    }
    if (!ctx) {
        ctx = kc_xcalloc(1, sizeof(*ctx));
        *con_cls = ctx;
        h->active++;
        peer_text(conn, ctx->peer, sizeof(ctx->peer));
        if (duplicate_length(conn)) {
            kc_http_resp_t resp = {.status = 400};
            kc_http_error(&resp, 400, "bad_request",
                          "two Content-Length headers that differ: which one is meant?");
            enum MHD_Result rc = send_resp(conn, &resp);
            kc_buf_free(&resp.body);
            return rc;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || n > h->max_body)
                ctx->too_large = 1;
        }
        if (!ctx->too_large)
            return MHD_YES;
    }
    if (*upload_data_size) {
        /* MHD takes a response only before the body or after all of it, so a body that
         * grows past max_body (chunked, no Content-Length) is read to its end and dropped,
         * then answered 413. */
        if (!ctx->too_large && ctx->body.len + *upload_data_size > h->max_body) {
            ctx->too_large = 1;
            kc_buf_free(&ctx->body);
        }
        if (!ctx->too_large)
            kc_buf_append(&ctx->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    kc_http_resp_t resp = {.status = 200};
    if (ctx->too_large) {
        char msg[96];
        kc_strlcpyf(msg, sizeof(msg), "request body is larger than %zu bytes", h->max_body);
        kc_http_error(&resp, 413, "payload_too_large", msg);
        *upload_data_size = 0;
    } else {
        kc_http_req_t req = {.method = method,
                             .path = url,
                             .peer = ctx->peer,
                             .body = ctx->body.data ? ctx->body.data : "",
                             .body_len = ctx->body.len,
                             .conn = conn,
                             .priv = ctx};
        ctx->dispatched = 1;
        conn_t *c = conn_of(conn);
        if (c && !c->busy)
            c->busy = 1; /* it arrived whole: the bound is done with it */
        h->handler(h->arg, &req, &resp);
        kc_http_pending_t *p = ctx->pending;
        if (p && p->answered) { /* answered before the handler returned */
            ctx->pending = NULL;
            kc_buf_free(&resp.body);
            enum MHD_Result rc = send_resp(conn, &p->resp);
            pending_free(p);
            return rc;
        }
        if (p) {
            kc_buf_free(&resp.body);
            p->h = h;
            p->is_suspended = 1;
            kc_list_push_front(&h->suspended, &p->link);
            MHD_suspend_connection(conn);
            return MHD_YES;
        }
    }
    enum MHD_Result rc = send_resp(conn, &resp);
    kc_buf_free(&resp.body);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    kc_httpd_t *h = cls;
    (void)toe;
    conn_t *c = conn_of(conn);
    if (c && c->busy == 1) { /* the next request on this connection is bound afresh */
        c->busy = 0;
        c->since_ns = kc_mono_ns();
    }
    req_ctx_t *ctx = *con_cls;
    if (ctx) {
        h->active--;
        kc_http_pending_t *p = ctx->pending;
        if (p && p->answered) {
            pending_free(p);
        } else if (p) { /* its owner answers later: then it is only freed */
            pending_unlink(p);
            p->ctx = NULL;
            p->h = NULL;
        }
        kc_buf_free(&ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        return;
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("lib", "libmicrohttpd")), "%s", msg);
}

kc_httpd_t *kc_httpd_new(uv_loop_t *loop, const char *bind_addr, int port, size_t max_body,
                         const kc_httpd_limits_t *limits, kc_httpd_handler_fn handler, void *arg,
                         char *errstr, size_t errstr_size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        kc_strlcpyf(errstr, errstr_size, "invalid bind address '%s' (IPv4 expected)", bind_addr);
        return NULL;
    }
    kc_httpd_t *h = kc_xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->max_body = max_body;
    h->handler = handler;
    h->arg = arg;
    if (limits)
        h->lim = *limits;
    if (!h->lim.max_connections)
        h->lim.max_connections = CONNECTION_LIMIT;
    if (!h->lim.idle_timeout_s)
        h->lim.idle_timeout_s = CONNECTION_TIMEOUT_S;
    size_t nt = 0;
    while (h->lim.trusted && h->lim.trusted[nt])
        nt++;
    h->trusted = kc_xcalloc(nt + 1, sizeof(char *));
    for (size_t i = 0; i < nt; i++)
        h->trusted[i] = kc_xstrdup(h->lim.trusted[i]);
    h->lim.trusted = NULL;
    h->per_addr = kc_map_new();
    h->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, (uint16_t)port, on_accept,
        h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_LIMIT,
        h->lim.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, h->lim.idle_timeout_s,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!h->mhd) {
        kc_strlcpyf(errstr, errstr_size, "cannot listen on %s:%d (port in use?)", bind_addr, port);
        free_limits(h);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : port;
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!ei || uv_poll_init(loop, &h->poll, ei->epoll_fd) != 0 ||
        uv_timer_init(loop, &h->timer) != 0 || uv_timer_init(loop, &h->sweep) != 0) {
        kc_strlcpyf(errstr, errstr_size, "cannot attach the HTTP server to the loop");
        MHD_stop_daemon(h->mhd);
        free_limits(h);
        free(h);
        return NULL;
    }
    h->poll.data = h;
    h->timer.data = h;
    h->sweep.data = h;
    h->open_handles = 3;
    if (h->lim.request_timeout_s && uv_timer_start(&h->sweep, on_sweep, 1000, 1000) != 0) {
        kc_strlcpyf(errstr, errstr_size, "cannot start the HTTP server's request timer");
        kc_httpd_destroy(h);
        return NULL;
    }
    if (uv_poll_start(&h->poll, UV_READABLE, on_poll) != 0) {
        kc_strlcpyf(errstr, errstr_size, "cannot poll the HTTP server's epoll fd");
        kc_httpd_destroy(h);
        return NULL;
    }
    run_mhd(h);
    return h;
}

int kc_httpd_port(const kc_httpd_t *h)
{
    return h->port;
}

void kc_httpd_stop_accepting(kc_httpd_t *h)
{
    if (!h || !h->mhd)
        return;
    MHD_socket s = MHD_quiesce_daemon(h->mhd);
    if (s != MHD_INVALID_SOCKET && close(s) != 0)
        kc_log_warn("httpd: closing the listening socket failed");
}

static void on_closed(uv_handle_t *handle)
{
    kc_httpd_t *h = handle->data;
    if (--h->open_handles == 0) {
        free_limits(h);
        free(h);
    }
}

unsigned long kc_httpd_refused(const kc_httpd_t *h)
{
    return h->refused;
}

unsigned long kc_httpd_cut(const kc_httpd_t *h)
{
    return h->cut;
}

void kc_httpd_destroy(kc_httpd_t *h)
{
    if (!h)
        return;
    /* MHD refuses to stop with suspended connections: resume them, unanswered; they are
     * closed with the daemon, and their owners' kc_http_resume only frees the handle. */
    kc_http_pending_t *p;
    while ((p = KC_LIST_ENTRY(h->suspended.first, kc_http_pending_t, link))) {
        pending_unlink(p);
        p->h = NULL;
        if (p->ctx) {
            p->ctx->pending = NULL;
            p->ctx = NULL;
        }
        MHD_resume_connection(p->conn);
    }
    if (h->mhd) {
        MHD_stop_daemon(h->mhd);
        h->mhd = NULL;
    }
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
    uv_close((uv_handle_t *)&h->sweep, on_closed);
}
