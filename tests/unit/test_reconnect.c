/* kchat/reconnect.h: the backoff doubles from its minimum up to its cap and starts again once
 * connected, jitter only ever shortens a delay and by at most its share, a connect attempt
 * is due to be dropped at its deadline, and the health check follows the state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/buf.h"
#include "kchat/log.h"
#include "kchat/reconnect.h"
#include "kchat/util.h"

#define MS 1000000ull
#define T0 (1000 * MS) /* an arbitrary monotonic time */

/* The connections' own: the default backoff. */
static const kc_reconn_opts_t OPTS = {.lost_msg = "test connection lost",
                                      .connect_timeout_ms = 5000};

static const int STEPS[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};

static void backoff_doubles_up_to_the_cap(void **state)
{
    (void)state;
    kc_reconn_t rc;
    kc_reconn_init(&rc, &OPTS, NULL, "test");
    assert_int_equal(rc.state, KC_RECONN_DISCONNECTED);
    assert_int_equal(kc_reconn_due(&rc, T0), KC_RECONN_CONNECT); /* the first attempt at once */
    for (size_t i = 0; i < sizeof(STEPS) / sizeof(STEPS[0]); i++) {
        kc_reconn_connecting(&rc, T0);
        assert_int_equal(kc_reconn_lost(&rc, T0, "refused"), STEPS[i]);
        assert_int_equal(rc.state, KC_RECONN_DISCONNECTED);
        assert_int_equal(rc.attempts, i + 1);
        assert_true(rc.retry_at_ns == T0 + (uint64_t)STEPS[i] * MS);
    }
}

/* A cap that is not a power of two times the minimum is reached, never passed. */
static void backoff_cap_not_a_power_of_two(void **state)
{
    (void)state;
    kc_reconn_opts_t o = OPTS;
    o.backoff_min_ms = 300;
    o.backoff_max_ms = 1000;
    kc_reconn_t rc;
    kc_reconn_init(&rc, &o, NULL, "test");
    assert_int_equal(kc_reconn_lost(&rc, T0, "x"), 300);
    assert_int_equal(kc_reconn_lost(&rc, T0, "x"), 600);
    assert_int_equal(kc_reconn_lost(&rc, T0, "x"), 1000);
    assert_int_equal(kc_reconn_lost(&rc, T0, "x"), 1000);
}

static void jitter_stays_within_its_share(void **state)
{
    (void)state;
    const int pcts[] = {25, 100};
    for (size_t k = 0; k < 2; k++) {
        kc_reconn_opts_t o = OPTS;
        o.jitter_pct = pcts[k];
        kc_reconn_t rc;
        kc_reconn_init(&rc, &o, NULL, "test");
        int lo = 1 << 30, hi = -1;
        for (int i = 0; i < 400; i++) {
            int step = i < 9 ? STEPS[i] : 5000;
            int d = kc_reconn_lost(&rc, T0, "refused");
            assert_true(d <= step);
            assert_true(d >= step - step * pcts[k] / 100);
            assert_true(rc.retry_at_ns == T0 + (uint64_t)d * MS);
            if (i >= 9) {
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
        }
        assert_true(lo < hi); /* it does spread */
    }
}

static void ready_starts_the_backoff_again(void **state)
{
    (void)state;
    kc_reconn_t rc;
    kc_reconn_init(&rc, &OPTS, NULL, "test");
    for (int i = 0; i < 4; i++)
        (void)kc_reconn_lost(&rc, T0, "refused");
    assert_int_equal(rc.attempts, 4);
    kc_reconn_connecting(&rc, T0);
    kc_reconn_ready(&rc);
    assert_true(kc_reconn_is_ready(&rc));
    assert_int_equal(rc.attempts, 0);
    assert_int_equal(kc_reconn_lost(&rc, T0, "reset by peer"), 100);
    assert_int_equal(kc_reconn_lost(&rc, T0, "refused"), 200);
}

static void due_follows_the_deadline_and_the_retry_time(void **state)
{
    (void)state;
    kc_reconn_t rc;
    kc_reconn_init(&rc, &OPTS, NULL, "test");
    kc_reconn_connecting(&rc, T0);
    assert_int_equal(rc.state, KC_RECONN_CONNECTING);
    assert_int_equal(kc_reconn_due(&rc, T0), KC_RECONN_WAIT);
    assert_int_equal(kc_reconn_due(&rc, T0 + 4999 * MS), KC_RECONN_WAIT);
    assert_int_equal(kc_reconn_due(&rc, T0 + 5000 * MS), KC_RECONN_TIMED_OUT);
    assert_int_equal(kc_reconn_due(&rc, T0 + 9000 * MS), KC_RECONN_TIMED_OUT);

    /* Given up at the deadline: the next attempt after the backoff. */
    uint64_t t = T0 + 5000 * MS;
    assert_int_equal(kc_reconn_lost(&rc, t, "connect timed out"), 100);
    assert_int_equal(kc_reconn_due(&rc, t + 99 * MS), KC_RECONN_WAIT);
    assert_int_equal(kc_reconn_due(&rc, t + 100 * MS), KC_RECONN_CONNECT);

    /* A new attempt has a deadline of its own; once ready nothing is due. */
    kc_reconn_connecting(&rc, t + 100 * MS);
    assert_int_equal(kc_reconn_due(&rc, t + 5099 * MS), KC_RECONN_WAIT);
    kc_reconn_ready(&rc);
    assert_int_equal(kc_reconn_due(&rc, t + 60000 * MS), KC_RECONN_WAIT);

    kc_reconn_close(&rc);
    assert_int_equal(kc_reconn_due(&rc, t + 60000 * MS), KC_RECONN_WAIT);
}

/* The rendered health check, {"ok":...,"detail":...}, and the overall verdict. */
static void assert_health(kc_health_t *h, int ok, const char *detail)
{
    kc_buf_t b = {0};
    char want[128];
    assert_int_equal(kc_strlcpyf(want, sizeof(want), "\"redis\":{\"ok\":%s,\"detail\":\"%s\"}",
                                 ok ? "true" : "false", detail),
                     0);
    assert_int_equal(kc_health_render(h, &b), ok);
    if (!strstr(b.data, want))
        fail_msg("%s has no %s", b.data, want);
    kc_buf_free(&b);
}

static void health_follows_the_state(void **state)
{
    (void)state;
    kc_health_t *h = kc_health_new(NULL);
    kc_reconn_t rc;
    kc_reconn_init(&rc, &OPTS, h, "redis");
    assert_health(h, 0, "starting");
    kc_reconn_connecting(&rc, T0);
    assert_health(h, 0, "starting");
    assert_int_equal(kc_reconn_lost(&rc, T0, "Connection refused"), 100);
    assert_health(h, 0, "Connection refused");
    kc_reconn_connecting(&rc, T0);
    kc_reconn_ready(&rc);
    assert_health(h, 1, "connected");
    kc_reconn_alive(&rc);
    assert_health(h, 1, "connected");
    (void)kc_reconn_lost(&rc, T0, "command timed out");
    assert_health(h, 0, "command timed out");
    kc_reconn_alive(&rc); /* a late answer does not make a lost connection healthy */
    assert_health(h, 0, "command timed out");

    /* Closed is for good: nothing brings it back or is logged. */
    kc_reconn_close(&rc);
    assert_int_equal(rc.state, KC_RECONN_CLOSED);
    assert_health(h, 0, "closed");
    assert_int_equal(kc_reconn_lost(&rc, T0, "disconnected"), -1);
    kc_reconn_connecting(&rc, T0);
    kc_reconn_ready(&rc);
    kc_reconn_alive(&rc);
    assert_int_equal(rc.state, KC_RECONN_CLOSED);
    assert_health(h, 0, "closed");
    kc_health_destroy(h);
}

int main(void)
{
    kc_log_init("test", KC_LOG_ERROR); /* the warnings of each loss stay out of the output */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_up_to_the_cap),
        cmocka_unit_test(backoff_cap_not_a_power_of_two),
        cmocka_unit_test(jitter_stays_within_its_share),
        cmocka_unit_test(ready_starts_the_backoff_again),
        cmocka_unit_test(due_follows_the_deadline_and_the_retry_time),
        cmocka_unit_test(health_follows_the_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
