/* state.h - what the processor knows per command partition, and the rules that turn one
 * command into its outcome.
 *
 * A partition's state: each conversation's last seq_no and members, and the dedupe window of
 * accepted messages ((convo, sender, client_msg_id) -> seq_no). proc_apply() checks a command
 * against it and, when the command is accepted, changes it; nothing here does I/O, so the
 * rules are tested on their own. The caller writes what changed to the changelog
 * (proc_part_take_dirty, the dedupe entries it is told about) in the same Kafka transaction
 * as the events, and on an aborted transaction throws the partition's state away and restores
 * it from the changelog, which holds only committed state.
 */
#ifndef KCHAT_PROC_STATE_H
#define KCHAT_PROC_STATE_H

#include <stddef.h>
#include <stdint.h>

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
    const char *title; /* CreateConversation */
    size_t title_len;
    const char **members; /* CreateConversation, AddMembers, RemoveMembers */
    size_t *member_lens;
    size_t nmembers;
    int64_t seq_no; /* EditMessage, DeleteMessage, SetReadMarker */
} proc_cmd_t;

typedef struct {
    long long max_content_bytes;
    long long max_members;
    long long max_id_bytes;
    long long dedupe_window_ms;
} proc_limits_t;

typedef enum { OUT_ACCEPTED, OUT_DUPLICATE, OUT_REJECTED } proc_outcome_kind_t;

typedef struct {
    proc_outcome_kind_t kind;
    const char *reason; /* OUT_REJECTED: a stable code */
    char message[256];  /* OUT_REJECTED: for people */
    int64_t seq_no;     /* SendMessage accepted or duplicate */
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
} proc_outcome_t;

typedef struct proc_convo {
    char *id;
    int64_t last_seq;
    char **members;
    size_t nmembers, cap;
    int dirty;
} proc_convo_t;

typedef struct proc_dd {
    unsigned char key[PROC_DEDUPE_KEY_BYTES];
    int64_t seq_no;
    int64_t created_at;
    char *author;         /* NULL when unknown (an entry restored from a version-1 record) */
    char *msg_key;        /* its key in proc_part_t.msgs, or NULL */
    size_t msg_key_len;
    int deleted;
    struct proc_dd *next; /* oldest first, for expiry */
} proc_dd_t;

typedef struct {
    int32_t partition;
    kc_map_t *convos; /* convo_id -> proc_convo_t */
    kc_map_t *dedupe; /* dedupe key -> proc_dd_t */
    kc_map_t *msgs;   /* convo_id NUL seq_no -> proc_dd_t: messages still in the window,
                         which their authors may edit or delete */
    proc_dd_t *oldest, *newest;
    proc_convo_t **dirty;
    size_t ndirty, dirty_cap;
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

/* Removes dedupe entries created before now - window; calls fn with each key removed (to
 * write its tombstone). Returns how many. */
size_t proc_part_expire(proc_part_t *p, int64_t now_ms, int64_t window_ms,
                        void (*fn)(const unsigned char *key, void *arg), void *arg);

/* Restore: set a conversation's state, or add a dedupe entry (also how proc_apply records an
 * accepted message), as read from the changelog; forget a key on a tombstone. */
void proc_part_restore_convo(proc_part_t *p, const char *id, size_t id_len, int64_t last_seq,
                             const char *const *members, const size_t *lens, size_t n);
void proc_part_add_dedupe(proc_part_t *p, const unsigned char *key, int64_t seq_no,
                          int64_t created_at, const char *convo_id, const char *author,
                          int deleted);
void proc_part_forget(proc_part_t *p, const void *key, size_t klen, int is_convo);

#endif
