/* The API's reading of a request (api/request.c): route templates, query values, integers,
 * the JSON body and member lists, without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),      cmocka_unit_test(test_member_paths),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_query_values), cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
