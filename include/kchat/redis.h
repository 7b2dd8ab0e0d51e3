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

/* Where Redis is and how to log in: the options of KC_CFG_REDIS (kchat/app.h). With a
 * password, every connection sends AUTH [username] password before anything else and counts
 * as connected only once Redis accepts it; a refusal drops the connection with Redis' answer
 * as the reason and tries again with backoff. No TLS: hiredis 0.14 (Debian 12) has none. */
typedef struct {
    char *host;
    long long port;
    long long timeout_ms; /* connect (AUTH included) and command timeout */
    char *username;       /* an ACL user (Redis 6+); empty: the default user */
    char *password;       /* empty: no AUTH */
} kc_redis_cfg_t;

typedef struct kc_redis kc_redis_t;

/* reply is owned by hiredis and valid only during the call; NULL on failure, with err. */
typedef void (*kc_redis_cb)(void *arg, const redisReply *reply, const char *err);

#define KC_REDIS_MAX_PENDING 100000

kc_redis_t *kc_redis_new(uv_loop_t *loop, const kc_redis_cfg_t *cfg, kc_health_t *health,
                         const char *check_name);
int kc_redis_connected(const kc_redis_t *r);
/* Commands sent and not yet answered (a drain waits for its last writes). */
size_t kc_redis_pending(const kc_redis_t *r);
/* Sends a command given as argv (binary safe). Returns 0, or -ENOTCONN when not connected,
 * -EAGAIN when too many are pending, -ESHUTDOWN after close (cb not called in those cases). */
int kc_redis_command(kc_redis_t *r, kc_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);
/* The same for a command already in the protocol's form (RESP: "*<argc>\r\n" then "$<len>\r\n"
 * <arg> "\r\n" per argument), copied as it is: a caller sending one large command builds it
 * once instead of handing hiredis an argv to format. */
int kc_redis_command_formatted(kc_redis_t *r, kc_redis_cb cb, void *arg, const char *cmd,
                               size_t len);
/* Fails pending commands, disconnects, frees itself once the loop handles are closed. */
void kc_redis_close(kc_redis_t *r);

/* A subscriber: a connection of its own in pub/sub mode (a subscribed connection can send
 * nothing but (un)subscriptions). It keeps the set of channels it was asked for and
 * subscribes to all of them again after every reconnect, so a caller adds and removes
 * channels without caring about the connection's state. Messages published while it is
 * disconnected are lost (pub/sub is fire-and-forget): use it only for ephemeral traffic.
 * The connect timeout and the backoff are those of kc_redis_t; TCP keepalive finds a dead
 * peer. Channel names are at most KC_REDIS_CHANNEL_MAX bytes. */
typedef struct kc_redis_sub kc_redis_sub_t;
typedef void (*kc_redis_msg_cb)(void *arg, const char *channel, size_t channel_len,
                                const char *msg, size_t len);

#define KC_REDIS_CHANNEL_MAX 256

kc_redis_sub_t *kc_redis_sub_new(uv_loop_t *loop, const kc_redis_cfg_t *cfg, kc_health_t *health,
                                 const char *check_name, kc_redis_msg_cb on_msg, void *arg);
/* Adds (or removes) a channel. Returns 0 (also when it was already there, or already gone),
 * -ENAMETOOLONG, or -ESHUTDOWN after close. */
int kc_redis_sub_add(kc_redis_sub_t *s, const char *channel);
int kc_redis_sub_remove(kc_redis_sub_t *s, const char *channel);
int kc_redis_sub_connected(const kc_redis_sub_t *s);
size_t kc_redis_sub_channels(const kc_redis_sub_t *s);
/* Disconnects and frees itself once the loop handles are closed. NULL is a no-op. */
void kc_redis_sub_close(kc_redis_sub_t *s);

#endif
