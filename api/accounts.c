/* accounts.c - the relay of account events: account_outbox (Postgres) to chat.accounts.
 *
 * A trigger on users writes each account event (registered, username or display name changed)
 * into account_outbox in the same transaction as the change, in Avro's JSON encoding
 * (db/migrations/0011_account_events.sql), and NOTIFYs kchat_account_outbox. One API instance
 * at a time relays: the one whose session holds the advisory lock RELAY_LOCK, taken (or found
 * held) by the same statement that reads a batch, so a reconnect that lost the lock is seen at
 * once. A cycle:
 *   1. read up to BATCH rows in event_no order (only while holding the lock);
 *   2. convert each to Avro (the newest chat.accounts-value schema) and produce it, keyed by
 *      user_id, with the API's idempotent producer;
 *   3. once the broker has acknowledged every record, delete exactly the rows read (a row of a
 *      transaction that committed meanwhile with a lower event_no is relayed next cycle).
 * A failure at any step deletes nothing and retries after RETRY_MS: records are sent at least
 * once, and a reader keeps the highest event_no it applied per user (docs/analytics.md). A
 * row that cannot be converted stays in the outbox, logged and counted, and holds no other.
 * The relay runs on listen_pg, the connection that already LISTENs for outcomes.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/avro.h"
#include "kchat/log.h"

#define CHANNEL "kchat_account_outbox"
#define SUBJECT "chat.accounts-value"
#define BATCH 500
#define BATCH_SQL "500"
#define IDLE_MS 1000   /* a NOTIFY lost in a reconnect waits no longer than this */
#define RETRY_MS 2000
#define MAX_EVENT 16384 /* bytes of one row's JSON: a username, a display name and ids */
/* Advisory lock key of the relay ("kcac"): one relay per database. */
#define RELAY_LOCK "1801675107"

enum { IDLE, READING, SENDING, DELETING, STOPPED };

struct api_accounts {
    api_t *a;
    uv_timer_t timer;
    int phase;
    int again;          /* a NOTIFY came during a cycle: run another at once */
    int failed;         /* a record of the cycle was not written */
    size_t pending;     /* records produced, not yet acknowledged */
    kc_buf_t done;      /* event_nos to delete: a Postgres bigint[] literal */
    size_t ndone;
    int nread;          /* rows the cycle read: BATCH means more may wait */
    long long bad_logged; /* the highest event_no logged as unconvertible (logged once) */
    rd_kafka_topic_t *rkt;
    kc_counter_t *relayed;
    kc_counter_t *errors;
    kc_gauge_t *leader;
};

static void cycle(api_accounts_t *x);

static void on_timer(uv_timer_t *t)
{
    api_accounts_t *x = t->data;
    if (x->phase == IDLE)
        cycle(x);
}

static void wait_for(api_accounts_t *x, uint64_t ms)
{
    x->phase = IDLE;
    if (uv_timer_start(&x->timer, on_timer, ms, 0) != 0)
        kc_log_error("account events: cannot start the relay's timer");
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    (void)payload;
    api_accounts_t *x = arg;
    if (x->phase == IDLE)
        cycle(x);
    else if (x->phase != STOPPED)
        x->again = 1;
}

static void end_cycle(api_accounts_t *x, int full)
{
    if (x->phase == STOPPED)
        return;
    int again = x->again || full;
    x->again = 0;
    if (again)
        cycle(x);
    else
        wait_for(x, IDLE_MS);
}

static void on_deleted(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    api_accounts_t *x = arg;
    if (x->phase == STOPPED)
        return;
    if (err) {
        kc_log_warn("account events: cannot delete the relayed rows (they will be sent again): "
                    "%s", err);
        kc_counter_inc(x->errors);
        wait_for(x, RETRY_MS);
        return;
    }
    end_cycle(x, x->nread == BATCH);
}

/* Every record of the batch acknowledged (or failed): delete what was sent. */
static void sent(api_accounts_t *x)
{
    if (x->failed) {
        kc_counter_inc(x->errors);
        wait_for(x, RETRY_MS);
        return;
    }
    if (x->ndone == 0) {
        end_cycle(x, 0); /* nothing to send, or only rows that cannot be */
        return;
    }
    kc_counter_add(x->relayed, (double)x->ndone);
    kc_buf_putc(&x->done, '}');
    const char *params[] = {x->done.data};
    x->phase = DELETING;
    if (kc_pg_query(x->a->listen_pg,
                    "DELETE FROM account_outbox WHERE event_no = ANY($1::bigint[])", 1, params,
                    on_deleted, x) != 0)
        wait_for(x, RETRY_MS);
}

void api_accounts_delivered(api_t *a, const rd_kafka_message_t *m)
{
    api_accounts_t *x = a->accounts;
    if (!x || x->phase == STOPPED)
        return;
    if (m->err) {
        kc_log_warn("account event not written to %s: %s", rd_kafka_topic_name(m->rkt),
                    rd_kafka_err2str(m->err));
        x->failed = 1;
    }
    if (x->pending > 0 && --x->pending == 0 && x->phase == SENDING)
        sent(x);
}

/* One row: its JSON converted to Avro and produced. 0, or -1 when it cannot be converted
 * (logged; the row stays). */
static int send_row(api_accounts_t *x, const char *no, const char *user_id, const char *json)
{
    api_t *a = x->a;
    char err[256] = "";
    avro_value_t v;
    int have_value = 0, rc = -1;
    kc_buf_t out = {0};
    cJSON *j = strlen(json) <= MAX_EVENT ? cJSON_Parse(json) : NULL;
    if (!j) {
        kc_strlcpyf(err, sizeof(err), "not JSON of at most %d bytes", MAX_EVENT);
    } else if (kc_avro_value_new(a->schemas, SUBJECT, &v) != 0) {
        kc_strlcpyf(err, sizeof(err), "no schema for %s", SUBJECT);
    } else {
        have_value = 1;
        if (kc_avro_from_json(&v, j, err, sizeof(err)) == 0 &&
            kc_avro_encode(a->schemas, SUBJECT, &v, &out) == 0)
            rc = 0;
        else if (!err[0])
            kc_strlcpyf(err, sizeof(err), "cannot encode it");
    }
    if (rc == 0) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            a->producer.rk, RD_KAFKA_V_RKT(x->rkt), RD_KAFKA_V_KEY(user_id, strlen(user_id)),
            RD_KAFKA_V_VALUE(out.data, out.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(x), RD_KAFKA_V_END);
        if (e) {
            kc_log_warn("account events: cannot produce: %s", rd_kafka_err2str(e));
            x->failed = 1;
        } else {
            x->pending++;
            kc_buf_puts(&x->done, x->ndone++ ? "," : "{");
            kc_buf_puts(&x->done, no);
        }
    } else {
        long long n = strtoll(no, NULL, 10);
        if (n > x->bad_logged) { /* once per row, not once per cycle */
            x->bad_logged = n;
            kc_log_kv(KC_LOG_ERROR,
                      KC_FIELDS(KC_STR("event_no", no), KC_STR("user_id", user_id)),
                      "account event left in account_outbox: %s", err);
            kc_counter_inc(x->errors);
        }
    }
    if (have_value)
        avro_value_decref(&v);
    cJSON_Delete(j);
    kc_buf_free(&out);
    return rc;
}

static void on_batch(void *arg, const PGresult *res, const char *err)
{
    api_accounts_t *x = arg;
    if (x->phase == STOPPED)
        return;
    if (err) {
        kc_log_warn("account events: cannot read account_outbox: %s", err);
        kc_counter_inc(x->errors);
        kc_gauge_set(x->leader, 0);
        wait_for(x, RETRY_MS);
        return;
    }
    int n = PQntuples(res);
    /* the first column says whether this session holds the lock, on every row and on the
     * one row a batch without events has */
    int leader = n > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    kc_gauge_set(x->leader, leader);
    x->phase = SENDING;
    x->failed = 0;
    x->pending = 0;
    x->ndone = 0;
    x->nread = leader ? n : 0;
    x->done.len = 0;
    for (int i = 0; leader && i < n; i++)
        if (!PQgetisnull(res, i, 1))
            (void)send_row(x, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                           PQgetvalue(res, i, 3));
    if (x->pending == 0)
        sent(x);
}

static void cycle(api_accounts_t *x)
{
    (void)uv_timer_stop(&x->timer);
    x->phase = READING;
    x->again = 0;
    /* The lock is session-wide and taken once: pg_locks says whether this session has it. */
    static const char sql[] =
        "WITH l AS (SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
        "AND pid = pg_backend_pid() AND classid = 0 AND objid = " RELAY_LOCK " AND objsubid = 1) "
        "OR pg_try_advisory_lock(" RELAY_LOCK ") AS held), "
        "b AS (SELECT o.event_no, o.user_id, o.event FROM account_outbox o, l WHERE l.held "
        "ORDER BY o.event_no LIMIT " BATCH_SQL ") "
        "SELECT l.held, b.event_no::text, b.user_id, b.event::text FROM l LEFT JOIN b ON true "
        "ORDER BY b.event_no";
    if (kc_pg_query(x->a->listen_pg, sql, 0, NULL, on_batch, x) != 0)
        wait_for(x, RETRY_MS);
}

int api_accounts_start(api_t *a, char *err, size_t errlen)
{
    api_accounts_t *x = kc_xcalloc(1, sizeof(*x));
    a->accounts = x;
    x->a = a;
    x->phase = STOPPED;
    if (kc_schemas_current_id(a->schemas, SUBJECT) < 0) {
        kc_strlcpyf(err, errlen, "no schema for %s", SUBJECT);
        return -1;
    }
    if (uv_timer_init(a->app.loop, &x->timer) != 0) {
        kc_strlcpyf(err, errlen, "cannot make the account relay's timer");
        return -1;
    }
    x->timer.data = x;
    x->rkt = kc_kafka_topic_hold(a->producer.rk, a->cfg.accounts_topic, 15000, err, errlen);
    if (!x->rkt)
        return -1;
    x->relayed = kc_metrics_counter(a->app.metrics, "kchat_api_account_events_total",
                                    "Account events relayed from account_outbox to Kafka.",
                                    NULL);
    x->errors = kc_metrics_counter(
        a->app.metrics, "kchat_api_account_relay_errors_total",
        "Relay cycles of account events that failed (retried) and rows that cannot be "
        "converted (left in account_outbox).",
        NULL);
    x->leader = kc_metrics_gauge(a->app.metrics, "kchat_api_account_relay_leader",
                                 "1 when this instance relays account events (holds the lock).",
                                 NULL);
    if (kc_pg_listen(a->listen_pg, CHANNEL, on_notify, x) != 0) {
        kc_strlcpyf(err, errlen, "cannot LISTEN on %s", CHANNEL);
        return -1;
    }
    wait_for(x, 0);
    return 0;
}

void api_accounts_close(api_t *a)
{
    api_accounts_t *x = a->accounts;
    if (!x)
        return;
    x->phase = STOPPED;
    if (x->timer.loop && !uv_is_closing((uv_handle_t *)&x->timer))
        uv_close((uv_handle_t *)&x->timer, NULL);
}

void api_accounts_free(api_t *a)
{
    api_accounts_t *x = a->accounts;
    if (!x)
        return;
    a->accounts = NULL;
    if (x->rkt)
        rd_kafka_topic_destroy(x->rkt);
    kc_buf_free(&x->done);
    free(x);
}
