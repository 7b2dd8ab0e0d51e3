/* event.h - one chat.events record decoded into the fields the read models need.
 *
 * Strings are NUL-terminated copies in one block (valid until proj_event_free). content,
 * title, topic and message have each NUL byte replaced by U+FFFD: Postgres text cannot store
 * U+0000, so both read models store U+FFFD in its place and stay equal.
 */
#ifndef PROJ_EVENT_H
#define PROJ_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/avro.h"

typedef enum {
    EV_CREATED,  /* ConversationCreated */
    EV_ADDED,    /* MembersAdded */
    EV_REMOVED,  /* MembersRemoved */
    EV_MESSAGE,  /* MessageCreated */
    EV_EDITED,   /* MessageEdited */
    EV_DELETED,  /* MessageDeleted */
    EV_READ,     /* ReadMarkerSet */
    EV_UPDATED,  /* ConversationUpdated */
    EV_ROLE,     /* RoleChanged */
    EV_REACTION, /* ReactionChanged */
    EV_REJECTED, /* CommandRejected: changes no model */
} proj_ev_kind_t;

/* One emoji of a message and how many members chose it (ReactionChanged.counts). */
typedef struct {
    const char *emoji;
    int32_t count;
} proj_count_t;

typedef struct {
    proj_ev_kind_t kind;
    const char *type; /* the body's record name */
    const char *event_id, *convo_id, *actor_id, *command_id, *origin;
    int64_t at; /* occurred_at, ms */
    const char *title; /* ConversationCreated; ConversationUpdated (NULL: unchanged) */
    const char *topic; /* ConversationUpdated (NULL: unchanged) */
    const char **members;
    size_t nmembers;
    int64_t seq_no;       /* MembersRemoved: readable up to (left_seq; 0 before version 2);
                           * ReactionChanged: the message reacted to */
    const char *promoted; /* MembersRemoved: the member who became owner, or NULL */
    const char *user_id;  /* RoleChanged */
    const char *role;     /* RoleChanged: "owner", "admin" or "member" (static) */
    const char *server_msg_id, *client_msg_id, *content, *content_type;
    int64_t reply_to;             /* MessageCreated: the seq_no it answers, 0 when none */
    const char *attachments;      /* MessageCreated: the JSON array of its files, NULL: none */
    const char *reason, *message; /* CommandRejected */
    /* ReactionChanged: the actor's reaction now and before (NULL: none), and the message's
     * reactions after the change, the most chosen first (count >= 1 each). */
    const char *emoji, *previous;
    const proj_count_t *counts;
    size_t ncounts;
    char *mem; /* the block of the members and counts arrays and every string */
} proj_event_t;

/* Largest id (convo, user) the projector accepts; longer ones make the record undecodable. */
#define PROJ_MAX_ID 256

/* Decodes a framed chat.events record. Returns 0, or a negative value with errstr set (the
 * record then stops its partition unless event_skips names it: pipeline.c); ev needs no
 * freeing on failure. */
int proj_event_decode(kc_schemas_t *s, const void *buf, size_t len, proj_event_t *ev, char *errstr,
                      size_t errstr_size);
void proj_event_free(proj_event_t *ev);


#endif
