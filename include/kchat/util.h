/* util.h - allocation wrappers and small helpers shared by every module.
 *
 * Allocation failure is not an error we can recover from in a daemon that has already
 * accepted work, so the kc_x* wrappers abort with a log line instead of returning NULL.
 * Every other function in lib/ returns int: 0 on success, a negative errno-style value
 * on failure.
 */
#ifndef KCHAT_UTIL_H
#define KCHAT_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *kc_xmalloc(size_t n);
void *kc_xcalloc(size_t count, size_t size);
void *kc_xrealloc(void *p, size_t n);
char *kc_xstrdup(const char *s);
char *kc_xstrndup(const char *s, size_t n);

#define KC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock time in milliseconds since the epoch. */
int64_t kc_now_ms(void);
/* Monotonic time in nanoseconds, for durations. */
uint64_t kc_mono_ns(void);

/* snprintf that never overflows and reports truncation: returns 0, or -ENOSPC when the
 * output did not fit (dst is still NUL-terminated). */
int kc_strlcpyf(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* True when [s, s+len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int kc_utf8_valid(const char *s, size_t len);

/* One JSON value read whole from a client's text: cJSON reads a prefix (bytes after the value
 * are left unread) and ends a string at an escaped U+0000 or a raw NUL byte (the rest of it
 * lost), so all are refused here rather than taken in part. */
typedef enum {
    KC_JSON_OK,
    KC_JSON_BAD,      /* not JSON, or a control character other than tab, LF, CR unescaped */
    KC_JSON_TRAILING, /* bytes other than white space after the value */
    KC_JSON_NUL,      /* a string escapes U+0000 */
} kc_json_status_t;
struct cJSON;
/* Parses [s, s+len) into *out (the caller's, cJSON_Delete; NULL unless KC_JSON_OK). */
kc_json_status_t kc_json_parse_whole(const char *s, size_t len, struct cJSON **out);

/* ms since the epoch as ISO 8601 UTC with milliseconds, "2026-11-27T13:18:47.554Z". */
void kc_iso_ms(int64_t ms, char out[32]);

/* A random (version 4) UUID, lowercase, into out[37]. */
void kc_uuid4(char out[37]);

/* A new opaque id: prefix followed by 26 characters of lowercase base32 of 16 random bytes
 * ("u_" users, "c_" conversations). Returns 0, or -ENOSPC when size is too small. */
#define KC_ID_MAX 64
int kc_id_new(char *out, size_t size, const char *prefix);

/* The id of the one direct conversation of two users: "d_" and 26 characters of base32 of a
 * SHA-256 over the pair in byte order, so both users (and every API replica) name the same
 * conversation. Returns 0; -EINVAL unless a and b are two different valid ids (at most
 * KC_ID_MAX bytes); -ENOSPC when size is too small. kc_id_is_direct: the id has the prefix
 * (the processor checks that it is the pair's). */
#define KC_ID_DIRECT_PREFIX "d_"
int kc_id_direct(char *out, size_t size, const char *a, size_t alen, const char *b, size_t blen);
int kc_id_is_direct(const char *id, size_t len);

/* True when every byte of s is an ASCII letter, a digit or one of extra (the empty string
 * passes): names that go into object keys and topic names. */
int kc_str_only(const char *s, const char *extra);

/* True when s (len bytes) is a well-formed id: 1..max bytes of [A-Za-z0-9_.:-]. */
int kc_id_valid(const char *s, size_t len, size_t max);

#endif
