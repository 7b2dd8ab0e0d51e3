/* command.c - a chat.commands record -> proc_cmd_t. */
#include "command.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/util.h"

static const proc_cmd_kind_t kinds[] = {
    [KC_CMD_SEND_MESSAGE] = CMD_SEND_MESSAGE,   [KC_CMD_CREATE_CONVERSATION] = CMD_CREATE_CONVERSATION,
    [KC_CMD_ADD_MEMBERS] = CMD_ADD_MEMBERS,     [KC_CMD_REMOVE_MEMBERS] = CMD_REMOVE_MEMBERS,
    [KC_CMD_EDIT_MESSAGE] = CMD_EDIT_MESSAGE,   [KC_CMD_DELETE_MESSAGE] = CMD_DELETE_MESSAGE,
    [KC_CMD_SET_READ_MARKER] = CMD_SET_READ_MARKER,
    [KC_CMD_UPDATE_CONVERSATION] = CMD_UPDATE_CONVERSATION, [KC_CMD_SET_ROLE] = CMD_SET_ROLE,
    [KC_CMD_SET_REACTION] = CMD_SET_REACTION,
};

/* A NUL-terminated copy in the arena (which has room: reserved for the whole record). */
static const char *copy(proc_cmd_mem_t *m, kc_str_t s, size_t *len)
{
    const char *at = m->arena.data + m->arena.len;
    kc_buf_append(&m->arena, s.p, s.n);
    kc_buf_putc(&m->arena, '\0');
    if (len)
        *len = s.n;
    return at;
}

int proc_command_decode(const kc_schemas_t *s, const void *buf, size_t len, proc_cmd_mem_t *mem,
                        proc_cmd_t *cmd, char *errstr, size_t errstr_size)
{
    memset(cmd, 0, sizeof(*cmd));
    kc_chat_command_t c;
    if (kc_chat_command_decode(s, buf, len, &c, errstr, errstr_size) != 0)
        return -EBADMSG;
    /* Every string of the record, each with its NUL: at most the record's size again (each
     * string takes at least its length byte). */
    kc_buf_reset(&mem->arena);
    kc_buf_reserve(&mem->arena, 2 * len + 16);
    cmd->kind = kinds[c.kind];
    cmd->type_name = kc_chat_command_kind_name(c.kind);
    cmd->command_id = copy(mem, c.command_id, NULL);
    cmd->convo_id = copy(mem, c.convo_id, &cmd->convo_id_len);
    cmd->sender_id = copy(mem, c.sender_id, &cmd->sender_id_len);
    cmd->origin = copy(mem, c.origin, NULL);
    cmd->issued_at = c.issued_at;
    cmd->seq_no = c.seq_no;
    cmd->reply_to = c.reply_to;
    cmd->has_reply_to = c.has_reply_to;
    switch (c.kind) {
    case KC_CMD_SEND_MESSAGE:
        cmd->client_msg_id = copy(mem, c.client_msg_id, &cmd->client_msg_id_len);
        cmd->content = copy(mem, c.content, &cmd->content_len);
        cmd->content_type = copy(mem, c.content_type, NULL);
        if (c.attachments.count) {
            kc_str_t raw = {c.attachments.p, c.attachments.n};
            cmd->attachments = copy(mem, raw, &cmd->attachments_len);
            cmd->attachments_count = c.attachments.count;
        }
        break;
    case KC_CMD_EDIT_MESSAGE: cmd->content = copy(mem, c.content, &cmd->content_len); break;
    case KC_CMD_CREATE_CONVERSATION:
        cmd->title = copy(mem, c.title, &cmd->title_len);
        __attribute__((fallthrough));
    case KC_CMD_ADD_MEMBERS:
    case KC_CMD_REMOVE_MEMBERS: {
        size_t n = c.members.count;
        if (n > mem->cap) {
            mem->cap = n;
            mem->members = kc_xrealloc(mem->members, n * sizeof(char *));
            mem->lens = kc_xrealloc(mem->lens, n * sizeof(size_t));
        }
        kc_str_t m;
        while (kc_chat_strs_next(&c.members, &m) == 1 && cmd->nmembers < n) {
            mem->members[cmd->nmembers] = copy(mem, m, &mem->lens[cmd->nmembers]);
            cmd->nmembers++;
        }
        cmd->members = mem->members;
        cmd->member_lens = mem->lens;
        break;
    }
    case KC_CMD_UPDATE_CONVERSATION:
        if (c.title.p)
            cmd->title = copy(mem, c.title, &cmd->title_len);
        if (c.topic.p)
            cmd->topic = copy(mem, c.topic, &cmd->topic_len);
        break;
    case KC_CMD_SET_ROLE:
        cmd->user_id = copy(mem, c.user_id, &cmd->user_id_len);
        cmd->role = c.role;
        break;
    case KC_CMD_SET_REACTION:
        if (c.emoji.p)
            cmd->emoji = copy(mem, c.emoji, &cmd->emoji_len);
        break;
    case KC_CMD_DELETE_MESSAGE:
    case KC_CMD_SET_READ_MARKER: break;
    }
    return 0;
}

void proc_command_mem_free(proc_cmd_mem_t *mem)
{
    kc_buf_free(&mem->arena);
    free(mem->members);
    free(mem->lens);
    memset(mem, 0, sizeof(*mem));
}
