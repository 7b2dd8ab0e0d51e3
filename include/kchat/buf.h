/* buf.h - a growable byte buffer (the body of an HTTP response, a rendered metrics page).
 *
 * The buffer owns `data`; it is always NUL-terminated so it can be used as a C string.
 * A zero-initialised kc_buf_t is an empty buffer; kc_buf_free() releases it and leaves it
 * empty again.
 */
#ifndef KCHAT_BUF_H
#define KCHAT_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} kc_buf_t;

void kc_buf_reserve(kc_buf_t *b, size_t extra);
void kc_buf_append(kc_buf_t *b, const void *p, size_t n);
void kc_buf_puts(kc_buf_t *b, const char *s);
void kc_buf_putc(kc_buf_t *b, char c);
void kc_buf_printf(kc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kc_buf_vprintf(kc_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s as the body of a JSON string (no quotes added): escapes quotes, backslashes and
 * control characters; bytes that are not valid UTF-8 become U+FFFD. */
void kc_buf_json_str(kc_buf_t *b, const char *s, size_t n);
/* The same between quotes: a whole JSON string. */
void kc_buf_json_qstr(kc_buf_t *b, const char *s, size_t n);
void kc_buf_reset(kc_buf_t *b);
void kc_buf_free(kc_buf_t *b);
/* Hands the data over to the caller (who frees it) and leaves the buffer empty. */
char *kc_buf_steal(kc_buf_t *b);

#endif
