/* apply_pg.h - a batch of events as a few multi-row statements on the Postgres read model.
 *
 * Events are grouped into segments; within a segment the statements run in a fixed order
 * (conversations, members added, departures of those added, roles, members removed,
 * departures of those removed, messages, edits, deletes, reactions removed, reactions set,
 * the reactions of deleted messages, read positions, titles and topics, conversation
 * activity), each one a single INSERT/UPDATE/DELETE over unnest()ed arrays. Where one row
 * can change twice in a segment the later change wins (an edit, a role, a departure, a
 * reaction, a title or topic). A segment ends early only where that fixed order would
 * reorder two events whose order matters (a member added after a removal or a read
 * position, a removal after a read position, a reaction after a delete), so a run of
 * messages is one statement however long it is. Statements name the schema explicitly (`rm`, or the shadow schema of a
 * rebuild).
 */
#ifndef PROJ_APPLY_PG_H
#define PROJ_APPLY_PG_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define PROJ_STMT_MAX_PARAMS 48

/* The tables a statement writes (or, for an insert into members, checks a key of). */
enum {
    PROJ_T_CONVERSATIONS = 1,
    PROJ_T_MEMBERS = 2, /* members and departures */
    PROJ_T_MESSAGES = 4,
    PROJ_T_OFFSETS = 8,
    PROJ_T_REACTIONS = 16,
    PROJ_T_AUDIT = 32,
};

typedef struct {
    char *sql;
    int nparams;
    char *params[PROJ_STMT_MAX_PARAMS];
    unsigned tables; /* PROJ_T_* it writes */
    int select;      /* a SELECT returning one row (the check, the NOTIFYs) */
} proj_stmt_t;

typedef struct {
    proj_stmt_t *v;
    size_t n, cap;
} proj_stmts_t;

/* Takes ownership of sql and of the params. */
void proj_stmts_add(proj_stmts_t *s, char *sql, int nparams, char **params);
void proj_stmts_free(proj_stmts_t *s);

/* Joins consecutive statements of `in` into as few as it can, in order, and appends them to
 * `out` (in is left empty). Statements join while none writes a table an earlier one of the
 * group writes: data-modifying ones become WITH queries (all of one statement see the same
 * snapshot, which is why no two may touch one table), the one-row SELECTs the columns of its
 * final SELECT. A batch of messages is then one statement: the check, the messages, the read
 * positions, the activity, the offsets and the NOTIFYs. */
void proj_pg_combine(proj_stmts_t *in, proj_stmts_t *out);

/* Appends the statements applying items[i] with to_pg set. Returns the number of events
 * they apply. schema must be a plain identifier ([a-z0-9_]). */
size_t proj_pg_build(const char *schema, proj_item_t *items, size_t n, proj_stmts_t *out);

/* Appends the rows of the audit log (db/migrations/0012_audit.sql) for the items with to_pg
 * set: members added, removed and leaving, roles changed (a removal's promoted owner too),
 * and messages deleted by someone other than their author (an owner or admin), which the
 * statement learns from schema's messages, so it must follow the statements of
 * proj_pg_build. Each row has the event's time and actor, the command's origin as the source
 * and an event_id derived from the event's, so that a replay inserts nothing twice. Returns
 * the number of rows known to be written (deletes not counted). */
size_t proj_pg_audit(const char *schema, proj_item_t *items, size_t n, proj_stmts_t *out);

/* A statement that fails (error 22P02) unless the schema's stored offsets of the partitions
 * equal `expect` and, when generation >= 0, its meta.generation equals it. */
void proj_pg_check(const char *schema, const char *topic, const int32_t *parts,
                   const int64_t *expect, size_t n, int64_t generation, proj_stmts_t *out);
/* Stores the next offsets of the partitions. */
void proj_pg_offsets(const char *schema, const char *topic, const int32_t *parts,
                     const int64_t *next, size_t n, proj_stmts_t *out);
/* NOTIFY kchat_applied for every item with to_pg whose origin starts with "api:". Returns
 * how many. */
size_t proj_pg_notify(proj_item_t *items, size_t n, proj_stmts_t *out);

/* The JSON payload of kchat_applied for an event (caller frees). */
char *proj_applied_payload(const proj_event_t *ev);

#endif
