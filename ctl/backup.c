/* backup.c - what the event log cannot rebuild, kept in the object store: Postgres (accounts,
 * refresh tokens, the audit log, push subscriptions) as base backups and a WAL archive, and
 * the files named with --backup-files (the token signing key, the VAPID key).
 *
 * Under <bucket>/<backup-prefix>:
 *
 *   wal/<name>                        each WAL segment, history and backup label file, put
 *                                     by Postgres' archive_command (`kchatctl wal-push`)
 *   base/<label>/<file>.<NNNNN>       `pg_basebackup -Ft -z -X fetch`'s files, cut into parts
 *                                     of --backup-part-mib (no multipart upload to go wrong)
 *   base/<label>/files/<name>         each of --backup-files
 *   base/<label>/backup.json          written last: the backup is whole. Sizes, SHA-256 of
 *                                     every file, when it began and ended.
 *
 * The label is the UTC time the backup began (20261207T023000Z), so labels sort by time.
 * `kchatctl pg-restore` takes the newest whole backup that ended before the target time,
 * checks every file against backup.json, unpacks it and sets Postgres to fetch WAL from the
 * archive (`kchatctl wal-fetch`) up to that time. The requests block (kchat/s3_sync.h): a
 * command line tool may.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ctl.h"
#include "kchat/buf.h"
#include "kchat/s3.h"
#include "kchat/s3_sync.h"
#include "kchat/util.h"

extern char **environ;

#define WAL_MAX (1LL << 30)       /* the largest WAL segment Postgres makes */
#define MANIFEST_MAX (1 << 20)

typedef struct {
    kc_s3_cfg_t s3;
    const char *prefix;
} store_t;

static int store_init(const ctl_cfg_t *cfg, store_t *st)
{
    st->s3 = (kc_s3_cfg_t){cfg->s3_endpoint, cfg->s3_bucket, cfg->s3_region, cfg->s3_access_key,
                           cfg->s3_secret_key};
    st->prefix = cfg->backup_prefix;
    char err[256];
    if (kc_s3_cfg_check(&st->s3, err, sizeof(err)) != 0) {
        fprintf(stderr, "kchatctl: the object store: %s\n", err);
        return -1;
    }
    if (!kc_str_only(st->prefix, "._/-")) {
        fprintf(stderr, "kchatctl: --backup-prefix may hold only letters, digits and ._/-\n");
        return -1;
    }
    return 0;
}

/* A name of the archive or of a file: letters, digits, '.', '_' and '-', not "." or "..". */
static int plain_name(const char *s)
{
    return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strlen(s) <= 200 &&
           kc_str_only(s, "._-");
}

/* ---- requests ---- */

typedef kc_s3_sink_t sink_t;

/* kc_s3_sync, with a failure to get an answer said on stderr. */
static long request(const store_t *st, const char *method, const char *key, const char *params,
                    FILE *in, long long in_len, sink_t *sink)
{
    char err[512];
    long s = kc_s3_sync(&st->s3, method, key, params, in, in_len, sink, err, sizeof(err));
    if (s < 0)
        fprintf(stderr, "kchatctl: %s\n", err);
    return s;
}

static void keyf(kc_buf_t *k, const store_t *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void keyf(kc_buf_t *k, const store_t *st, const char *fmt, ...)
{
    kc_buf_reset(k);
    kc_buf_puts(k, st->prefix);
    va_list ap;
    va_start(ap, fmt);
    kc_buf_vprintf(k, fmt, ap);
    va_end(ap);
}

/* PUTs len bytes of f from its position to key. 0, or -1 (said). */
static int put_range(const store_t *st, const char *key, FILE *f, long long len)
{
    long s = request(st, "PUT", key, NULL, f, len, NULL);
    if (s == 200)
        return 0;
    if (s > 0)
        fprintf(stderr, "kchatctl: PUT %s/%s: HTTP %ld\n", st->s3.bucket, key, s);
    return -1;
}

static void hex32(const unsigned char h[32], char out[65])
{
    (void)sodium_bin2hex(out, 65, h, 32);
}

/* ---- the WAL archive ---- */

/* archive_command: `kchatctl wal-push --wal-path=%p --wal-name=%f`. A segment already in the
 * archive with the same bytes is success (Postgres may ask again after a crash); with other
 * bytes it is an error, as Postgres' documentation asks, so that nothing is overwritten. */
int ctl_wal_push(const ctl_cfg_t *cfg)
{
    store_t st;
    if (store_init(cfg, &st) != 0)
        return 2;
    if (!plain_name(cfg->wal_name) || !*cfg->wal_path) {
        fprintf(stderr, "kchatctl: wal-push needs --wal-path=%%p and --wal-name=%%f (a plain "
                        "file name)\n");
        return 2;
    }
    FILE *f = fopen(cfg->wal_path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        fprintf(stderr, "kchatctl: %s: %s\n", cfg->wal_path, strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    if (sb.st_size > WAL_MAX) {
        fprintf(stderr, "kchatctl: %s is larger than a WAL segment can be (1 GiB)\n",
                cfg->wal_path);
        fclose(f);
        return 1;
    }
    kc_buf_t key = {0}, have = {0};
    keyf(&key, &st, "wal/%s", cfg->wal_name);
    int rc = 1;
    sink_t sink = {.body = &have, .max = (size_t)sb.st_size};
    long s = request(&st, "GET", key.data, NULL, NULL, 0, &sink);
    if (s == 200) {
        /* There already: the same bytes? */
        unsigned char *mine = kc_xmalloc((size_t)sb.st_size + 1);
        size_t got = fread(mine, 1, (size_t)sb.st_size, f);
        if (got == (size_t)sb.st_size && have.len == got &&
            (got == 0 || memcmp(mine, have.data, got) == 0)) {
            rc = 0;
        } else {
            fprintf(stderr, "kchatctl: %s is in the archive with other contents: not "
                            "overwritten\n", cfg->wal_name);
        }
        free(mine);
    } else if (s == 404) {
        rc = put_range(&st, key.data, f, (long long)sb.st_size) == 0 ? 0 : 1;
    } else if (s > 0) {
        fprintf(stderr, "kchatctl: GET %s/%s: HTTP %ld%s\n", st.s3.bucket, key.data, s,
                have.len >= sink.max ? " (larger than the segment)" : "");
    }
    fclose(f);
    kc_buf_free(&key);
    kc_buf_free(&have);
    return rc;
}

/* restore_command: `kchatctl wal-fetch --wal-name=%f --wal-path=%p`. Exit 1 without a word
 * when the archive has no such file: Postgres asks for files that may not exist (the next
 * timeline's history) and takes that answer as the end of the archive. */
int ctl_wal_fetch(const ctl_cfg_t *cfg)
{
    store_t st;
    if (store_init(cfg, &st) != 0)
        return 2;
    if (!plain_name(cfg->wal_name) || !*cfg->wal_path) {
        fprintf(stderr, "kchatctl: wal-fetch needs --wal-name=%%f (a plain file name) and "
                        "--wal-path=%%p\n");
        return 2;
    }
    kc_buf_t key = {0}, tmp = {0};
    keyf(&key, &st, "wal/%s", cfg->wal_name);
    kc_buf_printf(&tmp, "%s.kchat-partial", cfg->wal_path);
    FILE *f = fopen(tmp.data, "wb");
    int rc = 1;
    if (!f) {
        fprintf(stderr, "kchatctl: %s: %s\n", tmp.data, strerror(errno));
    } else {
        sink_t sink = {.out = f};
        long s = request(&st, "GET", key.data, NULL, NULL, 0, &sink);
        int closed = fclose(f);
        if (s == 200 && closed == 0 && rename(tmp.data, cfg->wal_path) == 0)
            rc = 0;
        else if (s > 0 && s != 404)
            fprintf(stderr, "kchatctl: GET %s/%s: HTTP %ld\n", st.s3.bucket, key.data, s);
        else if (s == 200)
            fprintf(stderr, "kchatctl: %s: %s\n", cfg->wal_path, strerror(errno));
        if (rc != 0)
            (void)unlink(tmp.data);
    }
    kc_buf_free(&key);
    kc_buf_free(&tmp);
    return rc;
}

/* ---- base backups ---- */

/* Runs argv to its end; 0 when it exited 0. */
static int run(char *const argv[])
{
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (e != 0) {
        fprintf(stderr, "kchatctl: %s: %s\n", argv[0], strerror(e));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr, "kchatctl: %s failed (%s %d)\n", argv[0],
            WIFEXITED(status) ? "exit status" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return -1;
}

static void iso_ms(long long ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00");
    size_t n = strlen(out);
    snprintf(out + n, 32 - n, ".%03lldZ", ms % 1000);
}

/* Uploads the file at path as parts of part bytes under base/<label>/<name>.<NNNNN>, hashing
 * it; adds its entry to files. */
static int put_file(const store_t *st, const char *label, const char *path, const char *name,
                    long long part, int split, cJSON *files)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        fprintf(stderr, "kchatctl: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    /* The hash first: the parts are read from the file again as they are sent. */
    crypto_hash_sha256_state sha;
    crypto_hash_sha256_init(&sha);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        crypto_hash_sha256_update(&sha, buf, n);
    int rc = ferror(f) ? -1 : 0;
    long long size = (long long)sb.st_size;
    long long nparts = split ? (size + part - 1) / part : 1;
    if (nparts == 0)
        nparts = 1;
    kc_buf_t key = {0};
    for (long long i = 0; rc == 0 && i < nparts; i++) {
        long long off = split ? i * part : 0, len = split ? size - off : size;
        if (split && len > part)
            len = part;
        if (fseeko(f, (off_t)off, SEEK_SET) != 0) {
            rc = -1;
            break;
        }
        if (split)
            keyf(&key, st, "base/%s/%s.%05lld", label, name, i);
        else
            keyf(&key, st, "base/%s/files/%s", label, name);
        rc = put_range(st, key.data, f, len);
    }
    fclose(f);
    kc_buf_free(&key);
    if (rc != 0)
        return -1;
    unsigned char h[32];
    char hex[65];
    crypto_hash_sha256_final(&sha, h);
    hex32(h, hex);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddNumberToObject(e, "size", (double)size);
    if (split)
        cJSON_AddNumberToObject(e, "parts", (double)nparts);
    cJSON_AddStringToObject(e, "sha256", hex);
    cJSON_AddItemToArray(files, e);
    printf("  %-24s %lld bytes%s\n", name, size, split ? "" : " (file)");
    return 0;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        kc_buf_t p = {0};
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                kc_buf_reset(&p);
                kc_buf_printf(&p, "%s/%s", dir, e->d_name);
                (void)unlink(p.data);
            }
        kc_buf_free(&p);
        closedir(d);
    }
    (void)rmdir(dir);
}

int ctl_pg_backup(const ctl_cfg_t *cfg)
{
    store_t st;
    if (store_init(cfg, &st) != 0)
        return 2;
    long long part = cfg->backup_part_mib * 1024LL * 1024LL;
    long long began = kc_now_ms();
    char label[32], began_s[32];
    time_t t = (time_t)(began / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(label, sizeof(label), "%Y%m%dT%H%M%SZ", &tm) == 0)
        return 1;
    iso_ms(began, began_s);
    kc_buf_t work = {0};
    kc_buf_printf(&work, "%s/kchat-backup-XXXXXX", cfg->backup_work_dir);
    if (!mkdtemp(work.data)) {
        fprintf(stderr, "kchatctl: %s: %s\n", work.data, strerror(errno));
        kc_buf_free(&work);
        return 1;
    }
    kc_buf_t lbl = {0}, tool = {0};
    kc_buf_printf(&lbl, "kchat %s", label);
    if (*cfg->pg_bin_dir)
        kc_buf_printf(&tool, "%s/pg_basebackup", cfg->pg_bin_dir);
    else
        kc_buf_puts(&tool, "pg_basebackup");
    /* One tar of the data folder with the WAL it needs inside (-X fetch): whole without the
     * archive; the archive takes it on to any later time. */
    char *argv[] = {tool.data, "-d", cfg->pg.dsn, "-D", work.data, "-Ft", "-z", "-X", "fetch",
                    "--checkpoint=fast", "-l", lbl.data, "--no-password", NULL};
    printf("base backup %s\n", label);
    fflush(stdout);
    int rc = run(argv);
    long long ended = kc_now_ms();
    cJSON *m = cJSON_CreateObject(), *files = cJSON_CreateArray(), *kept = cJSON_CreateArray();
    cJSON_AddStringToObject(m, "label", label);
    cJSON_AddStringToObject(m, "began_at", began_s);
    cJSON_AddNumberToObject(m, "began_at_ms", (double)began);
    char ended_s[32];
    iso_ms(ended, ended_s);
    cJSON_AddStringToObject(m, "ended_at", ended_s);
    cJSON_AddNumberToObject(m, "ended_at_ms", (double)ended);
    cJSON_AddItemToObject(m, "data", files);
    cJSON_AddItemToObject(m, "files", kept);
    kc_buf_t path = {0};
    if (rc == 0) {
        /* base.tar.gz, and backup_manifest (for pg_verifybackup). Tablespaces would be tars
         * of their own, to be unpacked elsewhere: kchat makes none, and they are refused. */
        DIR *d = opendir(work.data);
        struct dirent *e;
        while (rc == 0 && d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (strcmp(e->d_name, "base.tar.gz") && strcmp(e->d_name, "backup_manifest")) {
                fprintf(stderr, "kchatctl: pg_basebackup wrote %s: tablespaces are not "
                                "supported\n", e->d_name);
                rc = -1;
                break;
            }
            kc_buf_reset(&path);
            kc_buf_printf(&path, "%s/%s", work.data, e->d_name);
            rc = put_file(&st, label, path.data, e->d_name, part, 1, files);
        }
        if (!d)
            rc = -1;
        else
            closedir(d);
    }
    /* The files beside the database: each under its own name, which must differ. */
    if (rc == 0 && *cfg->backup_files) {
        char *list = kc_xstrdup(cfg->backup_files), *save = NULL;
        for (char *p = strtok_r(list, ",", &save); rc == 0 && p; p = strtok_r(NULL, ",", &save)) {
            const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
            int dup = 0;
            cJSON *x;
            cJSON_ArrayForEach(x, kept)
                dup |= strcmp(cJSON_GetObjectItem(x, "name")->valuestring, base) == 0;
            if (!plain_name(base) || dup) {
                fprintf(stderr, "kchatctl: --backup-files: '%s' needs a plain file name of its "
                                "own\n", p);
                rc = -1;
            } else {
                rc = put_file(&st, label, p, base, part, 0, kept);
            }
        }
        free(list);
    }
    if (rc == 0) {
        char *json = cJSON_PrintUnformatted(m);
        kc_buf_t key = {0};
        keyf(&key, &st, "base/%s/backup.json", label);
        FILE *f = fmemopen(json, strlen(json), "rb");
        rc = f ? put_range(&st, key.data, f, (long long)strlen(json)) : -1;
        if (f)
            fclose(f);
        free(json);
        kc_buf_free(&key);
    }
    if (rc == 0)
        printf("backup %s whole: %s/%sbase/%s/\n", label, st.s3.bucket, st.prefix, label);
    else
        fprintf(stderr, "kchatctl: backup %s failed; it has no backup.json and is never "
                        "restored\n", label);
    cJSON_Delete(m);
    rm_tree(work.data);
    kc_buf_free(&work);
    kc_buf_free(&lbl);
    kc_buf_free(&tool);
    kc_buf_free(&path);
    return rc == 0 ? 0 : 1;
}

/* ---- restore ---- */

/* The manifest of base/<label>/, or NULL (said unless it is merely absent and quiet). */
static cJSON *manifest(const store_t *st, const char *label, int quiet)
{
    kc_buf_t key = {0}, body = {0};
    keyf(&key, st, "base/%s/backup.json", label);
    sink_t sink = {.body = &body, .max = MANIFEST_MAX};
    long s = request(st, "GET", key.data, NULL, NULL, 0, &sink);
    cJSON *m = NULL;
    if (s == 200) {
        m = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
        if (!m || !cJSON_IsArray(cJSON_GetObjectItem(m, "data")) ||
            !cJSON_IsArray(cJSON_GetObjectItem(m, "files")) ||
            !cJSON_IsNumber(cJSON_GetObjectItem(m, "ended_at_ms"))) {
            fprintf(stderr, "kchatctl: %s is not a backup manifest\n", key.data);
            cJSON_Delete(m);
            m = NULL;
        }
    } else if (s > 0 && !(s == 404 && quiet)) {
        fprintf(stderr, "kchatctl: GET %s/%s: HTTP %ld\n", st->s3.bucket, key.data, s);
    }
    kc_buf_free(&key);
    kc_buf_free(&body);
    return m;
}

/* The labels under base/, newest first (labels are times, and sort as text). */
static int labels(const store_t *st, char ***out, size_t *n)
{
    kc_buf_t prefix = {0};
    keyf(&prefix, st, "base/");
    char err[512];
    char **names = NULL;
    size_t k = 0;
    int rc = kc_s3_sync_list(&st->s3, prefix.data, "/", NULL, 100000, &names, &k, err,
                             sizeof(err));
    if (rc != 0)
        fprintf(stderr, "kchatctl: %s\n", err);
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < k; i++) {
        size_t len = strlen(names[i]);
        if (rc == 0 && len > prefix.len + 1 && names[i][len - 1] == '/') {
            char *l = kc_xstrndup(names[i] + prefix.len, len - prefix.len - 1);
            if (plain_name(l)) {
                *out = kc_xrealloc(*out, (*n + 1) * sizeof(char *));
                (*out)[(*n)++] = l;
            } else {
                free(l);
            }
        }
        free(names[i]);
    }
    free(names);
    kc_buf_free(&prefix);
    for (size_t i = 1; i < *n; i++)
        for (size_t j = i; j > 0 && strcmp((*out)[j - 1], (*out)[j]) < 0; j--) {
            char *x = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = x;
        }
    return rc;
}

/* Fetches an entry of the manifest (its parts, or the one file) into path and checks its size
 * and hash. */
static int get_entry(const store_t *st, const char *label, const cJSON *e, int split,
                     const char *path, mode_t mode)
{
    const cJSON *name = cJSON_GetObjectItem(e, "name"), *size = cJSON_GetObjectItem(e, "size"),
                *parts = cJSON_GetObjectItem(e, "parts"), *sha = cJSON_GetObjectItem(e, "sha256");
    if (!cJSON_IsString(name) || !plain_name(name->valuestring) || !cJSON_IsNumber(size) ||
        !cJSON_IsString(sha) || (split && (!cJSON_IsNumber(parts) || parts->valuedouble < 1 ||
                                           parts->valuedouble > 1e6))) {
        fprintf(stderr, "kchatctl: backup %s: a malformed entry in backup.json\n", label);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "kchatctl: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    sink_t sink = {.out = f, .sha = &h};
    kc_buf_t key = {0};
    int rc = 0;
    long long np = split ? (long long)parts->valuedouble : 1;
    for (long long i = 0; rc == 0 && i < np; i++) {
        if (split)
            keyf(&key, st, "base/%s/%s.%05lld", label, name->valuestring, i);
        else
            keyf(&key, st, "base/%s/files/%s", label, name->valuestring);
        long s = request(st, "GET", key.data, NULL, NULL, 0, &sink);
        if (s != 200) {
            if (s > 0)
                fprintf(stderr, "kchatctl: GET %s/%s: HTTP %ld\n", st->s3.bucket, key.data, s);
            rc = -1;
        }
    }
    long long written = ftello(f);
    if (fclose(f) != 0)
        rc = -1;
    unsigned char d[32];
    char hex[65];
    crypto_hash_sha256_final(&h, d);
    hex32(d, hex);
    if (rc == 0 && (written != (long long)size->valuedouble || strcmp(hex, sha->valuestring))) {
        fprintf(stderr, "kchatctl: backup %s: %s is not what was backed up (size or SHA-256)\n",
                label, name->valuestring);
        rc = -1;
    }
    kc_buf_free(&key);
    return rc;
}

/* 'value' as a postgresql.conf string. */
static void conf_str(kc_buf_t *b, const char *v)
{
    kc_buf_putc(b, '\'');
    for (; *v; v++) {
        if (*v == '\'')
            kc_buf_putc(b, '\'');
        kc_buf_putc(b, *v);
    }
    kc_buf_putc(b, '\'');
}

/* The restore_command: this program's wal-fetch with the store's options. */
static void restore_command(const ctl_cfg_t *cfg, kc_buf_t *b)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    kc_buf_t c = {0};
    kc_buf_printf(&c, "'%s' wal-fetch --wal-name=%%f --wal-path='%%p' --s3-endpoint='%s' "
                      "--s3-bucket='%s' --s3-region='%s' --backup-prefix='%s'",
                  n > 0 ? self : "kchatctl", cfg->s3_endpoint, cfg->s3_bucket, cfg->s3_region,
                  cfg->backup_prefix);
    /* The keys only when asked: else the server's environment (KCHAT_S3_ACCESS_KEY,
     * KCHAT_S3_SECRET_KEY) must hold them. */
    if (cfg->restore_with_keys)
        kc_buf_printf(&c, " --s3-access-key='%s' --s3-secret-key='%s'", cfg->s3_access_key,
                      cfg->s3_secret_key);
    conf_str(b, c.data);
    kc_buf_free(&c);
}

/* A value for a shell's single quotes and postgresql.conf: no quote, backslash or newline. */
static int quotable(const char *s)
{
    return strpbrk(s, "'\\\n\r") == NULL;
}

int ctl_pg_restore(const ctl_cfg_t *cfg)
{
    store_t st;
    if (store_init(cfg, &st) != 0)
        return 2;
    if (!*cfg->pgdata) {
        fprintf(stderr, "kchatctl: pg-restore needs --pgdata (an empty or new folder)\n");
        return 2;
    }
    if (!quotable(cfg->s3_endpoint) || !quotable(cfg->s3_bucket) || !quotable(cfg->s3_region) ||
        !quotable(cfg->s3_access_key) || !quotable(cfg->s3_secret_key)) {
        fprintf(stderr, "kchatctl: the object store's options may not hold quotes, "
                        "backslashes or line breaks\n");
        return 2;
    }
    /* The target: a time Postgres reads (checked by it), compared here by the backups'
     * end, which must come before it. */
    long long target_ms = -1;
    if (*cfg->target_time) {
        struct tm tm = {0};
        const char *end = strptime(cfg->target_time, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
            end = strptime(cfg->target_time, "%Y-%m-%d %H:%M:%S", &tm);
        long long frac_ms = 0;
        if (end && *end == '.')
            for (int digits = 0, scale = 100; *++end >= '0' && *end <= '9'; digits++, scale /= 10)
                if (digits < 3)
                    frac_ms += (*end - '0') * scale;
        if (!end || !(strcmp(end, "Z") == 0 || strcmp(end, "+00") == 0 ||
                      strcmp(end, "+00:00") == 0) || !quotable(cfg->target_time)) {
            fprintf(stderr, "kchatctl: --target-time must be a UTC time, "
                            "2026-12-07T02:40:00.123Z\n");
            return 2;
        }
        target_ms = (long long)timegm(&tm) * 1000 + frac_ms;
    }
    if (mkdir(cfg->pgdata, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kchatctl: %s: %s\n", cfg->pgdata, strerror(errno));
        return 1;
    }
    DIR *d = opendir(cfg->pgdata);
    int empty = 1;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
    }
    if (!d || !empty) {
        fprintf(stderr, "kchatctl: %s must be an empty folder: nothing there is overwritten\n",
                cfg->pgdata);
        return 1;
    }
    (void)chmod(cfg->pgdata, 0700);
    /* The backup: the one named, or the newest whole one that ended before the target. */
    cJSON *m = NULL;
    char label[64] = "";
    if (*cfg->backup_label) {
        if (!plain_name(cfg->backup_label)) {
            fprintf(stderr, "kchatctl: --backup-label is a label such as 20261207T023000Z\n");
            return 2;
        }
        snprintf(label, sizeof(label), "%s", cfg->backup_label);
        m = manifest(&st, label, 0);
        if (m && target_ms >= 0 &&
            cJSON_GetObjectItem(m, "ended_at_ms")->valuedouble > (double)target_ms) {
            fprintf(stderr, "kchatctl: backup %s ended after --target-time\n", label);
            cJSON_Delete(m);
            return 1;
        }
    } else {
        char **ls;
        size_t n;
        if (labels(&st, &ls, &n) != 0)
            return 1;
        for (size_t i = 0; i < n && !m; i++) {
            if (target_ms >= 0) {
                cJSON *x = manifest(&st, ls[i], 1);
                if (x && cJSON_GetObjectItem(x, "ended_at_ms")->valuedouble <= (double)target_ms)
                    m = x;
                else
                    cJSON_Delete(x);
            } else {
                m = manifest(&st, ls[i], 1);
            }
            if (m)
                snprintf(label, sizeof(label), "%s", ls[i]);
        }
        for (size_t i = 0; i < n; i++)
            free(ls[i]);
        free(ls);
        if (!m)
            fprintf(stderr, "kchatctl: no whole backup under %s/%sbase/%s\n", st.s3.bucket,
                    st.prefix, target_ms >= 0 ? " that ended before --target-time" : "");
    }
    if (!m)
        return 1;
    printf("restoring backup %s into %s\n", label, cfg->pgdata);
    int rc = 0;
    kc_buf_t path = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(m, "data"))
    {
        const cJSON *name = cJSON_GetObjectItem(e, "name");
        if (rc != 0 || !cJSON_IsString(name) || strcmp(name->valuestring, "base.tar.gz") != 0)
            continue; /* backup_manifest stays in the store, for pg_verifybackup */
        kc_buf_reset(&path);
        kc_buf_printf(&path, "%s/base.tar.gz", cfg->pgdata);
        rc = get_entry(&st, label, e, 1, path.data, 0600);
        if (rc == 0) {
            char *argv[] = {"tar", "-xzf", path.data, "-C", cfg->pgdata, NULL};
            rc = run(argv);
        }
        (void)unlink(path.data);
    }
    if (rc == 0 && *cfg->restore_files_dir) {
        if (mkdir(cfg->restore_files_dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "kchatctl: %s: %s\n", cfg->restore_files_dir, strerror(errno));
            rc = -1;
        }
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(m, "files"))
        {
            const cJSON *name = cJSON_GetObjectItem(e, "name");
            if (rc != 0 || !cJSON_IsString(name) || !plain_name(name->valuestring)) {
                rc = -1;
                break;
            }
            kc_buf_reset(&path);
            kc_buf_printf(&path, "%s/%s", cfg->restore_files_dir, name->valuestring);
            rc = get_entry(&st, label, e, 0, path.data, 0600);
            if (rc == 0)
                printf("  %s\n", path.data);
        }
    }
    if (rc == 0) {
        /* Recovery from the archive, up to the target, then a new timeline. */
        kc_buf_t conf = {0};
        kc_buf_puts(&conf, "\n# kchatctl pg-restore of backup ");
        kc_buf_puts(&conf, label);
        kc_buf_puts(&conf, "\nrestore_command = ");
        restore_command(cfg, &conf);
        if (target_ms >= 0) {
            /* In the form Postgres' setting takes ("T" and "Z" it refuses there). */
            char t[64];
            time_t secs = (time_t)(target_ms / 1000);
            struct tm tm;
            if (!gmtime_r(&secs, &tm) || strftime(t, sizeof(t), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                rc = -1;
            kc_buf_printf(&conf, "\nrecovery_target_time = '%s.%03lld+00'", rc == 0 ? t : "",
                          target_ms % 1000);
        }
        kc_buf_puts(&conf, "\nrecovery_target_action = 'promote'\n");
        kc_buf_reset(&path);
        kc_buf_printf(&path, "%s/postgresql.auto.conf", cfg->pgdata);
        FILE *f = fopen(path.data, "ab");
        rc = f && fwrite(conf.data, 1, conf.len, f) == conf.len ? 0 : -1;
        if (f && fclose(f) != 0)
            rc = -1;
        kc_buf_reset(&path);
        kc_buf_printf(&path, "%s/recovery.signal", cfg->pgdata);
        int fd = rc == 0 ? open(path.data, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
        if (fd < 0 || close(fd) != 0)
            rc = -1;
        if (rc != 0)
            fprintf(stderr, "kchatctl: %s: %s\n", path.data, strerror(errno));
        kc_buf_free(&conf);
    }
    if (rc == 0)
        printf("ready: start Postgres on %s; it replays the archive%s%s and promotes itself\n",
               cfg->pgdata, *cfg->target_time ? " up to " : "", cfg->target_time);
    cJSON_Delete(m);
    kc_buf_free(&path);
    return rc == 0 ? 0 : 1;
}
