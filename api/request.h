/* request.h - what kchat-api reads from a REST request itself, pure (no server, no reply):
 * the path against a route's template, each query parameter, integer query values, the JSON
 * body and lists of member ids in it. http.c answers the errors these report; the unit tests
 * and fuzz/fuzz_api.c call them directly.
 */
#ifndef API_REQUEST_H
#define API_REQUEST_H

#include <stddef.h>

#include "kchat/buf.h"

struct cJSON;

/* Matches path against a template, where ":id", ":seq" (and ":user_id", see below) each stand
 * for one path segment; fills id (at most idsize - 1 bytes and a NUL) and *seq (when seq is
 * not NULL) when the template has them. 1 on a match, 0 otherwise, -1 when the path matches
 * but its id is not a valid id (kc_id_valid) or its seq not a seq_no (1 to 15 digits, no
 * leading zero). */
int api_path_match(const char *tmpl, const char *path, char *id, size_t idsize, long long *seq);

/* api_path_match for templates with a second id, ":user_id" (a member of the conversation of
 * ":id") or ":att_id" (one of its attachments): fills user_id (at most user_idsize - 1 bytes and a NUL) the same way, and answers -1
 * when it is not a valid id either. With user_id NULL (api_path_match) the segment is checked
 * as an id of at most idsize - 1 bytes and not kept. */
int api_path_match_ids(const char *tmpl, const char *path, char *id, size_t idsize,
                       char *user_id, size_t user_idsize, long long *seq);

#define API_QUERY_VALUE_MAX 1024 /* bytes of one query value */

/* True when a query parameter, as the server decoded it, may be read: key and value are
 * UTF-8, the value at most API_QUERY_VALUE_MAX bytes (value NULL: a key without '='). */
int api_query_arg_ok(const char *key, const char *value);

/* Reads a query value as a decimal integer in [min, max]: an optional '-' and digits, nothing
 * before or after. 0 with *out set, or -1. */
int api_int_parse(const char *v, long long min, long long max, long long *out);

/* Parses a request body that must be one JSON object in UTF-8: 0 with *out (the caller's,
 * cJSON_Delete), or -1 with *out NULL and *code, *message the error of the 400 answer. */
int api_body_parse(const char *body, size_t len, struct cJSON **out, const char **code,
                   const char **message);

typedef enum {
    API_MEMBERS_OK = 0,
    API_MEMBERS_NOT_IDS = -1,  /* not an array, or an item is not a user id */
    API_MEMBERS_TOO_MANY = -2, /* more than max items */
} api_members_status_t;

/* Reads a JSON array of user ids (each at most idmax bytes) of at most max items: on
 * API_MEMBERS_OK *out is a malloc'd array of the items' strings (still the JSON's: free only
 * the array) and *n their count. */
api_members_status_t api_member_ids(const struct cJSON *arr, size_t max, size_t idmax,
                                    const char ***out, size_t *n);

/* GET /search's q, read into what Postgres searches for: each word outside double quotes is
 * a prefix ('pine' finds "pineapple"), each "quoted phrase" its words in that order, all of
 * them together (AND). words is the to_tsquery text of the words ('w':* & 'x':*, each
 * quoted and escaped, so nothing the user wrote is tsquery syntax), empty when none;
 * phrases[] point into q's copy (plain text, for phraseto_tsquery). A word or phrase without
 * a letter or digit (punctuation alone) is left out. */
#define API_SEARCH_MAX_WORDS 16
#define API_SEARCH_MAX_PHRASES 4
typedef struct {
    kc_buf_t words;
    size_t nwords;
    char *copy; /* q's copy, cut into the phrases */
    const char *phrases[API_SEARCH_MAX_PHRASES];
    size_t nphrases;
} api_search_q_t;

/* 0, or -1 with *why (for the 400 answer): nothing to search for, or too many words or
 * phrases. Either way the caller calls api_search_q_free. */
int api_search_parse(const char *q, api_search_q_t *out, const char **why);
void api_search_q_free(api_search_q_t *sq);

/* A search result's place in the ranking, and the cursor that says "after it":
 * "<rank>_<ms>_<seq_no>_<convo_id>" (rank as Postgres printed the real, ms the message's
 * created_at). api_search_cursor_parse checks a cursor handed back: 0 with its parts (rank
 * and convo point into buf, a copy), or -1. */
typedef struct {
    char buf[256];
    const char *rank, *convo;
    long long ms, seq;
} api_search_cursor_t;
int api_search_cursor_parse(const char *s, api_search_cursor_t *c);

/* Reads an RFC 3339 date-time ("2026-11-27T09:30:00Z", "2026-11-27t10:30:00.5+01:00"):
 * YYYY-MM-DD, 'T' or 't', hh:mm:ss, an optional fraction of 1 to 9 digits (milliseconds kept,
 * the rest cut), then 'Z', 'z' or +hh:mm / -hh:mm; a real day of the month, hours 0-23,
 * minutes 0-59, seconds 0-60 (a leap second counts as the next one), years 0001-9999. Nothing
 * before or after, so Postgres' own words ("now", "infinity", "tomorrow") never pass.
 * 0 with *ms (ms since the epoch, UTC), or -1. */
int api_time_parse(const char *s, long long *ms);

#endif
