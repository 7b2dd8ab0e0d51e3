/* Unit tests of the load generator's histogram: bucket edges, the error bound, quantiles. */
/* cmocka needs these first, in this order */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hist.h"

static void small_values_are_exact(void **state)
{
    (void)state;
    for (int64_t v = 0; v < 128; v++) {
        assert_int_equal(lg_hist_index(v), v);
        assert_int_equal(lg_hist_upper(lg_hist_index(v)), v);
    }
    assert_int_equal(lg_hist_index(-5), 0);
}

static void every_value_is_within_its_bucket_and_the_error_bound(void **state)
{
    (void)state;
    int prev = -1;
    for (int64_t v = 1; v < ((int64_t)1 << 34); v += v / 97 + 1) {
        int i = lg_hist_index(v);
        assert_true(i >= prev); /* monotonic */
        prev = i;
        int64_t up = lg_hist_upper(i);
        assert_true(up >= v);
        assert_true((double)(up - v) <= (double)v / 64.0 + 1.0);
        if (i > 0)
            assert_true(lg_hist_upper(i - 1) < v);
    }
    assert_int_equal(lg_hist_index(INT64_MAX), LG_HIST_BUCKETS - 1);
}

static void quantiles_of_a_known_distribution(void **state)
{
    (void)state;
    static lg_hist_t h;
    lg_hist_init(&h);
    assert_int_equal(lg_hist_quantile(&h, 0.5), 0);
    for (int64_t v = 1; v <= 10000; v++)
        lg_hist_record(&h, v);
    assert_int_equal(h.count, 10000);
    assert_int_equal(h.max, 10000);
    assert_int_equal(h.min, 1);
    int64_t p50 = lg_hist_quantile(&h, 0.5), p99 = lg_hist_quantile(&h, 0.99);
    assert_true(p50 >= 5000 && p50 <= 5000 + 5000 / 64 + 1);
    assert_true(p99 >= 9900 && p99 <= 9900 + 9900 / 64 + 1);
    assert_int_equal(lg_hist_quantile(&h, 1.0), 10000);
    assert_true(lg_hist_quantile(&h, 0.999) <= 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_values_are_exact),
        cmocka_unit_test(every_value_is_within_its_bucket_and_the_error_bound),
        cmocka_unit_test(quantiles_of_a_known_distribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
