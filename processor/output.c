/* output.c - building the processor's Avro records. */
#include "output.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kchat/util.h"

void proc_server_msg_id(const char *convo_id, int64_t seq_no, char *out, size_t size)
{
    if (kc_strlcpyf(out, size, "%s:%lld", convo_id, (long long)seq_no) != 0 && size)
        out[0] = '\0';
}

static int members(avro_value_t *rec, char *const *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kc_avro_append_str(rec, "members", m[i]) != 0)
            return -EINVAL;
    return 0;
}

static int encode_done(kc_schemas_t *s, const char *subject, avro_value_t *v, int rc,
                       kc_buf_t *out)
{
    if (rc == 0)
        rc = kc_avro_encode(s, subject, v, out);
    avro_value_decref(v);
    return rc;
}

int proc_encode_event(kc_schemas_t *s, const proc_cmd_t *cmd, const proc_outcome_t *o,
                      int64_t now_ms, kc_buf_t *out)
{
    avro_value_t v, b;
    if (kc_avro_value_new(s, "chat.events-value", &v) != 0)
        return -ENOENT;
    char event_id[37];
    kc_uuid4(event_id);
    int rc = kc_avro_set_str(&v, "event_id", event_id) ||
             kc_avro_set_str_len(&v, "convo_id", cmd->convo_id, cmd->convo_id_len) ||
             kc_avro_set_str_len(&v, "actor_id", cmd->sender_id, cmd->sender_id_len) ||
             kc_avro_set_long(&v, "occurred_at", now_ms) ||
             kc_avro_set_str(&v, "command_id", cmd->command_id) ||
             kc_avro_set_str(&v, "origin", cmd->origin);
    if (rc)
        return encode_done(s, NULL, &v, -EINVAL, out);
    if (o->kind == OUT_REJECTED) {
        rc = kc_avro_set_branch(&v, "body", "CommandRejected", &b) ||
             kc_avro_set_str(&b, "reason", o->reason) ||
             kc_avro_set_str(&b, "message", o->message) ||
             kc_avro_set_str(&b, "command_type", cmd->type_name) ||
             kc_avro_set_opt_str(&b, "client_msg_id",
                                 cmd->kind == CMD_SEND_MESSAGE && cmd->client_msg_id &&
                                         kc_utf8_valid(cmd->client_msg_id, cmd->client_msg_id_len)
                                     ? cmd->client_msg_id
                                     : NULL);
        return encode_done(s, "chat.events-value", &v, rc ? -EINVAL : 0, out);
    }
    char smid[512];
    switch (cmd->kind) {
    case CMD_CREATE_CONVERSATION:
        rc = kc_avro_set_branch(&v, "body", "ConversationCreated", &b) ||
             kc_avro_set_str_len(&b, "title", cmd->title, cmd->title_len) ||
             members(&b, o->members, o->nmembers);
        break;
    case CMD_ADD_MEMBERS:
        rc = kc_avro_set_branch(&v, "body", "MembersAdded", &b) ||
             members(&b, o->members, o->nmembers);
        break;
    case CMD_REMOVE_MEMBERS:
        rc = kc_avro_set_branch(&v, "body", "MembersRemoved", &b) ||
             members(&b, o->members, o->nmembers);
        break;
    case CMD_SEND_MESSAGE:
        proc_server_msg_id(cmd->convo_id, o->seq_no, smid, sizeof(smid));
        rc = kc_avro_set_branch(&v, "body", "MessageCreated", &b) ||
             kc_avro_set_long(&b, "seq_no", o->seq_no) ||
             kc_avro_set_str(&b, "server_msg_id", smid) ||
             kc_avro_set_str_len(&b, "client_msg_id", cmd->client_msg_id,
                                 cmd->client_msg_id_len) ||
             kc_avro_set_str_len(&b, "content", cmd->content, cmd->content_len) ||
             kc_avro_set_str(&b, "content_type", cmd->content_type);
        break;
    case CMD_SET_READ_MARKER:
        rc = kc_avro_set_branch(&v, "body", "ReadMarkerSet", &b) ||
             kc_avro_set_long(&b, "seq_no", cmd->seq_no);
        break;
    case CMD_EDIT_MESSAGE:
        rc = kc_avro_set_branch(&v, "body", "MessageEdited", &b) ||
             kc_avro_set_long(&b, "seq_no", cmd->seq_no) ||
             kc_avro_set_str_len(&b, "content", cmd->content, cmd->content_len);
        break;
    case CMD_DELETE_MESSAGE:
        rc = kc_avro_set_branch(&v, "body", "MessageDeleted", &b) ||
             kc_avro_set_long(&b, "seq_no", cmd->seq_no);
        break;
    }
    return encode_done(s, "chat.events-value", &v, rc ? -EINVAL : 0, out);
}

int proc_encode_delivery(kc_schemas_t *s, int32_t slot, const proc_cmd_t *cmd,
                         char *const *recipients, size_t nrecipients, const kc_buf_t *event,
                         const char *ack_status, const proc_outcome_t *o, kc_buf_t *out)
{
    avro_value_t v, ack;
    if (kc_avro_value_new(s, "chat.deliveries-value", &v) != 0)
        return -ENOENT;
    int rc = kc_avro_set_int(&v, "slot", slot) ||
             kc_avro_set_str_len(&v, "convo_id", cmd->convo_id, cmd->convo_id_len);
    for (size_t i = 0; rc == 0 && i < nrecipients; i++)
        rc = kc_avro_append_str(&v, "recipients", recipients[i]) != 0;
    if (rc == 0)
        rc = kc_avro_set_opt_bytes(&v, "event", event ? event->data : NULL, event ? event->len : 0);
    if (rc == 0 && ack_status) {
        char smid[512];
        int have_seq = o->kind != OUT_REJECTED;
        if (have_seq)
            proc_server_msg_id(cmd->convo_id, o->seq_no, smid, sizeof(smid));
        rc = kc_avro_set_branch(&v, "ack", "Ack", &ack) ||
             kc_avro_set_str_len(&ack, "sender_id", cmd->sender_id, cmd->sender_id_len) ||
             kc_avro_set_str(&ack, "client_msg_id",
                             cmd->client_msg_id &&
                                     kc_utf8_valid(cmd->client_msg_id, cmd->client_msg_id_len)
                                 ? cmd->client_msg_id
                                 : "") ||
             kc_avro_set_str(&ack, "status", ack_status) ||
             kc_avro_set_opt_str(&ack, "server_msg_id", have_seq ? smid : NULL) ||
             kc_avro_set_opt_long(&ack, "seq_no", have_seq ? &o->seq_no : NULL) ||
             kc_avro_set_opt_str(&ack, "error_code", have_seq ? NULL : o->reason) ||
             kc_avro_set_opt_str(&ack, "error_message", have_seq ? NULL : o->message);
    } else if (rc == 0) {
        rc = kc_avro_set_opt_str(&v, "ack", NULL) != 0;
    }
    return encode_done(s, "chat.deliveries-value", &v, rc ? -EINVAL : 0, out);
}

int proc_encode_convo_state(kc_schemas_t *s, const proc_convo_t *c, kc_buf_t *out)
{
    avro_value_t v, b;
    if (kc_avro_value_new(s, "chat.processor.state-value", &v) != 0)
        return -ENOENT;
    int rc = kc_avro_set_branch(&v, "state", "ConvoState", &b) ||
             kc_avro_set_long(&b, "last_seq", c->last_seq) || members(&b, c->members, c->nmembers);
    return encode_done(s, "chat.processor.state-value", &v, rc ? -EINVAL : 0, out);
}

int proc_encode_dedupe_entry(kc_schemas_t *s, const proc_dd_t *d, kc_buf_t *out)
{
    avro_value_t v, b, flag;
    if (kc_avro_value_new(s, "chat.processor.state-value", &v) != 0)
        return -ENOENT;
    /* msg_key is "convo_id NUL seq_no": its first part is the conversation. */
    int rc = kc_avro_set_branch(&v, "state", "DedupeEntry", &b) ||
             kc_avro_set_long(&b, "seq_no", d->seq_no) ||
             kc_avro_set_long(&b, "created_at", d->created_at) ||
             kc_avro_set_str(&b, "convo_id", d->msg_key ? d->msg_key : "") ||
             kc_avro_set_str(&b, "sender_id", d->author ? d->author : "") ||
             avro_value_get_by_name(&b, "deleted", &flag, NULL) != 0 ||
             avro_value_set_boolean(&flag, d->deleted) != 0;
    return encode_done(s, "chat.processor.state-value", &v, rc ? -EINVAL : 0, out);
}
