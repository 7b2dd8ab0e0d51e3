/* hist.c - see hist.h. Values below 2*SUB have a bucket each; above, a value with its top
 * bit at position msb lands in the group of SUB buckets of width 2^(msb-6). */
#include "hist.h"

#include <string.h>

void lg_hist_init(lg_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = INT64_MAX;
}

int lg_hist_index(int64_t us)
{
    if (us < 0)
        us = 0;
    uint64_t v = (uint64_t)us;
    if (v < 2 * LG_HIST_SUB)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6; /* 2^6 == LG_HIST_SUB */
    int idx = (shift + 1) * LG_HIST_SUB + (int)(v >> shift) - LG_HIST_SUB;
    return idx < LG_HIST_BUCKETS ? idx : LG_HIST_BUCKETS - 1;
}

int64_t lg_hist_upper(int idx)
{
    if (idx < 2 * LG_HIST_SUB)
        return idx;
    int shift = idx / LG_HIST_SUB - 1;
    int64_t base = (int64_t)(idx % LG_HIST_SUB + LG_HIST_SUB) << shift;
    return base + ((int64_t)1 << shift) - 1;
}

void lg_hist_record(lg_hist_t *h, int64_t us)
{
    if (us < 0)
        us = 0;
    h->b[lg_hist_index(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us > h->max)
        h->max = us;
    if (us < h->min)
        h->min = us;
}

int64_t lg_hist_quantile(const lg_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) {
            int64_t up = lg_hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}
