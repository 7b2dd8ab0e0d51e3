/* kc-stuck-drain - a daemon whose drain never finishes, to show the deadline watchdog ends
 * the process: it raises SIGTERM at itself, and its on_stop callback blocks forever (as a
 * drain stuck in a blocking library call would). Expected: a log line and exit status 1. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/daemon.h"
#include "kchat/log.h"

static void on_stop(kc_daemon_t *d, void *arg)
{
    (void)d;
    (void)arg;
    for (;;)
        pause();
}

static void on_start(uv_timer_t *t)
{
    (void)t;
    if (raise(SIGTERM) != 0)
        abort();
}

int main(int argc, char **argv)
{
    long long deadline = 300;
    if (argc > 1 && strncmp(argv[1], "--deadline-ms=", 14) == 0)
        deadline = atoll(argv[1] + 14);
    kc_log_init("kc-stuck-drain", KC_LOG_INFO);
    uv_loop_t loop;
    uv_timer_t t;
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &t) != 0 ||
        uv_timer_start(&t, on_start, 0, 0) != 0)
        return 3;
    kc_daemon_t *d = kc_daemon_new(&loop, deadline, on_stop, NULL);
    (void)d;
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    return 0; /* not reached: the watchdog exits with status 1 */
}
