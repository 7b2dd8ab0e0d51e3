/* pg.h - an asynchronous Postgres connection on the libuv loop (libpq non-blocking API).
 *
 * Queries are parameterized only (PQsendQueryParams, which also refuses several statements
 * in one string) and run one at a time in submission order; each callback is called
 * exactly once, with a result or with an error. The connection is made with
 * PQconnectStart/PQconnectPoll, the socket re-read after every poll since libpq may change
 * it; when it breaks, pending queries fail and it reconnects with backoff. A health check
 * follows its state, refreshed by a periodic `SELECT 1`.
 */
#ifndef KCHAT_PG_H
#define KCHAT_PG_H

#include <libpq-fe.h>
#include <uv.h>

#include "kchat/buf.h"

#include "kchat/health.h"

typedef struct kc_pg kc_pg_t;

/* res is owned by the library and valid only during the call. err is NULL on success; on
 * failure it says why, and res is non-NULL for an error the server reported (read its
 * SQLSTATE with PQresultErrorField) or NULL when the connection failed. */
typedef void (*kc_pg_cb)(void *arg, const PGresult *res, const char *err);

#define KC_PG_MAX_QUEUE 10000

/* conninfo: a libpq connection string or URI. health may be NULL. */
kc_pg_t *kc_pg_new(uv_loop_t *loop, const char *conninfo, kc_health_t *health,
                   const char *check_name);
int kc_pg_connected(const kc_pg_t *pg);
/* Queues a query. Returns 0, or -EAGAIN when KC_PG_MAX_QUEUE queries wait (cb not called),
 * or -ESHUTDOWN after kc_pg_close (cb not called). params are copied. */
int kc_pg_query(kc_pg_t *pg, const char *sql, int nparams, const char *const *params, kc_pg_cb cb,
                void *arg);
/* LISTEN/NOTIFY. kc_pg_listen issues LISTEN on channel at once (when connected) and again
 * first thing after every reconnect, and from then on calls cb(arg) on the loop thread for
 * each notification of that channel received on the connection (payload as sent, at most
 * 8000 bytes); each channel has its own callback. Channels are [a-z_][a-z0-9_]* of at most
 * 63 bytes; a connection listens on at most KC_PG_MAX_CHANNELS. Notifications sent while the
 * connection was down are lost: a waiter needs a deadline. Returns 0, -EINVAL (bad name),
 * -EEXIST (already listened to) or -ENOSPC (too many). */
#define KC_PG_MAX_CHANNELS 8
typedef void (*kc_pg_notify_cb)(void *arg, const char *channel, const char *payload);
int kc_pg_listen(kc_pg_t *pg, const char *channel, kc_pg_notify_cb cb, void *arg);
/* True once every LISTEN of the current connection has been confirmed by the server. */
int kc_pg_listening(const kc_pg_t *pg);
/* Appends a Postgres text[] literal of ids[0..n) to out: each quoted, as they are (ids hold
 * no quote or backslash: kc_id_valid). */
void kc_pg_text_array(kc_buf_t *out, const char *const *ids, size_t n);

/* Fails what is queued, closes the connection and frees itself once the loop handles are
 * closed. NULL is a no-op. */
void kc_pg_close(kc_pg_t *pg);

/* A blocking connection, for the few steps a daemon takes off its loop's fast path (stored
 * offsets at an assignment, schema changes): dsn may be a URI or key=value pairs, connect_timeout
 * 5 s unless the dsn sets one, application_name app, notices into the JSON log. NULL with err
 * ("postgres: ...") when it cannot connect. */
PGconn *kc_pg_connect_blocking(const char *dsn, const char *app, char *err, size_t errlen);

/* Sends the server's notices on conn ("word is too long to be indexed", ...) into the JSON
 * log at debug level instead of libpq's default, stderr. kc_pg_t does it for its own
 * connections; this is for the blocking connections a daemon makes itself. */
void kc_pg_log_notices(PGconn *conn);

#endif
