/* The API's reading of a request (api/request.c): route templates, query values, integers,
 * the JSON body and member lists, without a server; and reactions (api/reaction.c): the
 * emoji of a body, and the Redis copy of a message as history and previews give it out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "reaction.h"
#include "request.h"

static void test_paths(void **state)
{
    (void)state;
    char id[129];
    assert_int_equal(api_path_match("/conversations/:id/read", "/conversations/c_1/read", id,
                                    sizeof(id), NULL),
                     1);
    assert_string_equal(id, "c_1");
    assert_int_equal(api_path_match("/conversations/:id", "/conversations/c_1/read", id,
                                    sizeof(id), NULL),
                     0);
    assert_int_equal(api_path_match("/conversations/:id", "/conversations/c%201", id,
                                    sizeof(id), NULL),
                     -1);
    assert_int_equal(api_path_match("/conversations/:id", "/conversations/", id, sizeof(id), NULL), 0);
    assert_int_equal(api_path_match("/users", "/users/", id, sizeof(id), NULL), 0);
    /* a seq_no segment: digits without a leading zero, below 2^53 */
    long long seq = 0;
    const char *t = "/conversations/:id/messages/:seq";
    assert_int_equal(api_path_match(t, "/conversations/c_1/messages/42", id, sizeof(id), &seq), 1);
    assert_string_equal(id, "c_1");
    assert_int_equal(seq, 42);
    assert_int_equal(api_path_match(t, "/conversations/c_1/messages/999999999999999", id,
                                    sizeof(id), &seq),
                     1);
    assert_int_equal(seq, 999999999999999LL);
    const char *bad[] = {"0", "007", "-1", "1e3", "x", "1000000000000000", "+1", " 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[80];
        snprintf(path, sizeof(path), "/conversations/c_1/messages/%s", bad[i]);
        assert_int_equal(api_path_match(t, path, id, sizeof(id), &seq), -1);
    }
    assert_int_equal(api_path_match(t, "/conversations/c_1/messages/", id, sizeof(id), &seq), 0);
    assert_int_equal(api_path_match(t, "/conversations/c_1/messages/4/x", id, sizeof(id), &seq),
                     0);
    /* a bad id where the rest of the path is another template's is no match, not a bad id */
    assert_int_equal(api_path_match("/conversations/:id/read", "/conversations/a b/reads", id,
                                    sizeof(id), NULL),
                     0);
}

/* A second id, a member of the conversation: /conversations/:id/members/:user_id. */
static void test_member_paths(void **state)
{
    (void)state;
    char id[129], user[129];
    long long seq = -7;
    const char *t = "/conversations/:id/members/:user_id";
    assert_int_equal(api_path_match_ids(t, "/conversations/c_1/members/u_2", id, sizeof(id),
                                        user, sizeof(user), &seq),
                     1);
    assert_string_equal(id, "c_1");
    assert_string_equal(user, "u_2");
    assert_int_equal(seq, -7); /* no :seq in the template: left alone */
    /* ids of the largest size fit; one byte more is a bad id */
    char big[140], path[400];
    memset(big, 'u', 128);
    big[128] = '\0';
    snprintf(path, sizeof(path), "/conversations/c_1/members/%s", big);
    assert_int_equal(api_path_match_ids(t, path, id, sizeof(id), user, sizeof(user), NULL), 1);
    assert_int_equal(strlen(user), 128);
    snprintf(path, sizeof(path), "/conversations/%s/members/u_2", big);
    assert_int_equal(api_path_match_ids(t, path, id, sizeof(id), user, sizeof(user), NULL), 1);
    assert_int_equal(strlen(id), 128);
    big[128] = 'u';
    big[129] = '\0';
    snprintf(path, sizeof(path), "/conversations/c_1/members/%s", big);
    assert_int_equal(api_path_match_ids(t, path, id, sizeof(id), user, sizeof(user), NULL), -1);
    snprintf(path, sizeof(path), "/conversations/%s/members/u_2", big);
    assert_int_equal(api_path_match_ids(t, path, id, sizeof(id), user, sizeof(user), NULL), -1);
    /* the user id is checked like the conversation's: a bad one is -1, whichever it is */
    const char *bad[] = {"/conversations/c_1/members/u%202", "/conversations/c_1/members/u 2",
                         "/conversations/c 1/members/u_2", "/conversations/c_1/members/u\"2",
                         "/conversations/c_1/members/u\xc3\xa9", "/conversations//members/u_2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(user, "untouched");
        assert_int_equal(api_path_match_ids(t, bad[i], id, sizeof(id), user, sizeof(user), NULL),
                         -1);
        if (strstr(bad[i], "c_1"))
            assert_string_equal(user, "untouched"); /* nothing copied from a bad id */
    }
    /* not this template */
    const char *other[] = {"/conversations/c_1/members/", "/conversations/c_1/members",
                           "/conversations/c_1/members/u_2/", "/conversations/c_1/members/u_2/x",
                           "/conversations/c_1/member/u_2", "/conversations/c_1/members//"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(
            api_path_match_ids(t, other[i], id, sizeof(id), user, sizeof(user), NULL), 0);
    /* the other templates still match as before, with or without a user buffer */
    assert_int_equal(api_path_match_ids("/conversations/:id/members", "/conversations/c_1/members",
                                        id, sizeof(id), user, sizeof(user), NULL),
                     1);
    assert_int_equal(api_path_match_ids("/conversations/:id/messages/:seq",
                                        "/conversations/c_9/messages/12", id, sizeof(id), user,
                                        sizeof(user), &seq),
                     1);
    assert_string_equal(id, "c_9");
    assert_int_equal(seq, 12);
    assert_int_equal(api_path_match_ids("/conversations/:id", "/conversations/c_1/members/u_2", id,
                                        sizeof(id), user, sizeof(user), NULL),
                     0);
    /* api_path_match (no user buffer) still checks the segment, and copies nothing of it */
    assert_int_equal(api_path_match(t, "/conversations/c_3/members/u_4", id, sizeof(id), NULL), 1);
    assert_string_equal(id, "c_3");
    assert_int_equal(api_path_match(t, "/conversations/c_3/members/u%204", id, sizeof(id), NULL),
                     -1);
    /* ":id" is not read as the start of ":user_id", nor the other way round */
    assert_int_equal(api_path_match_ids("/users/:user_id", "/users/u_5", id, sizeof(id), user,
                                        sizeof(user), NULL),
                     1);
    assert_string_equal(user, "u_5");
    assert_string_equal(id, "c_3");
}

static long long parsed(const char *v, long long min, long long max)
{
    long long n = -12345;
    return api_int_parse(v, min, max, &n) == 0 ? n : -12345;
}

static void test_integers(void **state)
{
    (void)state;
    assert_int_equal(parsed("50", 1, 200), 50);
    assert_int_equal(parsed("-0", 0, 10), 0);
    assert_int_equal(parsed("9223372036854775807", 1, 9223372036854775807LL),
                     9223372036854775807LL);
    assert_int_equal(parsed("9223372036854775808", 1, 9223372036854775807LL), -12345);
    assert_int_equal(parsed("201", 1, 200), -12345);
    assert_int_equal(parsed("", 1, 200), -12345);
    assert_int_equal(parsed("5x", 1, 200), -12345);
    assert_int_equal(parsed("-", 1, 200), -12345);
    assert_int_equal(parsed(" 5", 1, 200), -12345);
    assert_int_equal(parsed("+5", 1, 200), -12345);
    /* found by fuzz/fuzz_api (fuzz/regress/api): strtoll skips every kind of white space, and
     * "limit=%0B5" was read as 5 */
    assert_int_equal(parsed("\v5", 1, 200), -12345);
    assert_int_equal(parsed("\t5", 1, 200), -12345);
    assert_int_equal(parsed("\n5", 1, 200), -12345);
    assert_int_equal(parsed("\f5", 1, 200), -12345);
    assert_int_equal(parsed("\r5", 1, 200), -12345);
}

static void test_query_values(void **state)
{
    (void)state;
    char big[1026];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_true(api_query_arg_ok("q", "caf\xc3\xa9"));
    assert_true(api_query_arg_ok("flag", NULL));
    assert_false(api_query_arg_ok("q", "\xc3"));
    assert_false(api_query_arg_ok("\xff", "x"));
    assert_false(api_query_arg_ok("q", big));
    big[1024] = '\0';
    assert_true(api_query_arg_ok("q", big));
}

static void body_refused(const char *body, size_t len, const char *code)
{
    cJSON *j = (cJSON *)1;
    const char *c = NULL, *m = NULL;
    assert_int_equal(api_body_parse(body, len, &j, &c, &m), -1);
    assert_null(j);
    assert_string_equal(c, code);
    assert_non_null(m);
}

static void test_bodies(void **state)
{
    (void)state;
    cJSON *j = NULL;
    const char *c = NULL, *m = NULL;
    const char ok[] = "{\"a\":[1,\"x\"]}";
    assert_int_equal(api_body_parse(ok, sizeof(ok) - 1, &j, &c, &m), 0);
    assert_true(cJSON_IsObject(j));
    cJSON_Delete(j);
    body_refused("", 0, "invalid_json");
    body_refused("{\"a\":\"\xff\"}", 8, "invalid_utf8");
    body_refused("[1]", 3, "invalid_json");
    body_refused("{} {}", 5, "invalid_json");
    body_refused("{\"a\":\"\\u0000\"}", 14, "invalid_json");
    body_refused("{\"a\":\"x\0y\"}", 11, "invalid_json");
}

static void test_members(void **state)
{
    (void)state;
    cJSON *arr = cJSON_Parse("[\"u_1\",\"u_2\"]");
    const char **ids = NULL;
    size_t n = 0;
    assert_int_equal(api_member_ids(arr, 2, 128, &ids, &n), API_MEMBERS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[1], "u_2");
    free(ids);
    assert_int_equal(api_member_ids(arr, 1, 128, &ids, &n), API_MEMBERS_TOO_MANY);
    assert_int_equal(api_member_ids(arr, 2, 2, &ids, &n), API_MEMBERS_NOT_IDS);
    cJSON_Delete(arr);
    arr = cJSON_Parse("[\"u 1\"]");
    assert_int_equal(api_member_ids(arr, 2, 128, &ids, &n), API_MEMBERS_NOT_IDS);
    cJSON_Delete(arr);
    arr = cJSON_Parse("{}");
    assert_int_equal(api_member_ids(arr, 2, 128, &ids, &n), API_MEMBERS_NOT_IDS);
    assert_int_equal(api_member_ids(NULL, 2, 128, &ids, &n), API_MEMBERS_NOT_IDS);
    cJSON_Delete(arr);
}

/* /conversations/:id/messages/:seq/reaction: the :seq segment followed by more path. */
static void test_reaction_paths(void **state)
{
    (void)state;
    char id[129] = "", user[129] = "";
    long long seq = 0;
    const char *t = "/conversations/:id/messages/:seq/reaction";
    assert_int_equal(api_path_match_ids(t, "/conversations/c_1/messages/42/reaction", id,
                                        sizeof(id), user, sizeof(user), &seq),
                     1);
    assert_string_equal(id, "c_1");
    assert_int_equal(seq, 42);
    assert_int_equal(api_path_match(t, "/conversations/d_x.y/messages/999999999999999/reaction",
                                    id, sizeof(id), &seq),
                     1);
    assert_int_equal(seq, 999999999999999LL);
    /* a bad seq_no or id: the path is this template's, answered 404 */
    const char *bad[] = {"/conversations/c_1/messages/0/reaction",
                         "/conversations/c_1/messages/01/reaction",
                         "/conversations/c_1/messages/x/reaction",
                         "/conversations/c_1/messages/1000000000000000/reaction",
                         "/conversations/c%201/messages/4/reaction",
                         "/conversations//messages/4/reaction",
                         "/conversations/c_1/messages//reaction"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(api_path_match(t, bad[i], id, sizeof(id), &seq), -1);
    /* not this template */
    const char *other[] = {"/conversations/c_1/messages/4", "/conversations/c_1/messages/4/",
                           "/conversations/c_1/messages/4/reaction/",
                           "/conversations/c_1/messages/4/reactions",
                           "/conversations/c_1/messages/4/reactio",
                           "/conversations/c_1/messages/reaction"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(api_path_match(t, other[i], id, sizeof(id), &seq), 0);
    /* nor is the reaction path a message's */
    assert_int_equal(api_path_match("/conversations/:id/messages/:seq",
                                    "/conversations/c_1/messages/4/reaction", id, sizeof(id),
                                    &seq),
                     0);
    assert_int_equal(api_path_match("/conversations/:id/messages",
                                    "/conversations/c_1/messages/4/reaction", id, sizeof(id),
                                    &seq),
                     0);
}

static int emoji_ok(const char *json, const char **emoji)
{
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    const char *e = NULL, *why = NULL;
    int rc = api_reaction_emoji(j, &e, &why);
    if (rc == 0) {
        assert_non_null(e);
        if (emoji)
            assert_string_equal(e, *emoji);
    } else {
        assert_null(e);
        assert_non_null(why);
        assert_true(strlen(why) > 10);
    }
    cJSON_Delete(j);
    return rc == 0;
}

static void test_reaction_emoji(void **state)
{
    (void)state;
    const char *thumbs = "\xf0\x9f\x91\x8d", *heart = "\xe2\x9d\xa4\xef\xb8\x8f";
    assert_true(emoji_ok("{\"emoji\":\"\xf0\x9f\x91\x8d\"}", &thumbs));
    assert_true(emoji_ok("{\"emoji\":\"\\u2764\\ufe0f\"}", &heart)); /* escaped, decoded */
    assert_true(emoji_ok("{\"emoji\":\"+1\",\"other\":1}", NULL));
    /* a family: 7 code points, 25 bytes */
    assert_true(emoji_ok("{\"emoji\":\"\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d"
                         "\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6\"}",
                         NULL));
    /* 16 code points pass, 17 do not; 64 bytes pass, 65 do not */
    assert_true(emoji_ok("{\"emoji\":\"abcdefghijklmnop\"}", NULL));
    assert_false(emoji_ok("{\"emoji\":\"abcdefghijklmnopq\"}", NULL));
    char body[400];
    strcpy(body, "{\"emoji\":\"");
    for (int i = 0; i < 16; i++)
        strcat(body, "\xf0\x9f\x91\x8d"); /* 16 x 4 bytes */
    strcat(body, "\"}");
    assert_true(emoji_ok(body, NULL));
    strcpy(body, "{\"emoji\":\"");
    for (int i = 0; i < 13; i++)
        strcat(body, "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbb"); /* 13 x 8 bytes, 26 code points */
    strcat(body, "\"}");
    assert_false(emoji_ok(body, NULL));
    const char *bad[] = {
        "{\"emoji\":\"\"}",       "{\"emoji\":\"a b\"}",      "{\"emoji\":\" \"}",
        "{\"emoji\":\"a\\tb\"}",  "{\"emoji\":\"a\\nb\"}",    "{\"emoji\":\"\\u007f\"}",
        "{\"emoji\":\"\\u0085\"}", "{\"emoji\":\"\\u00a0\"}",   "{\"emoji\":\"\\u2028\"}",
        "{\"emoji\":null}",       "{\"emoji\":1}",           "{\"emoji\":[\"x\"]}",
        "{\"emoji\":{}}",         "{\"emoji\":true}",        "{}",
        "{\"Emoji\":\"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(emoji_ok(bad[i], NULL));
}

/* api_tail_message of json for user: the text appended (the caller frees). */
static char *tail(const char *json, const char *user)
{
    kc_buf_t b = {0};
    kc_buf_puts(&b, "<");
    assert_int_equal(api_tail_message(&b, json, strlen(json), user), 0);
    assert_int_equal(b.data[0], '<');
    char *out = strdup(b.data + 1);
    kc_buf_free(&b);
    return out;
}

/* The field of a JSON object text, printed ("null" when null, NULL when absent). */
static char *field(const char *json, const char *name)
{
    cJSON *o = cJSON_Parse(json);
    assert_true(cJSON_IsObject(o));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(o);
    return s;
}

static void assert_field(const char *json, const char *name, const char *want)
{
    char *got = field(json, name);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    cJSON_free(got);
}

static void test_tail_messages(void **state)
{
    (void)state;
    /* nobody reacted: copied, my_reaction added */
    char *out = tail("{\"seq_no\":1,\"content\":\"hi\",\"reactions\":[]}", "u_a");
    assert_string_equal(out,
                        "{\"seq_no\":1,\"content\":\"hi\",\"reactions\":[],\"my_reaction\":null}");
    free(out);
    /* content that merely spells the keys is no key; nor is a nested one */
    out = tail("{\"content\":\"\\\"reacted\\\":{\\\"u_a\\\":\\\"x\\\"}\",\"x\":{\"reacted\":1,"
               "\"my_reaction\":2},\"reactions\":[]}  ",
               "u_a");
    assert_string_equal(out, "{\"content\":\"\\\"reacted\\\":{\\\"u_a\\\":\\\"x\\\"}\",\"x\":{"
                             "\"reacted\":1,\"my_reaction\":2},\"reactions\":[],"
                             "\"my_reaction\":null}");
    free(out);
    /* reacted: the caller's own, the map gone, the counts kept in their order */
    const char *m = "{\"convo_id\":\"c_1\",\"seq_no\":7,\"content\":\"caf\xc3\xa9 \\\"q\\\"\","
                    "\"reply_to\":null,\"reactions\":[{\"emoji\":\"\xf0\x9f\x91\x8d\","
                    "\"count\":2},{\"emoji\":\"\xe2\x9d\xa4\",\"count\":1}],"
                    "\"reacted\":{\"u_a\":\"\xf0\x9f\x91\x8d\",\"u_b\":\"\xe2\x9d\xa4\","
                    "\"u_c\":\"\xf0\x9f\x91\x8d\"},\"edit_count\":0}";
    out = tail(m, "u_b");
    assert_field(out, "my_reaction", "\"\xe2\x9d\xa4\"");
    assert_field(out, "reacted", NULL);
    assert_field(out, "reactions", "[{\"emoji\":\"\xf0\x9f\x91\x8d\",\"count\":2},"
                                   "{\"emoji\":\"\xe2\x9d\xa4\",\"count\":1}]");
    assert_field(out, "content", "\"caf\xc3\xa9 \\\"q\\\"\"");
    assert_field(out, "reply_to", "null");
    assert_field(out, "seq_no", "7");
    assert_field(out, "edit_count", "0");
    free(out);
    out = tail(m, "u_a");
    assert_field(out, "my_reaction", "\"\xf0\x9f\x91\x8d\"");
    free(out);
    out = tail(m, "u_zz"); /* a member who did not react */
    assert_field(out, "my_reaction", "null");
    assert_field(out, "reacted", NULL);
    free(out);
    /* Lua's cjson wrote the empty counts as {}; an older message has none: [] either way */
    out = tail("{\"seq_no\":2,\"reactions\":{}}", "u_a");
    assert_field(out, "reactions", "[]");
    assert_field(out, "my_reaction", "null");
    free(out);
    out = tail("{\"seq_no\":2,\"reactions\":{},\"reacted\":{}}", "u_a");
    assert_field(out, "reactions", "[]");
    assert_field(out, "reacted", NULL);
    free(out);
    out = tail("{\"seq_no\":3}", "u_a");
    assert_field(out, "reactions", "[]");
    assert_field(out, "my_reaction", "null");
    free(out);
    out = tail("{}", "u_a");
    assert_string_equal(out, "{\"reactions\":[],\"my_reaction\":null}");
    free(out);
    /* a key spelled with an escape is the same key; a stray my_reaction is replaced; a
     * reaction that is not a string is none */
    out = tail("{\"reactions\":[],\"reac\\u0074ed\":{\"u_a\":\"x\"},\"my_reaction\":\"y\"}", "u_a");
    assert_field(out, "reacted", NULL);
    assert_field(out, "my_reaction", "\"x\"");
    free(out);
    out = tail("{\"reactions\":[],\"reacted\":{\"u_a\":5}}", "u_a");
    assert_field(out, "my_reaction", "null");
    free(out);
    out = tail("{\"reactions\":[],\"reacted\":[\"u_a\"]}", "u_a");
    assert_field(out, "my_reaction", "null");
    free(out);
    /* not a JSON object: nothing appended */
    const char *bad[] = {"", "[]", "null", "\"x\"", "{", "{\"reactions\":[]", "{\"a\":1}x",
                         "{\"reactions\":[]}}", "{\"reactions\":[] ,}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kc_buf_t b = {0};
        kc_buf_puts(&b, "x");
        int rc = api_tail_message(&b, bad[i], strlen(bad[i]), "u_a");
        if (i < 8) { /* the last is shaped like one: copied, as the projector wrote it */
            assert_int_equal(rc, -1);
            assert_string_equal(b.data, "x");
        }
        kc_buf_free(&b);
    }
}

static char *preview(const char *json)
{
    kc_buf_t b = {0};
    assert_int_equal(api_preview_message(&b, json, strlen(json)), 0);
    return kc_buf_steal(&b);
}

/* Search terms: words as quoted prefixes (quotes and backslashes escaped, so nothing typed is
 * tsquery syntax), "phrases" apart, punctuation alone left out, and the bounds. */
static void test_search_terms(void **state)
{
    (void)state;
    api_search_q_t q;
    const char *why = NULL;
    assert_int_equal(api_search_parse("pine  Apple", &q, &why), 0);
    assert_string_equal(q.words.data, "'pine':* & 'Apple':*");
    assert_int_equal(q.nphrases, 0);
    api_search_q_free(&q);
    assert_int_equal(api_search_parse("it's a\\b \"like pine apple\" x&y|!z", &q, &why), 0);
    assert_string_equal(q.words.data, "'it''s':* & 'a\\\\b':* & 'x&y|!z':*");
    assert_int_equal(q.nphrases, 1);
    assert_string_equal(q.phrases[0], "like pine apple");
    api_search_q_free(&q);
    /* an unclosed quote runs to the end; empty and punctuation-only terms go */
    assert_int_equal(api_search_parse("... \"\" \"open phrase", &q, &why), 0);
    assert_int_equal(q.nwords, 0);
    assert_int_equal(q.nphrases, 1);
    assert_string_equal(q.phrases[0], "open phrase");
    api_search_q_free(&q);
    assert_int_equal(api_search_parse("\xc3\xa9t\xc3\xa9", &q, &why), 0); /* été */
    assert_int_equal(q.nwords, 1);
    api_search_q_free(&q);
    const char *nothing[] = {"   ", "... ,,, :*", "\"!!\" & |", "'"};
    for (size_t i = 0; i < sizeof(nothing) / sizeof(*nothing); i++) {
        assert_int_equal(api_search_parse(nothing[i], &q, &why), -1);
        assert_non_null(strstr(why, "no word"));
        api_search_q_free(&q);
    }
    assert_int_equal(api_search_parse("a b c d e f g h i j k l m n o p", &q, &why), 0);
    api_search_q_free(&q);
    assert_int_equal(api_search_parse("a b c d e f g h i j k l m n o p q", &q, &why), -1);
    assert_non_null(strstr(why, "16 words"));
    api_search_q_free(&q);
    assert_int_equal(api_search_parse("\"a\" \"b\" \"c\" \"d\" \"e\"", &q, &why), -1);
    assert_non_null(strstr(why, "4 quoted"));
    api_search_q_free(&q);
}

static void test_search_cursors(void **state)
{
    (void)state;
    api_search_cursor_t c;
    assert_int_equal(api_search_cursor_parse("0.0607927_1733450000123_42_c_ab:c-d.e", &c), 0);
    assert_string_equal(c.rank, "0.0607927");
    assert_int_equal(c.ms, 1733450000123LL);
    assert_int_equal(c.seq, 42);
    assert_string_equal(c.convo, "c_ab:c-d.e");
    assert_int_equal(api_search_cursor_parse("1e-20_0_1_d_x", &c), 0);
    const char *bad[] = {"", "x", "0.1_2_3", "0.1_2_3_", "nan_2_3_c", "inf_2_3_c", "-1_2_3_c",
                         "0.1_-2_3_c", "0.1_2_0_c", "0.1_2_3_c d", "0.1_2_3_c'", "0,1_2_3_c",
                         "0.1 _2_3_c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (api_search_cursor_parse(bad[i], &c) != -1)
            fail_msg("cursor '%s' was taken", bad[i]);
    char big[400];
    memset(big, 'c', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "0.1_2_3_", 8);
    assert_int_equal(api_search_cursor_parse(big, &c), -1);
}

static void test_previews(void **state)
{
    (void)state;
    const char *plain = "{\"seq_no\":1,\"content\":\"\\\"reactions\\\":[]\",\"x\":{\"reacted\":1}}";
    char *out = preview(plain);
    assert_string_equal(out, plain);
    free(out);
    out = preview("{\"seq_no\":1,\"reactions\":[{\"emoji\":\"x\",\"count\":1}],"
                  "\"reacted\":{\"u_a\":\"x\"},\"content\":\"hi\"}");
    assert_string_equal(out, "{\"seq_no\":1,\"content\":\"hi\"}");
    free(out);
    out = preview("{\"reactions\":{},\"my_reaction\":null,\"reactions\":[]}");
    assert_string_equal(out, "{}");
    free(out);
    kc_buf_t b = {0};
    assert_int_equal(api_preview_message(&b, "[1]", 3), -1);
    assert_int_equal(api_preview_message(&b, "{\"reactions\":", 13), -1);
    assert_int_equal(b.len, 0);
    kc_buf_free(&b);
}

/* RFC 3339 times (PATCH /conversations/:id/settings' muted_until); the expected values were
 * computed with Python's datetime.fromisoformat(...).timestamp() * 1000. */
static long long when(const char *s)
{
    long long ms = -12345;
    return api_time_parse(s, &ms) == 0 ? ms : -12345;
}

static void test_times(void **state)
{
    (void)state;
    assert_int_equal(when("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(when("2026-11-27T09:30:00.123Z"), 1795771800123LL);
    assert_int_equal(when("2026-11-27t09:30:00.123z"), 1795771800123LL);
    assert_int_equal(when("2026-11-27T10:30:00.123+01:00"), 1795771800123LL);
    assert_int_equal(when("2026-11-27T04:00:00.123-05:30"), 1795771800123LL);
    assert_int_equal(when("2026-11-27T09:30:00.1Z"), 1795771800100LL);
    assert_int_equal(when("2026-11-27T09:30:00.123456789Z"), 1795771800123LL);
    assert_int_equal(when("2024-02-29T23:59:59Z"), 1709251199000LL);
    assert_int_equal(when("2000-02-29T00:00:00Z"), 951782400000LL);
    assert_int_equal(when("1969-12-31T23:59:59Z"), -1000);
    assert_int_equal(when("9999-12-31T23:59:59Z"), 253402300799000LL);
    assert_int_equal(when("2016-12-31T23:59:60Z"), 1483228800000LL); /* a leap second */
    const char *bad[] = {
        "", "now", "infinity", "tomorrow", "epoch", "2026-11-27", "2026-11-27T09:30:00",
        "2026-11-27 09:30:00Z", "2026-11-27T09:30Z", "2026-11-27T09:30:00.Z",
        "2026-11-27T09:30:00.1234567890Z", "2026-11-27T09:30:00+0100", "2026-11-27T09:30:00+01",
        "2026-11-27T09:30:00+24:00", "2026-11-27T09:30:00+01:60", "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z", "2026-11-31T00:00:00Z", "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "2026-11-27T24:00:00Z",
        "2026-11-27T09:60:00Z", "2026-11-27T09:30:61Z", " 2026-11-27T09:30:00Z",
        "2026-11-27T09:30:00Z ", "2026-11-27T09:30:00ZZ", "+2026-11-27T09:30:00Z",
        "2026-1-27T09:30:00Z", "2026-11-27T09:30:00.12a3Z", "20261127T093000Z",
        "2026-11-27T09:30:00\0Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(when(bad[i]), -12345);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),      cmocka_unit_test(test_member_paths),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_query_values), cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_reaction_paths), cmocka_unit_test(test_reaction_emoji),
        cmocka_unit_test(test_tail_messages), cmocka_unit_test(test_previews),
        cmocka_unit_test(test_search_terms), cmocka_unit_test(test_search_cursors),
        cmocka_unit_test(test_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
