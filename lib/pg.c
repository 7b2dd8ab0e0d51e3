/* pg.c - libpq's non-blocking API on the libuv loop: connect, queue, reconnect. */
#include "kchat/pg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/reconnect.h"
#include "kchat/util.h"

#define CONNECT_TIMEOUT_MS 5000
#define PING_INTERVAL_MS 2000

typedef struct query {
    char *sql;
    int nparams;
    char **params;
    kc_pg_cb cb;
    void *arg;
    kc_slist_node_t link; /* in kc_pg_t.queue */
} query_t;

struct kc_pg {
    uv_loop_t *loop;
    char *conninfo;
    PGconn *conn;
    kc_reconn_t rc;
    uv_poll_t *poll; /* re-created when libpq changes its socket */
    int poll_fd;
    uv_timer_t retry_timer; /* reconnect backoff, connect timeout */
    uv_timer_t ping_timer;
    int open_handles;
    kc_slist_t queue; /* waiting to be sent, in order */
    query_t *inflight;
    PGresult *result; /* first result of the in-flight query */
    int flushing;
    struct {
        char *name;
        kc_pg_notify_cb cb;
        void *arg;
    } channels[KC_PG_MAX_CHANNELS];
    int nchannels;
    int listens_ok; /* LISTENs confirmed on the current connection */
};

static void on_poll(uv_poll_t *p, int status, int events);
static void connect_start(kc_pg_t *pg);
static void pump(kc_pg_t *pg);
static void on_retry(uv_timer_t *t);

static void free_query(query_t *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static void on_handle_closed(uv_handle_t *h)
{
    kc_pg_t *pg = h->data;
    if (h != (uv_handle_t *)&pg->retry_timer && h != (uv_handle_t *)&pg->ping_timer)
        free(h);
    if (--pg->open_handles == 0) {
        for (int i = 0; i < pg->nchannels; i++)
            free(pg->channels[i].name);
        free(pg->conninfo);
        free(pg);
    }
}

static void unwatch(kc_pg_t *pg)
{
    if (pg->poll) {
        uv_close((uv_handle_t *)pg->poll, on_handle_closed);
        pg->poll = NULL;
        pg->poll_fd = -1;
    }
}

static int watch(kc_pg_t *pg, int events)
{
    int fd = PQsocket(pg->conn);
    if (fd < 0)
        return -EBADF;
    if (pg->poll && pg->poll_fd != fd)
        unwatch(pg);
    if (!pg->poll) {
        pg->poll = kc_xcalloc(1, sizeof(*pg->poll));
        if (uv_poll_init(pg->loop, pg->poll, fd) != 0) {
            free(pg->poll);
            pg->poll = NULL;
            return -EIO;
        }
        pg->poll->data = pg;
        pg->poll_fd = fd;
        pg->open_handles++;
    }
    return uv_poll_start(pg->poll, events, on_poll) == 0 ? 0 : -EIO;
}

static void dispatch_notifies(kc_pg_t *pg)
{
    PGnotify *n;
    while (pg->conn && (n = PQnotifies(pg->conn))) {
        /* each channel's own callback (LISTEN "x" is case-sensitive, as relname is) */
        for (int i = 0; i < pg->nchannels; i++)
            if (strcmp(pg->channels[i].name, n->relname) == 0) {
                pg->channels[i].cb(pg->channels[i].arg, n->relname, n->extra ? n->extra : "");
                break;
            }
        PQfreemem(n);
    }
}

static void on_listen_done(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    kc_pg_t *pg = arg;
    if (err) {
        if (pg->rc.state != KC_RECONN_CLOSED)
            kc_log_warn("postgres LISTEN failed: %s", err);
        return;
    }
    pg->listens_ok++;
}

static query_t *listen_query(kc_pg_t *pg, const char *channel)
{
    query_t *q = kc_xcalloc(1, sizeof(*q));
    size_t n = strlen(channel) + 16;
    q->sql = kc_xmalloc(n);
    (void)kc_strlcpyf(q->sql, n, "LISTEN \"%s\"", channel);
    q->params = kc_xcalloc(1, sizeof(char *));
    q->cb = on_listen_done;
    q->arg = pg;
    return q;
}

/* Puts the LISTENs of every channel at the head of the queue (after a connect). */
static void queue_listens(kc_pg_t *pg)
{
    pg->listens_ok = 0;
    for (int i = pg->nchannels - 1; i >= 0; i--)
        kc_slist_push_front(&pg->queue, &listen_query(pg, pg->channels[i].name)->link);
}

static void finish_inflight(kc_pg_t *pg, const PGresult *res, const char *err)
{
    query_t *q = pg->inflight;
    pg->inflight = NULL;
    if (q) {
        q->cb(q->arg, res, err);
        free_query(q);
    }
}

/* Fails every query, drops the connection, and (unless closed) schedules a reconnect. */
static void conn_fail(kc_pg_t *pg, const char *why)
{
    char msg[256];
    kc_strlcpyf(msg, sizeof(msg), "%s", why);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    int delay = kc_reconn_lost(&pg->rc, kc_mono_ns(), msg); /* -1 when closed */
    unwatch(pg);
    if (pg->result) {
        PQclear(pg->result);
        pg->result = NULL;
    }
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->flushing = 0;
    finish_inflight(pg, NULL, msg);
    query_t *q;
    while ((q = KC_SLIST_ENTRY(kc_slist_pop_front(&pg->queue), query_t, link))) {
        q->cb(q->arg, NULL, msg);
        free_query(q);
    }
    /* Unless a callback closed it meanwhile. */
    if (delay >= 0 && pg->rc.state == KC_RECONN_DISCONNECTED &&
        uv_timer_start(&pg->retry_timer, on_retry, (uint64_t)delay, 0) != 0)
        kc_log_error("postgres: cannot schedule reconnect");
}

static void on_connect_timeout(uv_timer_t *t)
{
    kc_pg_t *pg = t->data;
    if (pg->rc.state == KC_RECONN_CONNECTING)
        conn_fail(pg, "connect timed out");
}

static void connect_poll(kc_pg_t *pg)
{
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        if (watch(pg, UV_READABLE) != 0)
            conn_fail(pg, "cannot watch the postgres socket");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(pg, UV_WRITABLE) != 0)
            conn_fail(pg, "cannot watch the postgres socket");
        return;
    case PGRES_POLLING_OK:
        if (uv_timer_stop(&pg->retry_timer) != 0 || PQsetnonblocking(pg->conn, 1) != 0) {
            conn_fail(pg, "cannot make the postgres connection non-blocking");
            return;
        }
        kc_reconn_ready(&pg->rc);
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("server_version", PQserverVersion(pg->conn))),
                  "postgres connected");
        if (watch(pg, UV_READABLE) != 0) {
            conn_fail(pg, "cannot watch the postgres socket");
            return;
        }
        queue_listens(pg);
        pump(pg);
        return;
    default:
        conn_fail(pg, PQerrorMessage(pg->conn));
        return;
    }
}

/* Server notices ("word is too long to be indexed", ...) go into the JSON log, never raw
 * onto stderr, which libpq's default processor would do. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n')
        n--;
    kc_log_kv(KC_LOG_DEBUG, NULL, 0, "postgres: %.*s", (int)n, message);
}

void kc_pg_log_notices(PGconn *conn)
{
    (void)PQsetNoticeProcessor(conn, on_notice, NULL);
}

static void connect_start(kc_pg_t *pg)
{
    if (pg->rc.state != KC_RECONN_DISCONNECTED)
        return;
    pg->conn = PQconnectStart(pg->conninfo);
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        conn_fail(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    kc_pg_log_notices(pg->conn);
    kc_reconn_connecting(&pg->rc, kc_mono_ns());
    if (uv_timer_start(&pg->retry_timer, on_connect_timeout,
                       (uint64_t)pg->rc.opts.connect_timeout_ms, 0) != 0) {
        conn_fail(pg, "cannot start the connect timer");
        return;
    }
    connect_poll(pg);
}

static void on_retry(uv_timer_t *t)
{
    connect_start(t->data);
}

/* Reads results of the in-flight query; completes it when libpq returns NULL. */
static void read_results(kc_pg_t *pg)
{
    if (!PQconsumeInput(pg->conn)) {
        conn_fail(pg, PQerrorMessage(pg->conn));
        return;
    }
    while (pg->inflight && !PQisBusy(pg->conn)) {
        PGresult *res = PQgetResult(pg->conn);
        if (!res) {
            PGresult *r = pg->result;
            pg->result = NULL;
            ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
            int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
            const char *err = ok ? NULL : (r ? PQresultErrorMessage(r) : "no result");
            finish_inflight(pg, r, err && !*err ? "query failed" : err);
            PQclear(r);
            pump(pg);
            dispatch_notifies(pg);
            return;
        }
        if (!pg->result)
            pg->result = res;
        else
            PQclear(res);
    }
    dispatch_notifies(pg);
}

static void flush(kc_pg_t *pg)
{
    int r = PQflush(pg->conn);
    if (r < 0) {
        conn_fail(pg, PQerrorMessage(pg->conn));
        return;
    }
    pg->flushing = r == 1;
    if (watch(pg, UV_READABLE | (pg->flushing ? UV_WRITABLE : 0)) != 0)
        conn_fail(pg, "cannot watch the postgres socket");
}

static void pump(kc_pg_t *pg)
{
    if (!kc_reconn_is_ready(&pg->rc) || pg->inflight || kc_slist_empty(&pg->queue))
        return;
    query_t *q = KC_SLIST_ENTRY(kc_slist_pop_front(&pg->queue), query_t, link);
    pg->inflight = q;
    if (!PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, (const char *const *)q->params,
                           NULL, NULL, 0)) {
        conn_fail(pg, PQerrorMessage(pg->conn));
        return;
    }
    flush(pg);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    kc_pg_t *pg = p->data;
    if (pg->rc.state == KC_RECONN_CONNECTING) {
        connect_poll(pg);
        return;
    }
    if (!kc_reconn_is_ready(&pg->rc))
        return;
    if (status < 0) {
        conn_fail(pg, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && pg->flushing) {
        flush(pg);
        if (!kc_reconn_is_ready(&pg->rc))
            return;
    }
    if (events & UV_READABLE) {
        if (pg->inflight) {
            read_results(pg);
        } else if (!PQconsumeInput(pg->conn)) {
            conn_fail(pg, PQerrorMessage(pg->conn));
        } else {
            dispatch_notifies(pg);
        }
    }
}

static void on_ping(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    kc_pg_t *pg = arg;
    if (!err)
        kc_reconn_alive(&pg->rc);
}

static void on_ping_timer(uv_timer_t *t)
{
    kc_pg_t *pg = t->data;
    if (kc_reconn_is_ready(&pg->rc) && !pg->inflight && kc_slist_empty(&pg->queue))
        (void)kc_pg_query(pg, "SELECT 1", 0, NULL, on_ping, pg);
}

kc_pg_t *kc_pg_new(uv_loop_t *loop, const char *conninfo, kc_health_t *health,
                   const char *check_name)
{
    kc_pg_t *pg = kc_xcalloc(1, sizeof(*pg));
    pg->loop = loop;
    pg->conninfo = kc_xstrdup(conninfo);
    pg->poll_fd = -1;
    kc_reconn_opts_t o = {.lost_msg = "postgres connection failed",
                          .connect_timeout_ms = CONNECT_TIMEOUT_MS};
    kc_reconn_init(&pg->rc, &o, health, check_name ? check_name : "postgres");
    if (uv_timer_init(loop, &pg->retry_timer) != 0 || uv_timer_init(loop, &pg->ping_timer) != 0)
        abort();
    pg->retry_timer.data = pg->ping_timer.data = pg;
    pg->open_handles = 2;
    if (uv_timer_start(&pg->ping_timer, on_ping_timer, PING_INTERVAL_MS, PING_INTERVAL_MS) != 0)
        abort();
    connect_start(pg);
    return pg;
}

int kc_pg_connected(const kc_pg_t *pg)
{
    return kc_reconn_is_ready(&pg->rc);
}

int kc_pg_query(kc_pg_t *pg, const char *sql, int nparams, const char *const *params, kc_pg_cb cb,
                void *arg)
{
    if (pg->rc.state == KC_RECONN_CLOSED)
        return -ESHUTDOWN;
    if (pg->queue.len >= KC_PG_MAX_QUEUE)
        return -EAGAIN;
    query_t *q = kc_xcalloc(1, sizeof(*q));
    q->sql = kc_xstrdup(sql);
    q->nparams = nparams;
    q->params = kc_xcalloc((size_t)(nparams > 0 ? nparams : 1), sizeof(char *));
    for (int i = 0; i < nparams; i++)
        q->params[i] = params[i] ? kc_xstrdup(params[i]) : NULL;
    q->cb = cb;
    q->arg = arg;
    kc_slist_push_back(&pg->queue, &q->link);
    pump(pg);
    return 0;
}

static int channel_valid(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > 63 || (c[0] >= '0' && c[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '_'))
            return 0;
    return 1;
}

int kc_pg_listen(kc_pg_t *pg, const char *channel, kc_pg_notify_cb cb, void *arg)
{
    if (!channel_valid(channel))
        return -EINVAL;
    if (pg->nchannels >= KC_PG_MAX_CHANNELS)
        return -ENOSPC;
    if (pg->rc.state == KC_RECONN_CLOSED)
        return -ESHUTDOWN;
    for (int i = 0; i < pg->nchannels; i++)
        if (strcmp(pg->channels[i].name, channel) == 0)
            return -EEXIST;
    pg->channels[pg->nchannels].name = kc_xstrdup(channel);
    pg->channels[pg->nchannels].cb = cb;
    pg->channels[pg->nchannels].arg = arg;
    pg->nchannels++;
    if (kc_reconn_is_ready(&pg->rc)) {
        kc_slist_push_back(&pg->queue, &listen_query(pg, channel)->link);
        pump(pg);
    }
    return 0;
}

int kc_pg_listening(const kc_pg_t *pg)
{
    return kc_reconn_is_ready(&pg->rc) && pg->nchannels > 0 && pg->listens_ok >= pg->nchannels;
}

void kc_pg_close(kc_pg_t *pg)
{
    if (!pg || pg->rc.state == KC_RECONN_CLOSED)
        return;
    kc_reconn_close(&pg->rc);
    conn_fail(pg, "connection closed");
    uv_close((uv_handle_t *)&pg->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pg->ping_timer, on_handle_closed);
}

void kc_pg_text_array(kc_buf_t *out, const char *const *ids, size_t n)
{
    kc_buf_putc(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            kc_buf_putc(out, ',');
        kc_buf_putc(out, '"');
        kc_buf_puts(out, ids[i]);
        kc_buf_putc(out, '"');
    }
    kc_buf_putc(out, '}');
}

PGconn *kc_pg_connect_blocking(const char *dsn, const char *app, char *err, size_t errlen)
{
    /* expand_dbname reads a URI or key=value pairs; the timeout given after it applies unless
     * the dsn sets one */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {dsn, "5", app, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        (void)kc_strlcpyf(err, errlen, "postgres: %s", c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return NULL;
    }
    kc_pg_log_notices(c);
    return c;
}
