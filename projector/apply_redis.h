/* apply_redis.h - a batch of events as one call of a Lua script on the keys kchat:rm:<gen>:...
 *
 * The whole batch is one EVALSHA of PROJ_REDIS_SCRIPT (loaded with SCRIPT LOAD, again after
 * a NOSCRIPT): the script checks kchat:rm:gen and the offsets hash, then applies the batch's
 * operations and sets the offsets, all in one atomic call, so a batch is applied whole or not
 * at all and needs one round trip. Its arguments are built here, in the protocol's form, so
 * the command is sent as it is built:
 *
 *   KEYS: kchat:rm:gen, <prefix>offsets
 *   ARGV: the expected generation ('' skips that check), the prefix, the number of
 *         partitions, then per partition: partition, expected next offset, new next offset;
 *         then the operations, each an opcode, its argument count and its arguments.
 *
 * Every operation is idempotent at the end state: applying the log from the beginning again
 * onto any earlier state gives the same keys (positions and times take the maximum; sorted
 * sets use ZADD GT; recent messages are replaced by score; a reaction sets the message's
 * counts and its actor's entry, both as the event gives them). Unread counts are never stored:
 * readers derive them from last_seq and read_seq. The consecutive messages of one
 * conversation in a batch (with no other event of that conversation between them) are one
 * operation; activity and lastseen are once per conversation and per user and batch.
 */
#ifndef PROJ_APPLY_REDIS_H
#define PROJ_APPLY_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "kchat/buf.h"

/* The script, and its return: {1, error...} once applied (an error of one operation does not
 * stop the others, as a failed command inside MULTI/EXEC would not), or {0, why} when the
 * generation or an offset is not the expected one (nothing written). */
extern const char PROJ_REDIS_SCRIPT[];

/* Room kept before the arguments for the command's head (*N, EVALSHA, the sha, numkeys). */
#define PROJ_RARGS_HEAD 128

/* Arguments in the protocol's form: "$<len>\r\n<arg>\r\n" each, back to back. */
typedef struct {
    kc_buf_t b;        /* PROJ_RARGS_HEAD bytes kept, then the arguments */
    size_t *off, *len; /* per argument: where its bytes start in b, and how many */
    size_t n, cap;
    kc_buf_t scratch; /* a message's JSON while it is built */
} proj_rargs_t;

void proj_rargs_add(proj_rargs_t *a, const char *s, size_t len);
void proj_rargs_str(proj_rargs_t *a, const char *s);
void proj_rargs_int(proj_rargs_t *a, int64_t v);
/* The i-th argument (a pointer into the buffer, valid until the next append). */
const char *proj_rargs_get(const proj_rargs_t *a, size_t i, size_t *len);
/* Writes the head "EVALSHA <sha> <numkeys>" before the arguments (the first numkeys of them
 * are the keys) and returns the whole command; *len is its length. */
const char *proj_rargs_evalsha(proj_rargs_t *a, const char *sha, int numkeys, size_t *len);
void proj_rargs_free(proj_rargs_t *a);

/* Appends the operations applying items[i] with to_redis set; prefix is "kchat:rm:<gen>:".
 * recent: how many messages recent:<convo> keeps. Returns the number of events applied. */
size_t proj_redis_build(const char *prefix, proj_item_t *items, size_t n, long long recent,
                        proj_rargs_t *out);

/* The REST message shape of a MessageCreated event, as JSON (caller frees): ends with
 * "deleted_at":null,"reactions":[]} (a reaction rewrites "reactions" in place and adds
 * "reacted" after it). */
char *proj_message_json(const proj_event_t *e);

#endif
