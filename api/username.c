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

int api_username_prepare(const char *in, char display[API_USERNAME_MAX + 1],
                         char key[API_USERNAME_KEY_MAX + 1], const char **why)
{
    size_t n = strnlen(in, IN_MAX + 1);
    if (n == 0)
        return refuse(why, "a username may not be empty");
    if (n > IN_MAX)
        return refuse(why, "a username is at most 64 bytes");
    char *wide = width_map(in, n);
    if (!wide)
        return refuse(why, "a username must be UTF-8 text");
    utf8proc_uint8_t *nfc = NULL, *folded = NULL;
    int rc = -1;
    if (utf8proc_map((const utf8proc_uint8_t *)wide, 0, &nfc,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                         UTF8PROC_REJECTNA) < 0) {
        refuse(why, "a username must be UTF-8 text without unassigned characters");
        goto out;
    }
    size_t dn = strlen((const char *)nfc);
    if (dn > API_USERNAME_MAX) {
        refuse(why, "a username is at most 64 bytes");
        goto out;
    }
    if (check((const char *)nfc, why) != 0)
        goto out;
    if (utf8proc_map(nfc, 0, &folded,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                         UTF8PROC_CASEFOLD) < 0 ||
        strlen((const char *)folded) > API_USERNAME_KEY_MAX) {
        refuse(why, "a username must be UTF-8 text without unassigned characters");
        goto out;
    }
    memcpy(display, nfc, dn + 1);
    memcpy(key, folded, strlen((const char *)folded) + 1);
    rc = 0;
out:
    free(wide);
    free(nfc);
    free(folded);
    return rc;
}
