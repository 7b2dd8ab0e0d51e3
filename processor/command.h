/* command.h - a chat.commands record, decoded into a proc_cmd_t. */
#ifndef KCHAT_PROC_COMMAND_H
#define KCHAT_PROC_COMMAND_H

#include "kchat/avro.h"
#include "kchat/buf.h"
#include "state.h"

/* What a decoded command's strings live in: NUL-terminated copies in one arena (sized from
 * the record before the first copy, so the pointers never move), and the member arrays. */
typedef struct {
    kc_buf_t arena;
    const char **members;
    size_t *lens;
    size_t cap;
} proc_cmd_mem_t;

/* Decodes a framed Command (kchat/chat.h's reader). On success the command points into mem
 * (reused from one command to the next; free it with proc_command_mem_free at the end).
 * Returns 0, or a negative value with errstr saying why (the record then goes to the
 * dead-letter topic). */
int proc_command_decode(const kc_schemas_t *s, const void *buf, size_t len, proc_cmd_mem_t *mem,
                        proc_cmd_t *cmd, char *errstr, size_t errstr_size);
void proc_command_mem_free(proc_cmd_mem_t *mem);

#endif
