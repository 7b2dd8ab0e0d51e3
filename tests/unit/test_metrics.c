/* test_metrics.c - the Prometheus registry: exact exposition text (format 0.0.4) of each
 * kind of series, label escaping, histogram buckets, series identity, process_* series,
 * and (when promtool is installed) promtool's verdict on a full page. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kchat/metrics.h"

#define PROMTOOL "/usr/bin/promtool"

/* Renders m and compares the whole page. */
static void expect_render(kc_metrics_t *m, const char *want)
{
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    kc_buf_free(&b);
}

/* The value of the sample line that starts with `prefix ` (name plus labels). */
static double sample_value(const char *page, const char *prefix)
{
    size_t pl = strlen(prefix);
    const char *p = page;
    while (p && *p) {
        if (strncmp(p, prefix, pl) == 0 && p[pl] == ' ')
            return strtod(p + pl + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    fail_msg("no sample '%s' in:\n%s", prefix, page);
    return NAN;
}

static size_t count_substr(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

static void test_empty_registry(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_int_equal(b.len, 0);
    kc_buf_free(&b);
    kc_metrics_destroy(m);
    kc_metrics_destroy(NULL);
}

static void test_counter_text(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_counter_t *c = kc_metrics_counter(m, "kchat_test_requests_total", "Requests served.", NULL);
    expect_render(m, "# HELP kchat_test_requests_total Requests served.\n"
                     "# TYPE kchat_test_requests_total counter\n"
                     "kchat_test_requests_total 0\n");
    kc_counter_inc(c);
    kc_counter_inc(c);
    kc_counter_add(c, 3);
    assert_true(kc_series_value(c) == 5);
    expect_render(m, "# HELP kchat_test_requests_total Requests served.\n"
                     "# TYPE kchat_test_requests_total counter\n"
                     "kchat_test_requests_total 5\n");
    kc_counter_add(c, 0.25);
    expect_render(m, "# HELP kchat_test_requests_total Requests served.\n"
                     "# TYPE kchat_test_requests_total counter\n"
                     "kchat_test_requests_total 5.25\n");
    kc_metrics_destroy(m);
}

static void test_gauge_text(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_gauge_t *g = kc_metrics_gauge(m, "kchat_test_queue_depth", "Items waiting.", NULL);
    kc_gauge_set(g, 7);
    kc_gauge_add(g, -2.5);
    assert_true(kc_series_value(g) == 4.5);
    expect_render(m, "# HELP kchat_test_queue_depth Items waiting.\n"
                     "# TYPE kchat_test_queue_depth gauge\n"
                     "kchat_test_queue_depth 4.5\n");
    kc_gauge_set(g, -3);
    expect_render(m, "# HELP kchat_test_queue_depth Items waiting.\n"
                     "# TYPE kchat_test_queue_depth gauge\n"
                     "kchat_test_queue_depth -3\n");
    /* a value that is not a short decimal still round-trips */
    kc_gauge_set(g, 0.1 + 0.2);
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_true(sample_value(b.data, "kchat_test_queue_depth") == 0.1 + 0.2);
    kc_buf_free(&b);
    kc_metrics_destroy(m);
}

static void test_labelled_family(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const char *a[] = {"reason", "not_member", NULL};
    const char *b[] = {"reason", "rate_limited", NULL};
    kc_counter_t *ca = kc_metrics_counter(m, "kchat_test_rejects_total", "Rejected commands.", a);
    kc_counter_t *cb = kc_metrics_counter(m, "kchat_test_rejects_total", "Rejected commands.", b);
    assert_ptr_not_equal(ca, cb);
    kc_counter_add(ca, 2);
    kc_counter_inc(cb);
    expect_render(m, "# HELP kchat_test_rejects_total Rejected commands.\n"
                     "# TYPE kchat_test_rejects_total counter\n"
                     "kchat_test_rejects_total{reason=\"not_member\"} 2\n"
                     "kchat_test_rejects_total{reason=\"rate_limited\"} 1\n");
    kc_metrics_destroy(m);
}

static void test_several_labels_and_order(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const char *l[] = {"method", "GET", "code", "200", NULL};
    kc_counter_inc(kc_metrics_counter(m, "kchat_test_http_total", "HTTP requests.", l));
    kc_gauge_set(kc_metrics_gauge(m, "kchat_test_up", "Up.", NULL), 1);
    /* families render in registration order */
    expect_render(m, "# HELP kchat_test_http_total HTTP requests.\n"
                     "# TYPE kchat_test_http_total counter\n"
                     "kchat_test_http_total{method=\"GET\",code=\"200\"} 1\n"
                     "# HELP kchat_test_up Up.\n"
                     "# TYPE kchat_test_up gauge\n"
                     "kchat_test_up 1\n");
    kc_metrics_destroy(m);
}

static void test_label_and_help_escaping(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const char *l[] = {"path", "a\\b\"c\nd", NULL};
    kc_gauge_set(kc_metrics_gauge(m, "kchat_test_escape_info", "Help with \\ and\nnewline.", l), 1);
    expect_render(m, "# HELP kchat_test_escape_info Help with \\\\ and\\nnewline.\n"
                     "# TYPE kchat_test_escape_info gauge\n"
                     "kchat_test_escape_info{path=\"a\\\\b\\\"c\\nd\"} 1\n");
    kc_metrics_destroy(m);
}

static void test_histogram_custom_bounds(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const double bounds[] = {0.1, 1};
    kc_histogram_t *h =
        kc_metrics_histogram(m, "kchat_test_latency_seconds", "Latency.", NULL, bounds, 2);
    kc_histogram_observe(h, 0.05);
    kc_histogram_observe(h, 0.5);
    kc_histogram_observe(h, 5);
    assert_true(kc_series_value(h) == 3);
    expect_render(m, "# HELP kchat_test_latency_seconds Latency.\n"
                     "# TYPE kchat_test_latency_seconds histogram\n"
                     "kchat_test_latency_seconds_bucket{le=\"0.1\"} 1\n"
                     "kchat_test_latency_seconds_bucket{le=\"1\"} 2\n"
                     "kchat_test_latency_seconds_bucket{le=\"+Inf\"} 3\n"
                     "kchat_test_latency_seconds_sum 5.55\n"
                     "kchat_test_latency_seconds_count 3\n");
    kc_metrics_destroy(m);
}

static void test_histogram_labels_and_upper_bound_inclusive(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const double bounds[] = {0.1, 1};
    const char *l[] = {"route", "/x", NULL};
    kc_histogram_t *h = kc_metrics_histogram(m, "kchat_test_size_bytes", "Sizes.", l, bounds, 2);
    kc_histogram_observe(h, 0.1); /* le is "less than or equal" */
    kc_histogram_observe(h, 1);
    kc_histogram_observe(h, NAN); /* ignored */
    expect_render(m, "# HELP kchat_test_size_bytes Sizes.\n"
                     "# TYPE kchat_test_size_bytes histogram\n"
                     "kchat_test_size_bytes_bucket{route=\"/x\",le=\"0.1\"} 1\n"
                     "kchat_test_size_bytes_bucket{route=\"/x\",le=\"1\"} 2\n"
                     "kchat_test_size_bytes_bucket{route=\"/x\",le=\"+Inf\"} 2\n"
                     "kchat_test_size_bytes_sum{route=\"/x\"} 1.1\n"
                     "kchat_test_size_bytes_count{route=\"/x\"} 2\n");
    kc_metrics_destroy(m);
}

/* Bounds with more than six significant digits keep them in le (two bounds that differ
 * only in the seventh digit must not collapse into one series). */
static void test_histogram_precise_bounds(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const double bounds[] = {2.5e-7, 1000001, 1000002};
    kc_histogram_t *h = kc_metrics_histogram(m, "kchat_test_offsets", "Offsets.", NULL, bounds, 3);
    kc_histogram_observe(h, 1000002);
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_non_null(strstr(b.data, "kchat_test_offsets_bucket{le=\"2.5e-07\"} 0\n"));
    assert_non_null(strstr(b.data, "kchat_test_offsets_bucket{le=\"1000001\"} 0\n"));
    assert_non_null(strstr(b.data, "kchat_test_offsets_bucket{le=\"1000002\"} 1\n"));
    assert_non_null(strstr(b.data, "kchat_test_offsets_sum 1000002\n"));
    kc_buf_free(&b);
    kc_metrics_destroy(m);
}

static void test_histogram_default_bounds(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_histogram_t *h =
        kc_metrics_histogram(m, "kchat_test_ack_latency_seconds", "Ack latency.", NULL, NULL, 0);
    kc_histogram_observe(h, 0.003);
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_int_equal(count_substr(b.data, "kchat_test_ack_latency_seconds_bucket{"), 15);
    assert_non_null(strstr(b.data, "kchat_test_ack_latency_seconds_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(b.data, "kchat_test_ack_latency_seconds_bucket{le=\"0.0025\"} 0\n"));
    assert_non_null(strstr(b.data, "kchat_test_ack_latency_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(b.data, "kchat_test_ack_latency_seconds_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(b.data, "kchat_test_ack_latency_seconds_bucket{le=\"+Inf\"} 1\n"));
    kc_buf_free(&b);
    kc_metrics_destroy(m);
}

static void test_same_series_same_pointer(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    const char *l1[] = {"path", "/health", NULL};
    const char *l1b[] = {"path", "/health", NULL};
    const char *l2[] = {"path", "/metrics", NULL};
    kc_counter_t *a = kc_metrics_counter(m, "kchat_test_hits_total", "Hits.", l1);
    kc_counter_t *b = kc_metrics_counter(m, "kchat_test_hits_total", NULL, l1b);
    kc_counter_t *c = kc_metrics_counter(m, "kchat_test_hits_total", NULL, l2);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    kc_counter_t *u1 = kc_metrics_counter(m, "kchat_test_plain_total", "Plain.", NULL);
    kc_counter_t *u2 = kc_metrics_counter(m, "kchat_test_plain_total", "Plain.", NULL);
    assert_ptr_equal(u1, u2);
    const double bounds[] = {1};
    kc_histogram_t *h1 = kc_metrics_histogram(m, "kchat_test_h_seconds", "H.", NULL, bounds, 1);
    kc_histogram_t *h2 = kc_metrics_histogram(m, "kchat_test_h_seconds", "H.", NULL, bounds, 1);
    assert_ptr_equal(h1, h2);
    kc_counter_inc(a);
    kc_counter_inc(b);
    assert_true(kc_series_value(a) == 2);
    /* the family is rendered once, with the first help text */
    kc_buf_t buf = {0};
    kc_metrics_render(m, &buf);
    assert_int_equal(count_substr(buf.data, "# HELP kchat_test_hits_total Hits.\n"), 1);
    assert_int_equal(count_substr(buf.data, "# TYPE kchat_test_hits_total counter\n"), 1);
    assert_int_equal(count_substr(buf.data, "kchat_test_hits_total{path=\"/health\"} 2\n"), 1);
    kc_buf_free(&buf);
    kc_metrics_destroy(m);
}

static void on_collect(void *arg)
{
    kc_gauge_t *g = arg;
    kc_gauge_add(g, 1);
}

static void test_on_collect_runs_each_render(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_gauge_t *g = kc_metrics_gauge(m, "kchat_test_renders", "Renders so far.", NULL);
    kc_metrics_on_collect(m, on_collect, g);
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    kc_buf_reset(&b);
    kc_metrics_render(m, &b);
    assert_string_equal(b.data, "# HELP kchat_test_renders Renders so far.\n"
                                "# TYPE kchat_test_renders gauge\n"
                                "kchat_test_renders 2\n");
    kc_buf_free(&b);
    kc_metrics_destroy(m);
}

static void test_process_series(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_metrics_add_process(m);
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_non_null(strstr(b.data, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    assert_true(sample_value(b.data, "process_resident_memory_bytes") > 0);
    assert_true(sample_value(b.data, "process_virtual_memory_bytes") > 0);
    assert_true(sample_value(b.data, "process_open_fds") >= 3);
    assert_true(sample_value(b.data, "process_start_time_seconds") > 1e9);
    assert_true(sample_value(b.data, "process_cpu_seconds_total") >= 0);
    kc_buf_free(&b);
    kc_metrics_destroy(m);
}

/* A page with every kind of series, as promtool sees it. */
static void test_promtool_accepts_page(void **state)
{
    (void)state;
    if (access(PROMTOOL, X_OK) != 0) {
        print_message("%s not installed: skipping\n", PROMTOOL);
        skip();
    }
    kc_metrics_t *m = kc_metrics_new();
    kc_metrics_add_process(m);
    kc_counter_add(kc_metrics_counter(m, "kchat_test_requests_total", "Requests served.", NULL), 3);
    kc_gauge_set(kc_metrics_gauge(m, "kchat_test_queue_depth", "Items waiting.", NULL), -1.5);
    const char *a[] = {"reason", "not_member", NULL};
    const char *b[] = {"reason", "rate_limited", NULL};
    kc_counter_inc(kc_metrics_counter(m, "kchat_test_rejects_total", "Rejected commands.", a));
    kc_counter_inc(kc_metrics_counter(m, "kchat_test_rejects_total", "Rejected commands.", b));
    const char *e[] = {"path", "a\\b\"c\nd", "method", "GET", NULL};
    kc_gauge_set(kc_metrics_gauge(m, "kchat_test_escape_info", "Help with \\ and\nnewline.", e), 1);
    const double bounds[] = {0.1, 1};
    kc_histogram_t *h =
        kc_metrics_histogram(m, "kchat_test_latency_seconds", "Latency.", NULL, bounds, 2);
    kc_histogram_observe(h, 0.05);
    kc_histogram_observe(h, 5);
    const char *r[] = {"route", "/x", NULL};
    kc_histogram_observe(
        kc_metrics_histogram(m, "kchat_test_ack_latency_seconds", "Ack latency.", r, NULL, 0),
        0.002);

    kc_buf_t page = {0};
    kc_metrics_render(m, &page);
    kc_metrics_destroy(m);

    char in[] = "/tmp/kchat-test-metrics-XXXXXX";
    char out[] = "/tmp/kchat-test-promtool-XXXXXX";
    int fd = mkstemp(in), ofd = mkstemp(out);
    assert_true(fd >= 0 && ofd >= 0);
    assert_int_equal(write(fd, page.data, page.len), (ssize_t)page.len);
    close(fd);
    close(ofd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s check metrics < %s > %s 2>&1", PROMTOOL, in, out);
    int st = system(cmd);

    char verdict[4096] = "";
    FILE *f = fopen(out, "r");
    if (f) {
        size_t n = fread(verdict, 1, sizeof(verdict) - 1, f);
        verdict[n] = '\0';
        fclose(f);
    }
    unlink(in);
    unlink(out);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("promtool check metrics failed (status %d):\n%s\npage:\n%s", st, verdict,
                 page.data);
    kc_buf_free(&page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_counter_text),
        cmocka_unit_test(test_gauge_text),
        cmocka_unit_test(test_labelled_family),
        cmocka_unit_test(test_several_labels_and_order),
        cmocka_unit_test(test_label_and_help_escaping),
        cmocka_unit_test(test_histogram_custom_bounds),
        cmocka_unit_test(test_histogram_labels_and_upper_bound_inclusive),
        cmocka_unit_test(test_histogram_precise_bounds),
        cmocka_unit_test(test_histogram_default_bounds),
        cmocka_unit_test(test_same_series_same_pointer),
        cmocka_unit_test(test_on_collect_runs_each_render),
        cmocka_unit_test(test_process_series),
        cmocka_unit_test(test_promtool_accepts_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
