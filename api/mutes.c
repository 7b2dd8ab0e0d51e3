/* mutes.c - a member mutes a conversation for themself (table mutes,
 * db/migrations/0006_mutes.sql: a setting of the user, not an event), two ways:
 *   PUT /conversations/:id/mute {for_s?} and DELETE of it: for for_s seconds, or until
 *     unmuted; DELETE unmutes;
 *   PATCH /conversations/:id/settings {muted_until?, muted?}: until an RFC 3339 time, until
 *     unmuted ({"muted": true}), or unmuted (muted_until null, or {"muted": false}).
 * Both write through mute() and unmute() below. Only members: anyone else gets the
 * conversation's 404. The answer is {muted, muted_until} (muted_until null: until unmuted, or
 * not muted); every conversation body carries the same for the caller (conversations.c,
 * API_MUTE_FIELDS). kchat-notifier reads the table too: no push for a muted conversation.
 */
#include <string.h>

#include "api.h"

#define MUTE_MAX_S 31536000 /* a year */

static void on_muted(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "mute", "no such conversation");
}

/* Mutes r's conversation for the caller: for s_for seconds (decimal text), or until the time
 * s_until_ms (ms since the epoch, decimal text), or, both "", until unmuted. The answer says
 * what the row now means, as API_MUTE_FIELDS reads it (a time already past is no mute). */
static void mute(api_req_t *r, const char *s_for, const char *s_until_ms)
{
    const char *params[] = {r->convo_id, r->user_id, s_for, s_until_ms};
    (void)api_pg(r,
                 "INSERT INTO mutes (user_id, convo_id, muted_until) "
                 "SELECT $2, $1, CASE WHEN $3 <> '' "
                 "                    THEN now() + make_interval(secs => $3::int) "
                 "                    WHEN $4 <> '' THEN timestamptz '1970-01-01 00:00:00+00' "
                 "                                       + $4::bigint * interval '1 millisecond' "
                 "                    ELSE NULL END "
                 "FROM rm.members WHERE convo_id = $1 AND user_id = $2 "
                 "ON CONFLICT (user_id, convo_id) DO UPDATE "
                 "SET muted_until = excluded.muted_until "
                 "RETURNING json_build_object("
                 "  'muted', muted_until IS NULL OR muted_until > now(), "
                 "  'muted_until', CASE WHEN muted_until > now() THEN " API_ISO("muted_until")
                 " END)::text",
                 4, params, on_muted);
}

void api_convo_mute(api_req_t *r)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, "for_s");
    char s_for[24] = "";
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsNumber(f) || f->valuedouble < 1 || f->valuedouble > MUTE_MAX_S ||
            f->valuedouble != (double)(long long)f->valuedouble) {
            api_error(r, 400, "invalid_request",
                      "for_s must be a whole number of seconds from 1 to 31536000, or null "
                      "(until unmuted)");
            return;
        }
        (void)kc_strlcpyf(s_for, sizeof(s_for), "%lld", (long long)f->valuedouble);
    }
    mute(r, s_for, "");
}

static void on_unmuted(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err || !res) {
        api_error(r, 503, "unavailable", "the mute could not be changed");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        api_error(r, 404, "not_found", "no such conversation");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"muted\":false,\"muted_until\":null}");
    api_reply(r, 200, &b);
}

static void unmute(api_req_t *r)
{
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r,
                 "WITH gone AS (DELETE FROM mutes WHERE convo_id = $1 AND user_id = $2) "
                 "SELECT EXISTS (SELECT 1 FROM rm.members WHERE convo_id = $1 AND user_id = $2)",
                 2, params, on_unmuted);
}

void api_convo_unmute(api_req_t *r)
{
    unmute(r);
}

/* {muted_until?, muted?}: a body shaped like the answer means what the answer says, so a
 * client may send back what it read:
 *   muted_until a time        mute until then (muted absent or true)
 *   muted_until null/absent   muted true: until unmuted; muted false or absent: unmute
 * A time must be ahead of now by at most a year (as PUT .../mute's for_s); muted false with a
 * time contradicts itself. */
void api_convo_settings(api_req_t *r)
{
    const cJSON *until = cJSON_GetObjectItemCaseSensitive(r->body, "muted_until");
    const cJSON *muted = cJSON_GetObjectItemCaseSensitive(r->body, "muted");
    if (muted && !cJSON_IsBool(muted)) {
        api_error(r, 400, "invalid_request", "muted must be true or false");
        return;
    }
    if (until && !cJSON_IsNull(until) && !cJSON_IsString(until)) {
        api_error(r, 400, "invalid_request",
                  "muted_until must be an RFC 3339 time (\"2026-11-27T09:30:00Z\") or null "
                  "(unmute)");
        return;
    }
    if (!until && !muted) {
        api_error(r, 400, "invalid_request",
                  "muted_until (an RFC 3339 time, or null to unmute) or muted (true: until "
                  "unmuted) is required");
        return;
    }
    if (!cJSON_IsString(until)) {
        if (cJSON_IsTrue(muted))
            mute(r, "", "");
        else
            unmute(r);
        return;
    }
    if (cJSON_IsFalse(muted)) {
        api_error(r, 400, "invalid_request", "muted false and a muted_until time contradict");
        return;
    }
    long long ms = 0, now = kc_now_ms();
    if (api_time_parse(until->valuestring, &ms) != 0) {
        api_error(r, 400, "invalid_request",
                  "muted_until must be an RFC 3339 time such as \"2026-11-27T09:30:00Z\" or "
                  "\"2026-11-27T10:30:00+01:00\", or null (unmute)");
        return;
    }
    if (ms <= now || ms > now + MUTE_MAX_S * 1000LL) {
        api_error(r, 400, "invalid_request",
                  "muted_until must be in the future, at most a year ahead (use {\"muted\": "
                  "true} to mute until unmuted)");
        return;
    }
    char s_until[24];
    (void)kc_strlcpyf(s_until, sizeof(s_until), "%lld", ms);
    mute(r, "", s_until);
}
