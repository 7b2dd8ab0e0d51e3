/* changelog.h - the processor's state topic: keys, and restoring a partition from its
 * checkpoints and the events written since. */
#ifndef KCHAT_PROC_CHANGELOG_H
#define KCHAT_PROC_CHANGELOG_H

#include <librdkafka/rdkafka.h>

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "state.h"

/* Keys: 'c' + convo_id for a ConvoState, 'd' + 16-byte hash for a (version 1 and 2)
 * DedupeEntry, 'b' + 8-byte big-endian number for a DedupeBlock, 'o' for the Checkpoint. */
void proc_key_convo(kc_buf_t *key, const char *convo_id);
void proc_key_dedupe(kc_buf_t *key, const unsigned char hash[PROC_DEDUPE_KEY_BYTES]);
void proc_key_block(kc_buf_t *key, uint64_t id);
void proc_key_checkpoint(kc_buf_t *key);

typedef struct {
    long long records; /* state records read */
    long long events;  /* events replayed */
    double seconds;
} proc_restore_stats_t;

/* Restores the given partitions into out[i]: reads each partition of the state topic from
 * its start to its end (the last stable offset: only committed state), then the same
 * partition of the events topic from the checkpoint's offset to its end, applying each
 * event (proc_part_replay). A partition whose state has no Checkpoint is replayed from the
 * start of the events when its state is empty (a new deployment, or a state topic that was
 * lost), and not at all when it holds records (state written by a version that wrote every
 * change with its events). `rk` is an assign-only read_committed consumer with
 * enable.partition.eof, used by nothing else meanwhile: the restore may run on a thread of
 * its own (it touches only rk, s and out). Stops early when *cancel becomes non-zero.
 * Returns 0, or -1 with errstr (out is then left empty). */
int proc_restore(rd_kafka_t *rk, const kc_schemas_t *s, const char *state_topic,
                 const char *events_topic, const int32_t *partitions, int n, proc_part_t **out,
                 int timeout_ms, const volatile int *cancel, proc_restore_stats_t *stats,
                 char *errstr, size_t errstr_size);

#endif
