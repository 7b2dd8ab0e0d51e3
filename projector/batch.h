/* batch.h - what the consumer hands the appliers: records of chat.events in offset order per
 * partition, each marked with the models it is still to be applied to. */
#ifndef PROJ_BATCH_H
#define PROJ_BATCH_H

#include <stdint.h>

#include "event.h"

typedef enum {
    ITEM_EVENT,  /* a decoded event */
    ITEM_POISON, /* an undecodable record event_skips names: passed over, its offset consumed */
    ITEM_EOF,    /* the end of a partition was reached: the offsets move past the markers */
} proj_item_kind_t;

typedef struct {
    proj_item_kind_t kind;
    int32_t partition;
    int64_t offset; /* the record's offset (for ITEM_EOF, the end offset) */
    int64_t next;   /* the offset after it: offset + 1, or the end offset */
    int to_pg;      /* not yet in Postgres (offset >= its stored next offset) */
    int to_redis;   /* not yet in Redis */
    proj_event_t ev;
} proj_item_t;

#endif
