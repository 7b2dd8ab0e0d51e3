/* test_util_buf.c - kc_utf8_valid, kc_strlcpyf, the kc_buf_* buffer and its JSON escaping. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/buf.h"
#include "kchat/util.h"

/* kc_utf8_valid on a string literal (its length without the terminating NUL). */
#define VALID(lit) kc_utf8_valid((lit), sizeof(lit) - 1)

/* Escapes n bytes of s into a fresh buffer and compares with the expected JSON body. */
static void expect_json(const char *s, size_t n, const char *want)
{
    kc_buf_t b = {0};
    kc_buf_json_str(&b, s, n);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    kc_buf_free(&b);
}

#define EXPECT_JSON(lit, want) expect_json((lit), sizeof(lit) - 1, (want))

/* ---- kc_id_direct: the one conversation of a pair ---- */

static void test_direct_ids(void **state)
{
    (void)state;
    char ab[KC_ID_MAX], ba[KC_ID_MAX], other[KC_ID_MAX], small[20];
    assert_int_equal(kc_id_direct(ab, sizeof(ab), "u_alice", 7, "u_bob", 5), 0);
    assert_int_equal(kc_id_direct(ba, sizeof(ba), "u_bob", 5, "u_alice", 7), 0);
    /* the value any implementation of the rule gets (computed with Python's hashlib) */
    assert_string_equal(ab, "d_r3m6fwwd54e4sfey7ow2ahn4j4");
    assert_string_equal(ab, ba);
    assert_true(kc_id_is_direct(ab, strlen(ab)));
    assert_true(kc_id_valid(ab, strlen(ab), KC_ID_MAX));
    /* a shorter id that is the other's prefix sorts first; pairs that concatenate alike
     * stay apart */
    assert_int_equal(kc_id_direct(other, sizeof(other), "u_ab", 4, "u_a", 3), 0);
    assert_string_equal(other, "d_skdlgneylxwwwyh6xaist6glam");
    assert_int_equal(kc_id_direct(ba, sizeof(ba), "u_a", 3, "bu_ab", 5), 0);
    assert_string_not_equal(other, ba);
    assert_int_equal(kc_id_direct(ab, sizeof(ab), "u_x", 3, "u_x", 3), -EINVAL);
    assert_string_equal(ab, "");
    assert_int_equal(kc_id_direct(ab, sizeof(ab), "u x", 3, "u_y", 3), -EINVAL);
    assert_int_equal(kc_id_direct(ab, sizeof(ab), "", 0, "u_y", 3), -EINVAL);
    assert_int_equal(kc_id_direct(small, sizeof(small), "u_a", 3, "u_b", 3), -ENOSPC);
    assert_false(kc_id_is_direct("c_abc", 5));
    assert_false(kc_id_is_direct("d_", 2));
}

/* ---- kc_utf8_valid ---- */

static void test_ids(void **state)
{
    (void)state;
    char a[KC_ID_MAX], b[KC_ID_MAX], small[10];
    assert_int_equal(kc_id_new(a, sizeof(a), "u_"), 0);
    assert_int_equal(kc_id_new(b, sizeof(b), "u_"), 0);
    assert_int_equal(strlen(a), 28);
    assert_memory_equal(a, "u_", 2);
    assert_string_not_equal(a, b);
    assert_true(kc_id_valid(a, strlen(a), 128));
    assert_int_equal(kc_id_new(small, sizeof(small), "u_"), -ENOSPC);
    assert_false(kc_id_valid("", 0, 128));
    assert_false(kc_id_valid("a b", 3, 128));
    assert_false(kc_id_valid("a'--", 4, 128));
    assert_false(kc_id_valid("abcdef", 6, 5));
    assert_true(kc_id_valid("c_Ab.9:x-", 9, 128));
    char u[37];
    kc_uuid4(u);
    assert_int_equal(strlen(u), 36);
    assert_int_equal(u[14], '4');
    assert_true(strchr("89ab", u[19]) != NULL); /* the RFC 4122 variant */
    assert_true(u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-');
    /* ids drawn across many refills of the random pool stay distinct */
    static char seen[200][37];
    for (int i = 0; i < 200; i++) {
        kc_uuid4(seen[i]);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(seen[i], seen[k]);
    }
}

static void test_utf8_ascii(void **state)
{
    (void)state;
    assert_true(kc_utf8_valid("", 0));
    assert_true(VALID("hello, world"));
    assert_true(VALID("\x01\x1f\x7f"));
    assert_true(VALID("a\0b")); /* NUL is U+0000, well-formed */
    /* the length is honoured: the invalid byte after it is not looked at */
    assert_true(kc_utf8_valid("ab\xff", 2));
}

static void test_utf8_multibyte_valid(void **state)
{
    (void)state;
    assert_true(VALID("\xc2\x80"));         /* U+0080, smallest 2-byte */
    assert_true(VALID("\xdf\xbf"));         /* U+07FF, largest 2-byte */
    assert_true(VALID("\xe0\xa0\x80"));     /* U+0800, smallest 3-byte */
    assert_true(VALID("\xed\x9f\xbf"));     /* U+D7FF, just below the surrogates */
    assert_true(VALID("\xee\x80\x80"));     /* U+E000, just above them */
    assert_true(VALID("\xef\xbf\xbf"));     /* U+FFFF */
    assert_true(VALID("\xf0\x90\x80\x80")); /* U+10000, smallest 4-byte */
    assert_true(VALID("\xf4\x8f\xbf\xbf")); /* U+10FFFF, the last code point */
    assert_true(VALID("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80!")); /* mixed text */
}

static void test_utf8_overlong_rejected(void **state)
{
    (void)state;
    assert_false(VALID("\xc0\x80"));         /* U+0000 in 2 bytes */
    assert_false(VALID("\xc1\xbf"));         /* U+007F in 2 bytes */
    assert_false(VALID("\xe0\x80\x80"));     /* U+0000 in 3 bytes */
    assert_false(VALID("\xe0\x9f\xbf"));     /* U+07FF in 3 bytes */
    assert_false(VALID("\xf0\x80\x80\x80")); /* U+0000 in 4 bytes */
    assert_false(VALID("\xf0\x8f\xbf\xbf")); /* U+FFFF in 4 bytes */
}

static void test_utf8_surrogates_rejected(void **state)
{
    (void)state;
    assert_false(VALID("\xed\xa0\x80"));             /* U+D800 */
    assert_false(VALID("\xed\xbf\xbf"));             /* U+DFFF */
    assert_false(VALID("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair for U+1F600 */
}

static void test_utf8_above_max_rejected(void **state)
{
    (void)state;
    assert_false(VALID("\xf4\x90\x80\x80")); /* U+110000 */
    assert_false(VALID("\xf5\x80\x80\x80"));
    assert_false(VALID("\xf7\xbf\xbf\xbf"));
    assert_false(VALID("\xf8\x88\x80\x80\x80")); /* old 5-byte form */
    assert_false(VALID("\xfc\x84\x80\x80\x80\x80"));
    assert_false(VALID("\xfe"));
    assert_false(VALID("\xff"));
}

static void test_utf8_truncated_rejected(void **state)
{
    (void)state;
    assert_false(VALID("\xc3"));
    assert_false(VALID("\xe2\x82"));
    assert_false(VALID("\xf0\x9f\x98"));
    assert_false(VALID("abc\xe2\x82"));
    /* a full sequence cut by the length argument */
    assert_false(kc_utf8_valid("\xe2\x82\xac", 2));
    /* a lead byte followed by ASCII instead of continuation bytes */
    assert_false(VALID("\xc3\x28"));
    assert_false(VALID("\xe2\x28\xa1"));
    assert_false(VALID("\xf0\x28\x8c\xbc"));
    assert_false(VALID("\xf0\x9f\x98!"));
}

static void test_utf8_lone_continuation_rejected(void **state)
{
    (void)state;
    assert_false(VALID("\x80"));
    assert_false(VALID("\xbf"));
    assert_false(VALID("a\x80z"));
    assert_false(VALID("\xc3\xa9\xa9")); /* one continuation byte too many */
}

/* ---- kc_strlcpyf and allocation helpers ---- */

static void test_strlcpyf_fits(void **state)
{
    (void)state;
    char dst[8];
    assert_int_equal(kc_strlcpyf(dst, sizeof(dst), "%s%d", "ab", 12), 0);
    assert_string_equal(dst, "ab12");
    /* exactly fills the buffer, terminator included */
    assert_int_equal(kc_strlcpyf(dst, sizeof(dst), "%s", "1234567"), 0);
    assert_string_equal(dst, "1234567");
}

static void test_strlcpyf_truncation_is_enospc(void **state)
{
    (void)state;
    char dst[8];
    memset(dst, 'X', sizeof(dst));
    assert_int_equal(kc_strlcpyf(dst, sizeof(dst), "%s", "12345678"), -ENOSPC);
    assert_string_equal(dst, "1234567");
    assert_int_equal(kc_strlcpyf(dst, 4, "value=%d", 42), -ENOSPC);
    assert_string_equal(dst, "val");
    assert_int_equal(kc_strlcpyf(dst, 1, "x"), -ENOSPC);
    assert_string_equal(dst, "");
}

static void test_xstrndup(void **state)
{
    (void)state;
    char *p = kc_xstrndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = kc_xstrndup("ab", 10);
    assert_string_equal(p, "ab");
    free(p);
    static const int three[] = {1, 2, 3};
    assert_int_equal(KC_ARRAY_LEN(three), 3);
}

/* ---- kc_buf ---- */

static void test_buf_zero_init_and_append(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_append(&b, "", 0);
    assert_non_null(b.data); /* always a C string once touched */
    assert_string_equal(b.data, "");
    assert_int_equal(b.len, 0);

    kc_buf_append(&b, "ab\0cd", 5); /* binary safe */
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "ab\0cd", 6);
    kc_buf_puts(&b, "ef");
    kc_buf_putc(&b, 'g');
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "ab\0cdefg", 9);
    assert_true(b.cap > b.len);
    kc_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    kc_buf_free(&b); /* freeing an empty buffer again is harmless */
}

/* Reserving space in an empty buffer already gives a C string (the header promises one
 * whenever data is set). A freed chunk is dirtied first so that the plain build, whose
 * allocator would likely hand it back, sees garbage as ASan does. */
static void test_buf_reserve_terminates(void **state)
{
    (void)state;
    char *dirty = malloc(64);
    assert_non_null(dirty);
    memset(dirty, 'X', 64);
    free(dirty);
    kc_buf_t b = {0};
    kc_buf_reserve(&b, 10);
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    assert_true(b.cap >= 11);
    assert_int_equal(b.data[0], '\0');
    kc_buf_free(&b);

    /* the same through kc_buf_json_str of nothing */
    dirty = malloc(64);
    assert_non_null(dirty);
    memset(dirty, 'X', 64);
    free(dirty);
    kc_buf_json_str(&b, "", 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    kc_buf_free(&b);
}

static void test_buf_append_grows(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    char expect[5000];
    for (size_t i = 0; i < 1000; i++) {
        char c = (char)('a' + (i % 26));
        kc_buf_putc(&b, c);
        expect[i] = c;
    }
    expect[1000] = '\0';
    assert_int_equal(b.len, 1000);
    assert_string_equal(b.data, expect);
    assert_true(b.cap >= b.len + 1);
    kc_buf_free(&b);
}

static void test_buf_printf_grows_past_64(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_printf(&b, "%s", "short");
    assert_string_equal(b.data, "short");

    char big[201];
    memset(big, 'z', 200);
    big[200] = '\0';
    kc_buf_printf(&b, "[%s|%d]", big, 12345); /* needs several doublings past 64 */
    assert_int_equal(b.len, 5 + 1 + 200 + 1 + 5 + 1);
    assert_true(b.cap >= b.len + 1);
    assert_memory_equal(b.data, "short[", 6);
    assert_memory_equal(b.data + 6, big, 200);
    assert_string_equal(b.data + 206, "|12345]");

    /* a result of exactly the remaining space, then many small appends */
    kc_buf_reset(&b);
    for (int i = 0; i < 100; i++)
        kc_buf_printf(&b, "%02d,", i);
    assert_int_equal(b.len, 300);
    assert_memory_equal(b.data, "00,01,02,", 9);
    assert_string_equal(b.data + 297, "99,");
    kc_buf_free(&b);
}

static void test_buf_steal(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "owned by the caller now");
    char *p = kc_buf_steal(&b);
    assert_string_equal(p, "owned by the caller now");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(p);

    /* stealing from an empty buffer still gives a string the caller can free */
    p = kc_buf_steal(&b);
    assert_non_null(p);
    assert_string_equal(p, "");
    free(p);

    /* the buffer is usable after a steal */
    kc_buf_puts(&b, "again");
    assert_string_equal(b.data, "again");
    kc_buf_free(&b);
}

static void test_buf_reset_keeps_capacity(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_reset(&b); /* reset of an untouched buffer */
    assert_int_equal(b.len, 0);
    for (int i = 0; i < 50; i++)
        kc_buf_puts(&b, "0123456789");
    size_t cap = b.cap;
    kc_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, cap);
    kc_buf_puts(&b, "x");
    assert_string_equal(b.data, "x");
    assert_int_equal(b.cap, cap);
    kc_buf_free(&b);
}

/* ---- kc_buf_json_str ---- */

static void test_json_str_plain_and_quotes(void **state)
{
    (void)state;
    EXPECT_JSON("", "");
    EXPECT_JSON("plain text", "plain text");
    EXPECT_JSON("say \"hi\"", "say \\\"hi\\\"");
    EXPECT_JSON("C:\\dir\\", "C:\\\\dir\\\\");
    EXPECT_JSON("/ stays", "/ stays");
    /* only n bytes are read */
    expect_json("abcdef", 3, "abc");
}

static void test_json_str_control_chars(void **state)
{
    (void)state;
    EXPECT_JSON("a\nb\rc\td", "a\\nb\\rc\\td");
    EXPECT_JSON("\x01", "\\u0001");
    EXPECT_JSON("\x08\x0c", "\\u0008\\u000c");
    EXPECT_JSON("\x1f", "\\u001f");
    EXPECT_JSON("\x1b[31m", "\\u001b[31m");
    expect_json("a\0b", 3, "a\\u0000b"); /* an embedded NUL is escaped, not a terminator */
    EXPECT_JSON("\x7f", "\x7f");         /* DEL needs no escape in JSON */
}

static void test_json_str_invalid_utf8_becomes_fffd(void **state)
{
    (void)state;
    EXPECT_JSON("\xff", "\\ufffd");
    EXPECT_JSON("a\x80z", "a\\ufffdz");
    EXPECT_JSON("a\xc3", "a\\ufffd");                                /* truncated at the end */
    EXPECT_JSON("\xe2\x82z", "\\ufffd\\ufffdz");                     /* truncated before ASCII */
    EXPECT_JSON("\xc0\x80", "\\ufffd\\ufffd");                       /* overlong */
    EXPECT_JSON("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");            /* surrogate */
    EXPECT_JSON("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"); /* > U+10FFFF */
    /* a valid sequence right after an invalid byte is kept */
    EXPECT_JSON("\xff\xc3\xa9", "\\ufffd\xc3\xa9");
}

static void test_json_str_valid_multibyte_kept(void **state)
{
    (void)state;
    EXPECT_JSON("caf\xc3\xa9", "caf\xc3\xa9");
    EXPECT_JSON("\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad\xe6\x96\x87");
    EXPECT_JSON("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
}

static void test_json_str_appends(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"k\":\"");
    kc_buf_json_str(&b, "v\"", 2);
    kc_buf_puts(&b, "\"}");
    assert_string_equal(b.data, "{\"k\":\"v\\\"\"}");
    kc_buf_free(&b);
}

/* Every byte from 0x01 to 0x7f, escaped and quoted, is JSON that decodes to the input. */
static void test_json_str_roundtrips_through_cjson(void **state)
{
    (void)state;
    char in[128 + 16];
    size_t n = 0;
    for (int c = 1; c < 0x80; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    n += 6;
    in[n] = '\0';

    kc_buf_t b = {0};
    kc_buf_putc(&b, '"');
    kc_buf_json_str(&b, in, n);
    kc_buf_putc(&b, '"');
    assert_true(kc_utf8_valid(b.data, b.len));
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    assert_non_null(j);
    assert_true(cJSON_IsString(j));
    assert_string_equal(j->valuestring, in);
    cJSON_Delete(j);
    kc_buf_free(&b);
}

static kc_json_status_t whole(const char *s)
{
    cJSON *v = NULL;
    kc_json_status_t st = kc_json_parse_whole(s, strlen(s), &v);
    if (st == KC_JSON_OK)
        assert_non_null(v);
    else
        assert_null(v);
    cJSON_Delete(v);
    return st;
}

static void test_json_read_whole(void **state)
{
    (void)state;
    assert_int_equal(whole("{\"a\":\"b\"} \r\n\t"), KC_JSON_OK);
    assert_int_equal(whole("[1]"), KC_JSON_OK);
    assert_int_equal(whole(""), KC_JSON_BAD);
    assert_int_equal(whole("{\"a\":"), KC_JSON_BAD);
    assert_int_equal(whole("{} {}"), KC_JSON_TRAILING);
    assert_int_equal(whole("{}x"), KC_JSON_TRAILING);
    assert_int_equal(whole("{\"a\":\"x\\u0000y\"}"), KC_JSON_NUL);
    /* an escaped backslash, then the text u0000 */
    assert_int_equal(whole("{\"a\":\"x\\\\u0000y\"}"), KC_JSON_OK);
    assert_int_equal(whole("{\"a\":\"x\\\\\\u0000\"}"), KC_JSON_NUL);
    /* only the length given is read */
    cJSON *v = NULL;
    assert_int_equal(kc_json_parse_whole("{}garbage", 2, &v), KC_JSON_OK);
    cJSON_Delete(v);
}

/* Found by fuzz/fuzz_gw_frame: cJSON took raw control characters, NUL included, for white
 * space between tokens and copied them into strings, where a NUL byte cut the string short
 * ("ab\0cd" was read as "ab"). The RFC allows none outside an escape. */
static void test_json_raw_control_characters(void **state)
{
    (void)state;
    static const char in_string[] = "{\"a\":\"ab\0cd\"}";
    static const char between[] = "{\"a\"\0:\"b\"}";
    static const char trailing[] = "{}\0";
    cJSON *v = NULL;
    assert_int_equal(kc_json_parse_whole(in_string, sizeof(in_string) - 1, &v), KC_JSON_BAD);
    assert_null(v);
    assert_int_equal(kc_json_parse_whole(between, sizeof(between) - 1, &v), KC_JSON_BAD);
    assert_int_equal(kc_json_parse_whole(trailing, sizeof(trailing) - 1, &v), KC_JSON_BAD);
    assert_int_equal(whole("{\"a\":\"x\x01y\"}"), KC_JSON_BAD);
    assert_int_equal(whole("{\"a\":\x1f" "1}"), KC_JSON_BAD);
    /* the white space the RFC allows, and the escapes */
    assert_int_equal(whole("\t{\"a\"\r\n:\"\\u0001\\t\"}\n"), KC_JSON_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_read_whole),
        cmocka_unit_test(test_json_raw_control_characters),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_direct_ids),
        cmocka_unit_test(test_utf8_ascii),
        cmocka_unit_test(test_utf8_multibyte_valid),
        cmocka_unit_test(test_utf8_overlong_rejected),
        cmocka_unit_test(test_utf8_surrogates_rejected),
        cmocka_unit_test(test_utf8_above_max_rejected),
        cmocka_unit_test(test_utf8_truncated_rejected),
        cmocka_unit_test(test_utf8_lone_continuation_rejected),
        cmocka_unit_test(test_strlcpyf_fits),
        cmocka_unit_test(test_strlcpyf_truncation_is_enospc),
        cmocka_unit_test(test_xstrndup),
        cmocka_unit_test(test_buf_zero_init_and_append),
        cmocka_unit_test(test_buf_reserve_terminates),
        cmocka_unit_test(test_buf_append_grows),
        cmocka_unit_test(test_buf_printf_grows_past_64),
        cmocka_unit_test(test_buf_steal),
        cmocka_unit_test(test_buf_reset_keeps_capacity),
        cmocka_unit_test(test_json_str_plain_and_quotes),
        cmocka_unit_test(test_json_str_control_chars),
        cmocka_unit_test(test_json_str_invalid_utf8_becomes_fffd),
        cmocka_unit_test(test_json_str_valid_multibyte_kept),
        cmocka_unit_test(test_json_str_appends),
        cmocka_unit_test(test_json_str_roundtrips_through_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
