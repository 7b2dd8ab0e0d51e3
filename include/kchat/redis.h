/* redis.h - an asynchronous Redis connection on the libuv loop (hiredis + redisLibuvAttach).
 *
 * hiredis 0.14 has no timeouts of its own, so we keep them: a connect that has not
 * completed within timeout_ms, or a command whose reply is older than timeout_ms, drops
 * the connection; every pending callback then gets reply NULL with an error, and the
 * connection is made again with backoff. Replies come back in order, so the pending
 * commands form a FIFO whose head holds the oldest deadline. A health check follows the
 * connection, refreshed by a periodic PING.
 */
#ifndef KCHAT_REDIS_H
#define KCHAT_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "kchat/health.h"

typedef struct kc_redis kc_redis_t;

/* reply is owned by hiredis and valid only during the call; NULL on failure, with err. */
typedef void (*kc_redis_cb)(void *arg, const redisReply *reply, const char *err);

#define KC_REDIS_MAX_PENDING 100000

kc_redis_t *kc_redis_new(uv_loop_t *loop, const char *host, int port, int timeout_ms,
                         kc_health_t *health, const char *check_name);
int kc_redis_connected(const kc_redis_t *r);
/* Sends a command given as argv (binary safe). Returns 0, or -ENOTCONN when not connected,
 * -EAGAIN when too many are pending, -ESHUTDOWN after close (cb not called in those cases). */
int kc_redis_command(kc_redis_t *r, kc_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);
/* Fails pending commands, disconnects, frees itself once the loop handles are closed. */
void kc_redis_close(kc_redis_t *r);

#endif
