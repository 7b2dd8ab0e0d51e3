/* output.c - building the processor's records. */
#include "output.h"

#include <stdio.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/util.h"

int proc_ids_load(const kc_schemas_t *s, proc_ids_t *ids)
{
    ids->event = kc_schemas_current_id(s, "chat.events-value");
    ids->delivery = kc_schemas_current_id(s, "chat.deliveries-value");
    ids->state = kc_schemas_current_id(s, "chat.processor.state-value");
    return ids->event < 0 || ids->delivery < 0 || ids->state < 0 ? -1 : 0;
}

void proc_server_msg_id(const char *convo_id, int64_t seq_no, char *out, size_t size)
{
    if (kc_strlcpyf(out, size, "%s:%lld", convo_id, (long long)seq_no) != 0 && size)
        out[0] = '\0';
}

static kc_str_t str_of(const char *p, size_t n)
{
    return (kc_str_t){p, n};
}

static kc_str_t cstr(const char *p)
{
    return (kc_str_t){p, p ? strlen(p) : 0};
}

void proc_encode_event(const proc_ids_t *ids, const proc_cmd_t *cmd, const proc_outcome_t *o,
                       int64_t now_ms, kc_buf_t *out)
{
    char event_id[37], smid[512];
    kc_chat_count_t counts[KC_CHAT_MAX_REACTION_KINDS];
    kc_uuid4(event_id);
    kc_chat_event_out_t ev = {
        .event_id = str_of(event_id, 36),
        .convo_id = str_of(cmd->convo_id, cmd->convo_id_len),
        .actor_id = str_of(cmd->sender_id, cmd->sender_id_len),
        .occurred_at = now_ms,
        .command_id = cstr(cmd->command_id),
        .origin = cstr(cmd->origin),
    };
    if (o->kind == OUT_REJECTED) {
        ev.kind = KC_EV_COMMAND_REJECTED;
        ev.reason = cstr(o->reason);
        ev.message = cstr(o->message);
        ev.command_type = cstr(cmd->type_name);
        if (cmd->kind == CMD_SEND_MESSAGE && cmd->client_msg_id &&
            kc_utf8_valid(cmd->client_msg_id, cmd->client_msg_id_len))
            ev.client_msg_id = str_of(cmd->client_msg_id, cmd->client_msg_id_len);
        kc_chat_event_encode(out, ids->event, &ev);
        return;
    }
    switch (cmd->kind) {
    case CMD_CREATE_CONVERSATION:
        ev.kind = KC_EV_CONVERSATION_CREATED;
        ev.title = str_of(cmd->title, cmd->title_len);
        ev.members = o->members;
        ev.nmembers = o->nmembers;
        break;
    case CMD_ADD_MEMBERS:
    case CMD_REMOVE_MEMBERS:
        ev.kind = cmd->kind == CMD_ADD_MEMBERS ? KC_EV_MEMBERS_ADDED : KC_EV_MEMBERS_REMOVED;
        ev.members = o->members;
        ev.nmembers = o->nmembers;
        ev.seq_no = o->seq_no;
        ev.promoted = (kc_str_t){o->promoted, o->promoted ? strlen(o->promoted) : 0};
        break;
    case CMD_UPDATE_CONVERSATION:
        ev.kind = KC_EV_CONVERSATION_UPDATED;
        ev.title = str_of(cmd->title, cmd->title_len);
        ev.topic = str_of(cmd->topic, cmd->topic_len);
        break;
    case CMD_SET_ROLE:
        ev.kind = KC_EV_ROLE_CHANGED;
        ev.user_id = str_of(cmd->user_id, cmd->user_id_len);
        ev.role = cmd->role;
        break;
    case CMD_SEND_MESSAGE:
        proc_server_msg_id(cmd->convo_id, o->seq_no, smid, sizeof(smid));
        ev.kind = KC_EV_MESSAGE_CREATED;
        ev.seq_no = o->seq_no;
        ev.server_msg_id = cstr(smid);
        ev.client_msg_id = str_of(cmd->client_msg_id, cmd->client_msg_id_len);
        ev.content = str_of(cmd->content, cmd->content_len);
        ev.content_type = cstr(cmd->content_type);
        ev.reply_to = cmd->reply_to;
        ev.has_reply_to = cmd->has_reply_to;
        ev.attachments = (kc_chat_atts_t){cmd->attachments, cmd->attachments_len,
                                          cmd->attachments_count};
        break;
    case CMD_SET_READ_MARKER:
        ev.kind = KC_EV_READ_MARKER_SET;
        ev.seq_no = cmd->seq_no;
        break;
    case CMD_EDIT_MESSAGE:
        ev.kind = KC_EV_MESSAGE_EDITED;
        ev.seq_no = cmd->seq_no;
        ev.content = str_of(cmd->content, cmd->content_len);
        break;
    case CMD_DELETE_MESSAGE:
        ev.kind = KC_EV_MESSAGE_DELETED;
        ev.seq_no = cmd->seq_no;
        break;
    case CMD_SET_REACTION:
        ev.kind = KC_EV_REACTION_CHANGED;
        ev.seq_no = cmd->seq_no;
        ev.emoji = str_of(cmd->emoji, cmd->emoji_len);
        ev.previous = cstr(o->previous);
        if (o->reacted)
            ev.ncounts = proc_dd_reaction_counts(o->reacted, counts);
        ev.counts = counts;
        break;
    }
    kc_chat_event_encode(out, ids->event, &ev);
}

void proc_ack_for(const proc_cmd_t *cmd, const proc_outcome_t *o, char *smid, proc_ack_t *ack)
{
    memset(ack, 0, sizeof(*ack));
    ack->client_msg_id =
        cmd->client_msg_id && kc_utf8_valid(cmd->client_msg_id, cmd->client_msg_id_len)
            ? cmd->client_msg_id
            : "";
    ack->status = o->kind == OUT_ACCEPTED ? "ok" : o->kind == OUT_DUPLICATE ? "duplicate" : "error";
    if (o->kind != OUT_REJECTED) {
        proc_server_msg_id(cmd->convo_id, o->seq_no, smid, 512);
        ack->server_msg_id = smid;
        ack->seq_no = o->seq_no;
        ack->has_seq = 1;
    } else {
        ack->error_code = o->reason;
        ack->error_message = o->message;
    }
}

void proc_encode_deliveries(const proc_ids_t *ids, int32_t slot, const proc_item_t *items,
                            size_t n, kc_buf_t *out)
{
    kc_chat_delivery_begin(out, ids->delivery, slot);
    for (size_t i = 0; i < n; i++) {
        const proc_item_t *it = &items[i];
        kc_chat_ack_out_t ack;
        if (it->ack) {
            ack = (kc_chat_ack_out_t){.sender_id = it->sender,
                                      .client_msg_id = it->ack->client_msg_id,
                                      .status = it->ack->status,
                                      .server_msg_id = it->ack->server_msg_id,
                                      .error_code = it->ack->error_code,
                                      .error_message = it->ack->error_message,
                                      .seq_no = it->ack->seq_no,
                                      .has_seq = it->ack->has_seq};
        }
        kc_chat_delivery_put(out, it->convo_id, (const char *const *)it->recipients,
                             it->nrecipients, it->event ? it->event->data : NULL,
                             it->event ? it->event->len : 0, it->ack ? &ack : NULL,
                             it->actor_slots, it->nactor_slots);
    }
    kc_chat_delivery_end(out);
}

size_t proc_item_size(const proc_item_t *it)
{
    size_t n = 64 + strlen(it->convo_id) + (it->event ? it->event->len : 0);
    for (size_t i = 0; i < it->nrecipients; i++)
        n += 2 + strlen(it->recipients[i]);
    return n;
}

/* ProcessorState union branches */
enum { ST_CONVO = 0, ST_DEDUPE = 1, ST_BLOCK = 2, ST_CHECKPOINT = 3 };

void proc_encode_convo_state(const proc_ids_t *ids, const proc_convo_t *c, kc_buf_t *out)
{
    kc_avro_put_header(out, ids->state);
    kc_avro_put_long(out, ST_CONVO);
    kc_avro_put_long(out, c->last_seq);
    if (c->nmembers) {
        kc_avro_put_long(out, (int64_t)c->nmembers);
        for (size_t i = 0; i < c->nmembers; i++)
            kc_avro_put_str(out, c->members[i], strlen(c->members[i]));
    }
    kc_avro_put_long(out, 0);
    /* owners, then admins: one block each (an empty array is the end marker alone) */
    for (kc_role_t role = KC_ROLE_OWNER; role <= KC_ROLE_ADMIN; role++) {
        size_t n = 0;
        for (size_t i = 0; i < c->nmembers; i++)
            n += c->roles[i] == role;
        if (n) {
            kc_avro_put_long(out, (int64_t)n);
            for (size_t i = 0; i < c->nmembers; i++)
                if (c->roles[i] == role)
                    kc_avro_put_str(out, c->members[i], strlen(c->members[i]));
        }
        kc_avro_put_long(out, 0);
    }
}

void proc_encode_dedupe_block(const proc_ids_t *ids, const proc_dd_t *const *entries, size_t n,
                              kc_buf_t *out)
{
    kc_avro_put_header(out, ids->state);
    kc_avro_put_long(out, ST_BLOCK);
    if (n) {
        kc_avro_put_long(out, (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            const proc_dd_t *d = entries[i];
            kc_buf_append(out, d->key, PROC_DEDUPE_KEY_BYTES);
            kc_avro_put_long(out, d->seq_no);
            kc_avro_put_long(out, d->created_at);
            /* msg_key is "convo_id NUL seq_no": its first part is the conversation. */
            const char *convo = d->msg_key ? d->msg_key : "";
            const char *author = d->author ? d->author : "";
            kc_avro_put_str(out, convo, strlen(convo));
            kc_avro_put_str(out, author, strlen(author));
            kc_avro_put_bool(out, d->deleted);
            if (d->nreactions) {
                kc_avro_put_long(out, (int64_t)d->nreactions);
                for (size_t k = 0; k < d->nreactions; k++) {
                    const proc_reaction_t *x = &d->reactions[k];
                    kc_avro_put_str(out, x->user, strlen(x->user));
                    kc_avro_put_str(out, x->emoji, strlen(x->emoji));
                }
            }
            kc_avro_put_long(out, 0);
        }
    }
    kc_avro_put_long(out, 0);
}

void proc_encode_checkpoint(const proc_ids_t *ids, int64_t events_offset, int64_t now_ms,
                            kc_buf_t *out)
{
    kc_avro_put_header(out, ids->state);
    kc_avro_put_long(out, ST_CHECKPOINT);
    kc_avro_put_long(out, events_offset);
    kc_avro_put_long(out, now_ms);
}
