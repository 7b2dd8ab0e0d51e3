/* state.c - per-partition conversation state, the dedupe window, and the command rules. */
#include "state.h"

#include <sodium.h>
#include <stdarg.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define MAX_TITLE_BYTES 256
#define MAX_TOPIC_BYTES 1024

/* A deleted message keeps no reactions. */
static void dd_clear_reactions(proc_dd_t *d)
{
    for (size_t i = 0; i < d->nreactions; i++) {
        free(d->reactions[i].user);
        free(d->reactions[i].emoji);
    }
    free(d->reactions);
    d->reactions = NULL;
    d->nreactions = d->reactions_cap = 0;
}

static void dd_free(proc_dd_t *d)
{
    dd_clear_reactions(d);
    free(d->author);
    free(d->msg_key);
    free(d);
}

/* "convo_id NUL seq_no": the key of a message in proc_part_t.msgs. */
static size_t msg_key(char *out, size_t size, const char *convo, size_t convo_len, int64_t seq)
{
    int n = snprintf(out, size, "%.*s%c%lld", (int)convo_len, convo, '\0', (long long)seq);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* Drops a dedupe node from the indexes that still point at it (not from the FIFO). */
static void dd_unindex(proc_part_t *p, proc_dd_t *d)
{
    if (kc_map_get(p->dedupe, d->key, PROC_DEDUPE_KEY_BYTES) == d)
        (void)kc_map_remove(p->dedupe, d->key, PROC_DEDUPE_KEY_BYTES);
    if (d->msg_key && kc_map_get(p->msgs, d->msg_key, d->msg_key_len) == d)
        (void)kc_map_remove(p->msgs, d->msg_key, d->msg_key_len);
}

static void convo_free(void *v)
{
    proc_convo_t *c = v;
    for (size_t i = 0; i < c->nmembers; i++)
        free(c->members[i]);
    free(c->members);
    free(c->roles);
    free(c->id);
    free(c);
}

proc_part_t *proc_part_new(int32_t partition)
{
    proc_part_t *p = kc_xcalloc(1, sizeof(*p));
    p->partition = partition;
    p->convos = kc_map_new();
    p->dedupe = kc_map_new();
    p->msgs = kc_map_new();
    return p;
}

void proc_part_destroy(proc_part_t *p)
{
    if (!p)
        return;
    kc_map_destroy(p->convos, convo_free);
    kc_map_destroy(p->dedupe, NULL);
    kc_map_destroy(p->msgs, NULL);
    proc_dd_t *d;
    while ((d = KC_SLIST_ENTRY(kc_slist_pop_front(&p->window), proc_dd_t, link)))
        dd_free(d);
    free(p->dirty);
    free(p->resave);
    free(p->blocks);
    free(p);
}

void proc_dedupe_key(const char *convo, size_t convo_len, const char *sender, size_t sender_len,
                     const char *client_msg_id, size_t cmid_len,
                     unsigned char out[PROC_DEDUPE_KEY_BYTES])
{
    crypto_generichash_state st;
    uint64_t lens[3] = {convo_len, sender_len, cmid_len};
    crypto_generichash_init(&st, NULL, 0, PROC_DEDUPE_KEY_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)lens, sizeof(lens));
    crypto_generichash_update(&st, (const unsigned char *)convo, convo_len);
    crypto_generichash_update(&st, (const unsigned char *)sender, sender_len);
    crypto_generichash_update(&st, (const unsigned char *)client_msg_id, cmid_len);
    crypto_generichash_final(&st, out, PROC_DEDUPE_KEY_BYTES);
}

/* ---- helpers ---- */

static int valid_text(const char *s, size_t len, long long max)
{
    return s && (long long)len <= max && strlen(s) == len && kc_utf8_valid(s, len);
}

static int valid_id(const char *s, size_t len, long long max)
{
    if (!s || len == 0 || (long long)len > max || strlen(s) != len || !kc_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static ssize_t find_member(const proc_convo_t *c, const char *id, size_t len)
{
    for (size_t i = 0; i < c->nmembers; i++)
        if (strlen(c->members[i]) == len && memcmp(c->members[i], id, len) == 0)
            return (ssize_t)i;
    return -1;
}

static void add_member(proc_convo_t *c, const char *id, size_t len, kc_role_t role)
{
    if (c->nmembers == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->members = kc_xrealloc(c->members, c->cap * sizeof(char *));
        c->roles = kc_xrealloc(c->roles, c->cap);
    }
    c->roles[c->nmembers] = (unsigned char)role;
    c->members[c->nmembers++] = kc_xstrndup(id, len);
}

/* Removes members[at], keeping the others in the order they joined. */
static void drop_member(proc_convo_t *c, size_t at)
{
    free(c->members[at]);
    memmove(c->members + at, c->members + at + 1, (c->nmembers - at - 1) * sizeof(char *));
    memmove(c->roles + at, c->roles + at + 1, c->nmembers - at - 1);
    c->nmembers--;
}

static size_t count_role(const proc_convo_t *c, kc_role_t role)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nmembers; i++)
        n += c->roles[i] == role;
    return n;
}

/* A conversation left without an owner passes ownership on: to the oldest admin, else to the
 * oldest member. Returns the new owner's index, or -1 (an owner is there, or nobody). */
static ssize_t hand_on(proc_convo_t *c)
{
    if (!c->nmembers || count_role(c, KC_ROLE_OWNER))
        return -1;
    ssize_t at = 0;
    for (size_t i = 0; i < c->nmembers; i++) {
        if (c->roles[i] == KC_ROLE_ADMIN) {
            at = (ssize_t)i;
            break;
        }
    }
    c->roles[at] = KC_ROLE_OWNER;
    return at;
}

static int manages(kc_role_t r)
{
    return r == KC_ROLE_OWNER || r == KC_ROLE_ADMIN;
}

static void mark_dirty(proc_part_t *p, proc_convo_t *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    if (p->ndirty == p->dirty_cap) {
        p->dirty_cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
        p->dirty = kc_xrealloc(p->dirty, p->dirty_cap * sizeof(proc_convo_t *));
    }
    p->dirty[p->ndirty++] = c;
}

static proc_convo_t *convo_new(proc_part_t *p, const char *id, size_t len)
{
    proc_convo_t *c = kc_xcalloc(1, sizeof(*c));
    c->id = kc_xstrndup(id, len);
    (void)kc_map_put(p->convos, id, len, c);
    return c;
}

const char *const proc_reject_reasons[PROC_REJECT_N] = {
    [PROC_REJECT_INVALID] = "invalid",
    [PROC_REJECT_TOO_LARGE] = "too_large",
    [PROC_REJECT_CONVERSATION_EXISTS] = "conversation_exists",
    [PROC_REJECT_NO_SUCH_CONVERSATION] = "no_such_conversation",
    [PROC_REJECT_NOT_MEMBER] = "not_member",
    [PROC_REJECT_NO_SUCH_MESSAGE] = "no_such_message",
    [PROC_REJECT_TOO_OLD] = "too_old",
    [PROC_REJECT_NOT_AUTHOR] = "not_author",
    [PROC_REJECT_DELETED] = "deleted",
    [PROC_REJECT_DIRECT] = "direct_conversation",
    [PROC_REJECT_NOT_ALLOWED] = "not_allowed",
    [PROC_REJECT_LAST_OWNER] = "last_owner",
    [PROC_REJECT_NO_SUCH_MEMBER] = "no_such_member",
    [PROC_REJECT_TOO_MANY_REACTIONS] = "too_many_reactions",
};

static int reject(proc_outcome_t *out, proc_reject_t why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reject(proc_outcome_t *out, proc_reject_t why, const char *fmt, ...)
{
    out->kind = OUT_REJECTED;
    out->reason = proc_reject_reasons[why];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(out->message, sizeof(out->message), fmt, ap) < 0)
        out->message[0] = '\0';
    va_end(ap);
    return 0;
}

static void out_add(proc_outcome_t *out, const char *id, size_t len)
{
    out->members = kc_xrealloc(out->members, (out->nmembers + 1) * sizeof(char *));
    out->members[out->nmembers++] = kc_xstrndup(id, len);
}

static int check_members(const proc_cmd_t *cmd, const proc_limits_t *lim, proc_outcome_t *out)
{
    if ((long long)cmd->nmembers > lim->max_members)
        return reject(out, PROC_REJECT_TOO_LARGE, "at most %lld members", lim->max_members), -1;
    for (size_t i = 0; i < cmd->nmembers; i++)
        if (!valid_id(cmd->members[i], cmd->member_lens[i], lim->max_id_bytes))
            return reject(out, PROC_REJECT_INVALID, "member %zu is not a valid user id", i), -1;
    return 0;
}

static void set_recipients(proc_outcome_t *out, const proc_convo_t *c)
{
    out->recipients = c->members;
    out->nrecipients = c->nmembers;
}

/* An entry changed after it was saved: the next checkpoint writes it again. */
static void resave(proc_part_t *p, const proc_dd_t *d)
{
    if (p->nresave == p->resave_cap) {
        p->resave_cap = p->resave_cap ? p->resave_cap * 2 : 16;
        p->resave = kc_xrealloc(p->resave, p->resave_cap * PROC_DEDUPE_KEY_BYTES);
    }
    memcpy(p->resave + p->nresave++ * PROC_DEDUPE_KEY_BYTES, d->key, PROC_DEDUPE_KEY_BYTES);
}

/* ---- the rules ---- */

/* A direct conversation ("d_" id) is the one of its pair: its creator and exactly one other
 * user, and its id the pair's (kc_id_direct), so a second request for the same pair, from any
 * API replica, is refused as conversation_exists instead of making another. */
static int check_direct(const proc_cmd_t *cmd, size_t distinct, proc_outcome_t *out)
{
    if (distinct != 2) {
        reject(out, PROC_REJECT_DIRECT,
               "a direct conversation has its creator and exactly one other member");
        return -1;
    }
    const char *other = NULL;
    size_t olen = 0;
    for (size_t i = 0; i < cmd->nmembers && !other; i++)
        if (cmd->member_lens[i] != cmd->sender_id_len ||
            memcmp(cmd->members[i], cmd->sender_id, cmd->sender_id_len) != 0) {
            other = cmd->members[i];
            olen = cmd->member_lens[i];
        }
    char want[KC_ID_MAX];
    if (!other ||
        kc_id_direct(want, sizeof(want), cmd->sender_id, cmd->sender_id_len, other, olen) != 0 ||
        strlen(want) != cmd->convo_id_len || memcmp(want, cmd->convo_id, cmd->convo_id_len) != 0) {
        reject(out, PROC_REJECT_DIRECT, "a direct conversation's id must be its pair's");
        return -1;
    }
    return 0;
}

static int apply_create(proc_part_t *p, const proc_cmd_t *cmd, const proc_limits_t *lim,
                        proc_outcome_t *out)
{
    if (kc_map_get(p->convos, cmd->convo_id, cmd->convo_id_len))
        return reject(out, PROC_REJECT_CONVERSATION_EXISTS, "conversation already exists");
    if (!valid_text(cmd->title, cmd->title_len, MAX_TITLE_BYTES))
        return reject(out, PROC_REJECT_INVALID, "title must be UTF-8 of at most %d bytes",
                      MAX_TITLE_BYTES);
    if (check_members(cmd, lim, out) != 0)
        return 0;
    size_t distinct = 1; /* the creator */
    for (size_t i = 0; i < cmd->nmembers; i++) {
        int seen = cmd->member_lens[i] == cmd->sender_id_len &&
                   memcmp(cmd->members[i], cmd->sender_id, cmd->sender_id_len) == 0;
        for (size_t k = 0; !seen && k < i; k++)
            seen = cmd->member_lens[k] == cmd->member_lens[i] &&
                   memcmp(cmd->members[k], cmd->members[i], cmd->member_lens[i]) == 0;
        distinct += !seen;
    }
    if ((long long)distinct > lim->max_members)
        return reject(out, PROC_REJECT_TOO_LARGE, "a conversation has at most %lld members",
                      lim->max_members);
    if (kc_id_is_direct(cmd->convo_id, cmd->convo_id_len) && check_direct(cmd, distinct, out) != 0)
        return 0;
    proc_convo_t *c = convo_new(p, cmd->convo_id, cmd->convo_id_len);
    add_member(c, cmd->sender_id, cmd->sender_id_len, KC_ROLE_OWNER);
    for (size_t i = 0; i < cmd->nmembers; i++)
        if (find_member(c, cmd->members[i], cmd->member_lens[i]) < 0)
            add_member(c, cmd->members[i], cmd->member_lens[i], KC_ROLE_MEMBER);
    for (size_t i = 0; i < c->nmembers; i++)
        out_add(out, c->members[i], strlen(c->members[i]));
    mark_dirty(p, c);
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

/* The conversation, when it exists and the sender is a member (their role in *role when
 * role is not NULL); else a rejection. */
static proc_convo_t *member_convo_role(proc_part_t *p, const proc_cmd_t *cmd, proc_outcome_t *out,
                                       kc_role_t *role)
{
    proc_convo_t *c = kc_map_get(p->convos, cmd->convo_id, cmd->convo_id_len);
    if (!c) {
        reject(out, PROC_REJECT_NO_SUCH_CONVERSATION, "no such conversation");
        return NULL;
    }
    ssize_t at = find_member(c, cmd->sender_id, cmd->sender_id_len);
    if (at < 0) {
        reject(out, PROC_REJECT_NOT_MEMBER, "the sender is not a member of the conversation");
        return NULL;
    }
    if (role)
        *role = (kc_role_t)c->roles[at];
    return c;
}

static proc_convo_t *member_convo(proc_part_t *p, const proc_cmd_t *cmd, proc_outcome_t *out)
{
    return member_convo_role(p, cmd, out, NULL);
}

static int apply_send(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms,
                      const proc_limits_t *lim, proc_outcome_t *out)
{
    if (!valid_id(cmd->client_msg_id, cmd->client_msg_id_len, lim->max_id_bytes))
        return reject(out, PROC_REJECT_INVALID,
                      "client_msg_id must be 1 to %lld bytes of printable UTF-8",
                      lim->max_id_bytes);
    /* A retry gets the first attempt's outcome, even if the sender has left since. */
    proc_dedupe_key(cmd->convo_id, cmd->convo_id_len, cmd->sender_id, cmd->sender_id_len,
                    cmd->client_msg_id, cmd->client_msg_id_len, out->dedupe_key);
    proc_dd_t *d = kc_map_get(p->dedupe, out->dedupe_key, PROC_DEDUPE_KEY_BYTES);
    proc_convo_t *c = kc_map_get(p->convos, cmd->convo_id, cmd->convo_id_len);
    if (d) {
        out->kind = OUT_DUPLICATE;
        out->seq_no = d->seq_no;
        if (c)
            set_recipients(out, c);
        return 0;
    }
    if (!(c = member_convo(p, cmd, out)))
        return 0;
    if ((long long)cmd->content_len > lim->max_content_bytes)
        return reject(out, PROC_REJECT_TOO_LARGE, "content is larger than %lld bytes",
                      lim->max_content_bytes);
    /* A message carrying files may have no text. */
    if ((cmd->content_len == 0 && !cmd->attachments_count) ||
        (cmd->content_len && !valid_text(cmd->content, cmd->content_len, lim->max_content_bytes)))
        return reject(out, PROC_REJECT_INVALID,
                      "content must be UTF-8, and non-empty unless the message has attachments");
    if (cmd->has_reply_to && (cmd->reply_to < 1 || cmd->reply_to > c->last_seq))
        return reject(out, PROC_REJECT_NO_SUCH_MESSAGE,
                      "reply_to %lld is not an earlier message of the conversation",
                      (long long)cmd->reply_to);
    out->seq_no = ++c->last_seq;
    char sender[1100];
    kc_strlcpyf(sender, sizeof(sender), "%.*s", (int)cmd->sender_id_len, cmd->sender_id);
    proc_part_add_dedupe(p, out->dedupe_key, out->seq_no, now_ms, c->id, sender, 0);
    out->dedupe = proc_part_newest(p);
    mark_dirty(p, c);
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

/* Removing exactly oneself: leaving, which every member may do. */
static int is_leave(const proc_cmd_t *cmd)
{
    return cmd->nmembers == 1 && cmd->member_lens[0] == cmd->sender_id_len &&
           memcmp(cmd->members[0], cmd->sender_id, cmd->sender_id_len) == 0;
}

static int apply_members(proc_part_t *p, const proc_cmd_t *cmd, const proc_limits_t *lim,
                         proc_outcome_t *out)
{
    kc_role_t mine;
    proc_convo_t *c = member_convo_role(p, cmd, out, &mine);
    if (!c || check_members(cmd, lim, out) != 0)
        return 0;
    if (kc_id_is_direct(cmd->convo_id, cmd->convo_id_len))
        return reject(out, PROC_REJECT_DIRECT, "the members of a direct conversation do not change");
    int leave = cmd->kind == CMD_REMOVE_MEMBERS && is_leave(cmd);
    if (!leave && !manages(mine))
        return reject(out, PROC_REJECT_NOT_ALLOWED, "only owners and admins %s members",
                      cmd->kind == CMD_ADD_MEMBERS ? "add" : "remove");
    if (cmd->kind == CMD_REMOVE_MEMBERS && mine == KC_ROLE_ADMIN) {
        for (size_t i = 0; i < cmd->nmembers; i++) {
            ssize_t at = find_member(c, cmd->members[i], cmd->member_lens[i]);
            if (at >= 0 && c->roles[at] == KC_ROLE_OWNER)
                return reject(out, PROC_REJECT_NOT_ALLOWED, "only owners remove an owner");
        }
    }
    if (cmd->kind == CMD_ADD_MEMBERS) {
        size_t fresh = 0;
        for (size_t i = 0; i < cmd->nmembers; i++)
            fresh += find_member(c, cmd->members[i], cmd->member_lens[i]) < 0;
        if ((long long)(c->nmembers + fresh) > lim->max_members)
            return reject(out, PROC_REJECT_TOO_LARGE, "a conversation has at most %lld members",
                          lim->max_members);
        for (size_t i = 0; i < cmd->nmembers; i++) {
            if (find_member(c, cmd->members[i], cmd->member_lens[i]) < 0) {
                add_member(c, cmd->members[i], cmd->member_lens[i], KC_ROLE_MEMBER);
                out_add(out, cmd->members[i], cmd->member_lens[i]);
            }
        }
    } else {
        /* The event names those removed; the recipients are the members that remain. Those
         * removed may still read up to the last message. */
        for (size_t i = 0; i < cmd->nmembers; i++) {
            ssize_t at = find_member(c, cmd->members[i], cmd->member_lens[i]);
            if (at < 0)
                continue;
            out_add(out, cmd->members[i], cmd->member_lens[i]);
            drop_member(c, (size_t)at);
        }
        if (!out->nmembers) /* nothing changed */
            return reject(out, PROC_REJECT_NO_SUCH_MEMBER, "none of them is a member");
        ssize_t heir = out->nmembers ? hand_on(c) : -1;
        if (heir >= 0)
            out->promoted = kc_xstrdup(c->members[heir]);
        out->seq_no = c->last_seq;
    }
    if (out->nmembers)
        mark_dirty(p, c);
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

static int apply_update(proc_part_t *p, const proc_cmd_t *cmd, proc_outcome_t *out)
{
    kc_role_t mine;
    proc_convo_t *c = member_convo_role(p, cmd, out, &mine);
    if (!c)
        return 0;
    if (kc_id_is_direct(cmd->convo_id, cmd->convo_id_len))
        return reject(out, PROC_REJECT_DIRECT, "a direct conversation has no title or topic");
    if (!manages(mine))
        return reject(out, PROC_REJECT_NOT_ALLOWED,
                      "only owners and admins rename a conversation or set its topic");
    if (!cmd->title && !cmd->topic)
        return reject(out, PROC_REJECT_INVALID, "nothing to change: give a title or a topic");
    if (cmd->title && (cmd->title_len == 0 || !valid_text(cmd->title, cmd->title_len,
                                                          MAX_TITLE_BYTES)))
        return reject(out, PROC_REJECT_INVALID, "title must be 1 to %d bytes of UTF-8",
                      MAX_TITLE_BYTES);
    if (cmd->topic && !valid_text(cmd->topic, cmd->topic_len, MAX_TOPIC_BYTES))
        return reject(out, PROC_REJECT_INVALID, "topic must be UTF-8 of at most %d bytes",
                      MAX_TOPIC_BYTES);
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

static int apply_role(proc_part_t *p, const proc_cmd_t *cmd, const proc_limits_t *lim,
                      proc_outcome_t *out)
{
    kc_role_t mine;
    proc_convo_t *c = member_convo_role(p, cmd, out, &mine);
    if (!c)
        return 0;
    if (kc_id_is_direct(cmd->convo_id, cmd->convo_id_len))
        return reject(out, PROC_REJECT_DIRECT, "a direct conversation has no roles");
    if (!valid_id(cmd->user_id, cmd->user_id_len, lim->max_id_bytes) ||
        (unsigned)cmd->role >= KC_ROLE_N)
        return reject(out, PROC_REJECT_INVALID, "user_id and role must be valid");
    if (!manages(mine))
        return reject(out, PROC_REJECT_NOT_ALLOWED, "only owners and admins change roles");
    ssize_t at = find_member(c, cmd->user_id, cmd->user_id_len);
    if (at < 0)
        return reject(out, PROC_REJECT_NO_SUCH_MEMBER, "the user is not a member");
    kc_role_t was = (kc_role_t)c->roles[at];
    if (mine != KC_ROLE_OWNER && (was == KC_ROLE_OWNER || cmd->role == KC_ROLE_OWNER))
        return reject(out, PROC_REJECT_NOT_ALLOWED, "only owners make or unmake owners");
    if (was == KC_ROLE_OWNER && cmd->role != KC_ROLE_OWNER && count_role(c, KC_ROLE_OWNER) == 1)
        return reject(out, PROC_REJECT_LAST_OWNER,
                      "the last owner stays owner: make someone else owner first, or leave");
    if (was != cmd->role) {
        c->roles[at] = (unsigned char)cmd->role;
        mark_dirty(p, c);
    }
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

/* A message of the edit window, whose author is remembered (proc_keep_ms), or NULL with the
 * rejection too_old ("only messages of the last N ms can be <what>"). */
static proc_dd_t *window_message(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms,
                                 const proc_limits_t *lim, proc_outcome_t *out, const char *what)
{
    char key[1200];
    size_t klen = msg_key(key, sizeof(key), cmd->convo_id, cmd->convo_id_len, cmd->seq_no);
    proc_dd_t *d = klen ? kc_map_get(p->msgs, key, klen) : NULL;
    if (!d || !d->author || d->created_at < now_ms - lim->edit_window_ms) {
        reject(out, PROC_REJECT_TOO_OLD, "only messages of the last %lld ms can be %s",
               (long long)lim->edit_window_ms, what);
        return NULL;
    }
    return d;
}

static int apply_seq_ref(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms,
                         const proc_limits_t *lim, proc_outcome_t *out)
{
    kc_role_t mine;
    proc_convo_t *c = member_convo_role(p, cmd, out, &mine);
    if (!c)
        return 0;
    if (cmd->seq_no < 1 || cmd->seq_no > c->last_seq)
        return reject(out, PROC_REJECT_NO_SUCH_MESSAGE,
                      "seq_no %lld is not a message of the conversation", (long long)cmd->seq_no);
    if (cmd->kind != CMD_SET_READ_MARKER) {
        proc_dd_t *d = window_message(p, cmd, now_ms, lim, out, "edited or deleted");
        if (!d)
            return 0;
        /* Authors edit and delete their own; owners and admins delete anyone's. */
        if ((strlen(d->author) != cmd->sender_id_len ||
             memcmp(d->author, cmd->sender_id, cmd->sender_id_len) != 0) &&
            (cmd->kind == CMD_EDIT_MESSAGE || !manages(mine)))
            return reject(out, PROC_REJECT_NOT_AUTHOR,
                          cmd->kind == CMD_EDIT_MESSAGE
                              ? "only the author can edit a message"
                              : "only the author, an owner or an admin can delete a message");
        if (d->deleted)
            return reject(out, PROC_REJECT_DELETED, "the message was deleted");
        if (cmd->kind == CMD_EDIT_MESSAGE) {
            if ((long long)cmd->content_len > lim->max_content_bytes)
                return reject(out, PROC_REJECT_TOO_LARGE, "content is larger than %lld bytes",
                              lim->max_content_bytes);
            if (cmd->content_len == 0 ||
                !valid_text(cmd->content, cmd->content_len, lim->max_content_bytes))
                return reject(out, PROC_REJECT_INVALID, "content must be non-empty UTF-8");
        } else {
            d->deleted = 1;
            dd_clear_reactions(d);
            memcpy(out->dedupe_key, d->key, PROC_DEDUPE_KEY_BYTES);
            out->dedupe = d;
            resave(p, d);
        }
        out->seq_no = cmd->seq_no;
    }
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

/* ---- reactions ---- */

static ssize_t find_reaction(const proc_dd_t *d, const char *user, size_t len)
{
    for (size_t i = 0; i < d->nreactions; i++)
        if (strlen(d->reactions[i].user) == len && memcmp(d->reactions[i].user, user, len) == 0)
            return (ssize_t)i;
    return -1;
}

static int same_emoji(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

/* How many different reactions the message has apart from reactions[skip] (skip < 0: none),
 * and whether emoji (of len bytes) is among them. */
static size_t other_kinds(const proc_dd_t *d, ssize_t skip, const char *emoji, size_t len,
                          int *has)
{
    const char *seen[KC_CHAT_MAX_REACTION_KINDS + 1];
    size_t n = 0;
    *has = 0;
    for (size_t i = 0; i < d->nreactions; i++) {
        if ((ssize_t)i == skip)
            continue;
        const char *e = d->reactions[i].emoji;
        size_t k = 0;
        while (k < n && strcmp(seen[k], e) != 0)
            k++;
        if (k == n && n < KC_ARRAY_LEN(seen))
            seen[n++] = e;
        if (emoji && same_emoji(e, emoji, len))
            *has = 1;
    }
    return n;
}

int proc_dd_set_reaction(proc_dd_t *d, const char *user, size_t user_len, const char *emoji,
                         size_t emoji_len)
{
    ssize_t at = find_reaction(d, user, user_len);
    if (at < 0 && !emoji)
        return 0;
    if (at >= 0) {
        if (emoji && same_emoji(d->reactions[at].emoji, emoji, emoji_len))
            return 0;
        free(d->reactions[at].user);
        free(d->reactions[at].emoji);
        memmove(&d->reactions[at], &d->reactions[at + 1],
                (d->nreactions - (size_t)at - 1) * sizeof(*d->reactions));
        d->nreactions--;
    }
    if (!emoji)
        return 1;
    if (d->nreactions == d->reactions_cap) {
        d->reactions_cap = d->reactions_cap ? d->reactions_cap * 2 : 4;
        d->reactions = kc_xrealloc(d->reactions, d->reactions_cap * sizeof(*d->reactions));
    }
    d->reactions[d->nreactions++] = (proc_reaction_t){kc_xstrndup(user, user_len),
                                                      kc_xstrndup(emoji, emoji_len)};
    return 1;
}

static int by_count(const void *a, const void *b)
{
    const kc_chat_count_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    size_t n = x->emoji.n < y->emoji.n ? x->emoji.n : y->emoji.n;
    int c = memcmp(x->emoji.p, y->emoji.p, n);
    return c ? c : (x->emoji.n > y->emoji.n) - (x->emoji.n < y->emoji.n);
}

size_t proc_dd_reaction_counts(const proc_dd_t *d, kc_chat_count_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < d->nreactions; i++) {
        const char *e = d->reactions[i].emoji;
        size_t len = strlen(e), k = 0;
        while (k < n && !(out[k].emoji.n == len && memcmp(out[k].emoji.p, e, len) == 0))
            k++;
        if (k < n)
            out[k].count++;
        else if (n < KC_CHAT_MAX_REACTION_KINDS)
            out[n++] = (kc_chat_count_t){{e, len}, 1};
    }
    qsort(out, n, sizeof(*out), by_count);
    return n;
}

/* SetReaction: any member, on a message of the edit window that is not deleted; one reaction
 * per member, replaced by the next; at most KC_CHAT_MAX_REACTION_KINDS different ones and
 * PROC_MAX_REACTIONS members on a message. Setting what is already set is accepted and
 * changes nothing (the event says so: emoji equals previous). */
static int apply_reaction(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms,
                          const proc_limits_t *lim, proc_outcome_t *out)
{
    proc_convo_t *c = member_convo_role(p, cmd, out, NULL);
    if (!c)
        return 0;
    if (cmd->emoji && !kc_chat_reaction_valid(cmd->emoji, cmd->emoji_len))
        return reject(out, PROC_REJECT_INVALID,
                      "a reaction is 1 to %d bytes of UTF-8, at most %d characters, without "
                      "spaces or control characters",
                      KC_CHAT_MAX_REACTION_BYTES, KC_CHAT_MAX_REACTION_CHARS);
    if (cmd->seq_no < 1 || cmd->seq_no > c->last_seq)
        return reject(out, PROC_REJECT_NO_SUCH_MESSAGE,
                      "seq_no %lld is not a message of the conversation", (long long)cmd->seq_no);
    proc_dd_t *d = window_message(p, cmd, now_ms, lim, out, "reacted to");
    if (!d)
        return 0;
    if (d->deleted)
        return reject(out, PROC_REJECT_DELETED, "the message was deleted");
    ssize_t mine = find_reaction(d, cmd->sender_id, cmd->sender_id_len);
    if (cmd->emoji) {
        if (mine < 0 && d->nreactions >= PROC_MAX_REACTIONS)
            return reject(out, PROC_REJECT_TOO_MANY_REACTIONS,
                          "at most %d members react to a message", PROC_MAX_REACTIONS);
        int has;
        size_t kinds = other_kinds(d, mine, cmd->emoji, cmd->emoji_len, &has);
        if (!has && kinds >= KC_CHAT_MAX_REACTION_KINDS)
            return reject(out, PROC_REJECT_TOO_MANY_REACTIONS,
                          "at most %d different reactions on a message",
                          KC_CHAT_MAX_REACTION_KINDS);
    }
    out->previous = mine >= 0 ? kc_xstrdup(d->reactions[mine].emoji) : NULL;
    if (proc_dd_set_reaction(d, cmd->sender_id, cmd->sender_id_len, cmd->emoji, cmd->emoji_len))
        resave(p, d);
    out->reacted = d;
    out->seq_no = cmd->seq_no;
    set_recipients(out, c);
    out->kind = OUT_ACCEPTED;
    return 0;
}

int proc_apply(proc_part_t *p, const proc_cmd_t *cmd, int64_t now_ms, const proc_limits_t *lim,
               proc_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!valid_id(cmd->convo_id, cmd->convo_id_len, lim->max_id_bytes) ||
        !valid_id(cmd->sender_id, cmd->sender_id_len, lim->max_id_bytes))
        return reject(out, PROC_REJECT_INVALID,
                      "convo_id and sender_id must be 1 to %lld bytes of printable UTF-8",
                      lim->max_id_bytes);
    switch (cmd->kind) {
    case CMD_CREATE_CONVERSATION: return apply_create(p, cmd, lim, out);
    case CMD_SEND_MESSAGE: return apply_send(p, cmd, now_ms, lim, out);
    case CMD_ADD_MEMBERS:
    case CMD_REMOVE_MEMBERS: return apply_members(p, cmd, lim, out);
    case CMD_EDIT_MESSAGE:
    case CMD_DELETE_MESSAGE:
    case CMD_SET_READ_MARKER: return apply_seq_ref(p, cmd, now_ms, lim, out);
    case CMD_UPDATE_CONVERSATION: return apply_update(p, cmd, out);
    case CMD_SET_ROLE: return apply_role(p, cmd, lim, out);
    case CMD_SET_REACTION: return apply_reaction(p, cmd, now_ms, lim, out);
    }
    return reject(out, PROC_REJECT_INVALID, "unknown command");
}

void proc_outcome_free(proc_outcome_t *out)
{
    for (size_t i = 0; i < out->nmembers; i++)
        free(out->members[i]);
    free(out->members);
    out->members = NULL;
    out->nmembers = 0;
    free(out->promoted);
    out->promoted = NULL;
    free(out->previous);
    out->previous = NULL;
}

proc_convo_t **proc_part_take_dirty(proc_part_t *p, size_t *n)
{
    *n = p->ndirty;
    for (size_t i = 0; i < p->ndirty; i++)
        p->dirty[i]->dirty = 0;
    p->ndirty = 0;
    return p->dirty;
}

size_t proc_part_expire(proc_part_t *p, int64_t now_ms, int64_t window_ms,
                        void (*fn)(const unsigned char *key, void *arg), void *arg)
{
    size_t n = 0;
    proc_dd_t *d;
    while ((d = KC_SLIST_ENTRY(p->window.first, proc_dd_t, link)) &&
           d->created_at < now_ms - window_ms) {
        if (p->unsaved == d)
            p->unsaved = KC_SLIST_ENTRY(d->link.next, proc_dd_t, link);
        (void)kc_slist_pop_front(&p->window);
        /* A key restored twice has a newer node in the map: only drop the map's own. */
        if (kc_map_get(p->dedupe, d->key, PROC_DEDUPE_KEY_BYTES) == d) {
            if (fn && d->legacy)
                fn(d->key, arg);
            n++;
        }
        dd_unindex(p, d);
        dd_free(d);
    }
    return n;
}

void proc_part_restore_convo(proc_part_t *p, const char *id, size_t id_len, int64_t last_seq,
                             const char *const *members, const size_t *lens, size_t n)
{
    proc_convo_t *c = kc_map_get(p->convos, id, id_len);
    if (c) {
        for (size_t i = 0; i < c->nmembers; i++)
            free(c->members[i]);
        c->nmembers = 0;
    } else {
        c = convo_new(p, id, id_len);
    }
    c->last_seq = last_seq;
    for (size_t i = 0; i < n; i++)
        add_member(c, members[i], lens[i], KC_ROLE_MEMBER);
}

int proc_part_restore_role(proc_part_t *p, const char *id, size_t id_len, const char *user,
                           size_t user_len, kc_role_t role)
{
    proc_convo_t *c = kc_map_get(p->convos, id, id_len);
    ssize_t at = c ? find_member(c, user, user_len) : -1;
    if (at < 0 || (unsigned)role >= KC_ROLE_N)
        return -1;
    c->roles[at] = (unsigned char)role;
    return 0;
}

void proc_part_add_dedupe(proc_part_t *p, const unsigned char *key, int64_t seq_no,
                          int64_t created_at, const char *convo_id, const char *author,
                          int deleted)
{
    proc_dd_t *d = kc_xcalloc(1, sizeof(*d));
    memcpy(d->key, key, PROC_DEDUPE_KEY_BYTES);
    d->seq_no = seq_no;
    d->created_at = created_at;
    d->deleted = deleted;
    proc_dd_t *old = kc_map_put(p->dedupe, d->key, PROC_DEDUPE_KEY_BYTES, d);
    if (old && old->msg_key && kc_map_get(p->msgs, old->msg_key, old->msg_key_len) == old)
        (void)kc_map_remove(p->msgs, old->msg_key, old->msg_key_len);
    if (convo_id && *convo_id && author && *author) {
        char k[1200];
        size_t klen = msg_key(k, sizeof(k), convo_id, strlen(convo_id), seq_no);
        if (klen) {
            d->author = kc_xstrdup(author);
            d->msg_key = kc_xmalloc(klen);
            memcpy(d->msg_key, k, klen);
            d->msg_key_len = klen;
            (void)kc_map_put(p->msgs, d->msg_key, klen, d);
        }
    }
    /* The FIFO owns the nodes; a replaced node stays in it until it expires. */
    kc_slist_push_back(&p->window, &d->link);
    if (!p->unsaved)
        p->unsaved = d;
}

size_t proc_part_expire_blocks(proc_part_t *p, int64_t now_ms, int64_t window_ms,
                               void (*fn)(uint64_t id, void *arg), void *arg)
{
    size_t kept = 0, gone = 0;
    for (size_t i = 0; i < p->nblocks; i++) {
        if (p->blocks[i].newest < now_ms - window_ms) {
            if (fn)
                fn(p->blocks[i].id, arg);
            gone++;
        } else {
            p->blocks[kept++] = p->blocks[i];
        }
    }
    p->nblocks = kept;
    return gone;
}

void proc_part_note_block(proc_part_t *p, uint64_t id, int64_t newest)
{
    for (size_t i = 0; i < p->nblocks; i++) {
        if (p->blocks[i].id == id) {
            p->blocks[i].newest = newest;
            return;
        }
    }
    if (p->nblocks == p->blocks_cap) {
        p->blocks_cap = p->blocks_cap ? p->blocks_cap * 2 : 16;
        p->blocks = kc_xrealloc(p->blocks, p->blocks_cap * sizeof(proc_block_t));
    }
    p->blocks[p->nblocks++] = (proc_block_t){id, newest};
    if (id >= p->next_block)
        p->next_block = id + 1;
}

size_t proc_part_take_unsaved(proc_part_t *p, void (*fn)(const proc_dd_t *d, void *arg),
                              void *arg)
{
    size_t n = 0;
    for (proc_dd_t *d = p->unsaved; d; d = KC_SLIST_ENTRY(d->link.next, proc_dd_t, link)) {
        /* A node replaced in the map by a newer one for its key is not the entry any more. */
        if (kc_map_get(p->dedupe, d->key, PROC_DEDUPE_KEY_BYTES) == d) {
            fn(d, arg);
            n++;
        }
    }
    for (size_t i = 0; i < p->nresave; i++) {
        const proc_dd_t *d = kc_map_get(p->dedupe, p->resave + i * PROC_DEDUPE_KEY_BYTES,
                                        PROC_DEDUPE_KEY_BYTES);
        if (d) {
            fn(d, arg);
            n++;
        }
    }
    proc_part_mark_saved(p);
    return n;
}

void proc_part_mark_saved(proc_part_t *p)
{
    p->unsaved = NULL;
    p->nresave = 0;
}

/* ---- catching up from chat.events ---- */

static void replay_members(proc_part_t *p, proc_convo_t *c, const kc_chat_event_t *ev)
{
    kc_chat_strs_t it = ev->members;
    kc_str_t m;
    while (kc_chat_strs_next(&it, &m) == 1) {
        ssize_t at = find_member(c, m.p, m.n);
        if (ev->kind == KC_EV_MEMBERS_REMOVED) {
            if (at >= 0) {
                drop_member(c, (size_t)at);
                mark_dirty(p, c);
            }
        } else if (at < 0) {
            int creator = ev->kind == KC_EV_CONVERSATION_CREATED && m.n == ev->actor_id.n &&
                          memcmp(m.p, ev->actor_id.p, m.n) == 0;
            add_member(c, m.p, m.n, creator ? KC_ROLE_OWNER : KC_ROLE_MEMBER);
            mark_dirty(p, c);
        }
    }
}

/* A role the event gives: promoted by a removal, or changed. */
static void replay_role(proc_part_t *p, proc_convo_t *c, kc_str_t user, kc_role_t role)
{
    ssize_t at = user.p ? find_member(c, user.p, user.n) : -1;
    if (at >= 0 && c->roles[at] != role) {
        c->roles[at] = (unsigned char)role;
        mark_dirty(p, c);
    }
}

void proc_part_replay(proc_part_t *p, const kc_chat_event_t *ev)
{
    proc_convo_t *c = kc_map_get(p->convos, ev->convo_id.p, ev->convo_id.n);
    switch (ev->kind) {
    case KC_EV_CONVERSATION_CREATED:
        if (c)
            return; /* the checkpoint holds it, maybe with later changes */
        c = convo_new(p, ev->convo_id.p, ev->convo_id.n);
        replay_members(p, c, ev);
        mark_dirty(p, c);
        return;
    case KC_EV_MEMBERS_ADDED:
    case KC_EV_MEMBERS_REMOVED:
        if (c) {
            replay_members(p, c, ev);
            replay_role(p, c, ev->promoted, KC_ROLE_OWNER);
        }
        return;
    case KC_EV_ROLE_CHANGED:
        if (c)
            replay_role(p, c, ev->user_id, ev->role);
        return;
    case KC_EV_CONVERSATION_UPDATED: return;
    case KC_EV_MESSAGE_CREATED: {
        if (!c)
            return;
        if (ev->seq_no > c->last_seq) {
            c->last_seq = ev->seq_no;
            mark_dirty(p, c);
        }
        unsigned char key[PROC_DEDUPE_KEY_BYTES];
        proc_dedupe_key(ev->convo_id.p, ev->convo_id.n, ev->actor_id.p, ev->actor_id.n,
                        ev->client_msg_id.p, ev->client_msg_id.n, key);
        if (kc_map_get(p->dedupe, key, PROC_DEDUPE_KEY_BYTES))
            return;
        char sender[1100];
        kc_strlcpyf(sender, sizeof(sender), "%.*s", (int)ev->actor_id.n, ev->actor_id.p);
        proc_part_add_dedupe(p, key, ev->seq_no, ev->occurred_at, c->id, sender, 0);
        return;
    }
    case KC_EV_MESSAGE_DELETED: {
        char k[1200];
        size_t klen = msg_key(k, sizeof(k), ev->convo_id.p, ev->convo_id.n, ev->seq_no);
        proc_dd_t *d = klen ? kc_map_get(p->msgs, k, klen) : NULL;
        if (d && !d->deleted) {
            d->deleted = 1;
            dd_clear_reactions(d);
            resave(p, d);
        }
        return;
    }
    case KC_EV_REACTION_CHANGED: {
        char k[1200];
        size_t klen = msg_key(k, sizeof(k), ev->convo_id.p, ev->convo_id.n, ev->seq_no);
        proc_dd_t *d = klen ? kc_map_get(p->msgs, k, klen) : NULL;
        /* (d NULL: out of the window, nothing to remember) */
        if (d && proc_dd_set_reaction(d, ev->actor_id.p, ev->actor_id.n, ev->emoji.p, ev->emoji.n))
            resave(p, d);
        return;
    }
    case KC_EV_MESSAGE_EDITED:
    case KC_EV_READ_MARKER_SET:
    case KC_EV_COMMAND_REJECTED: return;
    }
}

void proc_part_forget(proc_part_t *p, const void *key, size_t klen, int is_convo)
{
    if (is_convo) {
        proc_convo_t *c = kc_map_remove(p->convos, key, klen);
        if (c)
            convo_free(c);
    } else {
        /* The FIFO still owns the node; it is freed when it expires or with the partition. */
        proc_dd_t *d = kc_map_get(p->dedupe, key, klen);
        if (d)
            dd_unindex(p, d);
    }
}
