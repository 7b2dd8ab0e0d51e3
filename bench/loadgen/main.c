/* kchat-loadgen - N WebSocket connections as M users across K conversations of G members,
 * message.send at a target rate, latencies and the delivery check, a JSON summary.
 *
 * The pipeline, in the order a run goes through it:
 *   setup     user ids and RS256 tokens (kc_jwt_sign with the stack's private key), the
 *             conversations as CreateConversation commands on chat.commands (conv.c);
 *   connect   N client connections on one libuv loop (libwebsockets, foreign loop), at most
 *             --connect-parallel handshakes at a time, spread over the gateways and over
 *             --src-addrs loopback source addresses (127.0.0.1, .2, ...: 64k ports each);
 *   settle    --settle-ms for the gateways to register the routes;
 *   send      open loop: message i is due at t0 + i/rate; a 1 ms timer sends every message
 *             that is due. Latencies count from the DUE time, so a server (or a client) that
 *             falls behind shows it in the figures instead of slowing the schedule down;
 *   drain     until every message is acked and every live copy delivered, or --drain-s;
 *   check     every member connection must hold each acked seq_no of its conversation
 *             exactly once, live frames in increasing order; what live frames missed is
 *             asked for with sync {convo_id, since_seq} (as a client backfills), and only
 *             what sync cannot give either is counted as lost.
 * Message i goes to conversation i % K, sent by member (i / K) % G on that user's first
 * connection; its client_msg_id is "m<i>", which maps frames back to the due time.
 *
 * Exit status: 0 when the check passes (nothing lost, doubled or out of order, every message
 * acked), 1 when it fails, 2 when the run could not be set up.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "conv.h"
#include "hist.h"
#include "kchat/jwt.h"
#include "kchat/util.h"

#define MAX_FRAME (1024 * 1024) /* a frame larger than this closes the connection */
#define MAX_SYNC_ROUNDS 16      /* sync requests per (connection, conversation) */
#define MAX_GATEWAYS 16
#define MAX_ERROR_CODES 16
#define TICK_MS 1

enum { PH_CONNECT, PH_SETTLE, PH_SEND, PH_DRAIN, PH_SYNC, PH_DONE };
enum { PROTO_KCHAT, PROTO_CENTRIFUGO, PROTO_SOCKETIO };
enum { CS_IDLE, CS_CONNECTING, CS_OPEN, CS_CLOSED, CS_FAILED };

typedef struct {
    char *host;
    int port;
} lg_gw_t;

typedef struct {
    const char *gateways;
    const char *brokers;
    const char *schemas_dir;
    const char *jwt_key;
    const char *jwt_issuer;
    const char *jwt_audience;
    const char *out;
    const char *ready_file;
    const char *label;
    const char *redis; /* kchat: host:port of the route registry, to wait for the routes */
    long conns, users, convs, group, messages, size, src_addrs, connect_parallel;
    double rate, duration_s, drain_s, hold_s;
    long settle_ms;
    long drop_every;
    int no_sync;
} lg_opts_t;

typedef struct {
    int conv;
    uint32_t cap;      /* entries in got */
    uint8_t *got;      /* got[seq]: copies received (live and synced) */
    int64_t last_live; /* highest seq received live */
    int sync_rounds;
} lg_track_t;

typedef struct lg_out {
    struct lg_out *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes, then the frame */
} lg_out_t;

typedef struct {
    struct lws *wsi;
    int idx, user, state;
    lg_track_t *tr;
    int ntr;
    lg_out_t *qhead, *qtail;
    char *rx;
    size_t rxlen, rxcap;
    int sync_track; /* track being synced, -1 when none */
    int pending;    /* Centrifugo: handshake replies still awaited */
    int pong;       /* Centrifugo: answer pings */
} lg_conn_t;

typedef struct {
    char id[KC_ID_MAX];
    int *members; /* user indexes */
    long conns;   /* connections of all members */
    uint32_t cap;
    uint8_t *acked; /* acked[seq]: acks naming this seq */
    int64_t min_seq, max_seq;
    long nacked;
} lg_conv_t;

typedef struct {
    char code[48];
    long n;
} lg_errcount_t;

typedef struct {
    lg_opts_t o;
    int proto;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigint;
    struct lws_context *ctx;
    lg_gw_t gw[MAX_GATEWAYS];
    int ngw;
    char run_id[12];
    char (*user_ids)[KC_ID_MAX];
    char **tokens;
    int *user_first_conn;
    long *user_nconns;
    int **user_convs;
    int *user_nconvs;
    lg_conv_t *cv;
    lg_conn_t *cn;
    char *content;
    /* progress */
    int phase;
    long connecting, open, failed, closed_early, next_connect;
    uint64_t t_phase, t0, t_last_ack, t_last_deliv; /* monotonic ns */
    long sent, send_failed;
    uint64_t *due; /* due time of message i, monotonic ns */
    long acks_ok, acks_dup, acks_err, ack_conflicts, deliveries_live, expected_live;
    long dups, order_violations, synced, syncs_sent, sync_outstanding, frame_errors;
    long unknown_frames;
    uint64_t live_seen;
    long dropped;
    lg_errcount_t errs[MAX_ERROR_CODES];
    int nerrs;
    long errs_other; /* codes past the table, or too long */
    lg_hist_t ack_h, deliv_h;
    uint64_t t_send_end, t_drain_end;
    int interrupted;
    int routes_ok;
    uint64_t t_route_check;
    double routes_wait_s;
} lg_t;

static lg_t G;

static void die_usage(const char *msg)
{
    fprintf(stderr, "kchat-loadgen: %s (see --help)\n", msg);
    exit(2);
}

static void count_error(const char *code)
{
    for (int i = 0; i < G.nerrs; i++) {
        if (strcmp(G.errs[i].code, code) == 0) {
            G.errs[i].n++;
            return;
        }
    }
    if (G.nerrs == MAX_ERROR_CODES ||
        kc_strlcpyf(G.errs[G.nerrs].code, sizeof(G.errs[0].code), "%s", code) != 0) {
        G.errs_other++;
        return;
    }
    G.errs[G.nerrs++].n = 1;
}

/* ---- per-sequence bookkeeping ---- */

static void grow_u8(uint8_t **p, uint32_t *cap, int64_t seq)
{
    if (seq < (int64_t)*cap)
        return;
    uint32_t n = *cap ? *cap : 64;
    while ((int64_t)n <= seq)
        n *= 2;
    *p = kc_xrealloc(*p, n);
    memset(*p + *cap, 0, n - *cap);
    *cap = n;
}

static lg_track_t *track_of(lg_conn_t *c, int conv)
{
    for (int i = 0; i < c->ntr; i++)
        if (c->tr[i].conv == conv)
            return &c->tr[i];
    return NULL;
}

/* "c_lg<run>_<k>" -> k, or -1 when it is not one of ours */
static int conv_index(const char *id)
{
    const char *u = strrchr(id, '_');
    if (!u || strncmp(id, "c_lg", 4) != 0 || strncmp(id + 4, G.run_id, strlen(G.run_id)) != 0)
        return -1;
    char *end;
    long k = strtol(u + 1, &end, 10);
    return (*end == '\0' && k >= 0 && k < G.o.convs) ? (int)k : -1;
}

/* "m<i>" -> i, or -1 */
static long msg_index(const char *cm)
{
    if (!cm || cm[0] != 'm')
        return -1;
    char *end;
    long i = strtol(cm + 1, &end, 10);
    return (*end == '\0' && i >= 0 && i < G.sent) ? i : -1;
}

/* ---- output queue ---- */

static void enqueue(lg_conn_t *c, const char *frame, size_t len)
{
    lg_out_t *o = kc_xmalloc(sizeof(*o) + LWS_PRE + len);
    o->next = NULL;
    o->len = len;
    memcpy(o->data + LWS_PRE, frame, len);
    if (c->qtail)
        c->qtail->next = o;
    else
        c->qhead = o;
    c->qtail = o;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

static void free_queue(lg_conn_t *c)
{
    while (c->qhead) {
        lg_out_t *n = c->qhead->next;
        free(c->qhead);
        c->qhead = n;
    }
    c->qtail = NULL;
}

/* ---- the check and sync ---- */

/* The lowest seq acked in the track's conversation that the connection lacks, or 0. */
static int64_t first_missing(const lg_track_t *t)
{
    const lg_conv_t *v = &G.cv[t->conv];
    for (int64_t s = v->min_seq; s <= v->max_seq && v->nacked; s++)
        if (v->acked[s] && (s >= (int64_t)t->cap || t->got[s] == 0))
            return s;
    return 0;
}

/* Sends the next sync this connection needs; returns 1 when one went out. */
static int sync_next(lg_conn_t *c)
{
    if (c->state != CS_OPEN)
        return 0;
    for (int i = c->sync_track < 0 ? 0 : c->sync_track; i < c->ntr; i++) {
        lg_track_t *t = &c->tr[i];
        int64_t miss = first_missing(t);
        if (!miss || t->sync_rounds >= MAX_SYNC_ROUNDS)
            continue;
        char frame[160];
        if (kc_strlcpyf(frame, sizeof(frame),
                        "{\"type\":\"sync\",\"convo_id\":\"%s\",\"since_seq\":%" PRId64 "}",
                        G.cv[t->conv].id, miss - 1) != 0)
            continue;
        t->sync_rounds++;
        c->sync_track = i;
        G.syncs_sent++;
        G.sync_outstanding++;
        enqueue(c, frame, strlen(frame));
        return 1;
    }
    c->sync_track = -1;
    return 0;
}

/* ---- frames in ---- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* A new seq_no of a conversation, seen in an ack (kchat, Socket.IO) or in a publication
 * (Centrifugo, whose acks carry none). Returns 0, or -1 when it was already known. */
static int note_seq(lg_conv_t *v, int64_t seq, long expect)
{
    grow_u8(&v->acked, &v->cap, seq);
    if (v->acked[seq]++)
        return -1;
    v->nacked++;
    if (v->min_seq == 0 || seq < v->min_seq)
        v->min_seq = seq;
    if (seq > v->max_seq)
        v->max_seq = seq;
    G.expected_live += expect;
    return 0;
}

/* The answer to message i: status "ok", "duplicate" or an error code; seq 0 when the
 * protocol's ack names none. */
static void got_ack(lg_conn_t *c, long i, const char *status, int64_t seq, const char *code,
                    uint64_t now)
{
    if (i < 0 || !status) {
        G.frame_errors++;
        return;
    }
    if (strcmp(status, "ok") != 0 && strcmp(status, "duplicate") != 0) {
        G.acks_err++;
        count_error(code ? code : "ack_error");
        return;
    }
    if (strcmp(status, "duplicate") == 0)
        G.acks_dup++; /* every message.send is sent once: a duplicate means a bug */
    int conv = (int)(i % G.o.convs);
    lg_track_t *t = track_of(c, conv);
    if (seq < 0 || (seq == 0 && G.proto != PROTO_CENTRIFUGO) || !t) {
        G.frame_errors++;
        return;
    }
    lg_hist_record(&G.ack_h, (int64_t)((now - G.due[i]) / 1000));
    G.acks_ok++;
    G.t_last_ack = now;
    if (seq == 0)
        return;
    /* every connection of every member but the sending one gets it live */
    if (note_seq(&G.cv[conv], seq, G.cv[conv].conns - 1) != 0)
        G.ack_conflicts++; /* two messages acked with one seq_no */
    grow_u8(&t->got, &t->cap, seq);
    if (t->got[seq] < 255)
        t->got[seq]++;
}

static void got_message(lg_conn_t *c, const char *convo, int64_t seq, const char *cmid,
                        uint64_t now)
{
    int conv = convo ? conv_index(convo) : -1;
    lg_track_t *t = conv >= 0 ? track_of(c, conv) : NULL;
    if (!t || seq < 1) {
        G.frame_errors++; /* a conversation this connection is not in */
        return;
    }
    if (G.proto == PROTO_CENTRIFUGO) /* the sender gets its own publication too */
        (void)note_seq(&G.cv[conv], seq, G.cv[conv].conns);
    grow_u8(&t->got, &t->cap, seq);
    if (G.phase >= PH_SYNC && !G.o.no_sync) {
        /* backfill may repeat what came live: a client dedupes by seq_no */
        if (t->got[seq] == 0) {
            t->got[seq] = 1;
            G.synced++;
        }
        return;
    }
    if (G.o.drop_every && ++G.live_seen % (uint64_t)G.o.drop_every == 0) {
        G.dropped++; /* --drop-every: as if this frame never came */
        return;
    }
    if (t->got[seq]) {
        G.dups++;
        if (t->got[seq] < 255)
            t->got[seq]++;
        return;
    }
    t->got[seq] = 1;
    if (seq < t->last_live) {
        if (G.order_violations++ < 5)
            fprintf(stderr,
                    "kchat-loadgen: connection %d got %s seq %" PRId64 " live after seq %" PRId64
                    "\n",
                    c->idx, convo, seq, t->last_live);
    } else {
        t->last_live = seq;
    }
    G.deliveries_live++;
    G.t_last_deliv = now;
    long i = msg_index(cmid);
    if (i >= 0)
        lg_hist_record(&G.deliv_h, (int64_t)((now - G.due[i]) / 1000));
}

static void set_ready(lg_conn_t *c)
{
    if (c->state != CS_CONNECTING)
        return;
    c->state = CS_OPEN;
    G.connecting--;
    G.open++;
}

/* kchat: one JSON object a frame (docs/asyncapi.yaml) */
static void kchat_frame(lg_conn_t *c, const char *data, size_t len, uint64_t now)
{
    cJSON *f = cJSON_ParseWithLength(data, len);
    const char *type = f ? jstr(f, "type") : NULL;
    const cJSON *e = f ? cJSON_GetObjectItemCaseSensitive(f, "error") : NULL;
    const char *code = e ? jstr(e, "code") : NULL;
    if (!type) {
        G.frame_errors++;
    } else if (strcmp(type, "message.create") == 0) {
        got_message(c, jstr(f, "convo_id"), jint(f, "seq_no"), jstr(f, "client_msg_id"), now);
    } else if (strcmp(type, "ack") == 0) {
        got_ack(c, msg_index(jstr(f, "client_msg_id")), jstr(f, "status"), jint(f, "seq_no"), code,
                now);
    } else if (strcmp(type, "sync.complete") == 0) {
        if (G.sync_outstanding > 0)
            G.sync_outstanding--;
        (void)sync_next(c);
    } else if (strcmp(type, "error") == 0) {
        count_error(code ? code : "error");
        if (G.phase == PH_SYNC && G.sync_outstanding > 0 && c->sync_track >= 0) {
            G.sync_outstanding--; /* a refused sync ends its round */
            (void)sync_next(c);
        }
    } else {
        G.unknown_frames++; /* presence, typing, system.notice: not part of the check */
    }
    cJSON_Delete(f);
}

/* Centrifugo's JSON protocol: replies and pushes, several a frame separated by newlines.
 * Command ids: 1 connect, 2.. subscribe (one per conversation), CF_MSG_ID0 + i publish. */
#define CF_MSG_ID0 1000000
static void centrifugo_one(lg_conn_t *c, const char *data, size_t len, uint64_t now)
{
    cJSON *f = cJSON_ParseWithLength(data, len);
    if (!f) {
        G.frame_errors++;
        return;
    }
    const cJSON *push = cJSON_GetObjectItemCaseSensitive(f, "push");
    int64_t id = jint(f, "id");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(f, "error");
    if (push) {
        const cJSON *pub = cJSON_GetObjectItemCaseSensitive(push, "pub");
        const cJSON *d = pub ? cJSON_GetObjectItemCaseSensitive(pub, "data") : NULL;
        if (pub && d)
            got_message(c, jstr(push, "channel"), jint(pub, "offset"), jstr(d, "client_msg_id"),
                        now);
        else
            G.unknown_frames++;
    } else if (id >= CF_MSG_ID0) {
        int64_t code = err ? jint(err, "code") : 0;
        char cs[24];
        (void)snprintf(cs, sizeof(cs), "centrifugo_%" PRId64, code);
        got_ack(c, (long)(id - CF_MSG_ID0), err ? "error" : "ok", 0, cs, now);
    } else if (id >= 1) {
        if (err) {
            count_error("centrifugo_handshake");
            G.frame_errors++;
        } else if (--c->pending == 0) {
            set_ready(c);
        }
    } else if (cJSON_IsObject(f) && !f->child && c->pong) {
        enqueue(c, "{}", 2); /* a ping: answered with a pong */
    } else {
        G.unknown_frames++;
    }
    cJSON_Delete(f);
}

static void centrifugo_frame(lg_conn_t *c, const char *data, size_t len, uint64_t now)
{
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (n)
            centrifugo_one(c, data, n, now);
        if (!nl)
            break;
        len -= n + 1;
        data = nl + 1;
    }
}

static void centrifugo_open(lg_conn_t *c)
{
    char frame[KC_JWT_MAX_LEN + 128];
    c->pong = 1;
    if (kc_strlcpyf(frame, sizeof(frame), "{\"id\":1,\"connect\":{\"token\":\"%s\"}}",
                    G.tokens[c->user]) != 0)
        return;
    enqueue(c, frame, strlen(frame));
    c->pending = 1 + c->ntr;
    for (int i = 0; i < c->ntr; i++) {
        if (kc_strlcpyf(frame, sizeof(frame), "{\"id\":%d,\"subscribe\":{\"channel\":\"%s\"}}",
                        2 + i, G.cv[c->tr[i].conv].id) == 0)
            enqueue(c, frame, strlen(frame));
    }
    if (c->pending == 0)
        set_ready(c);
}

/* Socket.IO over Engine.IO 4: "0{..}" open, "2" ping, "40" namespace connected,
 * "42[event,data]", "43<id>[data]" an ack. The server (bench/peers/socketio-server.js)
 * joins the conversations named in the auth payload. */
static void socketio_frame(lg_conn_t *c, const char *data, size_t len, uint64_t now)
{
    if (len >= 1 && data[0] == '0') { /* engine open: connect to the default namespace */
        /* every conversation id is shorter than KC_ID_MAX, plus quotes and a comma */
        char *frame = kc_xmalloc(strlen(G.tokens[c->user]) + 64 + (size_t)c->ntr * (KC_ID_MAX + 3));
        size_t o = (size_t)sprintf(frame, "40{\"token\":\"%s\",\"convs\":[", G.tokens[c->user]);
        for (int i = 0; i < c->ntr; i++)
            o += (size_t)sprintf(frame + o, "%s\"%s\"", i ? "," : "", G.cv[c->tr[i].conv].id);
        o += (size_t)sprintf(frame + o, "]}");
        enqueue(c, frame, o);
        free(frame);
        return;
    }
    if (len == 1 && data[0] == '2') {
        enqueue(c, "3", 1);
        return;
    }
    if (len >= 2 && data[0] == '4' && data[1] == '0') {
        set_ready(c);
        return;
    }
    if (len >= 2 && data[0] == '4' && (data[1] == '2' || data[1] == '3')) {
        size_t k = 2;
        long ackid = -1;
        if (data[1] == '3') {
            ackid = 0;
            while (k < len && data[k] >= '0' && data[k] <= '9' && ackid < 1000000000)
                ackid = ackid * 10 + (data[k++] - '0');
        }
        cJSON *arr = cJSON_ParseWithLength(data + k, len - k);
        const cJSON *obj = NULL;
        if (cJSON_IsArray(arr))
            obj = data[1] == '3' ? cJSON_GetArrayItem(arr, 0) : cJSON_GetArrayItem(arr, 1);
        if (!obj) {
            G.frame_errors++;
        } else if (data[1] == '3') {
            const char *status = jstr(obj, "status");
            got_ack(c, ackid - 1 < G.sent ? ackid - 1 : -1, status, jint(obj, "seq_no"),
                    jstr(obj, "code"), now);
        } else {
            got_message(c, jstr(obj, "convo_id"), jint(obj, "seq_no"), jstr(obj, "client_msg_id"),
                        now);
        }
        cJSON_Delete(arr);
        return;
    }
    if (len >= 2 && data[0] == '4' && data[1] == '4') {
        count_error("socketio_connect_error");
        return;
    }
    G.unknown_frames++;
}

static void on_frame(lg_conn_t *c, const char *data, size_t len)
{
    uint64_t now = kc_mono_ns();
    switch (G.proto) {
    case PROTO_KCHAT: kchat_frame(c, data, len, now); break;
    case PROTO_CENTRIFUGO: centrifugo_frame(c, data, len, now); break;
    case PROTO_SOCKETIO: socketio_frame(c, data, len, now); break;
    }
}

/* ---- libwebsockets ---- */

static int lg_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)user;
    lg_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (!c)
            return -1;
        if (G.proto != PROTO_KCHAT)
            break; /* the peers take the token inside their protocol */
        unsigned char **p = (unsigned char **)in, *end = *p + len;
        char hdr[KC_JWT_MAX_LEN + 16];
        if (kc_strlcpyf(hdr, sizeof(hdr), "Bearer %s", G.tokens[c->user]) != 0 ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                        (const unsigned char *)hdr, (int)strlen(hdr), p, end))
            return -1;
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!c)
            return -1;
        if (G.proto == PROTO_KCHAT)
            set_ready(c);
        else if (G.proto == PROTO_CENTRIFUGO)
            centrifugo_open(c);
        /* Socket.IO: ready once the server's open packet is answered */
        if (c->qhead)
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            if (c->state == CS_CONNECTING)
                G.connecting--;
            c->state = CS_FAILED;
            c->wsi = NULL;
            G.failed++;
            count_error("connect_failed");
            if (G.failed <= 5)
                fprintf(stderr, "kchat-loadgen: connection %d failed: %.*s\n", c->idx,
                        in ? (int)len : 0, in ? (const char *)in : "");
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c && c->state == CS_CONNECTING) { /* closed before the handshake finished */
            G.connecting--;
            c->state = CS_FAILED;
            G.failed++;
            count_error("closed_in_handshake");
        }
        if (c && c->state == CS_OPEN) {
            G.open--;
            c->state = CS_CLOSED;
            if (G.phase < PH_DONE)
                G.closed_early++;
        }
        if (c)
            c->wsi = NULL;
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c)
            return -1;
        if (c->rxlen + len > MAX_FRAME) {
            count_error("frame_too_large");
            return -1;
        }
        int final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        if (final && c->rxlen == 0) {
            on_frame(c, in, len);
            break;
        }
        if (c->rxlen + len > c->rxcap) {
            size_t n = c->rxcap ? c->rxcap : 4096;
            while (n < c->rxlen + len)
                n *= 2;
            c->rx = kc_xrealloc(c->rx, n);
            c->rxcap = n;
        }
        memcpy(c->rx + c->rxlen, in, len);
        c->rxlen += len;
        if (final) {
            on_frame(c, c->rx, c->rxlen);
            c->rxlen = 0;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!c || !c->qhead)
            break;
        lg_out_t *o = c->qhead;
        c->qhead = o->next;
        if (!c->qhead)
            c->qtail = NULL;
        int n = lws_write(wsi, o->data + LWS_PRE, o->len, LWS_WRITE_TEXT);
        size_t olen = o->len;
        free(o);
        if (n < (int)olen) {
            count_error("write_failed");
            return -1;
        }
        if (c->qhead)
            lws_callback_on_writable(wsi);
        break;
    }
    default: break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"kchat", lg_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void start_connect(lg_conn_t *c)
{
    struct lws_client_connect_info ci;
    char src[32];
    memset(&ci, 0, sizeof(ci));
    const lg_gw_t *gw = &G.gw[c->idx % G.ngw];
    ci.context = G.ctx;
    ci.address = gw->host;
    ci.port = gw->port;
    ci.path = G.proto == PROTO_KCHAT        ? "/ws"
              : G.proto == PROTO_CENTRIFUGO ? "/connection/websocket"
                                            : "/socket.io/?EIO=4&transport=websocket";
    ci.host = gw->host;
    ci.protocol = NULL;
    ci.local_protocol_name = "kchat";
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (G.o.src_addrs > 1) {
        if (kc_strlcpyf(src, sizeof(src), "127.0.0.%ld", 1 + c->idx % G.o.src_addrs) == 0)
            ci.iface = src;
    }
    c->state = CS_CONNECTING;
    G.connecting++;
    if (!lws_client_connect_via_info(&ci)) {
        /* a failure may already have come through CONNECTION_ERROR */
        if (c->state == CS_CONNECTING) {
            G.connecting--;
            c->state = CS_FAILED;
            G.failed++;
            count_error("connect_failed");
        }
    }
}

/* ---- the schedule ---- */

static void write_ready_file(void)
{
    if (!G.o.ready_file)
        return;
    FILE *f = fopen(G.o.ready_file, "w");
    if (!f || fprintf(f, "%ld\n", G.open) < 0 || fclose(f) != 0)
        fprintf(stderr, "kchat-loadgen: cannot write %s\n", G.o.ready_file);
}

static void send_due(uint64_t now)
{
    double elapsed = (double)(now - G.t0) / 1e9;
    long due = (long)floor(elapsed * G.o.rate) + 1;
    if (due > G.o.messages)
        due = G.o.messages;
    char *frame = NULL;
    size_t cap = (size_t)G.o.size + 256;
    while (G.sent < due) {
        long i = G.sent;
        int conv = (int)(i % G.o.convs);
        int member = (int)((i / G.o.convs) % G.o.group);
        int user = G.cv[conv].members[member];
        lg_conn_t *c = &G.cn[G.user_first_conn[user]];
        G.due[i] = G.t0 + (uint64_t)((double)i * 1e9 / G.o.rate);
        G.sent++;
        if (c->state != CS_OPEN) {
            G.send_failed++;
            continue;
        }
        if (!frame)
            frame = kc_xmalloc(cap);
        int rc;
        if (G.proto == PROTO_KCHAT)
            rc = kc_strlcpyf(frame, cap,
                             "{\"type\":\"message.send\",\"convo_id\":\"%s\","
                             "\"client_msg_id\":\"m%ld\",\"content\":\"%s\"}",
                             G.cv[conv].id, i, G.content);
        else if (G.proto == PROTO_CENTRIFUGO)
            rc = kc_strlcpyf(frame, cap,
                             "{\"id\":%ld,\"publish\":{\"channel\":\"%s\",\"data\":{"
                             "\"client_msg_id\":\"m%ld\",\"sender_id\":\"%s\","
                             "\"content\":\"%s\"}}}",
                             CF_MSG_ID0 + i, G.cv[conv].id, i, G.user_ids[user], G.content);
        else
            rc = kc_strlcpyf(frame, cap,
                             "42%ld[\"send\",{\"convo_id\":\"%s\",\"client_msg_id\":\"m%ld\","
                             "\"content\":\"%s\"}]",
                             i + 1, G.cv[conv].id, i, G.content);
        if (rc != 0) {
            G.send_failed++;
            continue;
        }
        enqueue(c, frame, strlen(frame));
    }
    free(frame);
}

static int drained(void)
{
    return G.acks_ok + G.acks_err >= G.sent - G.send_failed && G.deliveries_live >= G.expected_live;
}

/* kchat: 1 when every user has a live route (kchat:route:<user>, field = gateway slot, value
 * = registered-until ms) for each gateway its connections are on, 0 when some are missing,
 * -1 when Redis cannot answer. One pipelined HGETALL per user. Slot i is gateway i in
 * --gateways, as scripts/stack.sh starts them. */
static int routes_ready(void)
{
    char host[256];
    const char *colon = strrchr(G.o.redis, ':');
    if (!colon || (size_t)(colon - G.o.redis) >= sizeof(host))
        return -1;
    memcpy(host, G.o.redis, (size_t)(colon - G.o.redis));
    host[colon - G.o.redis] = '\0';
    struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout(host, atoi(colon + 1), tv);
    if (!r || r->err) {
        if (r)
            redisFree(r);
        return -1;
    }
    int rc = redisSetTimeout(r, tv) == REDIS_OK ? 1 : -1;
    for (long u = 0; rc == 1 && u < G.o.users; u++)
        if (redisAppendCommand(r, "HGETALL kchat:route:%s", G.user_ids[u]) != REDIS_OK)
            rc = -1;
    long long now_ms = (long long)kc_now_ms();
    for (long u = 0; rc >= 0 && u < G.o.users; u++) {
        redisReply *rep = NULL;
        if (redisGetReply(r, (void **)&rep) != REDIS_OK || !rep || rep->type != REDIS_REPLY_ARRAY) {
            rc = -1;
        } else {
            unsigned want = 0, have = 0;
            for (long j = u; j < G.o.conns; j += G.o.users)
                want |= 1u << (j % G.ngw);
            for (size_t k = 0; k + 1 < rep->elements; k += 2) {
                int slot = atoi(rep->element[k]->str ? rep->element[k]->str : "-1");
                long long until = atoll(rep->element[k + 1]->str ? rep->element[k + 1]->str : "0");
                if (slot >= 0 && slot < G.ngw && until > now_ms)
                    have |= 1u << slot;
            }
            if ((want & have) != want)
                rc = 0;
        }
        if (rep)
            freeReplyObject(rep);
    }
    redisFree(r);
    return rc;
}

static void begin_phase(int ph, uint64_t now)
{
    G.phase = ph;
    G.t_phase = now;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = kc_mono_ns();
    if (G.interrupted && G.phase < PH_DONE) {
        fprintf(stderr, "kchat-loadgen: interrupted\n");
        begin_phase(PH_DONE, now);
    }
    switch (G.phase) {
    case PH_CONNECT:
        while (G.next_connect < G.o.conns && G.connecting < G.o.connect_parallel)
            start_connect(&G.cn[G.next_connect++]);
        if (G.next_connect == G.o.conns && G.connecting == 0) {
            fprintf(stderr, "kchat-loadgen: %ld connections open, %ld failed in %.2f s\n", G.open,
                    G.failed, (double)(now - G.t_phase) / 1e9);
            write_ready_file();
            begin_phase(PH_SETTLE, now);
        }
        break;
    case PH_SETTLE:
        if (G.o.redis && !G.routes_ok && now - G.t_route_check >= 200000000u) {
            G.t_route_check = now;
            int rr = routes_ready();
            if (rr < 0)
                fprintf(stderr, "kchat-loadgen: cannot read the routes from Redis %s\n", G.o.redis);
            if (rr != 0) {
                G.routes_ok = 1;
                G.routes_wait_s = (double)(now - G.t_phase) / 1e9;
                G.t_phase = now; /* --settle-ms counts from here */
            }
        }
        if ((!G.o.redis || G.routes_ok || now - G.t_phase > 60000000000u) &&
            now - G.t_phase >= (uint64_t)G.o.settle_ms * 1000000u +
                                   (G.o.messages == 0 ? (uint64_t)(G.o.hold_s * 1e9) : 0)) {
            begin_phase(PH_SEND, now);
            G.t0 = now;
        }
        break;
    case PH_SEND:
        send_due(now);
        if (G.sent >= G.o.messages) {
            G.t_send_end = now;
            begin_phase(PH_DRAIN, now);
        }
        break;
    case PH_DRAIN:
        if (drained() || now - G.t_phase > (uint64_t)(G.o.drain_s * 1e9)) {
            G.t_drain_end = now;
            begin_phase(PH_SYNC, now);
            for (long i = 0; i < G.o.conns && !G.o.no_sync && G.proto == PROTO_KCHAT; i++)
                (void)sync_next(&G.cn[i]);
        }
        break;
    case PH_SYNC:
        if (G.sync_outstanding == 0 || now - G.t_phase > (uint64_t)(G.o.drain_s * 1e9))
            begin_phase(PH_DONE, now);
        break;
    case PH_DONE: uv_stop(&G.loop); break;
    }
}

static void on_sigint(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    G.interrupted = 1;
}

/* ---- setup ---- */

static int parse_gateways(const char *list)
{
    char *dup = kc_xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        if (!colon || G.ngw >= MAX_GATEWAYS) {
            free(dup);
            return -1;
        }
        *colon = '\0';
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535 || !*tok) {
            free(dup);
            return -1;
        }
        G.gw[G.ngw].host = kc_xstrdup(tok);
        G.gw[G.ngw].port = (int)port;
        G.ngw++;
    }
    free(dup);
    return G.ngw > 0 ? 0 : -1;
}

static int setup(char *err, size_t errlen)
{
    char uuid[37];
    kc_uuid4(uuid);
    memcpy(G.run_id, uuid, 8);
    G.run_id[8] = '\0';
    long M = G.o.users, K = G.o.convs, N = G.o.conns, GR = G.o.group;

    G.user_ids = kc_xcalloc((size_t)M, sizeof(*G.user_ids));
    G.tokens = kc_xcalloc((size_t)M, sizeof(char *));
    G.user_first_conn = kc_xcalloc((size_t)M, sizeof(int));
    G.user_nconns = kc_xcalloc((size_t)M, sizeof(long));
    G.user_convs = kc_xcalloc((size_t)M, sizeof(int *));
    G.user_nconvs = kc_xcalloc((size_t)M, sizeof(int));
    kc_jwt_key_t *key = kc_jwt_key_load(G.o.jwt_key, G.o.jwt_issuer, G.o.jwt_audience, err, errlen);
    if (!key)
        return -1;
    long long now_s = kc_now_ms() / 1000;
    long long ttl = (long long)(G.o.duration_s + G.o.drain_s * 2 + G.o.hold_s) + 3600;
    for (long u = 0; u < M; u++) {
        if (kc_strlcpyf(G.user_ids[u], KC_ID_MAX, "u_lg%s_%ld", G.run_id, u) != 0)
            goto fail_key;
        G.tokens[u] = kc_jwt_sign(key, G.user_ids[u], G.user_ids[u], now_s, ttl, err, errlen);
        if (!G.tokens[u])
            goto fail_key;
    }
    kc_jwt_key_free(key);
    key = NULL;

    G.cn = kc_xcalloc((size_t)N, sizeof(lg_conn_t));
    for (long j = 0; j < N; j++) {
        G.cn[j].idx = (int)j;
        G.cn[j].user = (int)(j % M);
        G.cn[j].sync_track = -1;
        if (j < M)
            G.user_first_conn[j] = (int)j;
        G.user_nconns[j % M]++;
    }

    /* conversation k: users (k*G + i) mod M, i < G */
    G.cv = kc_xcalloc((size_t)K, sizeof(lg_conv_t));
    lg_conv_spec_t *specs = kc_xcalloc((size_t)K, sizeof(lg_conv_spec_t));
    const char **others = kc_xcalloc((size_t)(K * (GR - 1) + 1), sizeof(char *));
    for (long k = 0; k < K; k++) {
        lg_conv_t *v = &G.cv[k];
        if (kc_strlcpyf(v->id, sizeof(v->id), "c_lg%s_%ld", G.run_id, k) != 0) {
            free(specs);
            free(others);
            kc_strlcpyf(err, errlen, "conversation id too long");
            return -1;
        }
        v->members = kc_xcalloc((size_t)GR, sizeof(int));
        for (long i = 0; i < GR; i++) {
            int u = (int)((k * GR + i) % M);
            v->members[i] = u;
            v->conns += G.user_nconns[u];
            G.user_convs[u] =
                kc_xrealloc(G.user_convs[u], sizeof(int) * (size_t)(G.user_nconvs[u] + 1));
            G.user_convs[u][G.user_nconvs[u]++] = (int)k;
            if (i > 0)
                others[k * (GR - 1) + i - 1] = G.user_ids[u];
        }
        specs[k].id = v->id;
        specs[k].creator = G.user_ids[v->members[0]];
        specs[k].others = &others[k * (GR - 1)];
        specs[k].nothers = (size_t)(GR - 1);
    }
    for (long j = 0; j < N; j++) {
        lg_conn_t *c = &G.cn[j];
        c->ntr = G.user_nconvs[c->user];
        c->tr = kc_xcalloc((size_t)(c->ntr ? c->ntr : 1), sizeof(lg_track_t));
        for (int i = 0; i < c->ntr; i++)
            c->tr[i].conv = G.user_convs[c->user][i];
    }
    int rc = K && G.proto == PROTO_KCHAT
                 ? lg_conv_create(G.o.brokers, G.o.schemas_dir, specs, (size_t)K, err, errlen)
                 : 0;
    free(specs);
    free(others);
    if (rc != 0)
        return -1;

    G.due = kc_xcalloc((size_t)(G.o.messages ? G.o.messages : 1), sizeof(uint64_t));
    G.content = kc_xmalloc((size_t)G.o.size + 1);
    for (long i = 0; i < G.o.size; i++)
        G.content[i] = (char)('a' + i % 26);
    G.content[G.o.size] = '\0';
    lg_hist_init(&G.ack_h);
    lg_hist_init(&G.deliv_h);
    return 0;
fail_key:
    kc_jwt_key_free(key);
    return -1;
}

static void teardown(void)
{
    for (long j = 0; G.cn && j < G.o.conns; j++) {
        lg_conn_t *c = &G.cn[j];
        for (int i = 0; i < c->ntr; i++)
            free(c->tr[i].got);
        free(c->tr);
        free(c->rx);
        free_queue(c);
    }
    free(G.cn);
    for (long k = 0; G.cv && k < G.o.convs; k++) {
        free(G.cv[k].members);
        free(G.cv[k].acked);
    }
    free(G.cv);
    for (long u = 0; G.tokens && u < G.o.users; u++) {
        free(G.tokens[u]);
        free(G.user_convs[u]);
    }
    free(G.tokens);
    free(G.user_convs);
    free(G.user_nconvs);
    free(G.user_ids);
    free(G.user_first_conn);
    free(G.user_nconns);
    free(G.due);
    free(G.content);
    for (int i = 0; i < G.ngw; i++)
        free(G.gw[i].host);
}

/* ---- the summary ---- */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld", &v) == 1)
            break;
    if (fclose(f) != 0)
        return -1;
    return v;
}

static cJSON *hist_json(const lg_hist_t *h)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "count", (double)h->count);
    cJSON_AddNumberToObject(o, "mean_ms", h->count ? h->sum / (double)h->count / 1000.0 : 0);
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50_ms", 0.5}, {"p90_ms", 0.9}, {"p99_ms", 0.99}, {"p999_ms", 0.999}};
    for (size_t i = 0; i < KC_ARRAY_LEN(qs); i++)
        cJSON_AddNumberToObject(o, qs[i].name, (double)lg_hist_quantile(h, qs[i].q) / 1000.0);
    cJSON_AddNumberToObject(o, "max_ms", (double)h->max / 1000.0);
    return o;
}

/* Fills the check's counters; returns 1 when it passes. */
static int check(cJSON *out)
{
    long lost = 0, pairs = 0, seq_gaps = 0;
    for (long j = 0; j < G.o.conns; j++) {
        lg_conn_t *c = &G.cn[j];
        for (int i = 0; i < c->ntr; i++) {
            lg_track_t *t = &c->tr[i];
            const lg_conv_t *v = &G.cv[t->conv];
            pairs++;
            for (int64_t s = v->min_seq; v->nacked && s <= v->max_seq; s++)
                if (v->acked[s] && (s >= (int64_t)t->cap || !t->got[s]))
                    lost++;
        }
    }
    long first_not_one = 0, seqs = 0;
    for (long k = 0; k < G.o.convs; k++) {
        const lg_conv_t *v = &G.cv[k];
        if (v->nacked && v->max_seq - v->min_seq + 1 != v->nacked)
            seq_gaps++;
        if (v->nacked && v->min_seq != 1)
            first_not_one++;
        seqs += v->nacked;
    }
    /* every acked message has a seq_no somebody saw (Centrifugo: in a publication) */
    long never_seen = G.acks_ok > seqs ? G.acks_ok - seqs : 0;
    long unacked = G.sent - G.send_failed - G.acks_ok - G.acks_err;
    cJSON_AddNumberToObject(out, "member_connections_checked", (double)pairs);
    cJSON_AddNumberToObject(out, "lost", (double)lost);
    cJSON_AddNumberToObject(out, "duplicates", (double)G.dups);
    cJSON_AddNumberToObject(out, "out_of_order", (double)G.order_violations);
    cJSON_AddNumberToObject(out, "recovered_by_sync", (double)G.synced);
    cJSON_AddNumberToObject(out, "syncs_sent", (double)G.syncs_sent);
    cJSON_AddNumberToObject(out, "unacked", (double)unacked);
    cJSON_AddNumberToObject(out, "duplicate_acks", (double)G.acks_dup);
    cJSON_AddNumberToObject(out, "seq_conflicts", (double)G.ack_conflicts);
    cJSON_AddNumberToObject(out, "conversations_with_seq_gaps", (double)seq_gaps);
    cJSON_AddNumberToObject(out, "conversations_not_starting_at_1", (double)first_not_one);
    cJSON_AddNumberToObject(out, "acked_never_delivered", (double)never_seen);
    int pass = lost == 0 && G.dups == 0 && G.order_violations == 0 && unacked == 0 &&
               G.acks_dup == 0 && G.ack_conflicts == 0 && seq_gaps == 0 && first_not_one == 0 &&
               never_seen == 0 && G.failed == 0 && G.send_failed == 0 && G.acks_err == 0 &&
               G.closed_early == 0;
    cJSON_AddBoolToObject(out, "pass", pass);
    return pass;
}

static int report(void)
{
    cJSON *o = cJSON_CreateObject(), *p, *r, *e, *ck;
    if (!o)
        return -1;
    double send_s = G.t_send_end > G.t0 ? (double)(G.t_send_end - G.t0) / 1e9 : 0;
    /* rates over the time from the first due send to the last ack / live delivery */
    double ack_s = G.t_last_ack > G.t0 ? (double)(G.t_last_ack - G.t0) / 1e9 : 0;
    double deliv_s = G.t_last_deliv > G.t0 ? (double)(G.t_last_deliv - G.t0) / 1e9 : 0;
    cJSON_AddStringToObject(o, "tool", "kchat-loadgen");
    cJSON_AddStringToObject(o, "run_id", G.run_id); /* ids: u_lg<run_id>_<u>, c_lg<run_id>_<k> */
    if (G.o.label)
        cJSON_AddStringToObject(o, "label", G.o.label);
    if ((p = cJSON_AddObjectToObject(o, "params"))) {
        cJSON_AddStringToObject(p, "protocol",
                                G.proto == PROTO_KCHAT        ? "kchat"
                                : G.proto == PROTO_CENTRIFUGO ? "centrifugo"
                                                              : "socketio");
        cJSON_AddNumberToObject(p, "connections", (double)G.o.conns);
        cJSON_AddNumberToObject(p, "users", (double)G.o.users);
        cJSON_AddNumberToObject(p, "conversations", (double)G.o.convs);
        cJSON_AddNumberToObject(p, "group", (double)G.o.group);
        cJSON_AddNumberToObject(p, "rate", G.o.rate);
        cJSON_AddNumberToObject(p, "messages", (double)G.o.messages);
        cJSON_AddNumberToObject(p, "content_bytes", (double)G.o.size);
        cJSON_AddNumberToObject(p, "gateways", G.ngw);
        cJSON_AddNumberToObject(p, "source_addresses", (double)G.o.src_addrs);
    }
    if ((r = cJSON_AddObjectToObject(o, "results"))) {
        cJSON_AddNumberToObject(r, "connections_open", (double)G.open);
        cJSON_AddNumberToObject(r, "connections_failed", (double)G.failed);
        if (G.o.redis)
            cJSON_AddNumberToObject(r, "routes_wait_seconds", G.routes_wait_s);
        cJSON_AddNumberToObject(r, "connections_closed_early", (double)G.closed_early);
        cJSON_AddNumberToObject(r, "sent", (double)(G.sent - G.send_failed));
        cJSON_AddNumberToObject(r, "send_failed", (double)G.send_failed);
        cJSON_AddNumberToObject(r, "acked", (double)G.acks_ok);
        cJSON_AddNumberToObject(r, "ack_errors", (double)G.acks_err);
        cJSON_AddNumberToObject(r, "deliveries", (double)G.deliveries_live);
        cJSON_AddNumberToObject(r, "deliveries_expected", (double)G.expected_live);
        cJSON_AddNumberToObject(r, "send_seconds", send_s);
        cJSON_AddNumberToObject(r, "seconds_to_last_ack", ack_s);
        cJSON_AddNumberToObject(r, "seconds_to_last_delivery", deliv_s);
        cJSON_AddNumberToObject(r, "sent_per_s", send_s > 0 ? (double)G.sent / send_s : 0);
        cJSON_AddNumberToObject(r, "acked_per_s", ack_s > 0 ? (double)G.acks_ok / ack_s : 0);
        cJSON_AddNumberToObject(r, "deliveries_per_s",
                                deliv_s > 0 ? (double)G.deliveries_live / deliv_s : 0);
        cJSON_AddItemToObject(r, "ack_latency", hist_json(&G.ack_h));
        cJSON_AddItemToObject(r, "delivery_latency", hist_json(&G.deliv_h));
        cJSON_AddNumberToObject(r, "dropped_on_purpose", (double)G.dropped);
        cJSON_AddNumberToObject(r, "frame_errors", (double)G.frame_errors);
        cJSON_AddNumberToObject(r, "other_frames", (double)G.unknown_frames);
        cJSON_AddNumberToObject(r, "loadgen_max_rss_kib", (double)rss_kib());
        if ((e = cJSON_AddObjectToObject(r, "errors")))
            for (int i = 0; i < G.nerrs; i++)
                cJSON_AddNumberToObject(e, G.errs[i].code, (double)G.errs[i].n);
        if (e && G.errs_other)
            cJSON_AddNumberToObject(e, "other", (double)G.errs_other);
    }
    int pass = 0;
    if ((ck = cJSON_AddObjectToObject(o, "check")))
        pass = check(ck);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
        return -1;
    int rc = 0;
    FILE *f = G.o.out ? fopen(G.o.out, "w") : stdout;
    if (!f || fprintf(f, "%s\n", s) < 0 || (G.o.out && fclose(f) != 0)) {
        fprintf(stderr, "kchat-loadgen: cannot write the summary\n");
        rc = -1;
    }
    free(s);
    return rc < 0 ? -1 : pass;
}

/* ---- main ---- */

static const char *usage =
    "usage: kchat-loadgen [options]\n"
    "  --protocol P            kchat, centrifugo or socketio (the peers)  [kchat]\n"
    "  --gateways H:P,...      servers to spread connections over (required)\n"
    "  --brokers H:P           Kafka, for the CreateConversation commands (required)\n"
    "  --schemas-dir DIR       schemas/ (registry.json)           [schemas]\n"
    "  --jwt-key PEM           the stack's RS256 private key (required)\n"
    "  --jwt-issuer S / --jwt-audience S                         [kchat / kchat]\n"
    "  --conns N               WebSocket connections               [100]\n"
    "  --users M               users (connection j is user j %% M)  [= conns]\n"
    "  --convs K               conversations                       [users / group]\n"
    "  --group G               members per conversation            [2]\n"
    "  --rate R                message.send per second, open loop  [100]\n"
    "  --messages T            messages in all                     [rate * duration]\n"
    "  --duration-s S          sending time when --messages is not given [10]\n"
    "  --size B                bytes of content per message        [64]\n"
    "  --src-addrs A           bind connection j to 127.0.0.(1 + j %% A) [1]\n"
    "  --connect-parallel P    handshakes in flight                [128]\n"
    "  --redis H:P             kchat: wait until Redis holds every user's routes\n"
    "  --settle-ms MS          wait after connecting (after the routes) [1000]\n"
    "  --hold-s S              with --messages 0: keep the sockets open S seconds [0]\n"
    "  --drain-s S             longest wait for acks, deliveries, syncs [30]\n"
    "  --ready-file PATH       written (connections open) once all are connected\n"
    "  --label S               copied into the summary\n"
    "  --out PATH              the JSON summary (default stdout)\n"
    "checks of the check itself:\n"
    "  --drop-every N          discard every Nth live message.create as if it was lost\n"
    "  --no-sync               do not backfill what live frames missed\n";

static long num_arg(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        char m[128];
        (void)snprintf(m, sizeof(m), "%s must be an integer in %ld..%ld", what, lo, hi);
        die_usage(m);
    }
    return v;
}

static double dbl_arg(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) {
        char m[128];
        (void)snprintf(m, sizeof(m), "%s must be a number in %g..%g", what, lo, hi);
        die_usage(m);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"gateways", 1, 0, 'g'},    {"brokers", 1, 0, 'b'},
                                       {"schemas-dir", 1, 0, 's'}, {"jwt-key", 1, 0, 'k'},
                                       {"jwt-issuer", 1, 0, 'I'},  {"jwt-audience", 1, 0, 'A'},
                                       {"conns", 1, 0, 'n'},       {"users", 1, 0, 'u'},
                                       {"convs", 1, 0, 'c'},       {"group", 1, 0, 'G'},
                                       {"rate", 1, 0, 'r'},        {"messages", 1, 0, 'm'},
                                       {"duration-s", 1, 0, 'd'},  {"size", 1, 0, 'z'},
                                       {"src-addrs", 1, 0, 'a'},   {"connect-parallel", 1, 0, 'P'},
                                       {"settle-ms", 1, 0, 'S'},   {"hold-s", 1, 0, 'H'},
                                       {"drain-s", 1, 0, 'D'},     {"ready-file", 1, 0, 'R'},
                                       {"label", 1, 0, 'L'},       {"out", 1, 0, 'o'},
                                       {"drop-every", 1, 0, 'x'},  {"no-sync", 0, 0, 'y'},
                                       {"protocol", 1, 0, 'p'},    {"redis", 1, 0, 'e'},
                                       {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    lg_opts_t *o = &G.o;
    o->schemas_dir = "schemas";
    o->jwt_issuer = "kchat";
    o->jwt_audience = "kchat";
    o->conns = 100;
    o->users = -1;
    o->convs = -1;
    o->group = 2;
    o->rate = 100;
    o->messages = -1;
    o->duration_s = 10;
    o->size = 64;
    o->src_addrs = 1;
    o->connect_parallel = 128;
    o->settle_ms = 1000;
    o->drain_s = 30;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'g': o->gateways = optarg; break;
        case 'b': o->brokers = optarg; break;
        case 's': o->schemas_dir = optarg; break;
        case 'k': o->jwt_key = optarg; break;
        case 'I': o->jwt_issuer = optarg; break;
        case 'A': o->jwt_audience = optarg; break;
        case 'n': o->conns = num_arg(optarg, 1, 2000000, "--conns"); break;
        case 'u': o->users = num_arg(optarg, 1, 2000000, "--users"); break;
        case 'c': o->convs = num_arg(optarg, 0, 1000000, "--convs"); break;
        case 'G': o->group = num_arg(optarg, 1, 10000, "--group"); break;
        case 'r': o->rate = dbl_arg(optarg, 0.001, 1e7, "--rate"); break;
        case 'm': o->messages = num_arg(optarg, 0, 100000000, "--messages"); break;
        case 'd': o->duration_s = dbl_arg(optarg, 0, 86400, "--duration-s"); break;
        case 'z': o->size = num_arg(optarg, 0, 60000, "--size"); break;
        case 'a': o->src_addrs = num_arg(optarg, 1, 254, "--src-addrs"); break;
        case 'P': o->connect_parallel = num_arg(optarg, 1, 100000, "--connect-parallel"); break;
        case 'S': o->settle_ms = num_arg(optarg, 0, 3600000, "--settle-ms"); break;
        case 'H': o->hold_s = dbl_arg(optarg, 0, 86400, "--hold-s"); break;
        case 'D': o->drain_s = dbl_arg(optarg, 0.1, 3600, "--drain-s"); break;
        case 'R': o->ready_file = optarg; break;
        case 'L': o->label = optarg; break;
        case 'o': o->out = optarg; break;
        case 'x': o->drop_every = num_arg(optarg, 1, 1000000000, "--drop-every"); break;
        case 'y': o->no_sync = 1; break;
        case 'e': o->redis = optarg; break;
        case 'p':
            if (strcmp(optarg, "kchat") == 0)
                G.proto = PROTO_KCHAT;
            else if (strcmp(optarg, "centrifugo") == 0)
                G.proto = PROTO_CENTRIFUGO;
            else if (strcmp(optarg, "socketio") == 0)
                G.proto = PROTO_SOCKETIO;
            else
                die_usage("--protocol is kchat, centrifugo or socketio");
            break;
        case 'h': fputs(usage, stdout); exit(0);
        default: die_usage("unknown option");
        }
    }
    if (optind < argc)
        die_usage("unexpected argument");
    if (!o->gateways || (!o->brokers && G.proto == PROTO_KCHAT) || !o->jwt_key)
        die_usage("--gateways, --brokers (kchat) and --jwt-key are required");
    if (parse_gateways(o->gateways) != 0)
        die_usage("--gateways wants host:port[,host:port...]");
    if (o->redis && (G.proto != PROTO_KCHAT || !strrchr(o->redis, ':')))
        die_usage("--redis (host:port) is for --protocol kchat");
    if (o->users < 0)
        o->users = o->conns;
    if (o->users > o->conns)
        die_usage("--users must not exceed --conns (every user needs a connection)");
    if (o->group > o->users)
        die_usage("--group must not exceed --users");
    if (o->convs < 0)
        o->convs = o->users / o->group > 0 ? o->users / o->group : 1;
    if (o->messages < 0)
        o->messages = (long)(o->rate * o->duration_s);
    if (o->messages > 0 && o->convs == 0)
        die_usage("messages need at least one conversation");
}

int main(int argc, char **argv)
{
    char err[512] = "";
    parse_args(argc, argv);
    int exit_code = 2;
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR, NULL);
    if (setup(err, sizeof(err)) != 0) {
        fprintf(stderr, "kchat-loadgen: setup failed: %s\n", err);
        teardown();
        return 2;
    }
    if (uv_loop_init(&G.loop) != 0) {
        fprintf(stderr, "kchat-loadgen: uv_loop_init failed\n");
        teardown();
        return 2;
    }
    void *loops[1] = {&G.loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.foreign_loops = loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DISABLE_IPV6;
    info.fd_limit_per_thread = (unsigned)(G.o.conns + 256);
    info.timeout_secs = 30;
    G.ctx = lws_create_context(&info);
    int timer_ok = 0, sig_ok = 0;
    if (!G.ctx) {
        fprintf(stderr, "kchat-loadgen: cannot create the libwebsockets context\n");
    } else if (uv_timer_init(&G.loop, &G.tick) != 0 ||
               (timer_ok = 1, uv_timer_start(&G.tick, on_tick, TICK_MS, TICK_MS)) != 0 ||
               uv_signal_init(&G.loop, &G.sigint) != 0 ||
               (sig_ok = 1, uv_signal_start(&G.sigint, on_sigint, SIGINT)) != 0) {
        fprintf(stderr, "kchat-loadgen: cannot start the loop's timer\n");
    } else {
        G.t_phase = kc_mono_ns();
        if (uv_run(&G.loop, UV_RUN_DEFAULT) < 0)
            fprintf(stderr, "kchat-loadgen: loop failed\n");
        int pass = report();
        exit_code = pass < 0 ? 2 : pass ? 0 : 1;
    }
    if (timer_ok)
        uv_close((uv_handle_t *)&G.tick, NULL);
    if (sig_ok)
        uv_close((uv_handle_t *)&G.sigint, NULL);
    if (G.ctx)
        lws_context_destroy(G.ctx);
    (void)uv_run(&G.loop, UV_RUN_DEFAULT); /* lets the closed handles finish */
    if (uv_loop_close(&G.loop) != 0)
        fprintf(stderr, "kchat-loadgen: handles left on the loop\n");
    teardown();
    return exit_code;
}
