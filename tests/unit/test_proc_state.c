/* The processor's rules (processor/state.c), without Kafka: seq_no, dedupe, membership,
 * limits, coalesced dirty state, expiry and restore, and the names of the rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/util.h"
#include "state.h"

static const proc_limits_t LIM = {.max_content_bytes = 100, .max_members = 4, .max_id_bytes = 16,
                                  .dedupe_window_ms = 1000, .edit_window_ms = 1000};

typedef struct {
    proc_cmd_t cmd;
    const char *members[8];
    size_t lens[8];
} cmd_buf_t;

static proc_cmd_t *make(cmd_buf_t *b, proc_cmd_kind_t kind, const char *convo, const char *sender)
{
    memset(b, 0, sizeof(*b));
    b->cmd.kind = kind;
    b->cmd.type_name = "Test";
    b->cmd.command_id = "cmd";
    b->cmd.origin = "api:0";
    b->cmd.convo_id = convo;
    b->cmd.convo_id_len = strlen(convo);
    b->cmd.sender_id = sender;
    b->cmd.sender_id_len = strlen(sender);
    b->cmd.content_type = "text/plain";
    b->cmd.members = b->members;
    b->cmd.member_lens = b->lens;
    return &b->cmd;
}

static void add(cmd_buf_t *b, const char *m)
{
    b->members[b->cmd.nmembers] = m;
    b->lens[b->cmd.nmembers++] = strlen(m);
}

static proc_outcome_kind_t run(proc_part_t *p, proc_cmd_t *c, int64_t now, proc_outcome_t *o)
{
    assert_int_equal(proc_apply(p, c, now, &LIM, o), 0);
    return o->kind;
}

static void create(proc_part_t *p, const char *convo, const char *creator, const char *other)
{
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_CREATE_CONVERSATION, convo, creator);
    c->title = "t";
    c->title_len = 1;
    if (other)
        add(&b, other);
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    proc_outcome_free(&o);
}

static proc_outcome_kind_t send(proc_part_t *p, const char *convo, const char *sender,
                                const char *cmid, const char *text, int64_t now, int64_t *seq,
                                const char **reason)
{
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_SEND_MESSAGE, convo, sender);
    c->client_msg_id = cmid;
    c->client_msg_id_len = strlen(cmid);
    c->content = text;
    c->content_len = strlen(text);
    proc_outcome_kind_t k = run(p, c, now, &o);
    if (seq)
        *seq = o.seq_no;
    if (reason)
        *reason = o.reason;
    proc_outcome_free(&o);
    return k;
}

static void create_puts_the_creator_in_once(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_CREATE_CONVERSATION, "c1", "u1");
    c->title = "team";
    c->title_len = 4;
    add(&b, "u2");
    add(&b, "u1");
    add(&b, "u2");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_int_equal(o.nmembers, 2);
    assert_string_equal(o.members[0], "u1");
    assert_string_equal(o.members[1], "u2");
    proc_outcome_free(&o);
    assert_int_equal(run(p, c, 0, &o), OUT_REJECTED);
    assert_string_equal(o.reason, "conversation_exists");
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

/* One direct conversation per pair, decided here: the id must be the pair's and its members
 * never change. */
static void direct_conversations_are_the_pairs(void **state)
{
    (void)state;
    static const proc_limits_t lim = {.max_content_bytes = 100, .max_members = 4,
                                      .max_id_bytes = 64, .dedupe_window_ms = 1000, .edit_window_ms = 1000};
    proc_part_t *p = proc_part_new(0);
    char dm[KC_ID_MAX], other[KC_ID_MAX];
    assert_int_equal(kc_id_direct(dm, sizeof(dm), "u_1", 3, "u_2", 3), 0);
    assert_int_equal(kc_id_direct(other, sizeof(other), "u_1", 3, "u_3", 3), 0);
    cmd_buf_t b;
    proc_outcome_t o;
    struct {
        const char *convo, *sender, *members[3];
        const char *reason; /* NULL: accepted */
    } cases[] = {
        {other, "u_1", {"u_2"}, "direct_conversation"},      /* another pair's id */
        {dm, "u_1", {"u_1"}, "direct_conversation"},         /* nobody else */
        {dm, "u_1", {"u_2", "u_3"}, "direct_conversation"},  /* three people */
        {dm, "u_3", {"u_2"}, "direct_conversation"},         /* not the pair's creator */
        {dm, "u_1", {"u_2", "u_1", "u_2"}, NULL},            /* the pair, listed twice */
        {dm, "u_2", {"u_1"}, "conversation_exists"},         /* the other asks: the same one */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proc_cmd_t *c = make(&b, CMD_CREATE_CONVERSATION, cases[i].convo, cases[i].sender);
        c->title = "";
        for (size_t k = 0; k < 3 && cases[i].members[k]; k++)
            add(&b, cases[i].members[k]);
        assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
        if (cases[i].reason) {
            assert_int_equal(o.kind, OUT_REJECTED);
            assert_string_equal(o.reason, cases[i].reason);
        } else {
            assert_int_equal(o.kind, OUT_ACCEPTED);
            assert_int_equal(o.nmembers, 2);
        }
        proc_outcome_free(&o);
    }
    proc_cmd_kind_t changes[] = {CMD_ADD_MEMBERS, CMD_REMOVE_MEMBERS};
    for (size_t i = 0; i < 2; i++) {
        proc_cmd_t *c = make(&b, changes[i], dm, "u_1");
        add(&b, i == 0 ? "u_3" : "u_2");
        assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
        assert_int_equal(o.kind, OUT_REJECTED);
        assert_string_equal(o.reason, "direct_conversation");
        proc_outcome_free(&o);
    }
    proc_cmd_t *c = make(&b, CMD_SEND_MESSAGE, dm, "u_2");
    c->client_msg_id = "m1";
    c->client_msg_id_len = 2;
    c->content = "hi";
    c->content_len = 2;
    assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
    assert_int_equal(o.kind, OUT_ACCEPTED);
    assert_int_equal(o.seq_no, 1);
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

static void create_counts_the_creator_against_the_limit(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_CREATE_CONVERSATION, "c1", "u1");
    c->title = "t";
    c->title_len = 1;
    add(&b, "a");
    add(&b, "b");
    add(&b, "c");
    add(&b, "d"); /* 4 listed + the creator = 5 > 4 */
    assert_int_equal(run(p, c, 0, &o), OUT_REJECTED);
    assert_string_equal(o.reason, "too_large");
    proc_outcome_free(&o);
    assert_null(kc_map_get(p->convos, "c1", 2));
    proc_part_destroy(p);
}

static void seq_no_is_gap_free_and_retries_repeat_it(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    int64_t seq;
    char id[16];
    for (int i = 1; i <= 50; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        assert_int_equal(send(p, "c1", i % 2 ? "u1" : "u2", id, "hi", 0, &seq, NULL),
                         OUT_ACCEPTED);
        assert_int_equal(seq, i);
    }
    assert_int_equal(send(p, "c1", "u1", "m7", "hi", 0, &seq, NULL), OUT_DUPLICATE);
    assert_int_equal(seq, 7);
    /* The same client id from another sender is another message. */
    assert_int_equal(send(p, "c1", "u2", "m7", "hi", 0, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 51);
    proc_part_destroy(p);
}

static void rejections_change_nothing(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", NULL);
    const char *reason;
    int64_t seq;
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(send(p, "c1", "u9", "a", "hi", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_member");
    assert_int_equal(send(p, "nope", "u1", "a", "hi", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "no_such_conversation");
    assert_int_equal(send(p, "c1", "u1", "a", big, 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "too_large");
    assert_int_equal(send(p, "c1", "u1", "a", "", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "invalid");
    assert_int_equal(send(p, "c1", "u1", "a", "\xff\xfe", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "invalid");
    assert_int_equal(send(p, "c1", "u1", "a\tb", "hi", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "invalid");
    assert_int_equal(send(p, "c1", "u1", "0123456789abcdefX", "hi", 0, NULL, &reason),
                     OUT_REJECTED);
    assert_string_equal(reason, "invalid");
    /* None of those took a number. */
    assert_int_equal(send(p, "c1", "u1", "a", "hi", 0, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 1);
    proc_part_destroy(p);
}

static void a_retry_is_recognised_after_the_sender_left(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    int64_t seq;
    assert_int_equal(send(p, "c1", "u2", "m1", "hi", 0, &seq, NULL), OUT_ACCEPTED);
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_REMOVE_MEMBERS, "c1", "u2");
    add(&b, "u2");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_int_equal(o.nmembers, 1);
    assert_int_equal(o.nrecipients, 1);
    assert_string_equal(o.recipients[0], "u1");
    proc_outcome_free(&o);
    assert_int_equal(send(p, "c1", "u2", "m1", "hi", 0, &seq, NULL), OUT_DUPLICATE);
    assert_int_equal(seq, 1);
    const char *reason;
    assert_int_equal(send(p, "c1", "u2", "m2", "hi", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_member");
    proc_part_destroy(p);
}

static void add_members_reports_only_the_new_ones(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_ADD_MEMBERS, "c1", "u1");
    add(&b, "u2");
    add(&b, "u3");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_int_equal(o.nmembers, 1);
    assert_string_equal(o.members[0], "u3");
    assert_int_equal(o.nrecipients, 3);
    proc_outcome_free(&o);
    c = make(&b, CMD_ADD_MEMBERS, "c1", "u1");
    add(&b, "u4");
    add(&b, "u5"); /* 3 + 2 > 4 */
    assert_int_equal(run(p, c, 0, &o), OUT_REJECTED);
    assert_string_equal(o.reason, "too_large");
    proc_outcome_free(&o);
    c = make(&b, CMD_ADD_MEMBERS, "c1", "u9");
    add(&b, "u4");
    assert_int_equal(run(p, c, 0, &o), OUT_REJECTED);
    assert_string_equal(o.reason, "not_member");
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

/* A reply names an earlier message of the conversation: not itself, not a later one. */
static void replies_point_at_earlier_messages(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    cmd_buf_t b;
    proc_outcome_t o;
    int64_t cases[][2] = {{0, 0}, {2, 0}, {-1, 0}, {1, 1}};
    for (size_t i = 0; i < 4; i++) {
        proc_cmd_t *c = make(&b, CMD_SEND_MESSAGE, "c1", "u2");
        c->client_msg_id = i == 3 ? "ok" : "bad";
        c->client_msg_id_len = strlen(c->client_msg_id);
        c->content = "re";
        c->content_len = 2;
        c->has_reply_to = 1;
        c->reply_to = cases[i][0];
        assert_int_equal(run(p, c, 0, &o), cases[i][1] ? OUT_ACCEPTED : OUT_REJECTED);
        if (!cases[i][1])
            assert_string_equal(o.reason, "no_such_message");
        else
            assert_int_equal(o.seq_no, 2);
        proc_outcome_free(&o);
    }
    proc_part_destroy(p);
}

static void read_markers_point_at_messages(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", NULL);
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_SET_READ_MARKER, "c1", "u1");
    int64_t seqs[] = {0, 2, -1};
    for (size_t i = 0; i < 3; i++) {
        c->seq_no = seqs[i];
        assert_int_equal(run(p, c, 0, &o), OUT_REJECTED);
        assert_string_equal(o.reason, "no_such_message");
        proc_outcome_free(&o);
    }
    c->seq_no = 1;
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

static proc_outcome_kind_t change(proc_part_t *p, proc_cmd_kind_t kind, const char *who,
                                  int64_t seq, const char *text, const char **reason)
{
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, kind, "c1", who);
    c->seq_no = seq;
    c->content = text;
    c->content_len = text ? strlen(text) : 0;
    proc_outcome_kind_t k = run(p, c, 0, &o);
    *reason = o.reason;
    proc_outcome_free(&o);
    return k;
}

static void authors_edit_and_delete_within_the_window(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "m2", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    const char *reason;
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u1", 1, "edited", &reason), OUT_ACCEPTED);
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u2", 1, "mine now", &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_author");
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u1", 1, "", &reason), OUT_REJECTED);
    assert_string_equal(reason, "invalid");
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 1, NULL, &reason), OUT_ACCEPTED);
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u1", 1, "again", &reason), OUT_REJECTED);
    assert_string_equal(reason, "deleted");
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 1, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "deleted");
    /* Past the window the author is forgotten with the dedupe entry. */
    (void)proc_part_expire(p, 5000, LIM.dedupe_window_ms, NULL, NULL);
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 2, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "too_old");
    proc_part_destroy(p);
}

/* The edit window is a setting of its own: shorter than the dedupe window, an old message
 * is still a duplicate on retry but no longer editable; longer, its author is remembered
 * (and its retries recognised) for as long. */
static void the_edit_window_does_not_depend_on_the_dedupe_window(void **state)
{
    (void)state;
    const proc_limits_t shorter = {.max_content_bytes = 100, .max_members = 4,
                                   .max_id_bytes = 16, .dedupe_window_ms = 10000,
                                   .edit_window_ms = 1000};
    const proc_limits_t longer = {.max_content_bytes = 100, .max_members = 4, .max_id_bytes = 16,
                                  .dedupe_window_ms = 1000, .edit_window_ms = 10000};
    assert_int_equal(proc_keep_ms(&shorter), 10000);
    assert_int_equal(proc_keep_ms(&longer), 10000);
    for (int k = 0; k < 2; k++) {
        const proc_limits_t *lim = k ? &longer : &shorter;
        proc_part_t *p = proc_part_new(0);
        create(p, "c1", "u1", "u2");
        cmd_buf_t b;
        proc_outcome_t o;
        proc_cmd_t *c = make(&b, CMD_SEND_MESSAGE, "c1", "u1");
        c->client_msg_id = "m1";
        c->client_msg_id_len = 2;
        c->content = "hi";
        c->content_len = 2;
        assert_int_equal(proc_apply(p, c, 0, lim, &o), 0);
        assert_int_equal(o.kind, OUT_ACCEPTED);
        proc_outcome_free(&o);
        /* 5 s later, after the state expired what it keeps no longer */
        (void)proc_part_expire(p, 5000, proc_keep_ms(lim), NULL, NULL);
        c = make(&b, CMD_EDIT_MESSAGE, "c1", "u1");
        c->seq_no = 1;
        c->content = "edited";
        c->content_len = 6;
        assert_int_equal(proc_apply(p, c, 5000, lim, &o), 0);
        if (lim == &shorter) {
            assert_int_equal(o.kind, OUT_REJECTED);
            assert_string_equal(o.reason, "too_old");
        } else {
            assert_int_equal(o.kind, OUT_ACCEPTED);
        }
        proc_outcome_free(&o);
        /* a retry: recognised while the message is remembered */
        c = make(&b, CMD_SEND_MESSAGE, "c1", "u1");
        c->client_msg_id = "m1";
        c->client_msg_id_len = 2;
        c->content = "hi";
        c->content_len = 2;
        assert_int_equal(proc_apply(p, c, 5000, lim, &o), 0);
        assert_int_equal(o.kind, OUT_DUPLICATE);
        proc_outcome_free(&o);
        proc_part_destroy(p);
    }
}

static void dirty_state_is_written_once_per_conversation(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", NULL);
    create(p, "c2", "u1", NULL);
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "m%d", i);
        assert_int_equal(send(p, "c1", "u1", id, "hi", 0, NULL, NULL), OUT_ACCEPTED);
    }
    size_t n;
    proc_convo_t **d = proc_part_take_dirty(p, &n);
    assert_int_equal(n, 2);
    assert_string_equal(d[0]->id, "c1");
    assert_int_equal(d[0]->last_seq, 5);
    (void)proc_part_take_dirty(p, &n);
    assert_int_equal(n, 0);
    proc_part_destroy(p);
}

static int expired;

static void count_expired(const unsigned char *key, void *arg)
{
    (void)key;
    (void)arg;
    expired++;
}

static void the_window_expires_and_a_late_retry_is_new(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", NULL);
    int64_t seq;
    assert_int_equal(send(p, "c1", "u1", "old", "hi", 1000, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "new", "hi", 1800, NULL, NULL), OUT_ACCEPTED);
    expired = 0;
    /* Entries of a checkpoint's block leave with the block: no tombstone of their own. */
    assert_int_equal(proc_part_expire(p, 2500, LIM.dedupe_window_ms, count_expired, NULL), 1);
    assert_int_equal(expired, 0);
    assert_int_equal(send(p, "c1", "u1", "new", "hi", 2500, &seq, NULL), OUT_DUPLICATE);
    assert_int_equal(seq, 2);
    assert_int_equal(send(p, "c1", "u1", "old", "hi", 2500, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 3);
    proc_part_destroy(p);
}

static void restored_state_behaves_like_the_original(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(3);
    const char *members[] = {"u1", "u2"};
    size_t lens[] = {2, 2};
    proc_part_restore_convo(p, "c1", 2, 41, members, lens, 2);
    unsigned char key[PROC_DEDUPE_KEY_BYTES];
    proc_dedupe_key("c1", 2, "u2", 2, "m41", 3, key);
    proc_part_add_dedupe(p, key, 41, 0, "c1", "u2", 0);
    /* Restored twice (a changelog read before compaction): the newest wins. */
    proc_part_add_dedupe(p, key, 41, 10, "c1", "u2", 0);
    int64_t seq;
    assert_int_equal(send(p, "c1", "u2", "m41", "hi", 20, &seq, NULL), OUT_DUPLICATE);
    assert_int_equal(seq, 41);
    assert_int_equal(send(p, "c1", "u1", "m42", "hi", 20, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 42);
    proc_part_forget(p, key, sizeof(key), 0);
    assert_int_equal(send(p, "c1", "u2", "m41", "hi", 20, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 43);
    proc_part_forget(p, "c1", 2, 1);
    const char *reason;
    assert_int_equal(send(p, "c1", "u1", "m44", "hi", 20, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "no_such_conversation");
    proc_part_destroy(p);
}

/* ---- roles ---- */

static proc_outcome_kind_t manage(proc_part_t *p, proc_cmd_kind_t kind, const char *who,
                                  const char *target, kc_role_t role, const char **reason)
{
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, kind, "c1", who);
    if (kind == CMD_SET_ROLE) {
        c->user_id = target;
        c->user_id_len = strlen(target);
        c->role = role;
    } else if (kind == CMD_UPDATE_CONVERSATION) {
        c->title = target;
        c->title_len = target ? strlen(target) : 0;
    } else {
        add(&b, target);
    }
    proc_outcome_kind_t k = run(p, c, 0, &o);
    *reason = o.reason;
    proc_outcome_free(&o);
    return k;
}

static void owners_and_admins_run_a_conversation(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    const char *reason;
    /* the creator is the owner; a plain member manages nothing */
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u1", "u3", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u2", "u4", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_REMOVE_MEMBERS, "u2", "u3", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u2", "new", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_SET_ROLE, "u2", "u2", KC_ROLE_ADMIN, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    /* an admin renames, adds, removes members and admins, but no owner */
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u2", KC_ROLE_ADMIN, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u2", "new", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u2", "u4", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_SET_ROLE, "u2", "u4", KC_ROLE_OWNER, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_SET_ROLE, "u2", "u1", KC_ROLE_MEMBER, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_REMOVE_MEMBERS, "u2", "u1", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_SET_ROLE, "u2", "u4", KC_ROLE_ADMIN, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_REMOVE_MEMBERS, "u2", "u4", 0, &reason), OUT_ACCEPTED);
    /* roles only for members; the last owner does not step down */
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u9", KC_ROLE_ADMIN, &reason), OUT_REJECTED);
    assert_string_equal(reason, "no_such_member");
    assert_int_equal(manage(p, CMD_REMOVE_MEMBERS, "u1", "u9", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "no_such_member");
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u1", KC_ROLE_ADMIN, &reason), OUT_REJECTED);
    assert_string_equal(reason, "last_owner");
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u2", KC_ROLE_OWNER, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u1", KC_ROLE_MEMBER, &reason), OUT_ACCEPTED);
    /* u1 is a plain member now; anyone leaves */
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u1", "x", 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_allowed");
    assert_int_equal(manage(p, CMD_REMOVE_MEMBERS, "u1", "u1", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "m", "hi", 0, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_member");
    proc_part_destroy(p);
}

static void a_change_must_be_valid(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    cmd_buf_t b;
    proc_outcome_t o;
    static char topic[1026];
    memset(topic, 'a', 1025);
    struct {
        const char *title, *topic;
        proc_outcome_kind_t want;
    } cases[] = {
        {NULL, NULL, OUT_REJECTED},   /* nothing to change */
        {"", NULL, OUT_REJECTED},     /* an empty title */
        {"\xff", NULL, OUT_REJECTED}, /* not UTF-8 */
        {NULL, topic, OUT_REJECTED},  /* 1 025 bytes */
        {NULL, "", OUT_ACCEPTED},     /* clears the topic */
        {"t2", "about", OUT_ACCEPTED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proc_cmd_t *c = make(&b, CMD_UPDATE_CONVERSATION, "c1", "u1");
        c->title = cases[i].title;
        c->title_len = cases[i].title ? strlen(cases[i].title) : 0;
        c->topic = cases[i].topic;
        c->topic_len = cases[i].topic ? strlen(cases[i].topic) : 0;
        assert_int_equal(run(p, c, 0, &o), cases[i].want);
        if (cases[i].want == OUT_REJECTED)
            assert_string_equal(o.reason, "invalid");
        else
            assert_int_equal(o.nrecipients, 2);
        proc_outcome_free(&o);
    }
    proc_part_destroy(p);
}

static void the_last_owner_leaving_hands_ownership_on(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    const char *reason;
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u1", "u3", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u3", KC_ROLE_ADMIN, &reason), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u2", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    cmd_buf_t b;
    proc_outcome_t o;
    /* the oldest admin first, though u2 joined before u3 */
    proc_cmd_t *c = make(&b, CMD_REMOVE_MEMBERS, "c1", "u1");
    add(&b, "u1");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_string_equal(o.promoted, "u3");
    assert_int_equal(o.seq_no, 1); /* u1 may still read up to here */
    assert_int_equal(o.nrecipients, 2);
    proc_outcome_free(&o);
    /* no admin left: the oldest member */
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u3", "u4", 0, &reason), OUT_ACCEPTED);
    c = make(&b, CMD_REMOVE_MEMBERS, "c1", "u3");
    add(&b, "u3");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_string_equal(o.promoted, "u2");
    proc_outcome_free(&o);
    /* an owner leaving while another owner stays promotes nobody */
    assert_int_equal(manage(p, CMD_SET_ROLE, "u2", "u4", KC_ROLE_OWNER, &reason), OUT_ACCEPTED);
    c = make(&b, CMD_REMOVE_MEMBERS, "c1", "u2");
    add(&b, "u2");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_null(o.promoted);
    proc_outcome_free(&o);
    /* the last member leaves: nobody to hand on to */
    c = make(&b, CMD_REMOVE_MEMBERS, "c1", "u4");
    add(&b, "u4");
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    assert_null(o.promoted);
    assert_int_equal(o.nrecipients, 0);
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

static void owners_and_admins_delete_anyones_message(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    const char *reason;
    assert_int_equal(manage(p, CMD_ADD_MEMBERS, "u1", "u3", 0, &reason), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "m1", "one", 0, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u2", "m2", "two", 0, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u2", "m3", "three", 0, NULL, NULL), OUT_ACCEPTED);
    /* a plain member deletes only their own */
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u2", 1, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_author");
    /* the owner deletes anyone's but edits only their own */
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u1", 2, "mine now", &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_author");
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 2, NULL, &reason), OUT_ACCEPTED);
    /* so does an admin */
    assert_int_equal(manage(p, CMD_SET_ROLE, "u1", "u3", KC_ROLE_ADMIN, &reason), OUT_ACCEPTED);
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u3", 3, NULL, &reason), OUT_ACCEPTED);
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u3", 3, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "deleted");
    proc_part_destroy(p);
}

static void direct_conversations_have_no_roles(void **state)
{
    (void)state;
    static const proc_limits_t lim = {.max_content_bytes = 100, .max_members = 4,
                                      .max_id_bytes = 64, .dedupe_window_ms = 1000, .edit_window_ms = 1000};
    proc_part_t *p = proc_part_new(0);
    char id[KC_ID_MAX];
    assert_int_equal(kc_id_direct(id, sizeof(id), "u1", 2, "u2", 2), 0);
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_CREATE_CONVERSATION, id, "u1");
    c->title = "";
    add(&b, "u2");
    assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
    assert_int_equal(o.kind, OUT_ACCEPTED);
    proc_outcome_free(&o);
    c = make(&b, CMD_UPDATE_CONVERSATION, id, "u1");
    c->title = "x";
    c->title_len = 1;
    assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
    assert_string_equal(o.reason, "direct_conversation");
    proc_outcome_free(&o);
    c = make(&b, CMD_SET_ROLE, id, "u1");
    c->user_id = "u2";
    c->user_id_len = 2;
    c->role = KC_ROLE_ADMIN;
    assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
    assert_string_equal(o.reason, "direct_conversation");
    proc_outcome_free(&o);
    c = make(&b, CMD_REMOVE_MEMBERS, id, "u1");
    add(&b, "u1");
    assert_int_equal(proc_apply(p, c, 0, &lim, &o), 0);
    assert_string_equal(o.reason, "direct_conversation");
    proc_outcome_free(&o);
    proc_part_destroy(p);
}

/* ---- checkpoints ---- */

static size_t given;
static int64_t given_seqs[64];

static void take(const proc_dd_t *d, void *arg)
{
    (void)arg;
    if (given < 64)
        given_seqs[given] = d->seq_no;
    given++;
}

static void checkpoints_take_each_change_once(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", NULL);
    assert_int_equal(send(p, "c1", "u1", "a", "hi", 100, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "b", "hi", 100, NULL, NULL), OUT_ACCEPTED);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 2);
    assert_int_equal(given_seqs[0], 1);
    assert_int_equal(given_seqs[1], 2);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 0);
    /* A deletion changes a saved entry: the next checkpoint writes it again, with the new. */
    const char *reason;
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 1, NULL, &reason), OUT_ACCEPTED);
    assert_int_equal(send(p, "c1", "u1", "c", "hi", 100, NULL, NULL), OUT_ACCEPTED);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 2);
    assert_int_equal(given_seqs[0], 3);
    assert_int_equal(given_seqs[1], 1);
    /* Entries that expire before a checkpoint are not given. */
    assert_int_equal(send(p, "c1", "u1", "d", "hi", 200, NULL, NULL), OUT_ACCEPTED);
    (void)proc_part_expire(p, 5000, LIM.dedupe_window_ms, NULL, NULL);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 0);
    proc_part_destroy(p);
}

static int blocks_gone;

static void count_block(uint64_t id, void *arg)
{
    (void)arg;
    blocks_gone += (int)id;
}

static void blocks_expire_with_their_newest_entry(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    proc_part_note_block(p, 7, 1000);
    proc_part_note_block(p, 8, 2000);
    proc_part_note_block(p, 7, 1500); /* noted again: the newer time counts */
    assert_int_equal(p->next_block, 9);
    blocks_gone = 0;
    assert_int_equal(proc_part_expire_blocks(p, 2400, LIM.dedupe_window_ms, count_block, NULL), 0);
    assert_int_equal(proc_part_expire_blocks(p, 2600, LIM.dedupe_window_ms, count_block, NULL), 1);
    assert_int_equal(blocks_gone, 7);
    assert_int_equal(proc_part_expire_blocks(p, 3100, LIM.dedupe_window_ms, count_block, NULL), 1);
    assert_int_equal(blocks_gone, 15);
    assert_int_equal(p->nblocks, 0);
    proc_part_destroy(p);
}

/* An event as the processor writes it, decoded as a restore reads it. */
static kc_schemas_t *schemas;

static void replay(proc_part_t *p, kc_chat_event_kind_t kind, const char *convo, const char *actor,
                   int64_t seq, const char *cmid, char *const *members, size_t n, int64_t at)
{
    kc_chat_event_out_t out = {.kind = kind,
                               .event_id = {"e", 1},
                               .convo_id = {convo, strlen(convo)},
                               .actor_id = {actor, strlen(actor)},
                               .occurred_at = at,
                               .command_id = {"c", 1},
                               .origin = {"api:0", 5},
                               .title = {"t", 1},
                               .members = members,
                               .nmembers = n,
                               .seq_no = seq,
                               .server_msg_id = {"s", 1},
                               .client_msg_id = {cmid ? cmid : "", cmid ? strlen(cmid) : 0},
                               .content = {"x", 1},
                               .content_type = {"text/plain", 10}};
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, kc_schemas_current_id(schemas, "chat.events-value"), &out);
    kc_chat_event_t ev;
    char err[256];
    assert_int_equal(kc_chat_event_decode(schemas, b.data, b.len, &ev, err, sizeof(err)), 0);
    proc_part_replay(p, &ev);
    kc_buf_free(&b);
}

static void replaying_events_catches_up_and_twice_changes_nothing(void **state)
{
    (void)state;
    char err[256];
    schemas = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    assert_non_null(schemas);
    char *both[] = {"u1", "u2"}, *u3[] = {"u3"}, *u2[] = {"u2"};
    /* The checkpoint held c1 at seq 2 with u1, u2; the events since start a little before it. */
    proc_part_t *p = proc_part_new(0);
    const char *members[] = {"u1", "u2"};
    size_t lens[] = {2, 2};
    proc_part_restore_convo(p, "c1", 2, 2, members, lens, 2);
    for (int round = 0; round < 2; round++) { /* the same events twice: no change */
        replay(p, KC_EV_CONVERSATION_CREATED, "c1", "u1", 0, NULL, both, 2, 10);
        replay(p, KC_EV_MESSAGE_CREATED, "c1", "u1", 2, "m2", NULL, 0, 20);
        replay(p, KC_EV_MEMBERS_ADDED, "c1", "u1", 0, NULL, u3, 1, 30);
        replay(p, KC_EV_MESSAGE_CREATED, "c1", "u3", 3, "m3", NULL, 0, 40);
        replay(p, KC_EV_MEMBERS_REMOVED, "c1", "u1", 0, NULL, u2, 1, 50);
        replay(p, KC_EV_MESSAGE_DELETED, "c1", "u3", 3, NULL, NULL, 0, 60);
        replay(p, KC_EV_CONVERSATION_CREATED, "c2", "u9", 0, NULL, u2, 1, 70);
    }
    int64_t seq;
    const char *reason;
    /* numbering goes on after the last replayed message */
    assert_int_equal(send(p, "c1", "u3", "m4", "hi", 100, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 4);
    /* a retry of a replayed message is a duplicate with its seq_no */
    assert_int_equal(send(p, "c1", "u3", "m3", "hi", 100, &seq, NULL), OUT_DUPLICATE);
    assert_int_equal(seq, 3);
    /* u2 was removed, u3 added */
    assert_int_equal(send(p, "c1", "u2", "x", "hi", 100, NULL, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_member");
    /* the deletion was replayed */
    assert_int_equal(change(p, CMD_EDIT_MESSAGE, "u3", 3, "again", &reason), OUT_REJECTED);
    assert_string_equal(reason, "deleted");
    /* a conversation created after the checkpoint exists */
    assert_int_equal(send(p, "c2", "u2", "y", "hi", 100, &seq, NULL), OUT_ACCEPTED);
    assert_int_equal(seq, 1);
    /* what the replay changed is checkpointed next time */
    size_t n;
    (void)proc_part_take_dirty(p, &n);
    assert_int_equal(n, 2);
    given = 0;
    assert_true(proc_part_take_unsaved(p, take, NULL) >= 3);
    proc_part_destroy(p);
    kc_schemas_destroy(schemas);
}

static void replay_out(proc_part_t *p, kc_chat_event_out_t *out)
{
    out->event_id = (kc_str_t){"e", 1};
    out->command_id = (kc_str_t){"c", 1};
    out->origin = (kc_str_t){"api:0", 5};
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, kc_schemas_current_id(schemas, "chat.events-value"), out);
    kc_chat_event_t ev;
    char err[256];
    assert_int_equal(kc_chat_event_decode(schemas, b.data, b.len, &ev, err, sizeof(err)), 0);
    proc_part_replay(p, &ev);
    kc_buf_free(&b);
}

/* Roles come back from a checkpoint (proc_part_restore_role) and from the events since: the
 * creator of a replayed ConversationCreated, RoleChanged, and MembersRemoved.promoted. */
static void roles_are_restored_and_replayed(void **state)
{
    (void)state;
    char err[256];
    schemas = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    assert_non_null(schemas);
    proc_part_t *p = proc_part_new(0);
    const char *members[] = {"u1", "u2", "u3"};
    size_t lens[] = {2, 2, 2};
    proc_part_restore_convo(p, "c1", 2, 0, members, lens, 3);
    assert_int_equal(proc_part_restore_role(p, "c1", 2, "u2", 2, KC_ROLE_OWNER), 0);
    assert_int_equal(proc_part_restore_role(p, "c1", 2, "u9", 2, KC_ROLE_OWNER), -1);
    const char *reason;
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u1", "x", 0, &reason), OUT_REJECTED);
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u2", "x", 0, &reason), OUT_ACCEPTED);
    /* u2 leaves (the event names u3, the oldest member after u1... as the processor chose) */
    char *u2[] = {"u2"};
    replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_MEMBERS_REMOVED,
                                          .convo_id = {"c1", 2},
                                          .actor_id = {"u2", 2},
                                          .members = u2,
                                          .nmembers = 1,
                                          .promoted = {"u3", 2}});
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u1", "x", 0, &reason), OUT_REJECTED);
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u3", "x", 0, &reason), OUT_ACCEPTED);
    replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_ROLE_CHANGED,
                                          .convo_id = {"c1", 2},
                                          .actor_id = {"u3", 2},
                                          .user_id = {"u1", 2},
                                          .role = KC_ROLE_ADMIN});
    assert_int_equal(manage(p, CMD_UPDATE_CONVERSATION, "u1", "x", 0, &reason), OUT_ACCEPTED);
    /* a conversation created after the checkpoint: its creator owns it */
    char *both[] = {"u7", "u8"};
    replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_CONVERSATION_CREATED,
                                          .convo_id = {"c2", 2},
                                          .actor_id = {"u8", 2},
                                          .title = {"t", 1},
                                          .members = both,
                                          .nmembers = 2});
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_SET_ROLE, "c2", "u8");
    c->user_id = "u7";
    c->user_id_len = 2;
    c->role = KC_ROLE_ADMIN;
    assert_int_equal(run(p, c, 0, &o), OUT_ACCEPTED);
    proc_outcome_free(&o);
    proc_part_destroy(p);
    kc_schemas_destroy(schemas);
}


/* ---- reactions ---- */

static proc_outcome_kind_t react(proc_part_t *p, const proc_limits_t *lim, const char *who,
                                 int64_t seq, const char *emoji, int64_t now, char *counts,
                                 size_t size, const char **reason)
{
    cmd_buf_t b;
    proc_outcome_t o;
    proc_cmd_t *c = make(&b, CMD_SET_REACTION, "c1", who);
    c->seq_no = seq;
    c->emoji = emoji;
    c->emoji_len = emoji ? strlen(emoji) : 0;
    assert_int_equal(proc_apply(p, c, now, lim, &o), 0);
    proc_outcome_kind_t k = o.kind;
    if (reason)
        *reason = o.reason;
    if (counts) {
        /* "previous|emoji:count,emoji:count" */
        size_t at = (size_t)snprintf(counts, size, "%s|", o.previous ? o.previous : "-");
        if (k == OUT_ACCEPTED) {
            kc_chat_count_t cs[KC_CHAT_MAX_REACTION_KINDS];
            size_t n = proc_dd_reaction_counts(o.reacted, cs);
            for (size_t i = 0; i < n && at < size; i++)
                at += (size_t)snprintf(counts + at, size - at, "%s%.*s:%d", i ? "," : "",
                                       (int)cs[i].emoji.n, cs[i].emoji.p, (int)cs[i].count);
        }
    }
    proc_outcome_free(&o);
    return k;
}

#define THUMBS "\xf0\x9f\x91\x8d" /* U+1F44D */
#define HEART "\xe2\x9d\xa4\xef\xb8\x8f" /* U+2764 U+FE0F */

static void a_member_has_one_reaction_per_message(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    char cs[256];
    const char *reason;
    assert_int_equal(react(p, &LIM, "u1", 1, THUMBS, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, "-|" THUMBS ":1");
    assert_int_equal(react(p, &LIM, "u2", 1, THUMBS, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, "-|" THUMBS ":2");
    /* the same again changes nothing and says so */
    assert_int_equal(react(p, &LIM, "u2", 1, THUMBS, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, THUMBS "|" THUMBS ":2");
    /* another replaces it; equal counts go in the byte order of the emoji */
    assert_int_equal(react(p, &LIM, "u2", 1, HEART, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, THUMBS "|" HEART ":1," THUMBS ":1");
    assert_int_equal(react(p, &LIM, "u1", 1, HEART, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, THUMBS "|" HEART ":2");
    /* null removes; removing nothing is accepted too */
    assert_int_equal(react(p, &LIM, "u2", 1, NULL, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, HEART "|" HEART ":1");
    assert_int_equal(react(p, &LIM, "u2", 1, NULL, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, "-|" HEART ":1");
    /* refusals */
    assert_int_equal(react(p, &LIM, "u9", 1, THUMBS, 0, NULL, 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "not_member");
    assert_int_equal(react(p, &LIM, "u1", 2, THUMBS, 0, NULL, 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "no_such_message");
    const char *bad[] = {"", "a b", "tab\there", "\xc2\x85", "\xff", "12345678901234567"};
    for (size_t i = 0; i < KC_ARRAY_LEN(bad); i++) {
        assert_int_equal(react(p, &LIM, "u1", 1, bad[i], 0, NULL, 0, &reason), OUT_REJECTED);
        assert_string_equal(reason, "invalid");
    }
    /* 16 characters pass, a family of seven code points too */
    assert_int_equal(react(p, &LIM, "u1", 1, "1234567890123456", 0, NULL, 0, NULL),
                     OUT_ACCEPTED);
    assert_int_equal(react(p, &LIM, "u1", 1,
                           "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f"
                           "\x91\xa7",
                           0, NULL, 0, NULL),
                     OUT_ACCEPTED);
    /* a deleted message loses its reactions and takes no more */
    assert_int_equal(change(p, CMD_DELETE_MESSAGE, "u1", 1, NULL, &reason), OUT_ACCEPTED);
    char k[32];
    size_t klen = (size_t)snprintf(k, sizeof(k), "c1%c1", '\0');
    const proc_dd_t *d = kc_map_get(p->msgs, k, klen);
    assert_non_null(d);
    assert_int_equal(d->nreactions, 0);
    assert_int_equal(react(p, &LIM, "u2", 1, THUMBS, 0, NULL, 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "deleted");
    /* past the edit window a message takes no reactions */
    assert_int_equal(send(p, "c1", "u1", "m2", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    assert_int_equal(react(p, &LIM, "u2", 2, THUMBS, 1001, NULL, 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "too_old");
    proc_part_destroy(p);
}

static void a_message_has_at_most_twenty_kinds_of_reaction(void **state)
{
    (void)state;
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    char k[32];
    size_t klen = (size_t)snprintf(k, sizeof(k), "c1%c1", '\0');
    proc_dd_t *d = kc_map_get(p->msgs, k, klen);
    assert_non_null(d);
    /* nineteen other people's reactions (as a restore would set them), all different */
    for (int i = 0; i < KC_CHAT_MAX_REACTION_KINDS - 1; i++) {
        char user[8], emoji[8];
        snprintf(user, sizeof(user), "x%d", i);
        snprintf(emoji, sizeof(emoji), "e%d", i);
        proc_dd_set_reaction(d, user, strlen(user), emoji, strlen(emoji));
    }
    const char *reason;
    char cs[512];
    assert_int_equal(react(p, &LIM, "u1", 1, "new", 0, NULL, 0, NULL), OUT_ACCEPTED);
    assert_int_equal(react(p, &LIM, "u2", 1, "another", 0, NULL, 0, &reason), OUT_REJECTED);
    assert_string_equal(reason, "too_many_reactions");
    /* one already there is fine */
    assert_int_equal(react(p, &LIM, "u2", 1, "e3", 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_non_null(strstr(cs, "|e3:2,"));
    /* the only one of its kind may be replaced by a new kind: still twenty */
    assert_int_equal(react(p, &LIM, "u1", 1, "newer", 0, NULL, 0, NULL), OUT_ACCEPTED);
    assert_int_equal(d->nreactions, KC_CHAT_MAX_REACTION_KINDS + 1);
    proc_part_destroy(p);
}

/* A checkpoint writes an entry again when its reactions change; a replay of ReactionChanged
 * sets the actor's reaction to the event's, so twice changes nothing. */
static void reactions_are_checkpointed_and_replayed(void **state)
{
    (void)state;
    char err[256];
    schemas = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    assert_non_null(schemas);
    proc_part_t *p = proc_part_new(0);
    create(p, "c1", "u1", "u2");
    assert_int_equal(send(p, "c1", "u1", "m1", "hi", 0, NULL, NULL), OUT_ACCEPTED);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 1);
    assert_int_equal(react(p, &LIM, "u2", 1, THUMBS, 0, NULL, 0, NULL), OUT_ACCEPTED);
    given = 0;
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 1);
    assert_int_equal(given_seqs[0], 1);
    /* setting the same again is no change to save */
    assert_int_equal(react(p, &LIM, "u2", 1, THUMBS, 0, NULL, 0, NULL), OUT_ACCEPTED);
    assert_int_equal(proc_part_take_unsaved(p, take, NULL), 0);
    char cs[256];
    for (int round = 0; round < 2; round++) {
        replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_REACTION_CHANGED,
                                              .convo_id = {"c1", 2},
                                              .actor_id = {"u1", 2},
                                              .seq_no = 1,
                                              .emoji = {HEART, strlen(HEART)}});
        replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_REACTION_CHANGED,
                                              .convo_id = {"c1", 2},
                                              .actor_id = {"u2", 2},
                                              .seq_no = 1,
                                              .previous = {THUMBS, strlen(THUMBS)}});
        /* a message out of the window: nothing to remember */
        replay_out(p, &(kc_chat_event_out_t){.kind = KC_EV_REACTION_CHANGED,
                                              .convo_id = {"c1", 2},
                                              .actor_id = {"u2", 2},
                                              .seq_no = 99,
                                              .emoji = {"x", 1}});
    }
    assert_int_equal(react(p, &LIM, "u2", 1, NULL, 0, cs, sizeof(cs), NULL), OUT_ACCEPTED);
    assert_string_equal(cs, "-|" HEART ":1");
    proc_part_destroy(p);
    kc_schemas_destroy(schemas);
}

/* Each rejection has one name, distinct from the others, and CommandRejected's schema lists
 * it among the codes of its reason. */
static void rejections_are_named_once_and_documented(void **state)
{
    (void)state;
    FILE *f = fopen(KC_SCHEMAS_DIR "/Event.v4.avsc", "r");
    assert_non_null(f);
    static char avsc[1 << 16];
    size_t n = fread(avsc, 1, sizeof(avsc) - 1, f);
    assert_int_equal(fclose(f), 0);
    assert_true(n > 0 && n < sizeof(avsc) - 1);
    avsc[n] = '\0';
    const char *doc = strstr(avsc, "\"name\": \"reason\"");
    assert_non_null(doc);
    doc = strstr(doc, "A stable code: ");
    assert_non_null(doc);
    const char *end = strchr(doc, '"');
    assert_non_null(end);
    for (int i = 0; i < PROC_REJECT_N; i++) {
        const char *r = proc_reject_reasons[i];
        assert_non_null(r);
        assert_true(r[0] != '\0');
        for (int j = 0; j < i; j++)
            assert_string_not_equal(r, proc_reject_reasons[j]);
        /* a whole word of the list: ` r,` or ` r.` */
        size_t len = strlen(r);
        int listed = 0;
        for (const char *p = strstr(doc, r); p && p < end; p = strstr(p + 1, r))
            listed = listed || (p[-1] == ' ' && (p[len] == ',' || p[len] == '.'));
        if (!listed)
            fail_msg("%s is not among the reasons of Event.v4.avsc", r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_puts_the_creator_in_once),
        cmocka_unit_test(direct_conversations_are_the_pairs),
        cmocka_unit_test(create_counts_the_creator_against_the_limit),
        cmocka_unit_test(seq_no_is_gap_free_and_retries_repeat_it),
        cmocka_unit_test(rejections_change_nothing),
        cmocka_unit_test(a_retry_is_recognised_after_the_sender_left),
        cmocka_unit_test(add_members_reports_only_the_new_ones),
        cmocka_unit_test(read_markers_point_at_messages),
        cmocka_unit_test(replies_point_at_earlier_messages),
        cmocka_unit_test(authors_edit_and_delete_within_the_window),
        cmocka_unit_test(the_edit_window_does_not_depend_on_the_dedupe_window),
        cmocka_unit_test(dirty_state_is_written_once_per_conversation),
        cmocka_unit_test(the_window_expires_and_a_late_retry_is_new),
        cmocka_unit_test(restored_state_behaves_like_the_original),
        cmocka_unit_test(checkpoints_take_each_change_once),
        cmocka_unit_test(blocks_expire_with_their_newest_entry),
        cmocka_unit_test(replaying_events_catches_up_and_twice_changes_nothing),
        cmocka_unit_test(rejections_are_named_once_and_documented),
        cmocka_unit_test(owners_and_admins_run_a_conversation),
        cmocka_unit_test(a_change_must_be_valid),
        cmocka_unit_test(the_last_owner_leaving_hands_ownership_on),
        cmocka_unit_test(owners_and_admins_delete_anyones_message),
        cmocka_unit_test(direct_conversations_have_no_roles),
        cmocka_unit_test(roles_are_restored_and_replayed),
        cmocka_unit_test(a_member_has_one_reaction_per_message),
        cmocka_unit_test(a_message_has_at_most_twenty_kinds_of_reaction),
        cmocka_unit_test(reactions_are_checkpointed_and_replayed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
