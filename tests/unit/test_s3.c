/* test_s3.c - the S3 client: SigV4 presigning against AWS's published example and values
 * computed independently, and requests on a libuv loop against a small HTTP server of the
 * test's own (a thread on 127.0.0.1, canned answers by key): statuses, headers and bodies,
 * the body limit, the timeout, a refused connection, and closing with requests in flight;
 * and the loop's HTTP client under it (kchat/httpc.h) on its own: a POST with its headers
 * and body, Retry-After as seconds and as a date, and what it refuses to send.
 *
 * The expected signatures other than AWS's were computed with Python's hmac and hashlib,
 * which reproduce AWS's example first:
 *
 *   import hashlib, hmac, urllib.parse
 *   def h(k, m): return hmac.new(k, m.encode(), hashlib.sha256).digest()
 *   def presign(method, host, path, region, ak, sk, amz_date, ttl, ctype=None):
 *       day = amz_date[:8]
 *       scope = f"{day}/{region}/s3/aws4_request"
 *       signed = "content-type;host" if ctype else "host"
 *       q = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
 *            + urllib.parse.quote(f"{ak}/{scope}", safe="")
 *            + f"&X-Amz-Date={amz_date}&X-Amz-Expires={ttl}&X-Amz-SignedHeaders="
 *            + urllib.parse.quote(signed, safe=""))
 *       hdrs = (f"content-type:{ctype}\n" if ctype else "") + f"host:{host}\n"
 *       creq = f"{method}\n{path}\n{q}\n{hdrs}\n{signed}\nUNSIGNED-PAYLOAD"
 *       sts = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
 *              + hashlib.sha256(creq.encode()).hexdigest())
 *       k = h(h(h(h(("AWS4" + sk).encode(), day), region), "s3"), "aws4_request")
 *       return q + "&X-Amz-Signature=" + hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
 *   AK, SK = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
 *   D = "20130524T000000Z"
 *   presign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "us-east-1", AK, SK, D, 86400)
 *   presign("GET", "s3.amazonaws.com", "/examplebucket/test.txt", "us-east-1", AK, SK, D, 86400)
 *   presign("GET", "s3.amazonaws.com", "/examplebucket/" + urllib.parse.quote(
 *       "attachments/u_1/a b/été 1.txt", safe="/~"), "us-east-1", AK, SK, D, 86400)
 *   presign("PUT", "127.0.0.1:9000", "/examplebucket/photo.png", "us-east-1", AK, SK, D, 60,
 *           "image/png")
 *   presign("GET", "minio", "/examplebucket/k", "us-east-1", AK, SK, D, 60)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "kchat/buf.h"
#include "kchat/log.h"
#include "kchat/s3.h"
#include "kchat/util.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AWS_EXAMPLE_TIME 1369353600LL /* 20130524T000000Z */
#define CRED "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F" \
             "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"

/* ---- presigning ---- */

/* AWS's example of query string authentication (virtual-hosted style): "GET /test.txt" on
 * examplebucket.s3.amazonaws.com, signed for a day. */
static void test_sign_aws_example(void **state)
{
    (void)state;
    kc_buf_t q = {0};
    kc_s3_sign_query("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "us-east-1", AK, SK,
                     NULL, AWS_EXAMPLE_TIME, 86400, &q);
    assert_string_equal(q.data, CRED "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                                     "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    kc_buf_free(&q);
}

static const kc_s3_cfg_t AWS_CFG = {.endpoint = "https://s3.amazonaws.com",
                                    .bucket = "examplebucket",
                                    .region = "us-east-1",
                                    .access_key = AK,
                                    .secret_key = SK};

/* The same object path-style, as kc_s3_presign makes it. */
static void test_presign_path_style(void **state)
{
    (void)state;
    kc_buf_t url = {0};
    kc_s3_presign(&AWS_CFG, "GET", "test.txt", NULL, AWS_EXAMPLE_TIME, 86400, &url);
    assert_string_equal(url.data,
                        "https://s3.amazonaws.com/examplebucket/test.txt?" CRED
                        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                        "733255ef022bec3f2a8701cd61d4b371f3f28c9f193a1f02279211d48d5193d7");
    kc_buf_free(&url);
}

/* More query parameters (a listing's) are signed with the X-Amz- ones, all in byte order of
 * their names (the reference above, its parameters sorted with these); the key may be empty. */
static void test_presign_params_of_a_listing(void **state)
{
    (void)state;
    kc_buf_t url = {0};
    kc_s3_presign_params(&AWS_CFG, "GET", "", "delimiter=%2F&list-type=2&prefix=pg%2Fbase%2F",
                         NULL, AWS_EXAMPLE_TIME, 86400, &url);
    assert_string_equal(url.data,
                        "https://s3.amazonaws.com/examplebucket/?" CRED
                        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                        "&delimiter=%2F&list-type=2&prefix=pg%2Fbase%2F&X-Amz-Signature="
                        "e19151c4938535900c6345a0178e5028170deefa1ca3d10ce7b4dfd22d2d0e48");
    kc_buf_reset(&url);
    /* none: the same as kc_s3_presign */
    kc_buf_t plain = {0};
    kc_s3_presign_params(&AWS_CFG, "GET", "test.txt", NULL, NULL, AWS_EXAMPLE_TIME, 86400, &url);
    kc_s3_presign(&AWS_CFG, "GET", "test.txt", NULL, AWS_EXAMPLE_TIME, 86400, &plain);
    assert_string_equal(url.data, plain.data);
    kc_buf_free(&url);
    kc_buf_free(&plain);
}

/* Spaces and UTF-8 are percent-encoded byte by byte (upper-case hex), '/' stays. */
static void test_presign_key_encoding(void **state)
{
    (void)state;
    kc_buf_t url = {0};
    kc_s3_presign(&AWS_CFG, "GET", "attachments/u_1/a b/été 1.txt", NULL, AWS_EXAMPLE_TIME, 86400,
                  &url);
    assert_string_equal(url.data,
                        "https://s3.amazonaws.com/examplebucket/attachments/u_1/a%20b/"
                        "%C3%A9t%C3%A9%201.txt?" CRED
                        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                        "4f2e469216d1dfd86a99d003f7ceca605c586d7e9726027f412d04f9516ad279");
    kc_buf_free(&url);
}

/* A PUT signs its content type; the value is signed in its canonical form (trimmed). The
 * scheme's default port is not part of the signed host. */
static void test_presign_content_type(void **state)
{
    (void)state;
    const char *want = "http://127.0.0.1:9000/examplebucket/photo.png?" CRED
                       "&X-Amz-Expires=60&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature="
                       "26fd58729c35462ade7398e8d48d081441898c269d7222937f3928544879e6c9";
    kc_s3_cfg_t c = AWS_CFG;
    c.endpoint = "http://127.0.0.1:9000";
    kc_buf_t url = {0};
    kc_s3_presign(&c, "PUT", "photo.png", "image/png", AWS_EXAMPLE_TIME, 60, &url);
    assert_string_equal(url.data, want);
    kc_buf_reset(&url);
    kc_s3_presign(&c, "PUT", "photo.png", "  image/png ", AWS_EXAMPLE_TIME, 60, &url);
    assert_string_equal(url.data, want);
    kc_buf_reset(&url);
    /* another content type, another signature */
    kc_s3_presign(&c, "PUT", "photo.png", "image/jpeg", AWS_EXAMPLE_TIME, 60, &url);
    assert_string_not_equal(url.data, want);
    kc_buf_free(&url);

    kc_buf_t a = {0}, b = {0};
    c.endpoint = "http://minio:80";
    kc_s3_presign(&c, "GET", "k", NULL, AWS_EXAMPLE_TIME, 60, &a);
    c.endpoint = "http://minio";
    kc_s3_presign(&c, "GET", "k", NULL, AWS_EXAMPLE_TIME, 60, &b);
    assert_string_equal(strchr(a.data, '?'), strchr(b.data, '?'));
    assert_string_equal(a.data, "http://minio:80/examplebucket/k?" CRED
                                "&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature="
                                "319464ac86ef7f22c5252a2944973704c7cd9672af06496f3e536b895fff2d17");
    kc_buf_free(&a);
    kc_buf_free(&b);
}

static void test_cfg_check(void **state)
{
    (void)state;
    char err[128];
    kc_s3_cfg_t c = AWS_CFG;
    assert_int_equal(kc_s3_cfg_check(&c, err, sizeof(err)), 0);
    const char *good[] = {"http://minio:9000", "https://s3.example.com", "http://[::1]:9000"};
    for (size_t i = 0; i < KC_ARRAY_LEN(good); i++) {
        c.endpoint = good[i];
        assert_int_equal(kc_s3_cfg_check(&c, err, sizeof(err)), 0);
    }
    const char *bad[] = {"",           "minio:9000",         "ftp://minio",        "http://",
                         "http://m/",  "http://m:9000/bkt",  "http://m?x=1",       "http://u@m",
                         "http://m#f", "http://m 9000",      "https://m\r\nX: y"};
    for (size_t i = 0; i < KC_ARRAY_LEN(bad); i++) {
        c.endpoint = bad[i];
        assert_int_equal(kc_s3_cfg_check(&c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "endpoint must be"));
    }
    c = AWS_CFG;
    c.secret_key = "";
    assert_int_equal(kc_s3_cfg_check(&c, err, sizeof(err)), -1);
    c = AWS_CFG;
    c.bucket = NULL;
    assert_int_equal(kc_s3_cfg_check(&c, err, sizeof(err)), -1);
}

/* ---- a canned HTTP server ---- */

#define HUGE_BYTES (1 << 20)
#define MAX_PARKED 128

typedef struct {
    int lfd, port;
    int stop[2];
    pthread_t thread;
    pthread_mutex_t mu;
    int parked[MAX_PARKED]; /* connections of "slow": never answered, closed at stop */
    int nparked;
    /* the last request */
    int requests;
    char method[16], target[2048], host[128], ctype[128], xtest[128];
    int expect; /* it had an Expect header */
    char body[4096];
    size_t body_len;
} server_t;

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away (a body it refused) */
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

static void header(const char *head, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(out, size, "%.*s", e ? (int)(e - v) : (int)strlen(v), v);
            return;
        }
    }
}

/* Reads one request and answers it by its key (the path after "/bkt/"). Returns 1 when the
 * connection was parked. */
static int serve_one(server_t *sv, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char buf[16384];
    size_t n = 0;
    char *end = NULL;
    while (!end && n < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return 0;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return 0;
    *end = '\0';
    char method[16] = "", target[2048] = "", cl[32], host[128], ctype[128], expect[64],
         xtest[128];
    if (sscanf(buf, "%15s %2047s", method, target) != 2)
        return 0;
    header(buf, "Content-Length", cl, sizeof(cl));
    header(buf, "Host", host, sizeof(host));
    header(buf, "Content-Type", ctype, sizeof(ctype));
    header(buf, "Expect", expect, sizeof(expect));
    header(buf, "X-Test", xtest, sizeof(xtest));
    size_t want = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
    char body[4096];
    size_t have = n - (size_t)(end + 4 - buf);
    if (want > sizeof(body) || have > want)
        return 0;
    memcpy(body, end + 4, have);
    while (have < want) {
        ssize_t r = recv(fd, body + have, want - have, 0);
        if (r <= 0)
            return 0;
        have += (size_t)r;
    }
    pthread_mutex_lock(&sv->mu);
    sv->requests++;
    snprintf(sv->method, sizeof(sv->method), "%s", method);
    snprintf(sv->target, sizeof(sv->target), "%s", target);
    snprintf(sv->host, sizeof(sv->host), "%s", host);
    snprintf(sv->ctype, sizeof(sv->ctype), "%s", ctype);
    snprintf(sv->xtest, sizeof(sv->xtest), "%s", xtest);
    sv->expect = expect[0] != '\0';
    memcpy(sv->body, body, have);
    sv->body_len = have;
    pthread_mutex_unlock(&sv->mu);

    const char *key = strncmp(target, "/bkt/", 5) == 0 ? target + 5 : "";
    size_t klen = strcspn(key, "?");
    int is_head = strcmp(method, "HEAD") == 0;
#define KEY_IS(k) (klen == strlen(k) && strncmp(key, k, klen) == 0)
    if (KEY_IS("slow")) {
        pthread_mutex_lock(&sv->mu);
        int parked = sv->nparked < MAX_PARKED;
        if (parked)
            sv->parked[sv->nparked++] = fd;
        pthread_mutex_unlock(&sv->mu);
        return parked;
    }
    if (KEY_IS("ok")) {
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
                     "Connection: close\r\n\r\n");
        if (!is_head)
            send_str(fd, "hello world");
    } else if (KEY_IS("missing")) {
        send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
                     "Content-Length: 37\r\nConnection: close\r\n\r\n"
                     "<Error><Code>NoSuchKey</Code></Error>");
    } else if (KEY_IS("long-type")) {
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/");
        for (int i = 0; i < 200; i++)
            send_str(fd, "x");
        send_str(fd, "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    } else if (KEY_IS("huge") || KEY_IS("huge-cl")) {
        char h[160];
        snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n%s"
                               "Connection: close\r\n\r\n",
                 KEY_IS("huge-cl") ? "Content-Length: 1048576\r\n" : "");
        send_str(fd, h);
        static const char chunk[16384];
        for (int i = 0; i < HUGE_BYTES / (int)sizeof(chunk); i++)
            send_all(fd, chunk, sizeof(chunk));
    } else if (KEY_IS("post") && strcmp(method, "POST") == 0) {
        send_str(fd, "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
                     "Connection: close\r\n\r\ntook");
    } else if (KEY_IS("busy")) {
        send_str(fd, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
    } else if (KEY_IS("busy-date")) {
        send_str(fd, "HTTP/1.1 503 Service Unavailable\r\n"
                     "Retry-After: Fri, 31 Dec 2999 23:59:59 GMT\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
    } else if (KEY_IS("busy-bad")) {
        send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: soon\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n");
    } else if (KEY_IS("del")) {
        send_str(fd, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    } else if (strcmp(method, "PUT") == 0) {
        send_str(fd, "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
    } else {
        send_str(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
#undef KEY_IS
    (void)shutdown(fd, SHUT_WR);
    return 0;
}

static void *server_main(void *arg)
{
    server_t *sv = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = sv->lfd, .events = POLLIN}, {.fd = sv->stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        int fd = accept(sv->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        if (!serve_one(sv, fd))
            close(fd);
    }
    return NULL;
}

static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static server_t *server_start(void)
{
    server_t *sv = calloc(1, sizeof(*sv));
    assert_non_null(sv);
    sv->lfd = listen_local(&sv->port);
    assert_int_equal(listen(sv->lfd, 256), 0);
    assert_int_equal(pipe(sv->stop), 0);
    assert_int_equal(pthread_mutex_init(&sv->mu, NULL), 0);
    assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
    return sv;
}

static void server_stop(server_t *sv)
{
    assert_int_equal(write(sv->stop[1], "x", 1), 1);
    assert_int_equal(pthread_join(sv->thread, NULL), 0);
    for (int i = 0; i < sv->nparked; i++)
        close(sv->parked[i]);
    close(sv->lfd);
    close(sv->stop[0]);
    close(sv->stop[1]);
    pthread_mutex_destroy(&sv->mu);
    free(sv);
}

/* ---- requests ---- */

typedef struct {
    int calls;
    long status;
    const char *error; /* static strings */
    long long content_length;
    char content_type[128];
    int has_body;
    char body[64];
    size_t body_len;
    kc_s3_t *close_from_cb; /* closes this client from the callback numbered close_on_call */
    int close_on_call;
    kc_s3_t *request_from_cb; /* tries a new request from the callback */
    int request_from_cb_rc;
} got_t;

static int in_request; /* set around kc_s3_request: no callback may run inside it */

static void on_result(void *arg, const kc_s3_result_t *r)
{
    got_t *g = arg;
    assert_int_equal(in_request, 0);
    g->calls++;
    g->status = r->status;
    g->error = r->error;
    g->content_length = r->content_length;
    snprintf(g->content_type, sizeof(g->content_type), "%s", r->content_type);
    g->has_body = r->body != NULL;
    g->body_len = r->body_len;
    if (r->body)
        snprintf(g->body, sizeof(g->body), "%.*s", (int)r->body_len, r->body);
    if (g->close_from_cb && g->calls == g->close_on_call)
        kc_s3_close(g->close_from_cb);
    if (g->request_from_cb) {
        g->request_from_cb_rc = kc_s3_request(g->request_from_cb, "GET", "ok", NULL, 0, NULL,
                                              1024, on_result, g);
    }
}

typedef struct {
    uv_loop_t loop;
    server_t *sv;
    char endpoint[64];
    kc_s3_cfg_t cfg;
    kc_s3_t *s;
} fix_t;

static int fix_setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->sv = server_start();
    snprintf(f->endpoint, sizeof(f->endpoint), "http://127.0.0.1:%d", f->sv->port);
    f->cfg = (kc_s3_cfg_t){.endpoint = f->endpoint,
                           .bucket = "bkt",
                           .region = "us-east-1",
                           .access_key = "ak",
                           .secret_key = "sk"};
    char err[128];
    f->s = kc_s3_new(&f->loop, &f->cfg, 5000, err, sizeof(err));
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static int fix_teardown(void **state)
{
    fix_t *f = *state;
    kc_s3_close(f->s);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    server_stop(f->sv);
    free(f);
    return 0;
}

static int start(kc_s3_t *s, const char *method, const char *key, const char *body,
                 const char *ctype, size_t max_body, got_t *g)
{
    in_request = 1;
    int rc = kc_s3_request(s, method, key, body, body ? strlen(body) : 0, ctype, max_body,
                           on_result, g);
    in_request = 0;
    return rc;
}

static void wait_for(uv_loop_t *loop, const int *calls, int n)
{
    while (*calls < n)
        (void)uv_run(loop, UV_RUN_ONCE);
}

static void request(fix_t *f, const char *method, const char *key, const char *body,
                    const char *ctype, size_t max_body, got_t *g)
{
    memset(g, 0, sizeof(*g));
    assert_int_equal(start(f->s, method, key, body, ctype, max_body, g), 0);
    assert_int_equal(g->calls, 0);
    assert_int_equal(kc_s3_inflight(f->s), 1);
    wait_for(&f->loop, &g->calls, 1);
    assert_int_equal(g->calls, 1);
    assert_int_equal(kc_s3_inflight(f->s), 0);
}

static void test_get_head(void **state)
{
    fix_t *f = *state;
    got_t g;
    request(f, "GET", "ok", NULL, NULL, 1024, &g);
    assert_null(g.error);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.content_length, 11);
    assert_string_equal(g.content_type, "text/plain");
    assert_true(g.has_body);
    assert_int_equal(g.body_len, 11);
    assert_string_equal(g.body, "hello world");
    assert_string_equal(f->sv->method, "GET");
    assert_true(strncmp(f->sv->target, "/bkt/ok?X-Amz-Algorithm=AWS4-HMAC-SHA256&", 41) == 0);
    assert_non_null(strstr(f->sv->target, "&X-Amz-Expires=60&X-Amz-SignedHeaders=host&"));
    assert_string_equal(f->sv->host, f->endpoint + 7); /* the Host signed is the one sent */

    request(f, "HEAD", "ok", NULL, NULL, 1024, &g);
    assert_null(g.error);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.content_length, 11);
    assert_string_equal(g.content_type, "text/plain");
    assert_false(g.has_body);
    assert_string_equal(f->sv->method, "HEAD");

    /* an error status is an answer: its body is given */
    request(f, "GET", "missing", NULL, NULL, 1024, &g);
    assert_null(g.error);
    assert_int_equal(g.status, 404);
    assert_int_equal(g.content_length, 37);
    assert_string_equal(g.content_type, "application/xml");
    assert_string_equal(g.body, "<Error><Code>NoSuchKey</Code></Error>");

    /* a content type longer than the result's field is cut, and terminated */
    request(f, "GET", "long-type", NULL, NULL, 1024, &g);
    assert_int_equal(g.status, 200);
    assert_int_equal(strlen(g.content_type), 127);
    assert_true(strncmp(g.content_type, "text/xxx", 8) == 0);
    assert_true(g.has_body);
    assert_int_equal(g.body_len, 0);
}

static void test_put_delete(void **state)
{
    fix_t *f = *state;
    got_t g;
    request(f, "PUT", "thumbs/a b.png", "PNGDATA", "image/png", 0, &g);
    assert_null(g.error);
    assert_int_equal(g.status, 200);
    assert_false(g.has_body);
    assert_string_equal(f->sv->method, "PUT");
    assert_true(strncmp(f->sv->target, "/bkt/thumbs/a%20b.png?", 22) == 0);
    assert_non_null(strstr(f->sv->target, "&X-Amz-SignedHeaders=content-type%3Bhost&"));
    assert_string_equal(f->sv->ctype, "image/png");
    assert_false(f->sv->expect);
    assert_int_equal(f->sv->body_len, 7);
    assert_memory_equal(f->sv->body, "PNGDATA", 7);

    /* no content type: none sent, none signed; an empty body */
    request(f, "PUT", "empty", NULL, NULL, 0, &g);
    assert_int_equal(g.status, 200);
    assert_string_equal(f->sv->ctype, "");
    assert_non_null(strstr(f->sv->target, "&X-Amz-SignedHeaders=host&"));
    assert_int_equal(f->sv->body_len, 0);

    request(f, "DELETE", "del", NULL, NULL, 0, &g);
    assert_null(g.error);
    assert_int_equal(g.status, 204);
    assert_int_equal(g.content_length, -1);
    assert_string_equal(g.content_type, "");
    assert_string_equal(f->sv->method, "DELETE");
}

static void test_refused_to_start(void **state)
{
    fix_t *f = *state;
    got_t g = {0};
    assert_int_equal(start(f->s, "POST", "ok", NULL, NULL, 0, &g), -1);
    assert_int_equal(start(f->s, "GET", "", NULL, NULL, 0, &g), -1);
    assert_int_equal(start(f->s, "PUT", "k", "x", "text/plain\r\nX-Evil: 1", 0, &g), -1);
    assert_int_equal(kc_s3_inflight(f->s), 0);
    (void)uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(g.calls, 0);
}

static void test_max_body(void **state)
{
    fix_t *f = *state;
    got_t g;
    /* exactly max_body fits; one byte less does not */
    request(f, "GET", "ok", NULL, NULL, 11, &g);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, "hello world");
    request(f, "GET", "ok", NULL, NULL, 10, &g);
    assert_int_equal(g.status, 0);
    assert_string_equal(g.error, "too large");
    assert_false(g.has_body);
    /* streamed without a length, cut on the way */
    request(f, "GET", "huge", NULL, NULL, 65536, &g);
    assert_int_equal(g.status, 0);
    assert_string_equal(g.error, "too large");
    /* announced by its Content-Length */
    request(f, "GET", "huge-cl", NULL, NULL, 65536, &g);
    assert_int_equal(g.status, 0);
    assert_string_equal(g.error, "too large");
    /* the same body with room for it */
    request(f, "GET", "huge", NULL, NULL, HUGE_BYTES, &g);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.body_len, HUGE_BYTES);
    /* the limit is GET's: a HEAD of the huge one is fine */
    request(f, "HEAD", "huge-cl", NULL, NULL, 0, &g);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.content_length, HUGE_BYTES);
}

static void test_timeout(void **state)
{
    fix_t *f = *state;
    char err[128];
    kc_s3_t *s = kc_s3_new(&f->loop, &f->cfg, 300, err, sizeof(err));
    assert_non_null(s);
    got_t g = {0};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(start(s, "GET", "slow", NULL, NULL, 1024, &g), 0);
    wait_for(&f->loop, &g.calls, 1);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(g.status, 0);
    assert_string_equal(g.error, "timeout");
    assert_true(ms >= 250 && ms < 3000);
    kc_s3_close(s);
}

static void test_connection_refused(void **state)
{
    fix_t *f = *state;
    int port;
    int fd = listen_local(&port); /* bound, never listening: connecting is refused */
    char ep[64], err[128];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
    kc_s3_cfg_t c = f->cfg;
    c.endpoint = ep;
    kc_s3_t *s = kc_s3_new(&f->loop, &c, 2000, err, sizeof(err));
    assert_non_null(s);
    got_t g = {0};
    assert_int_equal(start(s, "HEAD", "ok", NULL, NULL, 0, &g), 0);
    wait_for(&f->loop, &g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_string_equal(g.error, "connection refused");
    assert_int_equal(g.content_length, -1);
    kc_s3_close(s);
    close(fd);
}

typedef struct {
    kc_s3_t *s;
    got_t *g;
    int n;
    int calls_after_close;
} closer_t;

static void on_close_timer(uv_timer_t *t)
{
    closer_t *c = t->data;
    kc_s3_close(c->s);
    for (int i = 0; i < c->n; i++)
        c->calls_after_close += c->g[i].calls;
    uv_close((uv_handle_t *)t, NULL);
}

/* Closing with KC_S3_MAX_INFLIGHT requests waiting on a server that never answers: every
 * callback runs once, with "cancelled", before kc_s3_close returns; nothing is left on the
 * loop (the teardown's uv_loop_close) and nothing leaks (ASan). */
static void test_close_in_flight(void **state)
{
    fix_t *f = *state;
    char err[128];
    kc_s3_t *s = kc_s3_new(&f->loop, &f->cfg, 10000, err, sizeof(err));
    assert_non_null(s);
    got_t g[KC_S3_MAX_INFLIGHT + 1];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < KC_S3_MAX_INFLIGHT; i++) {
        g[i].request_from_cb = s; /* refused: the client is closing */
        g[i].request_from_cb_rc = 99;
        assert_int_equal(start(s, i % 2 ? "GET" : "PUT", "slow", "body", NULL, 1024, &g[i]), 0);
    }
    assert_int_equal(start(s, "GET", "slow", NULL, NULL, 1024, &g[KC_S3_MAX_INFLIGHT]), -1);
    assert_int_equal(kc_s3_inflight(s), KC_S3_MAX_INFLIGHT);

    /* let them reach the server (or some of them), then close from the loop */
    closer_t c = {.s = s, .g = g, .n = KC_S3_MAX_INFLIGHT};
    uv_timer_t t;
    assert_int_equal(uv_timer_init(&f->loop, &t), 0);
    t.data = &c;
    assert_int_equal(uv_timer_start(&t, on_close_timer, 300, 0), 0);
    while (c.calls_after_close == 0)
        (void)uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(c.calls_after_close, KC_S3_MAX_INFLIGHT);
    for (int i = 0; i < KC_S3_MAX_INFLIGHT; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].status, 0);
        assert_string_equal(g[i].error, "cancelled");
        assert_int_equal(g[i].request_from_cb_rc, -1);
    }
    assert_int_equal(g[KC_S3_MAX_INFLIGHT].calls, 0);
    (void)uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* A callback may close its own client while others are in flight; a callback may also start
 * the next request. */
static void test_close_from_callback(void **state)
{
    fix_t *f = *state;
    char err[128];
    kc_s3_t *s = kc_s3_new(&f->loop, &f->cfg, 10000, err, sizeof(err));
    assert_non_null(s);
    got_t slow[3], first;
    memset(slow, 0, sizeof(slow));
    memset(&first, 0, sizeof(first));
    for (int i = 0; i < 3; i++)
        assert_int_equal(start(s, "GET", "slow", NULL, NULL, 1024, &slow[i]), 0);
    /* "ok" starts another "ok" from its callback, answering into the same got_t, whose
     * callback (the second call) closes the client */
    first.request_from_cb = s;
    first.close_from_cb = s;
    first.close_on_call = 2;
    assert_int_equal(start(s, "GET", "ok", NULL, NULL, 1024, &first), 0);
    wait_for(&f->loop, &first.calls, 1);
    assert_int_equal(first.status, 200);
    assert_int_equal(first.request_from_cb_rc, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(slow[i].calls, 0);
    wait_for(&f->loop, &first.calls, 2);
    assert_int_equal(first.status, 200);
    assert_int_equal(first.request_from_cb_rc, -1); /* the third, after the close */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(slow[i].calls, 1);
        assert_string_equal(slow[i].error, "cancelled");
    }
}


/* ---- the HTTP client itself (kchat/httpc.h), which the S3 client is made of ---- */

typedef struct {
    int calls;
    long status;
    long long retry_after_s;
    int has_body;
    char body[64];
} hres_t;

static void on_http(void *arg, const kc_httpc_result_t *r)
{
    hres_t *h = arg;
    assert_int_equal(in_request, 0);
    h->calls++;
    h->status = r->status;
    h->retry_after_s = r->retry_after_s;
    h->has_body = r->body != NULL;
    if (r->body)
        snprintf(h->body, sizeof(h->body), "%.*s", (int)r->body_len, r->body);
}

static void http_call(fix_t *f, kc_httpc_t *h, kc_httpc_req_t *r, hres_t *out)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/bkt/%s", f->sv->port, r->url);
    r->url = url;
    in_request = 1;
    assert_int_equal(kc_httpc_request(h, r, on_http, out), 0);
    in_request = 0;
    wait_for(&f->loop, &out->calls, 1);
}

static void test_httpc_post_with_headers(void **state)
{
    fix_t *f = *state;
    char err[128];
    kc_httpc_t *h = kc_httpc_new(&f->loop, 5000, 4, err, sizeof(err));
    assert_non_null(h);
    const char *headers[] = {"Content-Type: application/json", "X-Test: v1,abc="};
    kc_httpc_req_t r = {.method = "POST", .url = "post", .headers = headers, .n_headers = 2,
                        .body = "{\"a\":1}", .body_len = 7};
    hres_t got = {0};
    http_call(f, h, &r, &got);
    assert_int_equal(got.status, 201);
    assert_false(got.has_body); /* not asked to keep it */
    assert_int_equal(got.retry_after_s, -1);
    pthread_mutex_lock(&f->sv->mu);
    assert_string_equal(f->sv->method, "POST");
    assert_string_equal(f->sv->ctype, "application/json");
    assert_string_equal(f->sv->xtest, "v1,abc=");
    assert_int_equal(f->sv->expect, 0);
    assert_int_equal(f->sv->body_len, 7);
    assert_memory_equal(f->sv->body, "{\"a\":1}", 7);
    pthread_mutex_unlock(&f->sv->mu);
    /* the same, keeping the answer's body */
    kc_httpc_req_t k = {.method = "POST", .url = "post", .body = "x", .body_len = 1,
                        .keep_body = 1, .max_body = 64};
    hres_t kept = {0};
    http_call(f, h, &k, &kept);
    assert_int_equal(kept.status, 201);
    assert_true(kept.has_body);
    assert_string_equal(kept.body, "took");
    kc_httpc_close(h);
}

static void test_httpc_retry_after(void **state)
{
    fix_t *f = *state;
    char err[128];
    kc_httpc_t *h = kc_httpc_new(&f->loop, 5000, 4, err, sizeof(err));
    assert_non_null(h);
    kc_httpc_req_t r = {.method = "POST", .url = "busy"};
    hres_t got = {0};
    http_call(f, h, &r, &got);
    assert_int_equal(got.status, 429);
    assert_int_equal(got.retry_after_s, 7);
    kc_httpc_req_t d = {.method = "POST", .url = "busy-date"};
    hres_t date = {0};
    http_call(f, h, &d, &date);
    assert_int_equal(date.status, 503);
    assert_true(date.retry_after_s > 365LL * 24 * 3600); /* a date far ahead, in seconds */
    kc_httpc_req_t b = {.method = "POST", .url = "busy-bad"};
    hres_t bad = {0};
    http_call(f, h, &b, &bad);
    assert_int_equal(bad.status, 503);
    assert_int_equal(bad.retry_after_s, -1);
    kc_httpc_close(h);
}

static void test_httpc_refuses_what_it_cannot_send(void **state)
{
    fix_t *f = *state;
    char err[128];
    assert_null(kc_httpc_new(&f->loop, 0, 4, err, sizeof(err)));
    assert_null(kc_httpc_new(&f->loop, 1000, 0, err, sizeof(err)));
    kc_httpc_t *h = kc_httpc_new(&f->loop, 5000, 1, err, sizeof(err));
    assert_non_null(h);
    hres_t got = {0};
    const char *split[] = {"X-Test: a\r\nX-Injected: b"};
    kc_httpc_req_t bad_header = {.method = "POST", .url = "http://127.0.0.1:1/", .headers = split,
                                 .n_headers = 1};
    assert_int_equal(kc_httpc_request(h, &bad_header, on_http, &got), -1);
    kc_httpc_req_t bad_method = {.method = "PATCH", .url = "http://127.0.0.1:1/"};
    assert_int_equal(kc_httpc_request(h, &bad_method, on_http, &got), -1);
    kc_httpc_req_t no_url = {.method = "GET"};
    assert_int_equal(kc_httpc_request(h, &no_url, on_http, &got), -1);
    /* one in flight is the bound: a second is refused, the first still answered */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/bkt/ok", f->sv->port);
    kc_httpc_req_t ok = {.method = "GET", .url = url};
    assert_int_equal(kc_httpc_request(h, &ok, on_http, &got), 0);
    hres_t other = {0};
    assert_int_equal(kc_httpc_request(h, &ok, on_http, &other), -1);
    assert_int_equal(kc_httpc_inflight(h), 1);
    wait_for(&f->loop, &got.calls, 1);
    assert_int_equal(got.status, 200);
    assert_int_equal(other.calls, 0);
    kc_httpc_close(h);
}

int main(void)
{
    kc_log_init("test_s3", KC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_aws_example),
        cmocka_unit_test(test_presign_path_style),
        cmocka_unit_test(test_presign_key_encoding),
        cmocka_unit_test(test_presign_params_of_a_listing),
        cmocka_unit_test(test_presign_content_type),
        cmocka_unit_test(test_cfg_check),
        cmocka_unit_test_setup_teardown(test_get_head, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_put_delete, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_refused_to_start, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_max_body, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_timeout, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_httpc_post_with_headers, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_httpc_retry_after, fix_setup, fix_teardown),
        cmocka_unit_test_setup_teardown(test_httpc_refuses_what_it_cannot_send, fix_setup,
                                        fix_teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, fix_setup, fix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
