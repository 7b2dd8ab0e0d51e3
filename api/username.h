/* username.h - usernames that cannot pass for one another (after RFC 8265's PRECIS
 * UsernameCaseMapped profile).
 *
 * A username is prepared into two forms: the display form (full-width and half-width
 * characters mapped to their ordinary forms, then NFC), which is stored and shown as the user
 * typed it, and the key (the display form case-folded, then NFC again), which is unique, so
 * "CaseX", "casex" and "ＣＡＳＥＸ", or é typed as one code point or as e and a combining
 * accent, are one username. Letters, marks after a first letter or digit, and digits of any
 * script are allowed, and from ASCII the letters, digits, '_', '.' and '-': never spaces,
 * symbols, punctuation, controls, format characters (zero-width characters, bidi overrides,
 * the byte-order mark), default-ignorable or unassigned code points, and never letters
 * written right to left mixed with letters written left to right.
 */
#ifndef API_USERNAME_H
#define API_USERNAME_H

#include <stddef.h>

#define API_USERNAME_MAX 64     /* bytes of the display form */
#define API_USERNAME_KEY_MAX 256 /* bytes of the key (case folding can lengthen a name) */

/* Prepares in (UTF-8, NUL-terminated): 0 with display and key filled (each NUL-terminated;
 * display holds API_USERNAME_MAX + 1 bytes, key API_USERNAME_KEY_MAX + 1), or -1 with why
 * set to a sentence for the client. */
int api_username_prepare(const char *in, char display[API_USERNAME_MAX + 1],
                         char key[API_USERNAME_KEY_MAX + 1], const char **why);

/* ---- display names and lookups ---- */

#define API_DISPLAY_NAME_MAX 128    /* bytes of a display name */
#define API_DISPLAY_KEY_MAX 512     /* bytes of its key */

/* A display name as its owner sets it: UTF-8 of at most API_DISPLAY_NAME_MAX bytes once
 * prepared (full-width forms mapped, NFC, each run of white space one space, trimmed), of
 * letters, marks, digits, punctuation, symbols and spaces: no controls, line separators,
 * invisible or direction-changing characters, private-use or unassigned code points. "" (or
 * only spaces) clears it. 0 with display and key (the display form case-folded, the form
 * lookups compare) filled, or -1 with why. */
int api_display_name_prepare(const char *in, char display[API_DISPLAY_NAME_MAX + 1],
                             char key[API_DISPLAY_KEY_MAX + 1], const char **why);

/* The key a lookup compares with usernames' and display names' keys: in (at most 64 bytes)
 * width-mapped, NFC, case-folded. 0, or -1 with why. */
#define API_LOOKUP_MAX 64
int api_lookup_key(const char *in, char key[API_DISPLAY_KEY_MAX + 1], const char **why);

#endif
