/* relay.c - outboxes in Postgres relayed to Kafka: account events (account_outbox to
 * chat.accounts) and audit events (audit_log to chat.audit).
 *
 * A trigger or a handler writes each event into its table in the same transaction as the
 * change it tells of, in Avro's JSON encoding or as columns the relay's statement turns into
 * it, and NOTIFYs the relay's channel. One API instance at a time relays a table: the one
 * whose session holds the relay's advisory lock, taken (or found held) by the same statement
 * that reads a batch, so a reconnect that lost the lock is seen at once. A cycle:
 *   1. read up to BATCH rows in their number's order (only while holding the lock);
 *   2. convert each to Avro (the newest schema of the relay's subject) and produce it, keyed
 *      as the row says, with the API's idempotent producer;
 *   3. once the broker has acknowledged every record, mark exactly the rows read done (the
 *      spec's statement: a delete, or a flag); a row of a transaction that committed
 *      meanwhile with a lower number is relayed next cycle.
 * A failure at any step marks nothing and retries after RETRY_MS: records are sent at least
 * once, and a reader keeps the highest number it applied per key (docs/analytics.md). A row
 * that cannot be converted stays, logged and counted once, and holds no other.
 * The relays run on listen_pg, the connection that already LISTENs for outcomes.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/avro.h"
#include "kchat/log.h"

#define BATCH 500
#define IDLE_MS 1000   /* a NOTIFY lost in a reconnect waits no longer than this */
#define RETRY_MS 2000
#define MAX_EVENT 16384 /* bytes of one row's JSON: names, ids and a few details */

enum { IDLE, READING, SENDING, DELETING, STOPPED };

struct api_relay {
    api_t *a;
    const api_relay_spec_t *spec;
    uv_timer_t timer;
    int phase;
    int again;          /* a NOTIFY came during a cycle: run another at once */
    int failed;         /* a record of the cycle was not written */
    size_t pending;     /* records produced, not yet acknowledged */
    kc_buf_t sql;       /* the batch statement */
    kc_buf_t done;      /* numbers to mark done: a Postgres bigint[] literal */
    size_t ndone;
    int nread;          /* rows the cycle read: BATCH means more may wait */
    long long bad_logged; /* the highest number logged as unconvertible (logged once) */
    rd_kafka_topic_t *rkt;
    kc_counter_t *relayed;
    kc_counter_t *errors;
    kc_gauge_t *leader;
};

static void cycle(api_relay_t *x);

static void on_timer(uv_timer_t *t)
{
    api_relay_t *x = t->data;
    if (x->phase == IDLE)
        cycle(x);
}

static void wait_for(api_relay_t *x, uint64_t ms)
{
    x->phase = IDLE;
    if (uv_timer_start(&x->timer, on_timer, ms, 0) != 0)
        kc_log_error("%s: cannot start the relay's timer", x->spec->what);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    (void)payload;
    api_relay_t *x = arg;
    if (x->phase == IDLE)
        cycle(x);
    else if (x->phase != STOPPED)
        x->again = 1;
}

static void end_cycle(api_relay_t *x, int full)
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
    api_relay_t *x = arg;
    if (x->phase == STOPPED)
        return;
    if (err) {
        kc_log_warn("%s: cannot mark the relayed rows (they will be sent again): %s",
                    x->spec->what, err);
        kc_counter_inc(x->errors);
        wait_for(x, RETRY_MS);
        return;
    }
    end_cycle(x, x->nread == BATCH);
}

/* Every record of the batch acknowledged (or failed): delete what was sent. */
static void sent(api_relay_t *x)
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
    if (kc_pg_query(x->a->listen_pg, x->spec->done_sql, 1, params, on_deleted, x) != 0)
        wait_for(x, RETRY_MS);
}

void api_relay_delivered(api_relay_t *x, const rd_kafka_message_t *m)
{
    if (x->phase == STOPPED)
        return;
    if (m->err) {
        kc_log_warn("%s: a record not written to %s: %s", x->spec->what,
                    rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        x->failed = 1;
    }
    if (x->pending > 0 && --x->pending == 0 && x->phase == SENDING)
        sent(x);
}

/* One row: its JSON converted to Avro and produced. 0, or -1 when it cannot be converted
 * (logged; the row stays). */
static int send_row(api_relay_t *x, const char *no, const char *key, const char *json)
{
    api_t *a = x->a;
    char err[256] = "";
    avro_value_t v;
    int have_value = 0, rc = -1;
    kc_buf_t out = {0};
    cJSON *j = strlen(json) <= MAX_EVENT ? cJSON_Parse(json) : NULL;
    if (!j) {
        kc_strlcpyf(err, sizeof(err), "not JSON of at most %d bytes", MAX_EVENT);
    } else if (kc_avro_value_new(a->schemas, x->spec->subject, &v) != 0) {
        kc_strlcpyf(err, sizeof(err), "no schema for %s", x->spec->subject);
    } else {
        have_value = 1;
        if (kc_avro_from_json(&v, j, err, sizeof(err)) == 0 &&
            kc_avro_encode(a->schemas, x->spec->subject, &v, &out) == 0)
            rc = 0;
        else if (!err[0])
            kc_strlcpyf(err, sizeof(err), "cannot encode it");
    }
    if (rc == 0) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            a->producer.rk, RD_KAFKA_V_RKT(x->rkt), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(out.data, out.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(x), RD_KAFKA_V_END);
        if (e) {
            kc_log_warn("%s: cannot produce: %s", x->spec->what, rd_kafka_err2str(e));
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
            kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("number", no), KC_STR("key", key)),
                      "%s: a row left in %s: %s", x->spec->what, x->spec->table, err);
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
    api_relay_t *x = arg;
    if (x->phase == STOPPED)
        return;
    if (err) {
        kc_log_warn("%s: cannot read %s: %s", x->spec->what, x->spec->table, err);
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

static void cycle(api_relay_t *x)
{
    (void)uv_timer_stop(&x->timer);
    x->phase = READING;
    x->again = 0;
    if (kc_pg_query(x->a->listen_pg, x->sql.data, 0, NULL, on_batch, x) != 0)
        wait_for(x, RETRY_MS);
}

int api_relay_start(api_t *a, const api_relay_spec_t *spec, const char *topic,
                    api_relay_t **out, char *err, size_t errlen)
{
    api_relay_t *x = kc_xcalloc(1, sizeof(*x));
    *out = x;
    x->a = a;
    x->spec = spec;
    x->phase = STOPPED;
    if (kc_schemas_current_id(a->schemas, spec->subject) < 0) {
        kc_strlcpyf(err, errlen, "no schema for %s", spec->subject);
        return -1;
    }
    if (uv_timer_init(a->app.loop, &x->timer) != 0) {
        kc_strlcpyf(err, errlen, "cannot make the timer of the %s relay", spec->what);
        return -1;
    }
    x->timer.data = x;
    x->rkt = kc_kafka_topic_hold(a->producer.rk, topic, 15000, err, errlen);
    if (!x->rkt)
        return -1;
    /* The lock is session-wide and taken once: pg_locks says whether this session has it.
     * The first column says so on every row, and on the one row a batch without events has. */
    kc_buf_printf(&x->sql,
                  "WITH l AS (SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                  "AND pid = pg_backend_pid() AND classid = 0 AND objid = %s AND objsubid = 1) "
                  "OR pg_try_advisory_lock(%s) AS held), "
                  "b AS (SELECT r.no, r.key, r.event FROM (%s) r, l WHERE l.held "
                  "ORDER BY r.no LIMIT %d) "
                  "SELECT l.held, b.no::text, b.key, b.event::text FROM l LEFT JOIN b ON true "
                  "ORDER BY b.no",
                  spec->lock, spec->lock, spec->rows_sql, BATCH);
    char name[96], help[256];
    (void)kc_strlcpyf(name, sizeof(name), "%s_events_total", spec->metric);
    (void)kc_strlcpyf(help, sizeof(help), "Rows of %s relayed to Kafka (%s).", spec->table,
                      spec->what);
    x->relayed = kc_metrics_counter(a->app.metrics, name, help, NULL);
    (void)kc_strlcpyf(name, sizeof(name), "%s_relay_errors_total", spec->metric);
    (void)kc_strlcpyf(help, sizeof(help),
                      "Relay cycles of %s that failed (retried) and rows that cannot be "
                      "converted (left in %s).",
                      spec->what, spec->table);
    x->errors = kc_metrics_counter(a->app.metrics, name, help, NULL);
    (void)kc_strlcpyf(name, sizeof(name), "%s_relay_leader", spec->metric);
    (void)kc_strlcpyf(help, sizeof(help), "1 when this instance relays %s (holds the lock).",
                      spec->what);
    x->leader = kc_metrics_gauge(a->app.metrics, name, help, NULL);
    if (kc_pg_listen(a->listen_pg, spec->channel, on_notify, x) != 0) {
        kc_strlcpyf(err, errlen, "cannot LISTEN on %s", spec->channel);
        return -1;
    }
    wait_for(x, 0);
    return 0;
}

int api_relay_owns(const api_relay_t *x, const rd_kafka_message_t *m)
{
    return x && m->_private == x;
}

void api_relay_close(api_relay_t *x)
{
    if (!x)
        return;
    x->phase = STOPPED;
    if (x->timer.loop && !uv_is_closing((uv_handle_t *)&x->timer))
        uv_close((uv_handle_t *)&x->timer, NULL);
}

void api_relay_free(api_relay_t *x)
{
    if (!x)
        return;
    if (x->rkt)
        rd_kafka_topic_destroy(x->rkt);
    kc_buf_free(&x->sql);
    kc_buf_free(&x->done);
    free(x);
}

/* ---- the relays ---- */

/* Account events (db/migrations/0011_account_events.sql): the trigger on users writes each
 * event whole, in Avro's JSON encoding; a relayed row is deleted. Advisory lock "kcac". */
const api_relay_spec_t API_RELAY_ACCOUNTS = {
    .what = "account events",
    .table = "account_outbox",
    .channel = "kchat_account_outbox",
    .subject = "chat.accounts-value",
    .lock = "1801675107",
    .rows_sql = "SELECT event_no AS no, user_id AS key, event FROM account_outbox",
    .done_sql = "DELETE FROM account_outbox WHERE event_no = ANY($1::bigint[])",
    .metric = "kchat_api_account",
};

/* Audit events (db/migrations/0012_audit.sql): columns turned into AuditEvent's JSON here; a
 * relayed row is flagged, and stays for GET /admin/audit until its retention ends. Advisory
 * lock "kcau". */
const api_relay_spec_t API_RELAY_AUDIT = {
    .what = "audit events",
    .table = "audit_log",
    .channel = "kchat_audit",
    .subject = "chat.audit-value",
    .lock = "1801675125",
    .rows_sql =
        "SELECT audit_no AS no, coalesce(actor_id, source) AS key, json_build_object("
        "'event_id', event_id, 'audit_no', audit_no, "
        "'occurred_at', floor(extract(epoch FROM occurred_at) * 1000)::bigint, "
        "'action', action, "
        "'actor_id', CASE WHEN actor_id IS NOT NULL "
        "  THEN json_build_object('string', actor_id) END, "
        "'target', CASE WHEN target IS NOT NULL THEN json_build_object('string', target) END, "
        "'source', source, 'detail', detail::text) AS event FROM audit_log WHERE NOT relayed",
    .done_sql = "UPDATE audit_log SET relayed = true WHERE audit_no = ANY($1::bigint[])",
    .metric = "kchat_api_audit",
};
