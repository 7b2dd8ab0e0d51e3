/* intake.c - chat.events in, notify_pending out.
 *
 * The consumer reads chat.events (read_committed) in batches. For the new messages of a batch
 * the notifier asks Postgres who the members are (rm.members, with their usernames and mutes)
 * and waits until the projector has applied the batch's messages there (rm.conversations.
 * last_seq), so a member added just before a message counts. A member hears of a message
 * unless they sent it, muted the conversation (a mention still reaches them) or are connected
 * to a gateway right now (the route registry in Redis, kchat:route:<user_id>, the one the
 * processor routes by). What is left is folded per member and conversation and written, for
 * each partition of the batch, in one statement with the partition's next offset: a
 * notification opens due --coalesce-ms later (at once for a mention), and later messages add to
 * it. The statement writes only when the stored offset is the one this notifier last wrote or
 * read, so a partition that moved to another notifier in the meantime is not counted twice;
 * otherwise, and after any failure, the stored offsets are read again and the consumer goes
 * back there. Kafka's committed offsets are not used.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/util.h"
#include "notifier.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define PROJECTOR_POLL_MS 50
#define MAX_MEMBERS_PER_CONVO 10000
/* A batch that made no notification for a partition stores its offset at most this often:
 * each store is a Postgres commit, and going back over such events after a crash tells
 * nobody of anything new. */
#define OFFSETS_ONLY_EVERY_NS 1000000000u

typedef struct {
    char *user_id, *username;
    char *name; /* what a notification calls them: the display name, else the username */
    int muted;
} nt_member_t;

typedef struct {
    char *title;
    int64_t last_seq;
    nt_member_t *members;
    size_t nmembers, cap;
} nt_convo_t;

/* One member's notification in the making, within one batch. */
typedef struct {
    const char *user_id, *convo_id;
    int32_t partition;
    int64_t first_seq, last_seq, count, last_at;
    const char *senders[5];
    size_t nsenders;
    const char *last_sender;
    const char *last_content;
    size_t last_content_len;
    int mention;
} agg_t;

static void convo_free(void *v)
{
    nt_convo_t *c = v;
    for (size_t i = 0; i < c->nmembers; i++) {
        free(c->members[i].user_id);
        free(c->members[i].username);
        free(c->members[i].name);
    }
    free(c->members);
    free(c->title);
    free(c);
}

static void msgs_clear(nt_t *n)
{
    for (size_t i = 0; i < n->nmsgs; i++) {
        free(n->msgs[i].convo_id);
        free(n->msgs[i].sender_id);
        free(n->msgs[i].content);
    }
    n->nmsgs = 0;
    kc_map_destroy(n->members, convo_free);
    n->members = NULL;
}

static void batch_reset(nt_t *n)
{
    msgs_clear(n);
    for (int32_t i = 0; i < n->nparts; i++)
        n->next[i] = -1;
    n->intake_mention = 0;
}

/* ---- stored offsets ---- */

/* Reads notify_offsets into n->stored (-1 where no row), blocking: at an assignment and a
 * resync only. 0, or -1 with err. */
static int read_offsets(nt_t *n, char *err, size_t errlen)
{
    PGconn *c = kc_pg_connect_blocking(n->cfg.pg.dsn, "kchat-notifier", err, errlen);
    if (!c)
        return -1;
    const char *params[] = {n->cfg.events_topic};
    PGresult *r = PQexecParams(c,
                               "SELECT partition, next_offset FROM notify_offsets "
                               "WHERE topic = $1",
                               1, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        (void)kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
    } else {
        for (int32_t i = 0; i < n->nparts; i++)
            n->stored[i] = -1;
        for (int i = 0; i < PQntuples(r); i++) {
            long long part = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            if (part >= 0 && part < n->nparts)
                n->stored[part] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        }
        rc = 0;
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* Where partition part starts reading: its stored offset, else what it had taken first
 * since its assignment, else the end (a new notifier tells of new messages only). */
static int64_t start_offset(const nt_t *n, int32_t part)
{
    if (n->stored[part] >= 0)
        return n->stored[part];
    if (n->first_seen[part] >= 0)
        return n->first_seen[part];
    return RD_KAFKA_OFFSET_END;
}

static void on_intake_timer(uv_timer_t *t);

static void retry_later(nt_t *n)
{
    if (uv_timer_start(&n->intake_timer, on_intake_timer, (uint64_t)n->backoff_ms, 0) != 0)
        nt_fail(n, "cannot start a timer");
    n->backoff_ms = n->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : n->backoff_ms * 2;
}

/* Reads the stored offsets again and moves the consumer there (after a failed batch, or one
 * whose partition was written by another notifier meanwhile). */
static void resync(nt_t *n)
{
    char err[512];
    n->need_resync = 1;
    batch_reset(n);
    if (read_offsets(n, err, sizeof(err)) != 0) {
        kc_log_warn("cannot read the stored offsets: %s", err);
        retry_later(n);
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n->nparts);
    for (int32_t i = 0; i < n->nparts; i++)
        if (n->assigned[i])
            rd_kafka_topic_partition_list_add(l, n->cfg.events_topic, i)->offset =
                start_offset(n, i);
    rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(n->consumer.rk, l, 30000) : NULL;
    int ok = !e;
    for (int i = 0; ok && i < l->cnt; i++)
        if (l->elems[i].err) {
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("partition", l->elems[i].partition)),
                      "seek failed: %s", rd_kafka_err2str(l->elems[i].err));
            ok = 0;
        }
    if (e) {
        kc_log_warn("seek failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    kc_counter_inc(n->resyncs);
    if (!ok) {
        retry_later(n);
        return;
    }
    n->need_resync = 0;
    n->backoff_ms = RETRY_MIN_MS;
    kc_kafka_watch_resume(n->consumer.w); /* paused since the batch that failed */
    (void)nt_on_events(n);
}

/* ---- the batch ---- */

static void batch_done(nt_t *n)
{
    n->busy = 0;
    batch_reset(n);
    if (n->stopping) {
        nt_drained(n); /* the drain goes on now that no batch is in flight */
        return;
    }
    kc_kafka_watch_resume(n->consumer.w);
    (void)nt_on_events(n);
}

static void batch_failed(nt_t *n, const char *why)
{
    kc_log_warn("a batch of events was not taken in: %s; going back to the stored offsets",
                why);
    n->busy = 0;
    if (n->stopping) {
        batch_done(n);
        return;
    }
    n->need_resync = 1;
    batch_reset(n);
    retry_later(n);
}

static void on_written(void *arg, const PGresult *res, const char *err);

/* Adds agg's JSON object to b (an element of json_to_recordset). */
static void agg_json(kc_buf_t *b, const agg_t *a)
{
    kc_buf_puts(b, "{\"u\":");
    kc_buf_json_qstr(b, a->user_id, strlen(a->user_id));
    kc_buf_puts(b, ",\"c\":");
    kc_buf_json_qstr(b, a->convo_id, strlen(a->convo_id));
    kc_buf_printf(b, ",\"f\":%" PRId64 ",\"l\":%" PRId64 ",\"n\":%" PRId64 ",\"s\":[",
                  a->first_seq, a->last_seq, a->count);
    for (size_t i = 0; i < a->nsenders; i++) {
        if (i)
            kc_buf_putc(b, ',');
        kc_buf_json_qstr(b, a->senders[i], strlen(a->senders[i]));
    }
    kc_buf_puts(b, "],\"ls\":");
    kc_buf_json_qstr(b, a->last_sender, strlen(a->last_sender));
    kc_buf_puts(b, ",\"lc\":");
    kc_buf_json_qstr(b, a->last_content, a->last_content_len);
    kc_buf_printf(b, ",\"mn\":%s,\"la\":%" PRId64 "}", a->mention ? "true" : "false", a->last_at);
}

static const char WRITE_SQL[] =
    "WITH cur AS ("
    "  SELECT coalesce((SELECT next_offset FROM notify_offsets"
    "                   WHERE topic = $1 AND partition = $2::int FOR UPDATE), -1) AS v),"
    " g AS (SELECT 1 AS ok FROM cur WHERE v = $3::bigint),"
    " o AS (INSERT INTO notify_offsets (topic, partition, next_offset)"
    "       SELECT $1, $2::int, $4::bigint FROM g"
    "       ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
    "       RETURNING 1),"
    " p AS (INSERT INTO notify_pending AS np (user_id, convo_id, first_seq, last_seq, count,"
    "         senders, last_sender, last_content, mention, last_at, due_at)"
    "       SELECT x.u, x.c, x.f, x.l, x.n, x.s, x.ls, x.lc, x.mn, to_timestamp(x.la / 1000.0),"
    "         CASE WHEN x.mn THEN now()"
    "              ELSE now() + make_interval(secs => ($5::bigint / 1000.0)::float8) END"
    "       FROM g, json_to_recordset($6::json) AS x(u text, c text, f bigint, l bigint, n int,"
    "         s text[], ls text, lc text, mn boolean, la bigint)"
    "       ON CONFLICT (user_id, convo_id) DO UPDATE SET"
    "         last_seq = greatest(np.last_seq, excluded.last_seq),"
    "         count = np.count + excluded.count,"
    "         senders = CASE WHEN cardinality(np.senders) >= 5 THEN np.senders"
    "           ELSE (np.senders || ARRAY(SELECT e FROM unnest(excluded.senders) AS e"
    "                                      WHERE e <> ALL (np.senders)))[1:5] END,"
    "         last_sender = excluded.last_sender, last_content = excluded.last_content,"
    "         mention = np.mention OR excluded.mention, last_at = excluded.last_at,"
    "         due_at = CASE WHEN excluded.mention THEN least(np.due_at, now())"
    "                       ELSE np.due_at END"
    "       RETURNING (xmax = 0) AS inserted)"
    " SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM p WHERE inserted)";

typedef struct {
    nt_t *n;
    int32_t partition;
    int64_t next;
    int64_t candidates; /* member-messages folded into this statement */
} write_t;

/* Writes, per partition of the batch, its notifications and its next offset. */
static void write_batch(nt_t *n, agg_t *aggs, size_t naggs)
{
    n->intake_pending = 0;
    n->intake_failed = 0;
    uint64_t now = kc_mono_ns();
    for (int32_t p = 0; p < n->nparts; p++) {
        if (n->next[p] < 0 || !n->assigned[p])
            continue;
        int made = 0;
        for (size_t i = 0; i < naggs && !made; i++)
            made = aggs[i].partition == p;
        if (!made && now - n->offsets_written_ns[p] < OFFSETS_ONLY_EVERY_NS)
            continue;
        n->offsets_written_ns[p] = now;
        kc_buf_t json = {0};
        kc_buf_putc(&json, '[');
        int first = 1;
        int64_t cands = 0;
        for (size_t i = 0; i < naggs; i++) {
            if (aggs[i].partition != p)
                continue;
            if (!first)
                kc_buf_putc(&json, ',');
            first = 0;
            agg_json(&json, &aggs[i]);
            cands += aggs[i].count;
            if (aggs[i].mention)
                n->intake_mention = 1;
        }
        kc_buf_putc(&json, ']');
        char spart[16], sexp[24], snext[24], scoal[24];
        (void)kc_strlcpyf(spart, sizeof(spart), "%d", (int)p);
        (void)kc_strlcpyf(sexp, sizeof(sexp), "%" PRId64, n->stored[p]);
        (void)kc_strlcpyf(snext, sizeof(snext), "%" PRId64, n->next[p]);
        (void)kc_strlcpyf(scoal, sizeof(scoal), "%lld", n->cfg.coalesce_ms);
        const char *params[] = {n->cfg.events_topic, spart, sexp, snext, scoal, json.data};
        write_t *w = kc_xcalloc(1, sizeof(*w));
        w->n = n;
        w->partition = p;
        w->next = n->next[p];
        w->candidates = cands;
        if (kc_pg_query(n->pg, WRITE_SQL, 6, params, on_written, w) != 0) {
            free(w);
            n->intake_failed = 1;
        } else {
            n->intake_pending++;
        }
        kc_buf_free(&json);
    }
    if (n->intake_pending == 0) {
        if (n->intake_failed)
            batch_failed(n, "postgres is unavailable");
        else
            batch_done(n);
    }
}

static void on_written(void *arg, const PGresult *res, const char *err)
{
    write_t *w = arg;
    nt_t *n = w->n;
    if (err || !res || PQntuples(res) != 1) {
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("partition", w->partition)),
                  "cannot write notifications: %s", err ? err : "no answer");
        n->intake_failed = 1;
    } else if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        /* the stored offset was not the one expected: someone else wrote this partition */
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partition", w->partition)),
                  "the partition's stored offset moved under this notifier: reading it again");
        n->intake_failed = 1;
    } else {
        if (n->assigned[w->partition])
            n->stored[w->partition] = w->next;
        long long made = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        kc_counter_add(n->pending_made, (double)made);
        if (w->candidates > made)
            kc_counter_add(n->coalesced, (double)(w->candidates - made));
    }
    free(w);
    if (--n->intake_pending > 0)
        return;
    if (n->intake_failed) {
        batch_failed(n, "a partition's statement failed");
        return;
    }
    if (n->intake_mention)
        nt_close_kick(n);
    n->backoff_ms = RETRY_MIN_MS;
    batch_done(n);
}

/* The batch's member-messages that are to be told, folded per member and conversation. */
typedef struct {
    size_t msg, member;
    int mention;
} cand_t;

static int presence_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Candidates and the distinct users they name (sorted, for the Redis script's keys). */
typedef struct {
    nt_t *n;
    cand_t *cands;
    size_t ncands;
    const char **users;
    size_t nusers;
} decide_t;

static void decide_free(decide_t *d)
{
    free(d->cands);
    free(d->users);
    free(d);
}

static void fold(nt_t *n, decide_t *d, const redisReply *online)
{
    kc_map_t *by = kc_map_new();
    agg_t *aggs = kc_xcalloc(d->ncands ? d->ncands : 1, sizeof(agg_t));
    size_t naggs = 0;
    for (size_t i = 0; i < d->ncands; i++) {
        const nt_msg_t *m = &n->msgs[d->cands[i].msg];
        const nt_convo_t *c = kc_map_get(n->members, m->convo_id, strlen(m->convo_id));
        const nt_member_t *mb = &c->members[d->cands[i].member];
        if (online) {
            const char **hit = bsearch(&mb->user_id, d->users, d->nusers, sizeof(char *),
                                       presence_key_cmp);
            size_t ui = hit ? (size_t)(hit - d->users) : 0;
            if (hit && ui < online->elements && online->element[ui]->type == REDIS_REPLY_INTEGER &&
                online->element[ui]->integer == 1) {
                kc_counter_inc(n->skip_connected);
                continue;
            }
        }
        kc_buf_t key = {0};
        kc_buf_printf(&key, "%s", mb->user_id);
        kc_buf_putc(&key, '\0');
        kc_buf_puts(&key, m->convo_id);
        agg_t *a = kc_map_get(by, key.data, key.len);
        if (!a) {
            a = &aggs[naggs++];
            a->user_id = mb->user_id;
            a->convo_id = m->convo_id;
            a->partition = m->partition;
            a->first_seq = m->seq_no;
            (void)kc_map_put(by, key.data, key.len, a);
        }
        kc_buf_free(&key);
        a->last_seq = m->seq_no;
        a->count++;
        a->last_at = m->at_ms;
        a->mention |= d->cands[i].mention;
        /* the sender's username: a member of the conversation, or a former one */
        const char *sender = "someone";
        for (size_t k = 0; k < c->nmembers; k++)
            if (strcmp(c->members[k].user_id, m->sender_id) == 0) {
                sender = c->members[k].name;
                break;
            }
        a->last_sender = sender;
        a->last_content = m->content;
        a->last_content_len = nt_utf8_cut(m->content, strlen(m->content), NT_TEXT_MAX);
        int seen = 0;
        for (size_t k = 0; k < a->nsenders; k++)
            seen |= strcmp(a->senders[k], sender) == 0;
        if (!seen && a->nsenders < 5)
            a->senders[a->nsenders++] = sender;
    }
    kc_map_destroy(by, NULL);
    write_batch(n, aggs, naggs);
    free(aggs);
}

/* The route registry: 1 for each user with a route that has not lapsed (a gateway holds a
 * connection of theirs), else 0. */
static const char ONLINE_LUA[] = "local now = tonumber(ARGV[1])\n"
                                 "local out = {}\n"
                                 "for i, k in ipairs(KEYS) do\n"
                                 "  local on = 0\n"
                                 "  local h = redis.call('HGETALL', k)\n"
                                 "  for j = 2, #h, 2 do\n"
                                 "    if tonumber(h[j]) > now then on = 1 end\n"
                                 "  end\n"
                                 "  out[i] = on\n"
                                 "end\n"
                                 "return out\n";

int nt_ask_online(nt_t *n, const char *const *users, size_t nusers, kc_redis_cb cb, void *arg)
{
    size_t argc = 4 + nusers;
    const char **argv = kc_xcalloc(argc, sizeof(char *));
    size_t *lens = kc_xcalloc(argc, sizeof(size_t));
    char **keys = kc_xcalloc(nusers ? nusers : 1, sizeof(char *));
    char nkeys[24], now[24];
    (void)kc_strlcpyf(nkeys, sizeof(nkeys), "%zu", nusers);
    (void)kc_strlcpyf(now, sizeof(now), "%" PRId64, kc_now_ms());
    argv[0] = "EVAL";
    argv[1] = ONLINE_LUA;
    argv[2] = nkeys;
    for (size_t i = 0; i < nusers; i++) {
        kc_buf_t k = {0};
        kc_buf_printf(&k, KC_REDIS_ROUTE "%s", users[i]);
        keys[i] = kc_buf_steal(&k);
        argv[3 + i] = keys[i];
    }
    argv[3 + nusers] = now;
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    int rc = kc_redis_command(n->redis, cb, arg, (int)argc, argv, lens);
    for (size_t i = 0; i < nusers; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    free(lens);
    return rc;
}

static void on_presence(void *arg, const redisReply *reply, const char *err)
{
    decide_t *d = arg;
    nt_t *n = d->n;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != d->nusers) {
        kc_log_warn("cannot ask who is connected: %s", err ? err : "unexpected reply");
        decide_free(d);
        batch_failed(n, "redis is unavailable");
        return;
    }
    fold(n, d, reply);
    decide_free(d);
}

/* Who hears of what, before asking Redis who is connected. */
static void decide(nt_t *n)
{
    decide_t *d = kc_xcalloc(1, sizeof(*d));
    d->n = n;
    size_t cap = 0;
    for (size_t i = 0; i < n->nmsgs; i++) {
        const nt_msg_t *m = &n->msgs[i];
        const nt_convo_t *c = kc_map_get(n->members, m->convo_id, strlen(m->convo_id));
        if (!c)
            continue; /* not in the read model (yet): nobody to tell */
        for (size_t k = 0; k < c->nmembers; k++) {
            const nt_member_t *mb = &c->members[k];
            if (strcmp(mb->user_id, m->sender_id) == 0)
                continue;
            int mention = nt_mentions(m->content, strlen(m->content), mb->username);
            if (mb->muted && !mention) {
                kc_counter_inc(n->skip_muted);
                continue;
            }
            if (d->ncands == cap) {
                cap = cap ? cap * 2 : 64;
                d->cands = kc_xrealloc(d->cands, cap * sizeof(cand_t));
            }
            d->cands[d->ncands++] = (cand_t){.msg = i, .member = k, .mention = mention};
        }
    }
    if (d->ncands == 0) {
        fold(n, d, NULL);
        decide_free(d);
        return;
    }
    d->users = kc_xcalloc(d->ncands, sizeof(char *));
    for (size_t i = 0; i < d->ncands; i++) {
        const nt_msg_t *m = &n->msgs[d->cands[i].msg];
        const nt_convo_t *c = kc_map_get(n->members, m->convo_id, strlen(m->convo_id));
        d->users[i] = c->members[d->cands[i].member].user_id;
    }
    qsort(d->users, d->ncands, sizeof(char *), presence_key_cmp);
    size_t u = 0;
    for (size_t i = 0; i < d->ncands; i++)
        if (u == 0 || strcmp(d->users[u - 1], d->users[i]) != 0)
            d->users[u++] = d->users[i];
    d->nusers = u;

    int rc = nt_ask_online(n, d->users, u, on_presence, d);
    if (rc != 0) {
        decide_free(d);
        batch_failed(n, "redis is unavailable");
    }
}

static void ask_members(nt_t *n);

/* True when the read model holds every message of the batch (and so the membership changes
 * before each). */
static int projector_caught_up(const nt_t *n)
{
    for (size_t i = 0; i < n->nmsgs; i++) {
        const nt_convo_t *c =
            kc_map_get(n->members, n->msgs[i].convo_id, strlen(n->msgs[i].convo_id));
        if (!c || c->last_seq < n->msgs[i].seq_no)
            return 0;
    }
    return 1;
}

static void on_members(void *arg, const PGresult *res, const char *err)
{
    nt_t *n = arg;
    if (n->stopping) {
        batch_done(n); /* given up: read again by the next notifier */
        return;
    }
    if (err || !res) {
        kc_log_warn("cannot read the members: %s", err ? err : "no answer");
        batch_failed(n, "postgres is unavailable");
        return;
    }
    kc_map_destroy(n->members, convo_free);
    n->members = kc_map_new();
    for (int i = 0; i < PQntuples(res); i++) {
        const char *cid = PQgetvalue(res, i, 0);
        nt_convo_t *c = kc_map_get(n->members, cid, strlen(cid));
        if (!c) {
            c = kc_xcalloc(1, sizeof(*c));
            c->title = kc_xstrdup(PQgetvalue(res, i, 1));
            c->last_seq = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            (void)kc_map_put(n->members, cid, strlen(cid), c);
        }
        if (PQgetisnull(res, i, 3) || c->nmembers == MAX_MEMBERS_PER_CONVO)
            continue; /* the conversation, with none of its members to tell */
        if (c->nmembers == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 8;
            c->members = kc_xrealloc(c->members, c->cap * sizeof(nt_member_t));
        }
        c->members[c->nmembers++] = (nt_member_t){
            .user_id = kc_xstrdup(PQgetvalue(res, i, 3)),
            .username = kc_xstrdup(PQgetvalue(res, i, 4)),
            .muted = strcmp(PQgetvalue(res, i, 5), "t") == 0,
            .name = kc_xstrdup(PQgetvalue(res, i, 6)),
        };
    }
    if (!projector_caught_up(n)) {
        uint64_t waited_ms = (kc_mono_ns() - n->batch_t0) / 1000000u;
        if (waited_ms < (uint64_t)n->cfg.projector_wait_ms) {
            if (uv_timer_start(&n->intake_timer, on_intake_timer, PROJECTOR_POLL_MS, 0) != 0)
                nt_fail(n, "cannot start a timer");
            return;
        }
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_INT("waited_ms", (long long)waited_ms)),
                  "the read model is behind the events: deciding with the members it has");
    }
    decide(n);
}

static void ask_members(nt_t *n)
{
    const char **ids = kc_xcalloc(n->nmsgs, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n->nmsgs; i++) {
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(ids[j], n->msgs[i].convo_id) == 0;
        if (!dup)
            ids[k++] = n->msgs[i].convo_id;
    }
    kc_buf_t arr = {0}, senders = {0};
    kc_pg_text_array(&arr, ids, k);
    for (size_t i = 0; i < n->nmsgs; i++)
        ids[i] = n->msgs[i].sender_id;
    kc_pg_text_array(&senders, ids, n->nmsgs);
    free(ids);
    /* Without webhooks only members with a push subscription can be told: the others are
     * left out here (the senders stay, for their names). */
    const char *params[] = {arr.data, n->nwebhooks ? "true" : "false", senders.data};
    int rc = kc_pg_query(n->pg,
                         "SELECT c.convo_id, c.title, c.last_seq, m.user_id,"
                         " coalesce(u.username, ''),"
                         " (mu.user_id IS NOT NULL AND"
                         "  (mu.muted_until IS NULL OR mu.muted_until > now())),"
                         " coalesce(nullif(u.display_name, ''), u.username, 'someone')"
                         " FROM rm.conversations c"
                         " LEFT JOIN rm.members m ON m.convo_id = c.convo_id"
                         "  AND ($2::boolean OR m.user_id = ANY ($3::text[])"
                         "       OR EXISTS (SELECT 1 FROM push_subscriptions s"
                         "                  WHERE s.user_id = m.user_id))"
                         " LEFT JOIN users u ON u.user_id = m.user_id"
                         " LEFT JOIN mutes mu ON mu.user_id = m.user_id"
                         "  AND mu.convo_id = m.convo_id"
                         " WHERE c.convo_id = ANY ($1::text[])",
                         3, params, on_members, n);
    kc_buf_free(&arr);
    kc_buf_free(&senders);
    if (rc != 0)
        batch_failed(n, "postgres is unavailable");
}

static void start_batch(nt_t *n)
{
    n->busy = 1;
    /* the queue keeps filling meanwhile: a watch left on would call back on every turn of the
     * loop while the batch waits for Postgres or Redis */
    kc_kafka_watch_pause(n->consumer.w);
    n->batch_t0 = kc_mono_ns();
    if (n->nmsgs == 0)
        write_batch(n, NULL, 0); /* offsets only */
    else
        ask_members(n);
}

static void on_intake_timer(uv_timer_t *t)
{
    nt_t *n = t->data;
    if (n->stopping)
        return;
    if (n->busy)
        ask_members(n); /* waiting for the projector */
    else if (n->need_resync)
        resync(n);
}

/* Takes one record of the topic into the batch. */
static void take(nt_t *n, const rd_kafka_message_t *m)
{
    int32_t p = m->partition;
    if (p < 0 || p >= n->nparts || !n->assigned[p])
        return;
    kc_counter_inc(n->consumed);
    if (n->first_seen[p] < 0)
        n->first_seen[p] = m->offset;
    n->next[p] = m->offset + 1;
    kc_chat_event_t ev;
    char err[256];
    if (kc_chat_event_decode(n->schemas, m->payload, m->len, &ev, err, sizeof(err)) != 0) {
        kc_log_kv(KC_LOG_WARN,
                  KC_FIELDS(KC_INT("partition", p), KC_INT("offset", (long long)m->offset)),
                  "an event that cannot be decoded is not told of: %s", err);
        return;
    }
    if (ev.kind != KC_EV_MESSAGE_CREATED || (!n->vapid && n->nwebhooks == 0))
        return; /* nothing to tell, or no way to tell it: the offsets still move */
    kc_counter_inc(n->messages);
    if (n->nmsgs == n->capmsgs) {
        n->capmsgs = n->capmsgs ? n->capmsgs * 2 : 64;
        n->msgs = kc_xrealloc(n->msgs, n->capmsgs * sizeof(nt_msg_t));
    }
    n->msgs[n->nmsgs++] = (nt_msg_t){
        .partition = p,
        .convo_id = kc_xstrndup(ev.convo_id.p, ev.convo_id.n),
        .sender_id = kc_xstrndup(ev.actor_id.p, ev.actor_id.n),
        .content = kc_xstrndup(ev.content.p ? ev.content.p : "", ev.content.n),
        .seq_no = ev.seq_no,
        .at_ms = ev.occurred_at,
        .nfiles = ev.attachments.count,
    };
}

int nt_on_events(void *arg)
{
    nt_t *n = arg;
    if (n->busy || n->need_resync || n->stopping || !n->consumer.rk)
        return 0;
    int polled = 0;
    while (polled < 500 && n->nmsgs < (size_t)n->cfg.batch_max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(n->consumer.rk, 0);
        if (!m)
            break;
        polled++;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kc_log_warn("consume error: %s", rd_kafka_message_errstr(m));
        else if (!m->err)
            take(n, m);
        rd_kafka_message_destroy(m);
    }
    int any = 0;
    for (int32_t p = 0; p < n->nparts && !any; p++)
        any = n->next[p] >= 0;
    if (any)
        start_batch(n);
    return polled == 500 && !any ? 1 : 0;
}

/* ---- rebalances ---- */

void nt_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    nt_t *n = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        char e[512];
        int read = read_offsets(n, e, sizeof(e)) == 0;
        if (!read) {
            kc_log_warn("cannot read the stored offsets at assignment: %s", e);
            n->need_resync = 1;
            if (!n->busy && uv_timer_start(&n->intake_timer, on_intake_timer,
                                           (uint64_t)n->backoff_ms, 0) != 0)
                nt_fail(n, "cannot start a timer");
        }
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p < 0 || p >= n->nparts)
                continue;
            n->assigned[p] = 1;
            n->first_seen[p] = -1;
            if (read)
                parts->elems[i].offset = start_offset(n, p);
            kc_log_kv(KC_LOG_INFO,
                      KC_FIELDS(KC_INT("partition", p), KC_INT("stored", n->stored[p])),
                      "partition assigned");
        }
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p < 0 || p >= n->nparts)
                continue;
            n->assigned[p] = 0;
            n->first_seen[p] = -1;
        }
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_INT("partitions", parts->cnt)), "partitions revoked");
    }
    (void)kc_kafka_rebalance_apply(rk, err, parts);
}

void nt_intake_init(nt_t *n)
{
    size_t np = (size_t)n->nparts;
    n->assigned = kc_xcalloc(np, sizeof(int));
    n->stored = kc_xcalloc(np, sizeof(int64_t));
    n->next = kc_xcalloc(np, sizeof(int64_t));
    n->first_seen = kc_xcalloc(np, sizeof(int64_t));
    n->offsets_written_ns = kc_xcalloc(np, sizeof(uint64_t));
    for (size_t i = 0; i < np; i++)
        n->stored[i] = n->next[i] = n->first_seen[i] = -1;
    n->backoff_ms = RETRY_MIN_MS;
    n->intake_timer.data = n;
}

void nt_intake_stop(nt_t *n)
{
    if (uv_is_active((uv_handle_t *)&n->intake_timer)) {
        if (uv_timer_stop(&n->intake_timer) != 0)
            kc_log_warn("cannot stop the intake timer");
        if (n->busy) {
            n->busy = 0;
            batch_reset(n);
        }
    }
}

void nt_intake_free(nt_t *n)
{
    msgs_clear(n);
    free(n->msgs);
    free(n->assigned);
    free(n->stored);
    free(n->next);
    free(n->first_seen);
    free(n->offsets_written_ns);
}
