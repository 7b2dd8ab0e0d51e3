/* mutes.c - PUT /conversations/:id/mute {for_s?} and DELETE of it: a member mutes a
 * conversation for themself, for for_s seconds or until they unmute it (table mutes,
 * db/migrations/0006_mutes.sql: a setting of the user, not an event). Only members: anyone
 * else gets the conversation's 404. The answer is {muted, muted_until} (muted_until null:
 * until unmuted); every conversation body carries the same for the caller (conversations.c,
 * API_MUTE_FIELDS).
 */
#include <string.h>

#include "api.h"

#define MUTE_MAX_S 31536000 /* a year */

static void on_muted(void *arg, const PGresult *res, const char *err)
{
    api_reply_row(arg, res, err, 200, "mute", "no such conversation");
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
    const char *params[] = {r->convo_id, r->user_id, s_for};
    (void)api_pg(r,
                 "INSERT INTO mutes (user_id, convo_id, muted_until) "
                 "SELECT $2, $1, CASE WHEN $3 = '' THEN NULL "
                 "                    ELSE now() + make_interval(secs => $3::int) END "
                 "FROM rm.members WHERE convo_id = $1 AND user_id = $2 "
                 "ON CONFLICT (user_id, convo_id) DO UPDATE "
                 "SET muted_until = excluded.muted_until "
                 "RETURNING json_build_object('muted', true, 'muted_until', "
                 API_ISO("muted_until") ")::text",
                 3, params, on_muted);
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

void api_convo_unmute(api_req_t *r)
{
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r,
                 "WITH gone AS (DELETE FROM mutes WHERE convo_id = $1 AND user_id = $2) "
                 "SELECT EXISTS (SELECT 1 FROM rm.members WHERE convo_id = $1 AND user_id = $2)",
                 2, params, on_unmuted);
}
