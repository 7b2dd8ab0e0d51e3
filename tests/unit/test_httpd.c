/* test_httpd.c - the libmicrohttpd server on a libuv loop, serving the admin endpoints
 * (GET /health, GET /metrics) and a custom handler, driven by a blocking client thread. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "kchat/admin.h"
#include "kchat/health.h"
#include "kchat/httpd.h"
#include "kchat/log.h"
#include "kchat/metrics.h"

#define MAX_REQS 8

/* ---- a tiny blocking HTTP/1.1 client ---- */

typedef struct {
    int status; /* -1: transport failure, see error */
    char error[128];
    char ctype[128];
    char *body;
    size_t body_len;
} http_resp_t;

static void resp_free(http_resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static int connect_local(int port, char *error, size_t error_size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, error_size, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(error, error_size, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Header value (trimmed) of `name` in the head [h, end), copied into out. */
static int find_header(const char *h, const char *end, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    const char *p = h;
    while (p && p < end) {
        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t len = (size_t)((e && e < end ? e : end) - v);
            snprintf(out, size, "%.*s", (int)len, v);
            return 1;
        }
        p = strstr(p, "\r\n");
        if (p)
            p += 2;
    }
    return 0;
}

/* Sends raw and reads one response (until its Content-Length is in, or EOF). */
static void http_do(int port, const char *raw, http_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->status = -1;
    int fd = connect_local(port, r->error, sizeof(r->error));
    if (fd < 0)
        return;
    size_t len = strlen(raw), off = 0;
    while (off < len) {
        ssize_t w = send(fd, raw + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) {
            snprintf(r->error, sizeof(r->error), "send: %s", strerror(errno));
            close(fd);
            return;
        }
        off += (size_t)w;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap + 1);
    const char *head_end = NULL;
    long long want = -1;
    while (buf) {
        if (got == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (!head_end && (head_end = strstr(buf, "\r\n\r\n"))) {
            char cl[32];
            if (find_header(buf, head_end, "Content-Length", cl, sizeof(cl)))
                want = strtoll(cl, NULL, 10);
        }
        if (head_end && want >= 0 && got >= (size_t)(head_end + 4 - buf) + (size_t)want)
            break;
    }
    close(fd);
    if (!buf) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return;
    }
    buf[got] = '\0';
    head_end = strstr(buf, "\r\n\r\n");
    int status;
    if (!head_end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(r->error, sizeof(r->error), "bad response (%zu bytes): %.60s", got, buf);
        free(buf);
        return;
    }
    r->status = status;
    find_header(buf, head_end, "Content-Type", r->ctype, sizeof(r->ctype));
    r->body_len = got - (size_t)(head_end + 4 - buf);
    if (want >= 0 && (size_t)want < r->body_len) /* a pipelined response may follow */
        r->body_len = (size_t)want;
    r->body = malloc(r->body_len + 1);
    if (r->body) {
        memcpy(r->body, head_end + 4, r->body_len);
        r->body[r->body_len] = '\0';
    }
    free(buf);
}

static void expect_status(const http_resp_t *r, int status)
{
    if (r->status != status)
        fail_msg("expected HTTP %d, got %d (%s) body: %s", status, r->status, r->error,
                 r->body ? r->body : "");
}

/* Checks an {"error":{"code":code,"message":...}} body. */
static void expect_error_body(const http_resp_t *r, const char *code)
{
    assert_string_equal(r->ctype, "application/json");
    cJSON *j = cJSON_Parse(r->body);
    assert_non_null(j);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_true(cJSON_IsObject(e));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    assert_true(cJSON_IsString(c));
    assert_string_equal(c->valuestring, code);
    assert_true(cJSON_IsString(m));
    cJSON_Delete(j);
}

/* ---- the server side: a loop, the server, and a client thread that ends the loop ---- */

typedef struct client client_t;
typedef void (*client_script_fn)(client_t *c);

struct client {
    int port;
    kc_health_t *health;
    int check;
    uv_async_t done;
    kc_httpd_t *httpd;
    client_script_fn script;
    http_resp_t r[MAX_REQS];
};

static void on_done(uv_async_t *a)
{
    client_t *c = a->data;
    kc_httpd_destroy(c->httpd);
    c->httpd = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

static void *client_main(void *arg)
{
    client_t *c = arg;
    c->script(c);
    if (uv_async_send(&c->done) != 0)
        abort();
    return NULL;
}

/* Serves handler on an ephemeral port while the client thread runs script, then tears
 * everything down and checks the loop closes cleanly. */
static void run_server(client_t *c, size_t max_body, kc_httpd_handler_fn handler, void *arg)
{
    char err[256];
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    c->httpd = kc_httpd_new(&loop, "127.0.0.1", 0, max_body, NULL, handler, arg, err, sizeof(err));
    if (!c->httpd)
        fail_msg("kc_httpd_new: %s", err);
    c->port = kc_httpd_port(c->httpd);
    assert_true(c->port > 0 && c->port < 65536);
    assert_int_equal(uv_async_init(&loop, &c->done, on_done), 0);
    c->done.data = c;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, c), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_null(c->httpd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- admin endpoints ---- */

static void admin_script(client_t *c)
{
    http_do(c->port, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[0]);
    kc_health_set(c->health, c->check, 0, "connection refused");
    http_do(c->port, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[1]);
    http_do(c->port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[2]);
    http_do(c->port, "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[3]);
    http_do(c->port,
            "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            &c->r[4]);
    /* only the head: the server must answer before reading a body it will refuse */
    http_do(c->port,
            "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n",
            &c->r[5]);
}

static void test_admin_endpoints(void **state)
{
    (void)state;
    kc_metrics_t *metrics = kc_metrics_new();
    kc_health_t *health = kc_health_new(NULL);
    int check = kc_health_add(health, "db");
    kc_health_set(health, check, 1, "up");
    kc_admin_t admin;
    kc_admin_init(&admin, health, metrics);
    client_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->health = health;
    c->check = check;
    c->script = admin_script;

    run_server(c, 1024, kc_admin_handler, &admin);

    /* healthy */
    expect_status(&c->r[0], 200);
    assert_string_equal(c->r[0].ctype, "application/json");
    cJSON *j = cJSON_Parse(c->r[0].body);
    assert_non_null(j);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    assert_true(cJSON_IsString(st));
    assert_string_equal(st->valuestring, "ok");
    const cJSON *db =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "checks"), "db");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(db, "ok")));
    cJSON_Delete(j);

    /* the check failing */
    expect_status(&c->r[1], 503);
    j = cJSON_Parse(c->r[1].body);
    assert_non_null(j);
    st = cJSON_GetObjectItemCaseSensitive(j, "status");
    assert_true(cJSON_IsString(st));
    assert_string_equal(st->valuestring, "fail");
    cJSON_Delete(j);

    /* metrics */
    expect_status(&c->r[2], 200);
    assert_non_null(strstr(c->r[2].ctype, "text/plain"));
    assert_non_null(strstr(c->r[2].ctype, "version=0.0.4"));
    assert_non_null(strstr(c->r[2].body, "# TYPE kchat_admin_requests_total counter\n"));
    assert_non_null(strstr(c->r[2].body, "kchat_admin_requests_total{path=\"/health\"} 2\n"));
    assert_non_null(strstr(c->r[2].body, "kchat_admin_requests_total{path=\"/metrics\"} 1\n"));

    /* errors */
    expect_status(&c->r[3], 404);
    expect_error_body(&c->r[3], "not_found");
    expect_status(&c->r[4], 405);
    expect_error_body(&c->r[4], "method_not_allowed");
    expect_status(&c->r[5], 413);
    expect_error_body(&c->r[5], "payload_too_large");

    for (int i = 0; i < MAX_REQS; i++)
        resp_free(&c->r[i]);
    free(c);
    kc_health_destroy(health);
    kc_metrics_destroy(metrics);
}

/* ---- a custom handler: what it is given, and what it gives back ---- */

typedef struct {
    int calls;
    char method[16];
    char path[64];
    char header[64];
    char query[64];
    size_t body_len;
    char body[256];
} seen_t;

static void echo_handler(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    seen_t *s = arg;
    s->calls++;
    snprintf(s->method, sizeof(s->method), "%s", req->method);
    snprintf(s->path, sizeof(s->path), "%s", req->path);
    const char *h = kc_http_header(req, "X-Test");
    const char *q = kc_http_query(req, "q");
    snprintf(s->header, sizeof(s->header), "%s", h ? h : "(none)");
    snprintf(s->query, sizeof(s->query), "%s", q ? q : "(none)");
    s->body_len = req->body_len;
    snprintf(s->body, sizeof(s->body), "%.*s", (int)req->body_len, req->body);
    if (strcmp(req->method, "POST") == 0) {
        resp->status = 201;
        resp->content_type = "text/plain";
        kc_buf_puts(&resp->body, "echo:");
        kc_buf_append(&resp->body, req->body, req->body_len);
    } else {
        resp->status = 200; /* content_type left NULL: application/json */
        kc_buf_puts(&resp->body, "{}");
    }
}

typedef struct {
    client_t c;
    seen_t seen[4];
    seen_t *live;
} echo_t;

static void echo_script(client_t *c)
{
    echo_t *e = (echo_t *)c;
    http_do(c->port,
            "POST /echo?q=42 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nContent-Length: 5\r\n"
            "Connection: close\r\n\r\nhello",
            &c->r[0]);
    e->seen[0] = *e->live;
    /* exactly max_body (64) bytes */
    char req[512];
    snprintf(req, sizeof(req),
             "POST /full HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\nConnection: close\r\n\r\n"
             "%064d",
             0);
    http_do(c->port, req, &c->r[1]);
    e->seen[1] = *e->live;
    /* 100 bytes in chunks, no Content-Length: refused while reading */
    snprintf(req, sizeof(req),
             "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
             "Connection: close\r\n\r\n32\r\n%050d\r\n32\r\n%050d\r\n0\r\n\r\n",
             1, 2);
    http_do(c->port, req, &c->r[2]);
    e->seen[2] = *e->live;
    http_do(c->port, "GET /get HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[3]);
    e->seen[3] = *e->live;
}

static void test_custom_handler(void **state)
{
    (void)state;
    echo_t *e = calloc(1, sizeof(*e));
    seen_t *live = calloc(1, sizeof(*live));
    assert_non_null(e);
    assert_non_null(live);
    e->live = live;
    e->c.script = echo_script;

    run_server(&e->c, 64, echo_handler, live);

    expect_status(&e->c.r[0], 201);
    assert_string_equal(e->c.r[0].ctype, "text/plain");
    assert_string_equal(e->c.r[0].body, "echo:hello");
    assert_int_equal(e->seen[0].calls, 1);
    assert_string_equal(e->seen[0].method, "POST");
    assert_string_equal(e->seen[0].path, "/echo");
    assert_string_equal(e->seen[0].header, "yes");
    assert_string_equal(e->seen[0].query, "42");
    assert_int_equal(e->seen[0].body_len, 5);
    assert_string_equal(e->seen[0].body, "hello");

    expect_status(&e->c.r[1], 201);
    assert_int_equal(e->seen[1].calls, 2);
    assert_int_equal(e->seen[1].body_len, 64);

    expect_status(&e->c.r[2], 413);
    expect_error_body(&e->c.r[2], "payload_too_large");
    assert_int_equal(e->seen[2].calls, 2); /* the handler never saw it */

    expect_status(&e->c.r[3], 200);
    assert_string_equal(e->c.r[3].ctype, "application/json");
    assert_string_equal(e->c.r[3].body, "{}");
    assert_int_equal(e->seen[3].calls, 3);
    assert_string_equal(e->seen[3].header, "(none)");
    assert_string_equal(e->seen[3].query, "(none)");
    assert_int_equal(e->seen[3].body_len, 0);

    for (int i = 0; i < MAX_REQS; i++)
        resp_free(&e->c.r[i]);
    free(live);
    free(e);
}

/* ---- asynchronous answers: kc_http_suspend / kc_http_resume ---- */

typedef struct {
    client_t c;
    uv_timer_t timer;
    kc_http_pending_t *p;
    kc_buf_t body; /* what the late answer says */
    size_t max_suspended; /* seen while a request waited */
    int timer_closed;
} async_t;

static void on_async_timer(uv_timer_t *t)
{
    async_t *a = t->data;
    size_t n = kc_httpd_suspended(a->c.httpd);
    if (n > a->max_suspended)
        a->max_suspended = n;
    kc_http_resp_t resp = {.status = 202, .content_type = "text/plain"};
    kc_buf_puts(&resp.body, "later:");
    kc_buf_append(&resp.body, a->body.data, a->body.len);
    kc_http_resume(a->p, &resp);
    assert_null(resp.body.data); /* taken */
    a->p = NULL;
}

static void async_handler(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    async_t *a = arg;
    (void)resp;
    if (strcmp(req->path, "/later") == 0) {
        /* the request stays readable until it is answered: copy the body at answer time */
        a->p = kc_http_suspend(req);
        kc_buf_reset(&a->body);
        kc_buf_append(&a->body, req->body, req->body_len);
        assert_int_equal(uv_timer_start(&a->timer, on_async_timer, 30, 0), 0);
    } else if (strcmp(req->path, "/now") == 0) {
        kc_http_pending_t *p = kc_http_suspend(req);
        kc_http_resp_t r = {.status = 200};
        kc_buf_puts(&r.body, "{\"now\":true}");
        kc_http_resume(p, &r);
    } else {
        kc_http_error(resp, 404, "not_found", "no such path");
    }
}

static void async_script(client_t *c)
{
    http_do(c->port,
            "POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            &c->r[0]);
    http_do(c->port, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[1]);
    http_do(c->port, "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &c->r[2]);
    /* keep-alive: a second request on the connection after a suspended one */
    http_do(c->port,
            "POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxy"
            "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            &c->r[3]);
}

static void test_async_answers(void **state)
{
    (void)state;
    char err[256];
    async_t *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->c.script = async_script;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_timer_init(&loop, &a->timer), 0);
    a->timer.data = a;
    a->c.httpd = kc_httpd_new(&loop, "127.0.0.1", 0, 64, NULL, async_handler, a, err, sizeof(err));
    if (!a->c.httpd)
        fail_msg("kc_httpd_new: %s", err);
    a->c.port = kc_httpd_port(a->c.httpd);
    assert_int_equal(uv_async_init(&loop, &a->c.done, on_done), 0);
    a->c.done.data = &a->c;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &a->c), 0);
    while (a->c.httpd)
        assert_true(uv_run(&loop, UV_RUN_ONCE) >= 0);
    uv_close((uv_handle_t *)&a->timer, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(uv_loop_close(&loop), 0);

    expect_status(&a->c.r[0], 202);
    assert_string_equal(a->c.r[0].ctype, "text/plain");
    assert_string_equal(a->c.r[0].body, "later:abc");
    assert_int_equal(a->max_suspended, 1);
    expect_status(&a->c.r[1], 200);
    assert_string_equal(a->c.r[1].body, "{\"now\":true}");
    expect_status(&a->c.r[2], 404);
    expect_error_body(&a->c.r[2], "not_found");
    /* the client reads the first response of the pipelined pair */
    expect_status(&a->c.r[3], 202);
    assert_string_equal(a->c.r[3].body, "later:xy");
    for (int i = 0; i < MAX_REQS; i++)
        resp_free(&a->c.r[i]);
    kc_buf_free(&a->body);
    free(a);
}

/* The server stops while a request is suspended: the connection is closed, and the owner's
 * late kc_http_resume only frees the handle (ASan checks that nothing leaks or is reused). */
typedef struct {
    kc_httpd_t *h;
    kc_http_pending_t *p;
    uv_timer_t timer;
    int seen;
} orphan_t;

static void on_orphan_timer(uv_timer_t *t)
{
    orphan_t *o = t->data;
    assert_int_equal(kc_httpd_suspended(o->h), 1);
    kc_httpd_destroy(o->h);
    o->h = NULL;
    kc_http_resp_t resp = {.status = 200};
    kc_buf_puts(&resp.body, "{}");
    kc_http_resume(o->p, &resp);
    assert_null(resp.body.data);
    uv_close((uv_handle_t *)t, NULL);
}

static void orphan_handler(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp)
{
    orphan_t *o = arg;
    (void)resp;
    o->seen++;
    o->p = kc_http_suspend(req);
    assert_int_equal(uv_timer_start(&o->timer, on_orphan_timer, 10, 0), 0);
}

typedef struct {
    int port;
    http_resp_t r;
} orphan_client_t;

static void *orphan_client(void *arg)
{
    orphan_client_t *oc = arg;
    http_do(oc->port, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &oc->r);
    return NULL;
}

static void test_destroy_while_suspended(void **state)
{
    (void)state;
    char err[256];
    orphan_t o = {0};
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_timer_init(&loop, &o.timer), 0);
    o.timer.data = &o;
    o.h = kc_httpd_new(&loop, "127.0.0.1", 0, 64, NULL, orphan_handler, &o, err, sizeof(err));
    if (!o.h)
        fail_msg("kc_httpd_new: %s", err);
    orphan_client_t oc = {.port = kc_httpd_port(o.h)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, orphan_client, &oc), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(o.seen, 1);
    /* closed without an answer, or told the server is stopping */
    assert_true(oc.r.status == -1 || oc.r.status == 503);
    resp_free(&oc.r);
}

/* ---- lifecycle ---- */

static void test_bad_address(void **state)
{
    (void)state;
    char err[256] = "";
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_null(kc_httpd_new(&loop, "not-an-ip", 0, 64, NULL, echo_handler, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not-an-ip"));
    kc_httpd_destroy(NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_stop_accepting(void **state)
{
    (void)state;
    char err[256];
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    seen_t seen = {0};
    kc_httpd_t *h = kc_httpd_new(&loop, "127.0.0.1", 0, 64, NULL, echo_handler, &seen, err, sizeof(err));
    if (!h)
        fail_msg("kc_httpd_new: %s", err);
    int port = kc_httpd_port(h);
    /* the kernel completes the handshake for a listening socket even before accept() */
    int fd = connect_local(port, err, sizeof(err));
    if (fd < 0)
        fail_msg("%s", err);
    close(fd);
    kc_httpd_stop_accepting(h);
    fd = connect_local(port, err, sizeof(err));
    if (fd >= 0)
        close(fd);
    assert_true(fd < 0);
    assert_non_null(strstr(err, "refused"));
    kc_httpd_destroy(h);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int setup(void **state)
{
    (void)state;
    kc_log_init("test_httpd", KC_LOG_ERROR);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_endpoints),
        cmocka_unit_test(test_custom_handler),
        cmocka_unit_test(test_async_answers),
        cmocka_unit_test(test_destroy_while_suspended),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_stop_accepting),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
