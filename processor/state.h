/* state.h - what the processor knows per command partition, and the rules that turn one
 * command into its outcome.
 *
 * A partition's state: each conversation's last seq_no and members, and the dedupe window of
 * accepted messages ((convo, sender, client_msg_id) -> seq_no). proc_apply() checks a command
 * against it and, when the command is accepted, changes it; nothing here does I/O, so the
 * rules are tested on their own.
 *
 * The state is checkpointed now and then, not with every transaction: the caller takes what
 * changed since the last checkpoint (proc_part_take_dirty for the conversations,
 * proc_part_take_unsaved for the dedupe entries) and writes it with a Checkpoint naming the
 * chat.events offset up to which it holds everything (events_end). A restore reads the
 * checkpoints, then replays the events from that offset (proc_part_replay): applying an
 * event the checkpoint already holds changes nothing, so the replay may start early. On an
 * aborted transaction the caller throws the partition's state away and restores it, which
 * sees only committed records.
 */
#ifndef KCHAT_PROC_STATE_H
#define KCHAT_PROC_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/chat.h"
#include "kchat/list.h"
#include "kchat/map.h"

#define PROC_DEDUPE_KEY_BYTES 16

typedef enum {
    CMD_SEND_MESSAGE,
    CMD_CREATE_CONVERSATION,
    CMD_ADD_MEMBERS,
    CMD_REMOVE_MEMBERS,
    CMD_EDIT_MESSAGE,
    CMD_DELETE_MESSAGE,
    CMD_SET_READ_MARKER,
    CMD_UPDATE_CONVERSATION,
    CMD_SET_ROLE,
    CMD_SET_REACTION,
} proc_cmd_kind_t;

/* A decoded command. Strings point into the decoded Avro value (NUL-terminated, with their
 * lengths); they live as long as it does. */
typedef struct {
    proc_cmd_kind_t kind;
    const char *type_name; /* the Avro record name, e.g. "SendMessage" */
    const char *command_id, *convo_id, *sender_id, *origin;
    size_t convo_id_len, sender_id_len;
    int64_t issued_at;
    const char *client_msg_id; /* SendMessage */
    size_t client_msg_id_len;
    const char *content; /* SendMessage, EditMessage */
    size_t content_len;
    const char *content_type;
    const char *title; /* CreateConversation; UpdateConversation (NULL: keep) */
    size_t title_len;
    const char *topic; /* UpdateConversation (NULL: keep) */
    size_t topic_len;
    const char *user_id; /* SetRole */
    size_t user_id_len;
    kc_role_t role;      /* SetRole */
    const char **members; /* CreateConversation, AddMembers, RemoveMembers */
    size_t *member_lens;
    size_t nmembers;
    int64_t seq_no; /* EditMessage, DeleteMessage, SetReadMarker, SetReaction */
    const char *emoji; /* SetReaction: the reaction, NULL to remove the sender's */
    size_t emoji_len;
    int64_t reply_to; /* SendMessage, when has_reply_to: an earlier seq_no it answers */
    int has_reply_to;
    const char *attachments; /* SendMessage: the Avro bytes of its attachments (copied to the */
    size_t attachments_len;  /* event unread; checked by kc_chat_command_decode) */
    size_t attachments_count;
} proc_cmd_t;

typedef struct {
    long long max_content_bytes;
    long long max_members;
    long long max_id_bytes;
    long long dedupe_window_ms;
    long long edit_window_ms; /* how old a message may be to be edited or deleted */
} proc_limits_t;

/* How long an accepted message is remembered: for its retries (the dedupe window) and for
 * edits and deletes by its author (the edit window), whichever is longer. */
static inline long long proc_keep_ms(const proc_limits_t *lim)
{
    return lim->dedupe_window_ms > lim->edit_window_ms ? lim->dedupe_window_ms
                                                       : lim->edit_window_ms;
}

typedef enum { OUT_ACCEPTED, OUT_DUPLICATE, OUT_REJECTED } proc_outcome_kind_t;

/* Why a command is rejected. */
typedef enum {
    PROC_REJECT_INVALID,
    PROC_REJECT_TOO_LARGE,
    PROC_REJECT_CONVERSATION_EXISTS,
    PROC_REJECT_NO_SUCH_CONVERSATION,
    PROC_REJECT_NOT_MEMBER,
    PROC_REJECT_NO_SUCH_MESSAGE,
    PROC_REJECT_TOO_OLD,
    PROC_REJECT_NOT_AUTHOR,
    PROC_REJECT_DELETED,
    PROC_REJECT_DIRECT,
    PROC_REJECT_NOT_ALLOWED,
    PROC_REJECT_LAST_OWNER,
    PROC_REJECT_NO_SUCH_MEMBER,
    PROC_REJECT_TOO_MANY_REACTIONS,
    PROC_REJECT_N
} proc_reject_t;

/* The stable code of each proc_reject_t ("invalid", "too_large", ...): an outcome's reason,
 * CommandRejected.reason, the ack's error code and the reason label of the rejections
 * counter. */
extern const char *const proc_reject_reasons[PROC_REJECT_N];

typedef struct {
    proc_outcome_kind_t kind;
    const char *reason; /* OUT_REJECTED: one of proc_reject_reasons */
    char message[256];  /* OUT_REJECTED: for people */
    int64_t seq_no;     /* SendMessage accepted or duplicate; RemoveMembers: the last seq_no */
    char *promoted;     /* RemoveMembers: the member who became owner, or NULL (owned) */
    /* Accepted membership changes: every member after CreateConversation, the users really
     * added or removed otherwise. Owned by the outcome (proc_outcome_free). */
    char **members;
    size_t nmembers;
    /* The conversation's members after the command (for routing); points into the state. */
    char *const *recipients;
    size_t nrecipients;
    /* SendMessage accepted, DeleteMessage accepted: the dedupe entry to (re)write to the
     * changelog. */
    unsigned char dedupe_key[PROC_DEDUPE_KEY_BYTES];
    const struct proc_dd *dedupe;
    /* SetReaction accepted: the message (its reactions after the change) and the sender's
     * reaction before it (owned; NULL when none). */
    const struct proc_dd *reacted;
    char *previous;
} proc_outcome_t;

/* A conversation: members in the order they joined (the oldest first), each with a role
 * (kc_role_t, in roles[i] for members[i]). */
typedef struct proc_convo {
    char *id;
    int64_t last_seq;
    char **members;
    unsigned char *roles;
    size_t nmembers, cap;
    int dirty;
} proc_convo_t;

/* A member's reaction to a message. */
typedef struct {
    char *user, *emoji;
} proc_reaction_t;

/* At most this many members react to one message (one reaction each). */
#define PROC_MAX_REACTIONS 1000

typedef struct proc_dd {
    unsigned char key[PROC_DEDUPE_KEY_BYTES];
    int64_t seq_no;
    int64_t created_at;
    char *author;         /* NULL when unknown (an entry restored from a version-1 record) */
    char *msg_key;        /* its key in proc_part_t.msgs, or NULL */
    size_t msg_key_len;
    int deleted;
    int legacy;           /* restored from a one-entry DedupeEntry record: tombstoned on expiry */
    proc_reaction_t *reactions; /* the members' reactions, in the order they were set */
    size_t nreactions, reactions_cap;
    kc_slist_node_t link; /* in proc_part_t.window */
} proc_dd_t;

/* A DedupeBlock on the changelog: tombstoned once its newest entry leaves the window. */
typedef struct {
    uint64_t id;
    int64_t newest;
} proc_block_t;

typedef struct {
    int32_t partition;
    kc_map_t *convos; /* convo_id -> proc_convo_t */
    kc_map_t *dedupe; /* dedupe key -> proc_dd_t */
    kc_map_t *msgs;   /* convo_id NUL seq_no -> proc_dd_t: messages still in the window,
                         which their authors may edit or delete */
    kc_slist_t window; /* every proc_dd_t, oldest first, for expiry: it owns them */
    proc_convo_t **dirty;
    size_t ndirty, dirty_cap;
    /* checkpoints */
    proc_dd_t *unsaved;      /* the first FIFO entry added since the last checkpoint */
    unsigned char *resave;   /* keys of older entries changed since (deleted), 16 B each */
    size_t nresave, resave_cap;
    proc_block_t *blocks;    /* DedupeBlocks on the changelog, oldest first */
    size_t nblocks, blocks_cap;
    uint64_t next_block;     /* the number of the next DedupeBlock */
    int64_t events_end;      /* every event of the partition before this offset is applied */
    uint64_t events_since;   /* events written since the last checkpoint */
    uint64_t checkpoint_ns;  /* when the last checkpoint (or the restore) was */
} proc_part_t;

proc_part_t *proc_part_new(int32_t partition);
void proc_part_destroy(proc_part_t *p);

/* The dedupe key of (convo, sender, client_msg_id): BLAKE2b-128 of the three, length-prefixed. */
void proc_dedupe_key(const char *convo, size_t convo_len, const char *sender, size_t sender_len,
                     const char *client_msg_id, size_t cmid_len,
                     unsigned char out[PROC_DEDUPE_KEY_BYTES]);

/* Applies a command; fills out. Returns 0 (the outcome says accepted, duplicate or rejected). */
int proc_apply(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms, const proc_limits_t *lim,
               proc_outcome_t *out);
void proc_outcome_free(proc_outcome_t *out);

/* Conversations changed since the last call (their ConvoState must be written); the array
 * is valid until the next change. Clears the dirty marks. */
proc_convo_t **proc_part_take_dirty(proc_part_t *p, size_t *n);

/* Removes dedupe entries created before now - window; calls fn with the key of each legacy
 * entry removed (a one-entry record, whose tombstone the caller writes). Returns how many
 * were removed. */
size_t proc_part_expire(proc_part_t *p, int64_t now_ms, int64_t window_ms,
                        void (*fn)(const unsigned char *key, void *arg), void *arg);
/* Forgets the DedupeBlocks whose newest entry is older than the window, calling fn with each
 * (to write its tombstone). Returns how many. */
size_t proc_part_expire_blocks(proc_part_t *p, int64_t now_ms, int64_t window_ms,
                               void (*fn)(uint64_t id, void *arg), void *arg);
/* A DedupeBlock written (or restored): its number and its newest entry. */
void proc_part_note_block(proc_part_t *p, uint64_t id, int64_t newest);

/* The dedupe entries added or changed since the last call, each once per call to fn (an
 * entry may come twice); then they count as saved. Returns how many were given. */
size_t proc_part_take_unsaved(proc_part_t *p, void (*fn)(const proc_dd_t *d, void *arg),
                              void *arg);
/* Everything restored so far counts as saved (after reading the checkpoints). */
void proc_part_mark_saved(proc_part_t *p);

/* The dedupe entry added last, or NULL. */
static inline proc_dd_t *proc_part_newest(const proc_part_t *p)
{
    return KC_SLIST_ENTRY(p->window.last, proc_dd_t, link);
}

/* Applies one event of the partition's chat.events to the state, as a restore catching up
 * after its checkpoint does: conversations created, members added and removed, messages
 * numbered and remembered for the window (created_at: the event's time), deletions. An
 * event the state already holds changes nothing. */
void proc_part_replay(proc_part_t *p, const kc_chat_event_t *ev);

/* Restore: set a conversation's state, or add a dedupe entry (also how proc_apply records an
 * accepted message), as read from the changelog; forget a key on a tombstone. */
void proc_part_restore_convo(proc_part_t *p, const char *id, size_t id_len, int64_t last_seq,
                             const char *const *members, const size_t *lens, size_t n);
/* Sets a restored member's role (a checkpoint's owners and admins); 0, or -1 when the user is
 * not a member of the conversation. */
int proc_part_restore_role(proc_part_t *p, const char *id, size_t id_len, const char *user,
                           size_t user_len, kc_role_t role);
void proc_part_add_dedupe(proc_part_t *p, const unsigned char *key, int64_t seq_no,
                          int64_t created_at, const char *convo_id, const char *author,
                          int deleted);
void proc_part_forget(proc_part_t *p, const void *key, size_t klen, int is_convo);

/* Sets (emoji non-NULL) or removes a member's reaction to a remembered message: 1 when that
 * changed it (the entry is then to be checkpointed again), 0 when it already was so. */
int proc_dd_set_reaction(proc_dd_t *d, const char *user, size_t user_len, const char *emoji,
                         size_t emoji_len);
/* A message's reactions counted: each emoji once with how many chose it, the most chosen
 * first, ties in the byte order of the emoji (ReactionChanged.counts). Strings point into d.
 * Returns how many (at most KC_CHAT_MAX_REACTION_KINDS). */
size_t proc_dd_reaction_counts(const proc_dd_t *d, kc_chat_count_t *out);

#endif
