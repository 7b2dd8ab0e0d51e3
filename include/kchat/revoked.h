/* revoked.h - accounts whose access tokens no longer count: those deactivated within the last
 * day and some minutes (an access token lives at most a day: --access-ttl-s), kept in memory
 * for the API's requests and the gateway's sockets.
 *
 * Learned from Postgres two ways: NOTIFY kchat_user_revoked (the user id, sent by the users
 * trigger of db/migrations/0013_deactivation.sql in the deactivating transaction) at once, and
 * a reload of the whole set every KC_REVOKED_RELOAD_MS, which also brings what a notification
 * lost in a reconnect would have said, and drops an account set active again. Until the first
 * load succeeds (tried every KC_REVOKED_RETRY_MS), kc_revoked_loaded is false: the API refuses
 * to serve, the gateway takes tokens that verify. Any token of an account in the set is
 * refused, whenever it was issued: a deactivated account gets no new one (login and refresh
 * check deactivated_at under a row lock), so no issue time needs comparing across clocks.
 */
#ifndef KCHAT_REVOKED_H
#define KCHAT_REVOKED_H

#include <uv.h>

#include "kchat/health.h"
#include "kchat/pg.h"

#define KC_REVOKED_CHANNEL "kchat_user_revoked"
#define KC_REVOKED_RELOAD_MS 10000
#define KC_REVOKED_RETRY_MS 200
#define KC_REVOKED_WINDOW_S (86400 + 300)

typedef struct kc_revoked kc_revoked_t;

/* Called for each account that becomes revoked (notified, or found by a reload). */
typedef void (*kc_revoked_cb)(void *arg, const char *user_id);

/* Starts the loads and LISTENs on pg (a connection it shares); cb may be NULL. With health,
 * its check "revocations" is down until the first load. NULL with err when the channel cannot
 * be listened to. */
kc_revoked_t *kc_revoked_new(uv_loop_t *loop, kc_pg_t *pg, kc_health_t *health,
                             kc_revoked_cb cb, void *arg, char *err, size_t errlen);
/* Whether user_id's tokens are refused. */
int kc_revoked_is(const kc_revoked_t *r, const char *user_id);
/* Whether the set has been read from Postgres at least once. */
int kc_revoked_loaded(const kc_revoked_t *r);
/* Accounts in the set now. */
size_t kc_revoked_size(const kc_revoked_t *r);
/* Stops it and frees it once its timer is closed. Call it in the same turn of the loop as
 * kc_pg_close of its connection, or after: that fails its query and ends the notifications
 * while it is still allocated. NULL is a no-op. */
void kc_revoked_close(kc_revoked_t *r);

#endif
