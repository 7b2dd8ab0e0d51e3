/* store.h - blocking access to what the projector has stored: the read model's schema, the
 * offsets applied to each model, the generations, and the swap of a rebuilt model.
 *
 * These run on their own connections, outside the loop adapters, at moments where the
 * projector has nothing else to do: start-up, a (re)assignment, a resync after a failed
 * batch, and a rebuild's start and swap. Each call is bounded by a connect timeout (5 s) and
 * by the server's statement handling. The apply path itself uses the asynchronous adapters.
 */
#ifndef PROJ_STORE_H
#define PROJ_STORE_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "kchat/redis.h"

/* The advisory lock of the live schema `rm` ("kchat_rm" as a number): live writers take it
 * shared in each transaction, the swap takes it exclusive. */
#define PROJ_RM_LOCK "7738143352526172781"

extern const char proj_readmodel_sql[];
extern const size_t proj_readmodel_sql_len;

PGconn *proj_pg_connect(const char *dsn, char *err, size_t errlen);
/* Creates schema with the read model's tables (meta.generation = generation) unless it
 * exists; with fresh set, drops it first. Returns 0 or -1 with err. A schema it creates
 * carries the stamp of the DDL as its COMMENT. */
int proj_pg_ensure_schema(PGconn *c, const char *schema, int64_t generation, int fresh, char *err,
                          size_t errlen);

/* Which DDL made a schema: "kchat-readmodel sha256:<hex>" of the compiled-in
 * db/readmodel.sql, the COMMENT of every schema the projector creates (it moves with the
 * schema when a rebuild's is renamed to `rm`). A schema without it was made by an older
 * projector. Any change to db/readmodel.sql, comments included, changes it. */
#define PROJ_STAMP_PREFIX "kchat-readmodel sha256:"
const char *proj_readmodel_stamp(void);

typedef enum {
    PROJ_SCHEMA_MISSING,
    PROJ_SCHEMA_CURRENT, /* made by this DDL */
    PROJ_SCHEMA_OTHER,   /* made by another DDL (or before schemas were stamped) */
} proj_schema_state_t;

/* The records of an events topic to pass over (table event_skips, kchatctl skip-event), sorted
 * by partition and offset into *out (at most 100 000) (the caller frees it; NULL when none). A database without
 * the table (migrations not run) has none. 0, or -1 with err. */
typedef struct {
    int32_t partition;
    int64_t offset;
} proj_skip_t;
int proj_pg_skips(PGconn *c, const char *topic, proj_skip_t **out, size_t *n, char *err,
                  size_t errlen);
/* Whether (partition, offset) is in the sorted list. */
int proj_skipped(const proj_skip_t *skips, size_t n, int32_t partition, int64_t offset);

int proj_pg_schema_state(PGconn *c, const char *schema, proj_schema_state_t *state, char *err,
                         size_t errlen);
/* In one transaction holding the lock exclusively: when schema exists and was made by
 * another DDL, drops it and creates it anew, empty, with the next generation (so that the
 * old one's writers fail their check). *generation is the new one, or -1 when the schema
 * was left as it was. Returns 0 or -1 with err. */
int proj_pg_replace_other(PGconn *c, const char *schema, int64_t *generation, char *err,
                          size_t errlen);
/* The schema's generation (-1 when the schema does not exist) and the next offsets of
 * partitions 0..nparts-1 (0 when none is stored). */
int proj_pg_state(PGconn *c, const char *schema, const char *topic, int32_t nparts, int64_t *offs,
                  int64_t *generation, char *err, size_t errlen);
/* In one transaction holding the lock exclusively: live -> <live>_old_<ms> (when it exists),
 * shadow -> live. Then drops the old schema. */
int proj_pg_swap(PGconn *c, const char *live, const char *shadow, char *err, size_t errlen);

/* A blocking connection (logged in when cfg has a password) for a worker thread. */
redisContext *proj_redis_connect(const kc_redis_cfg_t *cfg, char *err, size_t errlen);
/* kchat:rm:gen, or 0 when it is missing. */
int proj_redis_gen(redisContext *r, int64_t *gen, char *err, size_t errlen);
/* Sets kchat:rm:gen to gen unless it exists; *set says whether it did. */
int proj_redis_gen_init(redisContext *r, int64_t gen, int *set, char *err, size_t errlen);
/* Sets kchat:rm:gen to `to` if it holds `from` (or is missing). Returns 0, or -1 when it held
 * something else or on error. */
int proj_redis_gen_switch(redisContext *r, int64_t from, int64_t to, char *err, size_t errlen);
/* The offsets hash of prefix: partitions 0..nparts-1 (0 when absent); *exists says whether
 * the hash exists at all. */
int proj_redis_offsets(redisContext *r, const char *prefix, int32_t nparts, int64_t *offs,
                       int *exists, char *err, size_t errlen);
/* UNLINKs every key starting with prefix (SCAN), counting them. */
int proj_redis_unlink_prefix(redisContext *r, const char *prefix, long long *count, char *err,
                             size_t errlen);

#endif
