/* ws.c - the WebSocket endpoint: libwebsockets on the daemon's libuv loop.
 *
 * The handshake is judged in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, while the request is still
 * plain HTTP, so a refusal is a real HTTP answer (401 for a token, 403 for an Origin, 404 for
 * a path, 503 when full or draining) with a JSON body, and no socket is ever upgraded for a
 * client that was not verified. The protocol's per-session storage is the gw_conn_t itself.
 *
 * Messages arrive in pieces of at most rx-buffer-bytes (lws' per-socket receive buffer,
 * small because every idle socket holds one); a message in one piece is read in place, a
 * longer or fragmented one is assembled in the connection's rx buffer, allocated for it and
 * freed after it, up to max-frame-bytes (beyond: close 1009, decided from the frame
 * header's announced length before the rest of the payload is read). It must be UTF-8 text
 * (lws validates while reading and closes with 1007; we check the whole message again). Frames
 * out go through the connection's queue and are written only in the writeable callback, as
 * lws requires; a queue over max-queued-bytes closes the connection (4008) rather than
 * letting one slow reader hold memory without bound.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define TOKEN_BUF (KC_JWT_MAX_LEN + 64)
#define CLOSE_REASON_MAX 123 /* a close frame's payload is at most 125 bytes, the code included */

/* Closes from inside a callback of c: the caller returns -1 right after. */
static int close_now(gw_t *g, struct lws *wsi, int code, const char *reason)
{
    gw_count_close(g, code);
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* ---- the handshake ---- */

static const char *reason_phrase(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    default: return "Service Unavailable";
    }
}

/* Answers the upgrade request with an HTTP error and a JSON body. The response is written
 * whole by hand: lws would label the status line of an upgrade request HTTP/1.0, which
 * WebSocket clients refuse to read. Returns 1 (lws then completes the transaction), or -1
 * to hang up when even that fails. */
static int refuse(struct lws *wsi, unsigned status, const char *code, const char *message)
{
    kc_buf_t body = {0}, resp = {0};
    kc_buf_puts(&body, "{\"error\":{");
    gw_json_kv(&body, 0, "code", code, strlen(code));
    gw_json_kv(&body, 1, "message", message, strlen(message));
    kc_buf_puts(&body, "}}");
    kc_buf_reserve(&resp, LWS_PRE + 512 + body.len);
    resp.len = LWS_PRE; /* headroom lws_write may use */
    kc_buf_printf(&resp,
                  "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                  "%sconnection: close\r\n\r\n",
                  status, reason_phrase(status), body.len,
                  status == 401 ? "www-authenticate: Bearer\r\n" : "");
    kc_buf_append(&resp, body.data, body.len);
    size_t n = resp.len - LWS_PRE;
    int rc =
        lws_write(wsi, (unsigned char *)resp.data + LWS_PRE, n, LWS_WRITE_HTTP_HEADERS) == (int)n
            ? 1
            : -1;
    kc_buf_free(&body);
    kc_buf_free(&resp);
    return rc;
}

/* The bearer token from Authorization, else from ?access_token=. 0, or -1 with *why. */
static int get_token(struct lws *wsi, char *out, size_t size, const char **why)
{
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 0) {
        if ((size_t)n >= size) {
            *why = "the Authorization header is too long";
            return -1;
        }
        char *h = kc_xmalloc(size);
        int got = lws_hdr_copy(wsi, h, (int)size, WSI_TOKEN_HTTP_AUTHORIZATION);
        int rc = -1;
        if (got < 8 || strncasecmp(h, "Bearer ", 7) != 0) {
            *why = "the Authorization header is not a Bearer token";
        } else {
            const char *t = h + 7;
            while (*t == ' ')
                t++;
            kc_strlcpyf(out, size, "%s", t);
            rc = 0;
        }
        free(h);
        return rc;
    }
    char *arg = kc_xmalloc(size + 16);
    const char *v = lws_get_urlarg_by_name(wsi, "access_token=", arg, (int)(size + 16));
    int rc = -1;
    if (!v || !*v)
        *why = "no token: send Authorization: Bearer <token> or ?access_token=<token>";
    else if (strlen(v) >= size)
        *why = "the token is too long";
    else {
        kc_strlcpyf(out, size, "%s", v);
        rc = 0;
    }
    free(arg);
    return rc;
}

static int origin_allowed(gw_t *g, struct lws *wsi, char *origin, size_t size)
{
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    origin[0] = '\0';
    if (n <= 0)
        return 1; /* not a browser: cross-site hijacking needs a browser's ambient credentials */
    if ((size_t)n >= size)
        return 0;
    if (lws_hdr_copy(wsi, origin, (int)size, WSI_TOKEN_ORIGIN) < 0)
        return 0;
    for (size_t i = 0; i < g->norigins; i++)
        if (strcmp(g->origins[i], "*") == 0 || strcasecmp(g->origins[i], origin) == 0)
            return 1;
    return 0;
}

/* Verifies the token of the request; fills claims. Returns 0 or -1 with code/why. */
static int verify(gw_t *g, struct lws *wsi, kc_jwt_claims_t *claims, const char **code, char *why,
                  size_t whylen)
{
    char *token = kc_xmalloc(TOKEN_BUF);
    const char *twhy = NULL;
    int rc = -1;
    if (get_token(wsi, token, TOKEN_BUF, &twhy) != 0) {
        *code = "token_missing";
        kc_strlcpyf(why, whylen, "%s", twhy);
        goto out;
    }
    kc_jwt_status_t st =
        kc_jwt_verify(g->jwt, token, kc_now_ms() / 1000, GW_JWT_LEEWAY_S, claims, why, whylen);
    if (st != KC_JWT_OK) {
        *code = kc_jwt_status_code(st);
        goto out;
    }
    rc = 0;
out:
    free(token);
    return rc;
}

static int confirm_upgrade(gw_t *g, struct lws *wsi)
{
    char uri[256];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
        return refuse(wsi, 404, "not_found", "the WebSocket endpoint is /ws");
    if (!g->accepting) {
        kc_counter_inc(g->m.refused_full);
        return refuse(wsi, 503, "unavailable", "the gateway is shutting down");
    }
    if (g->nconns >= (size_t)g->cfg.max_connections) {
        kc_counter_inc(g->m.refused_full);
        return refuse(wsi, 503, "unavailable", "the gateway holds its maximum of connections");
    }
    char origin[512];
    if (!origin_allowed(g, wsi, origin, sizeof(origin))) {
        kc_counter_inc(g->m.refused_origin);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("origin", origin)), "refused: origin");
        return refuse(wsi, 403, "origin_refused", "this Origin may not open a socket here");
    }
    kc_jwt_claims_t claims;
    const char *code = NULL;
    char why[256];
    if (verify(g, wsi, &claims, &code, why, sizeof(why)) != 0) {
        kc_counter_inc(g->m.refused_token);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("code", code), KC_STR("why", why)),
                  "refused: token");
        return refuse(wsi, 401, code, why);
    }
    /* before the first read of the deactivated accounts (Postgres down as the gateway
     * starts) this passes: sockets need no Postgres, and the read closes them once it comes */
    if (kc_revoked_is(g->revoked, claims.sub)) {
        kc_counter_inc(g->m.refused_token);
        return refuse(wsi, 401, "token_revoked", "the account was deactivated");
    }
    gw_user_t *u = gw_user_find(g, claims.sub, strlen(claims.sub));
    if (u && u->nconns >= (size_t)g->cfg.max_conns_per_user) {
        kc_counter_inc(g->m.refused_per_user);
        return refuse(wsi, 429, "too_many_connections",
                      "this user holds the most sockets a gateway takes from one user");
    }
    return 0;
}

/* ---- the protocol ---- */

/* A connection's life as the other modules see it: registered under its user (who comes
 * online with a first connection), and on close its typing indicators stopped, its watches
 * and syncs forgotten, its user offline here with the last one. */
static void on_established(gw_t *g, gw_conn_t *c)
{
    gw_user_t *u = gw_conn_add(g, c);
    if (u->nconns == 1)
        gw_presence_online(g, u);
}

static void on_closed(gw_t *g, gw_conn_t *c)
{
    gw_typing_stop_all(g, c);
    gw_presence_unwatch_all(g, c);
    gw_sync_forget(c);
    gw_user_t *u = gw_conn_remove(g, c);
    if (u && u->nconns == 0) {
        gw_presence_offline(g, u);
        gw_user_drop(g, u);
    }
}

static int on_receive(gw_t *g, gw_conn_t *c, struct lws *wsi, const char *in, size_t len)
{
    if (lws_frame_is_binary(wsi))
        return close_now(g, wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         "binary frames are not accepted: send JSON text");
    size_t remaining = lws_remaining_packet_payload(wsi);
    size_t max = (size_t)g->cfg.max_frame_bytes;
    if (c->rx.len + len + remaining > max)
        return close_now(g, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
    int final = lws_is_final_fragment(wsi) && remaining == 0;
    if (final && c->rx.len == 0) {
        /* the common case: a whole message in one piece, read in place */
        if (!kc_utf8_valid(in, len))
            return close_now(g, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        gw_frame_in(g, c, in, len);
        return 0;
    }
    /* The frame's length is known from its header: one allocation for the rest of it. */
    kc_buf_reserve(&c->rx, len + remaining);
    kc_buf_append(&c->rx, in, len);
    if (!final)
        return 0;
    if (!kc_utf8_valid(c->rx.data, c->rx.len)) {
        kc_buf_free(&c->rx);
        return close_now(g, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
    }
    /* Handled from a copy so the buffer can be freed: idle connections keep none. */
    kc_buf_t msg = c->rx;
    c->rx = (kc_buf_t){0};
    gw_frame_in(g, c, msg.data, msg.len);
    kc_buf_free(&msg);
    return 0;
}

/* lws 4.1 keeps its timers in one sorted list per thread and inserts by walking it: its own
 * keepalive (a validity timer per socket, re-inserted at the end of the list after every
 * pong) costs O(sockets) per socket and interval, which at tens of thousands of sockets
 * took a whole core. The gateway's tick does it instead, in one pass over the sockets. */
void gw_ws_keepalive(gw_t *g, gw_conn_t *c, uint64_t now_ns)
{
    if (c->dropped)
        return;
    uint64_t silent = now_ns - c->last_rx_ns;
    if (silent >= (uint64_t)g->cfg.idle_timeout_s * 1000000000u) {
        c->dropped = 1;
        kc_log_kv(KC_LOG_DEBUG, KC_FIELDS(KC_STR("user_id", c->sub), KC_INT("conn", c->id)),
                  "dropped: no frame or pong within idle-timeout-s");
        /* lws runs a timeout set here only at its next I/O on any socket: shutting the
         * socket down makes that I/O (lws reads the end and closes it), and the timeout
         * is the fallback. */
        lws_sockfd_type fd = lws_get_socket_fd(c->wsi);
        if (fd >= 0 && shutdown(fd, SHUT_RDWR) != 0)
            kc_log_warn("shutdown of a dead socket: %s", strerror(errno));
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    } else if (silent >= (uint64_t)g->cfg.ping_interval_s * 1000000000u && !c->ping_sent &&
               !c->ping_due && !c->close_code) {
        c->ping_due = 1;
        lws_callback_on_writable(c->wsi);
    }
}

static int on_writeable(gw_t *g, gw_conn_t *c, struct lws *wsi)
{
    if (c->ping_due && !c->close_code) {
        /* With a payload: lws 4.1 reports an empty pong to nobody. */
        unsigned char ping[LWS_PRE + 5];
        memcpy(ping + LWS_PRE, "kchat", 5);
        if (lws_write(wsi, ping + LWS_PRE, 5, LWS_WRITE_PING) < 5)
            return -1;
        c->ping_due = 0;
        c->ping_sent = 1;
        if (gw_queue_peek(&c->q) && lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    for (gw_frame_t *f; (f = gw_queue_peek(&c->q));) {
        int w = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        if (w < (int)f->len)
            return -1;
        gw_queue_pop(&c->q);
        if (gw_queue_peek(&c->q) && lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    /* What was queued before the close (a system.notice) goes out first. */
    if (c->close_code) {
        if (lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        /* lws 4.1 drops a socket whose writeable callback fails without the close frame
         * that lws_close_reason prepared, and its own close opcode is private, so the
         * frame (server frames are unmasked: FIN+close, length, code, reason) is written
         * raw, then the socket closed. */
        unsigned char buf[LWS_PRE + 4 + CLOSE_REASON_MAX];
        size_t rlen = strnlen(c->close_reason, CLOSE_REASON_MAX); /* a one-byte length */
        unsigned char *f = buf + LWS_PRE;
        f[0] = 0x88;
        f[1] = (unsigned char)(2 + rlen);
        f[2] = (unsigned char)(c->close_code >> 8);
        f[3] = (unsigned char)(c->close_code & 0xff);
        memcpy(f + 4, c->close_reason, rlen);
        gw_count_close(g, c->close_code);
        (void)lws_write(wsi, f, 4 + rlen, LWS_WRITE_RAW);
        return -1;
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    gw_t *g = ctx ? lws_context_user(ctx) : NULL;
    gw_conn_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (!in || strcasecmp((const char *)in, "websocket") != 0)
            return refuse(wsi, 400, "bad_request", "only WebSocket upgrades are served");
        return confirm_upgrade(g, wsi);
    case LWS_CALLBACK_HTTP:
        /* A plain HTTP request on the socket port. */
        if (refuse(wsi, 426, "upgrade_required", "connect with a WebSocket upgrade to /ws") < 0)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* Already judged by confirm_upgrade; read the claims again into the session. */
        kc_jwt_claims_t claims;
        const char *code = NULL;
        char why[256];
        if (!c || verify(g, wsi, &claims, &code, why, sizeof(why)) != 0)
            return 1;
        memset(c, 0, sizeof(*c));
        kc_strlcpyf(c->sub, sizeof(c->sub), "%s", claims.sub);
        c->token_exp = claims.exp;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        c->wsi = wsi;
        c->established = 1;
        c->last_rx_ns = kc_mono_ns();
        on_established(g, c);
        kc_counter_inc(g->m.accepted);
        if (!g->accepting) {
            gw_close(g, c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
            return 0;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!c->established || c->close_code)
            return 0; /* closing: what still comes in is not read */
        c->last_rx_ns = kc_mono_ns();
        c->ping_sent = 0;
        return on_receive(g, c, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->established) {
            c->last_rx_ns = kc_mono_ns();
            c->ping_sent = 0;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!c || !c->established)
            return 0;
        return on_writeable(g, c, wsi);
    case LWS_CALLBACK_CLOSED:
        if (c && c->established) {
            on_closed(g, c);
            c->established = 0;
            gw_queue_clear(&c->q);
            kc_buf_free(&c->rx);
        }
        return 0;
    default: return 0;
    }
}

/* rx_buffer_size and tx_packet_size are set by gw_ws_start from the options. */
static struct lws_protocols protocols[] = {
    {"kchat", callback, sizeof(gw_conn_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static lws_retry_bo_t retry;

/* Binds and closes a socket on the listen address first: lws 4.1 with a foreign loop does not
 * fail cleanly when its listener cannot bind (it returns a context without a vhost, whose
 * teardown then runs into its unloaded event-lib plugin), so a port in use is caught here. */
static int can_listen(const char *addr, int port, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        kc_strlcpyf(err, errlen, "invalid value for listen-addr: '%s' is not an IPv4 address",
                    addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = -1;
    if (fd < 0) {
        kc_strlcpyf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        kc_strlcpyf(err, errlen, "cannot listen for WebSockets on %s:%d: %s", addr, port,
                    strerror(errno));
    else
        rc = 0;
    if (close(fd) != 0 && rc == 0) {
        kc_strlcpyf(err, errlen, "close: %s", strerror(errno));
        rc = -1;
    }
    return rc;
}

int gw_ws_start(gw_t *g, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {g->app.loop};
    kc_log_route_lws();
    /* Zero: lws keeps no validity timers (gw_ws_keepalive pings and drops instead). */
    retry.secs_since_valid_ping = 0;
    retry.secs_since_valid_hangup = 0;
    /* lws allocates rx_buffer_size (+ LWS_PRE + 4) bytes for every socket when it is
     * established and keeps them until it closes: with thousands of idle sockets that buffer
     * was most of a socket's memory (4 KiB), so it is small, and a longer message reaches the
     * callback in pieces that on_receive assembles. lws 4.1 also reads at most that much
     * from a socket per turn of the loop, so a long message costs a read and a callback per
     * piece (docs/benchmarks.md). It must hold a whole control frame (125 bytes): lws hands
     * a ping or a close to its own handlers from it (the option's minimum is 128). */
    protocols[0].rx_buffer_size = (size_t)g->cfg.rx_buffer_bytes;
    /* Without tx_packet_size lws would also cut every send() at rx_buffer_size and buffer
     * (copy) the rest of the frame: a frame goes in one send() instead, and only what the
     * kernel does not take is buffered. No frame is larger than max-queued-bytes (gw_send). */
    protocols[0].tx_packet_size = (size_t)g->cfg.max_queued_bytes;
    info.port = (int)g->cfg.listen_port;
    info.iface = g->cfg.listen_addr;
    info.protocols = protocols;
    info.user = g;
    info.foreign_loops = loops;
    info.pcontext = &g->lws;
    info.retry_and_idle_policy = &retry;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.max_http_header_data = (unsigned short)g->cfg.max_header_bytes;
    info.timeout_secs = 10;
    info.fd_limit_per_thread = (unsigned)(g->cfg.max_connections + 256);
    if (g->cfg.tls_cert[0] || g->cfg.tls_key[0]) {
        if (!g->cfg.tls_cert[0] || !g->cfg.tls_key[0]) {
            kc_strlcpyf(err, errlen, "tls-cert and tls-key go together");
            return -1;
        }
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = g->cfg.tls_cert;
        info.ssl_private_key_filepath = g->cfg.tls_key;
    }
    if (can_listen(g->cfg.listen_addr, (int)g->cfg.listen_port, err, errlen) != 0)
        return -1;
    g->accepting = 1;
    g->lws = lws_create_context(&info);
    /* With a foreign loop, lws 4.1 returns a context even when its default vhost could not
     * listen (a port in use): check that it listens. */
    struct lws_vhost *vh = g->lws ? lws_get_vhost_by_name(g->lws, "default") : NULL;
    if (!vh || lws_get_vhost_listen_port(vh) != (int)g->cfg.listen_port) {
        kc_strlcpyf(err, errlen,
                    "cannot listen for WebSockets on %s:%lld (port in use? see the log above)",
                    g->cfg.listen_addr, g->cfg.listen_port);
        return -1;
    }
    return 0;
}

static void drain_one(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    gw_t *g = arg;
    gw_conn_t *c = val;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"system.notice\",\"code\":\"going_away\","
                    "\"message\":\"the server is shutting down: reconnect and sync\"}");
    (void)gw_send_buf(g, c, &b, "system.notice");
    kc_buf_free(&b);
    gw_close(g, c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
}

void gw_ws_drain(gw_t *g)
{
    g->accepting = 0;
    kc_map_each(g->conns, drain_one, g);
}

void gw_ws_destroy(gw_t *g)
{
    if (g->lws && !g->lws_destroyed) {
        g->lws_destroyed = 1;
        lws_context_destroy(g->lws);
    }
}
