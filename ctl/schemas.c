/* kchatctl register-schemas: puts kchat's schemas into a Confluent-compatible registry with
 * the ids of schemas/registry.json, which every record on kchat's topics already carries,
 * and each subject's compatibility level (BACKWARD).
 *
 * For each subject, in registry.json's order:
 *   1. PUT /config/<subject> {"compatibility": "BACKWARD"}.
 *   2. A subject the registry has never held is filled in IMPORT mode (PUT /mode/<subject>),
 *      each version with its id and version number, and set back to READWRITE: this is how
 *      a registry takes ids chosen elsewhere (Confluent, Karapace and Redpanda allow IMPORT
 *      on an empty subject only).
 *   3. Otherwise each version is looked up (POST /subjects/<subject>); one that is missing is
 *      registered (POST /subjects/<subject>/versions), which gives it the registry's next id.
 *   Every id the registry gives must be registry.json's; any other is reported and the
 *      command exits 1, since readers of the topics would misread the records.
 * kchat-registry (read-only, serving the same files) answers every lookup: running the command
 * against it checks that it serves what this tree holds.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "kchat/avro.h"
#include "kchat/schema_registry.h"
#include "kchat/util.h"

#define TIMEOUT_MS 10000

/* PUT path {"key": value}: 0 when the registry took it, else -1 (a holds the answer or
 * the transport's error). */
static int put_setting(kc_sr_t *sr, const char *path, const char *key, const char *value,
                       kc_sr_answer_t *a)
{
    char body[128];
    (void)kc_strlcpyf(body, sizeof(body), "{\"%s\":\"%s\"}", key, value);
    if (kc_sr_call(sr, "PUT", path, body, a) != 0)
        return -1;
    return a->status == 200 ? 0 : -1;
}

static long answered_id(const kc_sr_answer_t *a)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a->json, "id");
    return a->status == 200 && cJSON_IsNumber(id) ? (long)id->valuedouble : -1;
}

/* Registers (or imports) e; prints what happened. 0, or -1. */
static int put_schema(kc_sr_t *sr, const kc_schema_info_t *e, int import)
{
    char path[600];
    char *body = kc_sr_schema_body(e, import);
    if (!body || kc_sr_subject_path(path, sizeof(path), "/subjects/", e->subject, "") != 0) {
        free(body);
        fprintf(stderr, "kchatctl: %s: subject name too long\n", e->subject);
        return -1;
    }
    kc_sr_answer_t a = {0};
    const char *how = "already there";
    long id = -1;
    int rc = -1;
    if (!import) {
        /* looked up first: a registry that holds it answers its id */
        if (kc_sr_call(sr, "POST", path, body, &a) != 0) {
            fprintf(stderr, "kchatctl: %s\n", a.error);
            goto out;
        }
        id = answered_id(&a);
        if (id < 0 && a.status != 404) {
            fprintf(stderr, "kchatctl: looking up %s version %d: %s\n", e->subject, e->version,
                    a.error);
            kc_sr_answer_free(&a);
            goto out;
        }
        kc_sr_answer_free(&a);
    }
    if (id < 0) {
        how = import ? "imported" : "registered";
        if (kc_sr_subject_path(path, sizeof(path), "/subjects/", e->subject, "/versions") != 0 ||
            kc_sr_call(sr, "POST", path, body, &a) != 0) {
            fprintf(stderr, "kchatctl: registering %s version %d: %s\n", e->subject, e->version,
                    a.error);
            goto out;
        }
        id = answered_id(&a);
        if (id < 0)
            fprintf(stderr, "kchatctl: registering %s version %d: %s\n", e->subject,
                    e->version, a.error[0] ? a.error : "the answer has no id");
        kc_sr_answer_free(&a);
        if (id < 0)
            goto out;
    }
    if (id != (long)e->id) {
        fprintf(stderr,
                "kchatctl: the registry holds %s version %d under id %ld, but kchat's records "
                "carry id %ld: readers that use this registry would misread them. Register into "
                "a registry whose subjects are empty (they are then imported with kchat's ids), "
                "or serve kchat's schemas with kchat-registry.\n",
                e->subject, e->version, id, (long)e->id);
        goto out;
    }
    printf("%-24s version %-3d id %-4ld %s\n", e->subject, e->version, id, how);
    rc = 0;
out:
    free(body);
    return rc;
}

/* Whether the registry has never held the subject: 1, 0, or -1 when it did not answer. */
static int subject_empty(kc_sr_t *sr, const char *subject)
{
    char path[600];
    if (kc_sr_subject_path(path, sizeof(path), "/subjects/", subject, "/versions") != 0)
        return -1;
    kc_sr_answer_t a = {0};
    if (kc_sr_call(sr, "GET", path, NULL, &a) != 0) {
        fprintf(stderr, "kchatctl: %s\n", a.error);
        return -1;
    }
    int empty = a.status == 404 && a.error_code == 40401;
    int ok = a.status == 200 || empty;
    if (!ok)
        fprintf(stderr, "kchatctl: %s\n", a.error);
    kc_sr_answer_free(&a);
    return ok ? empty : -1;
}

/* The subject of entry first and the entries after it of the same subject (registry.json's
 * entries come grouped by subject); *next is the first entry of the next subject. */
static int register_subject(kc_sr_t *sr, const kc_schemas_t *s, size_t first, size_t *next)
{
    char path[600];
    kc_sr_answer_t a = {0};
    kc_schema_info_t e;
    *next = first + 1;
    if (kc_schemas_entry(s, first, &e) != 0)
        return -1;
    const char *subject = e.subject;
    if (kc_sr_subject_path(path, sizeof(path), "/config/", subject, "") != 0 ||
        put_setting(sr, path, "compatibility", "BACKWARD", &a) != 0) {
        fprintf(stderr, "kchatctl: setting %s's compatibility to BACKWARD: %s\n", subject,
                a.error);
        kc_sr_answer_free(&a);
        return -1;
    }
    kc_sr_answer_free(&a);
    int empty = subject_empty(sr, subject);
    if (empty < 0)
        return -1;
    int import = 0;
    if (empty) {
        if (kc_sr_subject_path(path, sizeof(path), "/mode/", subject, "") != 0 ||
            put_setting(sr, path, "mode", "IMPORT", &a) != 0) {
            fprintf(stderr,
                    "kchatctl: %s is empty but the registry refuses IMPORT mode (%s): "
                    "registering it with the registry's own ids\n",
                    subject, a.error);
        } else {
            import = 1;
        }
        kc_sr_answer_free(&a);
    }
    int rc = 0;
    size_t i = first;
    for (; kc_schemas_entry(s, i, &e) == 0 && strcmp(e.subject, subject) == 0; i++)
        if (rc == 0)
            rc = put_schema(sr, &e, import);
    *next = i;
    if (import) {
        if (put_setting(sr, path, "mode", "READWRITE", &a) != 0) {
            fprintf(stderr, "kchatctl: setting %s back to READWRITE: %s\n", subject, a.error);
            rc = -1;
        }
        kc_sr_answer_free(&a);
    }
    return rc;
}

int ctl_register_schemas(const ctl_cfg_t *cfg)
{
    char err[512] = "";
    kc_schemas_t *s = kc_schemas_load(cfg->schemas_dir, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "kchatctl: %s\n", err);
        return 1;
    }
    if (cfg->schema_registry_url[0] == '\0') {
        fprintf(stderr, "kchatctl: register-schemas needs --schema-registry-url\n");
        kc_schemas_destroy(s);
        return 2;
    }
    kc_sr_t *sr = kc_sr_open(cfg->schema_registry_url, TIMEOUT_MS, err, sizeof(err));
    if (!sr) {
        fprintf(stderr, "kchatctl: %s\n", err);
        kc_schemas_destroy(s);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0, n = kc_schemas_count(s); rc == 0 && i < n;)
        rc = register_subject(sr, s, i, &i);
    kc_sr_close(sr);
    kc_schemas_destroy(s);
    return rc == 0 ? 0 : 1;
}
