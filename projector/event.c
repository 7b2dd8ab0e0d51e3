/* event.c - Avro Event -> proj_event_t. */
#include "event.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/util.h"

static const struct {
    const char *name;
    proj_ev_kind_t kind;
} kinds[] = {
    {"ConversationCreated", EV_CREATED}, {"MembersAdded", EV_ADDED},
    {"MembersRemoved", EV_REMOVED},      {"MessageCreated", EV_MESSAGE},
    {"MessageEdited", EV_EDITED},        {"MessageDeleted", EV_DELETED},
    {"ReadMarkerSet", EV_READ},          {"CommandRejected", EV_REJECTED},
};

/* A string field; ids must be short and free of NUL bytes. */
static int get_id(kc_schemas_t *s, avro_value_t *rec, const char *field, const char **out,
                  char *errstr, size_t errstr_size)
{
    size_t len;
    if (kc_avro_get_str(s, rec, field, out, &len) != 0) {
        kc_strlcpyf(errstr, errstr_size, "field %s is missing or not a string", field);
        return -EBADMSG;
    }
    if (len == 0 || len > PROJ_MAX_ID || memchr(*out, 0, len)) {
        kc_strlcpyf(errstr, errstr_size, "field %s is empty, longer than %d bytes or holds NUL",
                    field, PROJ_MAX_ID);
        return -EBADMSG;
    }
    return 0;
}

/* A free-text field: NUL bytes become U+FFFD in an owned copy. */
static int get_text(kc_schemas_t *s, avro_value_t *rec, const char *field, const char **out,
                    char **owned, char *errstr, size_t errstr_size)
{
    size_t len;
    if (kc_avro_get_str(s, rec, field, out, &len) != 0) {
        kc_strlcpyf(errstr, errstr_size, "field %s is missing or not a string", field);
        return -EBADMSG;
    }
    if (!memchr(*out, 0, len))
        return 0;
    kc_buf_t b = {0};
    for (size_t i = 0; i < len; i++) {
        if ((*out)[i])
            kc_buf_putc(&b, (*out)[i]);
        else
            kc_buf_puts(&b, "\xEF\xBF\xBD");
    }
    *owned = kc_buf_steal(&b);
    *out = *owned;
    return 0;
}

int proj_event_decode(kc_schemas_t *s, const void *buf, size_t len, proj_event_t *ev, char *errstr,
                      size_t errstr_size)
{
    memset(ev, 0, sizeof(*ev));
    int rc = kc_avro_decode(s, buf, len, &ev->msg, errstr, errstr_size);
    if (rc != 0)
        return rc;
    if (strcmp(ev->msg.subject, "chat.events-value") != 0) {
        kc_strlcpyf(errstr, errstr_size, "schema id %d is %s, not an event", (int)ev->msg.schema_id,
                    ev->msg.subject);
        goto fail;
    }
    avro_value_t *v = &ev->msg.value, body;
    size_t ignore;
    if (get_id(s, v, "event_id", &ev->event_id, errstr, errstr_size) ||
        get_id(s, v, "convo_id", &ev->convo_id, errstr, errstr_size) ||
        get_id(s, v, "actor_id", &ev->actor_id, errstr, errstr_size) ||
        get_id(s, v, "command_id", &ev->command_id, errstr, errstr_size) ||
        get_id(s, v, "origin", &ev->origin, errstr, errstr_size))
        goto fail;
    if (kc_avro_get_long(s, v, "occurred_at", &ev->at) != 0 ||
        kc_avro_get_branch(v, "body", &ev->type, &body) != 0) {
        kc_strlcpyf(errstr, errstr_size, "occurred_at or body is missing");
        goto fail;
    }
    size_t k = 0;
    while (k < KC_ARRAY_LEN(kinds) && strcmp(kinds[k].name, ev->type) != 0)
        k++;
    if (k == KC_ARRAY_LEN(kinds)) {
        kc_strlcpyf(errstr, errstr_size, "unknown event %s", ev->type);
        goto fail;
    }
    ev->kind = kinds[k].kind;
    switch (ev->kind) {
    case EV_CREATED:
        if (get_text(s, &body, "title", &ev->title, &ev->owned[0], errstr, errstr_size))
            goto fail;
        __attribute__((fallthrough));
    case EV_ADDED:
    case EV_REMOVED: {
        avro_value_t arr;
        if (kc_avro_get_array(&body, "members", &arr, &ev->nmembers) != 0) {
            kc_strlcpyf(errstr, errstr_size, "members is missing");
            goto fail;
        }
        ev->members = kc_xcalloc(ev->nmembers ? ev->nmembers : 1, sizeof(char *));
        for (size_t i = 0; i < ev->nmembers; i++) {
            size_t l;
            if (kc_avro_array_str(&arr, i, &ev->members[i], &l) != 0 || l == 0 || l > PROJ_MAX_ID ||
                memchr(ev->members[i], 0, l)) {
                kc_strlcpyf(errstr, errstr_size, "members[%zu] is not a valid id", i);
                goto fail;
            }
        }
        break;
    }
    case EV_MESSAGE:
        if (get_id(s, &body, "server_msg_id", &ev->server_msg_id, errstr, errstr_size) ||
            get_id(s, &body, "client_msg_id", &ev->client_msg_id, errstr, errstr_size) ||
            get_text(s, &body, "content", &ev->content, &ev->owned[0], errstr, errstr_size) ||
            get_id(s, &body, "content_type", &ev->content_type, errstr, errstr_size))
            goto fail;
        __attribute__((fallthrough));
    case EV_DELETED:
    case EV_READ:
    seq:
        if (kc_avro_get_long(s, &body, "seq_no", &ev->seq_no) != 0 || ev->seq_no < 1) {
            kc_strlcpyf(errstr, errstr_size, "seq_no is missing or below 1");
            goto fail;
        }
        break;
    case EV_EDITED:
        if (get_text(s, &body, "content", &ev->content, &ev->owned[0], errstr, errstr_size))
            goto fail;
        goto seq;
    case EV_REJECTED:
        if (kc_avro_get_str(s, &body, "reason", &ev->reason, &ignore) != 0 ||
            get_text(s, &body, "message", &ev->message, &ev->owned[1], errstr, errstr_size)) {
            kc_strlcpyf(errstr, errstr_size, "reason or message is missing");
            goto fail;
        }
        break;
    }
    return 0;
fail:
    proj_event_free(ev);
    return -EBADMSG;
}

void proj_event_free(proj_event_t *ev)
{
    free((void *)ev->members);
    ev->members = NULL;
    for (size_t i = 0; i < KC_ARRAY_LEN(ev->owned); i++) {
        free(ev->owned[i]);
        ev->owned[i] = NULL;
    }
    kc_avro_msg_free(&ev->msg);
}

