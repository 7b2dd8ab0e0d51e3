/* reaction.h - reactions as kchat-api reads and writes them, pure (no server, no reply): the
 * emoji of a request body, and the projector's Redis copy of a message as the REST API hands
 * it out. http.c's handlers use them; the unit tests and fuzz/fuzz_api.c call them directly.
 */
#ifndef API_REACTION_H
#define API_REACTION_H

#include <stddef.h>

#include "kchat/buf.h"

struct cJSON;

/* The emoji of a PUT .../reaction body, {"emoji": "👍"}: a string that passes
 * kc_chat_reaction_valid. 0 with *emoji (the JSON's own string), or -1 with *message, the
 * reason of the 400 answer. */
int api_reaction_emoji(const struct cJSON *body, const char **emoji, const char **message);

/* Appends a message of the Redis tail (recent:<convo>, the projector's JSON object of n
 * bytes) as history gives it to user_id: "reactions" an array ([] when it is absent or not
 * an array), the internal "reacted" map (every member's reaction) left out, and
 * "my_reaction" the user's entry of that map, or null. A message without "reacted" whose
 * "reactions" is an array is copied as it is with "my_reaction":null added; any other is
 * decoded and written again. 0, or -1 (nothing appended) when json is not a JSON object. */
int api_tail_message(kc_buf_t *out, const char *json, size_t n, const char *user_id);

/* Appends a message of the Redis read model as a conversation's last_message: without
 * "reactions", "reacted" and "my_reaction" (a preview carries no reactions, on either read
 * path). A message without them is copied as it is. 0, or -1 (nothing appended) when json is
 * not a JSON object. */
int api_preview_message(kc_buf_t *out, const char *json, size_t n);

#endif
