/* fuzz_avro.c - a Kafka record's value as the daemons read it: Confluent framing (magic
 * byte, schema id) and the Avro record of any schema in schemas/registry.json.
 *
 * Every input goes through every reader: the generic codec (lib/avro.c, kc_avro_decode:
 * validation, then avro-c) and the chat's own readers (lib/chat.c) of a Command, an Event
 * and a Delivery (each refuses another subject's records), with the daemons' own decoders on
 * top (the processor's proc_command_decode, the projector's proj_event_decode), and the
 * events inside a Delivery's items read as the gateway reads them. The checks:
 *   - the two codecs agree: lib/chat.c accepts a record exactly when avro-c does, and reads
 *     the same values from it;
 *   - a Command or Event read re-encodes (lib/chat.c's writer) to the bytes avro-c writes for
 *     it, no longer than the input (the same bytes when the input was canonical), and those
 *     read back to the same values;
 *   - the daemons' decoders accept only what lib/chat.c accepts, and copy what it read.
 */
#include <string.h>

#include "command.h"
#include "event.h"
#include "fuzz.h"
#include "kchat/avro.h"
#include "kchat/chat.h"
#include "kchat/util.h"

static kc_schemas_t *schemas;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    schemas = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    if (!schemas) {
        fprintf(stderr, "fuzz_avro: %s\n", err);
        abort();
    }
    return 0;
}

static int same(kc_str_t a, const char *p, size_t n)
{
    return a.n == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

static int same_str(kc_str_t a, kc_str_t b)
{
    return same(a, b.p, b.n);
}

/* A string field of a generic record equals what lib/chat.c read. */
static void check_str(avro_value_t *rec, const char *field, kc_str_t s)
{
    const char *p = NULL;
    size_t n = 0;
    CHECK(kc_avro_get_str(schemas, rec, field, &p, &n) == 0);
    CHECK(same(s, p, n));
}

static void check_opt_str(avro_value_t *rec, const char *field, kc_str_t s)
{
    const char *p = NULL;
    size_t n = 0;
    CHECK(kc_avro_get_opt_str(schemas, rec, field, &p, &n) == 0);
    CHECK((p == NULL) == (s.p == NULL));
    if (p)
        CHECK(same(s, p, n));
}

/* reply_to of a version-3 SendMessage or MessageCreated (absent before: null). */
static void check_reply_to(avro_value_t *rec, int version, int has, int64_t v)
{
    if (version < 3) {
        CHECK(!has && v == 0);
        return;
    }
    int64_t g = 0;
    int present = 0;
    CHECK(kc_avro_get_opt_long(schemas, rec, "reply_to", &g, &present) == 0);
    CHECK(present == has && (!has || g == v));
}

static void check_long(avro_value_t *rec, const char *field, int64_t v)
{
    int64_t g = 0;
    CHECK(kc_avro_get_long(schemas, rec, field, &g) == 0);
    CHECK(g == v);
}

/* An enum field (Role) holds the symbol lib/chat.c read. */
static void check_enum(avro_value_t *rec, const char *field, int v)
{
    avro_value_t f;
    int g = -1;
    CHECK(avro_value_get_by_name(rec, field, &f, NULL) == 0);
    CHECK(avro_value_get_enum(&f, &g) == 0);
    CHECK(g == v);
}

/* Two optional strings: both absent, or both there and equal. */
static int same_opt(kc_str_t a, kc_str_t b)
{
    return (a.p == NULL) == (b.p == NULL) && same_str(a, b);
}

/* ReactionChanged.counts: the generic array holds the same (emoji, count) pairs. */
static void check_counts(avro_value_t *rec, const kc_chat_event_t *e)
{
    avro_value_t arr, item, f;
    size_t n = 0;
    CHECK(kc_avro_get_array(rec, "counts", &arr, &n) == 0);
    CHECK(n == e->ncounts);
    for (size_t i = 0; i < n; i++) {
        int32_t c = 0;
        CHECK(avro_value_get_by_index(&arr, i, &item, NULL) == 0);
        check_str(&item, "emoji", e->counts[i].emoji);
        CHECK(avro_value_get_by_name(&item, "count", &f, NULL) == 0);
        CHECK(avro_value_get_int(&f, &c) == 0 && c == e->counts[i].count);
    }
}

/* An array of strings: the generic array and lib/chat.c's iterator hold the same items. */
static void check_strs(avro_value_t *rec, const char *field, kc_chat_strs_t it)
{
    avro_value_t arr;
    size_t n = 0;
    CHECK(kc_avro_get_array(rec, field, &arr, &n) == 0);
    CHECK(n == it.count);
    kc_str_t s;
    size_t i = 0;
    int rc;
    while ((rc = kc_chat_strs_next(&it, &s)) == 1) {
        const char *p = NULL;
        size_t len = 0;
        CHECK(i < n);
        CHECK(kc_avro_array_str(&arr, i, &p, &len) == 0);
        CHECK(same(s, p, len));
        i++;
    }
    CHECK(rc == 0 && i == n);
}

/* The strings of an array as NUL-terminated copies, for a writer; NULL when one holds a NUL
 * byte (the writers take C strings there, so such a record cannot be written again). */
static char **strs_copy(kc_chat_strs_t it, size_t *n)
{
    char **out = kc_xcalloc(it.count + 1, sizeof(char *));
    kc_str_t s;
    *n = 0;
    while (kc_chat_strs_next(&it, &s) == 1) {
        CHECK(*n < it.count);
        out[(*n)++] = kc_xstrndup(s.p, s.n);
        if (memchr(s.p, '\0', s.n)) {
            for (size_t i = 0; i < *n; i++)
                free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- Command ---- */

static int same_command(const kc_chat_command_t *a, const kc_chat_command_t *b)
{
    if (a->kind != b->kind || !same_str(a->command_id, b->command_id) ||
        !same_str(a->convo_id, b->convo_id) || !same_str(a->sender_id, b->sender_id) ||
        !same_str(a->origin, b->origin) || a->issued_at != b->issued_at ||
        !same_str(a->client_msg_id, b->client_msg_id) || !same_str(a->content, b->content) ||
        !same_str(a->content_type, b->content_type) || !same_opt(a->title, b->title) ||
        !same_opt(a->topic, b->topic) || !same_str(a->user_id, b->user_id) ||
        a->role != b->role || a->seq_no != b->seq_no || a->members.count != b->members.count ||
        a->has_reply_to != b->has_reply_to || a->reply_to != b->reply_to ||
        !same_opt(a->emoji, b->emoji))
        return 0;
    kc_chat_strs_t x = a->members, y = b->members;
    kc_str_t s, t;
    while (kc_chat_strs_next(&x, &s) == 1 && kc_chat_strs_next(&y, &t) == 1)
        if (!same_str(s, t))
            return 0;
    return 1;
}

/* lib/chat.c wrote the bytes avro-c writes, or (when the input's attachments came in blocks
 * of another layout, which lib/chat.c copies as they are: negative counts with a byte size,
 * several blocks) bytes that avro-c reads to the same value. */
static int same_record(const kc_buf_t *mine, const kc_buf_t *theirs)
{
    if (mine->len == theirs->len && memcmp(mine->data, theirs->data, mine->len) == 0)
        return 1;
    char err[256];
    kc_avro_msg_t a, b;
    if (kc_avro_decode(schemas, mine->data, mine->len, &a, err, sizeof(err)) != 0)
        return 0;
    int same = 0;
    if (kc_avro_decode(schemas, theirs->data, theirs->len, &b, err, sizeof(err)) == 0) {
        same = a.schema_id == b.schema_id && avro_value_equal(&a.value, &b.value);
        kc_avro_msg_free(&b);
    }
    kc_avro_msg_free(&a);
    return same;
}

/* What the schema allows and lib/chat.c refuses on purpose: more attachments than a message
 * may carry, or one whose size or dimensions are out of their bounds (kchat never writes
 * one). */
static int atts_out_of_bounds(const char *err)
{
    return strstr(err, "attachments, or one out of its bounds") != NULL;
}

static void check_command(const uint8_t *data, size_t size, int generic_ok, kc_avro_msg_t *m)
{
    kc_chat_command_t c;
    char err[256];
    int rc = kc_chat_command_decode(schemas, data, size, &c, err, sizeof(err));
    int is_command = generic_ok && strcmp(m->subject, "chat.commands-value") == 0;
    int atts_refused = is_command && rc != 0 && atts_out_of_bounds(err);
    if ((rc == 0) != is_command && !atts_refused)
        fprintf(stderr, "lib/chat.c: %s, avro-c: %s\n", rc ? err : "accepted",
                generic_ok ? m->subject : "refused");
    CHECK(atts_refused || (rc == 0) == is_command);

    proc_cmd_mem_t mem = {0};
    proc_cmd_t pc;
    int prc = proc_command_decode(schemas, data, size, &mem, &pc, err, sizeof(err));
    CHECK((prc == 0) == (rc == 0));
    if (rc != 0) {
        proc_command_mem_free(&mem);
        return;
    }
    /* The processor's copies are what lib/chat.c read, NUL-terminated. */
    CHECK(same(c.convo_id, pc.convo_id, pc.convo_id_len) && pc.convo_id[pc.convo_id_len] == 0);
    CHECK(same(c.sender_id, pc.sender_id, pc.sender_id_len));
    CHECK(strcmp(pc.type_name, kc_chat_command_kind_name(c.kind)) == 0);
    CHECK(pc.issued_at == c.issued_at && pc.seq_no == c.seq_no);
    if (c.kind == KC_CMD_SEND_MESSAGE) {
        CHECK(same(c.client_msg_id, pc.client_msg_id, pc.client_msg_id_len));
        CHECK(same(c.content, pc.content, pc.content_len));
    }
    if (c.kind == KC_CMD_CREATE_CONVERSATION || c.kind == KC_CMD_ADD_MEMBERS ||
        c.kind == KC_CMD_REMOVE_MEMBERS)
        CHECK(pc.nmembers == c.members.count);
    proc_command_mem_free(&mem);

    /* The generic value holds the same. */
    avro_value_t *rec = &m->value, body;
    const char *bname = NULL;
    check_str(rec, "command_id", c.command_id);
    check_str(rec, "convo_id", c.convo_id);
    check_str(rec, "sender_id", c.sender_id);
    check_long(rec, "issued_at", c.issued_at);
    check_str(rec, "origin", c.origin);
    CHECK(kc_avro_get_branch(rec, "body", &bname, &body) == 0);
    CHECK(strcmp(bname, kc_chat_command_kind_name(c.kind)) == 0);
    switch (c.kind) {
    case KC_CMD_SEND_MESSAGE:
        check_str(&body, "client_msg_id", c.client_msg_id);
        check_str(&body, "content", c.content);
        check_str(&body, "content_type", c.content_type);
        check_reply_to(&body, c.version, c.has_reply_to, c.reply_to);
        break;
    case KC_CMD_CREATE_CONVERSATION:
        check_str(&body, "title", c.title);
        check_strs(&body, "members", c.members);
        break;
    case KC_CMD_ADD_MEMBERS:
    case KC_CMD_REMOVE_MEMBERS: check_strs(&body, "members", c.members); break;
    case KC_CMD_EDIT_MESSAGE:
        check_long(&body, "seq_no", c.seq_no);
        check_str(&body, "content", c.content);
        break;
    case KC_CMD_DELETE_MESSAGE:
    case KC_CMD_SET_READ_MARKER: check_long(&body, "seq_no", c.seq_no); break;
    case KC_CMD_UPDATE_CONVERSATION:
        check_opt_str(&body, "title", c.title);
        check_opt_str(&body, "topic", c.topic);
        break;
    case KC_CMD_SET_ROLE:
        check_str(&body, "user_id", c.user_id);
        check_enum(&body, "role", (int)c.role);
        break;
    case KC_CMD_SET_REACTION:
        check_long(&body, "seq_no", c.seq_no);
        check_opt_str(&body, "emoji", c.emoji);
        break;
    default: CHECK(!"unknown command kind");
    }

    /* Written again (the writer writes the newest version only): the bytes avro-c writes,
     * read back to the same command. */
    if (m->schema_id != kc_schemas_current_id(schemas, "chat.commands-value"))
        return;
    size_t n = 0;
    char **members = strs_copy(c.members, &n);
    if (!members)
        return;
    kc_chat_command_t out = c;
    out.members_out = (const char *const *)members;
    out.nmembers_out = n;
    kc_buf_t mine = {0}, theirs = {0};
    kc_chat_command_encode(&mine, m->schema_id, &out);
    CHECK(kc_avro_encode(schemas, m->subject, rec, &theirs) == 0);
    CHECK(same_record(&mine, &theirs));
    CHECK(mine.len <= size);
    kc_chat_command_t again;
    CHECK(kc_chat_command_decode(schemas, mine.data, mine.len, &again, err, sizeof(err)) == 0);
    CHECK(same_command(&c, &again));
    kc_buf_free(&mine);
    kc_buf_free(&theirs);
    strs_free(members, n);
}

/* ---- Event ---- */

static int same_event(const kc_chat_event_t *a, const kc_chat_event_t *b)
{
    if (a->kind != b->kind || !same_str(a->event_id, b->event_id) ||
        !same_str(a->convo_id, b->convo_id) || !same_str(a->actor_id, b->actor_id) ||
        !same_str(a->command_id, b->command_id) || !same_str(a->origin, b->origin) ||
        a->occurred_at != b->occurred_at || !same_opt(a->title, b->title) ||
        !same_opt(a->topic, b->topic) || !same_opt(a->promoted, b->promoted) ||
        !same_str(a->user_id, b->user_id) || a->role != b->role ||
        a->has_reply_to != b->has_reply_to || a->reply_to != b->reply_to ||
        a->seq_no != b->seq_no || !same_str(a->server_msg_id, b->server_msg_id) ||
        (a->client_msg_id.p == NULL) != (b->client_msg_id.p == NULL) ||
        !same_str(a->client_msg_id, b->client_msg_id) || !same_str(a->content, b->content) ||
        !same_str(a->content_type, b->content_type) || !same_str(a->reason, b->reason) ||
        !same_str(a->message, b->message) || !same_str(a->command_type, b->command_type) ||
        a->members.count != b->members.count || !same_opt(a->emoji, b->emoji) ||
        !same_opt(a->previous, b->previous) || a->ncounts != b->ncounts ||
        !same_str(a->type, b->type))
        return 0;
    for (size_t i = 0; i < a->ncounts; i++)
        if (!same_str(a->counts[i].emoji, b->counts[i].emoji) ||
            a->counts[i].count != b->counts[i].count)
            return 0;
    kc_chat_strs_t x = a->members, y = b->members;
    kc_str_t s, t;
    while (kc_chat_strs_next(&x, &s) == 1 && kc_chat_strs_next(&y, &t) == 1)
        if (!same_str(s, t))
            return 0;
    return 1;
}

/* The projector's copy of a string: NUL bytes of free text as U+FFFD, so compared with
 * them put back. */
static int same_text(kc_str_t s, const char *copy)
{
    size_t i = 0, o = 0;
    for (; i < s.n; i++) {
        if (s.p[i]) {
            if (copy[o] != s.p[i])
                return 0;
            o++;
        } else {
            if (memcmp(copy + o, "\xEF\xBF\xBD", 3) != 0)
                return 0;
            o += 3;
        }
    }
    return copy[o] == '\0';
}

static void check_event_generic(const kc_chat_event_t *e, kc_avro_msg_t *m)
{
    avro_value_t *rec = &m->value, body;
    const char *bname = NULL;
    check_str(rec, "event_id", e->event_id);
    check_str(rec, "convo_id", e->convo_id);
    check_str(rec, "actor_id", e->actor_id);
    check_long(rec, "occurred_at", e->occurred_at);
    check_str(rec, "command_id", e->command_id);
    check_str(rec, "origin", e->origin);
    CHECK(kc_avro_get_branch(rec, "body", &bname, &body) == 0);
    CHECK(strcmp(bname, kc_chat_event_kind_name(e->kind)) == 0);
    if (e->version >= 6)
        check_str(rec, "type", e->type);
    switch (e->kind) {
    case KC_EV_CONVERSATION_CREATED:
        check_str(&body, "title", e->title);
        check_strs(&body, "members", e->members);
        break;
    case KC_EV_MEMBERS_ADDED: check_strs(&body, "members", e->members); break;
    case KC_EV_MEMBERS_REMOVED:
        check_strs(&body, "members", e->members);
        if (e->version >= 2) {
            check_long(&body, "seq_no", e->seq_no);
            check_opt_str(&body, "promoted", e->promoted);
        }
        break;
    case KC_EV_CONVERSATION_UPDATED:
        check_opt_str(&body, "title", e->title);
        check_opt_str(&body, "topic", e->topic);
        break;
    case KC_EV_ROLE_CHANGED:
        check_str(&body, "user_id", e->user_id);
        check_enum(&body, "role", (int)e->role);
        break;
    case KC_EV_MESSAGE_CREATED:
        check_long(&body, "seq_no", e->seq_no);
        check_str(&body, "server_msg_id", e->server_msg_id);
        check_str(&body, "client_msg_id", e->client_msg_id);
        check_str(&body, "content", e->content);
        check_str(&body, "content_type", e->content_type);
        check_reply_to(&body, e->version, e->has_reply_to, e->reply_to);
        break;
    case KC_EV_MESSAGE_EDITED:
        check_long(&body, "seq_no", e->seq_no);
        check_str(&body, "content", e->content);
        break;
    case KC_EV_MESSAGE_DELETED:
    case KC_EV_READ_MARKER_SET: check_long(&body, "seq_no", e->seq_no); break;
    case KC_EV_COMMAND_REJECTED:
        check_str(&body, "reason", e->reason);
        check_str(&body, "message", e->message);
        check_str(&body, "command_type", e->command_type);
        check_opt_str(&body, "client_msg_id", e->client_msg_id);
        break;
    case KC_EV_REACTION_CHANGED:
        check_long(&body, "seq_no", e->seq_no);
        check_opt_str(&body, "emoji", e->emoji);
        check_opt_str(&body, "previous", e->previous);
        check_counts(&body, e);
        break;
    default: CHECK(!"unknown event kind");
    }
}

static void check_event(const uint8_t *data, size_t size)
{
    char err[256];
    kc_avro_msg_t m;
    int generic_ok = kc_avro_decode(schemas, data, size, &m, err, sizeof(err)) == 0;
    kc_chat_event_t e;
    char gerr[256];
    memcpy(gerr, err, sizeof(gerr));
    int rc = kc_chat_event_decode(schemas, data, size, &e, err, sizeof(err));
    /* What the schema allows and lib/chat.c refuses on purpose: counts and attachments it
     * never writes. */
    int counts_refused = rc != 0 && (strncmp(err, "ReactionChanged with", 20) == 0 ||
                                     atts_out_of_bounds(err));
    if ((rc == 0) != (generic_ok && strcmp(m.subject, "chat.events-value") == 0) &&
        !counts_refused)
        fprintf(stderr, "lib/chat.c: %s, avro-c: %s\n", rc ? err : "accepted",
                generic_ok ? m.subject : gerr);
    CHECK(counts_refused ||
          (rc == 0) == (generic_ok && strcmp(m.subject, "chat.events-value") == 0));

    proj_event_t pe;
    int prc = proj_event_decode(schemas, data, size, &pe, err, sizeof(err));
    CHECK(prc != 0 || rc == 0);
    if (prc == 0) {
        CHECK(same_text(e.convo_id, pe.convo_id) && same_text(e.event_id, pe.event_id));
        CHECK(strcmp(pe.type, kc_chat_event_kind_name(e.kind)) == 0);
        CHECK(pe.at == e.occurred_at && pe.seq_no == e.seq_no);
        if (e.kind == KC_EV_MESSAGE_CREATED || e.kind == KC_EV_MESSAGE_EDITED)
            CHECK(same_text(e.content, pe.content));
        if (e.kind <= KC_EV_MEMBERS_REMOVED) {
            CHECK(pe.nmembers == e.members.count && pe.members[pe.nmembers] == NULL);
            kc_chat_strs_t it = e.members;
            kc_str_t s;
            for (size_t i = 0; kc_chat_strs_next(&it, &s) == 1; i++)
                CHECK(same_text(s, pe.members[i]));
        }
        proj_event_free(&pe);
    }
    if (rc != 0) {
        if (generic_ok)
            kc_avro_msg_free(&m);
        return;
    }
    check_event_generic(&e, &m);

    /* Written again (the writer writes the newest version only). */
    size_t n = 0;
    char **members = m.schema_id == kc_schemas_current_id(schemas, "chat.events-value")
                         ? strs_copy(e.members, &n)
                         : NULL;
    if (members) {
        kc_chat_event_out_t out = {
            .kind = e.kind,         .event_id = e.event_id,   .convo_id = e.convo_id,
            .actor_id = e.actor_id, .command_id = e.command_id, .origin = e.origin,
            .occurred_at = e.occurred_at, .title = e.title,   .members = members,
            .nmembers = n,          .seq_no = e.seq_no,       .server_msg_id = e.server_msg_id,
            .client_msg_id = e.client_msg_id, .content = e.content,
            .content_type = e.content_type, .reason = e.reason, .message = e.message,
            .command_type = e.command_type, .topic = e.topic, .promoted = e.promoted,
            .user_id = e.user_id, .role = e.role, .reply_to = e.reply_to,
            .has_reply_to = e.has_reply_to, .emoji = e.emoji, .previous = e.previous,
            .counts = e.counts, .ncounts = e.ncounts, .type = e.type,
        };
        kc_buf_t mine = {0}, theirs = {0};
        kc_chat_event_encode(&mine, m.schema_id, &out);
        CHECK(kc_avro_encode(schemas, m.subject, &m.value, &theirs) == 0);
        CHECK(same_record(&mine, &theirs));
        CHECK(mine.len <= size);
        kc_chat_event_t again;
        CHECK(kc_chat_event_decode(schemas, mine.data, mine.len, &again, err, sizeof(err)) == 0);
        CHECK(same_event(&e, &again));
        kc_buf_free(&mine);
        kc_buf_free(&theirs);
        strs_free(members, n);
    }
    kc_avro_msg_free(&m);
}

/* ---- Delivery ---- */

/* One delivery of lib/chat.c against the generic record that holds it (the Delivery itself
 * for version 1, a DeliveryItem of version 2). */
static void check_item(avro_value_t *rec, const kc_chat_item_t *it, int with_slots)
{
    check_str(rec, "convo_id", it->convo_id);
    check_strs(rec, "recipients", it->recipients);
    const void *ev = NULL;
    size_t evlen = 0;
    CHECK(kc_avro_get_opt_bytes(schemas, rec, "event", &ev, &evlen) == 0);
    CHECK((ev == NULL) == (it->event == NULL));
    if (ev)
        CHECK(evlen == it->event_len && (evlen == 0 || memcmp(ev, it->event, evlen) == 0));
    avro_value_t ack;
    const char *bname = NULL;
    CHECK(kc_avro_get_branch(rec, "ack", &bname, &ack) == 0);
    CHECK(it->has_ack == (strcmp(bname, "null") != 0));
    if (it->has_ack) {
        check_str(&ack, "sender_id", it->ack.sender_id);
        check_str(&ack, "client_msg_id", it->ack.client_msg_id);
        check_str(&ack, "status", it->ack.status);
        check_opt_str(&ack, "server_msg_id", it->ack.server_msg_id);
        check_opt_str(&ack, "error_code", it->ack.error_code);
        check_opt_str(&ack, "error_message", it->ack.error_message);
        int64_t seq = 0;
        int present = 0;
        CHECK(kc_avro_get_opt_long(schemas, &ack, "seq_no", &seq, &present) == 0);
        CHECK(present == it->ack.has_seq && (!present || seq == it->ack.seq_no));
    }
    if (!with_slots)
        return;
    avro_value_t slots;
    size_t n = 0;
    CHECK(kc_avro_get_array(rec, "actor_slots", &slots, &n) == 0);
    /* lib/chat.c keeps the first KC_CHAT_MAX_SLOTS slots (there are no more gateways) and
     * skips negative values. */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        avro_value_t el;
        int32_t v = 0;
        CHECK(avro_value_get_by_index(&slots, i, &el, NULL) == 0);
        CHECK(avro_value_get_int(&el, &v) == 0);
        if (v < 0 || kept == KC_CHAT_MAX_SLOTS)
            continue;
        CHECK(kept < it->nactor_slots && v == it->actor_slots[kept]);
        kept++;
    }
    CHECK(kept == it->nactor_slots);
}

static void check_delivery(const uint8_t *data, size_t size, int generic_ok, kc_avro_msg_t *m)
{
    char err[256];
    kc_chat_delivery_t d;
    int ok = kc_chat_delivery_open(schemas, data, size, &d, err, sizeof(err)) == 0;
    int is_delivery = generic_ok && strcmp(m->subject, "chat.deliveries-value") == 0;
    avro_value_t items;
    size_t nitems = 0, i = 0;
    if (is_delivery && !(ok && d.single))
        CHECK(kc_avro_get_array(&m->value, "items", &items, &nitems) == 0);
    if (ok) {
        int32_t slot = 0;
        CHECK(!is_delivery || (kc_avro_get_int(schemas, &m->value, "slot", &slot) == 0 &&
                               slot == d.slot));
    }
    kc_chat_item_t it;
    int rc = ok ? 1 : -1;
    while (ok && (rc = kc_chat_delivery_next(&d, &it)) == 1) {
        if (is_delivery) {
            if (d.single) {
                check_item(&m->value, &it, 0);
            } else {
                avro_value_t item;
                CHECK(i < nitems);
                CHECK(avro_value_get_by_index(&items, i, &item, NULL) == 0);
                check_item(&item, &it, 1);
            }
        }
        i++;
        /* The gateway reads each item's event. */
        if (it.event)
            check_event(it.event, it.event_len);
        kc_str_t r;
        int rr;
        while ((rr = kc_chat_strs_next(&it.recipients, &r)) == 1)
            ;
        CHECK(rr == 0);
    }
    /* Accepted whole (every item read, nothing left over) exactly when avro-c accepts it. */
    if ((rc == 0) != is_delivery)
        fprintf(stderr, "lib/chat.c: %s (item %zu: %d), avro-c: %s\n", ok ? "opened" : err, i, rc,
                generic_ok ? m->subject : "refused");
    CHECK((rc == 0) == is_delivery);
    if (is_delivery && !d.single)
        CHECK(i == nitems);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    kc_avro_msg_t m;
    int generic_ok = kc_avro_decode(schemas, data, size, &m, err, sizeof(err)) == 0;
    if (generic_ok) {
        const char *subject = NULL;
        int version = 0;
        CHECK(kc_schemas_describe(schemas, m.schema_id, &subject, &version) == 0);
        CHECK(strcmp(subject, m.subject) == 0);
    }
    check_command(data, size, generic_ok, &m);
    check_event(data, size);
    check_delivery(data, size, generic_ok, &m);
    if (generic_ok)
        kc_avro_msg_free(&m);
    return 0;
}
