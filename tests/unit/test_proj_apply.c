/* The projector's appliers (projector/apply_pg.c, apply_redis.c), without Postgres or Redis:
 * array literals, segments and their order, what is skipped, the NOTIFY payloads, and the
 * operations of the Redis batch script (a message, a run of messages, what ends a run, edits,
 * deletes and reactions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apply_pg.h"
#include "apply_redis.h"
#include "store.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static proj_item_t item(proj_ev_kind_t kind, const char *convo, const char *actor, int64_t seq)
{
    proj_item_t it;
    memset(&it, 0, sizeof(it));
    it.kind = ITEM_EVENT;
    it.to_pg = it.to_redis = 1;
    it.ev.kind = kind;
    it.ev.type = "Test";
    it.ev.event_id = "e";
    it.ev.command_id = "cmd-1";
    it.ev.origin = "gateway:0";
    it.ev.convo_id = convo;
    it.ev.actor_id = actor;
    it.ev.at = 1000;
    it.ev.seq_no = seq;
    it.ev.server_msg_id = "s";
    it.ev.client_msg_id = "m";
    it.ev.content = "hi";
    it.ev.content_type = "text/plain";
    return it;
}

static const proj_count_t THUMBS2[] = {{"\xF0\x9F\x91\x8D", 2}, {"a\"b", 1}};

static proj_item_t reaction(const char *convo, const char *actor, int64_t seq, const char *emoji)
{
    proj_item_t it = item(EV_REACTION, convo, actor, seq);
    it.ev.type = "ReactionChanged";
    it.ev.emoji = emoji;
    if (emoji) {
        it.ev.counts = THUMBS2;
        it.ev.ncounts = LEN(THUMBS2);
    }
    return it;
}

static int starts(const proj_stmt_t *s, const char *prefix)
{
    return strncmp(s->sql, prefix, strlen(prefix)) == 0;
}

static void test_array_literals_escape_quotes_and_backslashes(void **state)
{
    (void)state;
    proj_item_t it = item(EV_MESSAGE, "c1", "u1", 1);
    it.ev.content = "a\"b\\c,{d}";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", &it, 1, &st), 1);
    assert_true(starts(&st.v[0], "INSERT INTO rm.messages"));
    assert_string_equal(st.v[0].params[0], "{\"c1\"}");
    assert_string_equal(st.v[0].params[1], "{1}");
    assert_string_equal(st.v[0].params[5], "{\"a\\\"b\\\\c,{d}\"}");
    proj_stmts_free(&st);
}

static void test_a_run_of_messages_is_three_statements(void **state)
{
    (void)state;
    proj_item_t its[500];
    for (int i = 0; i < 500; i++)
        its[i] = item(EV_MESSAGE, i % 2 ? "c1" : "c2", "u1", i / 2 + 1);
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm_next", its, 500, &st), 500);
    assert_int_equal(st.n, 3);
    assert_true(starts(&st.v[0], "INSERT INTO rm_next.messages"));
    assert_true(starts(&st.v[1], "UPDATE rm_next.members")); /* the senders' read positions */
    assert_true(starts(&st.v[2], "UPDATE rm_next.conversations"));
    proj_stmts_free(&st);
}

static void test_membership_changes_keep_their_order(void **state)
{
    (void)state;
    const char *u2[] = {"u2"};
    proj_item_t its[3] = {item(EV_MESSAGE, "c1", "u2", 1), item(EV_REMOVED, "c1", "u1", 0),
                          item(EV_ADDED, "c1", "u1", 0)};
    its[1].ev.members = its[2].ev.members = u2;
    its[1].ev.nmembers = its[2].ev.nmembers = 1;
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 3, &st), 3);
    /* message | removal (after a read position) | re-add (after a removal) */
    const char *want[] = {"INSERT INTO rm.messages",   "UPDATE rm.members",
                          "UPDATE rm.conversations",   "DELETE FROM rm.members",
                          "INSERT INTO rm.departures", "UPDATE rm.conversations",
                          "INSERT INTO rm.members",    "DELETE FROM rm.departures",
                          "UPDATE rm.conversations"};
    assert_int_equal(st.n, 9);
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    proj_stmts_free(&st);
}

static void test_applied_events_are_skipped_and_rejections_change_nothing(void **state)
{
    (void)state;
    proj_item_t its[3] = {item(EV_MESSAGE, "c1", "u1", 1), item(EV_REJECTED, "c1", "u1", 0),
                          item(EV_READ, "c1", "u1", 1)};
    its[0].to_pg = 0;
    its[1].ev.origin = "api:3";
    its[1].ev.type = "CommandRejected";
    its[1].ev.reason = "not_member";
    its[1].ev.message = "u1 is \"not\" a member";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 3, &st), 1);
    assert_int_equal(st.n, 2); /* the read position and the activity */
    assert_true(starts(&st.v[0], "UPDATE rm.members"));
    assert_int_equal(proj_pg_notify(its, 3, &st), 1);
    assert_true(starts(&st.v[2], "SELECT count(*) FROM (SELECT pg_notify('kchat_applied'"));
    char *payload = proj_applied_payload(&its[1].ev);
    assert_string_equal(payload, "{\"command_id\":\"cmd-1\",\"convo_id\":\"c1\",\"type\":"
                                 "\"CommandRejected\",\"reason\":\"not_member\",\"message\":"
                                 "\"u1 is \\\"not\\\" a member\"}");
    free(payload);
    proj_stmts_free(&st);
}

static void test_statements_are_combined_where_their_tables_differ(void **state)
{
    (void)state;
    proj_item_t its[500];
    for (int i = 0; i < 500; i++)
        its[i] = item(EV_MESSAGE, i % 2 ? "c1" : "c2", "u1", i / 2 + 1);
    its[7].ev.origin = "api:1";
    int32_t part = 3;
    int64_t expect = 10, next = 510;
    proj_stmts_t parts = {0}, st = {0};
    proj_pg_check("rm", "chat.events", &part, &expect, 1, 4, &parts);
    assert_int_equal(proj_pg_build("rm", its, 500, &parts), 500);
    proj_pg_offsets("rm", "chat.events", &part, &next, 1, &parts);
    assert_int_equal(proj_pg_notify(its, 500, &parts), 1);
    proj_pg_combine(&parts, &st);
    assert_int_equal(parts.n, 0);
    /* check, messages, read positions, activity, offsets, NOTIFYs: one statement */
    assert_int_equal(st.n, 1);
    assert_true(starts(&st.v[0], "WITH q0 AS (INSERT INTO rm.messages"));
    assert_non_null(strstr(st.v[0].sql, "q1 AS (UPDATE rm.members"));
    assert_non_null(strstr(st.v[0].sql, "q2 AS (UPDATE rm.conversations"));
    assert_non_null(strstr(st.v[0].sql, "q3 AS (INSERT INTO rm.offsets"));
    assert_non_null(strstr(st.v[0].sql, ") SELECT (SELECT (CASE WHEN"));
    assert_non_null(strstr(st.v[0].sql, "$24::text[]"));
    assert_null(strstr(st.v[0].sql, "$25"));
    assert_int_equal(st.v[0].nparams, 24);
    assert_string_equal(st.v[0].params[16], "chat.events"); /* the offsets' topic */
    assert_string_equal(st.v[0].params[19], "chat.events"); /* the check's */
    assert_string_equal(st.v[0].params[22], "4");           /* its generation */
    proj_stmts_free(&st);

    /* The membership changes of test_membership_changes_keep_their_order: a table written
     * twice starts a new statement. */
    const char *u2[] = {"u2"};
    proj_item_t m[3] = {item(EV_MESSAGE, "c1", "u2", 1), item(EV_REMOVED, "c1", "u1", 0),
                        item(EV_ADDED, "c1", "u1", 0)};
    m[1].ev.members = m[2].ev.members = u2;
    m[1].ev.nmembers = m[2].ev.nmembers = 1;
    proj_pg_check("rm", "chat.events", &part, &expect, 1, 4, &parts);
    assert_int_equal(proj_pg_build("rm", m, 3, &parts), 3);
    proj_pg_offsets("rm", "chat.events", &part, &next, 1, &parts);
    assert_int_equal(parts.n, 11);
    proj_pg_combine(&parts, &st);
    /* departures count as members, and their inserts read conversations (the foreign key) */
    const char *want[] = {"WITH q0 AS (INSERT INTO rm.messages", "DELETE FROM rm.members",
                          "INSERT INTO rm.departures",           "UPDATE rm.conversations",
                          "INSERT INTO rm.members",              "WITH q0 AS (DELETE FROM rm.departures"};
    assert_int_equal(st.n, 6);
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    assert_int_equal(st.v[2].tables, PROJ_T_MEMBERS | PROJ_T_CONVERSATIONS);
    assert_non_null(strstr(st.v[5].sql, "q1 AS (UPDATE rm.conversations"));
    assert_non_null(strstr(st.v[5].sql, ") INSERT INTO rm.offsets"));
    proj_stmts_free(&st);
}

static void test_the_creator_is_the_owner(void **state)
{
    (void)state;
    const char *mem[] = {"u2", "u1", "u3"};
    proj_item_t it = item(EV_CREATED, "c1", "u1", 0);
    it.ev.title = "t";
    it.ev.members = mem;
    it.ev.nmembers = 3;
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", &it, 1, &st), 1);
    /* a new conversation has no departures to delete */
    assert_int_equal(st.n, 3);
    assert_true(starts(&st.v[0], "INSERT INTO rm.conversations"));
    assert_true(starts(&st.v[1], "INSERT INTO rm.members (convo_id, user_id, joined_at, role)"));
    assert_int_equal(st.v[1].nparams, 4);
    assert_string_equal(st.v[1].params[1], "{\"u2\",\"u1\",\"u3\"}");
    assert_string_equal(st.v[1].params[3], "{\"member\",\"owner\",\"member\"}");
    assert_non_null(strstr(st.v[1].sql, "ON CONFLICT DO NOTHING"));
    assert_true(starts(&st.v[2], "UPDATE rm.conversations"));
    proj_stmts_free(&st);
}

static void test_added_members_are_members_and_no_longer_departed(void **state)
{
    (void)state;
    const char *mem[] = {"u1", "u4"};
    proj_item_t it = item(EV_ADDED, "c1", "u1", 0);
    it.ev.members = mem;
    it.ev.nmembers = 2;
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", &it, 1, &st), 1);
    assert_int_equal(st.n, 3);
    assert_true(starts(&st.v[0], "INSERT INTO rm.members"));
    /* the actor of MembersAdded is no creator: everyone added is a plain member */
    assert_string_equal(st.v[0].params[3], "{\"member\",\"member\"}");
    assert_int_equal(st.v[0].tables, PROJ_T_MEMBERS | PROJ_T_CONVERSATIONS);
    assert_string_equal(st.v[1].sql, "DELETE FROM rm.departures d USING unnest($1::text[], "
                                     "$2::text[]) AS x(c, u) WHERE d.convo_id = x.c AND "
                                     "d.user_id = x.u");
    assert_int_equal(st.v[1].nparams, 2);
    assert_string_equal(st.v[1].params[0], "{\"c1\",\"c1\"}");
    assert_string_equal(st.v[1].params[1], "{\"u1\",\"u4\"}");
    assert_int_equal(st.v[1].tables, PROJ_T_MEMBERS);
    proj_stmts_free(&st);
}

static void test_a_removal_leaves_departures_and_promotes(void **state)
{
    (void)state;
    const char *mem[] = {"u1", "u3"};
    proj_item_t it = item(EV_REMOVED, "c1", "u1", 42);
    it.ev.at = 1700000000123;
    it.ev.members = mem;
    it.ev.nmembers = 2;
    it.ev.promoted = "u2";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", &it, 1, &st), 1);
    /* the promotion, the removals, the departures, the activity */
    assert_int_equal(st.n, 4);
    assert_true(starts(&st.v[0], "UPDATE rm.members m SET role = x.r"));
    assert_int_equal(st.v[0].nparams, 3);
    assert_string_equal(st.v[0].params[1], "{\"u2\"}");
    assert_string_equal(st.v[0].params[2], "{\"owner\"}");
    assert_true(starts(&st.v[1], "DELETE FROM rm.members"));
    assert_string_equal(st.v[1].params[1], "{\"u1\",\"u3\"}");
    assert_true(starts(&st.v[2], "INSERT INTO rm.departures (convo_id, user_id, left_seq, "
                                 "left_at) SELECT c, u, s, (timestamptz 'epoch' + at * "
                                 "interval '1 millisecond')"));
    assert_non_null(strstr(st.v[2].sql, "DISTINCT ON (c, u)"));
    assert_non_null(strstr(st.v[2].sql, "ORDER BY c, u, i DESC"));
    assert_non_null(strstr(st.v[2].sql, "ON CONFLICT (convo_id, user_id) DO UPDATE SET "
                                        "left_seq = EXCLUDED.left_seq, left_at = "
                                        "EXCLUDED.left_at"));
    assert_int_equal(st.v[2].nparams, 4);
    assert_string_equal(st.v[2].params[0], "{\"c1\",\"c1\"}");
    assert_string_equal(st.v[2].params[1], "{\"u1\",\"u3\"}");
    assert_string_equal(st.v[2].params[2], "{42,42}");
    assert_string_equal(st.v[2].params[3], "{1700000000123,1700000000123}");
    assert_int_equal(st.v[2].tables, PROJ_T_MEMBERS | PROJ_T_CONVERSATIONS);
    assert_true(starts(&st.v[3], "UPDATE rm.conversations"));
    assert_string_equal(st.v[3].params[1], "{0}"); /* not a message: last_seq stays */
    proj_stmts_free(&st);

    /* a version-1 removal: left_seq 0, nobody promoted */
    it.ev.seq_no = 0;
    it.ev.promoted = NULL;
    it.ev.nmembers = 1;
    assert_int_equal(proj_pg_build("rm", &it, 1, &st), 1);
    assert_int_equal(st.n, 3);
    assert_true(starts(&st.v[0], "DELETE FROM rm.members"));
    assert_string_equal(st.v[1].params[2], "{0}");
    proj_stmts_free(&st);
}

static void test_roles_in_a_segment_the_later_wins(void **state)
{
    (void)state;
    const char *gone[] = {"u1"};
    proj_item_t its[4] = {item(EV_ROLE, "c1", "u1", 0), item(EV_ROLE, "c2", "u1", 0),
                          item(EV_REMOVED, "c1", "u1", 9), item(EV_ROLE, "c1", "u1", 0)};
    its[0].ev.user_id = "u2";
    its[0].ev.role = "admin";
    its[1].ev.user_id = "u\"x";
    its[1].ev.role = "member";
    its[2].ev.members = gone; /* u1 leaves, u2 becomes owner... */
    its[2].ev.nmembers = 1;
    its[2].ev.promoted = "u2";
    its[3].ev.actor_id = "u2"; /* ... and makes u3 an admin */
    its[3].ev.user_id = "u3";
    its[3].ev.role = "admin";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 4, &st), 4);
    /* one segment: roles, removal, departure, activity */
    assert_int_equal(st.n, 4);
    assert_string_equal(st.v[0].sql,
                        "UPDATE rm.members m SET role = x.r FROM (SELECT DISTINCT ON (c, u) c, u, "
                        "r FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS "
                        "y(c, u, r, i) ORDER BY c, u, i DESC) x WHERE m.convo_id = x.c AND "
                        "m.user_id = x.u");
    assert_string_equal(st.v[0].params[0], "{\"c1\",\"c2\",\"c1\",\"c1\"}");
    assert_string_equal(st.v[0].params[1], "{\"u2\",\"u\\\"x\",\"u2\",\"u3\"}");
    assert_string_equal(st.v[0].params[2], "{\"admin\",\"member\",\"owner\",\"admin\"}");
    assert_int_equal(st.v[0].tables, PROJ_T_MEMBERS);
    assert_true(starts(&st.v[1], "DELETE FROM rm.members"));
    assert_true(starts(&st.v[2], "INSERT INTO rm.departures"));
    assert_true(starts(&st.v[3], "UPDATE rm.conversations"));
    proj_stmts_free(&st);
}

static void test_a_member_added_back_in_a_batch_keeps_the_order(void **state)
{
    (void)state;
    const char *u2[] = {"u2"};
    /* added, made admin, removed, added again: a member (no role), with no departure */
    proj_item_t its[4] = {item(EV_ADDED, "c1", "u1", 0), item(EV_ROLE, "c1", "u1", 0),
                          item(EV_REMOVED, "c1", "u1", 5), item(EV_ADDED, "c1", "u1", 0)};
    its[0].ev.members = its[2].ev.members = its[3].ev.members = u2;
    its[0].ev.nmembers = its[2].ev.nmembers = its[3].ev.nmembers = 1;
    its[1].ev.user_id = "u2";
    its[1].ev.role = "admin";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 4, &st), 4);
    const char *want[] = {"INSERT INTO rm.members",    "DELETE FROM rm.departures",
                          "UPDATE rm.members m SET role", "DELETE FROM rm.members",
                          "INSERT INTO rm.departures", "UPDATE rm.conversations",
                          /* the second add: a segment of its own */
                          "INSERT INTO rm.members",    "DELETE FROM rm.departures",
                          "UPDATE rm.conversations"};
    assert_int_equal(st.n, LEN(want));
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    assert_string_equal(st.v[6].params[3], "{\"member\"}");
    proj_stmts_free(&st);
}

static void test_title_and_topic_null_keeps_them(void **state)
{
    (void)state;
    proj_item_t its[4] = {item(EV_UPDATED, "c1", "u1", 0), item(EV_UPDATED, "c1", "u1", 0),
                          item(EV_UPDATED, "c2", "u1", 0), item(EV_MESSAGE, "c1", "u1", 3)};
    its[0].ev.title = "new \"title\"";
    its[1].ev.topic = "";
    its[2].ev.title = "NULL";
    its[2].ev.topic = "t";
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 4, &st), 4);
    /* message, its read position, then the titles and topics, the activity */
    assert_int_equal(st.n, 4);
    assert_true(starts(&st.v[0], "INSERT INTO rm.messages"));
    assert_true(starts(&st.v[1], "UPDATE rm.members"));
    assert_string_equal(
        st.v[2].sql,
        "UPDATE rm.conversations v SET title = coalesce(x.t, v.title), topic = coalesce(x.p, "
        "v.topic) FROM (SELECT c, (array_agg(t ORDER BY i DESC) FILTER (WHERE t IS NOT "
        "NULL))[1] AS t, (array_agg(p ORDER BY i DESC) FILTER (WHERE p IS NOT NULL))[1] AS p "
        "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS y(c, t, p, i) "
        "GROUP BY c) x WHERE v.convo_id = x.c");
    assert_int_equal(st.v[2].nparams, 3);
    assert_string_equal(st.v[2].params[0], "{\"c1\",\"c1\",\"c2\"}");
    /* null unquoted; the string "NULL" quoted */
    assert_string_equal(st.v[2].params[1], "{\"new \\\"title\\\"\",NULL,\"NULL\"}");
    assert_string_equal(st.v[2].params[2], "{NULL,\"\",\"t\"}");
    assert_int_equal(st.v[2].tables, PROJ_T_CONVERSATIONS);
    assert_true(starts(&st.v[3], "UPDATE rm.conversations v SET last_seq"));
    proj_stmts_free(&st);

    /* created and renamed in one batch: the insert comes first */
    const char *mem[] = {"u1"};
    proj_item_t cr[2] = {item(EV_CREATED, "c3", "u1", 0), item(EV_UPDATED, "c3", "u1", 0)};
    cr[0].ev.title = "first";
    cr[0].ev.members = mem;
    cr[0].ev.nmembers = 1;
    cr[1].ev.title = "second";
    assert_int_equal(proj_pg_build("rm", cr, 2, &st), 2);
    const char *want[] = {"INSERT INTO rm.conversations", "INSERT INTO rm.members",
                          "UPDATE rm.conversations v SET title",
                          "UPDATE rm.conversations v SET last_seq"};
    assert_int_equal(st.n, LEN(want));
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    proj_stmts_free(&st);
}

static void test_reactions_in_a_segment_the_later_wins(void **state)
{
    (void)state;
    proj_item_t its[6] = {reaction("c1", "u1", 5, "\xF0\x9F\x91\x8D"),
                          reaction("c1", "u2", 5, "x"),
                          reaction("c1", "u2", 5, NULL), /* removed */
                          reaction("c1", "u1", 5, "a\"b"),  /* replaced */
                          item(EV_DELETED, "c1", "u1", 6),
                          item(EV_MESSAGE, "c1", "u3", 7)};
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 6, &st), 6);
    /* one segment: message, delete, reactions removed, set, those of the deleted message,
     * the read position, the activity */
    const char *want[] = {"INSERT INTO rm.messages",  "UPDATE rm.messages m SET content = ''",
                          "DELETE FROM rm.reactions", "INSERT INTO rm.reactions",
                          "DELETE FROM rm.reactions", "UPDATE rm.members",
                          "UPDATE rm.conversations"};
    assert_int_equal(st.n, LEN(want));
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    /* removed: every removal of the segment */
    assert_string_equal(st.v[2].sql,
                        "DELETE FROM rm.reactions r USING unnest($1::text[], $2::bigint[], "
                        "$3::text[]) AS x(c, s, u) WHERE r.convo_id = x.c AND r.seq_no = x.s AND "
                        "r.user_id = x.u");
    assert_int_equal(st.v[2].nparams, 3);
    assert_string_equal(st.v[2].params[0], "{\"c1\"}");
    assert_string_equal(st.v[2].params[1], "{5}");
    assert_string_equal(st.v[2].params[2], "{\"u2\"}");
    assert_int_equal(st.v[2].tables, PROJ_T_REACTIONS);
    /* set: the latest of each member on each message, unless a removal */
    assert_string_equal(st.v[3].sql,
                        "INSERT INTO rm.reactions (convo_id, seq_no, user_id, emoji) SELECT c, s, "
                        "u, e FROM (SELECT DISTINCT ON (c, s, u) c, s, u, e FROM "
                        "unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) WITH "
                        "ORDINALITY AS y(c, s, u, e, i) ORDER BY c, s, u, i DESC) x WHERE e IS "
                        "NOT NULL ON CONFLICT (convo_id, seq_no, user_id) DO UPDATE SET emoji = "
                        "EXCLUDED.emoji");
    assert_int_equal(st.v[3].nparams, 4);
    assert_string_equal(st.v[3].params[1], "{5,5,5,5}");
    assert_string_equal(st.v[3].params[2], "{\"u1\",\"u2\",\"u2\",\"u1\"}");
    assert_string_equal(st.v[3].params[3],
                        "{\"\xF0\x9F\x91\x8D\",\"x\",NULL,\"a\\\"b\"}");
    assert_int_equal(st.v[3].tables, PROJ_T_REACTIONS);
    /* a deleted message loses its reactions */
    assert_string_equal(st.v[4].sql,
                        "DELETE FROM rm.reactions r USING unnest($1::text[], $2::bigint[]) AS "
                        "x(c, s) WHERE r.convo_id = x.c AND r.seq_no = x.s");
    assert_string_equal(st.v[4].params[1], "{6}");
    assert_int_equal(st.v[4].tables, PROJ_T_REACTIONS);
    assert_string_equal(st.v[6].params[1], "{0,0,0,0,0,7}"); /* reactions leave last_seq */
    proj_stmts_free(&st);

    /* only removals: nothing to set */
    proj_item_t rm[2] = {reaction("c1", "u1", 5, NULL), reaction("c2", "u1", 1, NULL)};
    assert_int_equal(proj_pg_build("rm", rm, 2, &st), 2);
    assert_int_equal(st.n, 2);
    assert_true(starts(&st.v[0], "DELETE FROM rm.reactions r USING unnest($1::text[], "
                                 "$2::bigint[], $3::text[])"));
    assert_string_equal(st.v[0].params[0], "{\"c1\",\"c2\"}");
    assert_true(starts(&st.v[1], "UPDATE rm.conversations"));
    proj_stmts_free(&st);

    /* only reactions set: no removal */
    proj_item_t set[1] = {reaction("c1", "u1", 5, "x")};
    assert_int_equal(proj_pg_build("rm", set, 1, &st), 1);
    assert_int_equal(st.n, 2);
    assert_true(starts(&st.v[0], "INSERT INTO rm.reactions"));
    assert_string_equal(st.v[0].params[3], "{\"x\"}");
    proj_stmts_free(&st);
}

static void test_membership_roles_and_deletes_go_to_the_audit_log(void **state)
{
    (void)state;
    static const char *const added[] = {"u2", "u\"3"};
    static const char *const removed[] = {"u2", "u1"};
    proj_item_t its[6] = {
        item(EV_ADDED, "c1", "u1", 0),    item(EV_ROLE, "c1", "u1", 0),
        item(EV_REMOVED, "c1", "u1", 4),  item(EV_DELETED, "c1", "u1", 3),
        item(EV_MESSAGE, "c1", "u1", 5),  item(EV_DELETED, "c2", "u9", 1),
    };
    its[0].ev.event_id = "ea";
    its[0].ev.members = (const char **)added;
    its[0].ev.nmembers = 2;
    its[1].ev.event_id = "er";
    its[1].ev.user_id = "u2";
    its[1].ev.role = "admin";
    its[1].ev.origin = "api:a1";
    its[2].ev.event_id = "ex";
    its[2].ev.members = (const char **)removed;
    its[2].ev.nmembers = 2;
    its[2].ev.promoted = "u\"3";
    its[3].ev.event_id = "ed";
    its[5].ev.event_id = "ef";
    its[5].to_pg = 0; /* already applied: no row again */
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_audit("rm", its, 6, &st), 6);
    assert_int_equal(st.n, 2);
    assert_true(starts(&st.v[0], "INSERT INTO audit_log (event_id, occurred_at, action"));
    assert_string_equal(st.v[0].params[0],
                        "{\"ea:u2\",\"ea:u\\\"3\",\"er:u2\",\"ex:u2\",\"ex:u1\","
                        "\"ex:promoted:u\\\"3\"}");
    assert_string_equal(st.v[0].params[1], "{1000,1000,1000,1000,1000,1000}");
    assert_string_equal(st.v[0].params[2],
                        "{\"member_added\",\"member_added\",\"role_changed\",\"member_removed\","
                        "\"member_left\",\"role_changed\"}");
    assert_string_equal(st.v[0].params[3], "{\"u1\",\"u1\",\"u1\",\"u1\",\"u1\",\"u1\"}");
    assert_string_equal(st.v[0].params[4],
                        "{\"u2\",\"u\\\"3\",\"u2\",\"u2\",\"u1\",\"u\\\"3\"}");
    assert_string_equal(st.v[0].params[5], "{\"gateway:0\",\"gateway:0\",\"api:a1\","
                                           "\"gateway:0\",\"gateway:0\",\"gateway:0\"}");
    /* the detail is JSON, quoted again as an array element */
    assert_string_equal(st.v[0].params[6],
                        "{\"{\\\"convo_id\\\":\\\"c1\\\",\\\"role\\\":\\\"member\\\"}\","
                        "\"{\\\"convo_id\\\":\\\"c1\\\",\\\"role\\\":\\\"member\\\"}\","
                        "\"{\\\"convo_id\\\":\\\"c1\\\",\\\"role\\\":\\\"admin\\\"}\","
                        "\"{\\\"convo_id\\\":\\\"c1\\\"}\",\"{\\\"convo_id\\\":\\\"c1\\\"}\","
                        "\"{\\\"convo_id\\\":\\\"c1\\\",\\\"role\\\":\\\"owner\\\"}\"}");
    assert_int_equal(st.v[0].tables, PROJ_T_AUDIT);
    /* deletes: only those of others are kept, by a join with the messages */
    assert_true(starts(&st.v[1], "INSERT INTO audit_log"));
    assert_non_null(strstr(st.v[1].sql, "JOIN rm.messages m ON m.convo_id = x.c AND "
                                        "m.seq_no = x.q WHERE m.sender_id <> x.u"));
    assert_string_equal(st.v[1].params[0], "{\"ed\"}");
    assert_string_equal(st.v[1].params[4], "{3}");
    assert_int_equal(st.v[1].tables, PROJ_T_AUDIT | PROJ_T_MESSAGES);
    proj_stmts_free(&st);

    /* nothing audited: no statement */
    proj_item_t msg = item(EV_MESSAGE, "c1", "u1", 1);
    assert_int_equal(proj_pg_audit("rm", &msg, 1, &st), 0);
    assert_int_equal(st.n, 0);
    proj_stmts_free(&st);
}

static void test_a_reaction_after_a_delete_keeps_the_order(void **state)
{
    (void)state;
    proj_item_t its[3] = {reaction("c1", "u1", 3, "x"), item(EV_DELETED, "c1", "u1", 3),
                          reaction("c1", "u2", 3, "y")};
    proj_stmts_t st = {0};
    assert_int_equal(proj_pg_build("rm", its, 3, &st), 3);
    /* set, then deleted with its reactions | set again: a segment of its own */
    const char *want[] = {"UPDATE rm.messages",       "INSERT INTO rm.reactions",
                          "DELETE FROM rm.reactions", "UPDATE rm.conversations",
                          "INSERT INTO rm.reactions", "UPDATE rm.conversations"};
    assert_int_equal(st.n, LEN(want));
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    assert_string_equal(st.v[1].params[2], "{\"u1\"}");
    assert_string_equal(st.v[4].params[2], "{\"u2\"}");
    proj_stmts_free(&st);
}

static void test_reactions_combine_and_notify(void **state)
{
    (void)state;
    proj_item_t its[3] = {item(EV_MESSAGE, "c1", "u1", 1), reaction("c1", "u2", 1, "x"),
                          reaction("c1", "u3", 1, NULL)};
    its[1].ev.origin = "api:2";
    its[1].ev.command_id = "cmd-r";
    int32_t part = 0;
    int64_t expect = 1, next = 4;
    proj_stmts_t parts = {0}, st = {0};
    proj_pg_check("rm", "chat.events", &part, &expect, 1, 1, &parts);
    assert_int_equal(proj_pg_build("rm", its, 3, &parts), 3);
    proj_pg_offsets("rm", "chat.events", &part, &next, 1, &parts);
    assert_int_equal(proj_pg_notify(its, 3, &parts), 1);
    proj_pg_combine(&parts, &st);
    /* the removal and the set write one table: two statements */
    assert_int_equal(st.n, 2);
    assert_true(starts(&st.v[0], "WITH q0 AS (INSERT INTO rm.messages"));
    assert_non_null(strstr(st.v[0].sql, "q1 AS (DELETE FROM rm.reactions"));
    assert_true(starts(&st.v[1], "WITH q0 AS (INSERT INTO rm.reactions"));
    assert_non_null(strstr(st.v[1].sql, "q1 AS (UPDATE rm.members"));
    assert_non_null(strstr(st.v[1].sql, "pg_notify('kchat_applied'"));
    proj_stmts_free(&st);

    char *payload = proj_applied_payload(&its[1].ev);
    assert_string_equal(payload, "{\"command_id\":\"cmd-r\",\"convo_id\":\"c1\",\"type\":"
                                 "\"ReactionChanged\"}");
    free(payload);
}

/* The operations of a built batch: opcode, count, arguments. */
typedef struct {
    char op;
    size_t first, n; /* index of the first argument and how many */
} rop_t;

static size_t rops(const proj_rargs_t *a, rop_t *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i + 1 < a->n && k < max;) {
        size_t l, cl;
        const char *op = proj_rargs_get(a, i, &l);
        const char *cnt = proj_rargs_get(a, i + 1, &cl);
        assert_int_equal(l, 1);
        assert_int_equal(cl, 10);
        out[k].op = op[0];
        out[k].first = i + 2;
        out[k].n = (size_t)strtoul(cnt, NULL, 10);
        i += 2 + out[k].n;
        k++;
    }
    return k;
}

static void assert_arg(const proj_rargs_t *a, size_t i, const char *want)
{
    size_t l;
    const char *got = proj_rargs_get(a, i, &l);
    assert_int_equal(l, strlen(want));
    assert_memory_equal(got, want, l);
}

static void test_a_message_in_redis(void **state)
{
    (void)state;
    proj_item_t it = item(EV_MESSAGE, "c1", "u1", 7);
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("kchat:rm:3:", &it, 1, 50, &a), 1);
    rop_t ops[8];
    /* the message, then per batch: the conversation's activity, lastseen */
    assert_int_equal(rops(&a, ops, 8), 3);
    assert_int_equal(ops[0].op, 'M');
    size_t m = ops[0].first;
    assert_int_equal(ops[0].n, 12);
    assert_arg(&a, m, "kchat:rm:3:recent:c1");
    assert_arg(&a, m + 1, "kchat:rm:3:convo:c1");
    assert_arg(&a, m + 2, "kchat:rm:3:read:c1");
    assert_arg(&a, m + 3, "7"); /* the scores replaced: 7 to 7 */
    assert_arg(&a, m + 4, "7");
    assert_arg(&a, m + 5, "1"); /* one added to recent */
    assert_arg(&a, m + 6, "7");
    char *json = proj_message_json(&it.ev);
    assert_string_equal(json, "{\"convo_id\":\"c1\",\"seq_no\":7,\"server_msg_id\":\"s\","
                              "\"sender_id\":\"u1\",\"client_msg_id\":\"m\",\"content\":\"hi\","
                              "\"content_type\":\"text/plain\",\"created_at\":"
                              "\"1970-01-01T00:00:01.000Z\",\"reply_to\":null,"
                              "\"attachments\":[],\"edited_at\":null,\"edit_count\":0,"
                              "\"deleted_at\":null,\"reactions\":[]}");
    assert_arg(&a, m + 7, json);
    assert_arg(&a, m + 8, "7"); /* last_seq and last_message */
    assert_arg(&a, m + 9, json);
    assert_arg(&a, m + 10, "u1"); /* the sender's read position */
    assert_arg(&a, m + 11, "7");
    free(json);
    assert_int_equal(ops[1].op, 'T');
    assert_int_equal(ops[1].n, 6);
    assert_arg(&a, ops[1].first + 2, "c1");
    assert_arg(&a, ops[1].first + 3, "1000");
    assert_arg(&a, ops[1].first + 5, "-51"); /* the trim keeps 50 */
    assert_int_equal(ops[2].op, 'L');
    assert_arg(&a, ops[2].first, "kchat:rm:3:lastseen");
    assert_arg(&a, ops[2].first + 1, "u1");
    assert_arg(&a, ops[2].first + 2, "1000");

    /* The command: EVALSHA <sha> 2 then the arguments, in the protocol's form. */
    size_t len;
    const char *cmd = proj_rargs_evalsha(&a, "0123456789012345678901234567890123456789", 2, &len);
    char head[64];
    snprintf(head, sizeof(head), "*%zu\r\n$7\r\nEVALSHA\r\n$40\r\n", a.n + 3);
    assert_memory_equal(cmd, head, strlen(head));
    assert_memory_equal(cmd + len - 6, "1000\r\n", 6);
    assert_memory_equal(cmd + strlen(head) + 42, "$1\r\n2\r\n$1\r\nM\r\n$10\r\n0000000012\r\n",
                        30);
    proj_rargs_free(&a);
}

static void test_a_run_of_messages_is_one_operation_with_the_newest_only(void **state)
{
    (void)state;
    proj_item_t its[250];
    for (int i = 0; i < 250; i++)
        its[i] = item(EV_MESSAGE, "c1", i % 3 ? "u1" : "u2", i + 1);
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 250, 100, &a), 250);
    rop_t ops[8];
    assert_int_equal(rops(&a, ops, 8), 3);
    assert_int_equal(ops[0].op, 'M');
    size_t m = ops[0].first;
    assert_arg(&a, m + 3, "1");
    assert_arg(&a, m + 4, "250");
    assert_arg(&a, m + 5, "100"); /* the trim would remove the older 150 */
    assert_arg(&a, m + 6, "151");
    size_t k = m + 6 + 200;
    assert_arg(&a, k, "250"); /* last_seq */
    assert_arg(&a, k + 2, "u2"); /* 250 is u2's, 249 u1's: each sender's newest */
    assert_arg(&a, k + 3, "250");
    assert_arg(&a, k + 4, "u1");
    assert_arg(&a, k + 5, "249");
    assert_int_equal(ops[0].n, k + 6 - m);
    proj_rargs_free(&a);
}

static void test_other_events_and_gaps_end_a_run(void **state)
{
    (void)state;
    proj_item_t its[6] = {item(EV_MESSAGE, "c1", "u1", 1), item(EV_MESSAGE, "c1", "u1", 2),
                          item(EV_EDITED, "c1", "u1", 1),  item(EV_MESSAGE, "c1", "u1", 3),
                          item(EV_MESSAGE, "c1", "u1", 5), item(EV_READ, "c1", "u2", 5)};
    its[1].to_redis = 1;
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 6, 100, &a), 6);
    rop_t ops[10];
    /* 1-2 | the edit of 1 | 3 | 5 (not consecutive) | the marker | activity, lastseen */
    const char want[] = "MEMMKTL";
    assert_int_equal(rops(&a, ops, 10), strlen(want));
    for (size_t i = 0; i < strlen(want); i++)
        assert_int_equal(ops[i].op, want[i]);
    assert_arg(&a, ops[0].first + 4, "2");
    assert_arg(&a, ops[1].first + 2, "1");
    assert_arg(&a, ops[2].first + 3, "3");
    assert_arg(&a, ops[3].first + 3, "5");
    proj_rargs_free(&a);
}

static void assert_ops(const proj_rargs_t *a, rop_t *ops, size_t max, const char *want)
{
    assert_int_equal(rops(a, ops, max), strlen(want));
    for (size_t i = 0; i < strlen(want); i++)
        assert_int_equal(ops[i].op, want[i]);
}

static void test_roles_in_redis(void **state)
{
    (void)state;
    const char *mem[] = {"u1", "u2"}, *gone[] = {"u1", "u3"};
    proj_item_t its[5] = {item(EV_CREATED, "c1", "u1", 0), item(EV_ROLE, "c1", "u1", 0),
                          item(EV_ROLE, "c1", "u1", 0), item(EV_REMOVED, "c1", "u1", 7),
                          item(EV_CREATED, "c2", "u9", 0)};
    its[0].ev.title = its[4].ev.title = "t";
    its[0].ev.members = mem;
    its[0].ev.nmembers = 2;
    its[1].ev.user_id = "u3";
    its[1].ev.role = "admin";
    its[2].ev.user_id = "u2";
    its[2].ev.role = "member";
    its[3].ev.members = gone;
    its[3].ev.nmembers = 2;
    its[3].ev.promoted = "u2";
    its[4].ev.members = mem; /* created by someone not among its members: no owner */
    its[4].ev.nmembers = 2;
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 5, 100, &a), 5);
    rop_t ops[16];
    /* created (and its owner) | admin | member | removed (and the promoted owner) | created |
     * activity of c1 and c2, lastseen */
    assert_ops(&a, ops, 16, "COOORO" "CTTL");
    /* the creator, owner */
    assert_int_equal(ops[1].n, 3);
    assert_arg(&a, ops[1].first, "p:roles:c1");
    assert_arg(&a, ops[1].first + 1, "u1");
    assert_arg(&a, ops[1].first + 2, "owner");
    assert_arg(&a, ops[2].first + 1, "u3");
    assert_arg(&a, ops[2].first + 2, "admin");
    assert_arg(&a, ops[3].first + 1, "u2");
    assert_arg(&a, ops[3].first + 2, "member"); /* the script's HDEL */
    /* removed: members, read and roles keys, the conversation, those removed */
    size_t r = ops[4].first;
    assert_int_equal(ops[4].n, 6);
    assert_arg(&a, r, "p:members:c1");
    assert_arg(&a, r + 1, "p:read:c1");
    assert_arg(&a, r + 2, "p:roles:c1");
    assert_arg(&a, r + 3, "c1");
    assert_arg(&a, r + 4, "u1");
    assert_arg(&a, r + 5, "u3");
    assert_arg(&a, ops[5].first, "p:roles:c1");
    assert_arg(&a, ops[5].first + 1, "u2");
    assert_arg(&a, ops[5].first + 2, "owner");
    assert_arg(&a, ops[6].first, "p:convo:c2");
    proj_rargs_free(&a);

    /* the script knows the operations and names the roles hash */
    assert_non_null(strstr(PROJ_REDIS_SCRIPT, "op == 'O'"));
    assert_non_null(strstr(PROJ_REDIS_SCRIPT, "op == 'U'"));
    assert_non_null(strstr(PROJ_REDIS_SCRIPT, "if A[k + 1] == 'member' then call('HDEL'"));
    assert_non_null(strstr(PROJ_REDIS_SCRIPT, "chunks('HDEL', A[j + 2], A, j + 4, nxt - 1, 1)"));
}

static void test_title_and_topic_in_redis(void **state)
{
    (void)state;
    proj_item_t its[4] = {item(EV_MESSAGE, "c1", "u1", 1), item(EV_UPDATED, "c1", "u1", 0),
                          item(EV_UPDATED, "c1", "u2", 0), item(EV_UPDATED, "c1", "u2", 0)};
    its[1].ev.title = "renamed";
    its[2].ev.topic = "";
    its[3].ev.title = "both";
    its[3].ev.topic = "a topic";
    its[3].ev.at = 2000;
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 4, 100, &a), 4);
    rop_t ops[10];
    /* the message comes before the rename (another event of its conversation ends the run) */
    assert_ops(&a, ops, 10, "MUUUTL");
    assert_int_equal(ops[1].n, 3);
    assert_arg(&a, ops[1].first, "p:convo:c1");
    assert_arg(&a, ops[1].first + 1, "title");
    assert_arg(&a, ops[1].first + 2, "renamed");
    assert_int_equal(ops[2].n, 3);
    assert_arg(&a, ops[2].first + 1, "topic");
    assert_arg(&a, ops[2].first + 2, ""); /* an empty topic clears it */
    assert_int_equal(ops[3].n, 5);
    assert_arg(&a, ops[3].first + 1, "title");
    assert_arg(&a, ops[3].first + 2, "both");
    assert_arg(&a, ops[3].first + 3, "topic");
    assert_arg(&a, ops[3].first + 4, "a topic");
    assert_arg(&a, ops[4].first + 3, "2000"); /* the activity: the latest event */
    proj_rargs_free(&a);
}

static void test_edits_and_deletes_in_redis(void **state)
{
    (void)state;
    proj_item_t its[2] = {item(EV_EDITED, "c1", "u1", 4), item(EV_DELETED, "c1", "u1", 5)};
    its[0].ev.content = "new \"text\"\n";
    its[1].ev.at = 1700000000123;
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 2, 100, &a), 2);
    rop_t ops[8];
    assert_ops(&a, ops, 8, "EETL");
    /* the content and the time as JSON strings, as the message's JSON holds them */
    assert_int_equal(ops[0].n, 6);
    assert_arg(&a, ops[0].first, "p:recent:c1");
    assert_arg(&a, ops[0].first + 1, "p:convo:c1");
    assert_arg(&a, ops[0].first + 2, "4");
    assert_arg(&a, ops[0].first + 3, "\"new \\\"text\\\"\\n\"");
    assert_arg(&a, ops[0].first + 4, "\"1970-01-01T00:00:01.000Z\"");
    assert_arg(&a, ops[0].first + 5, "0");
    assert_arg(&a, ops[1].first + 3, "\"\"");
    assert_arg(&a, ops[1].first + 4, "\"2023-11-14T22:13:20.123Z\"");
    assert_arg(&a, ops[1].first + 5, "1");
    proj_rargs_free(&a);
}

static void test_reactions_in_redis(void **state)
{
    (void)state;
    proj_item_t its[4] = {item(EV_MESSAGE, "c1", "u1", 1), reaction("c1", "u\"2", 1, "a\"b"),
                          reaction("c1", "u2", 1, NULL), item(EV_MESSAGE, "c1", "u1", 2)};
    proj_rargs_t a = {0};
    assert_int_equal(proj_redis_build("p:", its, 4, 100, &a), 4);
    rop_t ops[10];
    /* the message before the reactions (they end its run), the next message, activity, lastseen */
    assert_ops(&a, ops, 10, "MXXMTL");
    size_t x = ops[1].first;
    assert_int_equal(ops[1].n, 6);
    assert_arg(&a, x, "p:recent:c1");
    assert_arg(&a, x + 1, "p:convo:c1");
    assert_arg(&a, x + 2, "1");
    assert_arg(&a, x + 3, "\"u\\\"2\""); /* the actor, as a JSON string */
    assert_arg(&a, x + 4, "\"a\\\"b\"");  /* the reaction, the same */
    assert_arg(&a, x + 5, "[{\"emoji\":\"\xF0\x9F\x91\x8D\",\"count\":2},"
                          "{\"emoji\":\"a\\\"b\",\"count\":1}]");
    x = ops[2].first;
    assert_int_equal(ops[2].n, 6);
    assert_arg(&a, x + 3, "\"u2\"");
    assert_arg(&a, x + 4, ""); /* removed */
    assert_arg(&a, x + 5, "[]");
    /* a new message has no reactions */
    char *json = proj_message_json(&its[3].ev);
    assert_non_null(strstr(json, ",\"deleted_at\":null,\"reactions\":[]}"));
    assert_arg(&a, ops[3].first + 7, json);
    free(json);
    /* every event touches the conversation and its actor: lastseen of u1, u"2 and u2 */
    assert_int_equal(ops[5].n, 7);
    proj_rargs_free(&a);

    assert_non_null(strstr(PROJ_REDIS_SCRIPT, "op == 'X'"));
    assert_null(strstr(PROJ_REDIS_SCRIPT, "cjson")); /* messages are rewritten as text */
}

/* The records to pass over (event_skips) are found by partition and offset, nothing else. */
static void test_skipped_records_are_found_by_partition_and_offset(void **state)
{
    (void)state;
    const proj_skip_t skips[] = {{0, 5}, {0, 900}, {1, 0}, {1, 7}, {2, 7}, {2, 8}, {11, 1LL << 40}};
    size_t n = sizeof(skips) / sizeof(skips[0]);
    for (size_t i = 0; i < n; i++)
        assert_true(proj_skipped(skips, n, skips[i].partition, skips[i].offset));
    assert_false(proj_skipped(skips, n, 0, 6));
    assert_false(proj_skipped(skips, n, 1, 5));     /* offset 5 of partition 0, not 1 */
    assert_false(proj_skipped(skips, n, 3, 7));
    assert_false(proj_skipped(skips, n, 11, 1));
    assert_false(proj_skipped(skips, n, -1, 5));
    assert_false(proj_skipped(NULL, 0, 0, 5));
    assert_true(proj_skipped(skips, 1, 0, 5));
    assert_false(proj_skipped(skips, 1, 0, 900));   /* only the first n are looked at */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literals_escape_quotes_and_backslashes),
        cmocka_unit_test(test_a_run_of_messages_is_three_statements),
        cmocka_unit_test(test_membership_changes_keep_their_order),
        cmocka_unit_test(test_applied_events_are_skipped_and_rejections_change_nothing),
        cmocka_unit_test(test_statements_are_combined_where_their_tables_differ),
        cmocka_unit_test(test_skipped_records_are_found_by_partition_and_offset),
        cmocka_unit_test(test_a_message_in_redis),
        cmocka_unit_test(test_a_run_of_messages_is_one_operation_with_the_newest_only),
        cmocka_unit_test(test_other_events_and_gaps_end_a_run),
        cmocka_unit_test(test_the_creator_is_the_owner),
        cmocka_unit_test(test_added_members_are_members_and_no_longer_departed),
        cmocka_unit_test(test_a_removal_leaves_departures_and_promotes),
        cmocka_unit_test(test_roles_in_a_segment_the_later_wins),
        cmocka_unit_test(test_a_member_added_back_in_a_batch_keeps_the_order),
        cmocka_unit_test(test_title_and_topic_null_keeps_them),
        cmocka_unit_test(test_roles_in_redis),
        cmocka_unit_test(test_title_and_topic_in_redis),
        cmocka_unit_test(test_reactions_in_a_segment_the_later_wins),
        cmocka_unit_test(test_a_reaction_after_a_delete_keeps_the_order),
        cmocka_unit_test(test_membership_roles_and_deletes_go_to_the_audit_log),
        cmocka_unit_test(test_reactions_combine_and_notify),
        cmocka_unit_test(test_edits_and_deletes_in_redis),
        cmocka_unit_test(test_reactions_in_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
