/* daemon.h - the two-phase stop every daemon shares (after nginx).
 *
 * SIGTERM or SIGINT starts phase one: the daemon's on_stop callback stops taking new work
 * (closes listeners, pauses consumers) and starts draining what it holds; when the drain is
 * done the daemon calls kc_daemon_finish() and closes its handles, so uv_run() returns.
 * A watchdog thread guards the deadline: if the process has not finished within
 * deadline_ms of the signal (a drain stuck in a blocking library call cannot stop the
 * loop's own timers), it logs and exits with status 1. A second signal exits at once.
 */
#ifndef KCHAT_DAEMON_H
#define KCHAT_DAEMON_H

#include <uv.h>

typedef struct kc_daemon kc_daemon_t;
typedef void (*kc_daemon_stop_fn)(kc_daemon_t *d, void *arg);

kc_daemon_t *kc_daemon_new(uv_loop_t *loop, long long deadline_ms, kc_daemon_stop_fn on_stop,
                           void *arg);
/* Starts phase one by hand, as a signal would (tests, fatal errors). */
void kc_daemon_stop(kc_daemon_t *d, const char *reason);
int kc_daemon_stopping(const kc_daemon_t *d);
/* The drain is done: disarms the watchdog and closes the signal handles. */
void kc_daemon_finish(kc_daemon_t *d);
/* After uv_run() has returned. NULL is a no-op. */
void kc_daemon_destroy(kc_daemon_t *d);

#endif
