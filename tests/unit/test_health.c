/* test_health.c - the checks behind GET /health and their gauges: kchat_health_check_up{check}
 * follows each check from its registration on, and kchat_ready is 1 exactly when /health
 * answers 200 (every check passing, not draining). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/health.h"
#include "kchat/metrics.h"

/* The value of the sample line `prefix value` in m's page, or NAN when there is none. */
static double sample(kc_metrics_t *m, const char *prefix)
{
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    size_t pl = strlen(prefix);
    double v = NAN;
    for (const char *p = b.data; p && *p;) {
        if (strncmp(p, prefix, pl) == 0 && p[pl] == ' ') {
            v = strtod(p + pl + 1, NULL);
            break;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    kc_buf_free(&b);
    return v;
}

static double check_up(kc_metrics_t *m, const char *check)
{
    char prefix[128];
    int n = snprintf(prefix, sizeof(prefix), "kchat_health_check_up{check=\"%s\"}", check);
    assert_true(n > 0 && (size_t)n < sizeof(prefix));
    return sample(m, prefix);
}

/* What /health answers (1: 200), with its body checked for the status word. */
static int verdict(kc_health_t *h, const char *status)
{
    kc_buf_t b = {0};
    int ok = kc_health_render(h, &b);
    char want[64];
    int n = snprintf(want, sizeof(want), "{\"status\":\"%s\"", status);
    assert_true(n > 0 && (size_t)n < sizeof(want));
    if (strncmp(b.data, want, strlen(want)) != 0)
        fail_msg("%s does not start with %s", b.data, want);
    kc_buf_free(&b);
    return ok;
}

static void test_without_metrics(void **state)
{
    (void)state;
    kc_health_t *h = kc_health_new(NULL);
    int c = kc_health_add(h, "redis");
    assert_int_equal(verdict(h, "fail"), 0);
    kc_health_set(h, c, 1, "connected");
    assert_int_equal(verdict(h, "ok"), 1);
    kc_health_set_stopping(h);
    assert_int_equal(verdict(h, "stopping"), 0);
    kc_health_destroy(h);
    kc_health_destroy(NULL);
}

static void test_exposition_text(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_health_t *h = kc_health_new(m);
    int c = kc_health_add(h, "kafka_producer");
    kc_health_set(h, c, 1, "1 of 1 brokers up");
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    assert_string_equal(b.data,
                        "# HELP kchat_ready 1 when /health answers 200 (every health check passes "
                        "and the daemon is not draining), 0 when it answers 503.\n"
                        "# TYPE kchat_ready gauge\n"
                        "kchat_ready 1\n"
                        "# HELP kchat_health_check_up 1 when the health check passes, 0 when it "
                        "fails (see /health).\n"
                        "# TYPE kchat_health_check_up gauge\n"
                        "kchat_health_check_up{check=\"kafka_producer\"} 1\n");
    kc_buf_free(&b);
    kc_health_destroy(h);
    kc_metrics_destroy(m);
}

static void test_gauges_follow_the_checks(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_health_t *h = kc_health_new(m);
    /* No check yet: /health would answer 200. */
    assert_true(sample(m, "kchat_ready") == 1);
    assert_int_equal(verdict(h, "ok"), 1);

    /* A check is failing ("starting") from its registration, and its series is there. */
    int pg = kc_health_add(h, "postgres");
    int redis = kc_health_add(h, "redis");
    assert_true(check_up(m, "postgres") == 0);
    assert_true(check_up(m, "redis") == 0);
    assert_true(sample(m, "kchat_ready") == 0);
    assert_int_equal(verdict(h, "fail"), 0);

    kc_health_set(h, pg, 1, "connected");
    assert_true(check_up(m, "postgres") == 1);
    assert_true(check_up(m, "redis") == 0);
    assert_true(sample(m, "kchat_ready") == 0);

    kc_health_set(h, redis, 2, "connected"); /* any non-zero ok is 1 */
    assert_true(check_up(m, "redis") == 1);
    assert_true(sample(m, "kchat_ready") == 1);
    assert_int_equal(verdict(h, "ok"), 1);

    /* One check failing fails the whole; its coming back restores it. */
    kc_health_set(h, pg, 0, "connect timed out");
    assert_true(check_up(m, "postgres") == 0);
    assert_true(check_up(m, "redis") == 1);
    assert_true(sample(m, "kchat_ready") == 0);
    assert_int_equal(verdict(h, "fail"), 0);
    kc_health_set(h, pg, 1, "connected");
    assert_true(sample(m, "kchat_ready") == 1);

    /* A check registered late makes the service not ready until it passes. */
    int late = kc_health_add(h, "kafka_consumer");
    assert_true(check_up(m, "kafka_consumer") == 0);
    assert_true(sample(m, "kchat_ready") == 0);
    kc_health_set(h, late, 1, "2 of 2 brokers up");
    assert_true(sample(m, "kchat_ready") == 1);

    /* Unknown or absent checks change nothing. */
    kc_health_set(h, -1, 0, "x");
    kc_health_set(h, 15, 0, "x");
    kc_health_set(NULL, pg, 0, "x");
    assert_true(sample(m, "kchat_ready") == 1);

    kc_health_destroy(h);
    kc_metrics_destroy(m);
}

static void test_draining_is_not_ready(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_health_t *h = kc_health_new(m);
    int c = kc_health_add(h, "redis");
    kc_health_set(h, c, 1, "connected");
    assert_true(sample(m, "kchat_ready") == 1);

    kc_health_set_stopping(h);
    assert_true(sample(m, "kchat_ready") == 0);
    assert_int_equal(verdict(h, "stopping"), 0);
    /* The checks still say what they see; a passing check does not make a draining service
     * ready again. */
    assert_true(check_up(m, "redis") == 1);
    kc_health_set(h, c, 0, "closed");
    kc_health_set(h, c, 1, "connected");
    assert_true(check_up(m, "redis") == 1);
    assert_true(sample(m, "kchat_ready") == 0);
    assert_int_equal(verdict(h, "stopping"), 0);

    kc_health_destroy(h);
    kc_metrics_destroy(m);
}

/* Two owners flapping their checks from two threads: whatever the interleaving, the gauges end
 * as the last changes left the checks, and agree with /health. */
typedef struct {
    kc_health_t *h;
    int check;
} flapper_t;

static void *flap(void *arg)
{
    flapper_t *f = arg;
    for (int i = 0; i < 20000; i++)
        kc_health_set(f->h, f->check, i & 1, (i & 1) ? "connected" : "lost");
    kc_health_set(f->h, f->check, 1, "connected");
    return NULL;
}

static void test_concurrent_owners(void **state)
{
    (void)state;
    kc_metrics_t *m = kc_metrics_new();
    kc_health_t *h = kc_health_new(m);
    flapper_t f[2] = {{h, kc_health_add(h, "a")}, {h, kc_health_add(h, "b")}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, flap, &f[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(check_up(m, "a") == 1);
    assert_true(check_up(m, "b") == 1);
    assert_true(sample(m, "kchat_ready") == 1);
    assert_int_equal(verdict(h, "ok"), 1);
    kc_health_destroy(h);
    kc_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_metrics),
        cmocka_unit_test(test_exposition_text),
        cmocka_unit_test(test_gauges_follow_the_checks),
        cmocka_unit_test(test_draining_is_not_ready),
        cmocka_unit_test(test_concurrent_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
