/* command.c - Avro Command -> proc_cmd_t. */
#include "command.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

static const struct {
    const char *name;
    proc_cmd_kind_t kind;
} kinds[] = {
    {"SendMessage", CMD_SEND_MESSAGE},   {"CreateConversation", CMD_CREATE_CONVERSATION},
    {"AddMembers", CMD_ADD_MEMBERS},     {"RemoveMembers", CMD_REMOVE_MEMBERS},
    {"EditMessage", CMD_EDIT_MESSAGE},   {"DeleteMessage", CMD_DELETE_MESSAGE},
    {"SetReadMarker", CMD_SET_READ_MARKER},
};

#define GET_STR(rec, field, dst, dstlen)                                                          \
    do {                                                                                          \
        size_t l_;                                                                                \
        if (kc_avro_get_str(s, (rec), (field), &(dst), &l_) != 0) {                               \
            kc_strlcpyf(errstr, errstr_size, "field %s is missing or not a string", (field));     \
            goto fail;                                                                            \
        }                                                                                         \
        dstlen = l_;                                                                              \
    } while (0)

int proc_command_decode(kc_schemas_t *s, const void *buf, size_t len, kc_avro_msg_t *msg,
                        proc_cmd_t *cmd, char *errstr, size_t errstr_size)
{
    memset(cmd, 0, sizeof(*cmd));
    int rc = kc_avro_decode(s, buf, len, msg, errstr, errstr_size);
    if (rc != 0)
        return rc;
    if (strcmp(msg->subject, "chat.commands-value") != 0) {
        kc_strlcpyf(errstr, errstr_size, "schema id %d is %s, not a command", (int)msg->schema_id,
                    msg->subject);
        goto fail;
    }
    avro_value_t *v = &msg->value, body;
    size_t ignore;
    GET_STR(v, "command_id", cmd->command_id, ignore);
    GET_STR(v, "convo_id", cmd->convo_id, cmd->convo_id_len);
    GET_STR(v, "sender_id", cmd->sender_id, cmd->sender_id_len);
    GET_STR(v, "origin", cmd->origin, ignore);
    if (kc_avro_get_long(s, v, "issued_at", &cmd->issued_at) != 0 ||
        kc_avro_get_branch(v, "body", &cmd->type_name, &body) != 0) {
        kc_strlcpyf(errstr, errstr_size, "issued_at or body is missing");
        goto fail;
    }
    size_t k = 0;
    while (k < KC_ARRAY_LEN(kinds) && strcmp(kinds[k].name, cmd->type_name) != 0)
        k++;
    if (k == KC_ARRAY_LEN(kinds)) {
        kc_strlcpyf(errstr, errstr_size, "unknown command %s", cmd->type_name);
        goto fail;
    }
    cmd->kind = kinds[k].kind;
    switch (cmd->kind) {
    case CMD_SEND_MESSAGE:
        GET_STR(&body, "client_msg_id", cmd->client_msg_id, cmd->client_msg_id_len);
        GET_STR(&body, "content", cmd->content, cmd->content_len);
        GET_STR(&body, "content_type", cmd->content_type, ignore);
        break;
    case CMD_CREATE_CONVERSATION:
        GET_STR(&body, "title", cmd->title, cmd->title_len);
        __attribute__((fallthrough));
    case CMD_ADD_MEMBERS:
    case CMD_REMOVE_MEMBERS: {
        avro_value_t arr;
        if (kc_avro_get_array(&body, "members", &arr, &cmd->nmembers) != 0) {
            kc_strlcpyf(errstr, errstr_size, "members is missing");
            goto fail;
        }
        /* Bounded by the record size limit; the rules bound the count further. */
        cmd->members = kc_xcalloc(cmd->nmembers ? cmd->nmembers : 1, sizeof(char *));
        cmd->member_lens = kc_xcalloc(cmd->nmembers ? cmd->nmembers : 1, sizeof(size_t));
        for (size_t i = 0; i < cmd->nmembers; i++)
            if (kc_avro_array_str(&arr, i, &cmd->members[i], &cmd->member_lens[i]) != 0) {
                kc_strlcpyf(errstr, errstr_size, "members[%zu] is not a string", i);
                goto fail;
            }
        break;
    }
    case CMD_EDIT_MESSAGE:
        GET_STR(&body, "content", cmd->content, cmd->content_len);
        __attribute__((fallthrough));
    case CMD_DELETE_MESSAGE:
    case CMD_SET_READ_MARKER:
        if (kc_avro_get_long(s, &body, "seq_no", &cmd->seq_no) != 0) {
            kc_strlcpyf(errstr, errstr_size, "seq_no is missing");
            goto fail;
        }
        break;
    }
    (void)ignore;
    return 0;
fail:
    proc_command_free(msg, cmd);
    return -EBADMSG;
}

void proc_command_free(kc_avro_msg_t *msg, proc_cmd_t *cmd)
{
    free((void *)cmd->members);
    free(cmd->member_lens);
    cmd->members = NULL;
    cmd->member_lens = NULL;
    kc_avro_msg_free(msg);
}
