/* conv.h - the load generator's conversations, made before the run by producing
 * CreateConversation commands to chat.commands (origin api:bench, so no delivery comes back),
 * as kchat-api does: keyed by conversation id, idempotent, acks=all, flushed. */
#ifndef LG_CONV_H
#define LG_CONV_H

#include <stddef.h>

typedef struct {
    const char *id;            /* conversation id */
    const char *creator;       /* becomes a member */
    const char *const *others; /* the other members */
    size_t nothers;
} lg_conv_spec_t;

/* Produces one command per spec and waits until every one is acknowledged by the broker.
 * Returns 0, or -1 with errstr set. */
int lg_conv_create(const char *brokers, const char *schemas_dir, const lg_conv_spec_t *specs,
                   size_t n, char *errstr, size_t errstr_size);

#endif
