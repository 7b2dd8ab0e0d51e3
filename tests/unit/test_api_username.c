/* Usernames (api/username.c): the forms that must be one username share a key, and the
 * characters that let one name pass for another are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "username.h"

static void key_of(const char *in, const char *want_display, const char *want_key)
{
    char d[API_USERNAME_MAX + 1], k[API_USERNAME_KEY_MAX + 1];
    const char *why = NULL;
    if (api_username_prepare(in, d, k, &why) != 0)
        fail_msg("'%s' refused: %s", in, why);
    assert_string_equal(d, want_display);
    assert_string_equal(k, want_key);
}

static void refused(const char *in, const char *because)
{
    char d[API_USERNAME_MAX + 1], k[API_USERNAME_KEY_MAX + 1];
    const char *why = NULL;
    if (api_username_prepare(in, d, k, &why) == 0)
        fail_msg("'%s' accepted as '%s'", in, d);
    if (!strstr(why, because))
        fail_msg("'%s': '%s' lacks '%s'", in, why, because);
}

static void test_look_alikes_share_a_key(void **state)
{
    (void)state;
    key_of("CaseX", "CaseX", "casex");
    key_of("casex", "casex", "casex");
    key_of("CASEX", "CASEX", "casex");
    /* full-width letters are their ordinary forms */
    key_of("\xef\xbc\xa3\xef\xbc\xa1\xef\xbc\xb3\xef\xbc\xa5\xef\xbc\xb8", "CASEX", "casex");
    /* é as one code point (NFC) and as e + U+0301 (NFD) */
    key_of("Ren\xc3\xa9", "Ren\xc3\xa9", "ren\xc3\xa9");
    key_of("Rene\xcc\x81", "Ren\xc3\xa9", "ren\xc3\xa9");
    /* full case folding: ß and SS are one name */
    key_of("Stra\xc3\x9f" "e", "Stra\xc3\x9f" "e", "strasse");
    key_of("STRASSE", "STRASSE", "strasse");
    /* other scripts, digits of other scripts, the allowed ASCII punctuation */
    key_of("\xd0\x9c\xd0\xb0\xd1\x80\xd0\xb8\xd1\x8f", "\xd0\x9c\xd0\xb0\xd1\x80\xd0\xb8\xd1\x8f",
           "\xd0\xbc\xd0\xb0\xd1\x80\xd0\xb8\xd1\x8f");
    key_of("\xe5\xb1\xb1\xe7\x94\xb0_2", "\xe5\xb1\xb1\xe7\x94\xb0_2", "\xe5\xb1\xb1\xe7\x94\xb0_2");
    key_of("ann.b-c_9", "ann.b-c_9", "ann.b-c_9");
    /* right to left alone is fine */
    key_of("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
           "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
}

static void test_what_could_pass_for_another_is_refused(void **state)
{
    (void)state;
    refused("", "empty");
    refused("ann bob", "ASCII");
    refused("ann@x", "ASCII");
    refused("zero\xe2\x80\x8bwidth", "invisible");           /* U+200B */
    refused("ann\xe2\x80\x8d", "invisible");                 /* U+200D zero-width joiner */
    refused("\xef\xbb\xbf" "ann", "invisible");              /* U+FEFF byte-order mark */
    refused("ann\xe2\x80\xae" "nib", "invisible");           /* U+202E right-to-left override */
    refused("a\xe2\x81\xa6" "b", "invisible");               /* U+2066 isolate */
    refused("\xcc\x81\xcc\x81", "combining mark");           /* only combining marks */
    refused("\xcc\x81" "ann", "combining mark");
    refused("ann\xc2\xa0" "b", "letters, marks and digits"); /* no-break space */
    refused("ann\xe2\x98\x83", "letters, marks and digits"); /* a snowman */
    refused("ann\xc2\x85", "letters, marks and digits");     /* a C1 control */
    refused("ann\xee\x80\x80", "letters, marks and digits"); /* private use */
    refused("abc\xd7\xa9", "right to left");                 /* Latin and Hebrew mixed */
    refused("\xff\xfe", "UTF-8");
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    refused(long_name, "64 bytes");
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    key_of(long_name, long_name, long_name);
}

/* ---- display names and lookup keys ---- */

static void display_of(const char *in, const char *want_display, const char *want_key)
{
    char d[API_DISPLAY_NAME_MAX + 1], k[API_DISPLAY_KEY_MAX + 1];
    const char *why = NULL;
    if (api_display_name_prepare(in, d, k, &why) != 0)
        fail_msg("'%s' refused: %s", in, why);
    assert_string_equal(d, want_display);
    assert_string_equal(k, want_key);
}

static void display_refused(const char *in, const char *because)
{
    char d[API_DISPLAY_NAME_MAX + 1], k[API_DISPLAY_KEY_MAX + 1];
    const char *why = NULL;
    if (api_display_name_prepare(in, d, k, &why) == 0)
        fail_msg("'%s' accepted as '%s'", in, d);
    if (!strstr(why, because))
        fail_msg("'%s': '%s' lacks '%s'", in, why, because);
}

static void test_display_names(void **state)
{
    (void)state;
    display_of("Ann Smith", "Ann Smith", "ann smith");
    /* white space collapsed and trimmed: tabs, no-break and ideographic spaces included */
    display_of("  Ann \t\xc2\xa0 Smith\xe3\x80\x80 ", "Ann Smith", "ann smith");
    display_of("", "", "");
    display_of("   ", "", "");
    /* punctuation, symbols and other scripts are a name's own */
    display_of("Zo\xc3\xab (she/her) \xf0\x9f\x8c\xb2", "Zo\xc3\xab (she/her) \xf0\x9f\x8c\xb2",
               "zo\xc3\xab (she/her) \xf0\x9f\x8c\xb2");
    display_of("Stra\xc3\x9f" "e", "Stra\xc3\x9f" "e", "strasse"); /* folded, not lowered */
    /* NFD spelled as NFC; full width as ordinary */
    display_of("Zoe\xcc\x88", "Zo\xc3\xab", "zo\xc3\xab");
    display_of("\xef\xbc\xa1nn", "Ann", "ann");
    display_refused("Ann\nSmith", "control");
    display_refused("Ann\x7f", "control");
    display_refused("Ann\xe2\x80\xa8Smith", "line breaks");          /* U+2028 */
    display_refused("Ann\xe2\x80\xae" "evil", "direction");            /* U+202E */
    display_refused("A\xe2\x80\x8b" "nn", "invisible");                /* U+200B */
    display_refused("\xee\x80\x80", "private-use");                    /* U+E000 */
    display_refused("\xff", "UTF-8");
    char longer[200];
    memset(longer, 'a', 129);
    longer[129] = '\0';
    display_refused(longer, "128 bytes");
    longer[128] = '\0';
    display_of(longer, longer, longer);
}

static void test_lookup_keys(void **state)
{
    (void)state;
    char k[API_DISPLAY_KEY_MAX + 1];
    const char *why = NULL;
    assert_int_equal(api_lookup_key("AnN", k, &why), 0);
    assert_string_equal(k, "ann");
    assert_int_equal(api_lookup_key("\xef\xbc\xa1", k, &why), 0); /* full-width A */
    assert_string_equal(k, "a");
    assert_int_equal(api_lookup_key("ann s", k, &why), 0); /* spaces kept: display names */
    assert_string_equal(k, "ann s");
    assert_int_equal(api_lookup_key("", k, &why), -1);
    assert_non_null(strstr(why, "1 to 64"));
    char longer[80];
    memset(longer, 'a', 65);
    longer[65] = '\0';
    assert_int_equal(api_lookup_key(longer, k, &why), -1);
    assert_int_equal(api_lookup_key("\xc3", k, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_look_alikes_share_a_key),
        cmocka_unit_test(test_what_could_pass_for_another_is_refused),
        cmocka_unit_test(test_display_names),
        cmocka_unit_test(test_lookup_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
