/* util.c - allocation wrappers that abort on OOM, clocks, UTF-8 validation, ids. */
#include "kchat/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

static void oom(size_t n)
{
    char line[128];
    int len = snprintf(line, sizeof(line),
                       "{\"level\":\"error\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
    if (len > 0) {
        ssize_t w = write(2, line, (size_t)len);
        (void)w;
    }
    abort();
}

void *kc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *kc_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *kc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *kc_xstrdup(const char *s)
{
    return kc_xstrndup(s, strlen(s));
}

char *kc_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = kc_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

int64_t kc_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t kc_mono_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int kc_strlcpyf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (size)
            dst[0] = '\0';
        return -EINVAL;
    }
    return (size_t)n >= size ? -ENOSPC : 0;
}

int kc_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Random bytes from libsodium's generator, drawn a kilobyte at a time per thread: one
 * getrandom() per 64 ids instead of one per id (an event id per chat message). Bytes are
 * handed out once and wiped from the pool as they go. */
static void random_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[1024];
    static _Thread_local size_t left;
    if (n > sizeof(pool)) {
        randombytes_buf(out, n);
        return;
    }
    if (n > left) {
        randombytes_buf(pool, sizeof(pool));
        left = sizeof(pool);
    }
    unsigned char *from = pool + sizeof(pool) - left;
    memcpy(out, from, n);
    sodium_memzero(from, n);
    left -= n;
}

void kc_uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* prefix, then 16 bytes as 26 characters of lowercase base32 (128 bits, 5 at a time; the
 * last character holds 3 bits). */
static int id_encode(char *out, size_t size, const char *prefix, const unsigned char b[16])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    size_t plen = strlen(prefix);
    if (size < plen + 27) {
        if (size)
            out[0] = '\0';
        return -ENOSPC;
    }
    memcpy(out, prefix, plen);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = plen, i = 0;
    while (o < plen + 26) {
        if (bits < 5) {
            acc = (acc << 8) | (i < 16 ? b[i] : 0);
            i++;
            bits += 8;
        }
        out[o++] = alphabet[(acc >> (bits - 5)) & 31];
        bits -= 5;
    }
    out[o] = '\0';
    return 0;
}

int kc_id_new(char *out, size_t size, const char *prefix)
{
    unsigned char b[16];
    random_bytes(b, sizeof(b));
    return id_encode(out, size, prefix, b);
}

int kc_id_direct(char *out, size_t size, const char *a, size_t alen, const char *b, size_t blen)
{
    if (size)
        out[0] = '\0';
    if (!kc_id_valid(a, alen, KC_ID_MAX) || !kc_id_valid(b, blen, KC_ID_MAX) ||
        (alen == blen && memcmp(a, b, alen) == 0))
        return -EINVAL;
    /* The pair in byte order, each with its length: (a, b) and (b, a) are one input, and no
     * two pairs are. */
    int cmp = memcmp(a, b, alen < blen ? alen : blen);
    int swap = cmp > 0 || (cmp == 0 && alen > blen);
    const char *lo = swap ? b : a, *hi = swap ? a : b;
    size_t lolen = swap ? blen : alen, hilen = swap ? alen : blen;
    static const char domain[] = "kchat direct conversation v1";
    unsigned char lens[2] = {(unsigned char)lolen, (unsigned char)hilen};
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    if (sodium_init() < 0 || crypto_hash_sha256_init(&st) != 0 ||
        crypto_hash_sha256_update(&st, (const unsigned char *)domain, sizeof(domain)) != 0 ||
        crypto_hash_sha256_update(&st, &lens[0], 1) != 0 ||
        crypto_hash_sha256_update(&st, (const unsigned char *)lo, lolen) != 0 ||
        crypto_hash_sha256_update(&st, &lens[1], 1) != 0 ||
        crypto_hash_sha256_update(&st, (const unsigned char *)hi, hilen) != 0 ||
        crypto_hash_sha256_final(&st, h) != 0)
        return -EIO;
    return id_encode(out, size, KC_ID_DIRECT_PREFIX, h);
}

int kc_id_is_direct(const char *id, size_t len)
{
    return len > 2 && memcmp(id, KC_ID_DIRECT_PREFIX, 2) == 0;
}

int kc_str_only(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return 0;
    return 1;
}

int kc_id_valid(const char *s, size_t len, size_t max)
{
    if (!s || len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

void kc_iso_ms(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    char date[24];
    if (!gmtime_r(&secs, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        (void)kc_strlcpyf(date, sizeof(date), "1970-01-01T00:00:00");
    (void)kc_strlcpyf(out, 32, "%s.%03dZ", date, frac);
}

/* An escape of U+0000: "\\u0000" after an even number of backslashes (each pair is an
 * escaped backslash, not the start of an escape). */
static int escapes_nul(const char *s, size_t len)
{
    const char *end = s + len;
    for (const char *p = s; (p = memchr(p, '\\', (size_t)(end - p))) && end - p >= 6; p += 2)
        if (p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0)
            return 1;
    return 0;
}

/* A control character outside an escape. RFC 8259 allows none but the white space between
 * tokens (tab, LF, CR); cJSON takes every byte up to 0x20 for white space and copies raw ones
 * into strings, where a NUL byte ends the string and the rest of it is lost. */
static int raw_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return 1;
    }
    return 0;
}

kc_json_status_t kc_json_parse_whole(const char *s, size_t len, struct cJSON **out)
{
    *out = NULL;
    if (raw_control(s, len))
        return KC_JSON_BAD;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    kc_json_status_t st = v && end ? KC_JSON_OK : KC_JSON_BAD;
    for (const char *p = end; st == KC_JSON_OK && p < s + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            st = KC_JSON_TRAILING;
    if (st == KC_JSON_OK && escapes_nul(s, len))
        st = KC_JSON_NUL;
    if (st == KC_JSON_OK)
        *out = v;
    else
        cJSON_Delete(v);
    return st;
}
