/* decide.h - what the notifier decides without asking anyone: whether a message mentions a
 * member, what a notification says, the names that make its sends idempotent, where a send
 * goes and when a failed one is tried again. Pure functions, unit-tested
 * (tests/unit/test_notifier.c).
 */
#ifndef NT_DECIDE_H
#define NT_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/buf.h"

/* What a notification may show (--content). */
typedef enum {
    NT_CONTENT_PREVIEW, /* the conversation, the sender and the text */
    NT_CONTENT_SENDER,  /* the conversation and the sender, never the text */
    NT_CONTENT_NONE,    /* "New messages" and nothing else (the ids to open it) */
} nt_content_t;

/* "preview", "sender", "none" -> 0..2; -1 for anything else. */
int nt_content_parse(const char *s);

/* True when text[0..len) holds "@" username as a word of its own: the '@' starts the text or
 * follows a character that cannot be part of a name, and the name is followed by the end or by
 * such a character. ASCII letters compare without case; other bytes as they are. */
int nt_mentions(const char *text, size_t len, const char *username);

/* The most of a message's text a notification keeps, in bytes (cut on a character). */
#define NT_TEXT_MAX 512
/* The length of s[0..len) cut to at most max bytes without splitting a UTF-8 character. */
size_t nt_utf8_cut(const char *s, size_t len, size_t max);

/* A notification: what notify_pending holds for one member and one conversation. */
typedef struct {
    const char *user_id;
    const char *convo_id;
    const char *title;        /* the conversation's ("" when it has none: a direct one) */
    int64_t first_seq, last_seq;
    int64_t count;
    const char *const *senders; /* usernames, first come first */
    size_t nsenders;
    const char *last_sender;  /* username */
    const char *last_content; /* "" when the message had only files */
    int mention;
} nt_note_t;

/* The push message's payload, what the client's service worker shows:
 * {"type":"message","convo_id","title","body","count","first_seq","last_seq","sender",
 *  "mention","url":"/c/<convo_id>/m/<first_seq>","tag":"convo:<convo_id>"}; "sender" only
 * when the setting shows senders. */
void nt_push_payload(const nt_note_t *n, nt_content_t c, kc_buf_t *out);

/* A webhook's body: {"type":"message.notification","timestamp":"<ISO 8601>","data":{
 * "user_id", the push payload's fields, "senders":[...] (not with none)}}. */
void nt_webhook_payload(const nt_note_t *n, nt_content_t c, int64_t now_ms, kc_buf_t *out);

/* The id of the sends of one notification: "msg_" and 32 hex digits of a SHA-256 over the
 * member, the conversation and the first message; the same every time it is made, so a
 * receiver drops a repeat (webhook-id). out holds 37 bytes. */
void nt_msg_id(const char *user_id, const char *convo_id, int64_t first_seq, char out[37]);

/* The Topic header of a conversation's pushes (RFC 8030 section 5.4: at most 32 characters
 * of base64url): a push service that still holds an undelivered one replaces it. out holds
 * 33 bytes. */
void nt_topic(const char *convo_id, char out[33]);

/* scheme://host[:port] of an http(s) URL, lower-cased scheme and host, into out. 0, or -1
 * when url is not http(s)://host... or out is too small. */
int nt_origin(const char *url, char *out, size_t size);

/* What a target answered, for kchat_notifier_responses_total{status}: 2xx, 404, 410, 429,
 * other 4xx, 5xx, none (no answer), other (1xx, 3xx): the index of its name. */
#define NT_STATUS_CLASSES 8
extern const char *const nt_status_names[NT_STATUS_CLASSES];
int nt_status_class(long status);

/* How long to wait before attempt number attempts + 1 of a send (attempts >= 1 made): the
 * server's Retry-After when it gave one (at most max_ms), else full jitter over an
 * exponential backoff: a draw in [min_ms, min(max_ms, min_ms * 2^(attempts-1))]. r is a
 * uniform draw in [0, 1). */
int64_t nt_retry_ms(int attempts, long long retry_after_s, int64_t min_ms, int64_t max_ms,
                    double r);

#endif
