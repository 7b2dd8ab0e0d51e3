/* The projector's appliers (projector/apply_pg.c, apply_redis.c), without Postgres or Redis:
 * array literals, segments and their order, what is skipped, the NOTIFY payloads, and the
 * operations of the Redis batch script (a message, a run of messages, what ends a run). */
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
    const char *want[] = {"INSERT INTO rm.messages", "UPDATE rm.members",
                          "UPDATE rm.conversations", "DELETE FROM rm.members",
                          "UPDATE rm.conversations", "INSERT INTO rm.members",
                          "UPDATE rm.conversations"};
    assert_int_equal(st.n, 7);
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
    assert_non_null(strstr(st.v[0].sql, "$22::text[]"));
    assert_null(strstr(st.v[0].sql, "$23"));
    assert_int_equal(st.v[0].nparams, 22);
    assert_string_equal(st.v[0].params[14], "chat.events"); /* the offsets' topic */
    assert_string_equal(st.v[0].params[17], "chat.events"); /* the check's */
    assert_string_equal(st.v[0].params[20], "4");           /* its generation */
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
    assert_int_equal(parts.n, 9);
    proj_pg_combine(&parts, &st);
    const char *want[] = {"WITH q0 AS (INSERT INTO rm.messages", "WITH q0 AS (DELETE FROM rm.members",
                          "INSERT INTO rm.members", "WITH q0 AS (UPDATE rm.conversations"};
    assert_int_equal(st.n, 4);
    for (size_t i = 0; i < st.n; i++)
        assert_true(starts(&st.v[i], want[i]));
    assert_non_null(strstr(st.v[1].sql, ") UPDATE rm.conversations"));
    assert_non_null(strstr(st.v[3].sql, ") INSERT INTO rm.offsets"));
    proj_stmts_free(&st);
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
                              "\"1970-01-01T00:00:01.000Z\",\"edited_at\":null,"
                              "\"deleted_at\":null}");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literals_escape_quotes_and_backslashes),
        cmocka_unit_test(test_a_run_of_messages_is_three_statements),
        cmocka_unit_test(test_membership_changes_keep_their_order),
        cmocka_unit_test(test_applied_events_are_skipped_and_rejections_change_nothing),
        cmocka_unit_test(test_statements_are_combined_where_their_tables_differ),
        cmocka_unit_test(test_a_message_in_redis),
        cmocka_unit_test(test_a_run_of_messages_is_one_operation_with_the_newest_only),
        cmocka_unit_test(test_other_events_and_gaps_end_a_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
