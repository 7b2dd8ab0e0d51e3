/* The gateway's leaves (gateway/parse.c, gateway/out.c): every client frame type read into
 * its fields or refused with the code and message its error frame carries, the send
 * queue's order, byte count, bound and shared frames, and the closes counted by code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw.h"
#include "kchat/util.h"

static int parse(const char *json, gw_in_t *in)
{
    return gw_in_parse(json, strlen(json), in);
}

/* The frame is refused with code, its message containing msg, in reply to type (NULL:
 * none), counted as count_as. */
static void refused(const char *json, const char *code, const char *msg, const char *type,
                    const char *count_as)
{
    gw_in_t in;
    assert_int_equal(parse(json, &in), -1);
    assert_string_equal(in.error_code, code);
    if (!strstr(in.error_message, msg))
        fail_msg("%s: message '%s' lacks '%s'", json, in.error_message, msg);
    if (type)
        assert_string_equal(in.type, type);
    else
        assert_null(in.type);
    assert_string_equal(in.count_as, count_as);
    gw_in_free(&in);
}

static void test_every_frame_type_is_read(void **state)
{
    (void)state;
    gw_in_t in;
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m-1\",\"content\":\"h\\u00e9llo\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_SEND);
    assert_string_equal(in.type, "message.send");
    assert_string_equal(in.count_as, "message.send");
    assert_string_equal(in.convo_id, "c1");
    assert_string_equal(in.client_msg_id, "m-1");
    assert_string_equal(in.content, "h\xc3\xa9llo");
    assert_int_equal(in.content_len, 6);
    assert_int_equal(in.reply_to, 0);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m-2\",\"content\":\"re\",\"reply_to\":7}",
                           &in),
                     0);
    assert_int_equal(in.reply_to, 7);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m-3\",\"content\":\"re\",\"reply_to\":null}",
                           &in),
                     0);
    assert_int_equal(in.reply_to, 0);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"message.read\",\"convo_id\":\"c1\",\"seq_no\":42}", &in),
                     0);
    assert_int_equal(in.kind, GW_IN_READ);
    assert_int_equal(in.seq_no, 42);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"message.edit\",\"convo_id\":\"c1\",\"seq_no\":7,"
                           "\"content\":\"fixed\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_EDIT);
    assert_int_equal(in.seq_no, 7);
    assert_string_equal(in.content, "fixed");
    assert_int_equal(in.content_len, 5);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.delete\",\"convo_id\":\"c1\",\"seq_no\":3}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_DELETE);
    assert_int_equal(in.seq_no, 3);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"conversation.update\",\"convo_id\":\"c1\","
                           "\"title\":\"Ops\",\"topic\":\"\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_CONVO_UPDATE);
    assert_string_equal(in.title, "Ops");
    assert_string_equal(in.topic, "");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"conversation.update\",\"convo_id\":\"c1\","
                           "\"topic\":\"on call\",\"title\":null}",
                           &in),
                     0);
    assert_null(in.title);
    assert_string_equal(in.topic, "on call");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"member.remove\",\"convo_id\":\"c1\","
                           "\"user_id\":\"u2\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_MEMBER_REMOVE);
    assert_string_equal(in.user_id, "u2");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"member.role\",\"convo_id\":\"c1\","
                           "\"user_id\":\"u2\",\"role\":\"admin\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_MEMBER_ROLE);
    assert_int_equal(in.role, KC_ROLE_ADMIN);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"member.add\",\"convo_id\":\"c1\","
                           "\"user_ids\":[\"u2\",\"u3\"]}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_MEMBER_ADD);
    assert_int_equal(in.nuser_ids, 2);
    assert_string_equal(in.user_ids[1], "u3");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3,"
                           "\"emoji\":\"\xf0\x9f\x91\x8d\"}",
                           &in),
                     0);
    assert_int_equal(in.kind, GW_IN_REACT);
    assert_int_equal(in.seq_no, 3);
    assert_string_equal(in.emoji, "\xf0\x9f\x91\x8d");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3,"
                           "\"emoji\":null}",
                           &in),
                     0);
    assert_null(in.emoji);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"typing.start\",\"convo_id\":\"c1\"}", &in), 0);
    assert_int_equal(in.kind, GW_IN_TYPING_START);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"typing.stop\",\"convo_id\":\"c1\"}", &in), 0);
    assert_int_equal(in.kind, GW_IN_TYPING_STOP);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"presence.subscribe\",\"user_ids\":[\"u1\",\"u2\"]}", &in),
                     0);
    assert_int_equal(in.kind, GW_IN_SUBSCRIBE);
    assert_int_equal(in.nuser_ids, 2);
    assert_string_equal(in.user_ids[0], "u1");
    assert_string_equal(in.user_ids[1], "u2");
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"presence.subscribe\",\"user_ids\":[]}", &in), 0);
    assert_int_equal(in.nuser_ids, 0);
    gw_in_free(&in);

    assert_int_equal(parse("{\"type\":\"sync\",\"convo_id\":\"c1\",\"since_seq\":0}", &in), 0);
    assert_int_equal(in.kind, GW_IN_SYNC);
    assert_int_equal(in.seq_no, 0);
    gw_in_free(&in);
    /* the largest integer a JSON number carries exactly */
    assert_int_equal(
        parse("{\"type\":\"sync\",\"convo_id\":\"c1\",\"since_seq\":9007199254740991}", &in), 0);
    assert_int_equal(in.seq_no, 9007199254740991LL);
    gw_in_free(&in);
}

static void test_frames_that_are_not_frames(void **state)
{
    (void)state;
    refused("", "bad_json", "JSON object", NULL, "invalid");
    refused("{\"type\":", "bad_json", "JSON object", NULL, "invalid");
    refused("[1,2]", "bad_json", "JSON object", NULL, "invalid");
    refused("\"message.send\"", "bad_json", "JSON object", NULL, "invalid");
    refused("{}", "invalid", "'type'", NULL, "invalid");
    refused("{\"type\":7}", "invalid", "'type'", NULL, "invalid");
    refused("{\"type\":\"sync\"} x", "bad_json", "one JSON object", NULL, "invalid");
    refused("{\"type\":\"message.explode\"}", "unknown_type", "unknown frame type", NULL,
            "unknown");
    refused("{\"type\":\"MESSAGE.SEND\"}", "unknown_type", "unknown", NULL, "unknown");
    /* bytes after the object */
    gw_in_t in;
    const char two[] = "{\"type\":\"typing.start\",\"convo_id\":\"c1\"}{}";
    assert_int_equal(gw_in_parse(two, sizeof(two) - 1, &in), -1);
    gw_in_free(&in);
    /* the length given is what is read: a frame is not NUL-terminated */
    const char cut[] = "{\"type\":\"typing.start\",\"convo_id\":\"c1\"}garbage";
    assert_int_equal(gw_in_parse(cut, sizeof(cut) - 1 - 7, &in), 0);
    gw_in_free(&in);
    /* a raw NUL byte (fuzz/regress/gw_frame): once read as white space, or as the end of
     * the content, which was then taken cut short */
    const char nul_content[] = "{\"type\":\"message.send\",\"convo_id\":\"c1\","
                               "\"client_msg_id\":\"m\",\"content\":\"ab\0cd\"}";
    assert_int_equal(gw_in_parse(nul_content, sizeof(nul_content) - 1, &in), -1);
    assert_string_equal(in.error_code, "bad_json");
    gw_in_free(&in);
    const char nul_between[] = "{\"type\":\"sync\",\"convo_id\":\"c1\",\"since_seq\":0\0}";
    assert_int_equal(gw_in_parse(nul_between, sizeof(nul_between) - 1, &in), -1);
    assert_string_equal(in.error_code, "bad_json");
    gw_in_free(&in);
}

/* message.send with attachments: their ids, and the text may be empty. */
static void test_attachments_are_read(void **state)
{
    (void)state;
    gw_in_t in;
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m\",\"content\":\"\","
                           "\"attachments\":[\"a_1\",\"a_2\"]}",
                           &in),
                     0);
    assert_int_equal(in.natt, 2);
    assert_string_equal(in.att_ids[0], "a_1");
    assert_string_equal(in.att_ids[1], "a_2");
    assert_int_equal(in.content_len, 0);
    gw_in_free(&in);
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m\",\"content\":\"hi\",\"attachments\":null}",
                           &in),
                     0);
    assert_int_equal(in.natt, 0);
    gw_in_free(&in);
}

static void test_fields_are_checked(void **state)
{
    (void)state;
    const char *s = "message.send";
    refused("{\"type\":\"message.send\",\"client_msg_id\":\"m\",\"content\":\"x\"}", "invalid",
            "'convo_id'", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c 1\",\"client_msg_id\":\"m\","
            "\"content\":\"x\"}",
            "invalid", "conversation id", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"content\":\"x\"}", "invalid",
            "'client_msg_id'", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\"}", "invalid",
            "'content'", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":5}",
            "invalid", "'content'", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"a\\u0001b\","
            "\"content\":\"x\"}",
            "invalid", "control characters", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"\","
            "\"content\":\"x\"}",
            "invalid", "client_msg_id", s, s);
    char longid[300];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    char frame[512];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"%s\","
             "\"content\":\"x\"}",
             longid);
    refused(frame, "invalid", "client_msg_id", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":\"\"}",
            "invalid", "non-empty unless the message has attachments", s, s);
    /* attachments: ids of uploads, at most 10, distinct */
    static const char eleven[] = "[\"a_1\",\"a_2\",\"a_3\",\"a_4\",\"a_5\",\"a_6\",\"a_7\","
                                 "\"a_8\",\"a_9\",\"a_10\",\"a_11\"]";
    const char *bad_atts[] = {"\"x\"", "[1]", "[\"b_1\"]", "[\"a_1\",\"a_1\"]", eleven,
                              "[\"a_\\u0001\"]"};
    for (size_t i = 0; i < sizeof(bad_atts) / sizeof(bad_atts[0]); i++) {
        snprintf(frame, sizeof(frame),
                 "{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
                 "\"content\":\"\",\"attachments\":%s}",
                 bad_atts[i]);
        refused(frame, "invalid", "attachment", s, s);
    }
    /* an escaped lone surrogate is no text */
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":\"\\ud800\"}",
            "bad_json", "JSON object", NULL, "invalid");
    /* U+0000 would cut the content short: refused, not truncated */
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":\"a\\u0000b\"}",
            "invalid", "U+0000", NULL, "invalid");
    gw_in_t ok;
    assert_int_equal(parse("{\"type\":\"message.send\",\"convo_id\":\"c1\","
                           "\"client_msg_id\":\"m\",\"content\":\"a\\\\u0000b\"}",
                           &ok),
                     0); /* an escaped backslash, then the text u0000 */
    assert_string_equal(ok.content, "a\\u0000b");
    gw_in_free(&ok);

    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":\"x\",\"reply_to\":0}",
            "invalid", "'reply_to'", s, s);
    refused("{\"type\":\"message.send\",\"convo_id\":\"c1\",\"client_msg_id\":\"m\","
            "\"content\":\"x\",\"reply_to\":\"1\"}",
            "invalid", "'reply_to'", s, s);
    const char *r = "message.read";
    refused("{\"type\":\"message.read\",\"convo_id\":\"c1\"}", "invalid", "'seq_no'", r, r);
    refused("{\"type\":\"message.read\",\"convo_id\":\"c1\",\"seq_no\":0}", "invalid",
            "integer >= 1", r, r);
    refused("{\"type\":\"message.read\",\"convo_id\":\"c1\",\"seq_no\":1.5}", "invalid",
            "integer", r, r);
    refused("{\"type\":\"message.read\",\"convo_id\":\"c1\",\"seq_no\":\"3\"}", "invalid",
            "integer", r, r);
    refused("{\"type\":\"message.read\",\"convo_id\":\"c1\",\"seq_no\":9007199254740992}",
            "invalid", "integer", r, r);
    const char *e = "message.edit", *d = "message.delete";
    refused("{\"type\":\"message.edit\",\"convo_id\":\"c1\",\"seq_no\":1}", "invalid",
            "'content'", e, e);
    refused("{\"type\":\"message.edit\",\"convo_id\":\"c1\",\"seq_no\":1,\"content\":\"\"}",
            "invalid", "non-empty UTF-8", e, e);
    refused("{\"type\":\"message.edit\",\"convo_id\":\"c1\",\"seq_no\":0,\"content\":\"x\"}",
            "invalid", "integer >= 1", e, e);
    refused("{\"type\":\"message.edit\",\"seq_no\":1,\"content\":\"x\"}", "invalid",
            "'convo_id'", e, e);
    refused("{\"type\":\"message.delete\",\"convo_id\":\"c1\"}", "invalid", "'seq_no'", d, d);
    refused("{\"type\":\"message.delete\",\"convo_id\":\"c 1\",\"seq_no\":1}", "invalid",
            "conversation id", d, d);
    const char *cu = "conversation.update", *mr = "member.remove", *ro = "member.role";
    refused("{\"type\":\"conversation.update\",\"convo_id\":\"c1\"}", "invalid",
            "title, a topic", cu, cu);
    refused("{\"type\":\"conversation.update\",\"convo_id\":\"c1\",\"title\":\"\"}",
            "invalid", "'title'", cu, cu);
    refused("{\"type\":\"conversation.update\",\"convo_id\":\"c1\",\"title\":7}",
            "invalid", "'title'", cu, cu);
    char big[1200];
    snprintf(big, sizeof(big),
             "{\"type\":\"conversation.update\",\"convo_id\":\"c1\",\"topic\":\"%01025d\"}",
             0);
    refused(big, "invalid", "at most 1024 bytes", cu, cu);
    refused("{\"type\":\"member.remove\",\"convo_id\":\"c1\"}", "invalid", "'user_id'",
            mr, mr);
    refused("{\"type\":\"member.remove\",\"convo_id\":\"c1\",\"user_id\":\"u 2\"}",
            "invalid", "user id", mr, mr);
    refused("{\"type\":\"member.role\",\"convo_id\":\"c1\",\"user_id\":\"u2\"}",
            "invalid", "'role'", ro, ro);
    /* A refused message.send keeps the client_msg_id it read (its error goes in the ack),
     * none when the client_msg_id itself is what is wrong. */
    gw_in_t bad;
    assert_int_equal(parse("{\"type\":\"message.send\",\"client_msg_id\":\"m-9\","
                           "\"convo_id\":\"c 1\",\"content\":\"x\"}",
                           &bad),
                     -1);
    assert_string_equal(bad.client_msg_id, "m-9");
    gw_in_free(&bad);
    assert_int_equal(parse("{\"type\":\"message.send\",\"client_msg_id\":\"m\\u0001\","
                           "\"convo_id\":\"c1\",\"content\":\"x\"}",
                           &bad),
                     -1);
    assert_null(bad.client_msg_id);
    gw_in_free(&bad);
    const char *rx = "message.react";
    refused("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3}", "invalid",
            "emoji must be null or", rx, rx);
    refused("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3,\"emoji\":\"a b\"}",
            "invalid", "without spaces", rx, rx);
    refused("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3,\"emoji\":7}",
            "invalid", "emoji", rx, rx);
    refused("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"seq_no\":3,"
            "\"emoji\":\"12345678901234567\"}",
            "invalid", "16 characters", rx, rx);
    refused("{\"type\":\"message.react\",\"convo_id\":\"c1\",\"emoji\":\"x\"}", "invalid",
            "'seq_no'", rx, rx);
    const char *ma = "member.add";
    refused("{\"type\":\"member.add\",\"convo_id\":\"c1\",\"user_ids\":[]}", "invalid",
            "empty", ma, ma);
    refused("{\"type\":\"member.add\",\"convo_id\":\"c1\",\"user_ids\":[\"u 2\"]}",
            "invalid", "user ids", ma, ma);
    refused("{\"type\":\"member.add\",\"user_ids\":[\"u2\"]}", "invalid", "'convo_id'", ma,
            ma);
    refused("{\"type\":\"member.role\",\"convo_id\":\"c1\",\"user_id\":\"u2\","
            "\"role\":\"Owner\"}",
            "invalid", "owner, admin or member", ro, ro);
    refused("{\"type\":\"sync\",\"convo_id\":\"c1\",\"since_seq\":-1}", "invalid",
            "integer >= 0", "sync", "sync");
    refused("{\"type\":\"typing.stop\"}", "invalid", "'convo_id'", "typing.stop", "typing.stop");

    const char *p = "presence.subscribe";
    refused("{\"type\":\"presence.subscribe\"}", "invalid", "'user_ids'", p, p);
    refused("{\"type\":\"presence.subscribe\",\"user_ids\":\"u1\"}", "invalid", "'user_ids'", p, p);
    refused("{\"type\":\"presence.subscribe\",\"user_ids\":[\"u1\",3]}", "invalid", "user ids",
            p, p);
    refused("{\"type\":\"presence.subscribe\",\"user_ids\":[\"u/1\"]}", "invalid", "user ids",
            p, p);
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"type\":\"presence.subscribe\",\"user_ids\":[");
    for (int i = 0; i <= GW_MAX_SUBSCRIBE; i++)
        kc_buf_printf(&b, "%s\"u%d\"", i ? "," : "", i);
    kc_buf_puts(&b, "]}");
    gw_in_t in;
    assert_int_equal(gw_in_parse(b.data, b.len, &in), -1);
    assert_string_equal(in.error_code, "too_large");
    gw_in_free(&in);
    kc_buf_free(&b);
}

static void test_text_ids(void **state)
{
    (void)state;
    assert_true(gw_text_id_valid("m-1", 3));
    assert_true(gw_text_id_valid("caf\xc3\xa9 \xe2\x9c\x93", 9));
    assert_false(gw_text_id_valid("", 0));
    assert_false(gw_text_id_valid("a\x7f", 2));
    assert_false(gw_text_id_valid("a\n", 2));
    assert_false(gw_text_id_valid("\xc3", 1));
}

static gw_frame_t *frame(const char *s)
{
    return gw_frame_new(s, strlen(s));
}

static void test_the_send_queue(void **state)
{
    (void)state;
    gw_queue_t q = {0}, other = {0};
    gw_frame_t *a = frame("aaaa"), *b = frame("bb"), *c = frame("cccccc");
    assert_null(gw_queue_peek(&q));
    gw_queue_pop(&q); /* popping nothing is nothing */
    assert_int_equal(gw_queue_push(&q, a, 10), 0);
    assert_int_equal(gw_queue_push(&q, b, 10), 0);
    assert_int_equal(q.bytes, 6);
    /* over the bound: refused, the queue as it was */
    assert_int_equal(gw_queue_push(&q, c, 10), -1);
    assert_int_equal(q.bytes, 6);
    assert_int_equal(c->refs, 1);
    /* one frame shared by two queues */
    assert_int_equal(gw_queue_push(&other, b, 10), 0);
    assert_int_equal(b->refs, 3);
    /* in order, the text with the headroom lws_write wants */
    assert_ptr_equal(gw_queue_peek(&q), a);
    assert_memory_equal(gw_queue_peek(&q)->data + LWS_PRE, "aaaa", 5);
    gw_queue_pop(&q);
    assert_int_equal(q.bytes, 2);
    assert_ptr_equal(gw_queue_peek(&q), b);
    assert_int_equal(gw_queue_push(&q, c, 10), 0); /* room again */
    gw_queue_pop(&q);
    assert_ptr_equal(gw_queue_peek(&q), c);
    gw_queue_pop(&q);
    assert_null(gw_queue_peek(&q));
    assert_true(kc_slist_empty(&q.frames));
    assert_int_equal(q.frames.len, 0);
    assert_int_equal(q.bytes, 0);
    /* the queue's references went; the other queue's stays */
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 2);
    gw_queue_clear(&other);
    assert_int_equal(b->refs, 1);
    assert_int_equal(other.bytes, 0);
    /* a frame of exactly the bound fits an empty queue */
    assert_int_equal(gw_queue_push(&q, c, 6), 0);
    gw_queue_clear(&q);
    gw_frame_unref(a);
    gw_frame_unref(b);
    gw_frame_unref(c);
}

static void test_frames_out(void **state)
{
    (void)state;
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"x\":1}");
    gw_frame_t *f = gw_frame_from_buf(&b);
    assert_int_equal(b.len, 0); /* emptied, its memory kept for the next frame */
    assert_int_equal(f->len, 7);
    assert_string_equal((char *)f->data + LWS_PRE, "{\"x\":1}");
    gw_frame_unref(f);
    f = gw_frame_from_buf(&b); /* an empty buffer makes an empty frame */
    assert_int_equal(f->len, 0);
    gw_frame_unref(f);

    gw_error_frame(&b, "invalid", "say \"hi\"\n", "\"in_reply_to\":\"sync\"");
    kc_buf_putc(&b, '\0');
    assert_string_equal(b.data, "{\"type\":\"error\",\"error\":{\"code\":\"invalid\","
                                "\"message\":\"say \\\"hi\\\"\\n\"},\"in_reply_to\":\"sync\"}");
    kc_buf_reset(&b);
    gw_error_frame(&b, "bad_json", "m", "");
    kc_buf_putc(&b, '\0');
    assert_string_equal(b.data, "{\"type\":\"error\",\"error\":{\"code\":\"bad_json\","
                                "\"message\":\"m\"}}");
    kc_buf_reset(&b);
    gw_json_kv(&b, 1, "k", "a\x01<", 3);
    kc_buf_putc(&b, '\0');
    assert_string_equal(b.data, ",\"k\":\"a\\u0001<\"");
    kc_buf_free(&b);
}

/* Occurrences of `prefix` starting a line of the page of m, and the value of the last one. */
static int count_samples(kc_metrics_t *m, const char *prefix, double *last)
{
    kc_buf_t b = {0};
    kc_metrics_render(m, &b);
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = b.data; p && *p;) {
        if (strncmp(p, prefix, pl) == 0) {
            n++;
            *last = strtod(strchr(p, ' ') + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    kc_buf_free(&b);
    return n;
}

static void test_closes_counted_from_the_start(void **state)
{
    (void)state;
    gw_t *g = kc_xcalloc(1, sizeof(*g));
    g->app.metrics = kc_metrics_new();
    double v = -1;
    gw_count_close_init(g);
    int n = count_samples(g->app.metrics, "kchat_gateway_closes_total{", &v);
    assert_true(n >= 2);
    assert_true(v == 0);
    /* The codes the gateway closes with have their series already: a close adds none. */
    gw_count_close(g, GW_CLOSE_SLOW_CONSUMER);
    gw_count_close(g, GW_CLOSE_TOKEN_EXPIRED);
    gw_count_close(g, LWS_CLOSE_STATUS_GOINGAWAY);
    gw_count_close(g, LWS_CLOSE_STATUS_GOINGAWAY);
    assert_int_equal(count_samples(g->app.metrics, "kchat_gateway_closes_total{", &v), n);
    assert_int_equal(
        count_samples(g->app.metrics, "kchat_gateway_closes_total{code=\"4008\"} 1\n", &v), 1);
    assert_int_equal(
        count_samples(g->app.metrics, "kchat_gateway_closes_total{code=\"1001\"} 2\n", &v), 1);
    assert_int_equal(
        count_samples(g->app.metrics, "kchat_gateway_closes_total{code=\"1009\"} 0\n", &v), 1);
    kc_metrics_destroy(g->app.metrics);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_frame_type_is_read),
        cmocka_unit_test(test_frames_that_are_not_frames),
        cmocka_unit_test(test_fields_are_checked),
        cmocka_unit_test(test_attachments_are_read),
        cmocka_unit_test(test_text_ids),
        cmocka_unit_test(test_the_send_queue),
        cmocka_unit_test(test_frames_out),
        cmocka_unit_test(test_closes_counted_from_the_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
