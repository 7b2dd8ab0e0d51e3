/* test_notifier.c - the notifier's pure decisions (notifier/decide.c): mentions, what a
 * notification says under each content setting, the ids that make its sends idempotent,
 * origins, and the retry schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "decide.h"

static void test_content_setting(void **state)
{
    (void)state;
    assert_int_equal(nt_content_parse("preview"), NT_CONTENT_PREVIEW);
    assert_int_equal(nt_content_parse("sender"), NT_CONTENT_SENDER);
    assert_int_equal(nt_content_parse("none"), NT_CONTENT_NONE);
    assert_int_equal(nt_content_parse("all"), -1);
    assert_int_equal(nt_content_parse(""), -1);
}

static int m(const char *text, const char *user)
{
    return nt_mentions(text, strlen(text), user);
}

static void test_mentions(void **state)
{
    (void)state;
    assert_true(m("@ann", "ann"));
    assert_true(m("hi @ann, look", "ann"));
    assert_true(m("hi @ANN", "ann"));
    assert_true(m("(@ann)", "ann"));
    assert_true(m("ask @ann.", "ann"));
    assert_true(m("ask @ann-", "ann"));
    assert_true(m("@bob @ann", "ann"));
    assert_true(m("@a.b", "a.b"));
    /* not a word of its own */
    assert_false(m("@anna", "ann"));
    assert_false(m("mail ann@example.com", "example"));
    assert_false(m("x@ann", "ann"));
    assert_false(m("@@ann", "ann"));
    assert_false(m("@ann_x", "ann"));
    assert_false(m("@ann.b", "ann"));
    assert_false(m("ann", "ann"));
    assert_false(m("@", "ann"));
    assert_false(m("", "ann"));
    assert_false(m("@an", "ann"));
    assert_false(m("@ann", ""));
    /* a name with letters beyond ASCII is compared byte for byte */
    assert_true(m("salut @zo\xc3\xab !", "zo\xc3\xab"));
    assert_false(m("salut @zo\xc3\xabs", "zo\xc3\xab"));
    /* the text's length is what counts, not a NUL */
    assert_false(nt_mentions("@ann", 3, "ann"));
}

static void test_utf8_cut(void **state)
{
    (void)state;
    const char *s = "ab\xc3\xa9" "cd"; /* a b é c d: 6 bytes */
    assert_int_equal(nt_utf8_cut(s, 6, 10), 6);
    assert_int_equal(nt_utf8_cut(s, 6, 4), 4);
    assert_int_equal(nt_utf8_cut(s, 6, 3), 2); /* é would be split */
    assert_int_equal(nt_utf8_cut(s, 6, 2), 2);
    assert_int_equal(nt_utf8_cut(s, 6, 0), 0);
}

/* The payload as JSON, parsed back (NULL when it is not JSON). */
static cJSON *push(const nt_note_t *n, nt_content_t c)
{
    kc_buf_t b = {0};
    nt_push_payload(n, c, &b);
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    kc_buf_free(&b);
    return j;
}

static const char *str(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_one_message_in_a_group(void **state)
{
    (void)state;
    const char *senders[] = {"ann"};
    nt_note_t n = {.user_id = "u_bob", .convo_id = "c_team", .title = "Team \"A\"",
                   .first_seq = 7, .last_seq = 7, .count = 1, .senders = senders,
                   .nsenders = 1, .last_sender = "ann", .last_content = "lunch?\n<b>now</b>"};
    cJSON *j = push(&n, NT_CONTENT_PREVIEW);
    assert_non_null(j);
    assert_string_equal(str(j, "type"), "message");
    assert_string_equal(str(j, "convo_id"), "c_team");
    assert_string_equal(str(j, "title"), "Team \"A\"");
    assert_string_equal(str(j, "body"), "ann: lunch?\n<b>now</b>");
    assert_string_equal(str(j, "sender"), "ann");
    assert_string_equal(str(j, "url"), "/c/c_team/m/7");
    assert_string_equal(str(j, "tag"), "convo:c_team");
    assert_true(num(j, "count") == 1 && num(j, "first_seq") == 7 && num(j, "last_seq") == 7);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "mention")));
    cJSON_Delete(j);

    j = push(&n, NT_CONTENT_SENDER);
    assert_string_equal(str(j, "title"), "Team \"A\"");
    assert_string_equal(str(j, "body"), "New message from ann");
    char *printed = cJSON_PrintUnformatted(j);
    assert_null(strstr(printed, "lunch"));
    free(printed);
    cJSON_Delete(j);

    j = push(&n, NT_CONTENT_NONE);
    assert_string_equal(str(j, "title"), "kchat");
    assert_string_equal(str(j, "body"), "New message");
    assert_null(str(j, "sender"));
    assert_string_equal(str(j, "url"), "/c/c_team/m/7"); /* still opens the conversation */
    cJSON_Delete(j);
}

static void test_nothing_of_the_text_without_preview(void **state)
{
    (void)state;
    const char *senders[] = {"ann", "cy"};
    nt_note_t n = {.user_id = "u_bob", .convo_id = "c_team", .title = "Team", .first_seq = 3,
                   .last_seq = 9, .count = 4, .senders = senders, .nsenders = 2,
                   .last_sender = "cy", .last_content = "the secret plan"};
    for (int c = NT_CONTENT_SENDER; c <= NT_CONTENT_NONE; c++) {
        kc_buf_t b = {0};
        nt_push_payload(&n, (nt_content_t)c, &b);
        kc_buf_putc(&b, '\0');
        assert_null(strstr(b.data, "secret"));
        kc_buf_reset(&b);
        nt_webhook_payload(&n, (nt_content_t)c, 0, &b);
        kc_buf_putc(&b, '\0');
        assert_null(strstr(b.data, "secret"));
        if (c == NT_CONTENT_NONE) {
            assert_null(strstr(b.data, "ann"));
            assert_null(strstr(b.data, "Team"));
        }
        kc_buf_free(&b);
    }
}

static void test_a_burst_is_counted(void **state)
{
    (void)state;
    const char *two[] = {"ann", "bob"};
    nt_note_t n = {.user_id = "u_x", .convo_id = "c_1", .title = "T", .first_seq = 3,
                   .last_seq = 5, .count = 3, .senders = two, .nsenders = 2,
                   .last_sender = "bob", .last_content = "third"};
    cJSON *j = push(&n, NT_CONTENT_PREVIEW);
    assert_string_equal(str(j, "body"), "3 new messages from ann and bob\nbob: third");
    assert_string_equal(str(j, "url"), "/c/c_1/m/3"); /* opens at the first one */
    cJSON_Delete(j);
    j = push(&n, NT_CONTENT_SENDER);
    assert_string_equal(str(j, "body"), "3 new messages from ann and bob");
    cJSON_Delete(j);
    const char *five[] = {"a", "b", "c", "d", "e"};
    n.senders = five;
    n.nsenders = 5;
    n.count = 9;
    j = push(&n, NT_CONTENT_SENDER);
    assert_string_equal(str(j, "body"), "9 new messages from a, b and 3 others");
    cJSON_Delete(j);
    n.nsenders = 3;
    j = push(&n, NT_CONTENT_SENDER);
    assert_string_equal(str(j, "body"), "9 new messages from a, b and c");
    cJSON_Delete(j);
}

static void test_direct_conversations_are_titled_by_the_sender(void **state)
{
    (void)state;
    nt_note_t n = {.user_id = "u_x", .convo_id = "d_abcdefghijklmnopqrstuvwxyz", .title = "",
                   .first_seq = 1, .last_seq = 1, .count = 1, .last_sender = "ann",
                   .last_content = "hi", .mention = 1};
    cJSON *j = push(&n, NT_CONTENT_PREVIEW);
    assert_string_equal(str(j, "title"), "ann");
    assert_string_equal(str(j, "body"), "hi");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "mention")));
    cJSON_Delete(j);
    n.last_content = ""; /* files only */
    j = push(&n, NT_CONTENT_PREVIEW);
    assert_string_equal(str(j, "body"), "sent a file");
    cJSON_Delete(j);
    j = push(&n, NT_CONTENT_SENDER);
    assert_string_equal(str(j, "body"), "ann mentioned you");
    cJSON_Delete(j);
}

static void test_long_text_is_cut_on_a_character(void **state)
{
    (void)state;
    char text[NT_TEXT_MAX + 8];
    memset(text, 'a', sizeof(text) - 1);
    text[NT_TEXT_MAX - 1] = '\xc3'; /* é across the cut */
    text[NT_TEXT_MAX] = '\xa9';
    text[sizeof(text) - 1] = '\0';
    nt_note_t n = {.user_id = "u", .convo_id = "d_abcdefghijklmnopqrstuvwxyz", .title = "",
                   .first_seq = 1, .last_seq = 1, .count = 1, .last_sender = "ann",
                   .last_content = text};
    cJSON *j = push(&n, NT_CONTENT_PREVIEW);
    assert_non_null(j); /* still valid UTF-8 JSON */
    assert_int_equal(strlen(str(j, "body")), NT_TEXT_MAX - 1);
    cJSON_Delete(j);
}

static void test_webhook_body(void **state)
{
    (void)state;
    const char *senders[] = {"ann"};
    nt_note_t n = {.user_id = "u_bob", .convo_id = "c_1", .title = "T", .first_seq = 2,
                   .last_seq = 2, .count = 1, .senders = senders, .nsenders = 1,
                   .last_sender = "ann", .last_content = "x"};
    kc_buf_t b = {0};
    nt_webhook_payload(&n, NT_CONTENT_PREVIEW, 1700000000123, &b);
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    assert_non_null(j);
    assert_string_equal(str(j, "type"), "message.notification");
    assert_string_equal(str(j, "timestamp"), "2023-11-14T22:13:20.123Z");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    assert_string_equal(str(d, "user_id"), "u_bob");
    assert_string_equal(str(d, "convo_id"), "c_1");
    assert_string_equal(str(d, "body"), "ann: x");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "senders");
    assert_int_equal(cJSON_GetArraySize(s), 1);
    cJSON_Delete(j);
    kc_buf_free(&b);
}

static void test_ids_are_stable_and_distinct(void **state)
{
    (void)state;
    char a[37], b[37], c[37], d[37];
    nt_msg_id("u_1", "c_1", 5, a);
    nt_msg_id("u_1", "c_1", 5, b);
    nt_msg_id("u_1", "c_1", 6, c);
    nt_msg_id("u_1c", "_1", 5, d); /* the parts cannot run into each other */
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_int_equal(strlen(a), 36);
    assert_memory_equal(a, "msg_", 4);
    for (size_t i = 4; i < 36; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));

    char t1[33], t2[33], t3[33];
    nt_topic("c_1", t1);
    nt_topic("c_1", t2);
    nt_topic("c_2", t3);
    assert_string_equal(t1, t2);
    assert_string_not_equal(t1, t3);
    assert_int_equal(strlen(t1), 32); /* RFC 8030: at most 32 base64url characters */
    for (size_t i = 0; i < 32; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", t1[i]));
}

static void test_origins(void **state)
{
    (void)state;
    char o[64];
    assert_int_equal(nt_origin("https://Push.Example.com/wpush/v2/abc?x=1", o, sizeof(o)), 0);
    assert_string_equal(o, "https://push.example.com");
    assert_int_equal(nt_origin("http://127.0.0.1:8443/p", o, sizeof(o)), 0);
    assert_string_equal(o, "http://127.0.0.1:8443");
    assert_int_equal(nt_origin("HTTPS://[::1]:9/x", o, sizeof(o)), 0);
    assert_string_equal(o, "https://[::1]:9");
    assert_int_equal(nt_origin("https://h", o, sizeof(o)), 0);
    assert_string_equal(o, "https://h");
    assert_int_equal(nt_origin("ftp://h/x", o, sizeof(o)), -1);
    assert_int_equal(nt_origin("https:///x", o, sizeof(o)), -1);
    assert_int_equal(nt_origin("https://user@h/x", o, sizeof(o)), -1);
    assert_int_equal(nt_origin("https://h x/", o, sizeof(o)), -1);
    assert_int_equal(nt_origin("https://a-very-long-host-name.example.com/", o, 16), -1);
}

static void test_retry_schedule(void **state)
{
    (void)state;
    /* full jitter below a doubling cap */
    assert_int_equal(nt_retry_ms(1, -1, 1000, 60000, 0.0), 1000);
    assert_int_equal(nt_retry_ms(1, -1, 1000, 60000, 0.99), 1000);
    assert_int_equal(nt_retry_ms(2, -1, 1000, 60000, 0.0), 1000);
    assert_true(nt_retry_ms(2, -1, 1000, 60000, 0.5) == 1500);
    assert_true(nt_retry_ms(4, -1, 1000, 60000, 0.999999) <= 8000);
    assert_true(nt_retry_ms(4, -1, 1000, 60000, 0.999999) > 7900);
    assert_true(nt_retry_ms(40, -1, 1000, 60000, 0.999999) <= 60000);
    assert_true(nt_retry_ms(40, -1, 1000, 60000, 0.999999) > 59000);
    /* the server's Retry-After wins, within the bounds */
    assert_int_equal(nt_retry_ms(1, 7, 1000, 60000, 0.3), 7000);
    assert_int_equal(nt_retry_ms(1, 0, 1000, 60000, 0.3), 1000);
    assert_int_equal(nt_retry_ms(1, 100000, 1000, 60000, 0.3), 60000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_setting),
        cmocka_unit_test(test_mentions),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_one_message_in_a_group),
        cmocka_unit_test(test_nothing_of_the_text_without_preview),
        cmocka_unit_test(test_a_burst_is_counted),
        cmocka_unit_test(test_direct_conversations_are_titled_by_the_sender),
        cmocka_unit_test(test_long_text_is_cut_on_a_character),
        cmocka_unit_test(test_webhook_body),
        cmocka_unit_test(test_ids_are_stable_and_distinct),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_retry_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
