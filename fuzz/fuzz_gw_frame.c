/* fuzz_gw_frame.c - a client's WebSocket text frame through the gateway's parser
 * (gateway/parse.c, gw_in_parse), as gateway/frames.c hands it every message. */
#include <string.h>

#include "fuzz.h"
#include "gw.h"
#include "kchat/util.h"

/* An id as the gateway keeps them: kc_id_valid within GW_ID_MAX. */
static int id_ok(const char *s)
{
    return s && kc_id_valid(s, strlen(s), GW_ID_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_in_t in;
    int rc = gw_in_parse((const char *)data, size, &in);
    CHECK(in.count_as != NULL);
    CHECK(memchr(in.error_message, '\0', sizeof(in.error_message)) != NULL);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(in.error_code != NULL && in.error_message[0] != '\0');
        CHECK(kc_utf8_valid(in.error_message, strlen(in.error_message)));
    } else {
        /* Accepted: the JSON was one value and the RFC's (no control character outside an
         * escape), every field is what its type promises. */
        for (size_t i = 0; i < size; i++)
            CHECK(data[i] >= 0x20 || data[i] == '\t' || data[i] == '\n' || data[i] == '\r');
        CHECK(in.error_code == NULL && in.json != NULL);
        CHECK(in.type != NULL && strcmp(in.type, in.count_as) == 0);
        switch (in.kind) {
        case GW_IN_SEND:
            CHECK(id_ok(in.convo_id));
            CHECK(gw_text_id_valid(in.client_msg_id, strlen(in.client_msg_id)));
            CHECK(in.content_len > 0 && in.content_len == strlen(in.content));
            CHECK(kc_utf8_valid(in.content, in.content_len));
            break;
        case GW_IN_READ:
            CHECK(id_ok(in.convo_id));
            CHECK(in.seq_no >= 1 && in.seq_no < (INT64_C(1) << 53));
            break;
        case GW_IN_EDIT:
            CHECK(id_ok(in.convo_id));
            CHECK(in.seq_no >= 1 && in.seq_no < (INT64_C(1) << 53));
            CHECK(in.content_len > 0 && in.content_len == strlen(in.content));
            CHECK(kc_utf8_valid(in.content, in.content_len));
            break;
        case GW_IN_DELETE:
            CHECK(id_ok(in.convo_id));
            CHECK(in.seq_no >= 1 && in.seq_no < (INT64_C(1) << 53));
            break;
        case GW_IN_SYNC:
            CHECK(id_ok(in.convo_id));
            CHECK(in.seq_no >= 0 && in.seq_no < (INT64_C(1) << 53));
            break;
        case GW_IN_TYPING_START:
        case GW_IN_TYPING_STOP: CHECK(id_ok(in.convo_id)); break;
        case GW_IN_MEMBER_ADD:
            CHECK(id_ok(in.convo_id) && in.nuser_ids >= 1);
            __attribute__((fallthrough));
        case GW_IN_SUBSCRIBE:
            CHECK(in.nuser_ids <= GW_MAX_SUBSCRIBE);
            for (size_t i = 0; i < in.nuser_ids; i++)
                CHECK(id_ok(in.user_ids[i]));
            CHECK(in.user_ids[in.nuser_ids] == NULL);
            break;
        case GW_IN_CONVO_UPDATE:
            CHECK(id_ok(in.convo_id));
            CHECK(in.title || in.topic);
            CHECK(!in.title || (strlen(in.title) >= 1 && strlen(in.title) <= GW_TITLE_MAX &&
                                kc_utf8_valid(in.title, strlen(in.title))));
            CHECK(!in.topic || (strlen(in.topic) <= GW_TOPIC_MAX &&
                                kc_utf8_valid(in.topic, strlen(in.topic))));
            break;
        case GW_IN_MEMBER_REMOVE:
        case GW_IN_MEMBER_ROLE:
            CHECK(id_ok(in.convo_id) && id_ok(in.user_id));
            CHECK((unsigned)in.role < KC_ROLE_N);
            break;
        case GW_IN_REACT:
            CHECK(id_ok(in.convo_id));
            CHECK(in.seq_no >= 1 && in.seq_no < (INT64_C(1) << 53));
            CHECK(!in.emoji || kc_chat_reaction_valid(in.emoji, strlen(in.emoji)));
            break;
        default: CHECK(!"unknown kind");
        }
        /* What cJSON read prints back as text that reads again into the same tree (compared
         * as printed: duplicate names, which cJSON keeps and reads the first of, would
         * defeat cJSON_Compare). */
        char *text = cJSON_PrintUnformatted(in.json);
        CHECK(text != NULL);
        cJSON *again = NULL;
        CHECK(kc_json_parse_whole(text, strlen(text), &again) == KC_JSON_OK);
        char *text2 = cJSON_PrintUnformatted(again);
        CHECK(text2 != NULL && strcmp(text, text2) == 0);
        cJSON_free(text2);
        cJSON_Delete(again);
        cJSON_free(text);
    }
    gw_in_free(&in);
    return 0;
}
