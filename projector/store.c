/* store.c - blocking reads and writes of the projector's stored state (see store.h). */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/buf.h"
#include "kchat/chat.h"
#include "kchat/log.h"
#include "kchat/pg.h"
#include "kchat/util.h"

/* ---- Postgres ---- */

PGconn *proj_pg_connect(const char *dsn, char *err, size_t errlen)
{
    return kc_pg_connect_blocking(dsn, "kchat-projector", err, errlen);
}

/* Runs sql; 0 when it succeeded. */
static int exec_ok(PGconn *c, const char *sql, int nparams, const char *const *params, char *err,
                   size_t errlen)
{
    PGresult *r =
        nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static void rollback(PGconn *c)
{
    PGresult *r = PQexec(c, "ROLLBACK");
    PQclear(r);
}

static int schema_exists(PGconn *c, const char *schema, int *exists, char *err, size_t errlen)
{
    const char *p[] = {schema};
    PGresult *r =
        PQexecParams(c, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        *exists = PQntuples(r) > 0;
    else
        kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

const char *proj_readmodel_stamp(void)
{
    static char stamp[sizeof(PROJ_STAMP_PREFIX) + crypto_hash_sha256_BYTES * 2];
    if (!stamp[0]) {
        unsigned char h[crypto_hash_sha256_BYTES];
        char hex[crypto_hash_sha256_BYTES * 2 + 1];
        /* Hashing needs no sodium_init (that is for its random numbers). */
        crypto_hash_sha256(h, (const unsigned char *)proj_readmodel_sql, proj_readmodel_sql_len);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        kc_strlcpyf(stamp, sizeof(stamp), "%s%s", PROJ_STAMP_PREFIX, hex);
    }
    return stamp;
}

/* The schema's tables, its meta row and its stamp (the caller holds the transaction). */
static int create_schema(PGconn *c, const char *schema, int64_t generation, char *err,
                         size_t errlen)
{
    kc_buf_t sql = {0};
    kc_buf_printf(&sql, "CREATE SCHEMA %s; SET LOCAL search_path TO %s;\n", schema, schema);
    kc_buf_append(&sql, proj_readmodel_sql, proj_readmodel_sql_len);
    /* The stamp holds [a-z0-9:- ] only: it needs no escaping. */
    kc_buf_printf(&sql,
                  ";\nINSERT INTO meta (generation) VALUES (%" PRId64 ");"
                  "\nCOMMENT ON SCHEMA %s IS '%s';",
                  generation, schema, proj_readmodel_stamp());
    int rc = exec_ok(c, sql.data, 0, NULL, err, errlen);
    kc_buf_free(&sql);
    if (rc == 0)
        kc_log_kv(KC_LOG_INFO,
                  KC_FIELDS(KC_STR("schema", schema), KC_INT("generation", generation)),
                  "read model schema created");
    return rc;
}

/* Takes the lock of `rm` exclusively for the transaction: two projectors starting together
 * (one creates, the other finds it made), a live writer's transaction, a swap. */
static int lock_rm(PGconn *c, char *err, size_t errlen)
{
    return exec_ok(c, "SELECT pg_advisory_xact_lock(" PROJ_RM_LOCK ")", 0, NULL, err, errlen);
}

int proj_pg_ensure_schema(PGconn *c, const char *schema, int64_t generation, int fresh, char *err,
                          size_t errlen)
{
    kc_buf_t sql = {0};
    int exists = 0, rc = -1;
    if (exec_ok(c, "BEGIN", 0, NULL, err, errlen) != 0)
        goto out;
    if (lock_rm(c, err, errlen) != 0)
        goto fail;
    if (fresh) {
        kc_buf_printf(&sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
        if (exec_ok(c, sql.data, 0, NULL, err, errlen) != 0)
            goto fail;
    } else if (schema_exists(c, schema, &exists, err, errlen) != 0) {
        goto fail;
    }
    if (!exists && create_schema(c, schema, generation, err, errlen) != 0)
        goto fail;
    if (exec_ok(c, "COMMIT", 0, NULL, err, errlen) == 0)
        rc = 0;
    goto out;
fail:
    rollback(c);
out:
    kc_buf_free(&sql);
    return rc;
}

int proj_pg_schema_state(PGconn *c, const char *schema, proj_schema_state_t *state, char *err,
                         size_t errlen)
{
    const char *p[] = {schema};
    PGresult *r = PQexecParams(c,
                               "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') "
                               "FROM pg_namespace WHERE nspname = $1",
                               1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
    else if (PQntuples(r) == 0)
        *state = PROJ_SCHEMA_MISSING;
    else
        *state = strcmp(PQgetvalue(r, 0, 0), proj_readmodel_stamp()) == 0 ? PROJ_SCHEMA_CURRENT
                                                                           : PROJ_SCHEMA_OTHER;
    PQclear(r);
    return ok ? 0 : -1;
}

int proj_pg_replace_other(PGconn *c, const char *schema, int64_t *generation, char *err,
                          size_t errlen)
{
    kc_buf_t sql = {0};
    int rc = -1;
    proj_schema_state_t state;
    *generation = -1;
    if (exec_ok(c, "BEGIN", 0, NULL, err, errlen) != 0)
        goto out;
    /* Checked again under the lock: another projector may have replaced it meanwhile. */
    if (lock_rm(c, err, errlen) != 0 || proj_pg_schema_state(c, schema, &state, err, errlen) != 0)
        goto fail;
    if (state == PROJ_SCHEMA_OTHER) {
        /* The next generation, so that a live writer of the old one fails its check. */
        kc_buf_printf(&sql, "SELECT to_regclass('%s.meta') IS NOT NULL", schema);
        PGresult *r = PQexec(c, sql.data);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        int has_meta = ok && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        if (!ok)
            kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            goto fail;
        int64_t old = 0;
        if (has_meta) {
            kc_buf_reset(&sql);
            kc_buf_printf(&sql, "SELECT max(generation) FROM %s.meta", schema);
            r = PQexec(c, sql.data);
            ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
            if (!ok)
                kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
            else if (!PQgetisnull(r, 0, 0))
                old = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            PQclear(r);
            if (!ok)
                goto fail;
        }
        kc_buf_reset(&sql);
        kc_buf_printf(&sql, "DROP SCHEMA %s CASCADE", schema);
        if (exec_ok(c, sql.data, 0, NULL, err, errlen) != 0 ||
            create_schema(c, schema, (old > 0 ? old : 0) + 1, err, errlen) != 0)
            goto fail;
        *generation = (old > 0 ? old : 0) + 1;
    }
    if (exec_ok(c, "COMMIT", 0, NULL, err, errlen) == 0)
        rc = 0;
    else
        *generation = -1;
    goto out;
fail:
    rollback(c);
    *generation = -1;
out:
    kc_buf_free(&sql);
    return rc;
}

int proj_pg_state(PGconn *c, const char *schema, const char *topic, int32_t nparts, int64_t *offs,
                  int64_t *generation, char *err, size_t errlen)
{
    for (int32_t i = 0; i < nparts; i++)
        offs[i] = 0;
    *generation = -1;
    int exists;
    if (schema_exists(c, schema, &exists, err, errlen) != 0)
        return -1;
    if (!exists)
        return 0;
    kc_buf_t sql = {0};
    kc_buf_printf(&sql,
                  "SELECT -1, generation FROM %s.meta UNION ALL "
                  "SELECT partition, next_offset FROM %s.offsets WHERE topic = $1",
                  schema, schema);
    const char *p[] = {topic};
    PGresult *r = PQexecParams(c, sql.data, 1, NULL, p, NULL, NULL, 0);
    kc_buf_free(&sql);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        long long part = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        long long v = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        if (part == -1)
            *generation = v;
        else if (part >= 0 && part < nparts)
            offs[part] = v;
    }
    rc = 0;
out:
    PQclear(r);
    return rc;
}

int proj_pg_skips(PGconn *c, const char *topic, proj_skip_t **out, size_t *n, char *err,
                  size_t errlen)
{
    *out = NULL;
    *n = 0;
    const char *p[] = {topic};
    PGresult *r = PQexecParams(c,
                               "SELECT partition, \"offset\" FROM event_skips WHERE topic = $1 "
                               "ORDER BY partition, \"offset\" LIMIT 100000",
                               1, NULL, p, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42P01") == 0) { /* no such table: migrations not run yet */
            rc = 0;
            goto out;
        }
        kc_strlcpyf(err, errlen, "postgres: %s", PQresultErrorMessage(r));
        goto out;
    }
    int rows = PQntuples(r);
    if (rows == 100000)
        kc_log_warn("event_skips holds 100000 records of %s or more: only the first 100000 (by "
                    "partition and offset) are passed over",
                    topic);
    if (rows > 0) {
        *out = kc_xcalloc((size_t)rows, sizeof(proj_skip_t));
        for (int i = 0; i < rows; i++) {
            (*out)[i].partition = (int32_t)strtol(PQgetvalue(r, i, 0), NULL, 10);
            (*out)[i].offset = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        }
        *n = (size_t)rows;
    }
    rc = 0;
out:
    PQclear(r);
    return rc;
}

int proj_skipped(const proj_skip_t *skips, size_t n, int32_t partition, int64_t offset)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const proj_skip_t *s = &skips[mid];
        if (s->partition == partition && s->offset == offset)
            return 1;
        if (s->partition < partition || (s->partition == partition && s->offset < offset))
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int proj_pg_swap(PGconn *c, const char *live, const char *shadow, char *err, size_t errlen)
{
    char old[128];
    kc_strlcpyf(old, sizeof(old), "%s_old_%lld", live, (long long)kc_now_ms());
    kc_buf_t sql = {0};
    int exists = 0, rc = -1;
    if (exec_ok(c, "BEGIN", 0, NULL, err, errlen) != 0)
        goto out;
    /* Waits for the live projector's open transaction; its next one waits for this. */
    if (lock_rm(c, err, errlen) != 0 || schema_exists(c, live, &exists, err, errlen) != 0)
        goto fail;
    if (exists)
        kc_buf_printf(&sql, "ALTER SCHEMA %s RENAME TO %s; ", live, old);
    kc_buf_printf(&sql, "ALTER SCHEMA %s RENAME TO %s", shadow, live);
    if (exec_ok(c, sql.data, 0, NULL, err, errlen) != 0)
        goto fail;
    if (exec_ok(c, "COMMIT", 0, NULL, err, errlen) != 0)
        goto out;
    rc = 0;
    if (exists) {
        kc_buf_reset(&sql);
        kc_buf_printf(&sql, "DROP SCHEMA %s CASCADE", old);
        if (exec_ok(c, sql.data, 0, NULL, err, errlen) != 0)
            kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("schema", old)),
                      "the old read model could not be dropped: %s", err);
    }
    goto out;
fail:
    rollback(c);
out:
    kc_buf_free(&sql);
    return rc;
}

/* ---- Redis ---- */

redisContext *proj_redis_connect(const kc_redis_cfg_t *cfg, char *err, size_t errlen)
{
    int timeout_ms = (int)cfg->timeout_ms;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *r = redisConnectWithTimeout(cfg->host, (int)cfg->port, tv);
    if (!r || r->err) {
        kc_strlcpyf(err, errlen, "redis: %s", r ? r->errstr : "out of memory");
        if (r)
            redisFree(r);
        return NULL;
    }
    if (redisSetTimeout(r, tv) != REDIS_OK) {
        kc_strlcpyf(err, errlen, "redis: cannot set the timeout");
        redisFree(r);
        return NULL;
    }
    if (cfg->password && *cfg->password) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (cfg->username && *cfg->username)
            argv[argc++] = cfg->username;
        argv[argc++] = cfg->password;
        redisReply *rep = redisCommandArgv(r, argc, argv, NULL);
        int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
        if (!ok)
            kc_strlcpyf(err, errlen, "redis: AUTH refused: %.120s",
                        rep && (rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_STATUS)
                            ? rep->str
                            : r->errstr[0] ? r->errstr : "no answer");
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(r);
            return NULL;
        }
    }
    /* A generous bound on each reply: SCAN and UNLINK of a large model included. */
    struct timeval cmd = {.tv_sec = 30, .tv_usec = 0};
    if (redisSetTimeout(r, cmd) != REDIS_OK) {
        kc_strlcpyf(err, errlen, "redis: cannot set the timeout");
        redisFree(r);
        return NULL;
    }
    return r;
}

/* Runs a command; returns the reply (caller frees) or NULL with err set, also for an error
 * reply. */
static redisReply *cmd(redisContext *r, char *err, size_t errlen, int argc, const char **argv)
{
    redisReply *rep = redisCommandArgv(r, argc, argv, NULL);
    if (!rep) {
        kc_strlcpyf(err, errlen, "redis: %s", r->errstr[0] ? r->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        kc_strlcpyf(err, errlen, "redis: %s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

int proj_redis_gen(redisContext *r, int64_t *gen, char *err, size_t errlen)
{
    const char *argv[] = {"GET", KC_REDIS_RM_GEN};
    redisReply *rep = cmd(r, err, errlen, 2, argv);
    if (!rep)
        return -1;
    *gen = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return 0;
}

int proj_redis_gen_init(redisContext *r, int64_t gen, int *set, char *err, size_t errlen)
{
    char g[32];
    kc_strlcpyf(g, sizeof(g), "%" PRId64, gen);
    const char *argv[] = {"SET", KC_REDIS_RM_GEN, g, "NX"};
    redisReply *rep = cmd(r, err, errlen, 4, argv);
    if (!rep)
        return -1;
    *set = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    return 0;
}

int proj_redis_gen_switch(redisContext *r, int64_t from, int64_t to, char *err, size_t errlen)
{
    static const char script[] = "local g = redis.call('GET', KEYS[1])\n"
                                 "if g and g ~= ARGV[1] then return 0 end\n"
                                 "redis.call('SET', KEYS[1], ARGV[2])\n"
                                 "return 1\n";
    char f[32], t[32];
    kc_strlcpyf(f, sizeof(f), "%" PRId64, from);
    kc_strlcpyf(t, sizeof(t), "%" PRId64, to);
    const char *argv[] = {"EVAL", script, "1", KC_REDIS_RM_GEN, f, t};
    redisReply *rep = cmd(r, err, errlen, 6, argv);
    if (!rep)
        return -1;
    int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!ok)
        kc_strlcpyf(err, errlen, "kchat:rm:gen no longer holds %s", f);
    return ok ? 0 : -1;
}

int proj_redis_offsets(redisContext *r, const char *prefix, int32_t nparts, int64_t *offs,
                       int *exists, char *err, size_t errlen)
{
    for (int32_t i = 0; i < nparts; i++)
        offs[i] = 0;
    char key[300];
    kc_strlcpyf(key, sizeof(key), "%s" KC_RM_OFFSETS, prefix);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = cmd(r, err, errlen, 2, argv);
    if (!rep)
        return -1;
    *exists = rep->type == REDIS_REPLY_ARRAY && rep->elements > 0;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
        long long part = strtoll(rep->element[i]->str ? rep->element[i]->str : "-1", NULL, 10);
        if (part >= 0 && part < nparts && rep->element[i + 1]->str)
            offs[part] = strtoll(rep->element[i + 1]->str, NULL, 10);
    }
    freeReplyObject(rep);
    return 0;
}

int proj_redis_unlink_prefix(redisContext *r, const char *prefix, long long *count, char *err,
                             size_t errlen)
{
    char pattern[300], cursor[32] = "0";
    /* The prefix is kchat:rm:<number>: and holds no glob characters. */
    kc_strlcpyf(pattern, sizeof(pattern), "%s*", prefix);
    *count = 0;
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *rep = cmd(r, err, errlen, 6, argv);
        if (!rep)
            return -1;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            kc_strlcpyf(err, errlen, "redis: unexpected SCAN reply");
            return -1;
        }
        kc_strlcpyf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        redisReply *keys = rep->element[1];
        if (keys->elements) {
            const char **argv2 = kc_xcalloc(keys->elements + 1, sizeof(char *));
            size_t *lens = kc_xcalloc(keys->elements + 1, sizeof(size_t));
            argv2[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                argv2[i + 1] = keys->element[i]->str;
                lens[i + 1] = keys->element[i]->len;
            }
            redisReply *u = redisCommandArgv(r, (int)keys->elements + 1, argv2, lens);
            free(argv2);
            free(lens);
            if (!u || u->type == REDIS_REPLY_ERROR) {
                kc_strlcpyf(err, errlen, "redis: UNLINK failed");
                if (u)
                    freeReplyObject(u);
                freeReplyObject(rep);
                return -1;
            }
            *count += u->integer;
            freeReplyObject(u);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}
