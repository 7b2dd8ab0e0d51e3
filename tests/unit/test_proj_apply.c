/* The projector's appliers (projector/apply_pg.c, apply_redis.c), without Postgres or Redis:
 * array literals, segments and their order, what is skipped, the NOTIFY payloads, and the
 * Redis commands of a message. */
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
    assert_true(starts(&st.v[2], "SELECT pg_notify('kchat_applied'"));
    char *payload = proj_applied_payload(&its[1].ev);
    assert_string_equal(payload, "{\"command_id\":\"cmd-1\",\"convo_id\":\"c1\",\"type\":"
                                 "\"CommandRejected\",\"reason\":\"not_member\",\"message\":"
                                 "\"u1 is \\\"not\\\" a member\"}");
    free(payload);
    proj_stmts_free(&st);
}

static void test_a_message_in_redis(void **state)
{
    (void)state;
    proj_item_t it = item(EV_MESSAGE, "c1", "u1", 7);
    proj_rcmds_t c = {0};
    assert_int_equal(proj_redis_build("kchat:rm:3:", &it, 1, 50, &c), 1);
    const char *argv[16];
    size_t lens[16];
    /* ZREMRANGEBYSCORE, ZADD, HSET convo, HSET read, then per batch: touch, trim, lastseen */
    assert_int_equal(c.ncmds, 7);
    assert_int_equal(proj_rcmd_argv(&c, 1, argv, lens, 16), 4);
    assert_memory_equal(argv[0], "ZADD", 4);
    assert_memory_equal(argv[1], "kchat:rm:3:recent:c1", lens[1]);
    assert_memory_equal(argv[2], "7", 1);
    assert_int_equal(proj_rcmd_argv(&c, 3, argv, lens, 16), 4);
    assert_memory_equal(argv[1], "kchat:rm:3:read:c1", lens[1]);
    assert_memory_equal(argv[2], "u1", 2);
    assert_int_equal(proj_rcmd_argv(&c, 5, argv, lens, 16), 4);
    assert_memory_equal(argv[0], "ZREMRANGEBYRANK", lens[0]);
    assert_memory_equal(argv[3], "-51", 3);
    char *json = proj_message_json(&it.ev);
    assert_string_equal(json, "{\"convo_id\":\"c1\",\"seq_no\":7,\"server_msg_id\":\"s\","
                              "\"sender_id\":\"u1\",\"client_msg_id\":\"m\",\"content\":\"hi\","
                              "\"content_type\":\"text/plain\",\"created_at\":"
                              "\"1970-01-01T00:00:01.000Z\",\"edited_at\":null,"
                              "\"deleted_at\":null}");
    free(json);
    proj_rcmds_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literals_escape_quotes_and_backslashes),
        cmocka_unit_test(test_a_run_of_messages_is_three_statements),
        cmocka_unit_test(test_membership_changes_keep_their_order),
        cmocka_unit_test(test_applied_events_are_skipped_and_rejections_change_nothing),
        cmocka_unit_test(test_a_message_in_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
