/* event.c - a framed Event (kchat/chat.h's reader) -> proj_event_t with NUL-terminated
 * strings, all copied into one block. */
#include "event.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/util.h"

/* The copy of the strings: ids as they are, free text with each NUL byte as U+FFFD. */
typedef struct {
    char *p;
} arena_t;

static size_t text_size(kc_str_t s)
{
    size_t n = s.n + 1;
    for (const char *q = s.p; q && (q = memchr(q, 0, (size_t)(s.p + s.n - q))); q++)
        n += 2;
    return n;
}

static const char *put_text(arena_t *a, kc_str_t s)
{
    char *out = a->p;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i]) {
            *a->p++ = s.p[i];
        } else {
            memcpy(a->p, "\xEF\xBF\xBD", 3);
            a->p += 3;
        }
    }
    *a->p++ = '\0';
    return out;
}

/* An id: 1..PROJ_MAX_ID bytes without NUL. */
static int put_id(arena_t *a, kc_str_t s, const char *field, const char **out, char *errstr,
                  size_t errstr_size)
{
    if (!s.p || s.n == 0 || s.n > PROJ_MAX_ID || memchr(s.p, 0, s.n)) {
        kc_strlcpyf(errstr, errstr_size, "%s is empty, longer than %d bytes or holds NUL", field,
                    PROJ_MAX_ID);
        return -1;
    }
    *out = put_text(a, s);
    return 0;
}

static proj_ev_kind_t kind_of(kc_chat_event_kind_t k)
{
    switch (k) {
    case KC_EV_CONVERSATION_CREATED: return EV_CREATED;
    case KC_EV_MEMBERS_ADDED: return EV_ADDED;
    case KC_EV_MEMBERS_REMOVED: return EV_REMOVED;
    case KC_EV_MESSAGE_CREATED: return EV_MESSAGE;
    case KC_EV_MESSAGE_EDITED: return EV_EDITED;
    case KC_EV_MESSAGE_DELETED: return EV_DELETED;
    case KC_EV_READ_MARKER_SET: return EV_READ;
    case KC_EV_CONVERSATION_UPDATED: return EV_UPDATED;
    case KC_EV_ROLE_CHANGED: return EV_ROLE;
    case KC_EV_REACTION_CHANGED: return EV_REACTION;
    case KC_EV_COMMAND_REJECTED: break;
    }
    return EV_REJECTED;
}

int proj_event_decode(kc_schemas_t *s, const void *buf, size_t len, proj_event_t *ev, char *errstr,
                      size_t errstr_size)
{
    memset(ev, 0, sizeof(*ev));
    kc_chat_event_t ce;
    if (kc_chat_event_decode(s, buf, len, &ce, errstr, errstr_size) != 0)
        return -EBADMSG;
    ev->kind = kind_of(ce.kind);
    ev->type = kc_chat_event_kind_name(ce.kind);
    ev->at = ce.occurred_at;
    ev->seq_no = ce.seq_no;
    int has_members = ev->kind == EV_CREATED || ev->kind == EV_ADDED || ev->kind == EV_REMOVED;
    int has_seq = ev->kind == EV_MESSAGE || ev->kind == EV_EDITED || ev->kind == EV_DELETED ||
                  ev->kind == EV_READ || ev->kind == EV_REACTION;
    if (has_seq && ev->seq_no < 1) {
        kc_strlcpyf(errstr, errstr_size, "seq_no is below 1");
        return -EBADMSG;
    }
    if (ev->kind == EV_REMOVED && ev->seq_no < 0) {
        kc_strlcpyf(errstr, errstr_size, "seq_no is negative");
        return -EBADMSG;
    }
    if (ev->kind == EV_MESSAGE && ce.has_reply_to) {
        if (ce.reply_to < 1 || ce.reply_to >= ev->seq_no) {
            kc_strlcpyf(errstr, errstr_size, "reply_to is not an earlier seq_no");
            return -EBADMSG;
        }
        ev->reply_to = ce.reply_to;
    }

    /* One block for every string: the sizes first (members checked on the way). */
    const kc_str_t strs[] = {ce.event_id,      ce.convo_id,     ce.actor_id, ce.command_id,
                             ce.origin,        ce.title,        ce.topic,    ce.promoted,
                             ce.user_id,       ce.server_msg_id, ce.client_msg_id,
                             ce.content,       ce.content_type, ce.reason,   ce.message,
                             ce.emoji,         ce.previous};
    size_t size = 0;
    for (size_t i = 0; i < KC_ARRAY_LEN(strs); i++)
        size += text_size(strs[i]);
    kc_buf_t atts = {0};
    if (ev->kind == EV_MESSAGE && ce.attachments.count) {
        kc_chat_atts_json(&atts, ce.attachments);
        size += atts.len + 1;
    }
    size_t ncounts = ev->kind == EV_REACTION ? ce.ncounts : 0;
    for (size_t i = 0; i < ncounts; i++)
        size += text_size(ce.counts[i].emoji);
    size_t nmembers = 0;
    if (has_members) {
        kc_chat_strs_t it = ce.members;
        kc_str_t m;
        int rc;
        while ((rc = kc_chat_strs_next(&it, &m)) == 1) {
            if (m.n == 0 || m.n > PROJ_MAX_ID || memchr(m.p, 0, m.n)) {
                kc_strlcpyf(errstr, errstr_size, "members[%zu] is not a valid id", nmembers);
                kc_buf_free(&atts);
                return -EBADMSG;
            }
            size += m.n + 1;
            nmembers++;
        }
        if (rc < 0) {
            kc_strlcpyf(errstr, errstr_size, "members is malformed");
            kc_buf_free(&atts);
            return -EBADMSG;
        }
    }
    /* The members' pointers, the counts (both 8-byte aligned), then the strings. */
    size_t counts_at = (nmembers + 1) * sizeof(char *);
    size_t strings_at = counts_at + ncounts * sizeof(proj_count_t);
    ev->mem = kc_xmalloc(strings_at + size);
    ev->members = (const char **)ev->mem;
    arena_t a = {ev->mem + strings_at};

    if (put_id(&a, ce.event_id, "event_id", &ev->event_id, errstr, errstr_size) ||
        put_id(&a, ce.convo_id, "convo_id", &ev->convo_id, errstr, errstr_size) ||
        put_id(&a, ce.actor_id, "actor_id", &ev->actor_id, errstr, errstr_size) ||
        put_id(&a, ce.command_id, "command_id", &ev->command_id, errstr, errstr_size) ||
        put_id(&a, ce.origin, "origin", &ev->origin, errstr, errstr_size))
        goto fail;
    switch (ev->kind) {
    case EV_CREATED:
        ev->title = put_text(&a, ce.title);
        break;
    case EV_UPDATED:
        /* Either may be null: that one is left as it is. */
        ev->title = ce.title.p ? put_text(&a, ce.title) : NULL;
        ev->topic = ce.topic.p ? put_text(&a, ce.topic) : NULL;
        break;
    case EV_ROLE:
        if (put_id(&a, ce.user_id, "user_id", &ev->user_id, errstr, errstr_size))
            goto fail;
        ev->role = kc_role_name(ce.role);
        break;
    case EV_REMOVED:
        if (ce.promoted.p &&
            put_id(&a, ce.promoted, "promoted", &ev->promoted, errstr, errstr_size))
            goto fail;
        break;
    case EV_MESSAGE:
        if (put_id(&a, ce.server_msg_id, "server_msg_id", &ev->server_msg_id, errstr,
                   errstr_size) ||
            put_id(&a, ce.client_msg_id, "client_msg_id", &ev->client_msg_id, errstr,
                   errstr_size) ||
            put_id(&a, ce.content_type, "content_type", &ev->content_type, errstr, errstr_size))
            goto fail;
        ev->content = put_text(&a, ce.content);
        if (atts.len)
            ev->attachments = put_text(&a, (kc_str_t){atts.data, atts.len});
        break;
    case EV_EDITED:
        ev->content = put_text(&a, ce.content);
        break;
    case EV_REACTION: {
        /* The emojis are stored and compared as they are: none may be empty or hold NUL (a
         * Postgres text cannot), whatever else the processor's rules allow. */
        if ((ce.emoji.p && put_id(&a, ce.emoji, "emoji", &ev->emoji, errstr, errstr_size)) ||
            (ce.previous.p &&
             put_id(&a, ce.previous, "previous", &ev->previous, errstr, errstr_size)))
            goto fail;
        proj_count_t *counts = (proj_count_t *)(void *)(ev->mem + counts_at);
        for (size_t i = 0; i < ncounts; i++) {
            if (put_id(&a, ce.counts[i].emoji, "counts' emoji", &counts[i].emoji, errstr,
                       errstr_size))
                goto fail;
            counts[i].count = ce.counts[i].count;
        }
        ev->counts = counts;
        ev->ncounts = ncounts;
        break;
    }
    case EV_REJECTED:
        ev->reason = put_text(&a, ce.reason);
        ev->message = put_text(&a, ce.message);
        break;
    default:
        break;
    }
    if (has_members) {
        kc_chat_strs_t it = ce.members;
        kc_str_t m;
        while (kc_chat_strs_next(&it, &m) == 1)
            ev->members[ev->nmembers++] = put_text(&a, m);
    }
    ev->members[ev->nmembers] = NULL;
    kc_buf_free(&atts);
    return 0;
fail:
    kc_buf_free(&atts);
    proj_event_free(ev);
    return -EBADMSG;
}

void proj_event_free(proj_event_t *ev)
{
    free(ev->mem);
    ev->mem = NULL;
    ev->members = NULL;
    ev->nmembers = 0;
    ev->counts = NULL;
    ev->ncounts = 0;
}
