/* test_daemon.c - the two-phase stop: a signal starts phase one (on_stop), the daemon
 * finishes its drain, uv_run returns and everything is freed. The watchdog's _exit path
 * is not exercised in-process. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "kchat/daemon.h"
#include "kchat/log.h"

#define DEADLINE_MS 60000

typedef struct {
    uv_loop_t loop;
    uv_timer_t kick;
    uv_timer_t safety;
    kc_daemon_t *d;
    int stop_calls;
    int was_stopping_in_cb;
    kc_daemon_t *cb_daemon;
    int timed_out;
    int finish; /* call kc_daemon_finish from on_stop */
    int signum; /* what the kick timer raises */
} fix_t;

static void on_stop(kc_daemon_t *d, void *arg)
{
    fix_t *f = arg;
    f->stop_calls++;
    f->cb_daemon = d;
    f->was_stopping_in_cb = kc_daemon_stopping(d);
    /* the drain is trivial here: stop our own handles and finish */
    (void)uv_timer_stop(&f->safety);
    if (f->finish)
        kc_daemon_finish(d);
}

static void on_kick(uv_timer_t *t)
{
    fix_t *f = t->data;
    if (raise(f->signum) != 0)
        f->timed_out = -1;
}

static void on_safety(uv_timer_t *t)
{
    fix_t *f = t->data;
    f->timed_out = 1;
    uv_stop(&f->loop);
}

static void start(fix_t *f, int signum)
{
    memset(f, 0, sizeof(*f));
    f->finish = 1;
    f->signum = signum;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->d = kc_daemon_new(&f->loop, DEADLINE_MS, on_stop, f);
    assert_non_null(f->d);
    assert_false(kc_daemon_stopping(f->d));
    assert_int_equal(uv_timer_init(&f->loop, &f->kick), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->safety), 0);
    f->kick.data = f->safety.data = f;
    assert_int_equal(uv_timer_start(&f->kick, on_kick, 10, 0), 0);
    assert_int_equal(uv_timer_start(&f->safety, on_safety, 20000, 0), 0);
}

static void finish(fix_t *f)
{
    kc_daemon_destroy(f->d);
    uv_close((uv_handle_t *)&f->kick, NULL);
    uv_close((uv_handle_t *)&f->safety, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_signal_runs_two_phase_stop(void **state)
{
    (void)state;
    static const int sigs[] = {SIGTERM, SIGINT};
    for (size_t i = 0; i < 2; i++) {
        fix_t f;
        start(&f, sigs[i]);
        /* returns once on_stop has finished the drain and the signal handles are closed */
        assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(f.timed_out, 0);
        assert_int_equal(f.stop_calls, 1);
        assert_ptr_equal(f.cb_daemon, f.d);
        assert_true(f.was_stopping_in_cb);
        assert_true(kc_daemon_stopping(f.d));
        finish(&f);
    }
}

static void test_stop_by_hand_is_idempotent(void **state)
{
    (void)state;
    fix_t f;
    start(&f, SIGTERM);
    uv_timer_stop(&f.kick);
    kc_daemon_stop(f.d, "unit test");
    kc_daemon_stop(f.d, "again");
    assert_int_equal(f.stop_calls, 1);
    assert_true(kc_daemon_stopping(f.d));
    kc_daemon_finish(f.d); /* a second finish is harmless */
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.timed_out, 0);
    finish(&f);
}

/* A drain that has not finished when the daemon is destroyed (e.g. a fatal error path):
 * destroy finishes it, closes the signal handles and joins the watchdog. */
static void test_destroy_without_finish(void **state)
{
    (void)state;
    fix_t f;
    start(&f, SIGTERM);
    f.finish = 0;
    uv_timer_stop(&f.kick);
    kc_daemon_stop(f.d, "unit test");
    assert_int_equal(f.stop_calls, 1);
    finish(&f);
}

static void test_destroy_never_stopped(void **state)
{
    (void)state;
    fix_t f;
    start(&f, SIGTERM);
    uv_timer_stop(&f.kick);
    assert_false(kc_daemon_stopping(f.d));
    finish(&f);
    assert_int_equal(f.stop_calls, 0);
    kc_daemon_destroy(NULL);
}

static int setup(void **state)
{
    (void)state;
    kc_log_init("test_daemon", KC_LOG_ERROR);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_runs_two_phase_stop),
        cmocka_unit_test(test_stop_by_hand_is_idempotent),
        cmocka_unit_test(test_destroy_without_finish),
        cmocka_unit_test(test_destroy_never_stopped),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
