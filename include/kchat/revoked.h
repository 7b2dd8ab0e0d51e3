/* revoked.h - accounts whose access tokens no longer count: those deactivated within the last
 * day and some minutes (an access token lives at most a day: --access-ttl-s), each with the
 * second of its deactivation, kept in memory for the API's requests and the gateway's sockets.
 *
 * Learned from Postgres two ways: NOTIFY kchat_user_revoked ("<user_id> <seconds>", sent by the
 * users trigger of db/migrations/0012_deactivation.sql in the deactivating transaction) at once,
 * and a reload of the whole set every KC_REVOKED_RELOAD_MS (and when first connected), which
 * also brings what a notification lost in a reconnect would have said. Until the first load
 * nothing is refused: while Postgres cannot be read, tokens that verify are taken.
 */
#ifndef KCHAT_REVOKED_H
#define KCHAT_REVOKED_H

#include <uv.h>

#include "kchat/pg.h"

#define KC_REVOKED_CHANNEL "kchat_user_revoked"
#define KC_REVOKED_RELOAD_MS 10000
#define KC_REVOKED_WINDOW_S (86400 + 300)

typedef struct kc_revoked kc_revoked_t;

/* Called for each account that becomes revoked (notified, or found by a reload). */
typedef void (*kc_revoked_cb)(void *arg, const char *user_id);

/* LISTENs on pg (a connection it shares) and starts the reloads; cb may be NULL. NULL with err
 * when the channel cannot be listened to. */
kc_revoked_t *kc_revoked_new(uv_loop_t *loop, kc_pg_t *pg, kc_revoked_cb cb, void *arg,
                             char *err, size_t errlen);
/* Whether a token of user_id issued at iat (seconds) is revoked: the account was deactivated
 * at or after that second. */
int kc_revoked_is(const kc_revoked_t *r, const char *user_id, long long iat);
/* Accounts in the set now. */
size_t kc_revoked_size(const kc_revoked_t *r);
/* Stops it and frees it once its timer is closed. Call it in the same turn of the loop as
 * kc_pg_close of its connection, or after: that fails its query and ends the notifications
 * while it is still allocated. NULL is a no-op. */
void kc_revoked_close(kc_revoked_t *r);

#endif
