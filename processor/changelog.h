/* changelog.h - the processor's state topic: keys, and restoring a partition from it. */
#ifndef KCHAT_PROC_CHANGELOG_H
#define KCHAT_PROC_CHANGELOG_H

#include <librdkafka/rdkafka.h>

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "state.h"

/* Keys: 'c' + convo_id for a ConvoState, 'd' + 16-byte hash for a DedupeEntry. */
void proc_key_convo(kc_buf_t *key, const char *convo_id);
void proc_key_dedupe(kc_buf_t *key, const unsigned char hash[PROC_DEDUPE_KEY_BYTES]);

typedef struct {
    long long records;
    double seconds;
} proc_restore_stats_t;

/* Reads the given partitions of the state topic from their start to their end (the last
 * stable offset: only committed state), all at once, with `rk`, an assign-only
 * read_committed consumer with enable.partition.eof, and builds each partition's state into
 * out[i]. Blocking; returns 0, or -1 with errstr (out is then left empty). */
int proc_restore(rd_kafka_t *rk, kc_schemas_t *s, const char *topic, const int32_t *partitions,
                 int n, proc_part_t **out, int timeout_ms, proc_restore_stats_t *stats,
                 char *errstr, size_t errstr_size);

#endif
