/* frames.c - client frames in: each parsed (parse.c) and handed to the module that serves
 * it. A frame that cannot be served gets an error frame
 * {"type":"error","error":{"code","message"},"in_reply_to":<type>} (a message.send whose
 * client_msg_id was read: its ack, status "error") and the connection stays open: only the
 * WebSocket layer's own rules (size, UTF-8) close it.
 */
#include <string.h>

#include "gw.h"
#include "kchat/util.h"

void gw_frame_in(gw_t *g, gw_conn_t *c, const char *data, size_t len)
{
    gw_in_t in;
    int rc = gw_in_parse(data, len, &in);
    kc_counter_inc(gw_counter(g, g->m.frames_in, "kchat_gateway_frames_in_total",
                              "Frames read from clients, by type (unknown, invalid).", "type",
                              in.count_as));
    if (rc != 0 && in.type && in.kind == GW_IN_SEND && in.client_msg_id) {
        /* The client learns which of its messages was refused, as from the processor. */
        gw_ack_error(g, c, in.client_msg_id, in.error_code, in.error_message);
        gw_in_free(&in);
        return;
    }
    if (rc != 0) {
        char extra[64];
        extra[0] = '\0';
        if (in.type)
            kc_strlcpyf(extra, sizeof(extra), "\"in_reply_to\":\"%s\"", in.type);
        gw_send_error(g, c, in.error_code, in.error_message, extra);
        gw_in_free(&in);
        return;
    }
    switch (in.kind) {
    case GW_IN_SEND:
        if (in.content_len > (size_t)g->cfg.max_content_bytes)
            gw_ack_error(g, c, in.client_msg_id, "too_large",
                         "content is longer than max-content-bytes");
        else
            gw_cmd_send_message(g, c, &in);
        break;
    case GW_IN_READ: gw_cmd_read_marker(g, c, in.convo_id, in.seq_no); break;
    case GW_IN_TYPING_START: gw_typing(g, c, in.convo_id, 1); break;
    case GW_IN_TYPING_STOP: gw_typing(g, c, in.convo_id, 0); break;
    case GW_IN_SUBSCRIBE: gw_presence_subscribe(g, c, in.user_ids, in.nuser_ids); break;
    case GW_IN_SYNC: gw_sync_start(g, c, in.convo_id, in.seq_no); break;
    case GW_IN_EDIT:
        if (in.content_len > (size_t)g->cfg.max_content_bytes)
            gw_send_error(g, c, "too_large", "content is longer than max-content-bytes",
                          "\"in_reply_to\":\"message.edit\"");
        else
            gw_cmd_change_message(g, c, in.convo_id, in.seq_no, in.content, in.content_len);
        break;
    case GW_IN_DELETE: gw_cmd_change_message(g, c, in.convo_id, in.seq_no, NULL, 0); break;
    case GW_IN_CONVO_UPDATE:
    case GW_IN_MEMBER_REMOVE:
    case GW_IN_MEMBER_ROLE:
    case GW_IN_REACT: gw_cmd_manage(g, c, &in); break;
    case GW_IN_MEMBER_ADD: gw_cmd_add_members(g, c, &in); break;
    }
    gw_in_free(&in);
}
