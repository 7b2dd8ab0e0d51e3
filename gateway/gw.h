/* gw.h - the gateway's shared state and the interfaces between its modules, listed from the
 * bottom up: each calls only those above it in this list, never one below.
 *
 *   out.c         the outbound half: frames, the send queue, gw_send, error frames, closes,
 *                 the JSON and counter helpers (a leaf: it calls no other module)
 *   parse.c       a client frame (JSON) read and checked into a gw_in_t (pure)
 *   conn.c        who is connected: connections by id, users and their connections, rate
 *                 limits, the route registry kchat:route:<user_id> in Redis
 *   commands.c    message.send / message.read -> Commands on chat.commands; pending acks
 *   presence.c    presence, typing and delivery receipts over Redis (keys + pub/sub)
 *   sync.c        backfill of a conversation from the Postgres read model (rm.messages)
 *   deliveries.c  chat.deliveries (this slot) -> acks and event frames to connections
 *   frames.c      a parsed client frame handed to the module that serves it
 *   ws.c          sockets: libwebsockets on the daemon's libuv loop, the handshake (token,
 *                 Origin), message assembly and limits, writing the queue, a connection's
 *                 life (online, offline)
 *   tick.c        the clock: ack expiry, the sweep of sockets, route refresh, presence sweep
 *   main.c        options, start-up, metrics, the drain on SIGTERM
 *
 * out.c and parse.c make the kchat_gateway_core library that the unit tests link.
 *
 * Everything runs on the one loop thread: no locks. A connection is known to the other
 * modules by its id (gw_conn_find), never by a pointer kept across loop turns, so a closed
 * connection is simply not found.
 */
#ifndef KCHAT_GW_H
#define KCHAT_GW_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

#include "kchat/app.h"
#include "kchat/avro.h"
#include "kchat/buf.h"
#include "kchat/chat.h"
#include "kchat/jwt.h"
#include "kchat/kafka.h"
#include "kchat/list.h"
#include "kchat/log.h"
#include "kchat/map.h"
#include "kchat/pg.h"
#include "kchat/redis.h"
#include "kchat/revoked.h"

#define GW_ID_MAX 128         /* ids (conversations, users, client message ids) */
#define GW_MAX_SUBSCRIBE 1000 /* user ids in one presence.subscribe, and per connection */
#define GW_TITLE_MAX 256      /* conversation.update: the processor's limits */
#define GW_TOPIC_MAX 1024

/* Close codes of our own (4000-4999 is for applications, RFC 6455 7.4.2). Every code the
 * gateway closes with is listed in out.c's close_codes. */
#define GW_CLOSE_SLOW_CONSUMER 4008 /* its send queue grew past max-queued-bytes */
#define GW_CLOSE_TOKEN_EXPIRED 4001 /* the token the connection was opened with expired */
#define GW_CLOSE_REVOKED 4003       /* its account was deactivated */
#define GW_JWT_LEEWAY_S 30          /* clock skew allowed on exp and nbf */

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_redis_cfg_t redis;
    kc_pg_cfg_t pg;
    long long slot;
    char *deliveries_topic;
    char *commands_topic;
    char *schemas_dir;
    kc_sr_cfg_t schema_registry;
    char *listen_addr;
    long long listen_port;
    char *tls_cert;
    char *tls_key;
    kc_jwt_cfg_t jwt;
    char *allowed_origins;
    long long max_header_bytes;
    long long max_frame_bytes;
    long long rx_buffer_bytes;
    long long max_content_bytes;
    long long max_queued_bytes;
    long long max_connections;
    long long max_conns_per_user;
    long long max_inflight;
    long long rate_conn;
    long long rate_user;
    long long typing_rate;
    long long typing_ttl_ms;
    long long ping_interval_s;
    long long idle_timeout_s;
    long long route_ttl_ms;
    long long ack_timeout_ms;
    long long sync_max_messages;
} gw_cfg_t;

typedef struct gw_conn gw_conn_t;
typedef struct gw_user gw_user_t;
typedef struct gw_frame gw_frame_t;

/* A text frame to send, shared by every connection it is queued on (fan-out builds it
 * once). data has LWS_PRE bytes of headroom before the payload, as lws_write wants. */
struct gw_frame {
    unsigned refs;
    size_t len;
    unsigned char data[];
};

typedef struct {
    kc_slist_node_t link;
    gw_frame_t *frame;
} gw_qnode_t;

/* A connection's send queue: frames (gw_qnode_t) in the order they go out, and their
 * bytes. */
typedef struct {
    kc_slist_t frames;
    size_t bytes;
} gw_queue_t;

/* A token bucket: `rate` tokens a second, at most `burst`. */
typedef struct {
    double tokens;
    uint64_t at_ns;
} gw_bucket_t;

/* One typing indicator this connection has started and not stopped. */
typedef struct gw_typing {
    kc_list_node_t link; /* on the connection's typing list */
    uint64_t expires_ns;
    uint64_t published_ns;
    char convo_id[];
} gw_typing_t;


struct gw_conn {
    /* Every socket has one of these for its whole life (lws' per-session storage), idle or
     * not: keep it small, and allocate what only an active socket needs on first use. */
    uint64_t id;
    struct lws *wsi;
    gw_user_t *user;
    gw_conn_t *next_of_user;
    long long token_exp; /* seconds since the epoch */
    /* the message being assembled from pieces and fragments (empty between messages) */
    kc_buf_t rx;
    gw_queue_t q; /* the send queue */
    /* keepalive (gw_ws_keepalive): the last frame or pong received */
    uint64_t last_rx_ns;
    gw_bucket_t rate;
    gw_bucket_t typing_rate;
    kc_list_t typing; /* of gw_typing_t */
    char **watching; /* presence.subscribe'd user ids */
    size_t nwatching;
    struct gw_live *live;     /* recent live seq_nos, for the dedupe of a sync (sync.c) */
    const char *close_reason; /* a string literal (gw_close) */
    int close_code;           /* set: close with it at the next writeable callback */
    unsigned inflight;
    unsigned char syncs; /* sync queries in flight (sync.c) */
    /* a ping to write, a ping written and not answered yet, dropped as dead */
    unsigned established : 1, ping_due : 1, ping_sent : 1, dropped : 1;
    char sub[KC_JWT_SUB_MAX + 1];
};

struct gw_user {
    char *id;
    gw_conn_t *conns;
    size_t nconns;
    gw_bucket_t rate;
    gw_user_t *ring_prev, *ring_next; /* every user, in the order the route refresh visits */
};

typedef struct gw_metrics {
    kc_gauge_t *connections;
    kc_counter_t *accepted, *refused_token, *refused_origin, *refused_full, *refused_per_user;
    kc_histogram_t *ack_latency, *delivery_latency;
    kc_counter_t *queue_drops, *slow_closes, *sync_pages_cut;
    kc_counter_t *deliveries_consumed, *delivery_errors;
    kc_counter_t *commands_produced, *produce_errors;
    kc_counter_t *pubsub_in, *pubsub_errors, *presence_refused;
    kc_counter_t *delivered_dropped, *delivered_errors;
    /* Counters with one label, looked up once per label value (frames by type, acks by
     * status are counted per frame: the registry's lookup renders and compares labels). */
    kc_map_t *frames_in, *frames_out, *acks;
} gw_metrics_t;


typedef struct gw_pending gw_pending_t;
typedef struct gw_watch gw_watch_t;

typedef struct gw {
    gw_cfg_t cfg;
    kc_app_t app;
    kc_kafka_bound_t consumer;
    kc_kafka_bound_t producer;
    rd_kafka_topic_t *commands_rkt; /* held: see kc_kafka_topic_hold */
    kc_redis_t *redis;
    kc_redis_sub_t *sub;
    kc_pg_t *pg;
    kc_schemas_t *schemas;
    int32_t command_schema_id; /* the id commands are written with */
    kc_jwt_key_t *jwt;
    struct lws_context *lws;
    int lws_destroyed;
    char origin[32]; /* "gateway:<slot>" */
    char slot_channel[48];
    char **origins; /* the allow-list, split */
    size_t norigins;
    /* conn.c */
    kc_map_t *conns; /* id (8 bytes) -> gw_conn_t */
    kc_map_t *users; /* user id -> gw_user_t */
    kc_revoked_t *revoked; /* deactivated accounts: their tokens refused, their sockets closed */
    uint64_t next_conn_id;
    size_t nconns;
    int accepting;
    uv_timer_t tick; /* tick.c */
    uint64_t next_presence_sweep_ns;
    /* Routes are refreshed a slice of the users each tick, all of them once per
     * route-ttl-ms / 3: never the whole gateway's users in one burst to Redis. */
    gw_user_t *route_ring, *route_cursor;
    kc_ratelog_t redis_log; /* Redis errors are logged at most once a second */
    /* commands.c */
    kc_map_t *pending; /* sender \0 client_msg_id -> FIFO of gw_pending_t */
    kc_list_t pending_all; /* of gw_pending_t, in creation order, for expiry */
    uint64_t next_pending_seq;
    /* presence.c */
    kc_map_t *watches; /* user id -> gw_watch_t: who on this gateway watches that user */
    kc_buf_t receipts[KC_CHAT_MAX_SLOTS]; /* receipts gathered for each slot this turn */
    size_t turn_bytes; /* queued by the current deliveries turn (deliveries.c) */
    /* delivered.c */
    kc_map_t *delivered; /* convo \0 user -> the highest seq_no delivered, not yet written */
    kc_map_t *writing;   /* the marks of the write in flight, or NULL */
    /* main.c */
    gw_metrics_t m;
    int stopping;
    uv_timer_t drain_timer;
    int drain_timer_open;
    int tick_open;
} gw_t;

/* ---- out.c: the outbound half ---- */
gw_frame_t *gw_frame_new(const char *json, size_t len);
/* A frame of b's text (copied); b is left empty but keeps its memory (for the next frame):
 * the caller frees it. */
gw_frame_t *gw_frame_from_buf(kc_buf_t *b);
void gw_frame_unref(gw_frame_t *f);
/* Appends f (taking a reference) unless the queue would then hold more than max_bytes:
 * 0, or -1 and nothing queued. */
int gw_queue_push(gw_queue_t *q, gw_frame_t *f, size_t max_bytes);
/* The frame to write next, or NULL when the queue is empty. */
gw_frame_t *gw_queue_peek(const gw_queue_t *q);
/* Drops the frame at the head (written), releasing the queue's reference. */
void gw_queue_pop(gw_queue_t *q);
void gw_queue_clear(gw_queue_t *q);
/* Queues f (a reference is taken); the type names the frames_out series. Returns 0, or -1
 * when the connection is closing or its queue is full (then it is closed as a slow
 * consumer). */
int gw_send(gw_t *g, gw_conn_t *c, gw_frame_t *f, const char *type);
/* Builds the text of kc_buf_t and sends it to one connection. */
int gw_send_buf(gw_t *g, gw_conn_t *c, kc_buf_t *b, const char *type);
/* Appends {"type":"error","error":{"code","message"}, ...extra} to b (extra: JSON members
 * without braces, or NULL). */
void gw_error_frame(kc_buf_t *b, const char *code, const char *message, const char *extra);
/* Sends the error frame of gw_error_frame to c. */
void gw_send_error(gw_t *g, gw_conn_t *c, const char *code, const char *message, const char *extra);
/* Closes c with code and reason at its next writeable callback (a timeout kills it if the
 * peer never reads). reason is kept, not copied: a string literal of at most 123 bytes. */
void gw_close(gw_t *g, gw_conn_t *c, int code, const char *reason);
/* Counts a close the gateway made, by its code. */
void gw_count_close(gw_t *g, int code);
/* Creates the kchat_gateway_closes_total series of every code the gateway closes with, at 0,
 * so that they are there before the first close. */
void gw_count_close_init(gw_t *g);
/* Appends `"key":"value"` (escaped) to b, with a leading comma when comma is set. */
void gw_json_kv(kc_buf_t *b, int comma, const char *key, const char *val, size_t len);
/* The counter name{label=value}, from a cache of g->m (value is kept as the key). */
kc_counter_t *gw_counter(gw_t *g, kc_map_t *cache, const char *name, const char *help,
                         const char *label, const char *value);

/* ---- parse.c ---- */
typedef enum {
    GW_IN_SEND,
    GW_IN_READ,
    GW_IN_TYPING_START,
    GW_IN_TYPING_STOP,
    GW_IN_SUBSCRIBE,
    GW_IN_SYNC,
    GW_IN_EDIT,
    GW_IN_DELETE,
    GW_IN_CONVO_UPDATE, /* conversation.update {convo_id, title?, topic?} */
    GW_IN_MEMBER_REMOVE, /* member.remove {convo_id, user_id}: own id, leave */
    GW_IN_MEMBER_ROLE,   /* member.role {convo_id, user_id, role} */
    GW_IN_MEMBER_ADD,    /* member.add {convo_id, user_ids} */
    GW_IN_REACT,         /* message.react {convo_id, seq_no, emoji (null: remove)} */
} gw_in_kind_t;

/* A client frame, read. Its strings point into json (freed by gw_in_free). */
typedef struct {
    cJSON *json;
    gw_in_kind_t kind;
    const char *type;     /* the frame's type, once known (for in_reply_to) */
    const char *count_as; /* the frames_in label: the type, "unknown" or "invalid" */
    const char *convo_id, *client_msg_id, *content;
    size_t content_len;
    int64_t seq_no;   /* message.read's, .edit's and .delete's seq_no, sync's since_seq */
    int64_t reply_to; /* message.send's, 0 when it is not a reply */
    char **att_ids;   /* message.send's attachment ids (distinct), at most
                         KC_CHAT_MAX_ATTACHMENTS */
    size_t natt;
    const char *title, *topic; /* conversation.update's, NULL when absent */
    const char *user_id;       /* member.remove's and member.role's */
    kc_role_t role;            /* member.role's */
    const char *emoji;         /* message.react's, NULL to remove the reaction */
    char **user_ids;  /* presence.subscribe's, member.add's, at most GW_MAX_SUBSCRIBE */
    size_t nuser_ids;
    const char *error_code; /* when refused: the error frame's code and message */
    char error_message[128];
} gw_in_t;

/* Reads one complete text message: 0, or -1 with error_code and error_message set. Either
 * way the caller calls gw_in_free. */
int gw_in_parse(const char *data, size_t len, gw_in_t *in);
void gw_in_free(gw_in_t *in);
/* True when s is 1..GW_ID_MAX bytes of UTF-8 without control characters (client ids). */
int gw_text_id_valid(const char *s, size_t len);

/* ---- conn.c ---- */
void gw_conns_init(gw_t *g);
void gw_conns_destroy(gw_t *g);
/* Registers an established connection under its user (c->sub), made on its first
 * connection: returns the user (u->nconns == 1 for a first connection). */
gw_user_t *gw_conn_add(gw_t *g, gw_conn_t *c);
/* Forgets a connection that closed: returns its user, still registered when it has no
 * connection left (u->nconns == 0), for gw_user_drop. */
gw_user_t *gw_conn_remove(gw_t *g, gw_conn_t *c);
void gw_user_drop(gw_t *g, gw_user_t *u);
gw_conn_t *gw_conn_find(gw_t *g, uint64_t id);
gw_user_t *gw_user_find(gw_t *g, const char *user_id, size_t len);
/* A kc_revoked_cb (arg: the gateway): the account was deactivated, so each of its sockets here
 * is closed with GW_CLOSE_REVOKED. */
void gw_revoke(void *arg, const char *user_id);
/* Takes a token from the connection's and the user's message buckets. 0 or -1 (limited). */
int gw_rate_take(gw_t *g, gw_conn_t *c);
int gw_bucket_take(gw_bucket_t *b, double rate, double burst);
/* Writes (refreshes) the route of a user of this gateway: kchat:route:<user> slot -> until. */
void gw_route_register(gw_t *g, gw_user_t *u);
/* Refreshes the routes of the next n users, round the ring of every user. */
void gw_routes_refresh(gw_t *g, size_t n);
/* Counts a failed Redis command and logs it, at most one line a second (with how many were
 * not logged): a Redis outage fails every user's command at once. */
void gw_redis_error(gw_t *g, const char *what, const char *err);

/* ---- delivered.c ---- */
/* A message of convo_id reached a socket of user_id: its delivery mark moves to seq_no. */
void gw_delivered_note(gw_t *g, const char *convo_id, size_t convo_len, const char *user_id,
                       int64_t seq_no);
/* Writes the marks gathered since the last call (one statement; none while one is in
 * flight). Called every tick and when draining. */
void gw_delivered_flush(gw_t *g);

/* ---- commands.c ---- */
void gw_commands_init(gw_t *g);
void gw_commands_destroy(gw_t *g);
/* message.send: a SendMessage command (reply_to 0: not a reply), acked when the processor
 * answers. Attachments (ids of uploads the API checked) are looked up in Postgres first: the
 * command carries what the API found in the stored objects, never the client's word. */
void gw_cmd_send_message(gw_t *g, gw_conn_t *c, const gw_in_t *in);
/* Sends {"type":"ack","client_msg_id","status":"error","error":{code,message}}. */
void gw_ack_error(gw_t *g, gw_conn_t *c, const char *client_msg_id, const char *code,
                  const char *message);
void gw_cmd_read_marker(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t seq_no);
/* message.edit (content non-NULL) and message.delete: an EditMessage or DeleteMessage
 * command; the outcome reaches the client as the message.update or message.delete every
 * member gets, or as an error frame in_reply_to the frame's type. */
void gw_cmd_change_message(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t seq_no,
                           const char *content, size_t content_len);
/* conversation.update, member.remove, member.role and message.react: UpdateConversation,
 * RemoveMembers of one user, SetRole, SetReaction; the outcome reaches every member as a conversation.update, or the client as
 * an error frame in_reply_to the frame's type. */
void gw_cmd_manage(gw_t *g, gw_conn_t *c, const gw_in_t *in);
/* member.add: the users must be registered (rm's users table, read from Postgres first), then
 * an AddMembers command, answered like gw_cmd_manage's (error unknown_user when one is not a
 * user). */
void gw_cmd_add_members(gw_t *g, gw_conn_t *c, const gw_in_t *in);
/* The client frame a command without an ack comes from ("message.read" for SetReadMarker,
 * ...), by the command's record name; NULL for any other command. */
const char *gw_unacked_frame(const char *command_type, size_t n);
/* The ack for (sender, client_msg_id) arrived: returns the id of the connection that waits
 * for it (0 when none) and forgets it; latency_s is set from the send. */
uint64_t gw_pending_take(gw_t *g, const char *sender, const char *client_msg_id, double *latency_s);
/* Fails the acks that waited longer than ack-timeout-ms. */
void gw_pending_expire(gw_t *g);
void gw_producer_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* ---- presence.c ---- */
void gw_presence_init(gw_t *g);
void gw_presence_destroy(gw_t *g);
void gw_presence_online(gw_t *g, gw_user_t *u);  /* first connection of u here */
void gw_presence_offline(gw_t *g, gw_user_t *u); /* last connection of u here closed */
void gw_presence_subscribe(gw_t *g, gw_conn_t *c, char **user_ids, size_t n);
void gw_presence_unwatch_all(gw_t *g, gw_conn_t *c);
void gw_presence_sweep(gw_t *g);
void gw_typing(gw_t *g, gw_conn_t *c, const char *convo_id, int start);
void gw_typing_stop_all(gw_t *g, gw_conn_t *c);
void gw_typing_expire(gw_t *g, gw_conn_t *c, uint64_t now_ns);
/* A message.create reached a recipient's connection: tell the sender's gateways, those the
 * delivery named (sender_slots: this one directly, the others gathered until
 * gw_receipts_flush), or those of the route registry when it named none. */
void gw_receipt_delivered(gw_t *g, const char *sender, const char *convo_id, int64_t seq_no,
                          const char *recipient, const int32_t *sender_slots, size_t nslots);
/* Publishes the receipts gathered for other slots: one message per slot. */
void gw_receipts_flush(gw_t *g);
void gw_on_pubsub(void *arg, const char *channel, size_t chlen, const char *msg, size_t len);

/* ---- sync.c ---- */
void gw_sync_start(gw_t *g, gw_conn_t *c, const char *convo_id, int64_t since_seq);
/* A message of convo_id went live to c: a sync in flight must not send it again. */
void gw_sync_note_live(gw_conn_t *c, const char *convo_id, int64_t seq_no);
void gw_sync_forget(gw_conn_t *c);

/* ---- deliveries.c ---- */
int gw_on_deliveries(void *arg);

/* ---- frames.c ---- */
/* Handles one complete text message from c. */
void gw_frame_in(gw_t *g, gw_conn_t *c, const char *data, size_t len);

/* ---- ws.c ---- */
int gw_ws_start(gw_t *g, char *err, size_t errlen);
/* Stops taking connections, sends system.notice and closes every socket with 1001. */
void gw_ws_drain(gw_t *g);
/* Destroys the lws context (asynchronous with a foreign loop; its handles close later). */
void gw_ws_destroy(gw_t *g);
/* From the tick, for every connection: a ping after ping-interval-s without a frame or a
 * pong, and the connection dropped after idle-timeout-s (a dead or half-open peer). */
void gw_ws_keepalive(gw_t *g, gw_conn_t *c, uint64_t now_ns);

/* ---- tick.c ---- */
void gw_tick_start(gw_t *g);

#endif
