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
static int put_setting(const char *url, const char *path, const char *key, const char *value,
                       kc_sr_answer_t *a)
{
    char body[128];
    (void)kc_strlcpyf(body, sizeof(body), "{\"%s\":\"%s\"}", key, value);
    if (kc_sr_call(url, "PUT", path, body, TIMEOUT_MS, a) != 0)
        return -1;
    return a->status == 200 ? 0 : -1;
}

static long answered_id(const kc_sr_answer_t *a)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a->json, "id");
    return a->status == 200 && cJSON_IsNumber(id) ? (long)id->valuedouble : -1;
}

/* Registers (or imports) e; prints what happened. 0, or -1. */
static int put_schema(const char *url, const kc_schema_info_t *e, int import)
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
        if (kc_sr_call(url, "POST", path, body, TIMEOUT_MS, &a) != 0) {
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
            kc_sr_call(url, "POST", path, body, TIMEOUT_MS, &a) != 0) {
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
static int subject_empty(const char *url, const char *subject)
{
    char path[600];
    if (kc_sr_subject_path(path, sizeof(path), "/subjects/", subject, "/versions") != 0)
        return -1;
    kc_sr_answer_t a = {0};
    if (kc_sr_call(url, "GET", path, NULL, TIMEOUT_MS, &a) != 0) {
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

static int register_subject(const char *url, const kc_schemas_t *s, const char *subject)
{
    char path[600];
    kc_sr_answer_t a = {0};
    if (kc_sr_subject_path(path, sizeof(path), "/config/", subject, "") != 0 ||
        put_setting(url, path, "compatibility", "BACKWARD", &a) != 0) {
        fprintf(stderr, "kchatctl: setting %s's compatibility to BACKWARD: %s\n", subject,
                a.error);
        kc_sr_answer_free(&a);
        return -1;
    }
    kc_sr_answer_free(&a);
    int empty = subject_empty(url, subject);
    if (empty < 0)
        return -1;
    int import = 0;
    if (empty) {
        if (kc_sr_subject_path(path, sizeof(path), "/mode/", subject, "") != 0 ||
            put_setting(url, path, "mode", "IMPORT", &a) != 0) {
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
    kc_schema_info_t e;
    for (size_t i = 0; rc == 0 && kc_schemas_entry(s, i, &e) == 0; i++)
        if (strcmp(e.subject, subject) == 0)
            rc = put_schema(url, &e, import);
    if (import) {
        if (put_setting(url, path, "mode", "READWRITE", &a) != 0) {
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
    int rc = 0;
    kc_schema_info_t e;
    const char *done[64];
    size_t ndone = 0;
    for (size_t i = 0; rc == 0 && kc_schemas_entry(s, i, &e) == 0; i++) {
        size_t j = 0;
        while (j < ndone && strcmp(done[j], e.subject) != 0)
            j++;
        if (j < ndone)
            continue;
        if (ndone == KC_ARRAY_LEN(done)) {
            fprintf(stderr, "kchatctl: more than %zu subjects\n", KC_ARRAY_LEN(done));
            rc = -1;
            break;
        }
        done[ndone++] = e.subject;
        rc = register_subject(cfg->schema_registry_url, s, e.subject);
    }
    /* a last check, as every daemon makes at start */
    kc_sr_cfg_t check = {.url = cfg->schema_registry_url, .wait_ms = 0};
    if (rc == 0 && kc_sr_check(s, &check, err, sizeof(err)) != 0) {
        fprintf(stderr, "kchatctl: %s\n", err);
        rc = -1;
    }
    kc_schemas_destroy(s);
    return rc == 0 ? 0 : 1;
}
