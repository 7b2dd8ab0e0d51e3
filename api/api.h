/* api.h - kchat-api's shared state and the modules' entry points.
 *
 * The pipeline of one request:
 *   http.c           routes it, checks the access token, parses the JSON body, and answers
 *                    it (errors, metrics by route and status); every request is an api_req_t
 *   auth.c           register / login / refresh: Argon2id off the loop, tokens; the guessing
 *                    throttle (Redis) and the fair queue of password work (throttle.c)
 *   conversations.c  create, list, get, rename and topic, add and remove members, roles,
 *                    read marker
 *   users.c          find a user by exact username, or read one by id
 *   messages.c       history pages (Redis tail, else Postgres) and search (Postgres); edits,
 *                    deletes and reactions of one message (reaction.c: the pure part)
 *   presign.c        attachments: presigned S3 PUT URLs (SigV4, lib/s3.c) and their uploads
 *   attachments.c    ... checked against the stored object, thumbnails, downloads for
 *                    members, and the sweep of orphaned and deleted files
 *   mutes.c          a member's mute of a conversation (PUT .../mute, PATCH .../settings)
 *   push.c           Web Push: the VAPID public key, the browsers' subscriptions
 *   commands.c       changes become Commands on chat.commands; the answer waits for the
 *                    projector's NOTIFY kchat_applied with the command's id
 * Everything runs on the loop thread except the password hashing and the thumbnails
 * (libuv's thread pool).
 */
#ifndef KCHAT_API_H
#define KCHAT_API_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "kchat/app.h"
#include "kchat/avro.h"
#include "kchat/chat.h"
#include "kchat/httpd.h"
#include "kchat/jwt.h"
#include "kchat/kafka.h"
#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/revoked.h"
#include "kchat/s3.h"
#include "kchat/util.h"
#include "kchat/webpush.h"
#include "reaction.h"
#include "request.h"
#include "throttle.h"
#include "username.h"

struct kc_schemas;

#define API_MAX_POOL 16
#define API_TITLE_MAX 256   /* bytes, as the processor allows */
#define API_TOPIC_MAX 1024  /* bytes, as the processor allows */
#define API_ID_MAX 128      /* the processor's default max-id-bytes */
#define API_PASSWORD_MIN 8
#define API_PASSWORD_MAX 1024
#define API_QUERY_MAX 256 /* search text, bytes */

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    kc_redis_cfg_t redis;
    char *listen_addr;
    long long port;
    long long max_body_bytes;
    long long max_connections;
    long long max_connections_per_address;
    long long request_timeout_s;
    long long idle_timeout_s;
    long long pg_pool_size;
    char *instance_id;
    char *schemas_dir;
    kc_sr_cfg_t schema_registry;
    char *commands_topic;
    char *accounts_topic;
    char *audit_topic;
    long long audit_retention_days;
    long long command_timeout_ms;
    char *jwt_private_key;
    kc_jwt_cfg_t jwt;
    long long access_ttl_s;
    long long refresh_ttl_s;
    long long pwhash_max_inflight;
    long long pwhash_opslimit;
    long long pwhash_memlimit_kib;
    long long pwhash_queue_max;
    long long pwhash_per_address;
    char *trusted_proxies;
    long long login_fails_per_pair;
    long long login_fails_per_address;
    long long login_fails_per_account;
    long long login_account_pace_ms;
    long long login_delay_max_s;
    long long login_fail_window_s;
    long long register_per_address_hour;
    long long user_lookups_per_minute;
    long long max_members;
    char *s3_endpoint;
    char *s3_bucket;
    char *s3_region;
    char *s3_access_key;
    char *s3_secret_key;
    long long presign_ttl_s;
    long long attachment_max_bytes;
    char *attachment_types;
    long long attachment_send_window_s;
    long long attachment_pending_max;
    long long attachment_orphan_grace_s;
    long long attachment_sweep_s;
    long long image_max_bytes;
    long long image_max_pixels;
    long long download_ttl_s;
    char *vapid_public_key;
    int push_allow_http;
    long long push_subscriptions_max;
} api_cfg_t;

typedef struct api api_t;
typedef struct api_req api_req_t;

/* A change waiting for its outcome (commands.c). */
typedef struct api_waiter api_waiter_t;
/* A relay of an outbox table to a topic (relay.c). */
typedef struct api_relay api_relay_t;
/* outcome: the event's type ("ConversationCreated", "CommandRejected", ...), with reason and
 * message for a rejection; type NULL when the wait failed (err says why, status is the HTTP
 * status to answer: 503 not sent, 504 deadline). */
typedef void (*api_outcome_fn)(api_req_t *r, const char *type, const char *reason,
                               const char *message, int status, const char *err);

struct api {
    api_cfg_t cfg;
    kc_app_t app;
    kc_httpd_t *http;
    kc_kafka_bound_t producer;
    rd_kafka_topic_t *commands_rkt; /* held: see kc_kafka_topic_hold */
    kc_pg_t *pool[API_MAX_POOL];
    int npool;
    unsigned next_pg;
    kc_pg_t *listen_pg; /* LISTEN kchat_applied, kchat_account_outbox, kchat_user_revoked; the
                         * account relay */
    api_relay_t *accounts; /* account_outbox -> chat.accounts */
    api_relay_t *audit;    /* audit_log -> chat.audit */
    /* audit.c */
    kc_counter_t *audit_errors;
    kc_ratelog_t audit_rl;
    char key_fingerprint[65]; /* of the signing key */
    int key_recorded;
    size_t audit_pending; /* rows sent to Postgres, not yet written: the drain waits for them */
    uv_timer_t audit_timer, audit_first;
    int audit_timers;
    kc_revoked_t *revoked; /* deactivated accounts, whose access tokens are refused */
    kc_redis_t *redis;
    struct kc_schemas *schemas;
    int32_t command_schema_id; /* the id commands are written with */
    kc_jwt_key_t *signer;
    kc_jwt_key_t *verifier;
    /* presign.c, attachments.c */
    kc_s3_cfg_t s3cfg;
    kc_s3_t *s3; /* NULL without an object store */
    uv_timer_t sweep_timer;
    int sweeping;
    char origin[80]; /* "api:<instance>" */
    /* push.c */
    kc_vapid_t *vapid; /* NULL without --vapid-public-key: no Web Push */
    /* commands.c */
    kc_map_t *waiters; /* command_id -> api_waiter_t */
    kc_list_t wait; /* the api_waiter_t, in deadline order */
    uv_timer_t wait_timer;
    /* auth.c */
    api_addrset_t trusted_proxies;
    api_fq_t *pwq; /* the password work, queued and running */
    int pumping;
    kc_ratelog_t refusal_log, redis_log;
    kc_gauge_t *pwhash_queued_gauge;
    kc_counter_t *pwhash_jobs;
    /* lifecycle */
    int inflight; /* requests not yet answered */
    int stopping;
    kc_daemon_t *stop_daemon;
    void (*finish_stop)(api_t *a);
    uv_timer_t drain_timer;
    int draining; /* drain_timer is running */
    kc_counter_t *requests;
    kc_histogram_t *latency;
    kc_counter_t *commands_sent;
    kc_counter_t *outcomes_timeout;
    kc_gauge_t *pwhash_gauge;
    kc_counter_t *conns_refused, *requests_cut; /* the HTTP server's, added at each scrape */
    unsigned long conns_refused_seen, requests_cut_seen;
};

/* The User-Agent kept for the audit log: its first bytes, whole characters only. */
#define API_USER_AGENT_MAX 200

struct api_req {
    api_t *a;
    /* The request as the server read it: valid only while the handler runs, before its first
     * wait (what a later step needs is copied into r or its state: client, user_agent). */
    const kc_http_req_t *http;
    kc_http_pending_t *pending;
    const char *route; /* the route's template, the metrics label */
    uint64_t t0_ns;
    int authed;
    char user_id[KC_JWT_SUB_MAX + 1];
    char username[KC_JWT_NAME_MAX + 1];
    char convo_id[API_ID_MAX + 1]; /* the :id of the path (a conversation's, a user's or a push
                                    * subscription's), checked */
    char member_id[API_ID_MAX + 1]; /* the :user_id of the path (a member's id), checked */
    long long seq;                 /* the :seq of the path (a seq_no), checked */
    char client[KC_HTTP_PEER_MAX]; /* the client's address (see api_client_addr) */
    char user_agent[API_USER_AGENT_MAX + 1]; /* api_keep_user_agent's copy ("" when none) */
    int client_is_proxy;           /* ... is one of --trusted-proxies: no per-address limits */
    cJSON *body;                   /* the parsed JSON body, when the route takes one */
    /* per-route state */
    char command_id[40];
    api_waiter_t *waiter;
    api_outcome_fn on_outcome;
    void *state;
    void (*state_free)(void *);
    /* Set by the module that holds on to r (commands.c's waiter): runs when r is freed. */
    void (*on_free)(api_req_t *r);
};

/* http.c */
void api_handle(void *arg, const kc_http_req_t *req, kc_http_resp_t *resp);
/* Answers r (a JSON body, taken) and frees it. */
void api_reply(api_req_t *r, int status, kc_buf_t *body);
/* Counts one event of a flood (a refusal, an outage) and logs it at most once a second
 * through rl, with two fields and how many lines were suppressed since the last. */
void api_count_and_log(kc_counter_t *counter, kc_ratelog_t *rl, const char *what,
                       const char *k1, const char *v1, const char *k2, const char *v2);
/* Answers a query of one JSON column: its one row (with status), 404 not_found `missing`
 * without a row, or 503 "the <what> could not be read" when the query failed. */
void api_reply_row(api_req_t *r, const PGresult *res, const char *err, int status,
                   const char *what, const char *missing);
void api_error(api_req_t *r, int status, const char *code, const char *message);
/* Copies the User-Agent's first API_USER_AGENT_MAX bytes into r->user_agent, a character the
 * cut split dropped, "(not UTF-8)" for a value that is not: for the handlers whose audit
 * events carry it, at their start (r->http is gone after the first wait). */
void api_keep_user_agent(api_req_t *r);
/* A refusal to come back later: api_error with a Retry-After of retry_after_s (0: none); a
 * 5xx with one is not logged here (its module logs refusals at a bounded rate). */
void api_refuse(api_req_t *r, int status, const char *code, const char *message,
                int retry_after_s);
/* A connection of the pool that is up (round robin), or NULL. */
kc_pg_t *api_pg_conn(api_t *a);
/* A Postgres query for r on the pool; on failure to queue, answers 503 itself and returns -1. */
int api_pg(api_req_t *r, const char *sql, int nparams, const char *const *params, kc_pg_cb cb);
/* The JSON body's string field (NULL if absent or not a string); a string holding a NUL is
 * refused by the parser already. */
const char *api_json_str(const cJSON *obj, const char *name);
/* Parses a decimal integer query value in [min, max]; absent leaves *out. 0, or -1 after
 * answering 400. */
int api_query_int(api_req_t *r, const char *name, long long min, long long max, long long *out,
                  int *present);
/* Checks a JSON array of user ids (1..max, each a valid id); fills a malloc'd array of
 * pointers into the JSON (dedup not done). 0, or -1 after answering 400. */
int api_member_list(api_req_t *r, const cJSON *arr, size_t max, const char ***out, size_t *n);

/* Stops taking requests; finish (main.c's, which closes everything) runs once none is left
 * in flight and the last answers are out. */
void api_stop_when_drained(api_t *a, kc_daemon_t *d, void (*finish)(api_t *a));

/* auth.c */
int api_auth_init(api_t *a, char *err, size_t errlen);
/* Refuses (503) the password work still waiting: called when the server stops. */
void api_auth_stop(api_t *a);
void api_auth_close(api_t *a);
void api_auth_register(api_req_t *r);
/* A fixed-window counter in Redis shared by the replicas: key may take limit requests per
 * window_ms; cb gets an integer reply, 0 to go on or the ms until the window ends. -1 when
 * Redis is not connected (cb is not called). */
int api_throttle_window(api_t *a, const char *key, long long limit, long long window_ms,
                        kc_redis_cb cb, void *arg);
void api_auth_login(api_req_t *r);
void api_auth_refresh(api_req_t *r);
void api_auth_deactivate(api_req_t *r);

/* audit.c: api_audit records an action (actor_id, target may be NULL; detail a JSON object
 * or NULL for {}), without waiting; api_audit_detail appends "key":"value" to a JSON object
 * being built in b, and api_audit_detail_end closes it ({} when empty) and returns it. */
int api_audit_start(api_t *a, char *err, size_t errlen);
void api_audit_close(api_t *a);
void api_audit(api_t *a, const char *action, const char *actor_id, const char *target,
               const char *source, const char *detail);
void api_audit_detail(kc_buf_t *b, const char *key, const char *value);
const char *api_audit_detail_end(kc_buf_t *b);
void api_audit_query(api_req_t *r);

/* users.c */
void api_users_find(api_req_t *r);
void api_users_get(api_req_t *r);
void api_users_init(api_t *a);
void api_users_me(api_req_t *r);
void api_users_update_me(api_req_t *r);

/* commands.c */
int api_commands_init(api_t *a, char *err, size_t errlen);
void api_commands_close(api_t *a);
/* Relays of outbox tables to topics (relay.c): started after api_commands_init (they use
 * the producer and listen_pg), each with its spec and topic; closed before listen_pg is; freed
 * before the producer is. Delivery reports whose opaque is a relay (api_relay_owns) go to
 * api_relay_delivered. */
typedef struct {
    const char *what;     /* "account events": for logs and the metrics' help */
    const char *table;    /* the outbox, for logs */
    const char *channel;  /* NOTIFYed when rows are added */
    const char *subject;  /* the records' schema subject (the newest version is written) */
    const char *lock;     /* the relay's advisory lock key, a decimal: one relay per database */
    const char *rows_sql; /* SELECT no (bigint, the order), key (text), event (Avro JSON)
                           * FROM the rows still to relay */
    const char *done_sql; /* marks relayed rows done: $1 the bigint[] of their numbers */
    const char *metric;   /* name prefix: _events_total, _relay_errors_total, _relay_leader */
} api_relay_spec_t;
extern const api_relay_spec_t API_RELAY_ACCOUNTS;
extern const api_relay_spec_t API_RELAY_AUDIT;
int api_relay_start(api_t *a, const api_relay_spec_t *spec, const char *topic,
                    api_relay_t **out, char *err, size_t errlen);
int api_relay_owns(const api_relay_t *x, const rd_kafka_message_t *m);
void api_relay_delivered(api_relay_t *x, const rd_kafka_message_t *m);
void api_relay_close(api_relay_t *x);
void api_relay_free(api_relay_t *x);
/* Sends cmd (its kind and body filled by the caller; the envelope, r's convo_id and user,
 * is filled here) and waits for its outcome, which calls on_outcome. Returns 0, or -1 after
 * answering r (503). */
int api_command(api_req_t *r, kc_chat_command_t *cmd, api_outcome_fn on_outcome);
/* Drops r's waiter (r is being answered another way): r->on_free while it waits. */
void api_command_forget(api_req_t *r);
/* HTTP status and code for a CommandRejected reason. */
int api_reject_status(const char *reason);

/* A timestamptz as the REST API writes times: ISO 8601 in UTC with milliseconds, the form
 * the projector writes into the Redis read model ("2026-11-27T09:30:00.123Z"). */
#define API_ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The fields of a message of the read model (x: the rm.messages row's alias) as
 * json_build_object's arguments, the same fields as the projector's Redis copy. */
#define API_MSG_FIELDS(x)                                                                        \
    "'convo_id', " x ".convo_id, 'seq_no', " x ".seq_no, 'server_msg_id', " x                    \
    ".server_msg_id, 'sender_id', " x ".sender_id, 'client_msg_id', " x                           \
    ".client_msg_id, 'content', " x ".content, 'content_type', " x ".content_type, "              \
    "'created_at', " API_ISO(x ".created_at") ", 'reply_to', " x ".reply_to, "                   \
    "'attachments', CASE WHEN " x ".deleted_at IS NULL AND " x ".attachments IS NOT NULL "       \
    "THEN " x ".attachments ELSE '[]'::jsonb END, "                                             \
    "'edited_at', " API_ISO(x ".edited_at")                                                      \
    ", 'edit_count', " x ".edit_count, 'deleted_at', " API_ISO(x ".deleted_at")

/* A message as a preview (a conversation's last_message): without its reactions. */
#define API_MSG_JSON(x) "json_build_object(" API_MSG_FIELDS(x) ")"

/* The reactions of message x (an alias with convo_id and seq_no) as [{emoji, count}]: the
 * most chosen first, ties by the emoji's bytes (the order of ReactionChanged.counts and of
 * the Redis copy); [] when none. */
#define API_REACTIONS_JSON(x)                                                                     \
    "(SELECT coalesce(json_agg(json_build_object('emoji', rc.emoji, 'count', rc.n) "            \
    "                 ORDER BY rc.n DESC, rc.emoji COLLATE \"C\"), '[]'::json) "                 \
    " FROM (SELECT rx.emoji, count(*) AS n FROM rm.reactions rx "                               \
    "       WHERE rx.convo_id = " x ".convo_id AND rx.seq_no = " x ".seq_no "                    \
    "       GROUP BY rx.emoji) rc)"

/* The reaction of user (an SQL expression) to message x, or NULL. */
#define API_MY_REACTION(x, user)                                                                  \
    "(SELECT ry.emoji FROM rm.reactions ry WHERE ry.convo_id = " x ".convo_id "                 \
    " AND ry.seq_no = " x ".seq_no AND ry.user_id = " user ")"

/* A message as history, search and the edits' answers give it to user (an SQL expression):
 * with its reactions and the user's own (my_reaction), as the Redis tail does
 * (api_tail_message). */
#define API_MSG_JSON_FOR(x, user)                                                                 \
    "json_build_object(" API_MSG_FIELDS(x) ", 'reactions', " API_REACTIONS_JSON(x)               \
    ", 'my_reaction', " API_MY_REACTION(x, user) ")"

/* conversations.c */
void api_convo_create(api_req_t *r);
void api_convo_list(api_req_t *r);
void api_convo_get(api_req_t *r);
void api_convo_add_members(api_req_t *r);
/* PATCH /conversations/:id {title?, topic?}: UpdateConversation. */
void api_convo_update(api_req_t *r);
/* DELETE /conversations/:id/members/:user_id: RemoveMembers of one user (oneself: leave). */
void api_convo_remove_member(api_req_t *r);
/* PATCH /conversations/:id/members/:user_id {role}: SetRole. */
void api_convo_set_role(api_req_t *r);
void api_convo_read(api_req_t *r);

/* mutes.c: PUT /conversations/:id/mute {for_s?} and DELETE of it; PATCH
 * /conversations/:id/settings {muted_until?, muted?}, the same mute by a time. */
void api_convo_mute(api_req_t *r);
void api_convo_unmute(api_req_t *r);
void api_convo_settings(api_req_t *r);
/* The caller's mute of a conversation (convo and user: SQL expressions of its id and the
 * caller's) as two fields of a conversation body: muted, muted_until (null: until unmuted,
 * or not muted). */
#define API_MUTE_FIELDS(convo, user)                                                              \
    "'muted', EXISTS (SELECT 1 FROM mutes mu WHERE mu.user_id = " user " "                        \
    "                 AND mu.convo_id = " convo " "                                               \
    "                 AND (mu.muted_until IS NULL OR mu.muted_until > now())), "                   \
    "'muted_until', (SELECT " API_ISO("mu.muted_until") " FROM mutes mu "                       \
    "                WHERE mu.user_id = " user " AND mu.convo_id = " convo " "                    \
    "                AND mu.muted_until > now())"

/* messages.c */
void api_messages_list(api_req_t *r);
void api_message_edit(api_req_t *r);
void api_message_delete(api_req_t *r);
/* PUT /conversations/:id/messages/:seq/reaction {emoji} and DELETE of it: SetReaction. */
void api_message_react(api_req_t *r);
void api_message_unreact(api_req_t *r);
void api_search(api_req_t *r);

/* presign.c */
/* Fills a->s3cfg and checks the s3-* options (all or none). 0, or -1 with err. */
int api_presign_check(api_t *a, char *err, size_t errlen);
/* Whether ctype is in list (comma-separated media types; "type/" and a star takes any
 * subtype). */
int api_type_allowed(const char *list, const char *ctype);
void api_presign(api_req_t *r);

/* push.c */
/* Loads --vapid-public-key when it is set (a->vapid; NULL otherwise). 0, or -1 with err. */
int api_push_init(api_t *a, char *err, size_t errlen);
void api_push_close(api_t *a);
/* GET /push/vapid-public-key (no token): {public_key}, or 503 push_unavailable. */
void api_push_vapid_key(api_req_t *r);
/* POST /push/subscriptions {endpoint, keys: {p256dh, auth}}: 201 or 200 {id}. */
void api_push_subscribe(api_req_t *r);
/* GET /push/subscriptions: the caller's, {subscriptions: [{id, endpoint, created_at}]}. */
void api_push_list(api_req_t *r);
/* DELETE /push/subscriptions/:id: 204, or 404 when it is not the caller's. */
void api_push_unsubscribe(api_req_t *r);

/* attachments.c */
/* Starts the S3 client and the sweep when there is an object store. 0, or -1 with err. */
int api_attachments_start(api_t *a, char *err, size_t errlen);
void api_attachments_close(api_t *a);
/* POST /attachments/:id/complete: checks the stored object, makes an image's thumbnail. */
void api_attachment_complete(api_req_t *r);
/* GET /conversations/:id/attachments/:att_id: presigned GET URLs, for members. */
void api_attachment_get(api_req_t *r);

#endif
