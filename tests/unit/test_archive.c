/* test_archive.c - the names of the archive's objects (kchat/archive.h): the folder and object
 * names kc_archive_dir and kc_archive_name write, kc_archive_parse reading them back, and what
 * each of them refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/archive.h"
#include "kchat/log.h"

static void test_dir(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kc_archive_dir(out, sizeof(out), "archive/", "chat.events", 3), 0);
    assert_string_equal(out, "archive/chat.events/00003/");
    assert_int_equal(kc_archive_dir(out, sizeof(out), "", "chat.audit", 0), 0);
    assert_string_equal(out, "chat.audit/00000/");
    assert_int_equal(kc_archive_dir(out, sizeof(out), "a/b/", "t", KC_ARCHIVE_MAX_PARTITION), 0);
    assert_string_equal(out, "a/b/t/99999/");
}

static void test_dir_refuses(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kc_archive_dir(out, sizeof(out), "archive/", "chat.events", -1), -1);
    assert_int_equal(
        kc_archive_dir(out, sizeof(out), "archive/", "chat.events", KC_ARCHIVE_MAX_PARTITION + 1),
        -1);
    /* "archive/chat.events/00003/" is 26 characters: 27 bytes with its NUL */
    char small[27];
    assert_int_equal(kc_archive_dir(small, 26, "archive/", "chat.events", 3), -1);
    assert_int_equal(kc_archive_dir(small, sizeof(small), "archive/", "chat.events", 3), 0);
    assert_string_equal(small, "archive/chat.events/00003/");
}

static void test_name(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kc_archive_name(out, sizeof(out), "archive/", "chat.events", 3, 12000,
                                     12999),
                     0);
    assert_string_equal(
        out, "archive/chat.events/00003/00000000000000012000-00000000000000012999.avro");
    assert_int_equal(kc_archive_name(out, sizeof(out), "", "t", 0, 0, 0), 0);
    assert_string_equal(out, "t/00000/00000000000000000000-00000000000000000000.avro");
    assert_int_equal(kc_archive_name(out, sizeof(out), "p/", "t", 1, 0, INT64_MAX), 0);
    assert_string_equal(out, "p/t/00001/00000000000000000000-09223372036854775807.avro");
}

static void test_name_refuses(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(kc_archive_name(out, sizeof(out), "a/", "t", 0, 5, 4), -1);
    assert_int_equal(kc_archive_name(out, sizeof(out), "a/", "t", 0, -1, 4), -1);
    assert_int_equal(kc_archive_name(out, sizeof(out), "a/", "t", -1, 0, 4), -1);
    assert_int_equal(kc_archive_name(out, sizeof(out), "a/", "t", KC_ARCHIVE_MAX_PARTITION + 1,
                                     0, 4),
                     -1);
    /* the folder fits, the name does not */
    assert_int_equal(kc_archive_name(out, 20, "a/", "t", 0, 0, 4), -1);
    /* exactly the room it needs: "a/t/00000/" (10) + 46 + NUL */
    char exact[57];
    assert_int_equal(kc_archive_name(exact, sizeof(exact) - 1, "a/", "t", 0, 0, 4), -1);
    assert_int_equal(kc_archive_name(exact, sizeof(exact), "a/", "t", 0, 0, 4), 0);
}

static void test_parse_round_trip(void **state)
{
    (void)state;
    /* kc_archive_parse reads at most 9223372036854775799 (its overflow check is short of
     * INT64_MAX by a few): offsets never come near either. */
    const int64_t big = 9223372036854775799LL;
    const int64_t cases[][2] = {{0, 0}, {0, 999}, {12000, 12999}, {1, big}, {big, big}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        assert_int_equal(kc_archive_name(out, sizeof(out), "archive/", "chat.events", 7,
                                         cases[i][0], cases[i][1]),
                         0);
        int64_t first = -1, last = -1;
        /* the whole key, and the name alone */
        assert_int_equal(kc_archive_parse(out, &first, &last), 0);
        assert_true(first == cases[i][0] && last == cases[i][1]);
        first = last = -1;
        assert_int_equal(kc_archive_parse(strrchr(out, '/') + 1, &first, &last), 0);
        assert_true(first == cases[i][0] && last == cases[i][1]);
    }
}

static void test_parse_refuses(void **state)
{
    (void)state;
    int64_t first, last;
    const char *bad[] = {
        /* wrong length: 19 and 21 digits, nothing */
        "0000000000000000000-00000000000000000001.avro",
        "00000000000000000000-0000000000000000001.avro",
        "000000000000000000000-00000000000000000001.avro",
        "00000000000000000000-000000000000000000001.avro",
        "",
        "archive/chat.events/00000/",
        /* not digits */
        "0000000000000000000a-00000000000000000001.avro",
        "00000000000000000000-0000000000000000000x.avro",
        "-0000000000000000001-00000000000000000001.avro",
        "+0000000000000000001-00000000000000000001.avro",
        " 0000000000000000001-00000000000000000001.avro",
        /* no '-' between them */
        "00000000000000000000_00000000000000000001.avro",
        /* last < first */
        "00000000000000000002-00000000000000000001.avro",
        /* not ".avro" */
        "00000000000000000000-00000000000000000001.avrx",
        "00000000000000000000-00000000000000000001.json",
        "00000000000000000000-00000000000000000001avro.",
        "00000000000000000000-00000000000000000001",
        "00000000000000000000-00000000000000000001.avro.tmp",
        /* beyond an int64: 20 digits that overflow */
        "99999999999999999999-99999999999999999999.avro",
        "00000000000000000000-09223372036854775808.avro",
        /* a 21-digit number in a name of the right length */
        "000000000000000000001-0000000000000000001.avro",
        "100000000000000000000-000000000000000000.avro",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (kc_archive_parse(bad[i], &first, &last) != -1)
            fail_msg("accepted '%s'", bad[i]);
    }
    /* a large offset is accepted */
    assert_int_equal(kc_archive_parse("p/t/00000/00000000000000000000-09223372036854775799.avro",
                                      &first, &last),
                     0);
    assert_true(first == 0 && last == 9223372036854775799LL);
}

int main(void)
{
    kc_log_init("test_archive", KC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dir),
        cmocka_unit_test(test_dir_refuses),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_name_refuses),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
