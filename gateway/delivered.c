/* delivered.c - delivery marks that outlive the socket.
 *
 * When a message reaches a socket of a recipient here, the recipient's mark for the
 * conversation moves to its seq_no. Marks are gathered in memory (one per conversation and
 * user: a burst of messages is one mark) and written to Postgres (table `delivered`,
 * db/migrations/0005_delivered.sql) once per tick as one statement that only moves them
 * forward; the API reads them into a conversation's receipts, so the sender's double ticks
 * come back after a reload. They are not events: a gateway killed loses at most a tick's
 * marks, and the next message delivered moves them on. A write that fails puts its marks
 * back among those waiting. At most GW_DELIVERED_MAX marks wait; beyond that (Postgres away
 * for long) new ones are dropped and counted.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "kchat/log.h"
#include "kchat/util.h"

#define GW_DELIVERED_MAX 50000

typedef struct {
    int64_t seq;
} mark_t;

/* The mark of key (convo_id, NUL, user_id: klen bytes, no NUL at the end) moves to seq_no. */
static void note_key(gw_t *g, const char *key, size_t klen, int64_t seq_no)
{
    mark_t *m = kc_map_get(g->delivered, key, klen);
    if (m) {
        if (seq_no > m->seq)
            m->seq = seq_no;
        return;
    }
    if (kc_map_size(g->delivered) >= GW_DELIVERED_MAX) {
        kc_counter_inc(g->m.delivered_dropped);
        return;
    }
    m = kc_xmalloc(sizeof(*m));
    m->seq = seq_no;
    (void)kc_map_put(g->delivered, key, klen, m);
}

void gw_delivered_note(gw_t *g, const char *convo_id, size_t convo_len, const char *user_id,
                       int64_t seq_no)
{
    size_t ulen = strlen(user_id);
    char key[2 * GW_ID_MAX + 2];
    if (convo_len > GW_ID_MAX || ulen > GW_ID_MAX)
        return;
    memcpy(key, convo_id, convo_len);
    key[convo_len] = '\0';
    memcpy(key + convo_len + 1, user_id, ulen);
    note_key(g, key, convo_len + 1 + ulen, seq_no);
}

/* Puts a mark that could not be written back among those waiting (the larger wins). Its key
 * is as note_key took it: the user's id is not NUL-terminated. */
static void merge_back(const void *key, size_t klen, void *value, void *arg)
{
    gw_t *g = arg;
    const mark_t *m = value;
    note_key(g, key, klen, m->seq);
}

static void on_written(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    gw_t *g = arg;
    if (err) {
        kc_counter_inc(g->m.delivered_errors);
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("error", err)),
                  "delivery marks not written: they go again with the next tick's");
        if (g->delivered)
            kc_map_each(g->writing, merge_back, g);
    }
    kc_map_destroy(g->writing, free);
    g->writing = NULL;
}

typedef struct {
    kc_buf_t *b;
    size_t n;
} build_t;

static void add_mark(const void *key, size_t klen, void *value, void *arg)
{
    build_t *x = arg;
    const char *k = key;
    size_t clen = strlen(k);
    const mark_t *m = value;
    kc_buf_puts(x->b, x->n++ ? ",[\"" : "[\"");
    kc_buf_json_str(x->b, k, clen);
    kc_buf_puts(x->b, "\",\"");
    kc_buf_json_str(x->b, k + clen + 1, klen - clen - 1);
    kc_buf_printf(x->b, "\",%lld]", (long long)m->seq);
}

void gw_delivered_flush(gw_t *g)
{
    if (!kc_map_size(g->delivered) || g->writing)
        return;
    kc_buf_t b = {0};
    kc_buf_putc(&b, '[');
    build_t x = {&b, 0};
    kc_map_each(g->delivered, add_mark, &x);
    kc_buf_putc(&b, ']');
    const char *params[] = {b.data};
    /* One row per key (the map's): ON CONFLICT never meets a key twice in one statement. */
    if (kc_pg_query(g->pg,
                    "INSERT INTO delivered (convo_id, user_id, delivered_seq) "
                    "SELECT m->>0, m->>1, (m->>2)::bigint FROM json_array_elements($1::json) m "
                    "ON CONFLICT (convo_id, user_id) DO UPDATE "
                    "SET delivered_seq = greatest(delivered.delivered_seq, "
                    "excluded.delivered_seq)",
                    1, params, on_written, g) == 0) {
        g->writing = g->delivered; /* until the answer: merged back if it failed */
        g->delivered = kc_map_new();
    } else {
        kc_counter_inc(g->m.delivered_errors); /* kept for the next tick */
    }
    kc_buf_free(&b);
}
