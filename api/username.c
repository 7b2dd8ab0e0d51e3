/* username.c - see username.h. utf8proc (Debian's libutf8proc) supplies the Unicode data:
 * categories, bidi classes, decompositions, NFC and case folding; keeping those tables in
 * kchat would mean following every Unicode release by hand. */
#include "username.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define IN_MAX 1024 /* bytes read at most: a longer name is refused before any work */

static int refuse(const char **why, const char *msg)
{
    *why = msg;
    return -1;
}

/* Full-width and half-width characters as their ordinary forms (PRECIS width mapping);
 * every other code point as it is. Returns a malloc'd UTF-8 string, or NULL. */
static char *width_map(const char *in, size_t n)
{
    char *out = malloc(n * 2 + 1); /* a width mapping never more than doubles a UTF-8 length */
    if (!out)
        return NULL;
    size_t o = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)in;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
        if (len <= 0) {
            free(out);
            return NULL;
        }
        i += (size_t)len;
        const utf8proc_property_t *prop = utf8proc_get_property(c);
        if (prop->decomp_type == UTF8PROC_DECOMP_TYPE_WIDE ||
            prop->decomp_type == UTF8PROC_DECOMP_TYPE_NARROW) {
            utf8proc_int32_t d[4];
            int last = 0;
            utf8proc_ssize_t k = utf8proc_decompose_char(
                c, d, 4, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &last);
            if (k == 1)
                c = d[0];
        }
        o += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)out + o);
    }
    out[o] = '\0';
    return out;
}

/* Copies the display form d (unless display is NULL) and the key k out when rc is 0; frees
 * both; returns rc. */
static int take(char *d, char *k, char *display, char *key, int rc)
{
    if (rc == 0) {
        if (display)
            memcpy(display, d, strlen(d) + 1);
        memcpy(key, k, strlen(k) + 1);
    }
    free(d);
    free(k);
    return rc;
}

/* The rules of the display form's code points; 0 or -1 with why. */
static int check(const char *s, const char **why)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t n = strlen(s);
    int ltr = 0, rtl = 0, first = 1;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
        if (len <= 0)
            return refuse(why, "a username must be UTF-8 text");
        i += (size_t)len;
        const utf8proc_property_t *prop = utf8proc_get_property(c);
        utf8proc_category_t cat = (utf8proc_category_t)prop->category;
        if (c < 0x80) {
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-'))
                return refuse(why, "from ASCII, a username takes letters, digits, '_', '.' "
                                   "and '-' only");
        } else if (prop->ignorable || cat == UTF8PROC_CATEGORY_CF) {
            return refuse(why, "a username may not hold invisible or direction-changing "
                               "characters");
        } else if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC ||
                   cat == UTF8PROC_CATEGORY_ME) {
            if (first)
                return refuse(why, "a username may not start with a combining mark");
        } else if (!(cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) &&
                   cat != UTF8PROC_CATEGORY_ND) {
            return refuse(why, "a username takes letters, marks and digits only (no spaces, "
                               "symbols, punctuation or controls)");
        }
        if (prop->bidi_class == UTF8PROC_BIDI_CLASS_L)
            ltr = 1;
        else if (prop->bidi_class == UTF8PROC_BIDI_CLASS_R ||
                 prop->bidi_class == UTF8PROC_BIDI_CLASS_AL)
            rtl = 1;
        first = 0;
    }
    if (ltr && rtl)
        return refuse(why, "a username may not mix letters written right to left with "
                           "letters written left to right");
    return 0;
}

/* in's width-mapped, NFC form (with white space collapsed and trimmed when collapse) and its
 * case-folded key; each malloc'd. 0, FOLD_NOT_UTF8 or FOLD_UNASSIGNED. */
enum { FOLD_NOT_UTF8 = -1, FOLD_UNASSIGNED = -2 };
static int fold(const char *in, size_t n, int collapse, char **display, char **key)
{
    *display = *key = NULL;
    char *wide = width_map(in, n);
    if (!wide)
        return FOLD_NOT_UTF8;
    utf8proc_uint8_t *nfc = NULL, *folded = NULL;
    int rc = FOLD_UNASSIGNED;
    if (utf8proc_map((const utf8proc_uint8_t *)wide, 0, &nfc,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                         UTF8PROC_REJECTNA) < 0)
        goto out;
    if (collapse) { /* runs of white space (any Zs, tabs included) as one space, trimmed */
        const utf8proc_uint8_t *p = nfc;
        size_t len = strlen((const char *)nfc), o = 0;
        int space = 0;
        for (size_t i = 0; i < len;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
            if (k <= 0) {
                rc = FOLD_NOT_UTF8;
                goto out;
            }
            int ws = c == '\t' || utf8proc_category(c) == UTF8PROC_CATEGORY_ZS;
            if (ws) {
                space = o > 0;
            } else {
                if (space)
                    nfc[o++] = ' ';
                space = 0;
                memmove(nfc + o, p + i, (size_t)k);
                o += (size_t)k;
            }
            i += (size_t)k;
        }
        nfc[o] = '\0';
    }
    if (utf8proc_map(nfc, 0, &folded,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                         UTF8PROC_CASEFOLD) < 0)
        goto out;
    *display = (char *)nfc;
    *key = (char *)folded;
    nfc = folded = NULL;
    rc = 0;
out:
    free(wide);
    free(nfc);
    free(folded);
    return rc;
}

int api_username_prepare(const char *in, char display[API_USERNAME_MAX + 1],
                         char key[API_USERNAME_KEY_MAX + 1], const char **why)
{
    size_t n = strnlen(in, IN_MAX + 1);
    if (n == 0)
        return refuse(why, "a username may not be empty");
    if (n > IN_MAX)
        return refuse(why, "a username is at most 64 bytes");
    char *d = NULL, *k = NULL;
    int rc = fold(in, n, 0, &d, &k);
    if (rc == FOLD_NOT_UTF8)
        return refuse(why, "a username must be UTF-8 text");
    if (rc != 0)
        return refuse(why, "a username must be UTF-8 text without unassigned characters");
    if (strlen(d) > API_USERNAME_MAX)
        rc = refuse(why, "a username is at most 64 bytes");
    else if ((rc = check(d, why)) == 0 && strlen(k) > API_USERNAME_KEY_MAX)
        rc = refuse(why, "a username must be UTF-8 text without unassigned characters");
    return take(d, k, display, key, rc);
}

/* ---- display names and lookups ---- */

/* The code points a display name may hold; 0 or -1 with why. */
static int check_display(const char *s, const char **why)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
        if (len <= 0)
            return refuse(why, "a display name must be UTF-8 text");
        i += (size_t)len;
        const utf8proc_property_t *prop = utf8proc_get_property(c);
        utf8proc_category_t cat = (utf8proc_category_t)prop->category;
        if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_ZL ||
            cat == UTF8PROC_CATEGORY_ZP)
            return refuse(why, "a display name may not hold control characters or line breaks");
        if (cat == UTF8PROC_CATEGORY_CF || prop->ignorable)
            return refuse(why, "a display name may not hold invisible or direction-changing "
                               "characters");
        if (cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS)
            return refuse(why, "a display name may not hold private-use characters");
    }
    return 0;
}

int api_display_name_prepare(const char *in, char display[API_DISPLAY_NAME_MAX + 1],
                             char key[API_DISPLAY_KEY_MAX + 1], const char **why)
{
    size_t n = strnlen(in, IN_MAX + 1);
    if (n > IN_MAX)
        return refuse(why, "a display name is at most 128 bytes");
    char *d = NULL, *k = NULL;
    if (fold(in, n, 1, &d, &k) != 0)
        return refuse(why, "a display name must be UTF-8 text without unassigned characters");
    int rc = strlen(d) > API_DISPLAY_NAME_MAX || strlen(k) > API_DISPLAY_KEY_MAX
                 ? refuse(why, "a display name is at most 128 bytes")
                 : check_display(d, why);
    return take(d, k, display, key, rc);
}

int api_lookup_key(const char *in, char key[API_DISPLAY_KEY_MAX + 1], const char **why)
{
    size_t n = strnlen(in, API_LOOKUP_MAX + 1);
    if (n == 0 || n > API_LOOKUP_MAX)
        return refuse(why, "prefix must be 1 to 64 bytes");
    char *d = NULL, *k = NULL;
    if (fold(in, n, 0, &d, &k) != 0)
        return refuse(why, "prefix must be UTF-8 text without unassigned characters");
    int rc = strlen(k) > API_DISPLAY_KEY_MAX ? refuse(why, "prefix must be 1 to 64 bytes") : 0;
    return take(d, k, NULL, key, rc);
}
