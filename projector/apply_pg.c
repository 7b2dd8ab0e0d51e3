/* apply_pg.c - batches of events as multi-row statements over unnest()ed arrays. */
#include "apply_pg.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/buf.h"
#include "kchat/util.h"

void proj_stmts_add(proj_stmts_t *s, char *sql, int nparams, char **params)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = kc_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    proj_stmt_t *st = &s->v[s->n++];
    memset(st, 0, sizeof(*st));
    st->sql = sql;
    st->nparams = nparams;
    for (int i = 0; i < nparams && i < PROJ_STMT_MAX_PARAMS; i++)
        st->params[i] = params[i];
}

void proj_stmts_free(proj_stmts_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].sql);
        for (int j = 0; j < s->v[i].nparams; j++)
            free(s->v[i].params[j]);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Appends fmt with every "{S}" replaced by the schema name and every "{ms:x}" by the
 * timestamptz x milliseconds after the epoch (exact: no float division). */
static void subst(kc_buf_t *out, const char *fmt, const char *schema)
{
    const char *p;
    while ((p = strchr(fmt, '{'))) {
        kc_buf_append(out, fmt, (size_t)(p - fmt));
        const char *close = strchr(p, '}');
        if (strncmp(p, "{S}", 3) == 0) {
            kc_buf_puts(out, schema);
        } else if (strncmp(p, "{ms:", 4) == 0 && close) {
            kc_buf_puts(out, "(timestamptz 'epoch' + ");
            kc_buf_append(out, p + 4, (size_t)(close - p - 4));
            kc_buf_puts(out, " * interval '1 millisecond')");
        } else {
            kc_buf_putc(out, '{');
            fmt = p + 1;
            continue;
        }
        fmt = close + 1;
    }
    kc_buf_puts(out, fmt);
}

/* ---- array literals ---- */

typedef struct {
    kc_buf_t b;
    size_t n;
} col_t;

static void col_sep(col_t *c) { kc_buf_putc(&c->b, c->n++ ? ',' : '{'); }

static void col_text(col_t *c, const char *s)
{
    col_sep(c);
    kc_buf_putc(&c->b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            kc_buf_putc(&c->b, '\\');
        kc_buf_putc(&c->b, *s);
    }
    kc_buf_putc(&c->b, '"');
}

/* An SQL null: unquoted NULL in an array literal. */
static void col_null(col_t *c)
{
    col_sep(c);
    kc_buf_puts(&c->b, "NULL");
}

static void col_int(col_t *c, int64_t v)
{
    col_sep(c);
    kc_buf_printf(&c->b, "%" PRId64, v);
}

/* The literal, handed over; the column is left empty. */
static char *col_take(col_t *c)
{
    if (c->n == 0)
        kc_buf_putc(&c->b, '{');
    kc_buf_putc(&c->b, '}');
    c->n = 0;
    return kc_buf_steal(&c->b);
}

static void col_free(col_t *c)
{
    kc_buf_free(&c->b);
    c->n = 0;
}

/* ---- segments ---- */

/* The phases of a segment, in the order their statements run. */
enum {
    P_CREATED,  /* conversations inserted */
    P_ADDS,     /* members inserted (the creator as owner) */
    P_REJOINS,  /* departures of those added again deleted */
    P_ROLES,    /* roles set (RoleChanged, and a removal's promoted member) */
    P_REMOVES,  /* members deleted */
    P_DEPARTS,  /* departures upserted */
    P_MSGS,     /* messages inserted */
    P_EDITS,    /* messages edited */
    P_DELETES,  /* messages deleted */
    P_UNREACTS, /* reactions removed (ReactionChanged to null) */
    P_REACTS,   /* reactions set */
    P_CLEARS,   /* the reactions of deleted messages */
    P_READS,    /* read positions */
    P_UPDATES,  /* titles and topics */
    P_ACTIVITY, /* last_seq and last_activity */
    P_COUNT
};

#define MAX_COLS 10
static const int ncols[P_COUNT] = {4, 4, 2, 3, 2, 4, 10, 4, 3, 3, 4, 2, 3, 3, 3};

/* What each phase writes. departures counts as members (they change together). An insert
 * into members or departures also reads conversations (its foreign key), so it never shares
 * a statement with a write of conversations. */
static const unsigned tables[P_COUNT] = {
    [P_CREATED] = PROJ_T_CONVERSATIONS,
    [P_ADDS] = PROJ_T_MEMBERS | PROJ_T_CONVERSATIONS,
    [P_REJOINS] = PROJ_T_MEMBERS,
    [P_ROLES] = PROJ_T_MEMBERS,
    [P_REMOVES] = PROJ_T_MEMBERS,
    [P_DEPARTS] = PROJ_T_MEMBERS | PROJ_T_CONVERSATIONS,
    [P_MSGS] = PROJ_T_MESSAGES,
    [P_EDITS] = PROJ_T_MESSAGES,
    [P_DELETES] = PROJ_T_MESSAGES,
    [P_UNREACTS] = PROJ_T_REACTIONS,
    [P_REACTS] = PROJ_T_REACTIONS,
    [P_CLEARS] = PROJ_T_REACTIONS,
    [P_READS] = PROJ_T_MEMBERS,
    [P_UPDATES] = PROJ_T_CONVERSATIONS,
    [P_ACTIVITY] = PROJ_T_CONVERSATIONS,
};

typedef struct {
    col_t cols[P_COUNT][MAX_COLS];
    int reacts_set; /* a row of P_REACTS sets a reaction (not all are removals) */
} segment_t;

static size_t seg_rows(const segment_t *g, int phase) { return g->cols[phase][0].n; }

static void emit(const char *schema, segment_t *g, int phase, const char *fmt, proj_stmts_t *out)
{
    if (!seg_rows(g, phase))
        return;
    kc_buf_t sql = {0};
    subst(&sql, fmt, schema);
    char *params[MAX_COLS];
    for (int i = 0; i < ncols[phase]; i++)
        params[i] = col_take(&g->cols[phase][i]);
    proj_stmts_add(out, kc_buf_steal(&sql), ncols[phase], params);
    out->v[out->n - 1].tables = tables[phase];
}

static void seg_flush(const char *schema, segment_t *g, proj_stmts_t *out)
{
    /* Times are ms since the epoch; {ms:x} reads "x ms after the epoch", exactly. */
    emit(schema, g, P_CREATED,
         "INSERT INTO {S}.conversations (convo_id, title, created_by, created_at, last_seq, "
         "last_activity) SELECT c, t, b, {ms:at}, 0, {ms:at} "
         "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(c, t, b, at)",
         out);
    /* A member already there keeps their row (and role). */
    emit(schema, g, P_ADDS,
         "INSERT INTO {S}.members (convo_id, user_id, joined_at, role) SELECT c, u, {ms:at}, r "
         "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS x(c, u, at, r) "
         "ON CONFLICT DO NOTHING",
         out);
    emit(schema, g, P_REJOINS,
         "DELETE FROM {S}.departures d USING unnest($1::text[], $2::text[]) AS x(c, u) "
         "WHERE d.convo_id = x.c AND d.user_id = x.u",
         out);
    /* Two roles of one member in a segment: the later one wins. */
    emit(schema, g, P_ROLES,
         "UPDATE {S}.members m SET role = x.r "
         "FROM (SELECT DISTINCT ON (c, u) c, u, r "
         "FROM unnest($1::text[], $2::text[], $3::text[]) "
         "WITH ORDINALITY AS y(c, u, r, i) ORDER BY c, u, i DESC) x "
         "WHERE m.convo_id = x.c AND m.user_id = x.u",
         out);
    emit(schema, g, P_REMOVES,
         "DELETE FROM {S}.members m USING unnest($1::text[], $2::text[]) AS x(c, u) "
         "WHERE m.convo_id = x.c AND m.user_id = x.u",
         out);
    /* One row per former member (an upsert may not touch a row twice): the later wins. */
    emit(schema, g, P_DEPARTS,
         "INSERT INTO {S}.departures (convo_id, user_id, left_seq, left_at) "
         "SELECT c, u, s, {ms:at} FROM (SELECT DISTINCT ON (c, u) c, u, s, at "
         "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) "
         "WITH ORDINALITY AS y(c, u, s, at, i) ORDER BY c, u, i DESC) x "
         "ON CONFLICT (convo_id, user_id) DO UPDATE SET left_seq = EXCLUDED.left_seq, "
         "left_at = EXCLUDED.left_at",
         out);
    emit(schema, g, P_MSGS,
         "INSERT INTO {S}.messages (convo_id, seq_no, server_msg_id, sender_id, client_msg_id, "
         "content, content_type, created_at, reply_to, attachments) "
         "SELECT c, s, sid, snd, cid, body, ct, {ms:at}, rt, att::jsonb "
         "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], "
         "$7::text[], $8::bigint[], $9::bigint[], $10::text[]) "
         "AS x(c, s, sid, snd, cid, body, ct, at, rt, att)",
         out);
    /* Two edits of one message in a segment: the later one's text wins, both count. */
    emit(schema, g, P_EDITS,
         "UPDATE {S}.messages m SET content = x.body, edited_at = {ms:x.at}, "
         "edit_count = m.edit_count + x.n "
         "FROM (SELECT DISTINCT ON (c, s) c, s, body, at, count(*) OVER (PARTITION BY c, s) AS n "
         "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) "
         "WITH ORDINALITY AS y(c, s, body, at, i) ORDER BY c, s, i DESC) x "
         "WHERE m.convo_id = x.c AND m.seq_no = x.s",
         out);
    emit(schema, g, P_DELETES,
         "UPDATE {S}.messages m SET content = '', deleted_at = {ms:x.at} "
         "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(c, s, at) "
         "WHERE m.convo_id = x.c AND m.seq_no = x.s",
         out);
    /* A member's reaction to a message: first every one the segment removes is deleted,
     * then each member's latest in the segment is set unless it is a removal (the latest
     * wins; an upsert may not touch a row twice). */
    emit(schema, g, P_UNREACTS,
         "DELETE FROM {S}.reactions r USING unnest($1::text[], $2::bigint[], $3::text[]) "
         "AS x(c, s, u) WHERE r.convo_id = x.c AND r.seq_no = x.s AND r.user_id = x.u",
         out);
    if (!g->reacts_set) /* all removed: nothing to set */
        for (int i = 0; i < ncols[P_REACTS]; i++)
            col_free(&g->cols[P_REACTS][i]);
    emit(schema, g, P_REACTS,
         "INSERT INTO {S}.reactions (convo_id, seq_no, user_id, emoji) "
         "SELECT c, s, u, e FROM (SELECT DISTINCT ON (c, s, u) c, s, u, e "
         "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) "
         "WITH ORDINALITY AS y(c, s, u, e, i) ORDER BY c, s, u, i DESC) x "
         "WHERE e IS NOT NULL "
         "ON CONFLICT (convo_id, seq_no, user_id) DO UPDATE SET emoji = EXCLUDED.emoji",
         out);
    g->reacts_set = 0;
    /* After the reactions set: a message's reactions set, then the message deleted. */
    emit(schema, g, P_CLEARS,
         "DELETE FROM {S}.reactions r USING unnest($1::text[], $2::bigint[]) AS x(c, s) "
         "WHERE r.convo_id = x.c AND r.seq_no = x.s",
         out);
    emit(schema, g, P_READS,
         "UPDATE {S}.members m SET read_seq = GREATEST(m.read_seq, x.s) "
         "FROM (SELECT c, u, max(s) AS s "
         "FROM unnest($1::text[], $2::text[], $3::bigint[]) AS y(c, u, s) GROUP BY c, u) x "
         "WHERE m.convo_id = x.c AND m.user_id = x.u",
         out);
    /* Per conversation, the latest title and the latest topic given (null: unchanged). */
    emit(schema, g, P_UPDATES,
         "UPDATE {S}.conversations v SET title = coalesce(x.t, v.title), "
         "topic = coalesce(x.p, v.topic) "
         "FROM (SELECT c, (array_agg(t ORDER BY i DESC) FILTER (WHERE t IS NOT NULL))[1] AS t, "
         "(array_agg(p ORDER BY i DESC) FILTER (WHERE p IS NOT NULL))[1] AS p "
         "FROM unnest($1::text[], $2::text[], $3::text[]) "
         "WITH ORDINALITY AS y(c, t, p, i) GROUP BY c) x "
         "WHERE v.convo_id = x.c",
         out);
    emit(schema, g, P_ACTIVITY,
         "UPDATE {S}.conversations v SET last_seq = GREATEST(v.last_seq, x.s), "
         "last_activity = GREATEST(v.last_activity, {ms:x.at}) "
         "FROM (SELECT c, max(s) AS s, max(at) AS at "
         "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS y(c, s, at) GROUP BY c) x "
         "WHERE v.convo_id = x.c",
         out);
}

static void seg_free(segment_t *g)
{
    for (int p = 0; p < P_COUNT; p++)
        for (int i = 0; i < MAX_COLS; i++)
            col_free(&g->cols[p][i]);
}

/* A role row: ROLES gets (convo, user, role). */
static void add_role(segment_t *g, const char *convo, const char *user, const char *role)
{
    col_t *c = g->cols[P_ROLES];
    col_text(&c[0], convo);
    col_text(&c[1], user);
    col_text(&c[2], role);
}

/* Whether e, appended now, would run in an order the phases break: its statements run in an
 * earlier phase than rows of the segment it must follow. Only membership changes can. */
static int breaks_order(const segment_t *g, const proj_event_t *e)
{
    switch (e->kind) {
    case EV_ADDED:
        /* Added again after a removal (members, departures), or after a read position. */
        return seg_rows(g, P_REMOVES) || seg_rows(g, P_DEPARTS) || seg_rows(g, P_READS);
    case EV_REMOVED:
        /* A removal after a read position. (Its promotion runs in ROLES, before the removals:
         * the promoted member is not one of those removed.) */
        return seg_rows(g, P_READS) != 0;
    case EV_REACTION:
        /* A reaction after a delete (the processor refuses one to the deleted message itself,
         * but the order stays the log's whatever it holds). */
        return seg_rows(g, P_CLEARS) != 0;
    default:
        /* A role after removals runs before them: only a member's role changes, and one
         * removed in this segment is not a member unless added again, which flushed. Titles
         * and topics run after the conversations are created; activity takes maxima. */
        return 0;
    }
}

size_t proj_pg_build(const char *schema, proj_item_t *items, size_t n, proj_stmts_t *out)
{
    segment_t g;
    memset(&g, 0, sizeof(g));
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        proj_item_t *it = &items[i];
        if (!it->to_pg || it->kind != ITEM_EVENT)
            continue;
        const proj_event_t *e = &it->ev;
        if (e->kind == EV_REJECTED)
            continue;
        if (breaks_order(&g, e))
            seg_flush(schema, &g, out);
        col_t *c;
        switch (e->kind) {
        case EV_CREATED:
            c = g.cols[P_CREATED];
            col_text(&c[0], e->convo_id);
            col_text(&c[1], e->title);
            col_text(&c[2], e->actor_id);
            col_int(&c[3], e->at);
            __attribute__((fallthrough));
        case EV_ADDED:
            for (size_t m = 0; m < e->nmembers; m++) {
                c = g.cols[P_ADDS];
                col_text(&c[0], e->convo_id);
                col_text(&c[1], e->members[m]);
                col_int(&c[2], e->at);
                /* The creator is the owner; anyone else starts as a member. */
                col_text(&c[3], e->kind == EV_CREATED && strcmp(e->members[m], e->actor_id) == 0
                                    ? "owner"
                                    : "member");
                if (e->kind == EV_ADDED) {
                    c = g.cols[P_REJOINS];
                    col_text(&c[0], e->convo_id);
                    col_text(&c[1], e->members[m]);
                }
            }
            break;
        case EV_REMOVED:
            for (size_t m = 0; m < e->nmembers; m++) {
                c = g.cols[P_REMOVES];
                col_text(&c[0], e->convo_id);
                col_text(&c[1], e->members[m]);
                c = g.cols[P_DEPARTS];
                col_text(&c[0], e->convo_id);
                col_text(&c[1], e->members[m]);
                col_int(&c[2], e->seq_no);
                col_int(&c[3], e->at);
            }
            if (e->promoted)
                add_role(&g, e->convo_id, e->promoted, "owner");
            break;
        case EV_ROLE:
            add_role(&g, e->convo_id, e->user_id, e->role);
            break;
        case EV_UPDATED:
            c = g.cols[P_UPDATES];
            col_text(&c[0], e->convo_id);
            e->title ? col_text(&c[1], e->title) : col_null(&c[1]); /* null: unchanged */
            e->topic ? col_text(&c[2], e->topic) : col_null(&c[2]);
            break;
        case EV_MESSAGE:
            c = g.cols[P_MSGS];
            col_text(&c[0], e->convo_id);
            col_int(&c[1], e->seq_no);
            col_text(&c[2], e->server_msg_id);
            col_text(&c[3], e->actor_id);
            col_text(&c[4], e->client_msg_id);
            col_text(&c[5], e->content);
            col_text(&c[6], e->content_type);
            col_int(&c[7], e->at);
            e->reply_to ? col_int(&c[8], e->reply_to) : col_null(&c[8]); /* not a reply */
            e->attachments ? col_text(&c[9], e->attachments) : col_null(&c[9]);
            /* Sending a message means having read up to it. */
            c = g.cols[P_READS];
            col_text(&c[0], e->convo_id);
            col_text(&c[1], e->actor_id);
            col_int(&c[2], e->seq_no);
            break;
        case EV_EDITED:
            c = g.cols[P_EDITS];
            col_text(&c[0], e->convo_id);
            col_int(&c[1], e->seq_no);
            col_text(&c[2], e->content);
            col_int(&c[3], e->at);
            break;
        case EV_DELETED:
            c = g.cols[P_DELETES];
            col_text(&c[0], e->convo_id);
            col_int(&c[1], e->seq_no);
            col_int(&c[2], e->at);
            c = g.cols[P_CLEARS];
            col_text(&c[0], e->convo_id);
            col_int(&c[1], e->seq_no);
            break;
        case EV_REACTION:
            c = g.cols[P_REACTS];
            col_text(&c[0], e->convo_id);
            col_int(&c[1], e->seq_no);
            col_text(&c[2], e->actor_id);
            if (e->emoji) {
                col_text(&c[3], e->emoji);
                g.reacts_set = 1;
            } else {
                col_null(&c[3]); /* removed */
                c = g.cols[P_UNREACTS];
                col_text(&c[0], e->convo_id);
                col_int(&c[1], e->seq_no);
                col_text(&c[2], e->actor_id);
            }
            break;
        case EV_READ:
            c = g.cols[P_READS];
            col_text(&c[0], e->convo_id);
            col_text(&c[1], e->actor_id);
            col_int(&c[2], e->seq_no);
            break;
        case EV_REJECTED:
            break;
        }
        c = g.cols[P_ACTIVITY];
        col_text(&c[0], e->convo_id);
        col_int(&c[1], e->kind == EV_MESSAGE ? e->seq_no : 0);
        col_int(&c[2], e->at);
        applied++;
    }
    seg_flush(schema, &g, out);
    seg_free(&g);
    return applied;
}

/* ---- the audit log ---- */

typedef struct {
    col_t rows[7]; /* event_id, at, action, actor, target, source, detail */
    col_t dels[6]; /* event_id, at, actor, convo, seq_no, source */
} audit_cols_t;

static void audit_row(audit_cols_t *a, const proj_event_t *e, const char *suffix,
                      const char *action, const char *target, const char *role)
{
    kc_buf_t id = {0}, detail = {0};
    kc_buf_printf(&id, "%s%s%s", e->event_id, suffix, target);
    kc_buf_puts(&detail, "{\"convo_id\":\"");
    kc_buf_json_str(&detail, e->convo_id, strlen(e->convo_id));
    kc_buf_putc(&detail, '"');
    if (role) {
        kc_buf_puts(&detail, ",\"role\":\"");
        kc_buf_json_str(&detail, role, strlen(role));
        kc_buf_putc(&detail, '"');
    }
    kc_buf_putc(&detail, '}');
    col_text(&a->rows[0], id.data);
    col_int(&a->rows[1], e->at);
    col_text(&a->rows[2], action);
    col_text(&a->rows[3], e->actor_id);
    col_text(&a->rows[4], target);
    col_text(&a->rows[5], e->origin);
    col_text(&a->rows[6], detail.data);
    kc_buf_free(&id);
    kc_buf_free(&detail);
}

size_t proj_pg_audit(const char *schema, proj_item_t *items, size_t n, proj_stmts_t *out)
{
    audit_cols_t a;
    memset(&a, 0, sizeof(a));
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].to_pg || items[i].kind != ITEM_EVENT)
            continue;
        const proj_event_t *e = &items[i].ev;
        switch (e->kind) {
        case EV_ADDED:
            for (size_t m = 0; m < e->nmembers; m++, rows++)
                audit_row(&a, e, ":", "member_added", e->members[m], "member");
            break;
        case EV_REMOVED:
            for (size_t m = 0; m < e->nmembers; m++, rows++)
                audit_row(&a, e, ":",
                          strcmp(e->members[m], e->actor_id) == 0 ? "member_left"
                                                                  : "member_removed",
                          e->members[m], NULL);
            if (e->promoted) {
                audit_row(&a, e, ":promoted:", "role_changed", e->promoted, "owner");
                rows++;
            }
            break;
        case EV_ROLE:
            audit_row(&a, e, ":", "role_changed", e->user_id, e->role);
            rows++;
            break;
        case EV_DELETED:
            /* Whether its author deleted it is known to the messages table only: the statement
             * keeps the deletes of others. */
            col_text(&a.dels[0], e->event_id);
            col_int(&a.dels[1], e->at);
            col_text(&a.dels[2], e->actor_id);
            col_text(&a.dels[3], e->convo_id);
            col_int(&a.dels[4], e->seq_no);
            col_text(&a.dels[5], e->origin);
            break;
        default:
            break;
        }
    }
    /* Ids are cut to what the columns hold (kchat's own ids are far shorter); event ids make
     * a replay of the same events insert nothing twice. */
    if (a.rows[0].n) {
        char *params[7];
        for (int i = 0; i < 7; i++)
            params[i] = col_take(&a.rows[i]);
        proj_stmts_add(out,
                       kc_xstrdup("INSERT INTO audit_log (event_id, occurred_at, action, actor_id, "
                                  "target, source, detail) "
                                  "SELECT e, timestamptz 'epoch' + at * interval '1 millisecond', "
                                  "a, left(u, 128), left(t, 256), left(s, 256), d::jsonb "
                                  "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], "
                                  "$5::text[], $6::text[], $7::text[]) AS x(e, at, a, u, t, s, d) "
                                  "ON CONFLICT (event_id) DO NOTHING"),
                       7, params);
        out->v[out->n - 1].tables = PROJ_T_AUDIT;
    }
    if (a.dels[0].n) {
        char *params[6];
        for (int i = 0; i < 6; i++)
            params[i] = col_take(&a.dels[i]);
        kc_buf_t sql = {0};
        subst(&sql,
              "INSERT INTO audit_log (event_id, occurred_at, action, actor_id, target, source, "
              "detail) SELECT x.e, {ms:x.at}, 'message_deleted', left(x.u, 128), "
              "left(m.sender_id, 256), left(x.s, 256), "
              "jsonb_build_object('convo_id', x.c, 'seq_no', x.q, 'author_id', m.sender_id) "
              "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], "
              "$6::text[]) AS x(e, at, u, c, q, s) "
              "JOIN {S}.messages m ON m.convo_id = x.c AND m.seq_no = x.q "
              "WHERE m.sender_id <> x.u ON CONFLICT (event_id) DO NOTHING",
              schema);
        proj_stmts_add(out, kc_buf_steal(&sql), 6, params);
        /* It reads messages: never in one statement with their insert. */
        out->v[out->n - 1].tables = PROJ_T_AUDIT | PROJ_T_MESSAGES;
    }
    for (int i = 0; i < 7; i++)
        col_free(&a.rows[i]);
    for (int i = 0; i < 6; i++)
        col_free(&a.dels[i]);
    return rows;
}

static void parts_cols(const char *topic, const int32_t *parts, const int64_t *offs, size_t n,
                       char **params)
{
    col_t p = {0}, o = {0};
    for (size_t i = 0; i < n; i++) {
        col_int(&p, parts[i]);
        col_int(&o, offs[i]);
    }
    params[0] = kc_xstrdup(topic);
    params[1] = col_take(&p);
    params[2] = col_take(&o);
}

void proj_pg_check(const char *schema, const char *topic, const int32_t *parts,
                   const int64_t *expect, size_t n, int64_t generation, proj_stmts_t *out)
{
    char *params[4];
    parts_cols(topic, parts, expect, n, params);
    kc_buf_t gen = {0};
    kc_buf_printf(&gen, "%" PRId64, generation);
    params[3] = kc_buf_steal(&gen);
    kc_buf_t sql = {0};
    subst(&sql,
          "SELECT (CASE WHEN coalesce(bool_and(coalesce(o.next_offset, 0) = e.o), true) "
          "AND ($4::bigint < 0 OR (SELECT generation FROM {S}.meta) = $4::bigint) "
          "THEN '1' ELSE 'the read model moved under this writer' END)::int "
          "FROM unnest($2::int[], $3::bigint[]) AS e(p, o) "
          "LEFT JOIN {S}.offsets o ON o.topic = $1 AND o.partition = e.p",
          schema);
    proj_stmts_add(out, kc_buf_steal(&sql), 4, params);
    /* It reads the offsets as they were before the statement that holds it (a WITH query's
     * writes are not seen by the rest of the statement), and it comes first. */
    out->v[out->n - 1].select = 1;
}

void proj_pg_offsets(const char *schema, const char *topic, const int32_t *parts,
                     const int64_t *next, size_t n, proj_stmts_t *out)
{
    char *params[3];
    parts_cols(topic, parts, next, n, params);
    kc_buf_t sql = {0};
    subst(&sql,
          "INSERT INTO {S}.offsets (topic, partition, next_offset) SELECT $1, p, o "
          "FROM unnest($2::int[], $3::bigint[]) AS t(p, o) ON CONFLICT (topic, partition) "
          "DO UPDATE SET next_offset = EXCLUDED.next_offset",
          schema);
    proj_stmts_add(out, kc_buf_steal(&sql), 3, params);
    out->v[out->n - 1].tables = PROJ_T_OFFSETS;
}

char *proj_applied_payload(const proj_event_t *ev)
{
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"command_id\":\"");
    kc_buf_json_str(&b, ev->command_id, strlen(ev->command_id));
    kc_buf_puts(&b, "\",\"convo_id\":\"");
    kc_buf_json_str(&b, ev->convo_id, strlen(ev->convo_id));
    kc_buf_puts(&b, "\",\"type\":\"");
    kc_buf_json_str(&b, ev->type, strlen(ev->type));
    kc_buf_putc(&b, '"');
    if (ev->kind == EV_REJECTED) {
        /* NOTIFY payloads are limited to 8000 bytes; a reason's message is short, but cut it
         * anyway at a character boundary. */
        size_t ml = strlen(ev->message);
        while (ml > 1000)
            ml--;
        while (ml > 0 && ml < strlen(ev->message) &&
               ((unsigned char)ev->message[ml] & 0xC0) == 0x80)
            ml--;
        kc_buf_puts(&b, ",\"reason\":\"");
        kc_buf_json_str(&b, ev->reason, strlen(ev->reason) > 64 ? 64 : strlen(ev->reason));
        kc_buf_puts(&b, "\",\"message\":\"");
        kc_buf_json_str(&b, ev->message, ml);
        kc_buf_putc(&b, '"');
    }
    kc_buf_putc(&b, '}');
    return kc_buf_steal(&b);
}

size_t proj_pg_notify(proj_item_t *items, size_t n, proj_stmts_t *out)
{
    col_t c = {0};
    for (size_t i = 0; i < n; i++) {
        if (!items[i].to_pg || items[i].kind != ITEM_EVENT ||
            strncmp(items[i].ev.origin, "api:", 4) != 0)
            continue;
        char *payload = proj_applied_payload(&items[i].ev);
        col_text(&c, payload);
        free(payload);
    }
    size_t k = c.n;
    if (k) {
        char *params[1] = {col_take(&c)};
        /* One row, whatever the count (pg_notify is volatile: the subquery is not folded). */
        proj_stmts_add(out,
                       kc_xstrdup("SELECT count(*) FROM (SELECT pg_notify('kchat_applied', x) "
                                  "FROM unnest($1::text[]) AS t(x)) n"),
                       1, params);
        out->v[out->n - 1].select = 1;
    }
    col_free(&c);
    return k;
}

/* ---- fewer statements ---- */

/* sql with every $n as $(n + base). */
static void renumber(kc_buf_t *out, const char *sql, int base)
{
    for (const char *p = sql; *p;) {
        if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            char *end;
            long n = strtol(p + 1, &end, 10);
            kc_buf_printf(out, "$%ld", n + base);
            p = end;
        } else {
            const char *q = strchr(p, '$');
            size_t len = q ? (size_t)(q - p) : strlen(p);
            if (len == 0)
                len = 1; /* a '$' not followed by a digit */
            kc_buf_append(out, p, len);
            p += len;
        }
    }
}

/* One statement of in->v[from..to). */
static void combine_group(proj_stmts_t *in, size_t from, size_t to, proj_stmts_t *out)
{
    if (to - from == 1) {
        proj_stmt_t *st = &in->v[from];
        proj_stmts_add(out, st->sql, st->nparams, st->params);
        out->v[out->n - 1].tables = st->tables;
        out->v[out->n - 1].select = st->select;
        st->sql = NULL;
        st->nparams = 0;
        return;
    }
    size_t last_data = to, nsel = 0;
    for (size_t i = from; i < to; i++) {
        if (in->v[i].select)
            nsel++;
        else
            last_data = i;
    }
    kc_buf_t sql = {0};
    char *params[PROJ_STMT_MAX_PARAMS];
    int np = 0, ctes = 0;
    unsigned tabs = 0;
    /* The WITH queries: every data statement, but the last one when there is no SELECT (it
     * is then the main statement). */
    for (size_t i = from; i < to; i++) {
        proj_stmt_t *st = &in->v[i];
        tabs |= st->tables;
        if (st->select || (nsel == 0 && i == last_data))
            continue;
        kc_buf_puts(&sql, ctes ? ", " : "WITH ");
        kc_buf_printf(&sql, "q%d AS (", ctes++);
        renumber(&sql, st->sql, np);
        kc_buf_putc(&sql, ')');
        for (int k = 0; k < st->nparams; k++)
            params[np++] = st->params[k];
        st->nparams = 0;
    }
    if (ctes)
        kc_buf_putc(&sql, ' ');
    if (nsel == 0) {
        proj_stmt_t *st = &in->v[last_data];
        renumber(&sql, st->sql, np);
        for (int k = 0; k < st->nparams; k++)
            params[np++] = st->params[k];
        st->nparams = 0;
    } else {
        kc_buf_puts(&sql, "SELECT ");
        int col = 0;
        for (size_t i = from; i < to; i++) {
            proj_stmt_t *st = &in->v[i];
            if (!st->select)
                continue;
            kc_buf_puts(&sql, col++ ? ", (" : "(");
            renumber(&sql, st->sql, np);
            kc_buf_putc(&sql, ')');
            for (int k = 0; k < st->nparams; k++)
                params[np++] = st->params[k];
            st->nparams = 0;
        }
    }
    proj_stmts_add(out, kc_buf_steal(&sql), np, params);
    out->v[out->n - 1].tables = tabs;
    out->v[out->n - 1].select = nsel > 0;
}

void proj_pg_combine(proj_stmts_t *in, proj_stmts_t *out)
{
    size_t from = 0;
    unsigned tabs = 0;
    int np = 0;
    for (size_t i = 0; i < in->n; i++) {
        proj_stmt_t *st = &in->v[i];
        if (i > from && ((tabs & st->tables) || np + st->nparams > PROJ_STMT_MAX_PARAMS)) {
            combine_group(in, from, i, out);
            from = i;
            tabs = 0;
            np = 0;
        }
        tabs |= st->tables;
        np += st->nparams;
    }
    if (in->n > from)
        combine_group(in, from, in->n, out);
    proj_stmts_free(in);
}
