/* The projector's event decoding (projector/event.c): records written by kchat/chat.h's writer
 * come back with NUL-terminated strings, NUL bytes in free text become U+FFFD, and bad ids or
 * malformed records are refused (the projector then counts them as poison). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"
#include "kchat/chat.h"

static kc_schemas_t *S;
static int32_t ID;

static int setup(void **state)
{
    (void)state;
    char err[256];
    S = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    if (!S)
        return -1;
    ID = kc_schemas_current_id(S, "chat.events-value");
    return ID < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    kc_schemas_destroy(S);
    return 0;
}

static kc_chat_event_out_t base(kc_chat_event_kind_t kind)
{
    return (kc_chat_event_out_t){.kind = kind,
                                 .event_id = kc_str("e1"),
                                 .convo_id = kc_str("c1"),
                                 .actor_id = kc_str("u1"),
                                 .command_id = kc_str("k1"),
                                 .origin = kc_str("gw:0"),
                                 .occurred_at = 1700000000000};
}

static int decode(const kc_chat_event_out_t *o, proj_event_t *ev, char *err, size_t errlen)
{
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, ID, o);
    int rc = proj_event_decode(S, b.data, b.len, ev, err, errlen);
    kc_buf_free(&b);
    return rc;
}

static void test_a_message_with_a_nul_byte(void **state)
{
    (void)state;
    kc_chat_event_out_t o = base(KC_EV_MESSAGE_CREATED);
    o.seq_no = 7;
    o.server_msg_id = kc_str("m7");
    o.client_msg_id = kc_str("cm7");
    o.content = (kc_str_t){"a\0b", 3};
    o.content_type = kc_str("text/plain");
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_MESSAGE);
    assert_string_equal(ev.type, "MessageCreated");
    assert_string_equal(ev.event_id, "e1");
    assert_string_equal(ev.convo_id, "c1");
    assert_string_equal(ev.actor_id, "u1");
    assert_string_equal(ev.command_id, "k1");
    assert_string_equal(ev.origin, "gw:0");
    assert_true(ev.at == 1700000000000);
    assert_true(ev.seq_no == 7);
    assert_string_equal(ev.server_msg_id, "m7");
    assert_string_equal(ev.client_msg_id, "cm7");
    assert_string_equal(ev.content, "a\xEF\xBF\xBD" "b");
    assert_string_equal(ev.content_type, "text/plain");
    proj_event_free(&ev);
}

static void test_a_conversation_with_its_members(void **state)
{
    (void)state;
    char *const members[] = {"u1", "u2", "u3"};
    kc_chat_event_out_t o = base(KC_EV_CONVERSATION_CREATED);
    o.title = (kc_str_t){"t\0", 2};
    o.members = members;
    o.nmembers = 3;
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_CREATED);
    assert_string_equal(ev.title, "t\xEF\xBF\xBD");
    assert_int_equal(ev.nmembers, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(ev.members[i], members[i]);
    proj_event_free(&ev);

    o = base(KC_EV_MEMBERS_REMOVED);
    o.nmembers = 0;
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REMOVED);
    assert_int_equal(ev.nmembers, 0);
    proj_event_free(&ev);
}

static void test_a_rejection(void **state)
{
    (void)state;
    kc_chat_event_out_t o = base(KC_EV_COMMAND_REJECTED);
    o.reason = kc_str("not_member");
    o.message = kc_str("you are not a member");
    o.command_type = kc_str("SendMessage");
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REJECTED);
    assert_string_equal(ev.reason, "not_member");
    assert_string_equal(ev.message, "you are not a member");
    proj_event_free(&ev);
}

static void test_a_conversation_updated(void **state)
{
    (void)state;
    kc_chat_event_out_t o = base(KC_EV_CONVERSATION_UPDATED);
    o.title = (kc_str_t){"new\0", 4};
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_UPDATED);
    assert_string_equal(ev.type, "ConversationUpdated");
    assert_string_equal(ev.title, "new\xEF\xBF\xBD");
    assert_null(ev.topic); /* unchanged */
    proj_event_free(&ev);

    o = base(KC_EV_CONVERSATION_UPDATED);
    o.topic = kc_str(""); /* present and empty: cleared */
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_null(ev.title);
    assert_non_null(ev.topic);
    assert_string_equal(ev.topic, "");
    proj_event_free(&ev);

    o.title = kc_str("t");
    o.topic = (kc_str_t){"a\0b", 3};
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.title, "t");
    assert_string_equal(ev.topic, "a\xEF\xBF\xBD" "b");
    proj_event_free(&ev);
}

static void test_a_role_changed(void **state)
{
    (void)state;
    const char *names[] = {"owner", "admin", "member"};
    for (int r = KC_ROLE_OWNER; r < KC_ROLE_N; r++) {
        kc_chat_event_out_t o = base(KC_EV_ROLE_CHANGED);
        o.user_id = kc_str("u2");
        o.role = (kc_role_t)r;
        proj_event_t ev;
        char err[256];
        assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
        assert_int_equal(ev.kind, EV_ROLE);
        assert_string_equal(ev.type, "RoleChanged");
        assert_string_equal(ev.user_id, "u2");
        assert_string_equal(ev.role, names[r]);
        assert_int_equal(ev.nmembers, 0);
        proj_event_free(&ev);
    }
    kc_chat_event_out_t o = base(KC_EV_ROLE_CHANGED);
    o.user_id = kc_str("");
    o.role = KC_ROLE_ADMIN;
    proj_event_t ev;
    char err[256];
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "user_id"));
}

static void test_members_removed_with_left_seq_and_promoted(void **state)
{
    (void)state;
    char *const members[] = {"u1", "u3"};
    kc_chat_event_out_t o = base(KC_EV_MEMBERS_REMOVED);
    o.members = members;
    o.nmembers = 2;
    o.seq_no = 42;
    o.promoted = kc_str("u2");
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REMOVED);
    assert_int_equal(ev.nmembers, 2);
    assert_string_equal(ev.members[1], "u3");
    assert_true(ev.seq_no == 42);
    assert_string_equal(ev.promoted, "u2");
    proj_event_free(&ev);

    o.promoted = (kc_str_t){NULL, 0};
    o.seq_no = 0; /* nothing sent yet */
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_null(ev.promoted);
    assert_true(ev.seq_no == 0);
    proj_event_free(&ev);

    o.promoted = kc_str("");
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "promoted"));
    o.promoted = (kc_str_t){NULL, 0};
    o.seq_no = -1;
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "seq_no"));

    /* A version-1 record (no seq_no, no promoted): left_seq 0. Its body is the newest
     * version's without the last bytes: seq_no 0 and the null branch (two bytes), then the
     * envelope's type (its length in one byte, then the name). */
    int32_t v1 = -1;
    for (int32_t id = 1; id < 1000 && v1 < 0; id++) {
        const char *subject;
        int version;
        if (kc_schemas_describe(S, id, &subject, &version) == 0 &&
            strcmp(subject, "chat.events-value") == 0 && version == 1)
            v1 = id;
    }
    assert_true(v1 > 0);
    o.seq_no = 0;
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, v1, &o);
    size_t tail = 2 + 1 + strlen("MembersRemoved");
    assert_true(b.len > tail);
    assert_int_equal(proj_event_decode(S, b.data, b.len - tail, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REMOVED);
    assert_int_equal(ev.nmembers, 2);
    assert_true(ev.seq_no == 0);
    assert_null(ev.promoted);
    proj_event_free(&ev);
    kc_buf_free(&b);
}

static void test_bad_ids_and_bad_records_are_refused(void **state)
{
    (void)state;
    proj_event_t ev;
    char err[256];
    kc_chat_event_out_t o = base(KC_EV_READ_MARKER_SET);
    o.seq_no = 3;
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    proj_event_free(&ev);

    o.convo_id = kc_str("");
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "convo_id"));
    o = base(KC_EV_READ_MARKER_SET);
    o.seq_no = 3;
    o.actor_id = (kc_str_t){"u\0x", 3};
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    char longid[PROJ_MAX_ID + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    o = base(KC_EV_READ_MARKER_SET);
    o.seq_no = 3;
    o.event_id = kc_str(longid);
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    o = base(KC_EV_READ_MARKER_SET);
    o.seq_no = 0;
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);

    char *const members[] = {"u1", ""};
    o = base(KC_EV_MEMBERS_ADDED);
    o.members = members;
    o.nmembers = 2;
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "members[1]"));

    /* every strict prefix of a good record is refused, as are foreign bytes */
    o = base(KC_EV_MESSAGE_CREATED);
    o.seq_no = 1;
    o.server_msg_id = kc_str("m1");
    o.client_msg_id = kc_str("cm1");
    o.content = kc_str("hello");
    o.content_type = kc_str("text/plain");
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, ID, &o);
    for (size_t n = 0; n < b.len; n++)
        assert_true(proj_event_decode(S, b.data, n, &ev, err, sizeof(err)) < 0);
    assert_true(proj_event_decode(S, "not avro", 8, &ev, err, sizeof(err)) < 0);
    kc_buf_free(&b);
}

static void test_a_reaction_changed(void **state)
{
    (void)state;
    const kc_chat_count_t counts[] = {{kc_str("\xF0\x9F\x91\x8D"), 2}, {kc_str("a\"b"), 1}};
    kc_chat_event_out_t o = base(KC_EV_REACTION_CHANGED);
    o.seq_no = 9;
    o.emoji = kc_str("\xF0\x9F\x91\x8D");
    o.previous = kc_str("a\"b");
    o.counts = counts;
    o.ncounts = 2;
    proj_event_t ev;
    char err[256];
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REACTION);
    assert_string_equal(ev.type, "ReactionChanged");
    assert_true(ev.seq_no == 9);
    assert_string_equal(ev.actor_id, "u1");
    assert_string_equal(ev.emoji, "\xF0\x9F\x91\x8D");
    assert_string_equal(ev.previous, "a\"b");
    assert_int_equal(ev.ncounts, 2);
    assert_string_equal(ev.counts[0].emoji, "\xF0\x9F\x91\x8D");
    assert_int_equal(ev.counts[0].count, 2);
    assert_string_equal(ev.counts[1].emoji, "a\"b");
    assert_int_equal(ev.counts[1].count, 1);
    assert_int_equal(ev.nmembers, 0);
    proj_event_free(&ev);
    assert_null(ev.counts);

    /* removed: both null, no reactions left */
    o.emoji = o.previous = (kc_str_t){NULL, 0};
    o.counts = NULL;
    o.ncounts = 0;
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.kind, EV_REACTION);
    assert_null(ev.emoji);
    assert_null(ev.previous);
    assert_int_equal(ev.ncounts, 0);
    proj_event_free(&ev);

    /* as many kinds as a message may have, each string in the block */
    kc_chat_count_t many[KC_CHAT_MAX_REACTION_KINDS];
    char names[KC_CHAT_MAX_REACTION_KINDS][4];
    for (int i = 0; i < KC_CHAT_MAX_REACTION_KINDS; i++) {
        snprintf(names[i], sizeof(names[i]), "e%d", i);
        many[i] = (kc_chat_count_t){kc_str(names[i]), KC_CHAT_MAX_REACTION_KINDS - i};
    }
    o.counts = many;
    o.ncounts = KC_CHAT_MAX_REACTION_KINDS;
    o.emoji = kc_str("e0");
    assert_int_equal(decode(&o, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.ncounts, KC_CHAT_MAX_REACTION_KINDS);
    for (int i = 0; i < KC_CHAT_MAX_REACTION_KINDS; i++) {
        assert_string_equal(ev.counts[i].emoji, names[i]);
        assert_int_equal(ev.counts[i].count, KC_CHAT_MAX_REACTION_KINDS - i);
    }
    proj_event_free(&ev);

    /* what the read models cannot store is poison: an empty emoji, a NUL, no message */
    o = base(KC_EV_REACTION_CHANGED);
    o.seq_no = 9;
    o.emoji = kc_str("");
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "emoji"));
    o.emoji = (kc_str_t){"a\0", 2};
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    o.emoji = kc_str("x");
    o.previous = kc_str("");
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "previous"));
    o.previous = (kc_str_t){NULL, 0};
    const kc_chat_count_t empty[] = {{kc_str(""), 1}};
    o.counts = empty;
    o.ncounts = 1;
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "emoji"));
    o.counts = NULL;
    o.ncounts = 0;
    o.seq_no = 0;
    assert_true(decode(&o, &ev, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "seq_no"));

    /* every strict prefix of a good record is refused */
    o.seq_no = 9;
    o.counts = counts;
    o.ncounts = 2;
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, ID, &o);
    for (size_t n = 0; n < b.len; n++)
        assert_true(proj_event_decode(S, b.data, n, &ev, err, sizeof(err)) < 0);
    assert_int_equal(proj_event_decode(S, b.data, b.len, &ev, err, sizeof(err)), 0);
    proj_event_free(&ev);
    kc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_message_with_a_nul_byte),
        cmocka_unit_test(test_a_conversation_with_its_members),
        cmocka_unit_test(test_a_rejection),
        cmocka_unit_test(test_a_conversation_updated),
        cmocka_unit_test(test_a_role_changed),
        cmocka_unit_test(test_members_removed_with_left_seq_and_promoted),
        cmocka_unit_test(test_bad_ids_and_bad_records_are_refused),
        cmocka_unit_test(test_a_reaction_changed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
