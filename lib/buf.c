/* buf.c - growable byte buffer. */
#include "kchat/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

void kc_buf_reserve(kc_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = kc_xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0'; /* a fresh allocation is a C string too */
}

void kc_buf_append(kc_buf_t *b, const void *p, size_t n)
{
    kc_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kc_buf_puts(kc_buf_t *b, const char *s)
{
    kc_buf_append(b, s, strlen(s));
}

void kc_buf_putc(kc_buf_t *b, char c)
{
    kc_buf_append(b, &c, 1);
}

void kc_buf_vprintf(kc_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0)
        return;
    kc_buf_reserve(b, (size_t)n);
    int m = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    if (m == n)
        b->len += (size_t)n;
    b->data[b->len] = '\0';
}

void kc_buf_printf(kc_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kc_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (len > n)
        return 0;
    return kc_utf8_valid((const char *)s, len) ? len : 0;
}

void kc_buf_json_str(kc_buf_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    kc_buf_reserve(b, n + 2);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            kc_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            switch (c) {
            case '\n': kc_buf_append(b, "\\n", 2); break;
            case '\r': kc_buf_append(b, "\\r", 2); break;
            case '\t': kc_buf_append(b, "\\t", 2); break;
            default: kc_buf_append(b, esc, 6); break;
            }
            i++;
        } else if (c < 0x80) {
            kc_buf_append(b, &s[i], 1);
            i++;
        } else {
            size_t len = utf8_seq_len(s + i, n - i);
            if (len) {
                kc_buf_append(b, &s[i], len);
                i += len;
            } else {
                kc_buf_append(b, "\\ufffd", 6);
                i++;
            }
        }
    }
}

void kc_buf_reset(kc_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void kc_buf_free(kc_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *kc_buf_steal(kc_buf_t *b)
{
    char *p = b->data ? b->data : kc_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void kc_buf_json_qstr(kc_buf_t *b, const char *s, size_t n)
{
    kc_buf_putc(b, '"');
    kc_buf_json_str(b, s, n);
    kc_buf_putc(b, '"');
}
