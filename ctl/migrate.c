/* migrate.c - `kchatctl migrate`: apply db/migrations/NNNN_name.sql in order, once each.
 *
 * Each file runs in its own transaction together with the row that records it in
 * kchat_schema_migrations (version, name, sha256). A file already applied is checked
 * against its recorded checksum: a migration edited after it ran is an error, not a silent
 * skip. An advisory lock makes concurrent runs (two deploy jobs at once) safe.
 */
#include "ctl.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define MIGRATION_MAX_BYTES (4 << 20)
#define MAX_MIGRATIONS 1000
#define LOCK_KEY "7212443"

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ok(PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 1;
    fprintf(stderr, "%s: %s", what, PQresultErrorMessage(r));
    return 0;
}

static int exec_ok(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    int good = ok(r, what);
    PQclear(r);
    return good;
}

/* Parses NNNN_name.sql into its version. */
static int version_of(const char *name, long *version)
{
    char *end = NULL;
    long v = strtol(name, &end, 10);
    if (end == name || *end != '_' || v <= 0)
        return -EINVAL;
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 4, ".sql") != 0)
        return -EINVAL;
    *version = v;
    return 0;
}

static int apply_one(PGconn *c, const char *dir, const char *name, int *applied)
{
    long version;
    if (version_of(name, &version) != 0) {
        fprintf(stderr, "%s: migration files are named NNNN_name.sql\n", name);
        return -1;
    }
    char path[4096];
    if (kc_strlcpyf(path, sizeof(path), "%s/%s", dir, name) != 0)
        return -1;
    char *sql = NULL;
    size_t len = 0;
    int rc = ctl_read_file(path, MIGRATION_MAX_BYTES, &sql, &len);
    if (rc) {
        fprintf(stderr, "cannot read %s: %s\n", path, strerror(-rc));
        return -1;
    }
    unsigned char hash[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    crypto_hash_sha256(hash, (const unsigned char *)sql, len);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    char vtext[32];
    snprintf(vtext, sizeof(vtext), "%ld", version);

    const char *params[3] = {vtext, name, hex};
    PGresult *r = PQexecParams(c, "SELECT checksum FROM kchat_schema_migrations WHERE version = $1",
                               1, NULL, params, NULL, NULL, 0);
    int result = -1;
    if (!ok(r, "reading kchat_schema_migrations"))
        goto out;
    if (PQntuples(r) == 1) {
        if (strcmp(PQgetvalue(r, 0, 0), hex) != 0) {
            fprintf(stderr, "%s was changed after it was applied (checksum differs); add a new "
                            "migration instead\n",
                    name);
            goto out;
        }
        result = 0;
        goto out;
    }
    PQclear(r);
    r = NULL;
    if (!exec_ok(c, "BEGIN", "BEGIN"))
        goto out;
    PGresult *m = PQexec(c, sql);
    int good = ok(m, name);
    PQclear(m);
    if (good) {
        r = PQexecParams(c,
                         "INSERT INTO kchat_schema_migrations (version, name, checksum) "
                         "VALUES ($1, $2, $3)",
                         3, NULL, params, NULL, NULL, 0);
        good = ok(r, "recording the migration");
    }
    if (!good || !exec_ok(c, "COMMIT", "COMMIT")) {
        (void)exec_ok(c, "ROLLBACK", "ROLLBACK");
        goto out;
    }
    printf("applied %s\n", name);
    (*applied)++;
    result = 0;
out:
    PQclear(r);
    free(sql);
    return result;
}

int ctl_migrate(const ctl_cfg_t *cfg)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "libsodium failed to initialise\n");
        return 1;
    }
    DIR *d = opendir(cfg->migrations_dir);
    if (!d) {
        fprintf(stderr, "cannot open %s: %s\n", cfg->migrations_dir, strerror(errno));
        return 1;
    }
    char *names[MAX_MIGRATIONS];
    size_t n = 0;
    struct dirent *e;
    int failed = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        if (n == MAX_MIGRATIONS) {
            fprintf(stderr, "more than %d migrations\n", MAX_MIGRATIONS);
            failed = 1;
            break;
        }
        names[n++] = kc_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);

    PGconn *c = failed ? NULL : PQconnectdb(cfg->pg.dsn);
    int applied = 0;
    if (!failed && PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to Postgres: %s", PQerrorMessage(c));
        failed = 1;
    }
    if (!failed &&
        (!exec_ok(c, "SET client_min_messages = warning", "SET") ||
         !exec_ok(c, "SELECT pg_advisory_lock(" LOCK_KEY ")", "advisory lock") ||
         !exec_ok(c,
                  "CREATE TABLE IF NOT EXISTS kchat_schema_migrations ("
                  " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now())",
                  "creating kchat_schema_migrations")))
        failed = 1;
    for (size_t i = 0; i < n; i++) {
        if (!failed && apply_one(c, cfg->migrations_dir, names[i], &applied) != 0)
            failed = 1;
        free(names[i]);
    }
    if (c && PQstatus(c) == CONNECTION_OK)
        (void)exec_ok(c, "SELECT pg_advisory_unlock(" LOCK_KEY ")", "advisory unlock");
    PQfinish(c);
    if (!failed)
        printf("migrations: %d applied, %zu in total\n", applied, n);
    return failed ? 1 : 0;
}
