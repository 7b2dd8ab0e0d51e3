/* chat.h - the chat's wire formats in one place, read and written without a generic Avro
 * value in between.
 *
 * kchat's records are Avro in the Confluent wire format (magic byte 0, 4-byte big-endian
 * schema id, Avro binary; schemas/ and registry.json). lib/avro.c reads and writes any of
 * them through avro-c's generic values, which allocate per field; the records on the write
 * and delivery path (one per chat message, several per delivery) are read and written here
 * instead, straight between bytes and plain structs, with every length checked against the
 * input. Writers always write the newest version of their subject; readers take every
 * version in registry.json (the version is found from the schema id) and give the newest
 * shape, with the defaults for fields an older writer lacked. A test writes and reads each
 * format with fastavro, so the bytes are the ones any Avro library reads.
 *
 * Strings a reader returns point into the input (not NUL-terminated; kc_str_t carries the
 * length); they live as long as the input does.
 */
#ifndef KCHAT_CHAT_H
#define KCHAT_CHAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kchat/avro.h"
#include "kchat/buf.h"

/* ---- Avro binary, the few primitives kchat's schemas use ---- */

void kc_avro_put_header(kc_buf_t *b, int32_t schema_id);
void kc_avro_put_long(kc_buf_t *b, int64_t v); /* int and long: zig-zag varint */
void kc_avro_put_str(kc_buf_t *b, const char *s, size_t n); /* string and bytes */
void kc_avro_put_bool(kc_buf_t *b, int v);

typedef struct {
    const char *p;
    size_t n;
} kc_str_t;

/* A NUL-terminated string as a kc_str_t (NULL: absent). */
static inline kc_str_t kc_str(const char *s)
{
    return (kc_str_t){s, s ? strlen(s) : 0};
}

/* A reader over one record: every read checks what is left; the first failure sets err and
 * makes every later read fail too, so a decoder checks once at the end. */
typedef struct {
    const unsigned char *p, *end;
    int err;
} kc_avro_rd_t;

int64_t kc_avro_rd_long(kc_avro_rd_t *r);
kc_str_t kc_avro_rd_str(kc_avro_rd_t *r);
int kc_avro_rd_bool(kc_avro_rd_t *r);
/* A union's branch index, checked against the number of branches. */
int kc_avro_rd_branch(kc_avro_rd_t *r, int nbranches);
/* Array blocks: the number of items in the next block (0: the array ended). */
int64_t kc_avro_rd_block(kc_avro_rd_t *r);
/* Skips an array of strings. */
void kc_avro_skip_strs(kc_avro_rd_t *r);

/* Opens a framed record: checks the magic byte and size, finds the schema id's subject and
 * version (and that the subject is the one expected). 0, or -1 with errstr. */
int kc_avro_open(const kc_schemas_t *s, const void *buf, size_t len, const char *subject,
                 kc_avro_rd_t *r, int *version, char *errstr, size_t errstr_size);

/* An array of strings still in its encoded form: iterate with kc_chat_strs_next. */
typedef struct {
    kc_avro_rd_t rd;
    int64_t left; /* items left in the current block */
    size_t count; /* all items (counted when read) */
} kc_chat_strs_t;

/* The next string, 1; 0 at the end; -1 when malformed. */
int kc_chat_strs_next(kc_chat_strs_t *it, kc_str_t *out);

/* ---- Delivery (chat.deliveries-value): processor -> gateway ---- */

typedef struct {
    kc_str_t sender_id, client_msg_id, status;
    kc_str_t server_msg_id, error_code, error_message; /* p NULL: absent */
    int64_t seq_no;
    int has_seq;
} kc_chat_ack_t;

#define KC_CHAT_MAX_SLOTS 64

typedef struct {
    kc_str_t convo_id;
    kc_chat_strs_t recipients;
    const void *event; /* framed Event bytes, NULL for an ack alone */
    size_t event_len;
    int has_ack;
    kc_chat_ack_t ack;
    int32_t actor_slots[KC_CHAT_MAX_SLOTS];
    size_t nactor_slots;
} kc_chat_item_t;

typedef struct {
    kc_avro_rd_t rd;
    int version;
    int32_t slot;
    int single;  /* a version-1 record (or a version-2 one without items): one item */
    int64_t left; /* items left in the current block */
    int done;
} kc_chat_delivery_t;

/* Opens a Delivery record; then kc_chat_delivery_next gives its items one by one. */
int kc_chat_delivery_open(const kc_schemas_t *s, const void *buf, size_t len,
                          kc_chat_delivery_t *d, char *errstr, size_t errstr_size);
/* The next item: 1, 0 at the end (the whole record was read), -1 when malformed. The
 * item's recipients are iterated with kc_chat_strs_next (they were checked already). */
int kc_chat_delivery_next(kc_chat_delivery_t *d, kc_chat_item_t *it);

/* Writing a batch: begin, one kc_chat_delivery_put per item, end. */
void kc_chat_delivery_begin(kc_buf_t *b, int32_t schema_id, int32_t slot);
typedef struct {
    const char *sender_id, *client_msg_id, *status;
    const char *server_msg_id, *error_code, *error_message; /* NULL: absent */
    int64_t seq_no;
    int has_seq;
} kc_chat_ack_out_t;
void kc_chat_delivery_put(kc_buf_t *b, const char *convo_id, const char *const *recipients,
                          size_t nrecipients, const void *event, size_t event_len,
                          const kc_chat_ack_out_t *ack, const int32_t *actor_slots,
                          size_t nactor_slots);
void kc_chat_delivery_end(kc_buf_t *b);

/* ---- Event (chat.events-value): the source of truth ---- */

typedef enum {
    KC_EV_CONVERSATION_CREATED,
    KC_EV_MEMBERS_ADDED,
    KC_EV_MEMBERS_REMOVED,
    KC_EV_MESSAGE_CREATED,
    KC_EV_MESSAGE_EDITED,
    KC_EV_MESSAGE_DELETED,
    KC_EV_READ_MARKER_SET,
    KC_EV_COMMAND_REJECTED,
    KC_EV_CONVERSATION_UPDATED, /* version 2 */
    KC_EV_ROLE_CHANGED,         /* version 2 */
    KC_EV_REACTION_CHANGED,     /* version 4 */
} kc_chat_event_kind_t;

/* Reactions: one per member per message (replaced by the next), each 1 to
 * KC_CHAT_MAX_REACTION_BYTES of UTF-8 and at most KC_CHAT_MAX_REACTION_CHARS code points,
 * without spaces or control characters; at most KC_CHAT_MAX_REACTION_KINDS different ones on
 * a message. */
#define KC_CHAT_MAX_REACTION_BYTES 64
#define KC_CHAT_MAX_REACTION_CHARS 16
#define KC_CHAT_MAX_REACTION_KINDS 20
int kc_chat_reaction_valid(const char *s, size_t n);

/* Attachments (version 5 of SendMessage and MessageCreated): the files a message carries,
 * checked by kchat-api against the stored objects. The daemons keep them as the Avro bytes of
 * the array (kc_chat_atts_t), checked when read: the processor copies a command's into its
 * event unread, and readers turn them into JSON with kc_chat_atts_json. */
#define KC_CHAT_MAX_ATTACHMENTS 10
#define KC_CHAT_ATT_ID_MAX 64      /* bytes of an attachment id */
#define KC_CHAT_ATT_KEY_MAX 512    /* bytes of an object key */
#define KC_CHAT_ATT_NAME_MAX 255   /* bytes of a file name */
#define KC_CHAT_ATT_CTYPE_MAX 127  /* bytes of a media type */
typedef struct {
    kc_str_t id, key, name, content_type;
    kc_str_t thumb_key; /* p NULL: null (not an image) */
    int64_t size;
    int32_t width, height; /* 0: null */
} kc_chat_attachment_t;
typedef struct {
    const char *p; /* the array's Avro bytes (NULL, n 0: none, written as an empty array) */
    size_t n;
    size_t count;
} kc_chat_atts_t;
/* Appends the Avro array of atts[0..n) to b (for a command's attachments). */
void kc_chat_atts_put(kc_buf_t *b, const kc_chat_attachment_t *atts, size_t n);
/* Reads checked attachment bytes into out (at most KC_CHAT_MAX_ATTACHMENTS); the count. */
size_t kc_chat_atts_read(kc_chat_atts_t raw, kc_chat_attachment_t *out);
/* Appends the JSON array of the attachments: [{"id","key","name","size","content_type",
 * "width","height","thumb_key"}] (width, height, thumb_key null for other files). */
void kc_chat_atts_json(kc_buf_t *b, kc_chat_atts_t raw);

/* One emoji of a message and how many members chose it (ReactionChanged.counts). */
typedef struct {
    kc_str_t emoji;
    int32_t count;
} kc_chat_count_t;

/* A member's role (the Avro enum Role, in its symbols' order). The creator is the owner. */
typedef enum { KC_ROLE_OWNER, KC_ROLE_ADMIN, KC_ROLE_MEMBER, KC_ROLE_N } kc_role_t;

/* "owner", "admin", "member"; kc_role_parse gives -1 for anything else. */
const char *kc_role_name(kc_role_t r);
int kc_role_parse(const char *s, size_t n);

/* The record name of a body ("MessageCreated"). */
const char *kc_chat_event_kind_name(kc_chat_event_kind_t k);

/* A decoded Event: the envelope, then the body's fields (those of other kinds stay empty).
 * client_msg_id is the message's (MessageCreated) or the refused one's (CommandRejected of a
 * SendMessage; p NULL when absent). */
typedef struct {
    int version;
    kc_chat_event_kind_t kind;
    kc_str_t event_id, convo_id, actor_id, command_id, origin;
    int64_t occurred_at;
    kc_str_t title;           /* ConversationCreated; ConversationUpdated (p NULL: unchanged) */
    kc_str_t topic;           /* ConversationUpdated (p NULL: unchanged) */
    kc_chat_strs_t members;   /* ConversationCreated, MembersAdded, MembersRemoved */
    int64_t seq_no;           /* MessageCreated, MessageEdited, MessageDeleted, ReadMarkerSet;
                                 MembersRemoved: readable up to (0 before version 2) */
    kc_str_t promoted;        /* MembersRemoved: the new owner, p NULL when none */
    kc_str_t user_id;         /* RoleChanged */
    kc_role_t role;           /* RoleChanged */
    kc_str_t server_msg_id, client_msg_id, content, content_type;
    int64_t reply_to;         /* MessageCreated: the seq_no it answers, when has_reply_to */
    int has_reply_to;         /* 0: null (and before version 3) */
    kc_chat_atts_t attachments; /* MessageCreated (none before version 5) */
    kc_str_t reason, message, command_type; /* CommandRejected */
    kc_str_t emoji, previous; /* ReactionChanged (p NULL: null); seq_no is the message's */
    kc_chat_count_t counts[KC_CHAT_MAX_REACTION_KINDS]; /* ReactionChanged, most chosen first */
    size_t ncounts;
    kc_str_t type; /* the envelope's copy of the body's record name (version 6 on; empty
                    * before); kind is what readers go by */
} kc_chat_event_t;

/* Decodes a framed Event. 0, or -1 with errstr. */
int kc_chat_event_decode(const kc_schemas_t *s, const void *buf, size_t len, kc_chat_event_t *ev,
                         char *errstr, size_t errstr_size);

/* What an Event is made of, for the writer (the processor). Strings with their lengths;
 * members as an array of NUL-terminated ids. */
typedef struct {
    kc_chat_event_kind_t kind;
    kc_str_t event_id, convo_id, actor_id, command_id, origin;
    int64_t occurred_at;
    kc_str_t title, topic; /* ConversationUpdated: p NULL writes null */
    char *const *members;
    size_t nmembers;
    int64_t seq_no;
    kc_str_t promoted, user_id; /* MembersRemoved (p NULL: null); RoleChanged */
    kc_role_t role;
    kc_str_t server_msg_id, client_msg_id, content, content_type;
    int64_t reply_to; /* MessageCreated, when has_reply_to (else null) */
    int has_reply_to;
    kc_chat_atts_t attachments; /* MessageCreated */
    kc_str_t reason, message, command_type; /* client_msg_id.p NULL: null */
    kc_str_t emoji, previous; /* ReactionChanged (p NULL: null) */
    const kc_chat_count_t *counts;
    size_t ncounts;
    kc_str_t type; /* the envelope's type; p NULL (what the processor leaves): the body's
                    * record name */
} kc_chat_event_out_t;

/* Appends the framed Event (schema_id: the subject's newest, kc_schemas_current_id). */
void kc_chat_event_encode(kc_buf_t *b, int32_t schema_id, const kc_chat_event_out_t *ev);

/* ---- Command (chat.commands-value): gateway and API -> processor ---- */

typedef enum {
    KC_CMD_SEND_MESSAGE,
    KC_CMD_CREATE_CONVERSATION,
    KC_CMD_ADD_MEMBERS,
    KC_CMD_REMOVE_MEMBERS,
    KC_CMD_EDIT_MESSAGE,
    KC_CMD_DELETE_MESSAGE,
    KC_CMD_SET_READ_MARKER,
    KC_CMD_UPDATE_CONVERSATION, /* version 2 */
    KC_CMD_SET_ROLE,            /* version 2 */
    KC_CMD_SET_REACTION,        /* version 4 */
} kc_chat_command_kind_t;

/* The record name of a body ("SendMessage"). */
const char *kc_chat_command_kind_name(kc_chat_command_kind_t k);

/* A Command, as read (strings point into the input) or to write (strings the caller's). */
typedef struct {
    int version;
    kc_chat_command_kind_t kind;
    kc_str_t command_id, convo_id, sender_id, origin;
    int64_t issued_at;
    kc_str_t client_msg_id, content, content_type; /* SendMessage; content: EditMessage */
    int64_t reply_to; /* SendMessage: the seq_no it answers, when has_reply_to (else null) */
    int has_reply_to;
    kc_chat_atts_t attachments; /* SendMessage (none before version 5) */
    kc_str_t title; /* CreateConversation; UpdateConversation (p NULL: null) */
    kc_str_t topic; /* UpdateConversation (p NULL: null) */
    kc_str_t user_id; /* SetRole */
    kc_role_t role;   /* SetRole */
    kc_chat_strs_t members; /* read: CreateConversation, AddMembers, RemoveMembers */
    const char *const *members_out; /* write: the same, NUL-terminated */
    size_t nmembers_out;
    int64_t seq_no; /* EditMessage, DeleteMessage, SetReadMarker, SetReaction */
    kc_str_t emoji; /* SetReaction (p NULL: null, the sender's reaction removed) */
} kc_chat_command_t;

/* Decodes a framed Command. 0, or -1 with errstr (the processor dead-letters the record and
 * says why: magic byte, unknown schema id, another subject's record, malformed). */
int kc_chat_command_decode(const kc_schemas_t *s, const void *buf, size_t len,
                           kc_chat_command_t *cmd, char *errstr, size_t errstr_size);
/* Appends the framed Command (schema_id: the subject's newest). */
void kc_chat_command_encode(kc_buf_t *b, int32_t schema_id, const kc_chat_command_t *cmd);

/* ---- Contracts between the daemons: Redis names and limits ----
 * Spelled once here (docs/architecture.md, "Contracts between the daemons"). C strings
 * concatenate them; the Lua scripts have them spliced into their text the same way. */

/* Presence and routing (owner: the gateways; the processor reads routes). */
#define KC_REDIS_ROUTE "kchat:route:"       /* + user id: hash, slot -> expiry (ms) */
#define KC_REDIS_LASTSEEN "kchat:lastseen:" /* + user id: ms the user was last connected */
#define KC_REDIS_PRESENCE "kchat:presence:" /* + user id: channel of the user's presence */
#define KC_REDIS_GW "kchat:gw:"             /* + slot: channel of a gateway's typing, receipts */

/* The read model (owner: the projector; the API and the gateways read it): keys are
 * KC_REDIS_RM "<gen>:" name [":" id], the generation read from KC_REDIS_RM_GEN. */
#define KC_REDIS_RM "kchat:rm:"
#define KC_REDIS_RM_GEN "kchat:rm:gen"
#define KC_RM_CONVOS "convos"     /* + user id: sorted set of conversation ids */
#define KC_RM_CONVO "convo"       /* + convo id: hash of the conversation */
#define KC_RM_MEMBERS "members"   /* + convo id: set of member ids */
#define KC_RM_READ "read"         /* + convo id: hash, user id -> read_seq */
#define KC_RM_ROLES "roles"       /* + convo id: hash, user id -> role, owners and admins only */
#define KC_RM_RECENT "recent"     /* + convo id: sorted set of the last messages */
#define KC_RM_LASTSEEN "lastseen" /* hash, user id -> ms of the user's latest event */
#define KC_RM_OFFSETS "offsets"   /* hash, partition -> next offset of chat.events applied */

/* Limits every daemon on the path of a message applies alike (the gateway refuses early what
 * the processor would, the API lists no more members than the processor takes): the
 * defaults and highest values of their options. */
#define KC_CHAT_MAX_CONTENT_BYTES "16384"
#define KC_CHAT_MAX_CONTENT_BYTES_TOP 900000
#define KC_CHAT_MAX_MEMBERS "1000"
#define KC_CHAT_MAX_MEMBERS_TOP 100000

#endif
