/* archive.c - the names of the archive's objects; see kchat/archive.h. */
#include "kchat/archive.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int kc_archive_dir(char *out, size_t outlen, const char *prefix, const char *topic,
                   int32_t partition)
{
    if (partition < 0 || partition > KC_ARCHIVE_MAX_PARTITION)
        return -1;
    int n = snprintf(out, outlen, "%s%s/%05" PRId32 "/", prefix, topic, partition);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int kc_archive_name(char *out, size_t outlen, const char *prefix, const char *topic,
                    int32_t partition, int64_t first, int64_t last)
{
    if (first < 0 || last < first || kc_archive_dir(out, outlen, prefix, topic, partition) != 0)
        return -1;
    size_t len = strlen(out);
    int n = snprintf(out + len, outlen - len, "%020" PRId64 "-%020" PRId64 ".avro", first, last);
    return n < 0 || (size_t)n >= outlen - len ? -1 : 0;
}

static int digits(const char *s, int64_t *v)
{
    int64_t x = 0;
    for (int i = 0; i < KC_ARCHIVE_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9' || x > (INT64_MAX - (s[i] - '0')) / 10)
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

int kc_archive_parse(const char *name, int64_t *first, int64_t *last)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    /* 20 digits, '-', 20 digits, ".avro" */
    if (strlen(base) != 2 * KC_ARCHIVE_DIGITS + 1 + 5 || base[KC_ARCHIVE_DIGITS] != '-' ||
        strcmp(base + 2 * KC_ARCHIVE_DIGITS + 1, ".avro") != 0 || digits(base, first) != 0 ||
        digits(base + KC_ARCHIVE_DIGITS + 1, last) != 0 || *last < *first)
        return -1;
    return 0;
}
