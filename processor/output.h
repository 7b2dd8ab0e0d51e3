/* output.h - what the processor writes: events, deliveries and its state checkpoints, each
 * as a framed Avro record appended to a buffer (kchat/chat.h's writers: no generic Avro
 * value in between). */
#ifndef KCHAT_PROC_OUTPUT_H
#define KCHAT_PROC_OUTPUT_H

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "route.h"
#include "state.h"

/* The schema ids the processor writes with (each subject's newest). */
typedef struct {
    int32_t event, delivery, state;
} proc_ids_t;

/* Looks the ids up; 0, or -1 when a subject is missing from the registry. */
int proc_ids_load(const kc_schemas_t *s, proc_ids_t *ids);

/* A message's server id: derived from its place, so a retry gets the same one with nothing
 * more to remember: "<convo_id>:<seq_no>". */
void proc_server_msg_id(const char *convo_id, int64_t seq_no, char *out, size_t size);

/* The Event for an accepted or rejected command (not for a duplicate). */
void proc_encode_event(const proc_ids_t *ids, const proc_cmd_t *cmd, const proc_outcome_t *o,
                       int64_t now_ms, kc_buf_t *out);

/* The sender's ack for a SendMessage (status ok, duplicate or error), its strings pointing
 * into cmd, o and smid (a buffer of at least 512 bytes). */
void proc_ack_for(const proc_cmd_t *cmd, const proc_outcome_t *o, char *smid, proc_ack_t *ack);

/* A Delivery batch for one slot: items [0, n) appended to out as one record. */
void proc_encode_deliveries(const proc_ids_t *ids, int32_t slot, const proc_item_t *items,
                            size_t n, kc_buf_t *out);
/* About how many bytes an item adds to a Delivery record (to split large batches). */
size_t proc_item_size(const proc_item_t *it);

/* Checkpoint records (ProcessorState): a conversation, a block of dedupe entries, the
 * checkpoint itself. */
void proc_encode_convo_state(const proc_ids_t *ids, const proc_convo_t *c, kc_buf_t *out);
void proc_encode_dedupe_block(const proc_ids_t *ids, const proc_dd_t *const *entries, size_t n,
                              kc_buf_t *out);
void proc_encode_checkpoint(const proc_ids_t *ids, int64_t events_offset, int64_t now_ms,
                            kc_buf_t *out);

#endif
