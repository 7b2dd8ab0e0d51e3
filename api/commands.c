/* commands.c - REST changes as Commands on chat.commands, and waiting for their outcome.
 *
 * A change (create or rename a conversation, add or remove members, a role, a read marker)
 * is a Command (Avro, Confluent wire format, written by kchat/chat.h; keyed by convo_id,
 * origin "api:<instance>") sent with the idempotent producer.
 * The request then waits, under its command_id, for the projector's
 *   NOTIFY kchat_applied '{"command_id":..., "type":..., "reason":..., "message":...}'
 * which it sends once the event is in the read models: the answer reads its own write. The
 * LISTEN runs on a Postgres connection of its own, made before any command is sent; a wait
 * that outlives command-timeout-ms is answered 504, a command Kafka refuses 503.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

#define CHANNEL "kchat_applied"
#define SWEEP_MS 50
#define MAX_PAYLOAD 8000

struct api_waiter {
    api_req_t *r;
    uint64_t deadline_ns;
    char command_id[40];
    kc_list_node_t link; /* in api_t.wait */
};

static void unlink_waiter(api_t *a, api_waiter_t *w)
{
    kc_list_remove(&a->wait, &w->link);
    (void)kc_map_remove(a->waiters, w->command_id, strlen(w->command_id));
    if (w->r)
        w->r->waiter = NULL;
    free(w);
}

void api_command_forget(api_req_t *r)
{
    if (r->waiter)
        unlink_waiter(r->a, r->waiter);
}

/* Ends the wait of command_id with an outcome (or a failure when type is NULL). */
static void complete(api_t *a, const char *command_id, const char *type, const char *reason,
                     const char *message, int status, const char *err)
{
    api_waiter_t *w = kc_map_get(a->waiters, command_id, strlen(command_id));
    if (!w)
        return; /* another instance's command, or one that timed out */
    api_req_t *r = w->r;
    unlink_waiter(a, w);
    r->on_outcome(r, type, reason, message, status, err);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    api_t *a = arg;
    if (strcmp(channel, CHANNEL) != 0 || strlen(payload) > MAX_PAYLOAD)
        return;
    cJSON *j = cJSON_Parse(payload);
    const char *id = api_json_str(j, "command_id");
    const char *type = api_json_str(j, "type");
    if (!id || !type) {
        kc_log_warn("kchat_applied: a payload without command_id or type: %.200s", payload);
    } else {
        const char *reason = api_json_str(j, "reason");
        const char *message = api_json_str(j, "message");
        complete(a, id, type, reason ? reason : "", message ? message : "", 200, NULL);
    }
    cJSON_Delete(j);
}

static void on_sweep(uv_timer_t *t)
{
    api_t *a = t->data;
    uint64_t now = kc_mono_ns();
    api_waiter_t *w;
    while ((w = KC_LIST_ENTRY(a->wait.first, api_waiter_t, link)) && w->deadline_ns <= now) {
        api_req_t *r = w->r;
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("command_id", w->command_id)),
                  "no outcome within command-timeout-ms");
        kc_counter_inc(a->outcomes_timeout);
        unlink_waiter(a, w);
        r->on_outcome(r, NULL, NULL, NULL, 504,
                      "the change was sent but its outcome did not arrive in time; it may "
                      "still be applied");
    }
}

/* Delivery reports: only a failure matters (the outcome comes from the NOTIFY). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    api_t *a = opaque;
    if (api_relay_owns(a->accounts, m) || api_relay_owns(a->audit, m)) {
        api_relay_delivered(m->_private, m);
        return;
    }
    char *command_id = m->_private;
    if (m->err) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("command_id", command_id)),
                  "command not delivered: %s", rd_kafka_err2str(m->err));
        complete(a, command_id, NULL, NULL, NULL, 503, "the change could not be sent to Kafka");
    }
    free(command_id);
}

static int on_producer_events(void *arg)
{
    api_t *a = arg;
    return kc_kafka_serve(a->producer.rk, 500);
}

int api_commands_init(api_t *a, char *err, size_t errlen)
{
    a->waiters = kc_map_new();
    if (uv_timer_init(a->app.loop, &a->wait_timer) != 0) {
        kc_strlcpyf(err, errlen, "cannot make the outcome timer");
        return -1;
    }
    a->wait_timer.data = a;
    if (uv_timer_start(&a->wait_timer, on_sweep, SWEEP_MS, SWEEP_MS) != 0) {
        kc_strlcpyf(err, errlen, "cannot start the outcome timer");
        return -1;
    }
    a->listen_pg = kc_pg_new(a->app.loop, a->cfg.pg.dsn, a->app.health, "postgres_listen");
    if (kc_pg_listen(a->listen_pg, CHANNEL, on_notify, a) != 0) {
        kc_strlcpyf(err, errlen, "cannot LISTEN on %s", CHANNEL);
        return -1;
    }
    a->revoked = kc_revoked_new(a->app.loop, a->listen_pg, a->app.health, NULL, NULL, err, errlen);
    if (!a->revoked)
        return -1;
    kc_kafka_opts_t ko = {.conn = &a->cfg.kafka,
                          .health = a->app.health,
                          .metrics = a->app.metrics,
                          .client_id = "api-producer",
                          .check_name = "kafka_producer",
                          .dr_msg_cb = on_delivery,
                          .opaque = a};
    const char *overrides[] = {"linger.ms", "1", NULL};
    rd_kafka_t *rk = kc_kafka_producer_new(&ko, overrides, err, errlen);
    if (!rk || kc_kafka_bind(&a->producer, a->app.loop, rk, on_producer_events, a, err, errlen))
        return -1;
    a->command_schema_id = kc_schemas_current_id(a->schemas, "chat.commands-value");
    if (a->command_schema_id < 0) {
        kc_strlcpyf(err, errlen, "no schema for chat.commands-value");
        return -1;
    }
    a->commands_rkt = kc_kafka_topic_hold(rk, a->cfg.commands_topic, 15000, err, errlen);
    if (!a->commands_rkt)
        return -1;
    a->commands_sent = kc_metrics_counter(a->app.metrics, "kchat_api_commands_total",
                                          "Commands sent to chat.commands.", NULL);
    a->outcomes_timeout =
        kc_metrics_counter(a->app.metrics, "kchat_api_command_timeouts_total",
                           "Commands whose outcome did not arrive within command-timeout-ms.",
                           NULL);
    return 0;
}

/* Called once no request is left (so no waiter either): closes what this module opened. */
void api_commands_close(api_t *a)
{
    if (a->wait_timer.loop && !uv_is_closing((uv_handle_t *)&a->wait_timer))
        uv_close((uv_handle_t *)&a->wait_timer, NULL);
    kc_revoked_close(a->revoked);
    a->revoked = NULL;
    kc_pg_close(a->listen_pg);
    a->listen_pg = NULL;
    kc_map_destroy(a->waiters, NULL);
    a->waiters = NULL;
}

int api_command(api_req_t *r, kc_chat_command_t *cmd, api_outcome_fn on_outcome)
{
    api_t *a = r->a;
    if (!kc_pg_listening(a->listen_pg)) {
        api_error(r, 503, "unavailable", "outcomes cannot be awaited now (database)");
        return -1;
    }
    kc_uuid4(r->command_id);
    cmd->command_id = kc_str(r->command_id);
    cmd->convo_id = kc_str(r->convo_id);
    cmd->sender_id = kc_str(r->user_id);
    cmd->issued_at = kc_now_ms();
    cmd->origin = kc_str(a->origin);
    kc_buf_t out = {0};
    kc_chat_command_encode(&out, a->command_schema_id, cmd);
    api_waiter_t *w = kc_xcalloc(1, sizeof(*w));
    memcpy(w->command_id, r->command_id, sizeof(w->command_id));
    w->r = r;
    w->deadline_ns = kc_mono_ns() + (uint64_t)a->cfg.command_timeout_ms * 1000000ull;
    char *opaque = kc_xstrdup(r->command_id);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        a->producer.rk, RD_KAFKA_V_RKT(a->commands_rkt),
        RD_KAFKA_V_KEY(r->convo_id, strlen(r->convo_id)), RD_KAFKA_V_VALUE(out.data, out.len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    kc_buf_free(&out);
    if (err) {
        free(opaque);
        free(w);
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("command_id", r->command_id)),
                  "cannot produce a command: %s", rd_kafka_err2str(err));
        api_error(r, 503, "unavailable", "the change cannot be sent now");
        return -1;
    }
    kc_counter_inc(a->commands_sent);
    (void)kc_map_put(a->waiters, w->command_id, strlen(w->command_id), w);
    kc_list_push_back(&a->wait, &w->link);
    r->waiter = w;
    r->on_free = api_command_forget;
    r->on_outcome = on_outcome;
    return 0;
}

int api_reject_status(const char *reason)
{
    static const struct {
        const char *reason;
        int status;
    } map[] = {
        {"not_member", 404},         {"no_such_conversation", 404}, {"conversation_exists", 409},
        {"invalid", 400},            {"too_large", 400},            {"no_such_message", 400},
        {"too_old", 409},            {"not_author", 403},           {"deleted", 409},
        {"direct_conversation", 409}, {"not_allowed", 403},         {"no_such_member", 404},
        {"last_owner", 409},         {"too_many_reactions", 409},
    };
    for (size_t i = 0; i < KC_ARRAY_LEN(map); i++)
        if (strcmp(map[i].reason, reason) == 0)
            return map[i].status;
    return 409;
}
