/* The API's throttle logic (api/throttle.c), without a server: the client's address behind
 * trusted proxies, the fair queue of password work (round-robin across addresses, the per-
 * address, per-account and total bounds, slots given back) and the once-a-second log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/log.h"
#include "throttle.h"

static int is_proxy;

static const char *client(const char *peer, const char *xff, const char *trusted)
{
    static char out[KC_HTTP_PEER_MAX];
    api_addrset_t set;
    char err[128];
    assert_int_equal(api_addrset_parse(&set, trusted, err, sizeof(err)), 0);
    is_proxy = api_client_addr(peer, xff, &set, out);
    return out;
}

static void test_client_addr(void **state)
{
    (void)state;
    const char *lo = "127.0.0.1,::1";
    /* a direct client is its peer, whatever it claims */
    assert_string_equal(client("203.0.113.7", "10.0.0.1", lo), "203.0.113.7");
    assert_false(is_proxy);
    /* behind a trusted proxy: the right-most address the proxy saw */
    assert_string_equal(client("127.0.0.1", "10.9.9.9, 198.51.100.4", lo), "198.51.100.4");
    assert_false(is_proxy);
    assert_string_equal(client("127.0.0.1", "198.51.100.4", lo), "198.51.100.4");
    /* a chain of trusted proxies is walked through; a forged left part is ignored */
    assert_string_equal(client("127.0.0.1", "1.2.3.4, 198.51.100.4, 127.0.0.1", lo),
                        "198.51.100.4");
    /* the proxies speaking for themselves: flagged */
    assert_string_equal(client("127.0.0.1", "127.0.0.1, ::1", lo), "127.0.0.1");
    assert_true(is_proxy);
    /* no header, or garbage in it: the proxy itself, or the last good hop */
    assert_string_equal(client("127.0.0.1", NULL, lo), "127.0.0.1");
    assert_true(is_proxy);
    assert_string_equal(client("127.0.0.1", "not-an-address", lo), "127.0.0.1");
    assert_true(is_proxy);
    assert_string_equal(client("127.0.0.1", "", lo), "127.0.0.1");
    assert_string_equal(client("127.0.0.1", "garbage, 192.0.2.9, ::1", lo), "192.0.2.9");
    assert_false(is_proxy);
    /* IPv6, canonicalised; addresses compare in binary */
    assert_string_equal(client("127.0.0.1", "2001:DB8:0::1", lo), "2001:db8::1");
    assert_string_equal(client("::1", "192.0.2.1", "0:0::1"), "192.0.2.1");
    /* nobody trusted */
    assert_string_equal(client("127.0.0.1", "192.0.2.1", ""), "127.0.0.1");
    assert_false(is_proxy);
}

static void test_addrset_parse(void **state)
{
    (void)state;
    api_addrset_t s;
    char err[128];
    assert_int_equal(api_addrset_parse(&s, " 10.0.0.1 , fe80::1", err, sizeof(err)), 0);
    assert_int_equal((int)s.n, 2);
    assert_true(api_addrset_has(&s, "10.0.0.1"));
    assert_true(api_addrset_has(&s, "FE80:0::1"));
    assert_false(api_addrset_has(&s, "10.0.0.2"));
    assert_int_equal(api_addrset_parse(&s, "10.0.0.1,nope", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(api_addrset_parse(&s, "10.0.0.0/8", err, sizeof(err)), -1);
    assert_int_equal(api_addrset_parse(&s, "10.0.0.1,,", err, sizeof(err)), -1);
}

static void test_fq_round_robin(void **state)
{
    (void)state;
    /* one slot; address A floods, B and C ask once each: they come second and third */
    api_fq_t *q = api_fq_new(1, 100, 10, 1);
    api_fq_job_t a[5], b, c;
    char acct[16];
    for (int i = 0; i < 5; i++) {
        snprintf(acct, sizeof(acct), "a%d", i);
        assert_int_equal(api_fq_push(q, &a[i], "A", 0, acct), API_FQ_OK);
    }
    assert_int_equal(api_fq_push(q, &b, "B", 0, "b"), API_FQ_OK);
    assert_int_equal(api_fq_push(q, &c, "C", 0, "c"), API_FQ_OK);
    assert_int_equal(api_fq_queued(q), 7);
    api_fq_job_t *order[7];
    for (int i = 0; i < 7; i++) {
        order[i] = api_fq_next(q);
        assert_non_null(order[i]);
        assert_null(api_fq_next(q)); /* one slot */
        assert_int_equal(api_fq_running(q), 1);
        api_fq_done(q, order[i]);
    }
    assert_ptr_equal(order[0], &a[0]);
    assert_ptr_equal(order[1], &b);
    assert_ptr_equal(order[2], &c);
    assert_ptr_equal(order[3], &a[1]);
    assert_ptr_equal(order[6], &a[4]);
    assert_null(api_fq_next(q));
    assert_int_equal(api_fq_queued(q), 0);
    assert_int_equal(api_fq_running(q), 0);
    api_fq_destroy(q);
}

static void test_fq_bounds(void **state)
{
    (void)state;
    api_fq_t *q = api_fq_new(2, 1, 2, 1);
    api_fq_job_t j[9];
    /* per account: one at a time */
    assert_int_equal(api_fq_push(q, &j[0], "A", 0, "alice"), API_FQ_OK);
    assert_int_equal(api_fq_push(q, &j[1], "B", 0, "alice"), API_FQ_ACCOUNT);
    /* per address: two queued or running */
    assert_int_equal(api_fq_push(q, &j[1], "A", 0, "bob"), API_FQ_OK);
    assert_int_equal(api_fq_push(q, &j[2], "A", 0, "carol"), API_FQ_ADDRESS);
    api_fq_job_t *r0 = api_fq_next(q), *r1 = api_fq_next(q);
    assert_non_null(r0);
    assert_non_null(r1);
    assert_null(api_fq_next(q));
    /* both slots run: one more may wait, then the queue is full */
    assert_int_equal(api_fq_push(q, &j[2], "B", 0, "carol"), API_FQ_OK);
    assert_int_equal(api_fq_push(q, &j[3], "C", 0, "dave"), API_FQ_FULL);
    assert_null(api_fq_next(q));
    /* a slot back: the waiting job starts, and alice's account is free again */
    api_fq_done(q, r0);
    assert_ptr_equal(api_fq_next(q), &j[2]);
    assert_int_equal(api_fq_push(q, &j[3], "C", 0, "alice"), API_FQ_OK);
    /* taking a waiting job out releases its counts without a slot */
    assert_ptr_equal(api_fq_take(q), &j[3]);
    assert_null(api_fq_take(q));
    assert_int_equal(api_fq_push(q, &j[4], "C", 0, "alice"), API_FQ_OK);
    assert_int_equal(api_fq_queued(q), 1);
    api_fq_done(q, r1);
    assert_ptr_equal(api_fq_next(q), &j[4]);
    api_fq_done(q, &j[2]);
    api_fq_done(q, &j[4]);
    api_fq_done(q, &j[4]); /* twice is harmless */
    assert_int_equal(api_fq_running(q), 0);
    /* an account key too long is refused, not cut */
    char longname[API_FQ_KEY_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(api_fq_push(q, &j[5], "A", 0, longname), API_FQ_ACCOUNT);
    /* an exempt address (a trusted proxy itself) is not held to per_address */
    assert_int_equal(api_fq_push(q, &j[5], "P", 1, "p1"), API_FQ_OK);
    assert_ptr_equal(api_fq_next(q), &j[5]);
    assert_int_equal(api_fq_push(q, &j[6], "P", 1, "p2"), API_FQ_OK);
    assert_ptr_equal(api_fq_next(q), &j[6]);
    assert_int_equal(api_fq_push(q, &j[7], "P", 0, "p3"), API_FQ_ADDRESS);
    assert_int_equal(api_fq_push(q, &j[7], "P", 1, "p3"), API_FQ_OK);
    assert_int_equal(api_fq_push(q, &j[8], "P", 1, "p4"), API_FQ_FULL); /* 2 run, 1 waits */
    api_fq_destroy(q);
    api_fq_destroy(NULL);
}

static void test_fq_no_waiting(void **state)
{
    (void)state;
    /* max_queued 0: a job runs at once or is refused */
    api_fq_t *q = api_fq_new(1, 0, 5, 1);
    api_fq_job_t j[2];
    assert_int_equal(api_fq_push(q, &j[0], "A", 0, "a"), API_FQ_OK);
    assert_ptr_equal(api_fq_next(q), &j[0]);
    assert_int_equal(api_fq_push(q, &j[1], "A", 0, "b"), API_FQ_FULL);
    api_fq_done(q, &j[0]);
    assert_int_equal(api_fq_push(q, &j[1], "A", 0, "b"), API_FQ_OK);
    assert_ptr_equal(api_fq_next(q), &j[1]);
    api_fq_done(q, &j[1]);
    api_fq_destroy(q);
}

static void test_ratelog(void **state)
{
    (void)state;
    kc_ratelog_t l = {0};
    long long sup = -1;
    const uint64_t s = 1000000000u;
    assert_true(kc_ratelog_ok(&l, 5 * s, &sup));
    assert_int_equal(sup, 0);
    assert_false(kc_ratelog_ok(&l, 5 * s + 1, &sup));
    assert_false(kc_ratelog_ok(&l, 6 * s - 1, &sup));
    assert_true(kc_ratelog_ok(&l, 6 * s, &sup));
    assert_int_equal(sup, 2);
    assert_true(kc_ratelog_ok(&l, 9 * s, &sup));
    assert_int_equal(sup, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_addr),   cmocka_unit_test(test_addrset_parse),
        cmocka_unit_test(test_fq_round_robin), cmocka_unit_test(test_fq_bounds),
        cmocka_unit_test(test_fq_no_waiting), cmocka_unit_test(test_ratelog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
