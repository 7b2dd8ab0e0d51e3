/* apply_redis.h - a batch of events as Redis commands on the keys kchat:rm:<gen>:...
 *
 * The commands are sent between MULTI and EXEC, with the offsets hash, so a batch is applied
 * whole or not at all. Every command is idempotent at the end state: applying the log from
 * the beginning again onto any earlier state gives the same keys (positions and times take
 * the maximum; sorted sets use ZADD GT; recent messages are replaced by score). Unread
 * counts are never stored: readers derive them from last_seq and read_seq.
 */
#ifndef PROJ_APPLY_REDIS_H
#define PROJ_APPLY_REDIS_H

#include <stddef.h>

#include "batch.h"
#include "kchat/buf.h"

typedef struct {
    kc_buf_t arena;    /* every argument, back to back */
    size_t *off, *len; /* per argument */
    size_t nargs, capargs;
    size_t *first; /* per command: index of its first argument */
    size_t ncmds, capcmds;
} proj_rcmds_t;

void proj_rcmd_start(proj_rcmds_t *c);
void proj_rcmd_arg(proj_rcmds_t *c, const char *s, size_t len);
void proj_rcmd_str(proj_rcmds_t *c, const char *s);
void proj_rcmd_argf(proj_rcmds_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The i-th command's arguments (pointers into the arena, valid until the next append).
 * Returns argc; argv and lens must hold `max` entries (argc is capped there). */
int proj_rcmd_argv(const proj_rcmds_t *c, size_t i, const char **argv, size_t *lens, int max);
int proj_rcmd_argc(const proj_rcmds_t *c, size_t i);
void proj_rcmds_free(proj_rcmds_t *c);

/* Appends the commands applying items[i] with to_redis set; prefix is "kchat:rm:<gen>:".
 * recent: how many messages recent:<convo> keeps. Returns the number of events applied. */
size_t proj_redis_build(const char *prefix, proj_item_t *items, size_t n, long long recent,
                        proj_rcmds_t *out);

/* The REST message shape of a MessageCreated event, as JSON (caller frees). */
char *proj_message_json(const proj_event_t *e);

#endif
