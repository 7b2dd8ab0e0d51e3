/* hist.h - an HDR-style latency histogram: log-bucketed with 64 linear sub-buckets per power
 * of two, so every recorded value is kept within 1/64 (1.6 %) of its true value from 1 us
 * to 2^40 us, in a fixed 21 KiB, with O(1) recording. The maximum is kept exactly.
 *
 * Values are microseconds; negative values are recorded as 0. Percentiles report the upper
 * edge of the bucket that holds them (never optimistic).
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define LG_HIST_SUB 64
#define LG_HIST_EXP 40
#define LG_HIST_BUCKETS ((LG_HIST_EXP + 2) * LG_HIST_SUB)

typedef struct {
    uint64_t count;
    int64_t max;
    int64_t min;
    double sum;
    uint64_t b[LG_HIST_BUCKETS];
} lg_hist_t;

void lg_hist_init(lg_hist_t *h);
void lg_hist_record(lg_hist_t *h, int64_t us);
/* The value at quantile q (0..1): 0 for an empty histogram. */
int64_t lg_hist_quantile(const lg_hist_t *h, double q);
/* The bucket index of a value and the largest value a bucket holds (for the tests). */
int lg_hist_index(int64_t us);
int64_t lg_hist_upper(int idx);

#endif
