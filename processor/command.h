/* command.h - a chat.commands record, decoded into a proc_cmd_t. */
#ifndef KCHAT_PROC_COMMAND_H
#define KCHAT_PROC_COMMAND_H

#include "kchat/avro.h"
#include "state.h"

/* Decodes a framed Command. On success the command points into msg (free both with
 * proc_command_free). Returns 0, or a negative value with errstr saying why (the record
 * then goes to the dead-letter topic). */
int proc_command_decode(kc_schemas_t *s, const void *buf, size_t len, kc_avro_msg_t *msg,
                        proc_cmd_t *cmd, char *errstr, size_t errstr_size);
void proc_command_free(kc_avro_msg_t *msg, proc_cmd_t *cmd);

#endif
