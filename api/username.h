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

#endif
