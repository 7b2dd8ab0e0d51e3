/* output.h - what the processor writes: events, deliveries and its state changelog, each as
 * a framed Avro record appended to a buffer. */
#ifndef KCHAT_PROC_OUTPUT_H
#define KCHAT_PROC_OUTPUT_H

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "state.h"

/* A message's server id: derived from its place, so a retry gets the same one with nothing
 * more to remember: "<convo_id>:<seq_no>". */
void proc_server_msg_id(const char *convo_id, int64_t seq_no, char *out, size_t size);

/* The Event for an accepted or rejected command (not for a duplicate). */
int proc_encode_event(kc_schemas_t *s, const proc_cmd_t *cmd, const proc_outcome_t *o,
                      int64_t now_ms, kc_buf_t *out);

/* A Delivery to `slot` for `recipients`, with the event (may be NULL) and, when ack_status is
 * set, the ack to the sender. */
int proc_encode_delivery(kc_schemas_t *s, int32_t slot, const proc_cmd_t *cmd,
                         char *const *recipients, size_t nrecipients, const kc_buf_t *event,
                         const char *ack_status, const proc_outcome_t *o, kc_buf_t *out);

int proc_encode_convo_state(kc_schemas_t *s, const proc_convo_t *c, kc_buf_t *out);
int proc_encode_dedupe_entry(kc_schemas_t *s, const proc_dd_t *d, kc_buf_t *out);

#endif
