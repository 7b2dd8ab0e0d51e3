/* The chat's wire formats (lib/chat.c): what the writers write, the readers read back, avro-c
 * (an independent Avro implementation) reads the same, every version of a subject is read,
 * and broken input of any kind is refused without reading past its end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/chat.h"

static kc_schemas_t *S;

static int setup(void **state)
{
    (void)state;
    char err[256];
    S = kc_schemas_load(KC_SCHEMAS_DIR, err, sizeof(err));
    return S ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kc_schemas_destroy(S);
    return 0;
}

static int str_is(kc_str_t s, const char *want)
{
    return s.p && s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static kc_str_t S_(const char *s)
{
    return (kc_str_t){s, strlen(s)};
}

/* ---- Delivery ---- */

static void write_batch(kc_buf_t *b)
{
    static const char *const recips[] = {"u1", "u2", "u3"};
    static const int32_t slots[] = {0, 2};
    kc_chat_ack_out_t ok = {.sender_id = "u1", .client_msg_id = "m-1", .status = "ok",
                            .server_msg_id = "c1:7", .seq_no = 7, .has_seq = 1};
    kc_chat_ack_out_t bad = {.sender_id = "u2", .client_msg_id = "m-2", .status = "error",
                             .error_code = "not_member", .error_message = "no"};
    kc_chat_delivery_begin(b, kc_schemas_current_id(S, "chat.deliveries-value"), 2);
    kc_chat_delivery_put(b, "c1", recips, 3, "EVENT", 5, &ok, slots, 2);
    kc_chat_delivery_put(b, "c2", NULL, 0, NULL, 0, &bad, NULL, 0);
    kc_chat_delivery_put(b, "c3", recips + 1, 1, "E2", 2, NULL, NULL, 0);
    kc_chat_delivery_end(b);
}

static void a_batch_reads_back_item_by_item(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    write_batch(&b);
    kc_chat_delivery_t d;
    char err[256];
    assert_int_equal(kc_chat_delivery_open(S, b.data, b.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.slot, 2);
    assert_int_equal(d.version, 2);
    kc_chat_item_t it;
    kc_str_t r;
    assert_int_equal(kc_chat_delivery_next(&d, &it), 1);
    assert_true(str_is(it.convo_id, "c1"));
    assert_int_equal(it.recipients.count, 3);
    assert_int_equal(kc_chat_strs_next(&it.recipients, &r), 1);
    assert_true(str_is(r, "u1"));
    assert_int_equal(kc_chat_strs_next(&it.recipients, &r), 1);
    assert_int_equal(kc_chat_strs_next(&it.recipients, &r), 1);
    assert_true(str_is(r, "u3"));
    assert_int_equal(kc_chat_strs_next(&it.recipients, &r), 0);
    assert_int_equal(it.event_len, 5);
    assert_memory_equal(it.event, "EVENT", 5);
    assert_true(it.has_ack);
    assert_true(str_is(it.ack.sender_id, "u1"));
    assert_true(str_is(it.ack.server_msg_id, "c1:7"));
    assert_true(it.ack.has_seq && it.ack.seq_no == 7);
    assert_null(it.ack.error_code.p);
    assert_int_equal(it.nactor_slots, 2);
    assert_int_equal(it.actor_slots[1], 2);
    assert_int_equal(kc_chat_delivery_next(&d, &it), 1);
    assert_true(str_is(it.convo_id, "c2"));
    assert_null(it.event);
    assert_true(str_is(it.ack.error_code, "not_member"));
    assert_false(it.ack.has_seq);
    assert_null(it.ack.server_msg_id.p);
    assert_int_equal(kc_chat_delivery_next(&d, &it), 1);
    assert_false(it.has_ack);
    assert_int_equal(kc_chat_delivery_next(&d, &it), 0);
    assert_int_equal(kc_chat_delivery_next(&d, &it), 0);
    kc_buf_free(&b);
}

static void avro_c_reads_a_batch_too(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    write_batch(&b);
    kc_avro_msg_t m;
    char err[256];
    assert_int_equal(kc_avro_decode(S, b.data, b.len, &m, err, sizeof(err)), 0);
    avro_value_t items, item;
    size_t n;
    assert_int_equal(kc_avro_get_array(&m.value, "items", &items, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(avro_value_get_by_index(&items, 0, &item, NULL), 0);
    const char *s;
    size_t len;
    assert_int_equal(kc_avro_get_str(S, &item, "convo_id", &s, &len), 0);
    assert_string_equal(s, "c1");
    const char *bname;
    avro_value_t ack;
    assert_int_equal(kc_avro_get_branch(&item, "ack", &bname, &ack), 0);
    assert_string_equal(bname, "Ack");
    int64_t seq;
    int present;
    assert_int_equal(kc_avro_get_opt_long(S, &ack, "seq_no", &seq, &present), 0);
    assert_true(present && seq == 7);
    kc_avro_msg_free(&m);
    kc_buf_free(&b);
}

/* A version-1 Delivery (one delivery, no items), as the processor wrote it before. */
static void a_version_1_record_is_one_item(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_avro_put_header(&b, 3);
    kc_avro_put_long(&b, 1);      /* slot */
    kc_avro_put_str(&b, "c9", 2); /* convo_id */
    kc_avro_put_long(&b, 1);
    kc_avro_put_str(&b, "u7", 2);
    kc_avro_put_long(&b, 0);      /* recipients */
    kc_avro_put_long(&b, 1);
    kc_avro_put_str(&b, "EV", 2); /* event */
    kc_avro_put_long(&b, 1);      /* ack */
    kc_avro_put_str(&b, "u7", 2);
    kc_avro_put_str(&b, "m", 1);
    kc_avro_put_str(&b, "duplicate", 9);
    kc_avro_put_long(&b, 1);
    kc_avro_put_str(&b, "c9:3", 4);
    kc_avro_put_long(&b, 1);
    kc_avro_put_long(&b, 3);
    kc_avro_put_long(&b, 0);
    kc_avro_put_long(&b, 0);
    kc_chat_delivery_t d;
    char err[256];
    assert_int_equal(kc_chat_delivery_open(S, b.data, b.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.version, 1);
    kc_chat_item_t it;
    assert_int_equal(kc_chat_delivery_next(&d, &it), 1);
    assert_true(str_is(it.convo_id, "c9"));
    assert_true(str_is(it.ack.status, "duplicate"));
    assert_int_equal(it.ack.seq_no, 3);
    assert_int_equal(it.nactor_slots, 0);
    assert_int_equal(kc_chat_delivery_next(&d, &it), 0);
    /* avro-c agrees it is a well-formed version-1 Delivery */
    kc_avro_msg_t m;
    assert_int_equal(kc_avro_decode(S, b.data, b.len, &m, err, sizeof(err)), 0);
    kc_avro_msg_free(&m);
    kc_buf_free(&b);
}

/* Every prefix of a record, and every single-byte change, is read without going past the end
 * (ASan watches) and a prefix is always refused. */
static int read_all_items(const void *p, size_t len)
{
    kc_chat_delivery_t d;
    char err[256];
    if (kc_chat_delivery_open(S, p, len, &d, err, sizeof(err)) != 0)
        return -1;
    kc_chat_item_t it;
    int rc;
    while ((rc = kc_chat_delivery_next(&d, &it)) == 1) {
        kc_str_t r;
        while (kc_chat_strs_next(&it.recipients, &r) == 1)
            ;
    }
    return rc;
}

static void broken_deliveries_are_refused(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    write_batch(&b);
    for (size_t n = 0; n < b.len; n++) {
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        assert_int_equal(read_all_items(copy, n), -1);
        free(copy);
    }
    unsigned char *copy = malloc(b.len);
    for (size_t i = 5; i < b.len; i++) {
        for (int v = 0; v < 256; v += 37) {
            memcpy(copy, b.data, b.len);
            copy[i] = (unsigned char)v;
            (void)read_all_items(copy, b.len); /* may be valid: must not crash */
        }
    }
    free(copy);
    /* a huge claimed count or length */
    kc_buf_t h = {0};
    kc_chat_delivery_begin(&h, kc_schemas_current_id(S, "chat.deliveries-value"), 0);
    kc_avro_put_long(&h, INT64_MAX / 4);
    assert_int_equal(read_all_items(h.data, h.len), -1);
    kc_buf_free(&h);
    /* A block with a negative count gives its size in bytes (found by fuzz/fuzz_avro, input
     * in fuzz/regress/avro): a size past the end, or a negative one, is refused as avro-c
     * refuses it, and so is the count -2^63 (once read as the end of the array). */
    const int64_t sizes[] = {1000, -1};
    for (size_t k = 0; k < 2; k++) {
        kc_buf_t nb = {0};
        kc_chat_delivery_begin(&nb, kc_schemas_current_id(S, "chat.deliveries-value"), 0);
        kc_avro_put_long(&nb, -1);
        kc_avro_put_long(&nb, sizes[k]);
        kc_buf_t item = {0};
        kc_chat_delivery_put(&item, "c1", NULL, 0, NULL, 0, NULL, NULL, 0);
        kc_buf_append(&nb, item.data + 1, item.len - 1); /* without put's count of 1 */
        kc_chat_delivery_end(&nb);
        assert_int_equal(read_all_items(nb.data, nb.len), -1);
        kc_avro_msg_t m;
        char e[256];
        assert_int_not_equal(kc_avro_decode(S, nb.data, nb.len, &m, e, sizeof(e)), 0);
        kc_buf_free(&nb);
        kc_buf_free(&item);
    }
    kc_buf_t mn = {0};
    kc_chat_delivery_begin(&mn, kc_schemas_current_id(S, "chat.deliveries-value"), 0);
    kc_avro_put_long(&mn, INT64_MIN);
    kc_avro_put_long(&mn, 0);
    assert_int_equal(read_all_items(mn.data, mn.len), -1);
    kc_buf_free(&mn);
    /* the same block with its true size is read */
    {
        kc_buf_t ok = {0}, item = {0};
        kc_chat_delivery_begin(&ok, kc_schemas_current_id(S, "chat.deliveries-value"), 0);
        kc_chat_delivery_put(&item, "c1", NULL, 0, NULL, 0, NULL, NULL, 0);
        kc_avro_put_long(&ok, -1);
        kc_avro_put_long(&ok, (int64_t)item.len - 1);
        kc_buf_append(&ok, item.data + 1, item.len - 1);
        kc_chat_delivery_end(&ok);
        assert_int_equal(read_all_items(ok.data, ok.len), 0);
        kc_buf_free(&ok);
        kc_buf_free(&item);
    }
    /* an actor slot is an Avro int: 2^31 is refused (found by fuzz/fuzz_avro: it was
     * skipped, and the record taken), -1 is skipped */
    const int64_t slot_values[] = {INT64_C(2147483648), -1};
    for (size_t k = 0; k < 2; k++) {
        kc_buf_t sb = {0};
        kc_chat_delivery_begin(&sb, kc_schemas_current_id(S, "chat.deliveries-value"), 0);
        kc_avro_put_long(&sb, 1);          /* one item */
        kc_avro_put_str(&sb, "c1", 2);     /* convo_id */
        kc_avro_put_long(&sb, 0);          /* recipients */
        kc_avro_put_long(&sb, 0);          /* event: null */
        kc_avro_put_long(&sb, 0);          /* ack: null */
        kc_avro_put_long(&sb, 2);          /* actor_slots: 2, then the value */
        kc_avro_put_long(&sb, 3);
        kc_avro_put_long(&sb, slot_values[k]);
        kc_avro_put_long(&sb, 0);
        kc_chat_delivery_end(&sb);
        kc_chat_delivery_t sd;
        kc_chat_item_t si;
        char se[256];
        assert_int_equal(kc_chat_delivery_open(S, sb.data, sb.len, &sd, se, sizeof(se)), 0);
        if (k == 0) {
            assert_int_equal(kc_chat_delivery_next(&sd, &si), -1);
        } else {
            assert_int_equal(kc_chat_delivery_next(&sd, &si), 1);
            assert_int_equal(si.nactor_slots, 1);
            assert_int_equal(si.actor_slots[0], 3);
            assert_int_equal(kc_chat_delivery_next(&sd, &si), 0);
        }
        kc_buf_free(&sb);
    }
    /* another subject's id, an unknown id, a wrong magic byte */
    kc_chat_delivery_t d;
    char err[256];
    unsigned char other[] = {0, 0, 0, 0, 2, 0};
    assert_int_equal(kc_chat_delivery_open(S, other, sizeof(other), &d, err, sizeof(err)), -1);
    unsigned char unknown[] = {0, 0, 0, 0x7f, 2, 0};
    assert_int_equal(kc_chat_delivery_open(S, unknown, sizeof(unknown), &d, err, sizeof(err)), -1);
    memcpy(copy = malloc(b.len), b.data, b.len);
    copy[0] = 1;
    assert_int_equal(kc_chat_delivery_open(S, copy, b.len, &d, err, sizeof(err)), -1);
    free(copy);
    kc_buf_free(&b);
}

/* ---- Event ---- */

static void an_event_of_each_kind_reads_back_and_avro_c_agrees(void **state)
{
    (void)state;
    char *members[] = {"u1", "u2"};
    kc_chat_count_t counts[] = {{S_("\xf0\x9f\x91\x8d"), 2}, {S_("ok"), 1}};
    for (int k = KC_EV_CONVERSATION_CREATED; k <= KC_EV_REACTION_CHANGED; k++) {
        kc_chat_event_out_t out = {.kind = (kc_chat_event_kind_t)k,
                                   .event_id = S_("e-1"),
                                   .convo_id = S_("c1"),
                                   .actor_id = S_("u1"),
                                   .occurred_at = 1700000000123LL,
                                   .command_id = S_("cmd"),
                                   .origin = S_("gateway:2"),
                                   .title = S_("Title \xc3\xa9"),
                                   .members = members,
                                   .nmembers = 2,
                                   .seq_no = 42,
                                   .server_msg_id = S_("c1:42"),
                                   .client_msg_id = S_("m-42"),
                                   .content = S_("hello"),
                                   .content_type = S_("text/plain"),
                                   .reason = S_("not_member"),
                                   .message = S_("why"),
                                   .command_type = S_("SendMessage"),
                                   .topic = S_("about"),
                                   .promoted = S_("u3"),
                                   .user_id = S_("u2"),
                                   .role = KC_ROLE_ADMIN,
                                   .reply_to = 41,
                                   .has_reply_to = 1,
                                   .emoji = S_("\xf0\x9f\x91\x8d"),
                                   .counts = counts,
                                   .ncounts = 2};
        kc_buf_t b = {0};
        kc_chat_event_encode(&b, kc_schemas_current_id(S, "chat.events-value"), &out);
        kc_chat_event_t ev;
        char err[256];
        assert_int_equal(kc_chat_event_decode(S, b.data, b.len, &ev, err, sizeof(err)), 0);
        assert_int_equal(ev.kind, k);
        assert_true(str_is(ev.convo_id, "c1"));
        assert_true(str_is(ev.origin, "gateway:2"));
        assert_int_equal(ev.occurred_at, 1700000000123LL);
        kc_avro_msg_t m;
        assert_int_equal(kc_avro_decode(S, b.data, b.len, &m, err, sizeof(err)), 0);
        const char *bname;
        avro_value_t body;
        assert_int_equal(kc_avro_get_branch(&m.value, "body", &bname, &body), 0);
        assert_string_equal(bname, kc_chat_event_kind_name((kc_chat_event_kind_t)k));
        /* the envelope names the body too (version 6), for decoders that drop member names */
        assert_true(str_is(ev.type, kc_chat_event_kind_name((kc_chat_event_kind_t)k)));
        const char *type = NULL;
        size_t type_len = 0;
        assert_int_equal(kc_avro_get_str(S, &m.value, "type", &type, &type_len), 0);
        assert_int_equal(type_len, strlen(kc_chat_event_kind_name((kc_chat_event_kind_t)k)));
        assert_memory_equal(type, kc_chat_event_kind_name((kc_chat_event_kind_t)k), type_len);
        int64_t seq = 0;
        kc_str_t r;
        switch (k) {
        case KC_EV_CONVERSATION_CREATED:
            assert_true(str_is(ev.title, "Title \xc3\xa9"));
            __attribute__((fallthrough));
        case KC_EV_MEMBERS_ADDED:
        case KC_EV_MEMBERS_REMOVED:
            assert_int_equal(ev.members.count, 2);
            assert_int_equal(kc_chat_strs_next(&ev.members, &r), 1);
            assert_true(str_is(r, "u1"));
            if (k == KC_EV_MEMBERS_REMOVED) {
                assert_int_equal(ev.seq_no, 42);
                assert_true(str_is(ev.promoted, "u3"));
                const char *pr = NULL;
                size_t prn = 0;
                assert_int_equal(kc_avro_get_opt_str(S, &body, "promoted", &pr, &prn), 0);
                assert_true(pr && prn == 2 && memcmp(pr, "u3", 2) == 0);
            }
            break;
        case KC_EV_CONVERSATION_UPDATED:
            assert_true(str_is(ev.title, "Title \xc3\xa9"));
            assert_true(str_is(ev.topic, "about"));
            break;
        case KC_EV_ROLE_CHANGED: {
            assert_true(str_is(ev.user_id, "u2"));
            assert_int_equal(ev.role, KC_ROLE_ADMIN);
            avro_value_t role;
            int sym = -1;
            assert_int_equal(avro_value_get_by_name(&body, "role", &role, NULL), 0);
            assert_int_equal(avro_value_get_enum(&role, &sym), 0);
            assert_int_equal(sym, KC_ROLE_ADMIN);
            break;
        }
        case KC_EV_MESSAGE_CREATED: {
            assert_true(str_is(ev.client_msg_id, "m-42"));
            assert_true(str_is(ev.content, "hello"));
            assert_int_equal(kc_avro_get_long(S, &body, "seq_no", &seq), 0);
            assert_int_equal(seq, 42);
            int64_t rt = 0;
            int present = 0;
            assert_int_equal(kc_avro_get_opt_long(S, &body, "reply_to", &rt, &present), 0);
            assert_true(present && rt == 41 && ev.has_reply_to && ev.reply_to == 41);
            break;
        }
        case KC_EV_COMMAND_REJECTED:
            assert_true(str_is(ev.reason, "not_member"));
            assert_true(str_is(ev.client_msg_id, "m-42"));
            break;
        case KC_EV_REACTION_CHANGED: {
            assert_int_equal(ev.seq_no, 42);
            assert_true(str_is(ev.emoji, "\xf0\x9f\x91\x8d"));
            assert_null(ev.previous.p);
            assert_int_equal(ev.ncounts, 2);
            assert_true(str_is(ev.counts[1].emoji, "ok") && ev.counts[1].count == 1);
            const char *pr = "x";
            size_t prn = 0;
            assert_int_equal(kc_avro_get_opt_str(S, &body, "previous", &pr, &prn), 0);
            assert_null(pr);
            avro_value_t arr, item, f;
            size_t n = 0;
            int32_t cnt = 0;
            assert_int_equal(avro_value_get_by_name(&body, "counts", &arr, NULL), 0);
            assert_int_equal(avro_value_get_size(&arr, &n), 0);
            assert_int_equal(n, 2);
            assert_int_equal(avro_value_get_by_index(&arr, 0, &item, NULL), 0);
            assert_int_equal(avro_value_get_by_name(&item, "count", &f, NULL), 0);
            assert_int_equal(avro_value_get_int(&f, &cnt), 0);
            assert_int_equal(cnt, 2);
            break;
        }
        default: assert_int_equal(ev.seq_no, 42);
        }
        kc_avro_msg_free(&m);
        for (size_t n = 0; n < b.len; n++) /* every prefix is refused */
            assert_int_equal(kc_chat_event_decode(S, b.data, n, &ev, err, sizeof(err)), -1);
        kc_buf_free(&b);
    }
}

static void a_rejection_without_a_client_msg_id(void **state)
{
    (void)state;
    kc_chat_event_out_t out = {.kind = KC_EV_COMMAND_REJECTED, .event_id = S_("e"),
                               .convo_id = S_("c"), .actor_id = S_("u"), .command_id = S_("x"),
                               .origin = S_("api:0"), .reason = S_("invalid"),
                               .message = S_("m"), .command_type = S_("SetReadMarker")};
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, kc_schemas_current_id(S, "chat.events-value"), &out);
    kc_chat_event_t ev;
    char err[256];
    assert_int_equal(kc_chat_event_decode(S, b.data, b.len, &ev, err, sizeof(err)), 0);
    assert_null(ev.client_msg_id.p);
    assert_true(str_is(ev.command_type, "SetReadMarker"));
    kc_buf_free(&b);
}

/* An UpdateConversation that keeps the title writes null, and reads back as absent; a
 * version-1 MembersRemoved (no seq_no, no promoted) still reads; role names round-trip. */
static void nulls_old_versions_and_role_names(void **state)
{
    (void)state;
    kc_chat_command_t out = {.kind = KC_CMD_UPDATE_CONVERSATION, .command_id = S_("c"),
                             .convo_id = S_("c1"), .sender_id = S_("u1"), .origin = S_("api:0"),
                             .topic = S_("")};
    kc_buf_t b = {0};
    kc_chat_command_encode(&b, kc_schemas_current_id(S, "chat.commands-value"), &out);
    kc_chat_command_t in;
    char err[256];
    assert_int_equal(kc_chat_command_decode(S, b.data, b.len, &in, err, sizeof(err)), 0);
    assert_null(in.title.p);
    assert_non_null(in.topic.p);
    assert_int_equal(in.topic.n, 0);
    kc_buf_free(&b);
    /* A MembersRemoved as version 1 wrote it: schema id 2, the members and nothing after. */
    kc_buf_t v1 = {0};
    kc_avro_put_header(&v1, 2);
    const char *env[] = {"e", "c1", "u1"};
    for (int i = 0; i < 3; i++)
        kc_avro_put_str(&v1, env[i], strlen(env[i]));
    kc_avro_put_long(&v1, 5);
    kc_avro_put_str(&v1, "cmd", 3);
    kc_avro_put_str(&v1, "api:0", 5);
    kc_avro_put_long(&v1, KC_EV_MEMBERS_REMOVED);
    kc_avro_put_long(&v1, 1);
    kc_avro_put_str(&v1, "u2", 2);
    kc_avro_put_long(&v1, 0);
    kc_chat_event_t ev;
    assert_int_equal(kc_chat_event_decode(S, v1.data, v1.len, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.version, 1);
    assert_int_equal(ev.kind, KC_EV_MEMBERS_REMOVED);
    assert_int_equal(ev.seq_no, 0);
    assert_null(ev.promoted.p);
    /* version 1 has no RoleChanged branch */
    v1.len = 0;
    kc_avro_put_header(&v1, 2);
    for (int i = 0; i < 3; i++)
        kc_avro_put_str(&v1, env[i], strlen(env[i]));
    kc_avro_put_long(&v1, 5);
    kc_avro_put_str(&v1, "cmd", 3);
    kc_avro_put_str(&v1, "api:0", 5);
    kc_avro_put_long(&v1, KC_EV_ROLE_CHANGED);
    kc_avro_put_str(&v1, "u2", 2);
    kc_avro_put_long(&v1, 0);
    assert_int_equal(kc_chat_event_decode(S, v1.data, v1.len, &ev, err, sizeof(err)), -1);
    kc_buf_free(&v1);
    for (int r = 0; r < KC_ROLE_N; r++)
        assert_int_equal(kc_role_parse(kc_role_name((kc_role_t)r),
                                       strlen(kc_role_name((kc_role_t)r))), r);
    assert_int_equal(kc_role_parse("Owner", 5), -1);
    assert_int_equal(kc_role_parse("owner ", 6), -1);
    assert_int_equal(kc_role_parse(NULL, 0), -1);
}

/* ---- Command ---- */

static void a_command_of_each_kind_reads_back_and_avro_c_agrees(void **state)
{
    (void)state;
    const char *members[] = {"u2", "u3"};
    for (int k = KC_CMD_SEND_MESSAGE; k <= KC_CMD_SET_REACTION; k++) {
        kc_chat_command_t out = {.kind = (kc_chat_command_kind_t)k,
                                 .command_id = S_("cmd-1"),
                                 .convo_id = S_("c1"),
                                 .sender_id = S_("u1"),
                                 .issued_at = 1700000000999LL,
                                 .origin = S_("gateway:1"),
                                 .client_msg_id = S_("m-1"),
                                 .content = S_("hi \xe2\x9c\x93"),
                                 .content_type = S_("text/plain"),
                                 .title = S_("t"),
                                 .members_out = members,
                                 .nmembers_out = 2,
                                 .seq_no = 9,
                                 .topic = S_("about"),
                                 .user_id = S_("u2"),
                                 .role = KC_ROLE_OWNER,
                                 .reply_to = 8,
                                 .has_reply_to = 1,
                                 .emoji = S_("ok")};
        kc_buf_t b = {0};
        kc_chat_command_encode(&b, kc_schemas_current_id(S, "chat.commands-value"), &out);
        kc_chat_command_t in;
        char err[256];
        assert_int_equal(kc_chat_command_decode(S, b.data, b.len, &in, err, sizeof(err)), 0);
        assert_int_equal(in.kind, k);
        assert_true(str_is(in.convo_id, "c1") && str_is(in.origin, "gateway:1"));
        assert_int_equal(in.issued_at, 1700000000999LL);
        kc_avro_msg_t m;
        assert_int_equal(kc_avro_decode(S, b.data, b.len, &m, err, sizeof(err)), 0);
        const char *bname;
        avro_value_t body;
        assert_int_equal(kc_avro_get_branch(&m.value, "body", &bname, &body), 0);
        assert_string_equal(bname, kc_chat_command_kind_name((kc_chat_command_kind_t)k));
        kc_str_t r;
        if (k == KC_CMD_SEND_MESSAGE) {
            assert_true(str_is(in.content, "hi \xe2\x9c\x93"));
            assert_true(str_is(in.client_msg_id, "m-1"));
            assert_true(in.has_reply_to && in.reply_to == 8);
        } else if (k == KC_CMD_CREATE_CONVERSATION || k == KC_CMD_ADD_MEMBERS ||
                   k == KC_CMD_REMOVE_MEMBERS) {
            assert_int_equal(in.members.count, 2);
            assert_int_equal(kc_chat_strs_next(&in.members, &r), 1);
            assert_true(str_is(r, "u2"));
        } else if (k == KC_CMD_UPDATE_CONVERSATION) {
            assert_true(str_is(in.title, "t") && str_is(in.topic, "about"));
        } else if (k == KC_CMD_SET_ROLE) {
            assert_true(str_is(in.user_id, "u2"));
            assert_int_equal(in.role, KC_ROLE_OWNER);
        } else if (k == KC_CMD_SET_REACTION) {
            assert_int_equal(in.seq_no, 9);
            assert_true(str_is(in.emoji, "ok"));
        } else {
            assert_int_equal(in.seq_no, 9);
        }
        kc_avro_msg_free(&m);
        for (size_t n = 0; n < b.len; n++)
            assert_int_equal(kc_chat_command_decode(S, b.data, n, &in, err, sizeof(err)), -1);
        kc_buf_free(&b);
    }
    /* an event is not a command */
    kc_chat_event_out_t ev = {.kind = KC_EV_READ_MARKER_SET, .convo_id = S_("c")};
    kc_buf_t b = {0};
    kc_chat_event_encode(&b, kc_schemas_current_id(S, "chat.events-value"), &ev);
    kc_chat_command_t in;
    char err[256];
    assert_int_equal(kc_chat_command_decode(S, b.data, b.len, &in, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a command"));
    kc_buf_free(&b);
}

/* ---- Attachments ---- */

/* A SendMessage with two attachments: read back, copied into its event unread (as the
 * processor does), read by avro-c field by field, and turned into JSON; out-of-bounds
 * attachments are refused. */
static void attachments_travel_from_command_to_event(void **state)
{
    (void)state;
    kc_chat_attachment_t in[2] = {
        {.id = S_("a_1"), .key = S_("attachments/c1/a_1/f/p.png"), .name = S_("p \"x\".png"),
         .content_type = S_("image/png"), .thumb_key = S_("attachments/c1/a_1/t.webp"),
         .size = 12345, .width = 640, .height = 480},
        {.id = S_("a_2"), .key = S_("attachments/c1/a_2/f/r.pdf"), .name = S_("r.pdf"),
         .content_type = S_("application/pdf"), .size = 9}};
    kc_buf_t raw = {0}, b = {0}, e = {0}, json = {0};
    kc_chat_atts_put(&raw, in, 2);
    kc_chat_command_t cmd = {.kind = KC_CMD_SEND_MESSAGE, .command_id = S_("k1"),
                             .convo_id = S_("c1"), .sender_id = S_("u1"), .origin = S_("o"),
                             .client_msg_id = S_("m1"), .content = S_(""),
                             .attachments = {raw.data, raw.len, 2}};
    kc_chat_command_encode(&b, kc_schemas_current_id(S, "chat.commands-value"), &cmd);
    kc_chat_command_t back;
    char err[256];
    assert_int_equal(kc_chat_command_decode(S, b.data, b.len, &back, err, sizeof(err)), 0);
    assert_int_equal(back.version, 5);
    assert_int_equal(back.attachments.count, 2);
    assert_int_equal(back.attachments.n, raw.len);
    assert_memory_equal(back.attachments.p, raw.data, raw.len);
    kc_chat_event_out_t ev = {.kind = KC_EV_MESSAGE_CREATED, .event_id = S_("e1"),
                              .convo_id = S_("c1"), .actor_id = S_("u1"),
                              .command_id = S_("k1"), .origin = S_("o"), .seq_no = 3,
                              .server_msg_id = S_("c1:3"), .client_msg_id = S_("m1"),
                              .content = S_(""), .content_type = S_("text/plain"),
                              .attachments = back.attachments};
    kc_chat_event_encode(&e, kc_schemas_current_id(S, "chat.events-value"), &ev);
    kc_chat_event_t got;
    assert_int_equal(kc_chat_event_decode(S, e.data, e.len, &got, err, sizeof(err)), 0);
    kc_chat_attachment_t out[KC_CHAT_MAX_ATTACHMENTS];
    assert_int_equal(kc_chat_atts_read(got.attachments, out), 2);
    assert_true(str_is(out[0].name, "p \"x\".png") && out[0].width == 640 &&
                out[0].height == 480 && out[0].size == 12345 &&
                str_is(out[0].thumb_key, "attachments/c1/a_1/t.webp"));
    assert_true(str_is(out[1].id, "a_2") && out[1].width == 0 && !out[1].thumb_key.p);
    kc_chat_atts_json(&json, got.attachments);
    kc_buf_putc(&json, '\0');
    assert_string_equal(json.data,
                        "[{\"id\":\"a_1\",\"key\":\"attachments/c1/a_1/f/p.png\",\"name\":"
                        "\"p \\\"x\\\".png\",\"size\":12345,\"content_type\":\"image/png\","
                        "\"width\":640,\"height\":480,\"thumb_key\":"
                        "\"attachments/c1/a_1/t.webp\"},{\"id\":\"a_2\",\"key\":"
                        "\"attachments/c1/a_2/f/r.pdf\",\"name\":\"r.pdf\",\"size\":9,"
                        "\"content_type\":\"application/pdf\",\"width\":null,\"height\":null,"
                        "\"thumb_key\":null}]");
    /* avro-c reads the same record */
    kc_avro_msg_t m;
    assert_int_equal(kc_avro_decode(S, e.data, e.len, &m, err, sizeof(err)), 0);
    kc_avro_msg_free(&m);
    /* eleven attachments, or a name with a NUL, are refused */
    kc_chat_attachment_t many[11];
    for (int i = 0; i < 11; i++)
        many[i] = in[1];
    const kc_chat_attachment_t nul = {.id = S_("a_3"), .key = S_("k"), .name = {"a\0b", 3},
                                      .content_type = S_("text/plain"), .size = 1};
    struct {
        const kc_chat_attachment_t *a;
        size_t n;
    } bad[] = {{many, 11}, {&nul, 1}};
    for (size_t i = 0; i < 2; i++) {
        kc_buf_reset(&raw);
        kc_buf_reset(&b);
        kc_chat_atts_put(&raw, bad[i].a, bad[i].n);
        cmd.attachments = (kc_chat_atts_t){raw.data, raw.len, bad[i].n};
        kc_chat_command_encode(&b, kc_schemas_current_id(S, "chat.commands-value"), &cmd);
        assert_int_equal(kc_chat_command_decode(S, b.data, b.len, &back, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "attachments"));
    }
    kc_buf_free(&raw);
    kc_buf_free(&b);
    kc_buf_free(&e);
    kc_buf_free(&json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_batch_reads_back_item_by_item),
        cmocka_unit_test(avro_c_reads_a_batch_too),
        cmocka_unit_test(a_version_1_record_is_one_item),
        cmocka_unit_test(broken_deliveries_are_refused),
        cmocka_unit_test(an_event_of_each_kind_reads_back_and_avro_c_agrees),
        cmocka_unit_test(a_rejection_without_a_client_msg_id),
        cmocka_unit_test(a_command_of_each_kind_reads_back_and_avro_c_agrees),
        cmocka_unit_test(nulls_old_versions_and_role_names),
        cmocka_unit_test(attachments_travel_from_command_to_event),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
